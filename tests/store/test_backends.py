"""The same store on SQLite and on a real PostgreSQL: round trips, the chain, migrations,
concurrent writers, a reader during a write, a writer killed mid-transaction."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text

from compliance.evaluate import assess
from compliance.models import Host, Observation
from store import SnapshotStore, StoreError
from store.snapshots import MIGRATIONS

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def any_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("postgres_url")


def _snapshot(catalog, at: datetime, hosts: int = 5, prefix: str = "EX"):
    observations = [Observation(Host(f"{prefix}{i:05d}", site="S", dag="D"), at, "test",
                                exsetup_version="15.1.2176.9" if i % 2 else "15.1.2176.2")
                    for i in range(hosts)]
    return assess(observations, catalog, at, source="test", tool_version="t",
                  discovered=[o.host for o in observations], scope="backend test")


def test_round_trip_and_chain(any_url, shipped_catalog):
    store = SnapshotStore.open(any_url)
    try:
        first = _snapshot(shipped_catalog, NOW - timedelta(days=1))
        ids = [store.save(first, shipped_catalog), store.save(_snapshot(shipped_catalog, NOW), shipped_catalog)]
        assert store.assessments(ids[0]) == list(first.assessments)
        assert store.discovered(ids[0]) == list(first.discovered)
        assert [s.id for s in store.history()] == ids
        assert store.as_of(NOW - timedelta(hours=1)).id == ids[0]
        assert store.verify().ok
        with store.engine.begin() as conn:
            conn.execute(text("UPDATE results SET status = 'patched' WHERE snapshot_id = :id"),
                         {"id": ids[0]})
        report = store.verify()
        assert [p.snapshot_id for p in report.problems] == [ids[0]]
    finally:
        store.dispose()


def test_a_save_waiting_past_the_lock_timeout_fails_with_nothing_written(any_url, shipped_catalog):
    """SQLite's busy timeout and PostgreSQL's lock_timeout both come from ``lock_timeout``."""
    store = SnapshotStore.open(any_url, lock_timeout=0.5)
    other = create_engine(any_url)
    try:
        store.save(_snapshot(shipped_catalog, NOW - timedelta(days=1)), shipped_catalog)
        with other.connect() as holder:
            holder.begin()  # another collector's save, holding the chain head and not finishing
            holder.execute(text("UPDATE meta SET value = value WHERE key = 'chain_head'"))
            started = time.monotonic()
            with pytest.raises(StoreError, match=r"nothing was written.*more than 0\.5 s"):
                store.save(_snapshot(shipped_catalog, NOW), shipped_catalog)
            assert 0.4 < time.monotonic() - started < 10
            holder.rollback()
        assert len(store.history()) == 1 and store.verify().ok
    finally:
        other.dispose()
        store.dispose()


def test_postgres_lock_timeout_keeps_the_urls_own_options(postgres_url, shipped_catalog):
    """``lock_timeout`` is a session setting: a search_path in the URL's options survives."""
    setup = create_engine(postgres_url)
    with setup.begin() as conn:
        conn.execute(text("CREATE SCHEMA compliance"))
    setup.dispose()
    store = SnapshotStore.open(f"{postgres_url}?options=-csearch_path%3Dcompliance",
                               lock_timeout=0.25)
    try:
        store.save(_snapshot(shipped_catalog, NOW), shipped_catalog)
        with store.engine.connect() as conn:
            assert conn.execute(text("SHOW lock_timeout")).scalar() == "250ms"
            assert conn.execute(text("SHOW search_path")).scalar() == "compliance"
            schemas = set(conn.execute(text(
                "SELECT table_schema FROM information_schema.tables "
                "WHERE table_name = 'snapshots'")).scalars())
        assert schemas == {"compliance"}
    finally:
        store.dispose()


SQL_HOSTILE = ["EX1'; DROP TABLE results; --", 'EX2" OR "1"="1', "EX3%", "EX_4", "EX5\\'",
               "EX6') OR ('a'='a"]


def test_hostile_host_names_are_stored_and_looked_up_exactly(any_url, shipped_catalog):
    """Names from AD and probe output reach SQL only as bound parameters."""
    store = SnapshotStore.open(any_url)
    try:
        observations = [Observation(Host(name), NOW, "test", exsetup_version="15.1.2176.9")
                        for name in [*SQL_HOSTILE, "EX3x", "EXa4"]]
        snapshot_id = store.save(assess(observations, shipped_catalog, NOW, source="test",
                                        tool_version="t"), shipped_catalog)
        assert [a.observation.host.name for a in store.assessments(snapshot_id)] == [
            o.host.name for o in observations]
        for name in SQL_HOSTILE:
            found = store.assessment(snapshot_id, name)
            assert found is not None and found.observation.host.name == name
            assert len(store.host_timeline(name)) == 1  # "EX3%" and "EX_4" match no other host
        assert store.assessment(snapshot_id, "EX1") is None
        assert store.verify().ok and len(store.history()) == 1  # every table still there
    finally:
        store.dispose()


def test_a_store_of_the_previous_schema_upgrades_without_losing_data(any_url, shipped_catalog):
    engine = create_engine(any_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")  # the schema the first version created
        for number in (1, 2):
            conn.execute(text(
                "INSERT INTO snapshots (taken_at, source, label, tool_version, "
                "catalog_version, advisory_id, advisory_version, host_count, counts, scope, "
                "discovered_count) VALUES (:t, 'collect', 'old', '0.1.0', 'c', "
                "'2021-03-proxylogon', '1', 1, :counts, '', 0)"),
                {"t": (NOW - timedelta(days=3 - number)).isoformat(), "counts": '{"patched":1}'})
            conn.execute(text(
                "INSERT INTO results (snapshot_id, position, host, status, observation, verdict) "
                "VALUES ((SELECT max(id) FROM snapshots), 0, 'OLD', 'patched', :o, :v)"),
                { "o": '{"host":{"name":"OLD"},"observed_at":null,"source":"x"}',
                 "v": '{"host":"OLD","status":"patched","reason":"r","action":"a",'
                      f'"as_of":"{NOW.isoformat()}"}}'})
    engine.dispose()

    store = SnapshotStore.open(any_url)  # upgrades to the current schema
    try:
        history = store.history()
        assert [(s.id, s.sequence, s.counts["patched"]) for s in history] == [(1, 1, 1), (2, 2, 1)]
        assert store.assessments(1)[0].verdict.host == "OLD"
        assert store.verify().ok
        assert not store.info(2).fleet  # recorded before fleets: format 1, as it was
        new_id = store.save(_snapshot(shipped_catalog, NOW), shipped_catalog)
        assert store.info(new_id).sequence == 3 and store.verify().ok
        # The old snapshot's host is carried into the first whole-fleet snapshot.
        saved = {a.observation.host.name: a for a in store.assessments(new_id)}
        assert set(saved) == {"OLD", *(f"EX{i:05d}" for i in range(5))}
        assert saved["OLD"].observed_in == 2 and store.info(new_id).fleet
    finally:
        store.dispose()


WRITER = """
import sys, time
from datetime import UTC, datetime, timedelta
sys.path.insert(0, sys.argv[1])
from compliance.catalog import load_catalog
from compliance.evaluate import assess
from compliance.models import Host, Observation
from store import SnapshotStore
store = SnapshotStore.open(sys.argv[2])
catalog = load_catalog()
count, hosts, prefix = int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
for n in range(count):
    at = datetime.now(UTC)
    obs = [Observation(Host(f"{prefix}{i:05d}"), at, "t", exsetup_version="15.1.2176.9")
           for i in range(hosts)]
    store.save(assess(obs, catalog, at, source="t", tool_version="t"), catalog)
    print("saved", flush=True)
"""


def _writer(url: str, count: int, hosts: int, prefix: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(ROOT), url, str(count),
                             str(hosts), prefix], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def test_two_collectors_writing_at_once_keep_the_chain(any_url):
    SnapshotStore.open(any_url).dispose()  # schema in place before the race
    writers = [_writer(any_url, 5, 200, f"W{n}-") for n in range(2)]
    for writer in writers:
        _out, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err
    store = SnapshotStore.open(any_url)
    try:
        history = store.history()
        assert len(history) == 10
        assert sorted(s.sequence for s in history) == list(range(1, 11))
        assert store.verify().ok
        # Each snapshot is the whole fleet: it holds every host any earlier snapshot held,
        # whichever writer saved it (the fleet is composed under the chain-head lock).
        known: set[str] = set()
        for info in sorted(history, key=lambda s: s.sequence):
            hosts = {a.observation.host.name for a in store.assessments(info.id)}
            assert known <= hosts, f"snapshot #{info.id} lost {sorted(known - hosts)[:3]}"
            known |= hosts
        assert len(known) == 400 and info.host_count == 400
    finally:
        store.dispose()


def test_a_reader_never_sees_a_half_written_snapshot(any_url):
    SnapshotStore.open(any_url).dispose()
    writer = _writer(any_url, 4, 3000, "R-")
    store = SnapshotStore.open(any_url)
    try:
        seen = 0
        deadline = time.monotonic() + 120
        while writer.poll() is None and time.monotonic() < deadline:
            for info in store.history():
                assert len(store.assessments(info.id)) == info.host_count == 3000
                seen += 1
        writer.communicate(timeout=60)
        assert writer.returncode == 0
        assert seen > 0 and len(store.history()) == 4
    finally:
        store.dispose()


def test_a_writer_killed_mid_transaction_leaves_the_store_consistent(any_url, shipped_catalog):
    store = SnapshotStore.open(any_url)
    store.save(_snapshot(shipped_catalog, NOW), shipped_catalog)
    writer = _writer(any_url, 50, 20000, "K-")
    try:
        assert writer.stdout is not None
        time.sleep(1.0)  # well inside the first 20,000-host transaction
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=30)
        history = store.history()
        for info in history:
            assert len(store.assessments(info.id)) == info.host_count
        assert store.verify().ok
        new_id = store.save(_snapshot(shipped_catalog, NOW + timedelta(minutes=1)), shipped_catalog)
        assert store.info(new_id).sequence == len(history) + 1
        assert store.verify().ok
    finally:
        store.dispose()


def test_a_schema_4_store_with_pruned_snapshots_upgrades_into_a_verifying_audit_chain(
        any_url, shipped_catalog):
    """Schema 5 chains the audit entries written before it and accounts for the snapshots
    already pruned in one upgrade entry; a snapshot emptied by hand later is still caught."""
    engine = create_engine(any_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
        for number in (1, 2, 3):
            conn.execute(text(
                "INSERT INTO snapshots (taken_at, source, label, tool_version, "
                "catalog_version, advisory_id, advisory_version, host_count, counts, scope, "
                "discovered_count) VALUES (:t, 'collect', 'old', '0.1.0', 'c', "
                "'2021-03-proxylogon', '1', 1, :counts, '', 0)"),
                {"t": (NOW - timedelta(days=4 - number)).isoformat(), "counts": '{"patched":1}'})
            conn.execute(text(
                "INSERT INTO results (snapshot_id, position, host, status, observation, verdict) "
                "VALUES ((SELECT max(id) FROM snapshots), 0, 'OLD', 'patched', :o, :v)"),
                {"o": '{"host":{"name":"OLD"},"observed_at":null,"source":"x"}',
                 "v": '{"host":"OLD","status":"patched","reason":"r","action":"a",'
                      f'"as_of":"{NOW.isoformat()}"}}'})
        command.upgrade(config, "0004")
        # What schema 4's prune did: hosts deleted, the flag set, an entry without ids.
        conn.execute(text("DELETE FROM results WHERE snapshot_id = 1"))
        conn.execute(text("UPDATE snapshots SET pruned = :t WHERE id = 1"), {"t": True})
        conn.execute(text("INSERT INTO audit_log (at, who, action, snapshot_id, detail) VALUES "
                          "(:at, 'alice', 'prune', NULL, 'kept the newest 2; pruned 1')"),
                     {"at": NOW.isoformat()})
    engine.dispose()

    key = b"dummy-signing-key"
    store = SnapshotStore.open(any_url, signing_key=key)
    try:
        report = store.verify()  # the snapshots were written without a key: unsigned
        assert report.ok, report.problems
        assert report.audit_entries == 2 and [p.snapshot_id for p in report.prunings] == [1]
        assert [(e["action"], e["sequence"]) for e in store.audit_log()] == [("upgrade", 2),
                                                                           ("prune", 1)]
        # Nothing the upgrade wrote is signed: under the key, a person adopts it once.
        unsigned = store.verify(key).problems
        assert any("adopt-key" in p.message for p in unsigned), unsigned
        store.adopt_key("alice", store.verify().state)
        adopted = store.verify(key)
        assert adopted.ok and adopted.adopted and "alice" in adopted.adopted, adopted.problems
        # The adoption recorded the header of the snapshot pruned before schema 5 (review 2, F4).
        with store.engine.begin() as conn:
            conn.execute(text("UPDATE snapshots SET label = 'all patched' WHERE id = 1"))
        assert [p.snapshot_id for p in store.verify(key).problems] == [1]
        with store.engine.begin() as conn:
            conn.execute(text("UPDATE snapshots SET label = 'old' WHERE id = 1"))
        with store.engine.begin() as conn:
            conn.execute(text("DELETE FROM results WHERE snapshot_id = 2"))
            conn.execute(text("UPDATE snapshots SET pruned = :t WHERE id = 2"), {"t": True})
        assert [(p.snapshot_id, "deleted outside the tool" in p.message)
                for p in store.verify(key).problems] == [(2, True)]
    finally:
        store.dispose()
