"""The dashboard's only cached functions: thin reads over the store and the catalogue.

Pages never open the store or talk to collectors themselves; they call these.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias

import pandas as pd
import streamlit as st
from sqlalchemy import Engine

from compliance.acceptance import AcceptanceError, accept
from compliance.catalog import Catalog, load_catalog, load_catalogs
from compliance.deadline import DeadlinePolicy
from compliance.evaluate import Policy
from compliance.investigation import Investigation, InvestigationState
from compliance.investigation_record import BEFORE, stored_state
from compliance.models import Assessment, Flag, Status, worst_status
from compliance.outside_record import EndpointRecord, OutsideRecord
from compliance.plan import Plan, next_steps, plan_host
from compliance.sulevel import SuState, su_level
from compliance.summary import (
    ALL,
    AdvisoryStatus,
    HostSummary,
    advisories_of,
    full_build,
    judged_by_all,
    shown_action,
)
from compliance.worklist import (
    INDICATORS_FIRST,
    PRIORITY_NAMES,
    plan_triage,
    plan_with_acceptances,
    priority,
    rank,
    stored_priority,
    triage_priority,
)
from gcpause import gc_paused
from settings import Settings, SettingsError, load_settings
from store import SnapshotInfo, SnapshotStore, chain
from store.acceptances import acceptances as stored_acceptances
from store.acceptances import record as record_stored_acceptance
from store.acceptances import standing_in
from store.deadlines import host_deadlines
from store.evidence import build_bundle
from store.export import WORKLIST_COLUMNS, Owners, inert
from store.export import worklist_rows as worklist_rows_of
from store.history import Diff, Reevaluation, diff, reevaluate
from views import labels


def secrets() -> Mapping[str, Any]:
    """The secrets sections (never shown on a page)."""
    return _secrets()


def _secrets() -> Mapping[str, Any]:
    """``st.secrets`` as a mapping; none at all is no secrets, but a file that cannot be
    parsed is a ``SettingsError`` (ignoring it would drop the signing key and the roles)."""
    from streamlit.errors import StreamlitSecretNotFoundError

    try:
        return {key: st.secrets[key] for key in st.secrets}
    except StreamlitSecretNotFoundError as error:
        if "pars" in str(error).lower():
            raise SettingsError(f"the secrets file cannot be read: "
                                f"{str(error).splitlines()[0][:300]}") from None
        return {}  # no secrets file: every setting falls back to env or default


def settings() -> Settings:
    """The settings in force; raises ``SettingsError`` with the bad setting's name."""
    return load_settings(_secrets(), os.environ)


@st.cache_resource(show_spinner=False)
def catalog() -> Catalog:
    return load_catalog()


@st.cache_resource(show_spinner=False)
def catalogs() -> tuple[Catalog, ...]:
    """One catalogue per advisory, the snapshot's own (March 2021) first."""
    return load_catalogs()


def advisory_choices() -> list[str]:
    """The frame's advisory selector: each advisory's id, then ``ALL`` (each host at its
    worst)."""
    return [*(c.advisory.id for c in catalogs()), ALL]


def advisory_label(choice: str) -> str:
    if choice == ALL:
        return "All advisories (worst)"
    found = next((c.advisory for c in catalogs() if c.advisory.id == choice), None)
    return found.title if found is not None else choice


def advisory_short(choice: str) -> str:
    """A short name for a column header ("ProxyShell"); the id when unknown."""
    if choice == ALL:
        return "Worst"
    found = next((c.advisory for c in catalogs() if c.advisory.id == choice), None)
    return found.short if found is not None else choice


def chosen_advisory(snapshot: SnapshotInfo) -> str | None:
    """The advisory the pages show (the frame's selector): None for the snapshot's own, the
    default; else an advisory id or ``ALL``."""
    choice = st.session_state.get("advisory")
    return None if not choice or choice == snapshot.advisory_id else str(choice)


def judged_by_others(url: str, snapshot_id: int) -> bool:
    """Whether the snapshot holds verdicts for other advisories (``SnapshotStore.
    judged_by_others``)."""
    return _judged_by_others(url, snapshot_id)


@st.cache_data(show_spinner=False, max_entries=16)
def _judged_by_others(url: str, snapshot_id: int) -> bool:
    return _store(url).judged_by_others(snapshot_id)


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


# Caching: a stored snapshot never changes, so what is read of one is kept under its id, with
# no time limit; what depends on the whole store (the list of snapshots, verification, the
# audit log) is kept under the chain heads, which one small query reads on every run, so a
# snapshot saved by another process shows at once. Values are small tables, never lists of
# full observations; max_entries bounds what a long-running dashboard holds.


def heads(url: str) -> str:
    """Both chain heads: what caches of the whole store are keyed on (one small query)."""
    return _store(url).heads()


def engine(url: str) -> Engine:
    """The process's connection pool for the store (for the background verification)."""
    return _store(url).engine


def snapshots(url: str) -> list[SnapshotInfo]:
    """Every snapshot header, oldest first. A format 1 snapshot (written before snapshots held
    the whole fleet) shows the figures of its composed fleet, like every other view of it."""
    return _snapshots(url, heads(url), _max_age_days())


@st.cache_data(show_spinner=False, max_entries=4)
def _snapshots(url: str, heads_key: str, max_age_days: float) -> list[SnapshotInfo]:
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


def host_table(url: str, snapshot_id: int, advisory: str | None = None) -> pd.DataFrame:
    """One row per host of a snapshot (``HOST_TABLE_COLUMNS``: the summary columns the pages
    use, then ``observed_in``, the snapshot whose run made the observation, ``carried``, and
    ``need``, the worklist priority's name, "" when the host needs nothing), in fleet order,
    read from the summary columns alone. ``advisory`` (``chosen_advisory``): status, flags,
    mitigations and action as that advisory (or ``ALL``) judged the host
    (``HostSummary.through``: unknown where it was not judged by it)."""
    table = _host_table(url, snapshot_id, _store(url).info(snapshot_id).hash, _max_age_days(),
                        advisory)
    # Copy-on-write (pandas 3): what the caller changes on its copy never reaches the cache's.
    return table.copy(deep=False)


# The summary columns the pages show or filter on (the rest, long texts such as reason and
# failure detail, are read for one host's detail: a 50,000-host table stays small).
HOST_TABLE_FIELDS = ("host", "status", "product", "cu", "build", "build_source", "known_build",
                     "site", "dag", "roles", "flags", "mitigations", "action", "observed_at",
                     "investigation", "investigation_action")
HOST_TABLE_COLUMNS = (*HOST_TABLE_FIELDS, "observed_in", "carried", "need", "su_level")


def _investigation_cells(state: Any, action: Any, status: Any) -> tuple[str, str]:
    """A stored row's investigation state and next action as the pages show them: a row
    stored before issue 21 (no state) reads as not investigated (``stored_state``)."""
    try:
        judged = InvestigationState(state) if state else None
        shown = stored_state(judged, Status(status))
    except ValueError:  # a value no writer makes: never clean
        return InvestigationState.NOT_INVESTIGATED.value, BEFORE
    # The action quotes server-read text (threat names, paths): escapes and bidirectional
    # overrides shown as such (``inert``), as the exports show them.
    return shown.value, inert(action or "") if judged is not None else BEFORE


def su_level_text(build: str, build_source: str) -> str:
    """A host's Security Update level in words (compliance/sulevel.py): "current", "3 behind"
    or "unknown"; only a full build (ExSetup.exe's, or an installed update's) can say it."""
    parsed = full_build(build, build_source)
    if parsed is None:
        return "unknown"
    level = su_level(parsed, catalog())
    if level.state is SuState.BEHIND:
        return f"{level.behind} behind"
    return level.state.value


# A resource, not data: st.cache_data pickles what it keeps and unpickles each read, which
# for 50,000 hosts held three copies of the table at once (the Hosts page's peak memory). A
# stored snapshot never changes; its digest is in the key, so an id reused after the store
# was replaced is a new entry.
@st.cache_resource(show_spinner=False, max_entries=4)
@gc_paused()  # tens of thousands of rows built, no cycles among them (gcpause.py)
def _host_table(url: str, snapshot_id: int, digest: str, max_age_days: float,
                advisory: str | None = None) -> pd.DataFrame:
    store = _store(url)
    if advisory is not None:
        rows = [(*(stored[name] for name in HOST_TABLE_FIELDS), summary.observed_in)
                for summary in _through(store, snapshot_id, max_age_days, advisory)
                for stored in (summary.to_columns(),)]
    elif store.info(snapshot_id).fleet:
        # Batch by batch into the table's compact (Arrow) columns: the rows as Python objects
        # are never all held at once (the Hosts page's peak memory at 50,000 hosts).
        parts = [_host_frame(batch, snapshot_id)
                 for batch in store.summary_batches(snapshot_id, fields=HOST_TABLE_FIELDS)]
        if parts:
            return pd.concat(parts, ignore_index=True)
        rows = []
    else:
        rows = []
        for summary in store.summaries(snapshot_id, catalog(), _policy(max_age_days)):
            stored = summary.to_columns()
            rows.append((*(stored[name] for name in HOST_TABLE_FIELDS), summary.observed_in))
    return _host_frame(rows, snapshot_id)


def _host_frame(rows: Sequence[tuple[Any, ...]], snapshot_id: int) -> pd.DataFrame:
    """``HOST_TABLE_COLUMNS`` of ``rows`` (``HOST_TABLE_FIELDS`` then ``observed_in``)."""
    # What the host needs (the worklist's priority, by name; "" for nothing): few distinct
    # (status, flags) pairs in a fleet, so each is judged once; read from the rows, not from
    # the DataFrame's Arrow-backed columns (iterating those in Python is slow).
    # An investigation that found indicators (issue 21) counts as compromise indicators.
    status_at, flags_at = HOST_TABLE_FIELDS.index("status"), HOST_TABLE_FIELDS.index("flags")
    state_at = HOST_TABLE_FIELDS.index("investigation")
    needs: dict[tuple[str, str, str | None], str] = {}
    column = []
    for row in rows:
        judged = (row[status_at], row[flags_at], row[state_at])
        if judged not in needs:
            rank_ = stored_priority(*judged)
            needs[judged] = "" if rank_ is None else PRIORITY_NAMES[rank_]
        column.append(needs[judged])
    table = pd.DataFrame(list(rows), columns=[*HOST_TABLE_FIELDS, "observed_in"])
    table["carried"] = table["observed_in"].notna()
    table["observed_in"] = table["observed_in"].fillna(snapshot_id).astype("int64")
    table["need"] = column
    levels: dict[tuple[str, str], str] = {}
    source_at = HOST_TABLE_FIELDS.index("build_source")
    build_at = HOST_TABLE_FIELDS.index("build")
    column = []
    for row in rows:  # few distinct builds in a fleet: each judged once
        key = (row[build_at], row[source_at])
        if key not in levels:
            levels[key] = su_level_text(*key)
        column.append(levels[key])
    table["su_level"] = column
    action_at = HOST_TABLE_FIELDS.index("investigation_action")
    cells = [_investigation_cells(row[state_at], row[action_at], row[status_at]) for row in rows]
    table["investigation"] = [state for state, _action in cells]
    table["investigation_action"] = [action for _state, action in cells]
    # The next action as shown: compromise first where the investigation found indicators.
    action_at = HOST_TABLE_FIELDS.index("action")
    table["action"] = [shown_action(row[action_at], state)
                       for row, (state, _action) in zip(rows, cells, strict=True)]
    return table


def investigation_counts(url: str, snapshot_id: int) -> dict[str, int]:
    """How many hosts of a snapshot are in each investigation state (issue 21; a host stored
    before it counts as not investigated), and under ``"patched_not_investigated"`` how many
    patched hosts nobody is recorded to have investigated (the Overview's figure). Counted by
    the store, a few rows whatever the fleet's size."""
    return _investigation_counts(url, snapshot_id, _max_age_days())


@st.cache_data(show_spinner=False, max_entries=8)
def _investigation_counts(url: str, snapshot_id: int, max_age_days: float) -> dict[str, int]:
    counted = {state.value: 0 for state in InvestigationState}
    counted["patched_not_investigated"] = 0
    for status, state, hosts in _store(url).investigation_counts(snapshot_id, catalog(),
                                                                 _policy(max_age_days)):
        shown, _action = _investigation_cells(state, "", status)
        counted[shown] = counted.get(shown, 0) + hosts
        if status == Status.PATCHED.value and shown == InvestigationState.NOT_INVESTIGATED.value:
            counted["patched_not_investigated"] += hosts
    return counted


def investigation_trend(url: str, snapshots: Sequence[SnapshotInfo],
                        ) -> dict[int, dict[tuple[str, str | None], int]]:
    """Per snapshot of ``snapshots`` (by id): its hosts per (status, investigation state as
    stored; None: none stored), the trends of the Overview and the report (issue 21). The
    snapshots that can hold states are counted by the store in ONE grouped query, cached under
    their ids; one saved before issue 21 (format 6 or earlier), a format 1 or a pruned one
    holds none: its header's status counts, every state None (shown as not read, never as
    clean). A few rows per snapshot, whatever the fleet's size."""
    asked = tuple(sorted({s.id for s in snapshots
                          if s.format >= chain.INVESTIGATION_FORMAT and not s.pruned}))
    read = _investigation_trend(url, asked) if asked else {}
    return {s.id: read.get(s.id) or {(status, None): hosts for status, hosts in s.counts.items()
                                     if hosts}
            for s in snapshots}


@st.cache_data(show_spinner=False, max_entries=8)
def _investigation_trend(url: str, snapshot_ids: tuple[int, ...],
                         ) -> dict[int, dict[tuple[str, str | None], int]]:
    # Stored snapshots never change: kept under their ids, with no time limit.
    return _store(url).investigation_trend(snapshot_ids)


def investigation(url: str, snapshot_id: int, host: str) -> Investigation | None:
    """One host's stored investigation after the fix (None: none stored, a snapshot from
    before issue 21)."""
    return _investigation(url, snapshot_id, host)


@st.cache_data(show_spinner=False, max_entries=64)
def _investigation(url: str, snapshot_id: int, host: str) -> Investigation | None:
    return _store(url).investigation(snapshot_id, host)


def _through(store: SnapshotStore, snapshot_id: int, max_age_days: float,
             advisory: str) -> list[HostSummary]:
    own = store.info(snapshot_id).advisory_id
    expected = [c.advisory.id for c in catalogs()]
    return [summary.through(advisory, own, expected)
            for summary in store.summaries(snapshot_id, catalog(), _policy(max_age_days))]


MATRIX_WORST = "worst"


def advisory_matrix(url: str, snapshot_id: int) -> pd.DataFrame:
    """Host x advisory: one row per host (fleet order), ``host``, one status column per
    advisory (named by its id; "" where the snapshot holds no verdict for it), then
    ``MATRIX_WORST``."""
    return _advisory_matrix(url, snapshot_id, _max_age_days())


@st.cache_data(show_spinner=False, max_entries=4)
def _advisory_matrix(url: str, snapshot_id: int, max_age_days: float) -> pd.DataFrame:
    store = _store(url)
    own = store.info(snapshot_id).advisory_id
    ids = [c.advisory.id for c in catalogs()]
    rows = []
    if store.info(snapshot_id).fleet:
        # From three stored columns: a fleet has few distinct (status, per-advisory verdicts)
        # pairs, each read once (50,000 full summaries were the Hosts page's largest cost).
        cells: dict[tuple[str, Any], tuple[str, ...]] = {}
        for host, status, text, _observed_in in store.summary_rows(
                snapshot_id, fields=("host", "status", "advisories")):
            if (status, text) not in cells:
                cells[(status, text)] = _matrix_cells(AdvisoryStatus(own, Status(status)),
                                                      advisories_of(text), ids)
            rows.append((host, *cells[(status, text)]))
    else:
        for summary in store.summaries(snapshot_id, catalog(), _policy(max_age_days)):
            rows.append((summary.host, *_matrix_cells(
                AdvisoryStatus(own, summary.status), summary.advisories, ids)))
    return pd.DataFrame(rows, columns=["host", *ids, MATRIX_WORST])


def _matrix_cells(mine: AdvisoryStatus, others: Sequence[AdvisoryStatus],
                  ids: Sequence[str]) -> tuple[str, ...]:
    """One matrix row's status cells: each advisory's ("" where none is held), then the worst
    as "all advisories" reads it (one without a verdict counts as unknown)."""
    statuses = {mine.advisory: mine.status, **{a.advisory: a.status for a in others}}
    judged = judged_by_all(mine, others, ids)
    worst = mine.status if judged is None else worst_status(a.status for a in judged)
    return (*(statuses[i].value if i in statuses else "" for i in ids), worst.value)


UNKNOWN_BUILD_COLUMNS = ("host", "build", "product", "cu", "status", "flags")


def unknown_builds(url: str, snapshot_id: int) -> pd.DataFrame:
    """The hosts of a snapshot whose reported build the catalogue did not know
    (``UNKNOWN_BUILD_COLUMNS``, fleet order): the Catalog page's warning, without the fleet."""
    return _unknown_builds(url, snapshot_id, _max_age_days())


@st.cache_data(show_spinner=False, max_entries=8)
def _unknown_builds(url: str, snapshot_id: int, max_age_days: float) -> pd.DataFrame:
    return pd.DataFrame(_store(url).unknown_builds(snapshot_id, catalog(), _policy(max_age_days)),
                        columns=list(UNKNOWN_BUILD_COLUMNS))


GROUP_COLUMNS = ("product", "cu", "site", "dag", "status", "flags", "need", "hosts")


def fleet_groups(url: str, snapshot_id: int, advisory: str | None = None) -> pd.DataFrame:
    """How many hosts (``hosts``) of a snapshot share each product, CU, AD site, DAG, status
    and flags, with their ``need`` (as ``host_table``'s): the Overview's charts and headline,
    a few hundred rows whatever the fleet's size (``GROUP_COLUMNS``). ``advisory`` as
    ``host_table``'s (then counted from its table)."""
    if advisory is not None:
        table = host_table(url, snapshot_id, advisory)
        grouped = (table.groupby(["product", "cu", "site", "dag", "status", "flags", "need"],
                                 sort=False).size().reset_index(name="hosts"))
        return grouped[list(GROUP_COLUMNS)]
    return _fleet_groups(url, snapshot_id, _max_age_days())


@st.cache_data(show_spinner=False, max_entries=8)
def _fleet_groups(url: str, snapshot_id: int, max_age_days: float) -> pd.DataFrame:
    # Counted with the investigation state (issue 21: one that found indicators is a need),
    # then summed over it.
    groups = _store(url).need_groups(snapshot_id, catalog(), _policy(max_age_days))
    rows = []
    for product, cu, site, dag, status, flags, state, hosts in groups:
        rank_ = stored_priority(status, flags, state)
        rows.append((product, cu, site, dag, status, flags,
                     "" if rank_ is None else PRIORITY_NAMES[rank_], hosts))
    table = pd.DataFrame(rows, columns=list(GROUP_COLUMNS))
    return (table.groupby(list(GROUP_COLUMNS[:-1]), sort=False)["hosts"].sum().reset_index()
            [list(GROUP_COLUMNS)])


def compromised_count(url: str, snapshot_id: int, advisory: str | None = None) -> int:
    """How many hosts of a snapshot show compromise indicators: a CVE check hit, or an
    investigation that found a detection or a possible web shell (compliance/worklist.py
    ``compromised``); the Overview's one "Indicators found" figure, the headline's too."""
    groups = fleet_groups(url, snapshot_id, advisory)
    return int(groups.loc[groups["need"] == PRIORITY_NAMES[INDICATORS_FIRST], "hosts"].sum())


# The outside view (issue 18): what a snapshot holds of the unauthenticated HTTPS look, as
# three small tables (one row per endpoint, per disclosure, per namespace finding).
ENDPOINT_COLUMNS = ("name", "kind", "url", "observed_at", "tls_verified", "tls_problem",
                    "disclosed", "owa_status", "owa_seconds", "ecp_status", "ecp_seconds",
                    "failure_reason", "failure_detail", "carried_from")
DISCLOSURE_COLUMNS = ("name", "kind", "source", "build", "certainty", "raw", "where", "problem")
NAMESPACE_COLUMNS = ("namespace", "kind", "finding", "builds", "seen", "hosts", "action")


def endpoint_coverage(endpoints: pd.DataFrame) -> tuple[int, int, int]:
    """Of outside-view endpoints (``OutsideTables.endpoints`` rows): how many were read with a
    trusted certificate, how many failed, and how many were read over an untrusted one (what
    they disclosed is shown, never compared): the Overview's and the Collection page's counts."""
    read = endpoints["failure_reason"] == ""
    untrusted = int((read & ~endpoints["tls_verified"]).sum())
    return int(read.sum()) - untrusted, int((~read).sum()), untrusted


@dataclass(frozen=True, eq=False)
class OutsideTables:
    """``endpoints`` (``ENDPOINT_COLUMNS``: ``tls_verified`` whether the certificate validated,
    ``disclosed`` each build with its certainty, the OWA and ECP answers' status and seconds
    (NA when none), the failure's reason ("" when read), ``carried_from`` the snapshot whose run
    read it (NA: this snapshot's run)); ``disclosures`` (``DISCLOSURE_COLUMNS``, one row per
    disclosure, certainty as its label); ``namespaces`` (``NAMESPACE_COLUMNS``, ``kind`` the
    stored value, ``finding`` its label). Every text is as the network or AD gave it: shown in
    cells or through ``literal``, never as Markdown."""

    endpoints: pd.DataFrame
    disclosures: pd.DataFrame
    namespaces: pd.DataFrame

    def server(self, name: str, fqdn: str = "") -> pd.DataFrame:
        """The server endpoints of a host, as ``compliance.outside`` matches them: those named
        the host's inventory name, else its FQDN (any case), newest first (the first row is
        the one the reconciliation read)."""
        table = self.endpoints[self.endpoints["kind"] == "server"]
        names = table["name"].map(lambda n: str(n).casefold())
        for wanted in (name, fqdn):
            chosen = table[names == wanted.casefold()] if wanted else table.iloc[0:0]
            if len(chosen):
                return chosen.sort_values("observed_at", ascending=False, kind="stable")
        return table.iloc[0:0]


def outside(url: str, snapshot_id: int) -> OutsideTables | None:
    """The snapshot's outside view as ``OutsideTables``; None when it was not fingerprinted.
    ``StoreError`` when its stored document cannot be read."""
    return _outside(url, snapshot_id)


@st.cache_data(show_spinner=False, max_entries=8)
def _outside(url: str, snapshot_id: int) -> OutsideTables | None:
    record = _store(url).outside(snapshot_id)
    return None if record is None else outside_tables(record)


def _disclosed(record: EndpointRecord) -> str:
    return "; ".join(f"{s.build} ({labels.certainty_label(s.certainty)}, {s.source})"
                     for s in record.disclosures if s.build is not None)


def outside_tables(record: OutsideRecord) -> OutsideTables:
    """``record`` as the pages' tables (pure)."""
    endpoints = pd.DataFrame([
        (r.name, r.kind.value, r.url, r.observed_at, r.trusted,
         r.tls.problem if r.tls else "", _disclosed(r),
         r.owa.status if r.owa else None, r.owa.seconds if r.owa else None,
         r.ecp.status if r.ecp else None, r.ecp.seconds if r.ecp else None,
         r.failure.reason if r.failure else "", r.failure.detail if r.failure else "",
         r.observed_in) for r in record.endpoints], columns=list(ENDPOINT_COLUMNS))
    for column in ("owa_status", "ecp_status", "carried_from"):
        endpoints[column] = endpoints[column].astype("Int64")
    for column in ("owa_seconds", "ecp_seconds"):
        endpoints[column] = endpoints[column].astype("float64")
    endpoints["tls_verified"] = endpoints["tls_verified"].astype(bool)
    disclosures = pd.DataFrame([
        (r.name, r.kind.value, s.source, str(s.build) if s.build else "",
         labels.certainty_label(s.certainty) if s.build else "", s.raw, s.where, s.problem)
        for r in record.endpoints for s in r.disclosures], columns=list(DISCLOSURE_COLUMNS))
    namespaces = pd.DataFrame([
        (f.namespace, f.kind.value, labels.finding_label(f.kind.value),
         ", ".join(map(str, f.builds)), ", ".join(map(str, f.seen)), ", ".join(f.hosts), f.action)
        for f in record.namespaces], columns=list(NAMESPACE_COLUMNS))
    return OutsideTables(endpoints, disclosures, namespaces)


def latest(url: str) -> SnapshotInfo | None:
    listed = snapshots(url)
    return listed[-1] if listed else None


def is_demo(url: str) -> bool:
    """Whether the latest snapshot's fleet holds hosts of the fictional demo fleet (carried
    forward until ``python -m store retire --demo`` takes them out)."""
    newest = latest(url)
    return newest is not None and _demo_hosts(url, newest.id) > 0


@st.cache_data(show_spinner=False, max_entries=8)
def _demo_hosts(url: str, snapshot_id: int) -> int:
    return _store(url).demo_hosts(snapshot_id)


def assessment(url: str, snapshot_id: int, host: str) -> Assessment | None:
    """One host's observation and verdict (the Hosts page's detail view: the only page that
    decodes a host's JSON)."""
    return _assessment(url, snapshot_id, host, _max_age_days())


@st.cache_data(show_spinner=False, max_entries=64)
def _assessment(url: str, snapshot_id: int, host: str, max_age_days: float) -> Assessment | None:
    store = _store(url)
    if store.info(snapshot_id).fleet:
        return store.assessment(snapshot_id, host)
    return next((a for a in store.fleet(snapshot_id, catalog(), _policy(max_age_days))
                 if a.observation.host.name == host), None)


def plan(url: str, snapshot_id: int, host: str) -> Plan | None:
    """The host's upgrade plan (compliance/plan.py) towards every advisory's fix and the
    newest Security Update, from what the snapshot holds of it, on the snapshot's date."""
    found = assessment(url, snapshot_id, host)
    if found is None:
        return None
    return plan_host(found.observation, catalog(), catalogs(),
                     on=_store(url).info(snapshot_id).taken_at.date())


def worklist_table(url: str, snapshot: SnapshotInfo, latest: bool,
                   per_wave: int, advisory: str | None = None) -> pd.DataFrame:
    """The snapshot's worklist in maintenance waves, one row per host needing work in
    ``store.export.WORKLIST_COLUMNS``, each host's owner from ``[worklist]`` in the settings;
    hosts under a risk acceptance in force (``accepted``) come after every other host; ``due``
    and ``overdue`` as ``with_deadlines`` gives them (at ``deadline_moment``).
    ``worklist_rows`` gives it as the exports take it. ``advisory`` as ``host_table``'s."""
    config = settings()
    # Acceptances accept a gap of the March 2021 verdicts: another advisory's list has none.
    badges = accepted(url, snapshot, latest) if advisory is None else {}
    table = _worklist(url, snapshot.id, snapshot.hash, per_wave, _max_age_days(),
                      Owners.of(dict(config.site_owners), dict(config.dag_owners)),
                      tuple(sorted(badges.items())), advisory).copy(deep=False)
    dated = with_deadlines(table, url, snapshot.id, deadline_moment(snapshot, latest))
    return dated[list(WORKLIST_COLUMNS)]


def worklist_rows(table: pd.DataFrame) -> list[dict[str, Any]]:
    """``worklist_table``'s rows as ``store.export.to_csv``/``to_xlsx`` take them (``due`` as
    ISO 8601 text in UTC, "" for none)."""
    rows = [dict(row) for row in table.to_dict("records")]
    for row in rows:
        if "wave" in row and (row["wave"] is None or pd.isna(row["wave"])):
            row["wave"] = ""  # no maintenance window: investigation only (issue 21)
        due = row.get("due")
        row["due"] = "" if due is None or pd.isna(due) else pd.Timestamp(due).isoformat()
    return rows


# A resource, as ``_host_table`` (no pickled copies of 50,000 rows); keyed by the snapshot's
# digest beside its id. The caller's shallow copy keeps the cached table as it is (pandas 3
# copy-on-write).
@st.cache_resource(show_spinner=False, max_entries=4)
@gc_paused()  # as _host_table
def _worklist(url: str, snapshot_id: int, digest: str, per_wave: int, max_age_days: float,
              owners: Owners, badges: tuple[tuple[str, str], ...],
              advisory: str | None = None) -> pd.DataFrame:
    store = _store(url)
    if advisory is None:
        # The triage order (issue 21): the patch work, and the patched hosts whose
        # investigation after the fix is missing or incomplete.
        open_ = [s for s in store.summaries(snapshot_id, catalog(), _policy(max_age_days))
                 if triage_priority(s.status, s.flags, s.investigation) is not None]
    else:
        open_ = [s for s in _through(store, snapshot_id, max_age_days, advisory)
                 if priority(s.status, s.flags, s.investigation) is not None]
    names = store.published_names(snapshot_id, [s.host for s in open_])
    chosen = {host for host, _badge in badges}
    items = (plan_triage(rank(open_, names, triage=True), chosen, per_wave) if advisory is None
             else plan_with_acceptances(rank(open_, names), chosen, per_wave))
    taken_at = store.info(snapshot_id).taken_at
    rows = worklist_rows_of(items, snapshot_id, taken_at.isoformat(), owners, dict(badges))
    # Each host's next step of its upgrade plan (compliance/plan.py), for every advisory.
    steps = next_steps(open_, catalog(), catalogs(), on=taken_at.date())
    for row in rows:
        step, why = steps.get(row["host"], (None, ""))
        row.update(next_step=step.text if step else why, next_kb=step.kb or "" if step else "",
                   next_link=step.link or "" if step else "")
    table = pd.DataFrame(rows, columns=list(WORKLIST_COLUMNS))
    # No wave ("" in the rows: a host that needs only its investigation, issue 21) is NA here.
    table["wave"] = pd.to_numeric(table["wave"].replace("", None), errors="coerce").astype("Int64")
    return table


def flag_counts(url: str, snapshot_id: int) -> dict[str, int]:
    """How many hosts of a snapshot carry each flag (``Flag`` values; absent flags count 0)."""
    counted = _counts(url, (snapshot_id,), _max_age_days())[snapshot_id]
    return {flag.value: counted.get(f"flag:{flag.value}", 0) for flag in Flag}


def run_failures(url: str, snapshot_ids: tuple[int, ...]) -> dict[int, int]:
    """Per snapshot: how many hosts its own run failed on."""
    counted = _counts(url, snapshot_ids, _max_age_days())
    return {i: counted[i].get("run_failed", 0) for i in snapshot_ids}


@st.cache_data(show_spinner=False, max_entries=16)
def _counts(url: str, snapshot_ids: tuple[int, ...], max_age_days: float) -> dict[int, dict[str, int]]:
    return _store(url).summary_counts(snapshot_ids, catalog(), _policy(max_age_days))


def failures(url: str, snapshot_id: int) -> list[tuple[str, str, str, int | None, bool]]:
    """(host, failure reason, detail, observed_in, run_failed) for every host of a snapshot
    whose latest observation is a failure, or on which its own run failed."""
    return _failures(url, snapshot_id, _max_age_days())


@st.cache_data(show_spinner=False, max_entries=8)
def _failures(url: str, snapshot_id: int,
              max_age_days: float) -> list[tuple[str, str, str, int | None, bool]]:
    return _store(url).failures(snapshot_id, catalog(), _policy(max_age_days))


def host_timeline(url: str, host: str) -> list[tuple[SnapshotInfo, dict[str, Any], int | None]]:
    return _host_timeline(url, host, heads(url))


@st.cache_data(show_spinner=False, max_entries=16)
def _host_timeline(url: str, host: str,
                   heads_key: str) -> list[tuple[SnapshotInfo, dict[str, Any], int | None]]:
    return _store(url).host_timeline(host)


def snapshot_diff(url: str, before_id: int, after_id: int) -> Diff:
    """What changed between the two snapshots' whole fleets (from the summary columns)."""
    return _diff(url, before_id, after_id, _max_age_days())


@st.cache_data(show_spinner=False, max_entries=8)
def _diff(url: str, before_id: int, after_id: int, max_age_days: float) -> Diff:
    store, policy = _store(url), _policy(max_age_days)
    return diff(*store.changed_summaries(before_id, after_id, catalog(), policy))


@st.cache_data(show_spinner="Re-evaluating every host with today's catalogue…", max_entries=2)
def reevaluation(url: str, snapshot_id: int, max_age_days: float = 7.0) -> list[Reevaluation]:
    """Hosts whose verdict today's catalogue would change (decodes every observation: the
    Snapshots page runs it on request)."""
    store = _store(url)
    info = store.info(snapshot_id)
    return reevaluate(store.fleet(snapshot_id, catalog(), _policy(max_age_days)), catalog(),
                      info.taken_at, _policy(max_age_days), store.outside(snapshot_id))


def evidence_bundle(url: str, snapshot_id: int, key: bytes | None = None) -> bytes:
    """A bundle of one snapshot; with the signing key its manifest carries the HMAC and the
    chain is verified with the key (the cached store is opened without it)."""
    return _bundle(url, snapshot_id, heads(url), key is not None, settings().deadlines.policy(),
                   key)


@st.cache_data(show_spinner="Building the evidence bundle…", max_entries=2)
def _bundle(url: str, snapshot_id: int, heads_key: str, keyed: bool, policy: DeadlinePolicy,
            _key: bytes | None) -> bytes:
    store = SnapshotStore(_store(url).engine, _key) if _key else _store(url)
    return build_bundle(store, store.info(snapshot_id), datetime.now(UTC), deadlines=policy)


def as_of(url: str, moment: datetime) -> SnapshotInfo | None:
    """The snapshot in force at ``moment`` (from the cached history)."""
    candidates = [s for s in snapshots(url) if s.taken_at <= moment]
    return candidates[-1] if candidates else None


def accepted(url: str, snapshot: SnapshotInfo, latest: bool) -> dict[str, str]:
    """The hosts of ``snapshot`` under a risk acceptance in force (compliance/acceptance.py):
    lower-case name -> its badge ("accepted until <date> by <approver>"). In force now for the
    latest snapshot, at the snapshot's time for an earlier one; an acceptance whose host the
    snapshot does not hold by that name is not in force."""
    # Not cached: an acceptance ends at the exact instant of its expiry, and reading the few
    # acceptances and their hosts' rows is a few milliseconds.
    moment = datetime.now(UTC) if latest else snapshot.taken_at
    store, snapshot_id, max_age_days = _store(url), snapshot.id, _max_age_days()
    recorded = stored_acceptances(store, moment)
    if not recorded:
        return {}
    hosts = {s.host.casefold(): s for s in store.summaries(
        snapshot_id, catalog(), _policy(max_age_days),
        hosts={r.acceptance.host for r in recorded})}
    return {r.acceptance.host.casefold(): r.acceptance.badge for r in recorded
            if standing_in(store, r, hosts.get(r.acceptance.host.casefold()), moment).in_force}


DEADLINE_COLUMNS = ("host", "due", "deadline_rule", "open_since", "pruned_before")


def deadlines(url: str, snapshot_id: int) -> pd.DataFrame:
    """The deadline of each host of a snapshot that needs work, under the ``[deadlines]``
    policy in the settings (compliance/deadline.py): ``DEADLINE_COLUMNS``, ``due`` and
    ``open_since`` aware UTC times (``open_since`` NaT when not known), earliest due first.
    Whether one is overdue depends on the moment it is read at: ``overdue``."""
    return _deadlines(url, snapshot_id, settings().deadlines.policy(), _max_age_days())


@st.cache_data(show_spinner=False, max_entries=8)
@gc_paused()  # as _host_table
def _deadlines(url: str, snapshot_id: int, policy: DeadlinePolicy,
               max_age_days: float) -> pd.DataFrame:
    # A stored snapshot never changes, nor do those before it: kept until the policy does.
    found = host_deadlines(_store(url), snapshot_id, catalog(), policy, _policy(max_age_days))
    rows = sorted(((d.host, d.deadline.due_at, d.deadline.rule, d.open_since, d.pruned_before)
                   for d in found.values()), key=lambda row: (row[1], row[0].lower()))
    table = pd.DataFrame(rows, columns=list(DEADLINE_COLUMNS))
    for column in ("due", "open_since"):
        table[column] = pd.to_datetime(table[column], utc=True)
    return table


def deadline_moment(snapshot: SnapshotInfo, latest: bool) -> datetime:
    """The moment deadlines are judged at: now for the latest snapshot, the snapshot's own
    time for an earlier one (what was overdue then)."""
    return datetime.now(UTC) if latest else snapshot.taken_at


def with_deadlines(table: pd.DataFrame, url: str, snapshot_id: int,
                   moment: datetime) -> pd.DataFrame:
    """``table`` (one row per host, column ``host``) with ``due`` (NaT for a host without a
    deadline), ``deadline_rule`` and ``overdue`` (at ``moment``) added."""
    due = deadlines(url, snapshot_id)
    # A name held twice (only a forged fleet does) takes its earliest due time: fail closed.
    indexed = due.drop_duplicates("host", keep="first").set_index("host")
    hosts = table["host"]
    shown = table.copy(deep=False)
    shown["due"] = (pd.to_datetime(hosts.map(indexed["due"]), utc=True) if len(due)
                    else pd.Series(pd.NaT, index=table.index, dtype="datetime64[ns, UTC]"))
    shown["deadline_rule"] = hosts.map(indexed["deadline_rule"]).fillna("") if len(due) else ""
    shown["overdue"] = (shown["due"] <= pd.Timestamp(moment)).fillna(False).astype(bool)
    return shown


ACCEPTANCE_COLUMNS = ("id", "host", "accepted_status", "standing", "approver", "ticket",
                      "reason", "accepted_at", "expires_at", "accepted_by", "snapshot_id")


def acceptance_rows(url: str, snapshot: SnapshotInfo, moment: datetime) -> list[dict[str, Any]]:
    """Every risk acceptance recorded up to ``moment``, as it stood then against the hosts of
    ``snapshot`` (the one in force at ``moment``): ``ACCEPTANCE_COLUMNS``, oldest first."""
    store = _store(url)
    recorded = stored_acceptances(store, moment)
    hosts = {s.host.casefold(): s for s in store.summaries(
        snapshot.id, catalog(), _policy(_max_age_days()),
        hosts={r.acceptance.host for r in recorded})} if recorded and not snapshot.pruned else {}
    rows = []
    for r in recorded:
        made = r.acceptance
        state = standing_in(store, r, hosts.get(made.host.casefold()), moment)
        rows.append({"id": r.id, "host": made.host, "accepted_status": made.status.value,
                     "standing": "in force" if state.in_force else f"ended: {state.detail}",
                     "approver": made.approver, "ticket": made.ticket, "reason": made.reason,
                     "accepted_at": made.accepted_at.isoformat(timespec="minutes"),
                     "expires_at": made.expires_at.isoformat(timespec="minutes"),
                     "accepted_by": made.accepted_by, "snapshot_id": r.snapshot_id})
    return rows


def record_acceptance(config: Settings, snapshot_id: int, host: str, *, reason: str,
                      approver: str, ticket: str, days: int) -> int:
    """Record a risk acceptance of ``host``'s gap as snapshot ``snapshot_id`` shows it, for
    ``days`` from now, by the signed-in person; returns its id. ``AcceptanceError`` when it
    may not be accepted (compliance/acceptance.py), ``StoreError`` when it cannot be written."""
    who = str(st.session_state.get("who", "dashboard user"))
    now = datetime.now(UTC)
    store = store_for_writing(config)
    try:
        found = store.summaries(snapshot_id, catalog(), Policy(max_age=config.max_age),
                                hosts={host})
        if not found:
            raise AcceptanceError(f"{host} is not in snapshot #{snapshot_id}")
        made = accept(found[0], reason=reason, approver=approver, ticket=ticket,
                      expires_at=now + timedelta(days=days), accepted_by=who, now=now,
                      max_days=config.acceptance_max_days)
        return record_stored_acceptance(store, made, snapshot_id, found[0])
    finally:
        store.dispose()


def audit_log(url: str) -> list[dict[str, Any]]:
    return _audit_log(url, heads(url))


@st.cache_data(show_spinner=False, max_entries=2)
def _audit_log(url: str, heads_key: str) -> list[dict[str, Any]]:
    return _store(url).audit_log()


def audited(config: Settings, snapshot_id: int, detail: str,
            build: Callable[[], bytes | str]) -> Callable[[], bytes | str]:
    """A download button's ``data``: builds the file on click, then records the export.

    The export is recorded in the audit log (action ``export``, ``detail``, by the signed-in
    user read now, at script time) by the same call that hands the file over, so a button
    needs no ``on_click`` rerun: a rerun re-registers every deferred download, and a second
    click that lands while it runs finds its file gone (seen in CI under load). If the record
    cannot be written the download fails: an export is never handed out unaudited.
    """
    who = str(st.session_state.get("who", "dashboard user"))

    def build_and_record() -> bytes | str:
        content = build()
        store = store_for_writing(config)
        try:
            store.record(who, "export", snapshot_id, detail)
        finally:
            store.dispose()
        return content
    return build_and_record


def store_for_writing(config: Settings) -> SnapshotStore:
    """The store a page that records something (collection, import) writes to."""
    return SnapshotStore.open(config.store_url, config.signing_key, config.lock_timeout)


def invalidate() -> None:
    """Forget cached reads: call after a collection or import saved a snapshot. (The
    per-snapshot tables kept as resources stay: a stored snapshot never changes, and they are
    keyed by its id and digest.)"""
    st.cache_data.clear()


def forget_snapshot_tables() -> None:
    """Forget the per-snapshot tables kept as resources (``_host_table``, ``_worklist``): for
    a benchmark that measures the run after a new snapshot on the same one."""
    _host_table.clear()
    _worklist.clear()
