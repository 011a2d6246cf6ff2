"""The admins' worklist: which non-compliant hosts come first, and in which maintenance wave.

Pure and typed: ranking and wave planning are rules of this product, not of a file format
(``store/export.py`` only writes the rows out).

- **Who is on it.** Every host not compliant, and every host with compromise indicators
  (patched or not: the update does not remove a web shell).
- **Priority.** 0 compromise indicators, 1 vulnerable, 2 unknown, 3 mitigated (a stop-gap).
- **Waves.** Internet-facing servers first (Client Access / Cafe, Front End Transport, Edge:
  OWA, ECP, EWS and SMTP from outside are where ProxyLogon was exploited), then priority. A
  wave takes at most one member of any DAG, so no DAG has all its copies down in one window.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from compliance.models import Assessment, Flag, ServerRole, Status

URGENCY = {Status.VULNERABLE: 1, Status.UNKNOWN: 2, Status.MITIGATED: 3}
INDICATORS_FIRST = 0
INTERNET_FACING = frozenset({ServerRole.CAFE, ServerRole.CLIENT_ACCESS,
                             ServerRole.FRONTEND_TRANSPORT, ServerRole.EDGE})


@dataclass(frozen=True)
class Item:
    """One host on the worklist; ``wave`` is 0 until ``plan_waves`` assigns it (from 1)."""

    assessment: Assessment
    priority: int
    wave: int = 0

    @property
    def host(self) -> str:
        return self.assessment.observation.host.name

    @property
    def dag(self) -> str:
        return (self.assessment.observation.host.dag or "").lower()

    @property
    def internet_facing(self) -> bool:
        return bool(INTERNET_FACING & (self.assessment.observation.host.roles or frozenset()))


def rank(assessments: Iterable[Assessment]) -> list[Item]:
    """The hosts that need work, most urgent first (then product, CU, name)."""
    items = []
    for assessment in assessments:
        verdict = assessment.verdict
        indicators = Flag.INDICATORS_FOUND in verdict.flags
        if verdict.status.compliant and not indicators:
            continue
        items.append(Item(assessment, INDICATORS_FIRST if indicators
                          else URGENCY[verdict.status]))
    return sorted(items, key=lambda i: (i.priority, i.assessment.verdict.product or "",
                                        i.assessment.verdict.cu or "", i.host))


def plan_waves(items: Sequence[Item], per_wave: int = 10) -> list[Item]:
    """``items`` in maintenance waves of at most ``per_wave`` hosts, sorted by wave (then
    internet-facing first, priority, name). ``per_wave`` below 1 is a ``ValueError``."""
    if per_wave < 1:
        raise ValueError("a wave holds at least one host")
    ordered = sorted(items, key=lambda i: (not i.internet_facing, i.priority, i.host.lower()))
    waves: list[tuple[int, set[str]]] = []  # (size, DAGs in it)
    planned = []
    for item in ordered:
        number = next((n for n, (size, dags) in enumerate(waves)
                       if size < per_wave and not (item.dag and item.dag in dags)), None)
        if number is None:
            waves.append((0, set()))
            number = len(waves) - 1
        size, dags = waves[number]
        if item.dag:
            dags.add(item.dag)
        waves[number] = (size + 1, dags)
        planned.append(replace(item, wave=number + 1))
    return sorted(planned, key=lambda i: (i.wave, not i.internet_facing, i.priority,
                                          i.host.lower()))
