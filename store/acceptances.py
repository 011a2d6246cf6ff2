"""Risk acceptances in the store: entries of the audit chain (compliance/acceptance.py).

Each acceptance is one ``accept`` entry of the audit log, naming the snapshot whose evidence
it accepted; each revocation one ``revoke`` entry naming the acceptance (the id of its entry).
So they are chained, signed with the store's key and checked by ``python -m store verify``
exactly as every other audit entry: an acceptance forged, edited or removed in the database
fails verification (tests/security/test_forgery.py). Nothing is ever updated in place: what
was in force at any moment is read back from the entries written up to then ("as of").

An entry whose detail this tool cannot read (written by no version of it) is never in force:
an acceptance only ever adds a badge and moves a host down the worklist, so leaving one out
fails closed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from compliance.acceptance import (
    ACCEPTABLE,
    MAX_TEXT,
    Acceptance,
    AcceptanceError,
    Ending,
    Standing,
    revoke,
    standing,
)
from compliance.models import Status
from compliance.summary import HostSummary
from store import schema
from store.snapshots import SnapshotStore, StoreError

ACCEPT, REVOKE = "accept", "revoke"
FORMAT = 1  # of an entry's detail


@dataclass(frozen=True)
class Recorded:
    """An acceptance as stored: ``id`` is its audit entry's (what ``revoke`` names),
    ``snapshot_id`` the snapshot whose evidence it accepted."""

    id: int
    snapshot_id: int | None
    acceptance: Acceptance


def _detail(acceptance: Acceptance) -> str:
    return json.dumps({
        "format": FORMAT, "host": acceptance.host, "status": acceptance.status.value,
        "mitigations": list(acceptance.mitigations), "reason": acceptance.reason,
        "approver": acceptance.approver, "ticket": acceptance.ticket,
        "accepted_at": acceptance.accepted_at.isoformat(),
        "expires_at": acceptance.expires_at.isoformat(), "accepted_by": acceptance.accepted_by,
    }, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _parsed(detail: str) -> Acceptance | None:
    """The acceptance an ``accept`` entry's detail holds; None for anything else."""
    try:
        return parse_fields(json.loads(detail))
    except (ValueError, RecursionError):
        return None


def parse_fields(data: Any) -> Acceptance | None:
    """The acceptance a mapping of an entry's detail fields holds (``format`` 1, as
    ``record`` writes them; an evidence bundle's acceptances.json rows carry the same
    fields); None for anything accept() never makes."""
    try:
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            return None
        mitigations = data["mitigations"]
        texts = [data[k] for k in ("host", "reason", "approver", "ticket", "accepted_by")]
        if not isinstance(mitigations, list) or not all(
                isinstance(t, str) for t in [*texts, *mitigations]):
            return None
        accepted_at = datetime.fromisoformat(data["accepted_at"])
        expires_at = datetime.fromisoformat(data["expires_at"])
        status = Status(data["status"])
        # Only what accept() makes: a gap, an expiry after the acceptance, aware times.
        if accepted_at.tzinfo is None or expires_at.tzinfo is None \
                or expires_at <= accepted_at or status not in ACCEPTABLE:
            return None
        return Acceptance(host=data["host"], status=status,
                          mitigations=tuple(mitigations), reason=data["reason"],
                          approver=data["approver"], ticket=data["ticket"],
                          accepted_at=accepted_at, expires_at=expires_at,
                          accepted_by=data["accepted_by"])
    except (ValueError, KeyError, TypeError, RecursionError):
        return None


# Endings that the evidence of one snapshot brings; once one happened, the acceptance stays
# ended, whatever later snapshots show (a web shell found and then no longer seen, or a
# mitigation gone and back, is not the gap that was accepted).
EVIDENCE_ENDINGS = frozenset({Ending.HOST_GONE, Ending.INDICATORS, Ending.STATUS_CHANGED,
                              Ending.MITIGATION_GONE})


def standing_in(store: SnapshotStore, recorded: Recorded, summary: HostSummary | None,
                moment: datetime) -> Standing:
    """``compliance.acceptance.standing`` at ``moment`` against ``summary`` (the host as the
    snapshot in force then shows it), and ended as well by the first snapshot saved between
    the acceptance and ``moment`` whose evidence it did not cover, or when one of those was
    pruned (what it showed is gone: fail closed). Hosts are matched by their stored name: a
    host renamed by case reads as gone (ended, never in force by mistake)."""
    now = standing(recorded.acceptance, summary, moment)
    if not now.in_force:
        return now
    made = recorded.acceptance
    pruned = [s for s in store.history() if s.pruned and made.accepted_at < s.taken_at <= moment]
    if pruned:  # the evidence it lived through is gone: it cannot be followed (fail closed)
        return Standing(False, Ending.HOST_GONE,
                        f"snapshots since it was recorded were pruned "
                        f"({pruned[0].taken_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC): its "
                        "evidence can no longer be followed; accept again if it still holds")
    for taken_at, seen in store.host_history(made.host, made.accepted_at, moment):
        then = standing(made, seen, taken_at)
        if then.ending in EVIDENCE_ENDINGS:
            return Standing(False, then.ending, f"{then.detail} (snapshot of "
                                                f"{taken_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC)")
    return now


def record(store: SnapshotStore, acceptance: Acceptance, snapshot_id: int,
           summary: HostSummary | None = None) -> int:
    """Append ``acceptance`` (of the evidence in ``snapshot_id``, which ``summary`` shows)
    to the audit chain, at its own time, by its recorder; returns its id. ``StoreError`` when
    an acceptance of the same host is still in force against ``summary`` (one at a time:
    revoke it first), or when it cannot be written."""
    if summary is not None:
        for earlier in acceptances(store, acceptance.accepted_at):
            if earlier.acceptance.host.casefold() == acceptance.host.casefold() and standing_in(
                    store, earlier, summary, acceptance.accepted_at).in_force:
                raise StoreError(f"acceptance #{earlier.id} of {acceptance.host} is in force "
                                 f"({earlier.acceptance.badge}): revoke it first")
    return store.record(acceptance.accepted_by, ACCEPT, snapshot_id, _detail(acceptance),
                        at=acceptance.accepted_at)


def record_revocation(store: SnapshotStore, acceptance_id: int, by: str, now: datetime) -> None:
    """Revoke the acceptance ``acceptance_id`` at ``now`` (one that has already ended may be
    revoked too, for the record). ``StoreError`` when there is no such acceptance, it is
    already revoked, or the entry cannot be written."""
    found = {r.id: r for r in acceptances(store, now)}
    if acceptance_id not in found:
        raise StoreError(f"there is no acceptance #{acceptance_id} (python -m store "
                         "acceptances lists them)")
    try:
        revoke(found[acceptance_id].acceptance, by=by, now=now)  # the same rules apply
    except AcceptanceError as error:
        raise StoreError(str(error)) from None
    store.record(by, REVOKE, None, json.dumps({"format": FORMAT, "acceptance": acceptance_id}),
                 at=now)


def acceptances(store: SnapshotStore, as_of: datetime | None = None) -> list[Recorded]:
    """Every acceptance recorded up to ``as_of`` (default: all), oldest first, each with
    the revocations recorded up to then applied; whether each is in force at a moment is
    ``compliance.acceptance.standing``'s to say."""
    entries = _entries(store)
    recorded: dict[int, Recorded] = {}
    for entry in entries:
        at = _time(entry["at"])
        if at is None or (as_of is not None and at > as_of):
            continue
        if entry["action"] == ACCEPT:
            acceptance = _parsed(str(entry["detail"]))
            if acceptance is not None:
                recorded[int(entry["id"])] = Recorded(int(entry["id"]), entry["snapshot_id"],
                                                      acceptance)
        elif entry["action"] == REVOKE:
            target = _revoked_id(str(entry["detail"]))
            if target in recorded and recorded[target].acceptance.revoked_at is None:
                # As recorded: read, never judged again (a revoke()'s refusal here would
                # make one odd entry stop every page).
                old = recorded[target]
                who = " ".join(str(entry["who"]).split())[:MAX_TEXT] or "?"
                recorded[target] = Recorded(old.id, old.snapshot_id, replace(
                    old.acceptance, revoked_at=at, revoked_by=who))
    return list(recorded.values())


def _entries(store: SnapshotStore) -> list[dict[str, Any]]:
    log = schema.audit_log
    with store.engine.connect() as conn:
        return [dict(row) for row in conn.execute(
            select(log.c.id, log.c.at, log.c.who, log.c.action, log.c.snapshot_id, log.c.detail)
            # An entry outside the chain (no position or digest) is no acceptance: only the
            # tool's writes are chained, and verify names the row.
            .where(log.c.action.in_((ACCEPT, REVOKE)), log.c.sequence.is_not(None),
                   log.c.hash.is_not(None)).order_by(log.c.id)).mappings()]


def _time(text: Any) -> datetime | None:
    try:
        moment = datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _revoked_id(detail: str) -> int | None:
    try:
        data = json.loads(detail)
        target = data.get("acceptance") if isinstance(data, Mapping) else None
    except (ValueError, RecursionError):
        return None
    return target if isinstance(target, int) and not isinstance(target, bool) else None
