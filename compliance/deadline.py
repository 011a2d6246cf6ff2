"""Deadlines (issue 17): by when a host that needs work must be fixed, and whether it is late.

A deadline policy gives days per kind of gap, counted from one of two starts:

- ``first_seen``: the time of the first snapshot of the host's current open stretch (the
  snapshots since it last did not need work; store/snapshots.py ``open_since``);
- ``published``: the advisory's publication (its date, from 00:00 UTC: the earliest reading).

and optional fixed directive dates, each for some statuses ("patch or disconnect by
2021-03-05 12:00 UTC", CISA ED 21-02). A host's due time is the earliest that applies:

- its status's days (vulnerable, mitigated, unknown: a host not read may be vulnerable);
- ``indicators`` days when it shows compromise indicators (patched or not): a CVE check hit
  (``Flag.INDICATORS_FOUND``) or an investigation that found some (a Defender/MSERT detection
  or a web-shell candidate too: ``InvestigationState.INDICATORS_FOUND``), as
  compliance/worklist.py ``compromised`` says;
- ``vulnerable`` days when OWA/ECP disclose an older build than the server reports
  (``outside_older_than_inside``; patched too, not when not affected: the worklist ranks it
  as vulnerable, compliance/worklist.py);
- ``unknown`` days when an OWA/ECP web.config holds an unresolved %ExchangeInstallDir%
  (``web_config_broken``; patched too, not when not affected: the worklist ranks it as
  unknown);
- every directive that names its status.

A host that needs nothing has no deadline. A host is overdue from the exact due instant on
(``now >= due_at``). Pure: times are inputs; nothing is read here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum

from compliance.investigation import InvestigationState
from compliance.models import Flag, Status

INDICATORS = "indicators"  # the kind of gap of a host with compromise indicators
KINDS = (Status.VULNERABLE.value, Status.MITIGATED.value, Status.UNKNOWN.value, INDICATORS)


class Basis(StrEnum):
    FIRST_SEEN = "first_seen"
    PUBLISHED = "published"


@dataclass(frozen=True)
class Directive:
    """A fixed date for hosts of ``statuses``, e.g. CISA ED 21-02; ``due`` is aware."""

    name: str
    due: datetime
    statuses: frozenset[Status]


@dataclass(frozen=True)
class DeadlinePolicy:
    """Days allowed per kind (``KINDS``: a status's value, or ``INDICATORS``), from ``basis``;
    the defaults are the shipped ones ([deadlines] in the settings)."""

    basis: Basis = Basis.FIRST_SEEN
    days: Mapping[str, float] = field(default_factory=lambda: {
        "vulnerable": 2.0, "mitigated": 14.0, "unknown": 2.0, INDICATORS: 0.0})
    directives: tuple[Directive, ...] = ()

    def __hash__(self) -> int:  # for caches keyed by the policy
        return hash((self.basis, tuple(sorted(self.days.items())), self.directives))

    def describe(self) -> str:
        """One line for pages and reports, e.g. "vulnerable 2 d, mitigated 14 d, … from the
        day first seen; CISA ED 21-02 by 2021-03-05 12:00 UTC"."""
        start = ("the day a host was first seen needing work" if self.basis is Basis.FIRST_SEEN
                 else "the advisory's publication")
        days = ", ".join(f"{'compromise indicators' if kind == INDICATORS else kind} "
                         f"{_days(self.days[kind])}" for kind in KINDS if kind in self.days)
        fixed = "".join(f"; {d.name} by {d.due.astimezone(UTC):%Y-%m-%d %H:%M} UTC "
                        f"({', '.join(sorted(s.value for s in d.statuses))})"
                        for d in self.directives)
        return f"{days}, counted from {start}{fixed}"


def _days(value: float) -> str:
    return f"{value:g} day" + ("" if value == 1 else "s")


@dataclass(frozen=True)
class Deadline:
    """When a host must be fixed (``due_at``, aware UTC), by which rule (in words), and from
    when its clock runs (``since``; None for a directive)."""

    due_at: datetime
    rule: str
    since: datetime | None

    def overdue(self, now: datetime) -> bool:
        """Late from the exact due instant on."""
        return now >= self.due_at


def published_at(published: str) -> datetime:
    """An advisory's publication date ("2021-03-02") as its first instant, 00:00 UTC (the
    earliest reading, so no deadline is later than the policy says); ``ValueError`` for a
    text that is not a date."""
    day = date.fromisoformat(published[:10])
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def kinds(status: Status, flags: Iterable[Flag],
          investigation: InvestigationState | None = None) -> tuple[str, ...]:
    """The kinds of gap a host has (none: it needs no work); ``investigation``: its state after
    the fix (None: not judged)."""
    seen = tuple(flags)
    found: list[str] = [status.value] if status.value in KINDS else []
    if (Flag.OUTSIDE_OLDER_THAN_INSIDE in seen and status is not Status.NOT_APPLICABLE
            and Status.VULNERABLE.value not in found):
        found.append(Status.VULNERABLE.value)
    if (Flag.WEB_CONFIG_BROKEN in seen and status is not Status.NOT_APPLICABLE
            and Status.UNKNOWN.value not in found):
        found.append(Status.UNKNOWN.value)
    if Flag.INDICATORS_FOUND in seen or investigation is InvestigationState.INDICATORS_FOUND:
        found.append(INDICATORS)
    return tuple(found)


def deadline(status: Status, flags: Iterable[Flag], policy: DeadlinePolicy, *,
             open_since: datetime | None, published: datetime,
             investigation: InvestigationState | None = None) -> Deadline | None:
    """The host's deadline, or None when it needs no work (``investigation`` as ``kinds``').

    ``open_since``: when the host was first seen needing work in its current open stretch
    (basis ``first_seen``); None, as when it is not known, counts from ``published`` (the
    earliest start: a deadline is never later for what is not known). ``ValueError`` for a
    naive time.
    """
    gaps = kinds(status, tuple(flags), investigation)
    if not gaps:
        return None
    for moment in (open_since, published):
        if moment is not None and (moment.tzinfo is None or moment.utcoffset() is None):
            raise ValueError("deadline times need a time zone (UTC)")
    start = published if policy.basis is Basis.PUBLISHED or open_since is None else open_since
    try:
        start.astimezone(UTC)
    except OverflowError:  # an instant at the calendar's edge: not a start (fail closed)
        start = published
    since_words = ("the advisory's publication" if start is published
                   else f"first seen {start.astimezone(UTC):%Y-%m-%d}")
    candidates: list[Deadline] = []
    for kind in gaps:
        if kind in policy.days:
            label = "compromise indicators" if kind == INDICATORS else kind
            try:
                due_at = (start + timedelta(days=policy.days[kind])).astimezone(UTC)
            except OverflowError:  # past the calendar's end: due from its start (fail closed)
                due_at = start.astimezone(UTC)
            candidates.append(Deadline(
                due_at, f"{label}: {_days(policy.days[kind])} from {since_words}", start))
    for directive in policy.directives:
        if status in directive.statuses:
            candidates.append(Deadline(directive.due.astimezone(UTC), directive.name, None))
    if not candidates:  # a policy without days for this kind: due at once (fail closed)
        return Deadline(start.astimezone(UTC), f"{gaps[0]}: no days allowed", start)
    return min(candidates, key=lambda d: d.due_at)
