"""``python -m collectors``: the collection jobs.

    discover --config FILE [--format json|table] [--secrets FILE]
        list the Exchange servers Active Directory knows (read-only LDAP)
    collect --config FILE [--inventory FILE] [--db URL] [--secrets FILE]
        discover (if [ldap] is configured) and/or read the inventory file, run the read-only
        probe on every server over WinRM, grade, and save one snapshot
    import FILE... [--db URL]
        store probe documents produced by hand (collectors/probe.ps1) as one snapshot

Exit status: 0 on success (collect: a snapshot was saved, even with unreachable hosts;
discover: the directory answered, even with no server, which it then warns about), 1 when
nothing could be read or saved, 2 on configuration errors, 3 when another collection is
running. Errors are one line naming the server, the operation and the fix; never a traceback.
Warnings are lines starting "warning: " on stderr; discover's summary line counts them, and
its table repeats them under the rows (its JSON stays a bare list of servers).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from collectors.config import (
    ldap_password,
    load_config,
    load_secrets,
    winrm_password,
)
from collectors.directory import DirectoryError, DirectoryServer, discover
from collectors.inventory import InventoryError
from collectors.job import (
    CollectionBusy,
    Hooks,
    JobError,
    collection_job,
    import_documents,
    load_plan,
)
from compliance.catalog import load_catalog
from compliance.evaluate import Policy
from settings import SECRETS_FILE, SettingsError, load_settings
from store import SnapshotStore, StoreError
from store.export import inert


def table(servers: Sequence[DirectoryServer]) -> str:
    headers = ("name", "fqdn", "ad_build", "roles", "site", "dag", "problems")
    # AD attributes are untrusted: a cell can neither move the cursor nor start a line.
    rows = [tuple(inert(cell) for cell in (
                s.name, s.fqdn or "-", s.cu_level or "-", ",".join(s.roles or ()) or "?",
                s.site or "-", s.dag or "-", str(len(s.problems)) if s.problems else ""))
            for s in servers]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def main(argv: Sequence[str] | None = None, stdout: TextIO = sys.stdout,
         stderr: TextIO = sys.stderr) -> int:
    parser = argparse.ArgumentParser(prog="python -m collectors", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    discover_cmd = commands.add_parser("discover", help="list Exchange servers from AD")
    discover_cmd.add_argument("--config", required=True, type=Path)
    discover_cmd.add_argument("--format", choices=("json", "table"), default="json")
    discover_cmd.add_argument("--secrets", type=Path, default=SECRETS_FILE,
                              help="secrets TOML with [ldap] password (default: %(default)s)")
    collect_cmd = commands.add_parser("collect", help="probe every server and save a snapshot")
    collect_cmd.add_argument("--config", required=True, type=Path)
    collect_cmd.add_argument("--inventory", type=Path, help="CSV or TOML host list")
    collect_cmd.add_argument("--db", help="store URL (default: the dashboard's store)")
    collect_cmd.add_argument("--secrets", type=Path, default=SECRETS_FILE)
    import_cmd = commands.add_parser("import", help="store hand-run probe documents")
    import_cmd.add_argument("files", nargs="+", type=Path)
    import_cmd.add_argument("--db", help="store URL (default: the dashboard's store)")
    import_cmd.add_argument("--secrets", type=Path, default=SECRETS_FILE)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s", stream=stderr)
    if args.command == "collect":
        return _collect(args, stderr)
    if args.command == "import":
        return _import(args, stderr)

    try:
        config = load_config(args.config)
        if config.directory is None:
            raise SettingsError(f"{args.config} has no [ldap] section")
        password = ldap_password(load_secrets(args.secrets), os.environ)
    except SettingsError as error:
        stderr.write(f"configuration error: {inert(error)}\n")
        return 2
    try:
        found = discover(config.directory, password)
    except DirectoryError as error:
        stderr.write(f"error: {inert(error)}\n")
        return 1
    # One line each, inert: the base and the filter carry configured and AD-held text.
    warnings = [f"warning: {inert(warning)}" for warning in found.warnings]
    for line in warnings:
        stderr.write(line + "\n")
    if args.format == "json":
        # A bare list, as before: scripts read it; the warnings are on stderr.
        json.dump([s.as_json() for s in found.servers], stdout, indent=2)
        stdout.write("\n")
    else:
        stdout.write("\n".join([table(found.servers), *warnings]) + "\n")
    with_problems = sum(1 for s in found.servers if s.problems)
    counted = f", {len(warnings)} warning{'s' if len(warnings) > 1 else ''}" if warnings else ""
    stderr.write(f"{len(found.servers)} Exchange servers from {inert(found.server)} "
                 f"({with_problems} with problems{counted})\n")
    return 0


def _store(args: argparse.Namespace, secrets: dict[str, object]) -> tuple[SnapshotStore, Path, Policy]:
    settings = load_settings(secrets, os.environ)
    store = SnapshotStore.open(args.db or settings.store_url, settings.signing_key,
                              settings.lock_timeout)
    return store, settings.data_dir, Policy(max_age=settings.max_age)


def _collect(args: argparse.Namespace, stderr: TextIO) -> int:
    """The collection job (collectors/job.py), the same the dashboard runs, on a terminal."""
    try:
        plan = load_plan(args.config, args.inventory)
        secrets = load_secrets(args.secrets)
        # Passwords and the store are checked before the lock, so a wrong setting is exit 2.
        if plan.config.directory:
            ldap_password(secrets, os.environ)
        winrm_password(secrets, os.environ)
        store, data_dir, policy = _store(args, secrets)
    except (InventoryError, SettingsError, StoreError) as error:
        stderr.write(f"configuration error: {inert(error)}\n")
        return 2
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    job = collection_job(plan, secrets=secrets, environ=os.environ, open_store=lambda: store,
                         catalog=load_catalog(), policy=policy, data_dir=data_dir,
                         progress_stream=stderr)
    try:
        summary = job(Hooks(started=None, progress=None, stop=stop))
    except CollectionBusy as error:
        stderr.write(f"error: {inert(error)}\n")
        return 3
    except SettingsError as error:
        stderr.write(f"configuration error: {inert(error)}\n")
        return 2
    except (JobError, DirectoryError, StoreError) as error:
        stderr.write(f"error: {inert(error)}\n")
        return 1
    except (InterruptedError, KeyboardInterrupt):
        stderr.write("interrupted: nothing was saved; the previous snapshots are intact\n")
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
        store.dispose()
    stderr.write(inert(summary) + "\n")
    return 0


def _import(args: argparse.Namespace, stderr: TextIO) -> int:
    try:
        store, _data_dir, policy = _store(args, load_secrets(args.secrets))
    except (SettingsError, StoreError) as error:
        stderr.write(f"configuration error: {inert(error)}\n")
        return 2
    try:
        result = import_documents(args.files, store=store, catalog=load_catalog(), policy=policy)
    except StoreError as error:
        stderr.write(f"error: {inert(error)}\n")
        return 1
    finally:
        store.dispose()
    for name, reason in result.rejected:
        stderr.write(f"rejected {inert(name)}: {inert(reason)}\n")
    if result.run is None:
        stderr.write("nothing imported\n")
        return 1
    stderr.write(inert(result.run.summary()) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
