"""``SnapshotStore.verify`` in a child process, for the dashboard.

Verifying 10,000 hosts x 52 snapshots hashes every row again: seconds of pure Python. On a
thread of the dashboard's process it holds the GIL that every page's script needs (a cached
page took 0.9 s instead of 0.2 s while it ran), so the dashboard runs it here, in a process of
its own, and reads the report back as JSON.

The store URL (which may hold a password) and the signing key travel in the child's
environment, never in its command line, which any local user can read (``ps``). The child
opens the store read-only in intent: it builds an engine and never runs the migrations.

Run by ``verify_in_child``; ``python -m store.checker`` with ``CHECK_URL`` (and, to check the
signatures, ``CHECK_KEY`` as hex) set prints the report as one JSON object.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from store.verification import ChainProblem, Pruning, VerifyReport

CHECK_URL = "PROXYLOGON_CHECK_URL"
CHECK_KEY = "PROXYLOGON_CHECK_KEY"
ROOT = Path(__file__).resolve().parent.parent  # the project: ``store`` importable from it
# The check is background work: on a small machine (2 cores) at full priority it and its
# workers took the CPU from the page scripts it runs beside (a page's first run at 10,000
# hosts went from ~0.9 s to ~1.4 s). At niceness 10 a busy page wins, an idle machine still
# checks at full speed, and a machine busy for ever still gives the check ~10% of a core.
NICENESS = 10


class CheckFailed(RuntimeError):
    """The child could not verify the store (it could not read it, or it died); the message
    is the child's last line of error output, or its exit status."""


def to_json(report: VerifyReport) -> str:
    return json.dumps(asdict(report), separators=(",", ":"))


def from_json(text: str) -> VerifyReport:
    """The report ``to_json`` wrote (``ValueError``/``KeyError``/``TypeError`` on anything else)."""
    fields: dict[str, Any] = json.loads(text)
    fields["problems"] = [ChainProblem(**p) for p in fields["problems"]]
    fields["prunings"] = [Pruning(**p) for p in fields["prunings"]]
    return VerifyReport(**fields)


def verify_in_child(url: str, key: bytes | None, timeout: float | None = None) -> VerifyReport:
    """Verify the store at ``url`` (with ``key``, when given) in a child Python process.

    The child's working directory is this process's, so a relative SQLite path means the same
    file. ``CheckFailed`` when the child fails or outlives ``timeout`` seconds.
    """
    env = {**os.environ, CHECK_URL: url,
           "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))}
    env.pop(CHECK_KEY, None)
    if key is not None:
        env[CHECK_KEY] = key.hex()
    try:
        done = subprocess.run([sys.executable, "-m", "store.checker"], env=env,
                              capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise CheckFailed(f"the check took longer than {timeout:g} s") from None
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        raise CheckFailed(lines[-1][:300] if lines else f"the check exited {done.returncode}")
    try:
        return from_json(done.stdout)
    except (ValueError, KeyError, TypeError):
        raise CheckFailed("the check printed no report") from None


def lower_priority() -> None:
    """Lower this process's CPU priority by ``NICENESS`` (its children inherit it); a no-op
    where the platform has no ``os.nice`` (Windows) or refuses it."""
    if hasattr(os, "nice"):
        with contextlib.suppress(OSError):
            os.nice(NICENESS)


def main() -> int:
    from store.snapshots import SnapshotStore, reading_engine

    url = os.environ.get(CHECK_URL)
    if not url:
        sys.stderr.write(f"{CHECK_URL} is not set: run by store.checker.verify_in_child\n")
        return 2
    key_hex = os.environ.get(CHECK_KEY)
    key = bytes.fromhex(key_hex) if key_hex else None
    lower_priority()
    engine = reading_engine(url)
    try:
        report = SnapshotStore(engine, key).verify(key)
    except Exception as error:  # one line; the URL (and any password in it) is not repeated
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        sys.stderr.write(f"cannot read the store: {detail[:300]}\n")
        return 1
    finally:
        engine.dispose()
    sys.stdout.write(to_json(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
