"""On SQLite, someone who can write the file stores bytes that are not UTF-8 (here a CESU-8
lone surrogate, ED A0 80) in a JSON column: ``verify`` names the snapshot as a problem, as for
every other malformed value (SECURITY.md: "a problem in verify, never a traceback"), instead
of raising sqlite3's "Could not decode to UTF-8" (review 2026-12-02; it did at 54f8a3e too,
and the command line failed closed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from compliance.evaluate import assess
from compliance.models import Host, Observation
from store import SnapshotStore

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("column", ["observation", "verdict", "investigation_detail"])
@pytest.mark.parametrize("workers", [1, 2])
def test_a_json_column_that_is_not_utf8_is_a_problem_not_an_exception(
        tmp_path, shipped_catalog, column, workers):
    store = SnapshotStore.open(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        at = NOW - timedelta(days=1)
        observations = [Observation(Host(f"EX{i}"), at, "test", exsetup_version="15.1.2176.2")
                        for i in range(2)]
        snapshot_id = store.save(assess(observations, shipped_catalog, at, source="test",
                                        tool_version="t",
                                        discovered=[o.host for o in observations]),
                                 shipped_catalog)
        assert store.info(snapshot_id).format == 8
        with store.engine.begin() as conn:
            conn.execute(text(f"UPDATE results SET {column} = CAST(X'7B22EDA080227D' AS TEXT) "
                              "WHERE position = 0"))
        report = store.verify(workers=workers)
        assert [p.snapshot_id for p in report.problems] == [snapshot_id]
    finally:
        store.dispose()
