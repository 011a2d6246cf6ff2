"""Every ``python -m store`` example in README.md works on the demo store (issue 16, item 9).

The README's examples named snapshots 11 and 12, which the demo store (eight snapshots) does
not have. This runs each example line of the README's fenced code blocks, in the README's
order, against one freshly seeded demo store, as the dashboard seeds it on first start, and
requires exit 0 for each.

- The demo is seeded as of 2026-11-30 (its eight weekly snapshots from 2026-10-12 on), the
  day these examples were checked, so that the absolute time of the ``--as-of 2026-11-01``
  example falls inside it whatever day the test runs; a demo seeded today covers the last
  eight weeks instead.
- Skipped: ``adopt-key`` (it needs the signing key, and writes with it). No other line is
  skipped: ``verify --bundle evidence.zip`` reads the bundle the ``export --format bundle``
  line before it wrote.
- The real ``data/`` directory is never touched: every command gets ``--db`` with a
  temporary SQLite URL and a secrets file that does not exist, runs in ``tmp_path`` (so
  ``--output`` files and ``> file`` redirections land there), with ``PROXYLOGON_DATA_DIR``
  pointing into ``tmp_path`` too.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from collectors.demo import seed_demo
from compliance.catalog import load_catalog
from store import SnapshotStore

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PREFIXES = (".venv/bin/python -m store ", "python -m store ")
SKIPPED = {"adopt-key": "needs the signing key and writes with it"}
SEEDED_AT = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def store_examples(text: str) -> list[str]:
    """The ``python -m store`` lines of the fenced code blocks, in order."""
    lines, fenced = [], False
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("```"):
            fenced = not fenced
        elif fenced and line.startswith(PREFIXES):
            lines.append(line)
    return lines


def _command(line: str) -> tuple[list[str], str | None]:
    """The arguments after ``-m store``, and the file a ``> file`` redirection names."""
    words = shlex.split(line, comments=True)
    assert not {"|", "<", "&&", ";", ">>", "2>"} & set(words), f"unsupported shell: {line}"
    redirect = None
    if ">" in words:
        at = words.index(">")
        redirect = words[at + 1]
        assert len(words) == at + 2, f"words after the redirection: {line}"
        words = words[:at]
    at = words.index("-m")
    assert words[at + 1] == "store", line
    return words[at + 2:], redirect


def test_the_readme_has_store_examples():
    examples = store_examples(README.read_text(encoding="utf-8"))
    commands = {_command(line)[0][0] for line in examples}
    assert {"history", "verify", "export", "diff", "reevaluate", "audit", "retire"} <= commands


def test_every_store_example_of_the_readme_works_on_the_demo_store(tmp_path):
    workdir = tmp_path / "work"
    workdir.mkdir()
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    store = SnapshotStore.open(url)
    try:
        assert seed_demo(store, load_catalog(), SEEDED_AT) == list(range(1, 9))
    finally:
        store.dispose()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PROXYLOGON_")}
    environ.update(PYTHONPATH=str(ROOT), PROXYLOGON_DATA_DIR=str(tmp_path / "data"))

    ran = []
    for line in store_examples(README.read_text(encoding="utf-8")):
        args, redirect = _command(line)
        if args[0] in SKIPPED:
            continue
        done = subprocess.run(
            [sys.executable, "-m", "store", "--db", url, "--secrets",
             os.devnull, *args],
            cwd=workdir, capture_output=True, text=True, timeout=120, env=environ)
        assert done.returncode == 0, f"{line}\nexit {done.returncode}: {done.stderr}"
        if redirect is not None:
            (workdir / redirect).write_text(done.stdout, encoding="utf-8")
        ran.append(args[0])
    assert len(ran) >= 9, ran
    assert not (tmp_path / "data").exists()  # nothing fell back to a default store
    for written in ("evidence.zip", "nov1.zip", "audit.csv"):
        assert (workdir / written).stat().st_size > 0, written
