"""``python -m collectors``: the collection jobs.

    discover --config FILE [--format json|table] [--secrets FILE]
        list the Exchange servers Active Directory knows (read-only LDAP)
    collect --config FILE [--inventory FILE] [--db URL] [--secrets FILE]
        discover (if [ldap] is configured) and/or read the inventory file, run the read-only
        probe on every server over WinRM, grade, and save one snapshot
    import FILE... [--db URL]
        store probe documents produced by hand (collectors/probe.ps1) as one snapshot
    preflight --config FILE [--inventory FILE] [--secrets FILE] [--sample N]
        check what a collection needs, one line per check with its fix: the Kerberos ticket,
        the passwords, each DC (TLS, bind, clock, read access) and, on N servers, the WinRM
        listener (TCP, certificate, clock) and the read-only probe itself; nothing saved
    fingerprint --config FILE [--inventory FILE] [--secrets FILE]
        read the build each server (from AD if [ldap] is configured, and/or the inventory file)
        and each [fingerprint] namespace discloses over HTTPS without credentials
        (docs/fingerprint.md); one line per endpoint, nothing saved

Exit status: 0 on success (collect: a snapshot was saved, even with unreachable hosts;
discover: the directory answered, even with no server, which it then warns about), 1 when
nothing could be read or saved, 2 on configuration errors, 3 when another collection is
running (fingerprint: 0 when at least one endpoint answered, even if others failed; preflight:
0 when every check passed, 1 when one failed). Errors are
one line naming the server, the operation and the fix; never a traceback.
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
    load_config,
    load_secrets,
    passwords,
)
from collectors.directory import DirectoryError, DirectoryServer, discover
from collectors.fingerprint import (
    Fingerprint,
    TlsContexts,
    endpoints_for,
    fingerprint_all,
    load_fingerprint_config,
)
from collectors.inventory import InventoryError, load_inventory, merge
from collectors.job import (
    CollectionBusy,
    Hooks,
    JobError,
    collection_job,
    import_documents,
    load_plan,
)
from collectors.kerberos import KerberosError
from collectors.preflight import DEFAULT_SAMPLE, preflight
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
    preflight_cmd = commands.add_parser(
        "preflight", help="check what a collection needs (ticket, DCs, listeners, the probe)")
    preflight_cmd.add_argument("--config", required=True, type=Path)
    preflight_cmd.add_argument("--inventory", type=Path, help="CSV or TOML host list")
    preflight_cmd.add_argument("--secrets", type=Path, default=SECRETS_FILE)
    preflight_cmd.add_argument("--sample", type=int, default=DEFAULT_SAMPLE,
                               help="servers to try WinRM and the probe on (default: "
                                    "%(default)s, the first by name)")
    import_cmd = commands.add_parser("import", help="store hand-run probe documents")
    import_cmd.add_argument("files", nargs="+", type=Path)
    import_cmd.add_argument("--db", help="store URL (default: the dashboard's store)")
    import_cmd.add_argument("--secrets", type=Path, default=SECRETS_FILE)
    fingerprint_cmd = commands.add_parser(
        "fingerprint", help="read the build OWA/ECP disclose without credentials")
    fingerprint_cmd.add_argument("--config", required=True, type=Path)
    fingerprint_cmd.add_argument("--inventory", type=Path, help="CSV or TOML host list")
    fingerprint_cmd.add_argument("--secrets", type=Path, default=SECRETS_FILE,
                                 help="secrets TOML with [ldap] password, when [ldap] is configured")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s", stream=stderr)
    if args.command == "collect":
        return _collect(args, stderr)
    if args.command == "import":
        return _import(args, stderr)
    if args.command == "preflight":
        return _preflight(args, stdout, stderr)
    if args.command == "fingerprint":
        return _fingerprint(args, stdout, stderr)

    try:
        config = load_config(args.config)
        if config.directory is None:
            raise SettingsError(f"{args.config} has no [ldap] section")
        password, _ = passwords(config, load_secrets(args.secrets), os.environ)
    except SettingsError as error:
        stderr.write(f"configuration error: {inert(error)}\n")
        return 2
    try:
        # With Kerberos, open_connection gets and uses the ticket for each DC itself.
        found = discover(config.directory, password or "")
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
        passwords(plan.config, secrets, os.environ)
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
    except (JobError, DirectoryError, KerberosError, StoreError) as error:
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


def _preflight(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """One line per check as it completes; exit 0 when every check passed, 1 otherwise."""
    try:
        if args.sample < 1:
            raise SettingsError("--sample must be at least 1")
        config = load_config(args.config)
        inventory = load_inventory(args.inventory) if args.inventory else []
        secrets = load_secrets(args.secrets)
        if config.directory is None and config.winrm is None:
            raise SettingsError(f"nothing to check: {args.config} has no [ldap] or [winrm]")
    except (InventoryError, SettingsError) as error:
        stderr.write(f"configuration error: {inert(error)}\n")
        return 2
    failed = total = 0
    for check in preflight(config, secrets, os.environ, inventory, sample=args.sample):
        total += 1
        failed += not check.ok
        stdout.write(check.line() + "\n")
        stdout.flush()
    stderr.write(f"{total} checks: {total - failed} passed, {failed} failed\n")
    return 1 if failed else 0


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


def fingerprint_line(result: Fingerprint) -> str:
    """One endpoint on one line: what each source disclosed and how surely, the OWA and ECP
    answers, TLS, or the failure. Inert: every part of it came from the network or from AD."""
    endpoint = result.endpoint
    parts = [f"{endpoint.name} ({endpoint.kind.value}) {endpoint.url or '-'}"]
    seen = [f"{d.source.value} {d.build} {d.certainty.value}" if d.build and d.certainty
            else f"{d.source.value} ? ({d.problem})" for d in result.disclosures]
    parts.append("; ".join(seen) or "no build disclosed")
    answers = [f"{label} {answer.status} in {answer.seconds:.2f} s" + (f" ({answer.note})"
                                                                        if answer.note else "")
               for label, answer in (("owa", result.owa), ("ecp", result.ecp)) if answer]
    if answers:
        parts.append(", ".join(answers))
    if result.tls is not None:
        parts.append(f"{result.tls.version} verified" if result.tls.verified else
                     f"{result.tls.version} CERTIFICATE NOT VALIDATED ({result.tls.problem}): "
                     "recorded, proves nothing")
    if result.failure is not None:
        parts.append(f"failed ({result.failure.reason}): {result.failure.detail}")
    return inert(" | ".join(parts))


def _fingerprint(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """Servers (AD and/or the inventory, merged as ``collect`` does) and namespaces, read once."""
    try:
        config = load_config(args.config)
        fingerprinting = load_fingerprint_config(args.config)
        contexts = TlsContexts.build(fingerprinting.ca_file)
        inventory = load_inventory(args.inventory) if args.inventory else []
        password, _ = passwords(config, load_secrets(args.secrets), os.environ)
        if config.directory is None and not inventory and not fingerprinting.namespaces:
            raise SettingsError(f"nothing to fingerprint: configure [ldap] or [fingerprint] "
                                f"namespaces in {args.config}, or give an inventory file")
    except (InventoryError, SettingsError) as error:
        stderr.write(f"configuration error: {inert(error)}\n")
        return 2
    discovered = []
    if config.directory is not None:
        try:
            found = discover(config.directory, password or "")
        except DirectoryError as error:
            stderr.write(f"error: {inert(error)}\n")
            return 1
        for warning in found.warnings:
            stderr.write(f"warning: {inert(warning)}\n")
        discovered = [server.to_host() for server in found.servers]
    hosts, _winrm_urls = merge(discovered, inventory)
    endpoints = endpoints_for(hosts, fingerprinting)
    if not endpoints:
        stderr.write("error: nothing to fingerprint: the directory listed no server\n")
        return 1
    try:
        results = fingerprint_all(endpoints, fingerprinting, contexts=contexts)
    except KeyboardInterrupt:
        stderr.write("interrupted\n")
        return 1
    for result in results:
        stdout.write(fingerprint_line(result) + "\n")
    failed = [r for r in results if r.failure is not None]
    untrusted = sum(1 for r in results if r.tls is not None and not r.tls.verified)
    hints = {r.failure.reason: r.failure.hint for r in failed if r.failure is not None}
    for reason, hint in hints.items():  # once per class, not once per endpoint
        stderr.write(f"hint ({inert(reason)}): {inert(hint)}\n")
    stderr.write(f"{len(results)} endpoints: {len(results) - len(failed)} answered, "
                 f"{len(failed)} failed, {untrusted} with a certificate that did not validate\n")
    return 0 if len(failed) < len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
