"""After a collection's snapshot is saved: what changed since the previous snapshot, told once.

``after_snapshot`` builds the run's one ``Report`` from the store (hosts that changed, items
that became overdue, risk acceptances that entered their last days), sends it by every
configured channel (notify/delivery.py), records the outcome in the audit log, and returns
one line for the job's summary. It never raises: a notification that cannot be built or
delivered never fails the collection, whose snapshot is saved before this runs.

The first snapshot of a store is the baseline: nothing is compared, nothing is sent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from compliance.catalog import Catalog
from compliance.deadline import DeadlinePolicy
from compliance.evaluate import Policy
from notify.changes import Change, ChangeKind, Report, host_changes
from notify.delivery import Delivery, deliver
from settings import NotificationSettings
from store import SnapshotInfo, SnapshotStore
from store.acceptances import acceptances, standing_in
from store.deadlines import host_deadlines

log = logging.getLogger(__name__)


def configured(settings: NotificationSettings) -> bool:
    return bool(settings.smtp_host or settings.webhook_url)


def report_for(store: SnapshotStore, snapshot_id: int, catalog: Catalog, *,
               deadlines: DeadlinePolicy, evaluation: Policy | None, expiring_days: float,
               now: datetime) -> Report | None:
    """The run's report, or None for the first snapshot (nothing to compare with).

    Changes since the previous snapshot in chain order: each host ``host_changes`` names;
    ``OVERDUE``, each open host overdue at ``now`` that was not overdue at the previous
    snapshot's time (as that snapshot's deadlines stood); ``ACCEPTANCE_EXPIRING``, each acceptance in force whose last
    ``expiring_days`` began in that window (so each is told once)."""
    history = [s for s in store.history() if not s.pruned or s.id == snapshot_id]
    at = next((i for i, s in enumerate(history) if s.id == snapshot_id), None)
    if at is None or at == 0:
        return None
    current, previous = history[at], history[at - 1]
    before, after = store.changed_summaries(previous.id, current.id, catalog, evaluation)
    changes: list[Change] = list(host_changes(before, after))
    since = previous.taken_at
    # Overdue now and not at the previous snapshot's time (its deadlines then, under today's
    # policy): an item whose due time passed since, or jumped into the past (a mitigated host
    # now unknown). A policy made stricter between two runs is not a change of any host.
    before_due = {host.casefold(): d for host, d in host_deadlines(
        store, previous.id, catalog, deadlines, evaluation).items()}
    for item in host_deadlines(store, current.id, catalog, deadlines, evaluation).values():
        earlier = before_due.get(item.host.casefold())
        if item.deadline.overdue(now) and not (earlier is not None
                                               and earlier.deadline.overdue(since)):
            changes.append(Change(ChangeKind.OVERDUE, item.host,
                                  f"due {item.deadline.due_at:%Y-%m-%d %H:%M} UTC "
                                  f"({item.deadline.rule})"))
    changes += _expiring(store, current, catalog, evaluation, since, now, expiring_days)
    return Report(current.id, current.taken_at, previous.id, tuple(changes))


def _expiring(store: SnapshotStore, current: SnapshotInfo, catalog: Catalog,
              evaluation: Policy | None, since: datetime, now: datetime,
              days: float) -> list[Change]:
    recorded = acceptances(store, now)
    if not recorded:
        return []
    hosts = {s.host.casefold(): s for s in store.summaries(
        current.id, catalog, evaluation, hosts={r.acceptance.host for r in recorded})}
    window = timedelta(days=days)
    found = []
    for r in recorded:
        made = r.acceptance
        if (since < made.expires_at - window <= now
                and standing_in(store, r, hosts.get(made.host.casefold()), now).in_force):
            found.append(Change(ChangeKind.ACCEPTANCE_EXPIRING, made.host,
                                f"accepted until {made.expires_at:%Y-%m-%d %H:%M} UTC by "
                                f"{made.approver}"))
    return found


def after_snapshot(store: SnapshotStore, snapshot_id: int, catalog: Catalog, *,
                   settings: NotificationSettings, deadlines: DeadlinePolicy,
                   evaluation: Policy | None, now: datetime, who: str,
                   sleep: Callable[[float], None] = time.sleep) -> str:
    """Notify what snapshot ``snapshot_id`` changed (see the module); returns one line for
    the job's summary ("" when no channel is configured). Never raises."""
    if not configured(settings):
        return ""
    try:
        report = report_for(store, snapshot_id, catalog, deadlines=deadlines,
                            evaluation=evaluation, expiring_days=settings.expiring_days,
                            now=now)
    except Exception as error:  # never fail the collection: say so, once
        log.exception("notification not built")
        return _recorded(store, who, snapshot_id,
                         f"notification not built: {type(error).__name__}")
    if report is None:
        return "notifications: the first snapshot is the baseline, nothing sent"
    if report.empty:
        return "notifications: nothing changed, nothing sent"
    deliveries = deliver(report, settings, sleep=sleep)
    return _recorded(store, who, snapshot_id, _outcome(report, deliveries))


def _outcome(report: Report, deliveries: tuple[Delivery, ...]) -> str:
    told = len(report.changes)
    parts = [f"{d.channel} to {d.target}: "
             + ("sent" if d.ok else f"FAILED after {d.attempts} attempt"
                + ("s" if d.attempts != 1 else "") + f" ({d.error})")
             for d in deliveries]
    return (f"notification of {told} change{'s' if told != 1 else ''}: "
            + ("; ".join(parts) or "no channel"))


def _recorded(store: SnapshotStore, who: str, snapshot_id: int, detail: str) -> str:
    try:
        store.record(who, "notify", snapshot_id, detail)
    except Exception:  # the audit log cannot be written: the line still reaches the person
        log.exception("notification outcome not recorded in the audit log")
        return f"{detail} (not recorded in the audit log)"
    return detail
