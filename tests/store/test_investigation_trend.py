"""``SnapshotStore.investigation_trend``: the (status, investigation state) counts of several
snapshots in one grouped query (the Overview's trend and the report's, issue 21). A snapshot
saved before issue 21 holds NULL (None), never a state; one without rows (pruned, or not in
the store) has no counts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event

from compliance.evaluate import assess
from compliance.models import Host, InstalledUpdate, Observation
from compliance.traces import Scan, Traces
from store import chain
from tests.compliance.traces_fixtures import ROOT_FOLDERS, logs_at

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
PATCHED, BELOW = "15.1.2176.9", "15.1.2176.2"  # 2016 CU19 with and without the March SU
OLD = datetime(2020, 12, 1, tzinfo=UTC)
LOGS = logs_at(OLD)


def _observe(name: str, at: datetime, build: str, scans: tuple[Scan, ...] | None = None,
             ) -> Observation:
    fixed = at - timedelta(days=10)
    traces = None if scans is None else Traces(
        scans=scans, detections=(), defender_available=True, log_reach=LOGS, candidates=(),
        fixed_at=fixed, candidate_folders=ROOT_FOLDERS)
    updates = () if traces is None else (InstalledUpdate(
        "KB5000871", "Security Update for Exchange Server 2016 CU19 (KB5000871)",
        fixed.date().isoformat()),)
    return Observation(Host(name, f"{name.lower()}.corp.example"), at - timedelta(minutes=5),
                       "test", exsetup_version=build, traces=traces, installed_updates=updates,
                       log_window_days=4000.0)


def _run(catalog: Any, at: datetime) -> Any:
    full = Scan(at - timedelta(days=7), "full", "1.0", True, outcome="clean")
    quick = Scan(at - timedelta(days=7), "quick", "1.0", True, outcome="clean")
    observations = [_observe("CLEAN", at, PATCHED, (full,)),
                     _observe("QUICK", at, PATCHED, (quick,)),
                     _observe("NOSCAN", at, PATCHED, ()),
                     _observe("OLDPROBE", at, PATCHED),
                     _observe("OPEN", at, BELOW)]
    return assess(observations, catalog, at, source="test", tool_version="t")


def test_the_counts_of_several_snapshots_in_one_query(empty_store, shipped_catalog,
                                                      monkeypatch) -> None:
    monkeypatch.setattr(chain, "CURRENT_FORMAT", 6)  # saved before issue 21: no state stored
    before = empty_store.save(_run(shipped_catalog, NOW - timedelta(days=7)), shipped_catalog)
    monkeypatch.undo()
    after = empty_store.save(_run(shipped_catalog, NOW), shipped_catalog)
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(empty_store.engine, "before_cursor_execute", seen)
    try:
        trend = empty_store.investigation_trend((before, after, 999))
    finally:
        event.remove(empty_store.engine, "before_cursor_execute", seen)
    assert len(statements) == 1 and "GROUP BY" in statements[0].upper()
    assert trend == {
        before: {("patched", None): 4, ("vulnerable", None): 1},
        after: {("patched", "clean"): 1, ("patched", "incomplete"): 1,
                ("patched", "not_investigated"): 2, ("vulnerable", "not_investigated"): 1},
        999: {},
    }
    # What the one-snapshot count says, for the same snapshot.
    assert {(status, state): n for status, state, n in empty_store.investigation_counts(
        after, shipped_catalog)} == trend[after]


def test_no_snapshot_asks_nothing(empty_store) -> None:
    statements: list[str] = []
    event.listen(empty_store.engine, "before_cursor_execute",
                 lambda *args: statements.append(args[2]))
    assert empty_store.investigation_trend(()) == {}
    assert statements == []


def test_a_pruned_snapshot_has_no_counts(empty_store, shipped_catalog) -> None:
    first = empty_store.save(_run(shipped_catalog, NOW - timedelta(days=7)), shipped_catalog)
    second = empty_store.save(_run(shipped_catalog, NOW), shipped_catalog)
    assert empty_store.prune(keep=1) == 1
    trend = empty_store.investigation_trend([first, second])
    assert trend[first] == {} and sum(trend[second].values()) == 5


def _trend_plan(store: Any, ids: list[int]) -> str:
    """SQLite's plan for the statement ``investigation_trend`` runs."""
    seen: list[tuple[str, Any]] = []

    def keep(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_args: Any) -> None:
        seen.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", keep)
    try:
        store.investigation_trend(ids)
    finally:
        event.remove(store.engine, "before_cursor_execute", keep)
    (statement, parameters), = seen
    with store.engine.connect() as conn:
        rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).fetchall()
    return " ".join(str(row[-1]) for row in rows)


def test_the_trend_reads_a_covering_index_not_the_rows(empty_store, shipped_catalog) -> None:
    # At 10,000 hosts x 52 snapshots, reading each row's state past its JSON took 1.2-2 s; the
    # index (snapshot, status, state) answers in well under 0.1 s (bench/pages.py store).
    first = empty_store.save(_run(shipped_catalog, NOW), shipped_catalog)
    plan = _trend_plan(empty_store, [first, first + 1])
    assert "COVERING INDEX ix_results_investigation" in plan, plan


def test_a_store_of_schema_11_gets_the_index(tmp_path, shipped_catalog) -> None:
    from sqlalchemy import inspect, text

    from store import SnapshotStore, schema

    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = SnapshotStore.open(url)
    saved = store.save(_run(shipped_catalog, NOW), shipped_catalog)
    with store.engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_results_investigation"))
        conn.execute(text("UPDATE alembic_version SET version_num = '0011'"))
    store.dispose()
    store = SnapshotStore.open(url)  # migrates to the head
    try:
        with store.engine.connect() as conn:
            indexes = {index["name"]: index["column_names"]
                       for index in inspect(conn).get_indexes("results")}
            revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        assert revision == schema.HEAD_REVISION
        assert indexes["ix_results_investigation"] == ["snapshot_id", "status", "investigation"]
        assert sum(store.investigation_trend([saved])[saved].values()) == 5
        assert store.verify().ok
    finally:
        store.dispose()
