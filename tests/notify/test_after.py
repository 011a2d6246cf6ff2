"""notify/after.py: the run's one report from the store, each change told once, and a
notification that can never fail the collection."""

from __future__ import annotations

from datetime import timedelta

from compliance.acceptance import accept
from compliance.deadline import DeadlinePolicy
from notify.after import after_snapshot, report_for
from notify.changes import ChangeKind
from settings import resolve
from store.acceptances import record
from tests.store.test_open_since import DAY, START, _save

HOUR = timedelta(hours=1)


def _report(store, catalog, snapshot_id, now, policy=None):  # type: ignore[no-untyped-def]
    return report_for(store, snapshot_id, catalog, deadlines=policy or DeadlinePolicy(),
                      evaluation=None, expiring_days=7.0, now=now)


LENIENT = DeadlinePolicy(days={"vulnerable": 90.0})  # no deadline passes in these tests


def test_the_first_snapshot_is_the_baseline(empty_store, shipped_catalog):
    first = _save(empty_store, shipped_catalog, START, EX1="vulnerable")
    assert _report(empty_store, shipped_catalog, first, START) is None


def test_every_kind_of_change_from_the_store(empty_store, shipped_catalog):
    store, catalog = empty_store, shipped_catalog
    _save(store, catalog, START, EX1="patched", EX2="vulnerable", EX3="patched")
    # Two days on: EX1 regressed, EX2 (open since START, 2 days) became overdue at START + 2 d,
    # EX3 shows indicators (due at once), EX4 is new.
    second = _save(store, catalog, START + 2 * DAY + HOUR, EX1="vulnerable", EX2="vulnerable",
                   EX3="indicators", EX4="patched")
    report = _report(store, catalog, second, START + 2 * DAY + HOUR)
    assert report is not None and report.previous_id == 1
    told = {(c.kind, c.host) for c in report.changes}
    assert told == {
        (ChangeKind.REGRESSED, "EX1"),
        (ChangeKind.OVERDUE, "EX2"),
        (ChangeKind.NEW_INDICATORS, "EX3"),
        (ChangeKind.OVERDUE, "EX3"),      # due at once, after the previous snapshot
        (ChangeKind.NEW_SERVER, "EX4"),
    }
    overdue = next(c for c in report.changes if c.kind is ChangeKind.OVERDUE and c.host == "EX2")
    assert "vulnerable: 2 days" in overdue.detail


def test_an_item_already_overdue_at_the_previous_snapshot_is_not_told_again(empty_store,
                                                                            shipped_catalog):
    store, catalog = empty_store, shipped_catalog
    _save(store, catalog, START, EX1="vulnerable")
    _save(store, catalog, START + 3 * DAY, EX1="vulnerable")  # overdue since START + 2 d
    third = _save(store, catalog, START + 4 * DAY, EX1="vulnerable")
    report = _report(store, catalog, third, START + 4 * DAY)
    assert report is not None and report.empty


def test_an_acceptance_entering_its_last_days_is_told_once(empty_store, shipped_catalog):
    store, catalog = empty_store, shipped_catalog
    first = _save(store, catalog, START, EX1="vulnerable")
    summary = store.summaries(first, catalog)[0]
    made = accept(summary, reason="EEMS in place", approver="A. Approver", ticket="CHG-1",
                  expires_at=START + 10 * DAY, accepted_by="admin", now=START + HOUR)
    record(store, made, first, summary)
    # Its last 7 days begin at START + 3 d.
    early = _save(store, catalog, START + 2 * DAY, EX1="vulnerable")
    assert _report(store, catalog, early, START + 2 * DAY, LENIENT).empty
    inside = _save(store, catalog, START + 4 * DAY, EX1="vulnerable")
    report = _report(store, catalog, inside, START + 4 * DAY, LENIENT)
    assert [(c.kind, c.host) for c in report.changes] == [
        (ChangeKind.ACCEPTANCE_EXPIRING, "EX1")]
    assert "A. Approver" in report.changes[0].detail
    later = _save(store, catalog, START + 5 * DAY, EX1="vulnerable")
    assert _report(store, catalog, later, START + 5 * DAY, LENIENT).empty


def test_a_notification_that_cannot_be_built_is_recorded_not_raised(empty_store,
                                                                    shipped_catalog):
    store, catalog = empty_store, shipped_catalog
    _save(store, catalog, START, EX1="patched")
    second = _save(store, catalog, START + DAY, EX1="vulnerable")
    settings = resolve({}, {"notifications": {"webhook_url": "https://127.0.0.1:9/hook"}},
                       {}).secrets.notifications
    with store.engine.begin() as conn:  # a damaged store: the report cannot be read
        conn.exec_driver_sql("DROP TABLE open_items")
    line = after_snapshot(store, second, catalog, settings=settings,
                          deadlines=DeadlinePolicy(), evaluation=None, now=START + DAY,
                          who="ops", sleep=lambda _s: None)
    assert line.startswith("notification not built")
    entry = store.audit_log()[0]
    assert (entry["action"], entry["snapshot_id"]) == ("notify", second)


def test_nothing_is_done_without_a_channel(empty_store, shipped_catalog):
    store, catalog = empty_store, shipped_catalog
    _save(store, catalog, START, EX1="patched")
    second = _save(store, catalog, START + DAY, EX1="vulnerable")
    settings = resolve({}, {}, {}).secrets.notifications
    assert after_snapshot(store, second, catalog, settings=settings, deadlines=DeadlinePolicy(),
                          evaluation=None, now=START + DAY, who="ops") == ""
    assert store.audit_log() == []


def test_an_item_whose_due_time_jumps_into_the_past_is_told(empty_store, shipped_catalog):
    """A host vulnerable for 5 days under a 30-day rule, now not read (unknown: 2 days): it
    is overdue at once, though its due time fell before the previous snapshot."""
    store, catalog = empty_store, shipped_catalog
    policy = DeadlinePolicy(days={"vulnerable": 30.0, "unknown": 2.0})
    _save(store, catalog, START, EX1="vulnerable")
    _save(store, catalog, START + 4 * DAY, EX1="vulnerable")
    last = _save(store, catalog, START + 5 * DAY, EX1="unread")
    assert store.summaries(last, catalog)[0].status.value == "unknown"
    report = _report(store, catalog, last, START + 5 * DAY, policy)
    assert [(c.kind, c.host) for c in report.changes] == [(ChangeKind.OVERDUE, "EX1")]
