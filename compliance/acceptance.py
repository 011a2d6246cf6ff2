"""Risk acceptances (issue 17): a named person's decision to live with one host's gap for a
while, and whether the evidence still matches what was accepted.

An acceptance never changes a verdict: the host's status stays what its evidence says, and
the acceptance only stands beside it ("accepted until <date> by <approver>"). It is in force
from when it was recorded until the first of these ends it:

- its expiry (required, at most ``MAX_DAYS`` days after it was recorded, configurable);
- a revocation;
- a change of the evidence it did not cover: the host's status moves away from the accepted
  one (patched, or now unknown because it could not be read), an interim mitigation it relied
  on is no longer seen, or compromise indicators appear; or the host leaves the fleet.

What is never accepted: a compliant host (there is no gap) and a host with compromise
indicators (a planted web shell is investigated, not tolerated; CISA ED 21-02 required
forensic triage). Pure: times are inputs, nothing is read or stored here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from compliance.models import Flag, Status
from compliance.summary import HostSummary

MAX_DAYS = 90  # the default longest acceptance, in days ([acceptances] max_days)
MAX_TEXT = 500  # characters of a reason, an approver's name or a ticket reference
ACCEPTABLE = frozenset({Status.VULNERABLE, Status.MITIGATED, Status.UNKNOWN})


class AcceptanceError(ValueError):
    """An acceptance that cannot be recorded; the message says which rule and what to do."""


class Ending(StrEnum):
    """Why an acceptance is not in force at a moment."""

    NOT_YET = "not_yet"  # the moment is before it was recorded
    EXPIRED = "expired"
    REVOKED = "revoked"
    HOST_GONE = "host_gone"
    INDICATORS = "indicators"
    STATUS_CHANGED = "status_changed"
    MITIGATION_GONE = "mitigation_gone"


@dataclass(frozen=True)
class Acceptance:
    """One host's accepted gap: the ``status`` it had and the ``mitigations`` (advisory ids)
    it relied on when accepted; times are aware (UTC)."""

    host: str
    status: Status
    mitigations: tuple[str, ...]
    reason: str
    approver: str
    ticket: str
    accepted_at: datetime
    expires_at: datetime
    accepted_by: str
    revoked_at: datetime | None = None
    revoked_by: str = ""

    @property
    def badge(self) -> str:
        """What stands beside the host's status: "accepted until 2026-12-30 by A. Approver"."""
        return f"accepted until {self.expires_at.astimezone(UTC):%Y-%m-%d} by {self.approver}"


@dataclass(frozen=True)
class Standing:
    """An acceptance at one moment: in force, or ended and why (``detail``, in words)."""

    in_force: bool
    ending: Ending | None = None
    detail: str = ""


def _aware(moment: datetime, name: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise AcceptanceError(f"{name} needs a time zone (UTC)")


def _text(value: str, name: str, required: bool = True) -> str:
    cleaned = " ".join(str(value).split())
    if required and not cleaned:
        raise AcceptanceError(f"an acceptance needs {name}")
    if len(cleaned) > MAX_TEXT:
        raise AcceptanceError(f"{name} is longer than {MAX_TEXT} characters")
    return cleaned


def accept(summary: HostSummary, *, reason: str, approver: str, ticket: str,
           expires_at: datetime, accepted_by: str, now: datetime,
           max_days: int = MAX_DAYS) -> Acceptance:
    """The acceptance of ``summary``'s host as it stands: its status and the mitigations seen.

    ``AcceptanceError`` when the host has no gap to accept (patched or not affected), shows
    compromise indicators, or when the reason or approver is empty, a text is too long, a
    time has no time zone, or the expiry is not after ``now`` and at most ``max_days`` days
    (whole days of 24 hours) after it.
    """
    _aware(now, "the time of acceptance")
    _aware(expires_at, "the expiry")
    if max_days < 1:
        raise AcceptanceError("the longest acceptance must be at least one day")
    if summary.status not in ACCEPTABLE:
        raise AcceptanceError(f"{summary.host} is {summary.status.value}: there is no gap to "
                              "accept")
    if Flag.INDICATORS_FOUND in summary.flags:
        raise AcceptanceError(f"{summary.host} shows compromise indicators: investigate it "
                              "(the patch does not remove a web shell); it cannot be accepted")
    if expires_at <= now:
        raise AcceptanceError("the expiry must be after now")
    if expires_at - now > timedelta(days=max_days):
        raise AcceptanceError(f"the expiry is more than {max_days} days away: accept for at "
                              f"most {max_days} days, then review and accept again")
    return Acceptance(
        host=summary.host, status=summary.status, mitigations=tuple(summary.mitigations),
        reason=_text(reason, "a reason"), approver=_text(approver, "an approver"),
        ticket=_text(ticket, "a ticket reference", required=False),
        accepted_at=now.astimezone(UTC), expires_at=expires_at.astimezone(UTC),
        accepted_by=_text(accepted_by, "who records it"))


def revoke(acceptance: Acceptance, *, by: str, now: datetime) -> Acceptance:
    """``acceptance`` revoked at ``now`` by ``by`` (``AcceptanceError`` if it already was, or
    the time has no time zone)."""
    _aware(now, "the time of revocation")
    if acceptance.revoked_at is not None:
        raise AcceptanceError(f"the acceptance of {acceptance.host} was already revoked")
    return Acceptance(**{**acceptance.__dict__, "revoked_at": now.astimezone(UTC),
                         "revoked_by": _text(by, "who revokes it")})


def standing(acceptance: Acceptance, summary: HostSummary | None, at: datetime) -> Standing:
    """Whether ``acceptance`` is in force at ``at`` for the host as ``summary`` shows it then
    (None: the host is not in the fleet). The first ending that applies is given."""
    _aware(at, "the moment")
    if at < acceptance.accepted_at:
        return Standing(False, Ending.NOT_YET, "not yet recorded at that time")
    revoked_at, expires_at = acceptance.revoked_at, acceptance.expires_at
    if revoked_at is not None and revoked_at <= at and revoked_at < expires_at:  # first wins
        when = revoked_at.astimezone(UTC)
        return Standing(False, Ending.REVOKED,
                        f"revoked {when:%Y-%m-%d %H:%M} UTC by {acceptance.revoked_by}")
    if at >= expires_at:
        return Standing(False, Ending.EXPIRED,
                        f"expired {expires_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC")
    if summary is None:
        return Standing(False, Ending.HOST_GONE, "the host is no longer in the fleet")
    if Flag.INDICATORS_FOUND in summary.flags:
        return Standing(False, Ending.INDICATORS, "compromise indicators appeared")
    if summary.status is not acceptance.status:
        return Standing(False, Ending.STATUS_CHANGED,
                        f"the host is now {summary.status.value}, not "
                        f"{acceptance.status.value} as accepted")
    missing = [m for m in acceptance.mitigations if m not in summary.mitigations]
    if missing:
        return Standing(False, Ending.MITIGATION_GONE,
                        f"no longer seen: {', '.join(missing)}, which the acceptance relied on")
    return Standing(True)
