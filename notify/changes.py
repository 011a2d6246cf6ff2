"""What changed between two snapshots that a person should hear about. Pure: no I/O, no clock.

``host_changes(previous, current)`` compares the hosts of two snapshots (matched by name,
case-insensitively, as AD compares names) and gives the changes worth a message; the
collection job adds the deadline ones (``OVERDUE``, ``ACCEPTANCE_EXPIRING``) it computes
itself, and wraps them all in one ``Report`` per run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from compliance.investigation import InvestigationState
from compliance.models import Flag, Status
from compliance.summary import HostSummary


class ChangeKind(StrEnum):
    """What happened to a host. Declared most urgent first: every list and message follows
    this order, so when a long message is cut (a first run lists every server as new) the
    compromise indicators and regressions are what stays."""

    NEW_INDICATORS = "new_indicators"
    REGRESSED = "regressed"
    MITIGATION_REMOVED = "mitigation_removed"
    OVERDUE = "overdue"
    ACCEPTANCE_EXPIRING = "acceptance_expiring"
    NEW_SERVER = "new_server"

    @property
    def rank(self) -> int:
        return _RANKS[self]


_RANKS = {kind: rank for rank, kind in enumerate(ChangeKind)}


@dataclass(frozen=True)
class Change:
    """One thing that happened to one host; ``detail`` says it in words, e.g.
    ``"patched -> vulnerable"``. ``host`` and ``detail`` are untrusted text (AD, the probe)."""

    kind: ChangeKind
    host: str
    detail: str


def ordered(changes: Iterable[Change]) -> tuple[Change, ...]:
    """``changes`` by kind (most urgent first), then host (case-insensitively), then detail."""
    return tuple(sorted(changes, key=lambda c: (c.kind.rank, c.host.casefold(), c.host,
                                                c.detail)))


@dataclass(frozen=True)
class Report:
    """The one message of a run: what changed in snapshot ``snapshot_id`` (taken at
    ``taken_at``) since ``previous_id`` (None: the first snapshot).

    ``changes`` are kept in ``ordered`` order whatever order they were given in.
    ``ValueError`` when ``taken_at`` has no time zone (the message states it in UTC).
    """

    snapshot_id: int
    taken_at: datetime
    previous_id: int | None
    changes: tuple[Change, ...]

    def __post_init__(self) -> None:
        if self.taken_at.tzinfo is None or self.taken_at.utcoffset() is None:
            raise ValueError("Report.taken_at needs a time zone")
        # Sorted here, once, so every message built from a report lists the same order.
        object.__setattr__(self, "changes", ordered(self.changes))

    @property
    def empty(self) -> bool:
        """Nothing to say: no message is sent."""
        return not self.changes

    @property
    def counts(self) -> dict[ChangeKind, int]:
        """Changes per kind, every kind present (0 for none), in kind order."""
        counts = dict.fromkeys(ChangeKind, 0)
        for change in self.changes:
            counts[change.kind] += 1
        return counts


def host_changes(previous: Sequence[HostSummary],
                 current: Sequence[HostSummary]) -> tuple[Change, ...]:
    """The changes from ``previous`` to ``current`` (two snapshots' hosts), ``ordered``.

    - ``NEW_SERVER``: in ``current`` only;
    - ``REGRESSED``: was ``patched``, is anything else now;
    - ``MITIGATION_REMOVED``: a mitigation in place before is gone while the host is not
      compliant (a patched host needs none); not claimed when the probe could not read the
      mitigations (``mitigation_unreadable``) or the host is ``unknown`` (not read, or stale:
      its mitigations are unknown, not missing);
    - ``NEW_INDICATORS``: more compromise-indicator hits than before (any, for a new host),
      or an investigation after the fix that found indicators (a Defender/MSERT detection or
      a possible web shell: ``InvestigationState.INDICATORS_FOUND``) where it found none
      before (compliance/worklist.py ``compromised``: the same compromise indicators).

    One host may make several changes; a host gone from ``current`` makes none (retiring a
    server is not news). A name twice in one list counts once (its first row).
    """
    before = _by_name(previous)
    changes: list[Change] = []
    for name, now in _by_name(current).items():
        then = before.get(name)
        if then is None:
            changes.append(Change(ChangeKind.NEW_SERVER, now.host, f"first seen, {now.status}"))
            if now.indicator_count > 0:
                changes.append(Change(ChangeKind.NEW_INDICATORS, now.host,
                                      _indicators(0, now.indicator_count)))
            elif _found(now):
                changes.append(Change(ChangeKind.NEW_INDICATORS, now.host, INVESTIGATION_FOUND))
            continue
        if then.status is Status.PATCHED and now.status is not Status.PATCHED:
            changes.append(Change(ChangeKind.REGRESSED, now.host, f"{then.status} -> {now.status}"))
        removed = [m for m in then.mitigations if m not in now.mitigations]
        if removed and not now.status.compliant and _mitigations_read(now):
            changes.append(Change(ChangeKind.MITIGATION_REMOVED, now.host,
                                  f"{', '.join(removed)} no longer in place; now {now.status}"))
        if now.indicator_count > then.indicator_count:
            changes.append(Change(ChangeKind.NEW_INDICATORS, now.host,
                                  _indicators(then.indicator_count, now.indicator_count)))
        elif _found(now) and not _found(then):
            changes.append(Change(ChangeKind.NEW_INDICATORS, now.host, INVESTIGATION_FOUND))
    return ordered(changes)


# The detail of an investigation's new indicators: fixed words (the threat names and paths
# behind them are on the Hosts page, not in a chat message).
INVESTIGATION_FOUND = ("the investigation after the fix found compromise indicators (a malware "
                       "detection or a possible web shell): isolate and investigate")


def _found(host: HostSummary) -> bool:
    return host.investigation is InvestigationState.INDICATORS_FOUND


def _by_name(hosts: Sequence[HostSummary]) -> Mapping[str, HostSummary]:
    named: dict[str, HostSummary] = {}
    for host in hosts:
        named.setdefault(host.host.casefold(), host)
    return named


def _mitigations_read(host: HostSummary) -> bool:
    """Whether the host's mitigations were read this time: not when the probe could not read
    them, and not when the host itself was not read (unknown: unreachable, stale or
    unjudgeable), whose mitigations are unknown, not gone."""
    return Flag.MITIGATION_UNREADABLE not in host.flags and host.status is not Status.UNKNOWN


def _indicators(before: int, now: int) -> str:
    plural = "" if now == 1 else "s"
    # No brackets: chat text would show them escaped.
    return f"{now} compromise indicator{plural}, {before} before"
