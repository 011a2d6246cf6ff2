"""Comparing snapshots: what changed between two, and what today's catalogue would say."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from compliance.catalog import Catalog
from compliance.evaluate import Policy, evaluate
from compliance.models import Assessment, Status, Verdict


@dataclass(frozen=True)
class Change:
    host: str
    before: str | None
    after: str | None
    detail: str = ""


@dataclass
class Diff:
    newly_patched: list[Change] = field(default_factory=list)
    regressed: list[Change] = field(default_factory=list)
    mitigation_removed: list[Change] = field(default_factory=list)
    new_hosts: list[Change] = field(default_factory=list)
    # Left the fleet: a complete discovery of its scope no longer found it (between two format
    # 1 snapshots, also a host the later run did not assess).
    removed_hosts: list[Change] = field(default_factory=list)
    status_changes: list[Change] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[dict[str, str | None]]]:
        return {name: [{"host": c.host, "before": c.before, "after": c.after, "detail": c.detail}
                       for c in changes] for name, changes in self.__dict__.items()}


class Graded(Protocol):
    """What ``diff`` compares: a ``Verdict`` or a ``HostSummary`` (compliance/summary.py)."""

    @property
    def host(self) -> str: ...
    @property
    def status(self) -> Status: ...
    @property
    def build(self) -> str | None: ...
    @property
    def mitigations(self) -> tuple[str, ...]: ...


def diff(before: Sequence[Graded], after: Sequence[Graded]) -> Diff:
    """Host by host (names compared case-insensitively) from ``before`` to ``after``: give
    each snapshot's whole fleet (``SnapshotStore.summaries``), so a host another run observed
    is never reported as removed. Linear in the two fleets' sizes."""
    old = {v.host.lower(): v for v in before}
    new = {v.host.lower(): v for v in after}
    result = Diff()
    for key, verdict in new.items():
        previous = old.get(key)
        if previous is None:
            result.new_hosts.append(Change(verdict.host, None, verdict.status.value))
            continue
        change = Change(verdict.host, previous.status.value, verdict.status.value)
        if previous.status is not verdict.status:
            result.status_changes.append(change)
        if verdict.status is Status.PATCHED and previous.status is not Status.PATCHED:
            result.newly_patched.append(change)
        if previous.status is Status.PATCHED and verdict.status is not Status.PATCHED:
            result.regressed.append(Change(verdict.host, previous.status.value,
                                           verdict.status.value,
                                           f"was {previous.build or 'no build'}, now "
                                           f"{verdict.build or 'no build'}"))
        lost = set(previous.mitigations) - set(verdict.mitigations)
        # Only a host graded on fresh probe data has its mitigations listed: an unknown one
        # (unreachable, stale) lost nothing that was seen.
        if lost and verdict.status in (Status.VULNERABLE, Status.MITIGATED):
            result.mitigation_removed.append(Change(verdict.host, previous.status.value,
                                                    verdict.status.value,
                                                    "removed: " + ", ".join(sorted(lost))))
    for key, verdict in old.items():
        if key not in new:
            result.removed_hosts.append(Change(verdict.host, verdict.status.value, None,
                                               "no longer in the fleet"))
    return result


@dataclass(frozen=True)
class Reevaluation:
    host: str
    recorded: Verdict
    today: Verdict


def reevaluate(assessments: Sequence[Assessment], catalog: Catalog, as_of: datetime,
               policy: Policy | None = None) -> list[Reevaluation]:
    """Hosts whose verdict would differ under ``catalog`` (judged at the snapshot's own time).

    The recorded verdict stays the evidence; this only shows where knowledge has moved on.
    """
    differences = []
    for assessment in assessments:
        today = evaluate(assessment.observation, catalog, as_of, policy)
        recorded = assessment.verdict
        if (today.status, today.flags, today.cu, today.known) != (
                recorded.status, recorded.flags, recorded.cu, recorded.known):
            differences.append(Reevaluation(recorded.host, recorded, today))
    return differences
