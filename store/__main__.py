"""``python -m store``: the snapshot store for auditors and scripts.

    history                      list snapshots (id, time, source, hosts, chain position)
    verify [--bundle FILE]       recompute every digest and link of the snapshots and the audit
                                 log, and with the signing key every HMAC (or check one
                                 evidence bundle alone, without the database)
    diff A B                     what changed between snapshots A and B (ids or "latest")
    reevaluate [--snapshot ID]   where today's catalogue would judge a snapshot differently
    export [--snapshot ID|latest | --as-of TIME] --format csv|json|bundle [--output FILE]
    prune --keep N               drop the hosts of all but the newest N snapshots (opt-in; the
                                 newest is always kept: it holds the fleet); the pruning is a
                                 signed audit entry that verify accounts each snapshot by
    adopt-key --state DIGEST     with the signing key: accept every snapshot and audit entry
                                 written before the key was set (or before schema 5) as they
                                 stand now; run once, after verify without the key says OK and
                                 the state digest it prints matches one you kept elsewhere
    audit [--limit N]            the audit log: who collected, imported, exported, pruned
    retire HOST... | --demo --reason TEXT
                                 take hosts out of the fleet by hand (decommissioned servers
                                 no discovery lists, typos, the fictional demo fleet)
    accept [HOST...] [--status S] [--site X] [--dag D] --reason TEXT --approver NAME
           [--ticket REF] (--days N | --until TIME)
                                 record a risk acceptance of each named (or filtered) host's
                                 gap as the latest snapshot shows it (at most [acceptances] max_days, 90 by
                                 default); it never changes a verdict and ends by itself at
                                 expiry or when the evidence changes (compliance/acceptance.py)
    acceptances [--as-of TIME]   every acceptance recorded (up to TIME), with its standing
    revoke ID                    end acceptance ID now (its id as acceptances lists it)

``--db URL`` picks the store (default: the dashboard's). The signing key, when set, comes
from PROXYLOGON_SIGNING_KEY or [store] signing_key in .streamlit/secrets.toml.
Exit status: 0 ok; 1 verification failed (each problem one line, "FAIL <where>: ..." or
"verification failed: ..."), or nothing to export: no snapshot yet, none at or before --as-of,
or the snapshot was pruned (one line, "nothing to export: ..."); 2 usage, settings or store
errors, including a snapshot id the store does not have, and a diff or reevaluate of a pruned
snapshot or an empty store (one line, "error: ...").
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

from sqlalchemy.exc import SQLAlchemyError

from compliance.acceptance import AcceptanceError, accept
from compliance.catalog import load_catalog
from compliance.deadline import DeadlinePolicy
from compliance.evaluate import Policy
from compliance.models import Snapshot
from compliance.summary import HostSummary
from compliance.verdicts import other_catalogs
from settings import SECRETS_FILE, SettingsError, default_actor, load_secrets, load_settings
from store.acceptances import acceptances, record_revocation, standing_in
from store.acceptances import record as record_acceptance
from store.evidence import (
    BundleError,
    build_bundle,
    bundle_holds,
    snapshot_csv,
    snapshot_document,
    verify_bundle,
)
from store.export import AUDIT_COLUMNS, inert, to_csv
from store.history import diff, reevaluate
from store.snapshots import SnapshotInfo, SnapshotStore, StoreError


def _actor() -> str:
    return default_actor()


class NoSnapshot(StoreError):
    """No snapshot holds what was asked for: the store is empty, none is as old as the
    ``--as-of`` time, or the snapshot was pruned. ``export`` exits 1 on it (an empty result);
    the other commands treat it as any store error (2)."""


def _pick(store: SnapshotStore, ref: str | None, as_of: str | None) -> SnapshotInfo:
    if as_of:
        try:
            moment = datetime.fromisoformat(as_of)
        except ValueError:
            raise StoreError(f"--as-of {as_of!r} is not an ISO 8601 time") from None
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        found = store.as_of(moment)
        if found is None:
            raise NoSnapshot(f"no snapshot at or before {moment.isoformat()}")
        return found
    if ref in (None, "latest"):
        latest = store.latest()
        if latest is None:
            raise NoSnapshot("the store holds no snapshot yet")
        return latest
    try:
        return store.info(int(str(ref)))
    except ValueError:
        raise StoreError(f"snapshot {ref!r} is neither an id nor 'latest'") from None


def _with_hosts(info: SnapshotInfo, consequence: str = "") -> SnapshotInfo:
    """``info``, unless the snapshot was pruned (``NoSnapshot``: nothing left to read)."""
    if info.pruned:
        raise NoSnapshot(f"snapshot #{info.id} was pruned: only its header and digest "
                         f"remain{consequence}")
    return info


def main(argv: Sequence[str] | None = None, stdout: TextIO = sys.stdout,
         stderr: TextIO = sys.stderr) -> int:
    parser = argparse.ArgumentParser(prog="python -m store", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", help="store URL (default: the dashboard's store)")
    parser.add_argument("--secrets", type=Path, default=SECRETS_FILE)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("history", help="list the snapshots, oldest first, with their digests")
    verify_cmd = commands.add_parser("verify", help="check both chains, or one bundle")
    verify_cmd.add_argument("--bundle", type=Path,
                            help="an evidence bundle (.zip) to check on its own")
    diff_cmd = commands.add_parser("diff", help="what changed between two snapshots")
    diff_cmd.add_argument("a", help="snapshot id or 'latest'")
    diff_cmd.add_argument("b", help="snapshot id or 'latest'")
    diff_cmd.add_argument("--format", choices=("text", "json"), default="text")
    export_cmd = commands.add_parser("export", help="one snapshot as CSV, JSON or a bundle")
    export_cmd.add_argument("--snapshot", default=None, help="id or 'latest' (default)")
    export_cmd.add_argument("--as-of", default=None,
                            help="the newest snapshot at or before this ISO 8601 time")
    export_cmd.add_argument("--format", choices=("csv", "json", "bundle"), required=True)
    export_cmd.add_argument("--output", type=Path,
                            help="file to write (replaced whole or not at all); bundles need it")
    reeval_cmd = commands.add_parser("reevaluate", help="judge a snapshot with today's catalogue")
    reeval_cmd.add_argument("--snapshot", default=None, help="id or 'latest' (default)")
    prune_cmd = commands.add_parser("prune", help="drop the hosts of older snapshots")
    prune_cmd.add_argument("--keep", type=int, required=True,
                           help="how many of the newest snapshots keep their hosts (at least 1)")
    adopt_cmd = commands.add_parser("adopt-key",
                                    help="accept unsigned history under the signing key")
    adopt_cmd.add_argument("--state", required=True,
                           help="the store's state digest as an earlier verify printed it, "
                                "kept elsewhere: at least 16 digits")
    retire_cmd = commands.add_parser("retire", help="take hosts out of the fleet by hand")
    retire_cmd.add_argument("hosts", nargs="*", help="host names as the fleet lists them")
    retire_cmd.add_argument("--demo", action="store_true",
                            help="every host of the fictional demo fleet")
    retire_cmd.add_argument("--reason", required=True, help="why (recorded in the snapshot)")
    accept_cmd = commands.add_parser(
        "accept", help="record a risk acceptance for hosts named, or chosen by filters")
    accept_cmd.add_argument("hosts", nargs="*", help="host names as the fleet lists them")
    accept_cmd.add_argument("--status", choices=("vulnerable", "mitigated", "unknown"),
                            help="every host of the fleet with this status (with the other "
                                 "filters: all of them)")
    accept_cmd.add_argument("--site", help="every host of this AD site")
    accept_cmd.add_argument("--dag", help="every host of this DAG")
    accept_cmd.add_argument("--reason", required=True, help="why the gap is accepted")
    accept_cmd.add_argument("--approver", required=True, help="who approved it")
    accept_cmd.add_argument("--ticket", default="", help="change or risk ticket reference")
    until = accept_cmd.add_mutually_exclusive_group(required=True)
    until.add_argument("--days", type=int, help="accepted for this many days from now")
    until.add_argument("--until", help="accepted until this ISO 8601 time (UTC if none given)")
    acceptances_cmd = commands.add_parser("acceptances", help="every risk acceptance")
    acceptances_cmd.add_argument("--as-of", default=None,
                                 help="as recorded up to, and standing at, this ISO 8601 time")
    revoke_cmd = commands.add_parser("revoke", help="end a risk acceptance now")
    revoke_cmd.add_argument("id", type=int, help="the acceptance's id (python -m store "
                                                 "acceptances)")
    audit_cmd = commands.add_parser("audit", help="the audit log (newest first), as CSV")
    audit_cmd.add_argument("--limit", type=int, default=1000)
    args = parser.parse_args(argv)

    try:
        settings = load_settings(load_secrets(args.secrets), os.environ)
        key = settings.signing_key
        if args.command == "verify" and args.bundle:
            problems = verify_bundle(args.bundle, key)
            for problem in problems:
                stderr.write(f"verification failed: {inert(args.bundle)}: {inert(problem)}\n")
            if not problems:
                stdout.write(f"OK {inert(args.bundle)}: every file matches the manifest, the "
                             "snapshot matches its digest, hosts.csv and summary.txt match the "
                             "snapshot"
                             + (", and so does investigations.json (each host's investigation "
                                "after the fix and its directive's steps)"
                                if bundle_holds(args.bundle, "investigations.json") else "")
                             + ("; the manifest's HMAC and the snapshot's signature match the "
                                "key" if key else "; no signing key: who made it is not "
                                "proven") + "\n")
            return 1 if problems else 0
        store = SnapshotStore.open(args.db or settings.store_url, key, settings.lock_timeout)
    except (SettingsError, StoreError, BundleError) as error:
        stderr.write(f"error: {inert(error)}\n")
        return 2
    try:
        if args.command in ("accept", "acceptances", "revoke"):
            return _acceptances(args, store, Policy(max_age=settings.max_age),
                                settings.acceptance_max_days, stdout, stderr)
        return _run(args, store, key, Policy(max_age=settings.max_age), stdout, stderr,
                    settings.deadlines.policy())
    except StoreError as error:
        stderr.write(f"error: {inert(error)}\n")
        return 2
    except SQLAlchemyError as error:  # a damaged file or a lost connection, while reading
        if args.command == "verify":
            stderr.write(f"verification failed: {inert(store.read_error(error))}\n")
            return 1
        stderr.write(f"error: {inert(store.read_error(error))}\n")
        return 2
    except (ValueError, TypeError, KeyError, AttributeError, ArithmeticError,
            RecursionError) as error:
        # A row no writer of this tool makes (changed by hand): say so, never a traceback.
        stderr.write(f"error: the store holds a row this tool cannot read "
                     f"({type(error).__name__}: {inert(str(error)[:200])}); it was changed "
                     "outside the tool: run python -m store verify\n")
        return 2
    finally:
        store.dispose()


def _moment(text: str, option: str) -> datetime:
    """An ISO 8601 time in UTC (a time without a zone is taken as UTC)."""
    try:
        moment = datetime.fromisoformat(text)
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):
        raise StoreError(f"{option} {text!r} is not an ISO 8601 time this tool can use") from None


def _filtered(args: argparse.Namespace) -> bool:
    return bool(args.status or args.site or args.dag)


def _chosen(args: argparse.Namespace, fleet: Sequence[HostSummary],
            snapshot_id: int) -> list[HostSummary]:
    """The hosts ``accept`` names, then those its filters choose (both: the named ones the
    filters keep). ``StoreError`` for a name not in the fleet, or nothing chosen."""
    if not args.hosts and not _filtered(args):
        raise StoreError("accept: name the hosts, or choose them with --status, --site or --dag")
    by_name = {s.host.casefold(): s for s in fleet}
    if args.hosts:
        missing = [h for h in args.hosts if h.casefold() not in by_name]
        if missing:
            raise StoreError(f"{missing[0]!r} is not in the fleet of snapshot #{snapshot_id}")
        fleet = list({h.casefold(): by_name[h.casefold()] for h in args.hosts}.values())
    chosen = [s for s in fleet
              if (not args.status or s.status.value == args.status)
              and (not args.site or s.site.casefold() == args.site.casefold())
              and (not args.dag or s.dag.casefold() == args.dag.casefold())]
    if not chosen:
        raise StoreError(f"no host of snapshot #{snapshot_id} matches the filters")
    return chosen


def _acceptances(args: argparse.Namespace, store: SnapshotStore, policy: Policy,
                 max_days: int, stdout: TextIO, stderr: TextIO) -> int:
    """accept, acceptances, revoke: risk acceptances (store/acceptances.py)."""
    now = datetime.now(UTC)
    if args.command == "revoke":
        record_revocation(store, args.id, _actor(), now)
        stdout.write(f"acceptance #{args.id} revoked\n")
        return 0
    catalog = load_catalog()
    if args.command == "accept":
        if args.days is not None and not 1 <= args.days <= max_days:
            raise StoreError(f"--days {args.days}: accept for 1 to {max_days} days "
                             "([acceptances] max_days)")
        expires = (now + timedelta(days=args.days) if args.days is not None
                   else _moment(args.until, "--until"))
        info = _with_hosts(_pick(store, None, None), ": accept against a snapshot with hosts")
        chosen = _chosen(args, store.summaries(info.id, catalog, policy), info.id)
        refused = 0
        for summary in chosen:
            try:
                made = accept(summary, reason=args.reason, approver=args.approver,
                              ticket=args.ticket, expires_at=expires, accepted_by=_actor(),
                              now=now, max_days=max_days)
                entry = record_acceptance(store, made, info.id, summary)
            except (AcceptanceError, StoreError) as error:
                if len(chosen) == 1 and not _filtered(args):
                    raise StoreError(str(error)) from None
                stderr.write(f"not accepted: {inert(error)}\n")
                refused += 1
                continue
            stdout.write(inert(f"acceptance #{entry}: {made.host} {made.status.value}, "
                               f"{made.badge} (evidence of snapshot #{info.id}; ends early if "
                               "it changes)") + "\n")
        if refused:
            stderr.write(f"{len(chosen) - refused} of {len(chosen)} hosts accepted\n")
        return 1 if refused else 0
    moment = _moment(args.as_of, "--as-of") if args.as_of else now
    latest = store.as_of(moment)
    fleet = ({s.host.casefold(): s for s in store.summaries(latest.id, catalog, policy)}
             if latest is not None and not latest.pruned else {})
    listed = acceptances(store, moment)
    if not listed:
        stderr.write(f"no risk acceptance recorded by {moment.isoformat(timespec='seconds')}\n")
    for recorded in listed:
        made = recorded.acceptance
        state = standing_in(store, recorded, fleet.get(made.host.casefold()), moment)
        shown = "in force" if state.in_force else f"ended: {state.detail}"
        fields = (f"#{recorded.id}", made.host, made.status.value, made.badge,
                  f"ticket {made.ticket or '-'}", shown, made.reason)
        stdout.write("\t".join(inert(field) for field in fields) + "\n")
    return 0


def _run(args: argparse.Namespace, store: SnapshotStore, key: bytes | None, policy: Policy,
         stdout: TextIO, stderr: TextIO, deadline_policy: DeadlinePolicy | None = None) -> int:
    if args.command == "history":
        for info in store.history():
            counts = ", ".join(f"{k} {v}" for k, v in info.counts.items() if v)
            pruned = "\tpruned" if info.pruned else ""
            fresh, _size = info.coverage
            held = (f"format {info.format}: fleet of {info.host_count} hosts ({counts}); "
                    f"{info.observed_count} observed by this run, {fresh} fresh" if info.fleet
                    else f"format 1: {info.host_count} hosts of this run only ({counts})")
            stdout.write(inert(f"#{info.id}\t{info.taken_at.isoformat()}\t{info.source}\t"
                               f"{held}\tposition {info.sequence}\t{info.hash[:16]}{pruned}"
                               ).replace("\\x09", "\t") + "\n")
        return 0
    if args.command == "verify":
        report = store.verify(key)
        for problem in report.problems:
            stderr.write(f"FAIL {inert(problem.where)}: {inert(problem.message)}\n")
        if report.ok:
            stdout.write(f"OK: {report.checked} snapshots and {report.audit_entries} audit "
                         f"entries, every digest and link verified ({report.pruned} pruned: "
                         "links only, each by a recorded pruning"
                         + (f"; with the key: {report.signed} snapshot signatures, the audit "
                            "entries and both heads checked" if key else
                            "; no signing key: a database writer could rewrite both chains")
                         + f"); head {report.head}; state {report.state}\n")
            if key and report.adopted:
                stdout.write(f"  unsigned history adopted under the key {inert(report.adopted)}\n")
            for pruning in report.prunings:
                stdout.write(f"  snapshot #{pruning.snapshot_id} pruned {inert(pruning.at)} by "
                             f"{inert(pruning.who)}\n")
        else:
            stderr.write(f"verification failed: {len(report.problems)} problem(s)\n")
        return 0 if report.ok else 1
    if args.command == "diff":
        before, after = _pick(store, args.a, None), _pick(store, args.b, None)
        for info in (before, after):
            _with_hosts(info, ", so there is nothing to compare")
        catalog = load_catalog()
        result = diff(*store.changed_summaries(before.id, after.id, catalog, policy))
        if args.format == "json":
            json.dump({"from": before.id, "to": after.id, **result.as_dict()}, stdout, indent=1)
            stdout.write("\n")
            return 0
        stdout.write(f"snapshot #{before.id} ({before.taken_at:%Y-%m-%d %H:%M}) -> "
                     f"#{after.id} ({after.taken_at:%Y-%m-%d %H:%M})\n")
        for name, changes in result.__dict__.items():
            stdout.write(f"{name.replace('_', ' ')}: {len(changes)}\n")
            for change in changes:
                stdout.write(f"  {inert(change.host)}: {change.before} -> {change.after}"
                             f"{'  (' + inert(change.detail) + ')' if change.detail else ''}\n")
        return 0
    if args.command == "reevaluate":
        info = _with_hosts(_pick(store, args.snapshot, None),
                           ", so there is nothing to re-evaluate")
        catalog = load_catalog()
        changes = reevaluate(store.fleet(info.id, catalog, policy), catalog, info.taken_at,
                             policy, store.outside(info.id))
        stdout.write(f"snapshot #{info.id} recorded with catalogue {info.catalog_version}; "
                     f"today's is {catalog.version}: {len(changes)} verdicts would differ\n")
        for change in changes:
            stdout.write(f"  {inert(change.host)}: recorded {change.recorded.status.value}, today "
                         f"{change.today.status.value} (the recorded verdict stays the "
                         "evidence)\n")
        return 0
    if args.command == "audit":
        _emit(stdout, to_csv(store.audit_log(args.limit), AUDIT_COLUMNS))
        return 0
    if args.command == "retire":
        return _retire(args, store, policy, stderr)
    if args.command == "adopt-key":
        detail = store.adopt_key(_actor(), args.state)
        stdout.write(f"adopted under the signing key as they stand: {inert(detail[:300])}\n")
        return 0
    if args.command == "prune":
        count = store.prune(args.keep, _actor())  # the pruning is itself an audit entry
        stdout.write(f"pruned {count} snapshots (the store verified first; headers and digests "
                     "kept, each pruning a signed audit entry)\n")
        return 0
    if args.format == "bundle" and not args.output:
        raise StoreError("a bundle is binary: give --output FILE.zip")
    try:
        info = _with_hosts(_pick(store, args.snapshot, args.as_of))
    except NoSnapshot as error:  # an empty result, not a usage error: 1, as the help says
        stderr.write(f"nothing to export: {inert(error)}\n")
        return 1
    if args.format == "csv":
        # With each host's investigation state and next action (issue 21) at the end.
        assessments = store.assessments(info.id)
        recorded = store.investigations(info.id)
        data = snapshot_csv(assessments, info.id, [recorded.get(a.observation.host.name)
                                                   for a in assessments]).encode()
    elif args.format == "json":
        data = json.dumps(snapshot_document(store, info), indent=1, ensure_ascii=False).encode()
    else:
        verified = store.verify(key).ok
        if not verified:
            stderr.write("warning: the store's chains do not verify (python -m store verify "
                         "says why); the bundle records that\n")
        data = build_bundle(store, info, datetime.now(UTC), verified,
                            deadlines=deadline_policy)
    store.record(_actor(), "export", info.id,
                 f"{args.format} to {args.output or 'standard output'}")
    if args.output:
        try:
            _write(args.output, data)
        except OSError as error:
            raise StoreError(f"cannot write {args.output}: {error.strerror or error}") from None
        stderr.write(f"snapshot #{info.id} exported to {args.output}\n")
    else:
        _emit(stdout, data.decode())
    return 0


def _emit(stdout: TextIO, text: str) -> None:
    """Data (CSV, JSON) for a pipe as it is; on a terminal, each line made inert, so a value
    chosen by whoever wrote the store cannot drive the terminal."""
    isatty = getattr(stdout, "isatty", None)
    if isatty is None or not isatty():
        stdout.write(text)
        return
    stdout.write("".join(inert(line.rstrip("\r")) + "\n" for line in text.splitlines()))


def _write(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all: a regular file (or a new one) through a temporary
    file in the same directory, renamed over it, so a failure leaves the old file as it was;
    anything else (a device, a FIFO) is written directly, never replaced."""
    if path.exists() and not path.is_file():
        path.write_bytes(data)
        return
    descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                        suffix=".part")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


def _retire(args: argparse.Namespace, store: SnapshotStore, policy: Policy,
            stderr: TextIO) -> int:
    """One snapshot without the named hosts; the reason is in its label, the who in the log."""
    from compliance import __version__
    from compliance.fleet import DEMO

    reason = " ".join(str(args.reason).split())
    if not reason:
        raise StoreError("give a --reason: it is recorded with the snapshot")
    latest = _pick(store, None, None)
    catalog = load_catalog()
    fleet = {a.observation.host.name.lower(): a for a in store.fleet(latest.id, catalog, policy)}
    unknown = [name for name in args.hosts if name.lower() not in fleet]
    if unknown:
        raise StoreError(f"not in the fleet of snapshot #{latest.id}: {', '.join(unknown)}")
    names = [fleet[name.lower()].observation.host.name for name in args.hosts]
    if args.demo:
        names += [a.observation.host.name for a in fleet.values()
                  if DEMO in a.scopes or a.observation.source.startswith(DEMO)]
    names = list(dict.fromkeys(names))
    if not names:
        raise StoreError("nothing to retire: name hosts, or --demo")
    shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    run = Snapshot(taken_at=datetime.now(UTC), source="retire", tool_version=__version__,
                   catalog_version=catalog.version, advisory_id=catalog.advisory.id,
                   advisory_version=catalog.advisory.version, assessments=(),
                   label=f"{len(names)} hosts retired by hand: {reason}"[:2000],
                   scope=f"retire: {shown}", retired=tuple(names))
    snapshot_id = store.save(run, catalog, policy, others=other_catalogs(catalog))
    store.record(_actor(), "retire", snapshot_id, f"{shown}; reason: {reason}"[:2000])
    info = store.info(snapshot_id)
    stderr.write(f"snapshot #{snapshot_id} saved: {len(names)} hosts retired ({inert(shown)}); the "
                 f"fleet holds {info.host_count} hosts\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
