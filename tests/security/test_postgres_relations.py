"""Someone who owns the store's tables on PostgreSQL can make a read depend on who reads it,
without changing a stored byte: a view in place of a table (its rows can depend on the query,
``current_query()``), or row-level security (policies can hide rows from some queries only).
verify proves what the database gave verify, so it must say when the tables are not plain:
each attack below hides a vulnerable host from the pages' query while verify's query still
reads the signed rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from compliance.evaluate import assess
from compliance.models import Host, Observation
from store import SnapshotStore

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
# The pages' summary read names no JSON column; verify's reads name observation (format 8:
# inside sha256()). A forger's rows can tell the two apart by the query's text.
HIDE_FROM_PAGES = "position <> 0 OR pg_catalog.current_query() LIKE '%observation%'"


def _store(url: str, catalog) -> tuple[SnapshotStore, int]:
    store = SnapshotStore.open(url)
    at = NOW - timedelta(days=1)
    observations = [Observation(Host(f"EX{i}", site="S"), at, "test",
                                exsetup_version="15.1.2176.2" if i == 0 else "15.1.2176.9")
                    for i in range(4)]
    snapshot_id = store.save(assess(observations, catalog, at, source="test", tool_version="t",
                                    discovered=[o.host for o in observations]), catalog)
    return store, snapshot_id


def _shown(store: SnapshotStore, snapshot_id: int) -> list[str]:
    return [row[0] for row in store.summary_rows(snapshot_id)]


@pytest.mark.parametrize("attack", [
    ["ALTER TABLE results RENAME TO results_kept",
     f"CREATE VIEW results AS SELECT * FROM results_kept WHERE {HIDE_FROM_PAGES}"],
    ["ALTER TABLE results ENABLE ROW LEVEL SECURITY",
     "ALTER TABLE results FORCE ROW LEVEL SECURITY",
     f"CREATE POLICY hide ON results USING ({HIDE_FROM_PAGES})"],
], ids=["view", "row-level security"])
def test_tables_that_show_verify_other_rows_than_the_pages_fail_verify(
        postgres_url, shipped_catalog, attack):
    store, snapshot_id = _store(postgres_url, shipped_catalog)
    try:
        assert store.verify(workers=1).ok and "EX0" in _shown(store, snapshot_id)
        with store.engine.begin() as conn:
            for statement in attack:
                conn.execute(text(statement))
        if "VIEW" in attack[-1]:
            assert "EX0" not in _shown(store, snapshot_id)  # the vulnerable host hidden
        else:  # the tests connect as a superuser, whom row security never applies to
            with store.engine.begin() as conn:
                reader = "reader_" + conn.execute(text("SELECT current_database()")).scalar_one()
                conn.execute(text(f'CREATE ROLE "{reader}" NOLOGIN'))
                conn.execute(text(f'GRANT SELECT ON results TO "{reader}"'))
                conn.execute(text(f'SET LOCAL ROLE "{reader}"'))
                assert [row[0] for row in conn.execute(text(
                    "SELECT host FROM results ORDER BY position"))] == ["EX1", "EX2", "EX3"]
        for workers in (1, 2):
            report = store.verify(workers=workers)
            assert [p.snapshot_id for p in report.problems] == [None], report.problems
            assert "table results" in report.problems[0].message
    finally:
        store.dispose()


def test_a_plain_store_has_no_relation_problem_on_either_backend(postgres_url, tmp_path,
                                                                 shipped_catalog):
    for url in (postgres_url, f"sqlite:///{tmp_path / 'store.db'}"):
        store, _snapshot_id = _store(url, shipped_catalog)
        try:
            assert store.verify(workers=1).ok
        finally:
            store.dispose()
