"""SnapshotStore.open_since: when each open host's current stretch of needing work began."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from compliance.evaluate import assess
from compliance.models import Host, InstalledUpdate, Observation

START = datetime(2021, 3, 3, 8, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def _observation(name: str, state: str, at: datetime) -> Observation:
    host = Host(name, roles=frozenset({"Mailbox"}))
    if state == "patched":
        return Observation(host, at, "test", exsetup_version="15.1.2176.9",
                           installed_updates=(InstalledUpdate("KB5000871", "SU", "2021-03-03"),))
    if state == "indicators":
        return Observation(host, at, "test", exsetup_version="15.1.2176.9",
                           installed_updates=(InstalledUpdate("KB5000871", "SU", "2021-03-03"),),
                           indicators=("CVE-2021-26855: suspicious request in HttpProxy logs",))
    if state == "unread":  # nothing read: unknown
        return Observation(host, at, "test", probe_errors=("exsetup: not found",))
    return Observation(host, at, "test", exsetup_version="15.1.2176.2")  # no March SU


def _save(store, catalog, at: datetime, **states: str) -> int:
    observations = [_observation(name, state, at) for name, state in states.items()]
    return store.save(assess(observations, catalog, at, source="test", tool_version="0.test"),
                      catalog)


def test_the_clock_starts_at_the_first_open_snapshot_and_a_fix_resets_it(empty_store,
                                                                         shipped_catalog):
    store, catalog = empty_store, shipped_catalog
    _save(store, catalog, START, EX1="vulnerable", EX2="patched", EX3="patched")
    _save(store, catalog, START + DAY, EX1="vulnerable", EX2="vulnerable", EX3="patched")
    _save(store, catalog, START + 2 * DAY, EX1="patched", EX2="vulnerable", EX3="indicators")
    last = _save(store, catalog, START + 3 * DAY, EX1="vulnerable", EX2="vulnerable",
                 EX3="indicators")
    found = store.open_since(last)
    assert {host: (o.at, o.pruned_before) for host, o in found.items()} == {
        "EX1": (START + 3 * DAY, False),   # fixed on day 2, open again on day 3
        "EX2": (START + DAY, False),       # open since day 1
        "EX3": (START + 2 * DAY, False),   # patched, then compromise indicators
    }


def test_a_host_absent_from_a_run_keeps_its_clock(empty_store, shipped_catalog):
    store, catalog = empty_store, shipped_catalog
    _save(store, catalog, START, EX1="vulnerable", EX2="patched")
    _save(store, catalog, START + DAY, EX2="patched")  # a run that did not reach EX1
    last = _save(store, catalog, START + 2 * DAY, EX1="vulnerable", EX2="patched")
    assert store.open_since(last)["EX1"].at == START


def test_an_earlier_snapshot_is_read_as_of_its_own_time(empty_store, shipped_catalog):
    store, catalog = empty_store, shipped_catalog
    first = _save(store, catalog, START, EX1="vulnerable")
    _save(store, catalog, START + DAY, EX1="patched")
    assert store.open_since(first) == {"EX1": store.open_since(first)["EX1"]}
    assert store.open_since(first)["EX1"].at == START


def test_nothing_open_is_empty(empty_store, shipped_catalog):
    last = _save(empty_store, shipped_catalog, START, EX1="patched")
    assert empty_store.open_since(last) == {}


def test_pruning_keeps_the_clocks_later_snapshots_carry(empty_store, shipped_catalog):
    store, catalog = empty_store, shipped_catalog
    _save(store, catalog, START, EX1="patched", EX2="vulnerable")
    _save(store, catalog, START + DAY, EX1="vulnerable", EX2="vulnerable")
    _save(store, catalog, START + 2 * DAY, EX1="vulnerable", EX2="vulnerable")
    last = _save(store, catalog, START + 3 * DAY, EX1="vulnerable", EX2="vulnerable")
    before = store.open_since(last)
    assert store.prune(keep=1) == 3
    assert store.open_since(last) == before
    assert (before["EX1"].at, before["EX2"].at) == (START + DAY, START)
    assert store.verify().ok
    # The next save carries them on from the newest snapshot.
    newest = _save(store, catalog, START + 4 * DAY, EX1="vulnerable", EX2="patched")
    assert {h: o.at for h, o in store.open_since(newest).items()} == {"EX1": START + DAY}
    assert store.verify().ok


@pytest.mark.parametrize("statement", [
    # a later start: the host looks less overdue
    "UPDATE open_items SET since = '2021-03-06T08:00:00+00:00' WHERE host = 'EX2'",
    # an open host taken off the clock
    "DELETE FROM open_items WHERE host = 'EX1'",
    # a compliant host put on it
    "INSERT INTO open_items (snapshot_id, position, host, since, pruned_before) "
    "SELECT snapshot_id, 2, 'EX3', since, 0 FROM open_items WHERE host = 'EX1'",
])
def test_a_changed_clock_fails_verification(empty_store, shipped_catalog, statement):
    store, catalog = empty_store, shipped_catalog
    _save(store, catalog, START, EX1="vulnerable", EX2="vulnerable", EX3="patched")
    _save(store, catalog, START + DAY, EX1="vulnerable", EX2="vulnerable", EX3="patched")
    assert store.verify().ok
    with store.engine.begin() as conn:
        conn.exec_driver_sql(statement)
    report = store.verify()
    assert not report.ok
    assert any("deadline clock" in p.message for p in report.problems)


def test_the_migration_derives_the_clocks_of_a_store_written_before(empty_store,
                                                                    shipped_catalog):
    from store import clock
    from store.snapshots import open_rows

    store, catalog = empty_store, shipped_catalog
    _save(store, catalog, START, EX1="vulnerable", EX2="patched")
    _save(store, catalog, START + DAY, EX1="vulnerable", EX2="vulnerable")
    last = _save(store, catalog, START + 2 * DAY, EX1="patched", EX2="vulnerable")
    saved = store.open_since(last)
    with store.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM open_items")
        clock.backfill(conn, open_rows)
    assert store.open_since(last) == saved
    assert store.verify().ok


@pytest.mark.parametrize("since", ["garbage", "9999-12-31T23:59:59+00:00", "",
                                   "0001-01-01T00:00:00+14:00", "1999-12-31T23:59:59+00:00"])
def test_a_clock_that_cannot_be_used_counts_as_not_known(empty_store, shipped_catalog, since):
    """Changed outside the tool (verify names it): left out, so the deadline counts from the
    advisory's publication, the earliest start; nothing stops."""
    from compliance.deadline import DeadlinePolicy
    from store.deadlines import host_deadlines

    store, catalog = empty_store, shipped_catalog
    last = _save(store, catalog, START, EX1="vulnerable")
    with store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE open_items SET since = ?", (since,))
    assert store.open_since(last) == {}
    found = host_deadlines(store, last, catalog, DeadlinePolicy())["EX1"]
    assert found.open_since is None and found.deadline.due_at == datetime(2021, 3, 4, tzinfo=UTC)
    assert not store.verify().ok


@pytest.mark.parametrize("keep", [1, 2])
def test_after_a_pruning_a_moved_clock_still_fails_verification(empty_store, shipped_catalog,
                                                               keep):
    """The clocks of the first snapshot kept no longer follow from any row: the prune entry
    records them (review of issue 17: a later start passed verify after a prune)."""
    store, catalog = empty_store, shipped_catalog
    for day in range(4):
        _save(store, catalog, START + day * DAY, EX1="vulnerable", EX2="vulnerable")
    assert store.prune(keep=keep) == 4 - keep
    assert store.verify().ok
    first_kept = next(s.id for s in store.history() if not s.pruned)
    with store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE open_items SET since = (SELECT taken_at FROM snapshots "
                             "WHERE id = ?) WHERE snapshot_id = ?", (first_kept, first_kept))
    report = store.verify()
    assert not report.ok
    assert any("deadline clock" in p.message for p in report.problems)
