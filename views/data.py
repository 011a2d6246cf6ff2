"""The dashboard's only cached functions: thin reads over the store and the catalogue.

Pages never open the store or talk to collectors themselves; they call these.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias

import pandas as pd
import streamlit as st

from compliance.catalog import Catalog, load_catalog
from compliance.evaluate import Policy
from compliance.models import Assessment, EvidenceKind, Failure, Flag, Host, Verdict
from compliance.worklist import plan_waves, rank
from settings import Settings, load_settings
from store import SnapshotInfo, SnapshotStore
from store.evidence import build_bundle
from store.export import HOST_COLUMNS, host_row
from store.export import worklist_rows as worklist_rows_of
from store.history import Diff, Reevaluation, diff, reevaluate
from store.verification import VerifyReport

TTL_SECONDS = 60


def secrets() -> Mapping[str, Any]:
    """The secrets sections (never shown on a page)."""
    return _secrets()


def _secrets() -> Mapping[str, Any]:
    try:
        return {key: st.secrets[key] for key in st.secrets}
    except Exception:  # no secrets.toml: every setting falls back to env or default
        return {}


def settings() -> Settings:
    """The settings in force; raises ``SettingsError`` with the bad setting's name."""
    return load_settings(_secrets(), os.environ)


@st.cache_resource(show_spinner=False)
def catalog() -> Catalog:
    return load_catalog()


@st.cache_resource(show_spinner=False)
def _store(url: str) -> SnapshotStore:
    # A SQLAlchemy engine is a thread-safe connection pool: one per URL and process.
    return SnapshotStore.open(url)


# Seeds an empty store: (store, catalogue, now, policy). The frame (app.py) hands in the
# collectors' demo seeder, so the views never import the collectors.
Seeder: TypeAlias = Callable[[SnapshotStore, Catalog, datetime, Policy], object]


@st.cache_resource(show_spinner="Preparing the snapshot store…")
def _prepared(url: str, demo: bool, max_age_days: float, _seed: Seeder | None) -> bool:
    """Seed the demo fleet on first start when the store is empty and demo is on."""
    opened = _store(url)
    if demo and _seed is not None and opened.is_empty():
        _seed(opened, catalog(), datetime.now(UTC), Policy(max_age=timedelta(days=max_age_days)))
        return True
    return False


def prepare(config: Settings, seed: Seeder | None = None) -> None:
    """Open the store and, on first start with demo on, fill it with ``seed``; raises
    ``StoreError`` when it cannot be opened."""
    _prepared(config.store_url, config.demo, config.max_age.total_seconds() / 86400, seed)


def _max_age_days() -> float:
    return settings().max_age.total_seconds() / 86400


def _policy(max_age_days: float) -> Policy:
    return Policy(max_age=timedelta(days=max_age_days))


def snapshots(url: str) -> list[SnapshotInfo]:
    """Every snapshot header, oldest first. A format 1 snapshot (written before snapshots held
    the whole fleet) shows the figures of its composed fleet, like every other view of it."""
    return _snapshots(url, _max_age_days())


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def _snapshots(url: str, max_age_days: float) -> list[SnapshotInfo]:
    listed = _store(url).history()
    legacy = tuple(s.id for s in listed if not s.fleet and not s.pruned)
    if not legacy:
        return listed
    figures = _legacy_figures(url, legacy, max_age_days)
    return [replace(s, **figures[s.id]) if s.id in figures else s for s in listed]


@st.cache_data(show_spinner="Composing the fleet of snapshots from before fleets…")
def _legacy_figures(url: str, ids: tuple[int, ...], max_age_days: float) -> dict[int, dict[str, Any]]:
    # Format 1 snapshots never change, so this is kept for as long as the process runs.
    return _store(url).legacy_figures(catalog(), _policy(max_age_days))


def assessments(url: str, snapshot_id: int) -> list[Assessment]:
    """The snapshot's whole fleet (``SnapshotStore.fleet``), in fleet order."""
    return _fleet(url, snapshot_id, _max_age_days())


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def _fleet(url: str, snapshot_id: int, max_age_days: float) -> list[Assessment]:
    return _store(url).fleet(snapshot_id, catalog(), _policy(max_age_days))


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def failures(url: str, snapshot_id: int) -> list[tuple[str, Failure, int | None]]:
    """(host, failure, observed_in) for every host of a snapshot whose latest observation is a
    failure; ``observed_in`` is None when the snapshot's own run failed on it. Only these are
    kept, so a page listing recent runs does not copy every host of each on a rerun."""
    found: list[tuple[str, Failure, int | None]] = []
    for a in _store(url).assessments(snapshot_id):
        if a.observation.failure is not None:
            found.append((a.observation.host.name, a.observation.failure, a.observed_in))
            continue
        # The run failed on a host whose fresh reading it carried: the failure is evidence.
        failed = next((e for e in a.verdict.evidence if e.kind == EvidenceKind.COLLECTION_FAILED), None)
        if failed is not None:
            reason, _, detail = failed.value.partition(": ")
            found.append((a.observation.host.name, Failure(reason, detail), None))
    return found


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def host_table(url: str, snapshot_id: int) -> pd.DataFrame:
    """One row per host of a snapshot, as ``store.export.host_row`` shapes it."""
    rows = [host_row(a, snapshot_id) for a in assessments(url, snapshot_id)]
    return pd.DataFrame(rows, columns=list(HOST_COLUMNS))


def latest(url: str) -> SnapshotInfo | None:
    listed = snapshots(url)
    return listed[-1] if listed else None


def is_demo(url: str) -> bool:
    """Whether the latest snapshot's fleet holds hosts of the fictional demo fleet (carried
    forward until ``python -m store retire --demo`` takes them out)."""
    newest = latest(url)
    return newest is not None and _demo_hosts(url, newest.id) > 0


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def _demo_hosts(url: str, snapshot_id: int) -> int:
    return _store(url).demo_hosts(snapshot_id)


def verdicts(url: str, snapshot_id: int) -> list[Verdict]:
    """The verdicts of the snapshot's whole fleet."""
    return _verdicts(url, snapshot_id, _max_age_days())


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def _verdicts(url: str, snapshot_id: int, max_age_days: float) -> list[Verdict]:
    store = _store(url)
    if store.info(snapshot_id).fleet:
        return store.verdicts(snapshot_id)  # cheaper: no observation decoded
    return [a.verdict for a in _fleet(url, snapshot_id, max_age_days)]


def assessment(url: str, snapshot_id: int, host: str) -> Assessment | None:
    """One host's observation and verdict (the Hosts page's detail view)."""
    return _assessment(url, snapshot_id, host, _max_age_days())


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def _assessment(url: str, snapshot_id: int, host: str, max_age_days: float) -> Assessment | None:
    store = _store(url)
    if store.info(snapshot_id).fleet:
        return store.assessment(snapshot_id, host)
    return next((a for a in _fleet(url, snapshot_id, max_age_days)
                 if a.observation.host.name == host), None)


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def worklist_rows(url: str, snapshot_id: int, per_wave: int) -> list[dict[str, Any]]:
    """The snapshot's worklist in maintenance waves."""
    info = _store(url).info(snapshot_id)
    return worklist_rows_of(plan_waves(rank(assessments(url, snapshot_id)), per_wave),
                            snapshot_id, info.taken_at.isoformat())


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def flag_counts(url: str, snapshot_id: int) -> dict[str, int]:
    """How many hosts of a snapshot carry each flag (``Flag`` values; absent flags count 0)."""
    counts = dict.fromkeys((flag.value for flag in Flag), 0)
    for verdict in verdicts(url, snapshot_id):
        for flag in verdict.flags:
            counts[flag.value] += 1
    return counts


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def host_timeline(url: str, host: str) -> list[tuple[SnapshotInfo, dict[str, Any], int | None]]:
    return _store(url).host_timeline(host)


@st.cache_data(ttl=TTL_SECONDS, show_spinner="Verifying the chain…")
def verify(url: str, _key: bytes | None = None) -> VerifyReport:
    """Recompute every digest and link, and the HMACs when a key is set (cached briefly: it
    reads every stored row; the key is left out of the cache key)."""
    return _store(url).verify(_key)


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def snapshot_diff(url: str, before_id: int, after_id: int) -> Diff:
    """What changed between the two snapshots' whole fleets."""
    return diff(verdicts(url, before_id), verdicts(url, after_id))


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def reevaluation(url: str, snapshot_id: int, max_age_days: float = 7.0) -> list[Reevaluation]:
    info = _store(url).info(snapshot_id)
    return reevaluate(assessments(url, snapshot_id), catalog(), info.taken_at,
                      _policy(max_age_days))


@st.cache_data(ttl=TTL_SECONDS, show_spinner="Building the evidence bundle…")
def evidence_bundle(url: str, snapshot_id: int, key: bytes | None = None) -> bytes:
    """A bundle of one snapshot; with the signing key its manifest carries the HMAC and the
    chain is verified with the key (the cached store is opened without it)."""
    store = SnapshotStore(_store(url).engine, key) if key else _store(url)
    return build_bundle(store, store.info(snapshot_id), datetime.now(UTC))


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def discovered(url: str, snapshot_id: int) -> list[Host]:
    return _store(url).discovered(snapshot_id)


def as_of(url: str, moment: datetime) -> SnapshotInfo | None:
    """The snapshot in force at ``moment`` (from the cached history)."""
    candidates = [s for s in snapshots(url) if s.taken_at <= moment]
    return candidates[-1] if candidates else None


@st.cache_data(ttl=10, show_spinner=False)
def audit_log(url: str) -> list[dict[str, Any]]:
    return _store(url).audit_log()


def record_export(config: Settings, action: str, snapshot_id: int, detail: str) -> None:
    """Audit a download from a page (called from the download button's on_click)."""
    store = store_for_writing(config)
    try:
        store.record(str(st.session_state.get("who", "dashboard user")), action, snapshot_id,
                     detail)
    finally:
        store.dispose()


def store_for_writing(config: Settings) -> SnapshotStore:
    """The store a page that records something (collection, import) writes to."""
    return SnapshotStore.open(config.store_url, config.signing_key, config.lock_timeout)


def invalidate() -> None:
    """Forget cached reads: call after a collection or import saved a snapshot."""
    st.cache_data.clear()
