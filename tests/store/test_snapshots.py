"""The SQLite snapshot store: round trips, atomic saves, ordering, empty store."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import event

import store
from compliance.evaluate import assess
from compliance.models import (
    Failure,
    Host,
    InstalledUpdate,
    MitigationState,
    Observation,
    ServiceState,
    Snapshot,
)
from store import SnapshotStore, StoreError, schema

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def _observations(at: datetime) -> list[Observation]:
    return [
        Observation(Host("EX1", fqdn="ex1.test.example", site="S1", dag="D1",
                         roles=frozenset({"Mailbox"}), ad_build="Version 15.1 (Build 32176.2)"),
                    at, "test", exsetup_version="15.1.2176.9",
                    installed_updates=(InstalledUpdate("KB5000871", "SU", "2021-03-03"),)),
        Observation(Host("EX2", roles=frozenset({"UnifiedMessaging"})), at, "test",
                    exsetup_version="14.3.509.0",
                    mitigations=MitigationState(services={
                        "MSExchangeUM": ServiceState("Stopped", "Disabled"),
                        "MSExchangeUMCR": ServiceState("Stopped", "Disabled")})),
        Observation(Host("EX3"), at, "test",
                    failure=Failure("connect", "refused", "open port 5986")),
    ]


def _snapshot(catalog, at: datetime = NOW) -> Snapshot:
    return assess(_observations(at), catalog, at, source="test", tool_version="0.test")


def test_round_trip_keeps_every_observation_and_verdict(empty_store, shipped_catalog):
    snapshot = _snapshot(shipped_catalog)
    snapshot_id = empty_store.save(snapshot, shipped_catalog)

    loaded = empty_store.assessments(snapshot_id)
    assert loaded == list(snapshot.assessments)
    info = empty_store.info(snapshot_id)
    assert info.host_count == 3
    assert info.counts["patched"] == 1
    assert info.counts["mitigated"] == 1
    assert info.counts["unknown"] == 1
    assert info.counts["vulnerable"] == 0
    assert info.catalog_version == shipped_catalog.version
    assert info.tool_version == "0.test"
    assert info.taken_at == NOW


def test_single_host_read(empty_store, shipped_catalog):
    snapshot_id = empty_store.save(_snapshot(shipped_catalog), shipped_catalog)
    found = empty_store.assessment(snapshot_id, "EX2")
    assert found == _snapshot(shipped_catalog).assessments[1]
    assert empty_store.assessment(snapshot_id, "NOPE") is None


def test_reopening_the_file_sees_saved_snapshots(store_url, shipped_catalog):
    first = SnapshotStore.open(store_url)
    first.save(_snapshot(shipped_catalog), shipped_catalog)
    first.dispose()
    again = SnapshotStore.open(store_url)
    assert [s.host_count for s in again.history()] == [3]
    again.dispose()


def test_history_is_in_chain_order_whatever_a_writers_clock_says(empty_store, shipped_catalog):
    # A collector whose clock runs an hour ahead saves first; a correct one saves after it. The
    # latest is the chain head (what the next run is composed with), never the one "in the
    # future", or its fleet would hide the correct collector's hosts.
    ahead = NOW + timedelta(hours=1)
    now_other_zone = NOW.astimezone(timezone(timedelta(hours=5)))
    first = empty_store.save(_snapshot(shipped_catalog, ahead), shipped_catalog)
    second = empty_store.save(_snapshot(shipped_catalog, now_other_zone), shipped_catalog)
    listed = empty_store.history()
    assert [s.id for s in listed] == [first, second]
    assert [s.taken_at for s in listed] == [ahead, NOW]
    assert empty_store.latest() == listed[-1] and listed[-1].id == second
    # "As of" a moment: the newest save taken at or before it.
    assert empty_store.as_of(NOW + timedelta(minutes=1)).id == second
    assert empty_store.as_of(NOW + timedelta(hours=2)).id == second
    assert empty_store.as_of(NOW - timedelta(minutes=1)) is None


def test_a_failed_save_leaves_no_partial_snapshot(empty_store, shipped_catalog):
    empty_store.save(_snapshot(shipped_catalog), shipped_catalog)

    def explode(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO RESULTS"):
            raise RuntimeError("disk full (simulated)")

    event.listen(empty_store.engine, "before_cursor_execute", explode)
    with pytest.raises(RuntimeError, match="disk full"):
        empty_store.save(_snapshot(shipped_catalog, NOW + timedelta(days=1)), shipped_catalog)
    event.remove(empty_store.engine, "before_cursor_execute", explode)

    assert len(empty_store.history()) == 1
    with empty_store.engine.connect() as conn:
        orphans = conn.exec_driver_sql(
            "SELECT count(*) FROM results WHERE snapshot_id NOT IN (SELECT id FROM snapshots)"
        ).scalar()
    assert orphans == 0


def test_empty_store(empty_store):
    assert empty_store.is_empty()
    assert empty_store.history() == []
    assert empty_store.latest() is None
    with pytest.raises(StoreError, match="no snapshot with id 7"):
        empty_store.info(7)


def test_naive_time_is_refused(empty_store, shipped_catalog):
    snapshot = _snapshot(shipped_catalog)
    naive = Snapshot(**{**snapshot.__dict__, "taken_at": NOW.replace(tzinfo=None)})
    with pytest.raises(StoreError, match="time zone"):
        empty_store.save(naive, shipped_catalog)


def test_unopenable_store_names_the_url_without_password(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="cannot open store"):
        SnapshotStore.open(f"sqlite:///{blocker}/sub/compliance.db")


def test_a_sqlite_uri_filename_makes_no_directory(tmp_path, monkeypatch):
    path = tmp_path / "compliance.db"
    SnapshotStore.open(f"sqlite:///{path}").dispose()
    monkeypatch.chdir(tmp_path)
    SnapshotStore.open(f"sqlite:///file:{path}?mode=ro&uri=true").dispose()
    assert not (tmp_path / "file:").exists()


def test_newer_schema_is_refused(store_url):
    opened = SnapshotStore.open(store_url)
    with opened.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0099'")
    opened.dispose()
    with pytest.raises(StoreError, match=f"schema revision 0099, newer than this tool's "
                                         f"{schema.HEAD_REVISION}"):
        SnapshotStore.open(store_url)


def test_the_schema_version_is_kept_once(empty_store):
    with empty_store.engine.connect() as conn:
        keys = {row[0] for row in conn.exec_driver_sql("SELECT key FROM meta")}
        revision = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    assert "schema_version" not in keys and revision == schema.HEAD_REVISION == "0014"


def test_the_head_revision_is_alembics_head():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(Path(store.__file__).parent / "migrations"))
    assert ScriptDirectory.from_config(config).get_current_head() == schema.HEAD_REVISION


def test_a_store_at_the_head_opens_without_alembic(tmp_path):
    url = f"sqlite:///{tmp_path / 'compliance.db'}"
    SnapshotStore.open(url).dispose()  # created and migrated: Alembic is needed here
    probe = ("import sys; from store import SnapshotStore; "
             f"SnapshotStore.open({url!r}).dispose(); "
             "print(sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          cwd=Path(store.__file__).parent.parent, check=True)
    assert done.stdout.strip() == "[]"


def test_discovered_inventory_is_stored_for_coverage(empty_store, shipped_catalog):
    inventory = (Host("EX1", fqdn="ex1.test.example", dn="CN=EX1,DC=x"),
                 Host("EX9", problems=("no FQDN",)))
    snapshot = assess(_observations(NOW)[:1], shipped_catalog, NOW, source="test",
                      tool_version="0.test", discovered=inventory, scope="ldaps://dc1 CN=x")
    snapshot_id = empty_store.save(snapshot, shipped_catalog)
    assert empty_store.discovered(snapshot_id) == list(inventory)
    info = empty_store.info(snapshot_id)
    assert (info.discovered_count, info.host_count, info.scope) == (2, 1, "ldaps://dc1 CN=x")


def test_audit_log_round_trip(empty_store):
    empty_store.record("alice@example.test", "export", 3, "worklist CSV", at=NOW)
    empty_store.record("bob@host", "collect", 4, "snapshot #4 saved", at=NOW)
    entries = empty_store.audit_log()
    assert [(e["who"], e["action"], e["snapshot_id"]) for e in entries] == [
        ("bob@host", "collect", 4), ("alice@example.test", "export", 3)]
    assert entries[0]["at"] == NOW.isoformat()


def test_summaries_needing_work_are_the_worklists_hosts_damaged_rows_included(
        empty_store, shipped_catalog):
    from collectors.demo import seed_demo
    from compliance.worklist import priority

    latest = seed_demo(empty_store, shipped_catalog, NOW)[-1]
    with empty_store.engine.begin() as conn:  # rows no writer makes: unknown, so listed
        patched = [row[0] for row in conn.exec_driver_sql(
            "SELECT position FROM results WHERE snapshot_id = ? AND status = 'patched' "
            "ORDER BY position", (latest,))]
        for position, change in zip(patched, ("status = 'fine'", "roles = 'Bogus'",
                                              "indicator_count = 'many'", "flags = 'bogus'",
                                              "flags = NULL, roles = NULL"), strict=False):
            conn.exec_driver_sql(f"UPDATE results SET {change} WHERE snapshot_id = ? AND "
                                 "position = ?", (latest, position))
    every = empty_store.summaries(latest, shipped_catalog)
    needing = empty_store.summaries(latest, shipped_catalog, needing_work=True)
    expected = [s for s in every if priority(s.status, s.flags, s.investigation) is not None]
    assert needing == expected
    assert 0 < len(needing) < len(every)
    assert sum("changed outside the tool" in s.action for s in needing) == 4  # NULLs read empty


def test_which_hosts_need_work_is_read_from_the_judged_index_alone(empty_store):
    # Schema 14: the columns open_judgements and the demo check read sit after each row's JSON;
    # read from the table, SQLite walks every row's overflow pages. The plan names the index.
    from sqlalchemy import func, select
    from sqlalchemy.dialects import sqlite

    from store import snapshots

    results = schema.results
    keys = snapshots._judged_columns()
    queries = [
        select(*keys).where(results.c.snapshot_id == 1).group_by(*keys),
        select(results.c.position, results.c.host, *keys).where(
            results.c.snapshot_id == 1, snapshots._holding([("vulnerable", "", "", 0, "")])),
        select(func.count()).select_from(results).where(
            results.c.snapshot_id == 1, results.c.scopes.like('%"demo"%')),
    ]
    with empty_store.engine.connect() as conn:
        for query in queries:
            sql = str(query.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}))
            plan = " ".join(str(row[-1]) for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
            assert "COVERING INDEX ix_results_judged" in plan, (sql, plan)
