"""The collection job: inventory -> probes (-> outside view) -> verdicts -> one snapshot, saved
atomically.

Whatever a run covers (all of AD, two hosts of an inventory file, one hand-run document), the
snapshot it saves holds the whole fleet: the store carries every host the run did not observe
forward from the previous snapshot (compliance/fleet.py).

Used by ``python -m collectors collect`` and ``import`` (and later by the dashboard). One
run at a time per data directory (a lock file); an interrupted run saves nothing, so the
previous snapshots stay the latest.

With ``[fingerprint] enabled``, the job also reads what every server (its FQDN) and each
configured namespace disclose over HTTPS without credentials (collectors/fingerprint.py), after
the probes; the store reconciles the fleet with it and keeps it with the snapshot
(compliance/outside_record.py). A failed fingerprint is data: it never fails the run, and
nothing seen from outside makes a host patched.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from filelock import FileLock, Timeout

from collectors.config import (
    CollectionConfig,
    load_config,
    passwords,
)
from collectors.directory import DirectoryConfig, discover
from collectors.fingerprint import (
    FingerprintConfig,
    TlsContexts,
    endpoint_record,
    endpoints_for,
    fingerprint_all,
    load_fingerprint_config,
    reads,
)
from collectors.inventory import InventoryEntry, load_inventory, merge
from collectors.kerberos import acquire, activate
from collectors.probe import (
    ProbeDocumentError,
    document_time,
    load_document,
    observation_from_document,
    read_document,
)
from collectors.remote import WinrmConfig, probe_all, targets_for
from compliance import __version__
from compliance.catalog import Catalog
from compliance.evaluate import Policy, assess
from compliance.fleet import IMPORT, INVENTORY, directory_scope
from compliance.models import Flag, Host, Observation, Snapshot, Status
from compliance.outside_record import EndpointRecord
from compliance.summary import SEPARATOR
from compliance.verdicts import other_catalogs
from notify.after import after_snapshot, configured
from settings import SettingsError, default_actor, resolve
from store import SnapshotInfo, SnapshotStore
from store.export import inert


class JobError(RuntimeError):
    """The job could not run or save; the message says why and what to do."""


class CollectionBusy(JobError):
    """Another collection (this process or another one) holds the data directory's lock."""


@contextmanager
def run_lock(data_dir: Path) -> Iterator[None]:
    """Refuse a second collection while one is running (per data directory): a second one
    gets ``CollectionBusy``; a data directory that cannot hold the lock file, ``JobError``.

    The lock is filelock's (an OS lock on ``collect.lock``: flock on POSIX, msvcrt on
    Windows), released by the OS if the process dies; who holds it is written beside it, in
    ``collect.owner``, for the message a second collection prints."""
    path, owner = data_dir / "collect.lock", data_dir / "collect.owner"
    # thread_local off: the dashboard acquires and releases in its job thread, not the caller;
    # no soft-lock fallback: a lock file left by a crash must never block every later run.
    lock = FileLock(path, timeout=0, thread_local=False, is_singleton=False,
                    fallback_to_soft=False)
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except Timeout:
        try:
            holder = owner.read_text(encoding="utf-8").strip() or "another process"
        except OSError:
            holder = "another process"
        raise CollectionBusy(f"another collection is running ({inert(holder)}); wait for it to "
                             f"finish (lock: {path})") from None
    except OSError as error:
        raise JobError(f"cannot write the collection lock {path}: {error.strerror or error}; "
                       "nothing was collected. Point [store] data_dir (or "
                       "PROXYLOGON_DATA_DIR) at a directory this user may write") from None
    try:
        with contextlib.suppress(OSError):  # who holds it is for messages only
            owner.write_text(f"pid {os.getpid()} since "
                             f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC\n", encoding="utf-8")
        yield
    finally:
        with contextlib.suppress(OSError):
            owner.unlink()
        lock.release()


class Progress:
    """A progress bar on a terminal; plain log lines otherwise. ``unit`` and ``verb`` name what
    is counted ("hosts" "probed", "endpoints" "fingerprinted")."""

    def __init__(self, total: int, stream: TextIO = sys.stderr, tty: bool | None = None,
                 clock: Callable[[], float] = time.monotonic, unit: str = "hosts",
                 verb: str = "probed"):
        self.total, self.stream, self.clock = total, stream, clock
        self.unit, self.verb = unit, verb
        self.tty = stream.isatty() if tty is None else tty
        self.done = self.failed = 0
        self.started = clock()
        self._step = max(1, total // 10)
        self._lock = threading.Lock()

    def __call__(self, failed: bool) -> None:
        with self._lock:
            self.done += 1
            if failed:
                self.failed += 1
            elapsed = self.clock() - self.started
            eta = elapsed / self.done * (self.total - self.done) if self.done else 0.0
            if self.tty:
                width = 30
                filled = int(width * self.done / max(1, self.total))
                self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/"
                                  f"{self.total} {self.unit}, {self.failed} failed, ETA "
                                  f"{eta:4.0f} s")
                if self.done == self.total:
                    self.stream.write("\n")
            elif self.done % self._step == 0 or self.done == self.total:
                self.stream.write(f"{self.verb} {self.done}/{self.total} {self.unit}, "
                                  f"{self.failed} failed, {elapsed:.1f} s elapsed, ETA "
                                  f"{eta:.0f} s\n")
            self.stream.flush()


@dataclass(frozen=True)
class RunResult:
    """A saved run: ``snapshot`` is what the run observed, ``saved`` the header of the snapshot
    it made (the whole fleet, with the hosts it did not observe carried forward)."""

    snapshot_id: int
    snapshot: Snapshot
    seconds: float
    saved: SnapshotInfo
    demo_hosts: int = 0  # hosts of the fictional demo fleet still in the saved fleet
    outside: str = ""  # what the run's outside view found, when it fingerprinted

    def summary(self) -> str:
        counts = self.saved.counts
        parts = ", ".join(f"{status.value} {counts[status.value]}" for status in Status
                          if counts.get(status.value))
        fresh, fleet = self.saved.coverage
        observed = self.saved.observed_count or 0
        older = len(self.snapshot.assessments) - observed
        kept = (f" ({older} not used: the fleet holds a newer reading of those hosts, or a "
                "still fresh one where this run failed)" if older > 0 else "")
        return (f"snapshot #{self.snapshot_id} saved: {observed} hosts observed by this "
                f"run{kept}, {fleet - observed} carried forward; fleet {fleet} hosts ({parts}); "
                f"coverage {fresh}/{fleet} with a fresh observation; {self.seconds:.1f} s"
                + (f"; {self.outside}" if self.outside else "")
                + (f". The fleet still holds {self.demo_hosts} hosts of the fictional demo "
                   "fleet: `python -m store retire --demo --reason \"real data from now on\"` "
                   "takes them out" if self.demo_hosts else ""))


def _save(store: SnapshotStore, run: Snapshot, catalog: Catalog, policy: Policy,
          began: float, outside: Sequence[EndpointRecord] = ()) -> RunResult:
    snapshot_id = store.save(run, catalog, policy, outside, others=other_catalogs(catalog))
    return RunResult(snapshot_id, run, time.monotonic() - began, store.info(snapshot_id),
                     store.demo_hosts(snapshot_id))


def look_outside(hosts: Sequence[Host], config: FingerprintConfig, *, stream: TextIO,
                 draw: bool, stop: threading.Event | None) -> tuple[EndpointRecord, ...]:
    """Fingerprint every server (its FQDN) and each configured namespace; a progress line on
    ``stream`` when ``draw``. Every failure is in its endpoint's record; a run that cannot
    fingerprint at all warns and gives none (the snapshot is saved without it). ``stop`` set
    raises ``InterruptedError``, as for the probes."""
    endpoints = endpoints_for(hosts, config)
    if not endpoints:
        return ()
    try:
        found = fingerprint_all(endpoints, config, stop=stop, progress=Progress(
            reads(endpoints), stream, unit="endpoints", verb="fingerprinted") if draw else None)
    except InterruptedError:
        raise
    except Exception as error:  # the probes' results are saved regardless
        stream.write(f"warning: the outside view could not be read ({type(error).__name__}: "
                     f"{inert(str(error))[:200]}); the snapshot is saved without it\n")
        return ()
    return tuple(endpoint_record(fp) for fp in found)


def outside_summary(store: SnapshotStore, snapshot_id: int, catalog: Catalog,
                    read: Sequence[EndpointRecord]) -> str:
    """One clause of the run's summary: the endpoints read, the hosts flagged, the findings."""
    failed = sum(1 for r in read if r.failure is not None)
    stored = store.outside(snapshot_id)
    flag = Flag.OUTSIDE_OLDER_THAN_INSIDE.value
    flagged = sum(row[-1] for row in store.group_counts(snapshot_id, catalog)
                  if flag in row[5].split(SEPARATOR))
    findings = len(stored.namespaces) if stored else 0
    return (f"outside view: {len(read)} endpoints read ({len(read) - failed} answered, {failed} "
            f"failed), {flagged} host{'' if flagged == 1 else 's'} flagged {flag}, {findings} "
            f"namespace finding{'' if findings == 1 else 's'}")


def _directory_scope(directory: DirectoryConfig, base: str) -> str:
    return directory_scope(base, [
        ("include_sites", directory.include_sites), ("exclude_sites", directory.exclude_sites),
        ("include_names", directory.include_names), ("exclude_names", directory.exclude_names),
        ("only", directory.only)])


def collect(*, store: SnapshotStore, catalog: Catalog, policy: Policy,
            winrm: WinrmConfig, winrm_password: str,
            directory: DirectoryConfig | None = None, ldap_password: str | None = None,
            inventory: Sequence[InventoryEntry] = (), progress_stream: TextIO = sys.stderr,
            progress: Callable[[bool], None] | None = None,
            started: Callable[[int], None] | None = None,
            stop: threading.Event | None = None, who: str | None = None,
            now: Callable[[], datetime] = lambda: datetime.now(UTC),
            fingerprinting: FingerprintConfig | None = None) -> RunResult:
    """Discover, probe, (fingerprint,) grade and save; raises ``JobError`` (or the
    collectors' errors).

    Progress goes to ``progress`` (called with each host's failed flag) when given, else it is
    drawn on ``progress_stream``, as is the fingerprint's (endpoints; not counted in
    ``progress``); ``started`` learns the number of hosts before probing. ``fingerprinting``
    with ``enabled``: the outside view is read after the probes (``look_outside``).
    """
    began = time.monotonic()
    discovered: list[Host] = []
    scope_parts = []
    complete: tuple[str, ...] = ()
    if directory is not None:
        assert ldap_password is not None
        found = discover(directory, ldap_password)
        discovered = [server.to_host() for server in found.servers]
        # A discovery either lists its whole scope or raises: its members it did not find
        # leave the fleet (compliance/fleet.py). One that lists no server at all (an account
        # that lost its read access, a wrong filter) removes nobody.
        if discovered:
            complete = (_directory_scope(directory, found.base),)
        else:
            progress_stream.write("warning: nothing is removed from the fleet (the discovery "
                                  "below listed no server)\n")
        for warning in found.warnings:  # the empty discovery's base, filter and likely causes
            progress_stream.write(f"warning: {inert(warning)}\n")
        scope_parts.append(f"AD {found.server} {found.base}")
    if inventory:
        scope_parts.append(f"inventory file ({len(inventory)} hosts)")
    in_directory = {host.name.lower() for host in discovered}

    def scopes(host: Host) -> tuple[str, ...]:
        # A file entry for a server AD lists only completes it (an endpoint, a site), so AD's
        # discovery decides its membership; a server only the file lists is a member through
        # the file, and no discovery removes it.
        return complete if host.name.lower() in in_directory else (INVENTORY,)

    hosts, overrides = merge(discovered, list(inventory))
    if not hosts:
        raise JobError("no host to probe: the directory returned none and no inventory was given")
    targets = targets_for(hosts, winrm, overrides)
    if started:
        started(len(targets))
    observations = probe_all(targets, winrm, winrm_password,
                             progress=progress or Progress(len(targets), progress_stream),
                             stop=stop)
    # Before the snapshot's time is taken: every view is then as old as it is, never newer.
    read = (look_outside(hosts, fingerprinting, stream=progress_stream, draw=progress is None,
                         stop=stop) if fingerprinting is not None and fingerprinting.enabled
            else ())
    snapshot = assess(observations, catalog, now(), source="collect", tool_version=__version__,
                      policy=policy, discovered=discovered or hosts, scope="; ".join(scope_parts),
                      label=f"collection of {len(targets)} hosts in "
                            f"{time.monotonic() - began:.0f} s",
                      scopes=scopes, complete_scopes=complete)
    result = _save(store, snapshot, catalog, policy, began, read)
    if fingerprinting is not None and fingerprinting.enabled:
        result = replace(result, outside=outside_summary(store, result.snapshot_id, catalog, read))
    store.record(who or default_actor(), "collect", result.snapshot_id, result.summary())
    return result


@dataclass(frozen=True)
class ImportResult:
    run: RunResult | None
    rejected: list[tuple[str, str]]


def import_documents(paths: Sequence[Path], *, store: SnapshotStore, catalog: Catalog,
                     policy: Policy, who: str | None = None,
                     now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> ImportResult:
    """Store probe documents run by hand as one snapshot; bad files are reported, not fatal."""
    started = time.monotonic()
    observations: list[Observation] = []
    rejected: list[tuple[str, str]] = []
    seen: set[str] = set()
    at = now()
    for path in paths:
        try:
            document = load_document(read_document(path))
        except (OSError, ProbeDocumentError) as error:
            rejected.append((str(path), str(error)))
            continue
        name = str(document["host"]).strip()
        if not name:
            rejected.append((str(path), "the document names no host"))
            continue
        collected = document_time(document)
        if collected is not None and collected - at > policy.clock_skew:
            # It would be graded unknown now, then look fresh for days once its date passed.
            rejected.append((str(path), f"collected_at {collected.isoformat()} is later than "
                                        "now: check the clock of the server that ran the probe"))
            continue
        if name.lower() in seen:
            rejected.append((str(path), f"a second document for host {name} in this import"))
            continue
        seen.add(name.lower())
        host = Host(name=name, fqdn=document.get("fqdn") or None)
        # A hand-run document is as old as the probe run, not as the import: its own time.
        observations.append(observation_from_document(document, host, f"import:{path.name}",
                                                      collected))
    if not observations:
        return ImportResult(None, rejected)
    snapshot = assess(observations, catalog, at, source="import", tool_version=__version__,
                      policy=policy, scope=f"import of {len(observations)} probe documents",
                      label=f"import of {len(observations)} probe documents",
                      scopes=lambda _host: (IMPORT,))
    run = _save(store, snapshot, catalog, policy, started)
    store.record(who or default_actor(), "import", run.snapshot_id,
                 f"{run.summary()}; {len(rejected)} files rejected")
    return ImportResult(run, rejected)


@dataclass(frozen=True)
class Hooks:
    """What a job is handed: where to report progress, and when to give up. Without
    ``progress`` the job draws its own progress bar on its stream (the command line)."""

    started: Callable[[int], None] | None   # the number of hosts, once known
    progress: Callable[[bool], None] | None  # once per finished host: did it fail?
    stop: threading.Event


# A job reports through its hooks and returns its one-line summary.
Job = Callable[[Hooks], str]


@dataclass(frozen=True)
class CollectionPlan:
    """A collection config that passed the checks, and its inventory: what both front-ends
    (``python -m collectors collect`` and the dashboard's *Collect now*) run."""

    config: CollectionConfig
    winrm: WinrmConfig
    inventory: tuple[InventoryEntry, ...] = ()
    inventory_path: Path | None = None
    fingerprint: FingerprintConfig = field(default_factory=FingerprintConfig)

    def describe(self) -> str:
        parts = []
        if self.config.directory is not None:
            parts.append(f"Active Directory ({', '.join(self.config.directory.servers)})")
        if self.inventory_path is not None:
            parts.append(f"inventory {self.inventory_path} ({len(self.inventory)} hosts)")
        return (f"{' + '.join(parts)}; WinRM {self.winrm.scheme} as {self.winrm.username}"
                f"{'; outside view (HTTPS fingerprint)' if self.fingerprint.enabled else ''}; "
                f"config {self.config.path}")


def load_plan(config_path: Path, inventory_path: Path | None = None) -> CollectionPlan:
    """Read and check the config (and inventory); raises ``SettingsError`` / ``InventoryError``."""
    config = load_config(config_path)
    if config.winrm is None:
        raise SettingsError(f"{config_path} has no [winrm] section")
    inventory = tuple(load_inventory(inventory_path)) if inventory_path else ()
    if config.directory is None and not inventory:
        raise SettingsError(f"nothing to probe: configure [ldap] in {config_path} or give an "
                          "inventory file")
    fingerprint = load_fingerprint_config(config_path)
    if fingerprint.enabled:
        TlsContexts.build(fingerprint.ca_file)  # a CA file ssl cannot load: SettingsError now
    return CollectionPlan(config, config.winrm, inventory, inventory_path, fingerprint)


def collection_job(plan: CollectionPlan, *, secrets: Mapping[str, Any], environ: Mapping[str, str],
                   open_store: Callable[[], SnapshotStore], catalog: Catalog, policy: Policy,
                   data_dir: Path, collect_fn: Callable[..., RunResult] | None = None,
                   who: str | None = None, progress_stream: TextIO = sys.stderr,
                   notify_sleep: Callable[[float], None] = time.sleep) -> Job:
    """The collection as a job, for both front-ends: the lock, then passwords, store, probes,
    save, then one notification of what changed (notify/after.py, never failing the run);
    raises what ``collect`` raises, and ``SettingsError`` for a missing password.
    ``secrets`` are the sections the front-end sees: the dashboard's ``st.secrets`` (so secrets
    in ~/.streamlit or given with --secrets.files reach its job), a file for the command line."""

    def job(hooks: Hooks) -> str:
        with ExitStack() as stack:
            stack.enter_context(run_lock(data_dir))  # CollectionBusy when another one runs
            ldap_secret, winrm_secret = passwords(plan.config, secrets, environ)
            if plan.config.kerberos is not None and plan.config.uses_kerberos:
                # One ticket for the run, before the store is opened: a keytab that does not
                # work is said at once, naming the principal and the fix (KerberosError).
                ticket = acquire(plan.config.kerberos)
                stack.enter_context(activate(ticket, plan.config.kerberos.canonicalize))
            # [notifications] and [deadlines] are checked before the run, not after it.
            sections = resolve({}, secrets, environ).secrets
            store = open_store()
            stack.callback(store.dispose)
            result = (collect_fn or collect)(
                store=store, catalog=catalog, policy=policy, winrm=plan.winrm,
                winrm_password=winrm_secret or "", directory=plan.config.directory,
                ldap_password=ldap_secret or "", inventory=list(plan.inventory),
                progress=hooks.progress, started=hooks.started, stop=hooks.stop, who=who,
                progress_stream=progress_stream, fingerprinting=plan.fingerprint)
            # The snapshot is saved: what follows never fails the run (notify/after.py).
            told = after_snapshot(store, result.snapshot_id, catalog,
                                  settings=sections.notifications,
                                  deadlines=sections.deadlines.policy(), evaluation=policy,
                                  now=datetime.now(UTC), who=who or default_actor(),
                                  sleep=notify_sleep) if configured(sections.notifications) else ""
            return result.summary() + (f". {inert(told)}" if told else "")

    return job
