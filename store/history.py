"""Comparing snapshots: what changed between two, and what today's catalogue would say."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Protocol

from compliance.catalog import Catalog
from compliance.evaluate import Policy, evaluate
from compliance.models import Assessment, Status, Verdict
from compliance.outside_record import OutsideRecord, apply_view


@dataclass(frozen=True)
class Change:
    host: str
    before: str | None
    after: str | None
    detail: str = ""


@dataclass
class Diff:
    """What changed, each host once, in its most important category (the order of the fields:
    regressed first). ``status_changes`` holds the status changes no other category took."""

    regressed: list[Change] = field(default_factory=list)
    mitigation_removed: list[Change] = field(default_factory=list)
    newly_patched: list[Change] = field(default_factory=list)
    new_hosts: list[Change] = field(default_factory=list)
    # Left the fleet: a complete discovery of its scope no longer found it (between two format
    # 1 snapshots, also a host the later run did not assess).
    removed_hosts: list[Change] = field(default_factory=list)
    status_changes: list[Change] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[dict[str, str | None]]]:
        return {name: [{"host": c.host, "before": c.before, "after": c.after, "detail": c.detail}
                       for c in changes] for name, changes in self.__dict__.items()}

    def rows(self) -> list[dict[str, str]]:
        """One row per changed host (category, host, before, after, detail), most important
        category first: the table and its CSV."""
        return [{"category": CATEGORY_LABELS[name], "host": c.host, "before": c.before or "",
                 "after": c.after or "", "detail": c.detail}
                for name, changes in self.__dict__.items() for c in changes]


CATEGORY_LABELS = {"regressed": "Regressed", "mitigation_removed": "Mitigation removed",
                   "newly_patched": "Newly patched", "new_hosts": "New host",
                   "removed_hosts": "Removed from the fleet",
                   "status_changes": "Other status change"}


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


def _detail(before: Graded | None, after: Graded | None) -> str:
    """From -> to of status, build and mitigations, naming only what differs."""
    if before is None and after is not None:
        return f"new: {after.status.value}, build {after.build or 'not read'}"
    if after is None and before is not None:
        return (f"no longer in the fleet; was {before.status.value}, build "
                f"{before.build or 'not read'}")
    assert before is not None and after is not None
    parts = []
    if before.status is not after.status:
        parts.append(f"status {before.status.value} \u2192 {after.status.value}")
    if (before.build or "") != (after.build or ""):
        parts.append(f"build {before.build or 'not read'} \u2192 {after.build or 'not read'}")
    if set(before.mitigations) != set(after.mitigations):
        parts.append(f"mitigations {', '.join(sorted(before.mitigations)) or 'none'} \u2192 "
                     f"{', '.join(sorted(after.mitigations)) or 'none'}")
    return "; ".join(parts)


def diff(before: Sequence[Graded], after: Sequence[Graded]) -> Diff:
    """Host by host (names compared case-insensitively) from ``before`` to ``after``, each
    changed host once, in its most important category, with a from -> to ``detail``. Give
    each snapshot's whole fleet (``SnapshotStore.summaries``), so a host another run observed
    is never reported as removed. Linear in the two fleets' sizes."""
    old = {v.host.lower(): v for v in before}
    new = {v.host.lower(): v for v in after}
    result = Diff()
    for key, verdict in new.items():
        previous = old.get(key)
        if previous is None:
            result.new_hosts.append(Change(verdict.host, None, verdict.status.value,
                                           _detail(None, verdict)))
            continue
        change = Change(verdict.host, previous.status.value, verdict.status.value,
                        _detail(previous, verdict))
        lost = set(previous.mitigations) - set(verdict.mitigations)
        if previous.status is Status.PATCHED and verdict.status is not Status.PATCHED:
            result.regressed.append(change)
        # Only a host graded on fresh probe data has its mitigations listed: an unknown one
        # (unreachable, stale) lost nothing that was seen.
        elif lost and verdict.status in (Status.VULNERABLE, Status.MITIGATED):
            result.mitigation_removed.append(change)
        elif verdict.status is Status.PATCHED and previous.status is not Status.PATCHED:
            result.newly_patched.append(change)
        elif previous.status is not verdict.status:
            result.status_changes.append(change)
    for key, verdict in old.items():
        if key not in new:
            result.removed_hosts.append(Change(verdict.host, verdict.status.value, None,
                                               _detail(verdict, None)))
    return result


@dataclass(frozen=True)
class Reevaluation:
    host: str
    recorded: Verdict
    today: Verdict


def reevaluate(assessments: Sequence[Assessment], catalog: Catalog, as_of: datetime,
               policy: Policy | None = None,
               outside: OutsideRecord | None = None) -> list[Reevaluation]:
    """Hosts whose verdict would differ under ``catalog`` (judged at the snapshot's own time).
    ``outside``: the snapshot's stored outside view, reconciled again with today's verdicts
    (``SnapshotStore.outside``), so its flags are not taken for the catalogue's.

    The recorded verdict stays the evidence; this only shows where knowledge has moved on.
    """
    todays = [replace(a, verdict=evaluate(a.observation, catalog, as_of, policy))
              for a in assessments]
    if outside is not None:
        todays = list(apply_view(todays, outside.endpoints, catalog, as_of, policy)[0])
    differences = []
    for assessment, judged in zip(assessments, todays, strict=True):
        today = judged.verdict
        recorded = assessment.verdict
        if (today.status, today.flags, today.cu, today.known) != (
                recorded.status, recorded.flags, recorded.cu, recorded.known):
            differences.append(Reevaluation(recorded.host, recorded, today))
    return differences
