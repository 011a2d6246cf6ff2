"""One fleet from many runs: what a snapshot holds, composed from the run and its predecessor.

A run (a collection of any scope, an import, an upload) observes some hosts. The snapshot it
saves holds the **whole fleet as known at its time**: the run's fresh observations, and every
other member of the previous snapshot's fleet carried forward with its latest observation
unchanged (its own ``observed_at`` and ``observed_in``, the snapshot whose run made it),
re-graded at the new snapshot's time so an old observation turns ``unknown`` (stale) under the
max-age policy. Nothing is shown fresher than it was seen.

Membership is recorded per host as **scopes**: why the host is in the fleet.

- ``directory_scope(base, filters)`` for an Active Directory discovery. A successful discovery
  lists its scope completely (partial results are an error, never a short list), so a member
  of that scope that the discovery no longer finds loses the scope.
- ``INVENTORY`` for hosts listed in an inventory file, ``IMPORT`` for hand-run probe
  documents: these runs only ever add, and only hosts no discovery lists are members through
  them (``membership``).
- A run's observation replaces a member's unless the member's is newer: an old hand-run
  document imported late never hides a newer reading. A run that failed to reach a host
  leaves its last reading in place while that is fresh, the failure beside it as evidence:
  the run observed nothing of the server.
- A member with no scope left leaves the fleet (``Composition.removed``). A host with no
  recorded scope (from a snapshot written before scopes existed) is never removed that way.
- A run may also name hosts a person retires by hand (``Snapshot.retired``): they leave the
  fleet whatever their scopes; the snapshot's scope and label record who and why.

Pure: no I/O and no clock; the grader is handed in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from compliance.models import (
    Assessment,
    Evidence,
    EvidenceKind,
    Host,
    Observation,
    Reason,
    Snapshot,
    Verdict,
)

INVENTORY = "inventory"
IMPORT = "import"
DEMO = "demo"
# Scopes that only ever add a host: no run lists them completely.
ADDITIVE = frozenset({INVENTORY, IMPORT})

# An observation behind these verdicts says nothing current about the server.
NOT_FRESH = frozenset({Reason.NO_OBSERVATION, Reason.UNREACHABLE, Reason.ACCESS_REFUSED,
                       Reason.PROBE_FAILED, Reason.STALE, Reason.FUTURE})

Grader = Callable[[Observation, datetime], Verdict]


def directory_scope(base: str, filters: Iterable[tuple[str, Iterable[str]]] = ()) -> str:
    """The scope key of one AD discovery: its search base (the forest's Exchange container,
    ``CN=Microsoft Exchange,CN=Services,CN=Configuration,...``) and the filters that narrowed
    it, lower-cased, e.g. ``ad:cn=microsoft exchange,...,dc=example [include_sites=berlin]``.
    Two discoveries with the same key list the same set of servers, whichever domain
    controller answered."""
    shown = [f"{name}={','.join(sorted(v.lower() for v in values))}"
             for name, values in filters if values]
    key = f"ad:{base.lower()}"
    return f"{key} [{'; '.join(shown)}]" if shown else key


def never_probed(host: Host, source: str) -> Observation:
    """The observation of a member that no run has probed yet: graded ``unknown``."""
    return Observation(host=host, observed_at=None, source=source)


def is_fresh(verdict: Verdict) -> bool:
    """Whether a verdict rests on a current reading of the server (for coverage)."""
    return verdict.unknown_reason not in NOT_FRESH


def carried_evidence(observed_in: int | None, observation: Observation, run: str) -> Evidence:
    """The evidence line that says a verdict was carried forward, and from where."""
    where = f"snapshot #{observed_in}" if observed_in is not None else "an earlier snapshot"
    if observation.observed_at is None and observation.failure is None:
        return Evidence(EvidenceKind.CARRIED, f"not observed by this run ({run}); in the fleet "
                        f"since {where} listed it, never probed", where, None)
    return Evidence(EvidenceKind.CARRIED, f"not observed by this run ({run}); latest "
                    f"observation from {where}, re-graded at this snapshot's time", where,
                    observation.observed_at)


@dataclass(frozen=True)
class Composition:
    """A snapshot of the whole fleet, and the members a complete discovery no longer found."""

    snapshot: Snapshot
    removed: tuple[Assessment, ...]


def _key(name: str) -> str:
    return name.lower()


def membership(scopes: Iterable[str]) -> tuple[str, ...]:
    """The scopes that make a host a member, sorted. A host a discovery lists (AD, the demo's)
    is a member through that discovery alone: an inventory entry or an import of it only adds
    data, so the discovery that stops listing it removes it."""
    chosen = set(scopes)
    if chosen - ADDITIVE:
        chosen -= ADDITIVE
    return tuple(sorted(chosen))


def _reading(observation: Observation) -> bool:
    """Whether an observation read the server (a failure or a never-probed stand-in did not)."""
    return observation.failure is None and observation.observed_at is not None


def _keeps(current: Observation, candidate: Observation, at: datetime) -> bool:
    """Whether a member's observation stays although the run brings one of the same host: it
    is a reading newer than the run's (a hand-run document imported late) and not from after
    ``at``."""
    return (_reading(current) and candidate.observed_at is not None
            and candidate.observed_at < current.observed_at <= at)  # type: ignore[operator]


def merge(previous: Sequence[Assessment], run: Snapshot) -> tuple[list[Assessment],
                                                                  list[Assessment]]:
    """The fleet after ``run`` without re-grading: (members in fleet order, removed members).

    Fleet order is the previous order, with new hosts appended in the run's order. A fresh
    assessment replaces the member of the same name (case-insensitive), unless the member's
    observation is newer; a carried one keeps its observation, verdict and ``observed_in``.
    """
    fresh = {_key(a.observation.host.name): a for a in run.assessments}
    retired = {_key(name) for name in run.retired}
    found: dict[str, set[str]] = {scope: set() for scope in run.complete_scopes}
    for key, assessment in fresh.items():
        for scope in assessment.scopes:
            if scope in found:
                found[scope].add(key)
    members: list[Assessment] = []
    removed: list[Assessment] = []
    seen: set[str] = set()
    for member in previous:
        key = _key(member.observation.host.name)
        if key in seen:  # one row per host, whatever an older store holds
            continue
        seen.add(key)
        if key in retired:
            removed.append(member)
            continue
        if key in fresh:
            assessment = fresh[key]
            scopes = membership([*assessment.scopes,
                                 *(s for s in member.scopes if s not in found)])
            if _keeps(member.observation, assessment.observation, run.taken_at):
                members.append(replace(member, scopes=scopes))
            elif assessment.observation.failure is not None and _reading(member.observation):
                # The run did not reach the host: its last reading stands while it is fresh
                # (``regrade`` decides), with the failed attempt beside it.
                members.append(replace(member, scopes=scopes, attempt=assessment.observation))
            else:
                members.append(assessment if assessment.scopes == scopes
                               else replace(assessment, scopes=scopes))
            continue
        kept = tuple(s for s in member.scopes if s not in found or key in found[s])
        if member.scopes and not kept:
            removed.append(member)
            continue
        scopes = membership(kept)
        members.append(member if member.scopes == scopes else replace(member, scopes=scopes))
    for key, assessment in fresh.items():
        if key not in seen and key not in retired:
            seen.add(key)
            scopes = membership(assessment.scopes)
            members.append(assessment if assessment.scopes == scopes
                           else replace(assessment, scopes=scopes))
    return members, removed


def regrade(members: Sequence[Assessment], grade: Grader, as_of: datetime,
            run: str) -> list[Assessment]:
    """Carried members (``observed_in`` set) graded again at ``as_of``, with evidence that says
    so; fresh ones (``observed_in`` None) unchanged. A carried member the run failed to reach
    (``attempt``) keeps its reading while that is fresh, with the failure as evidence; once the
    reading is no longer fresh, the failure is what the snapshot holds (its action names the
    fix)."""
    result = []
    for member in members:
        if member.observed_in is None:
            result.append(member)
            continue
        verdict = grade(member.observation, as_of)
        attempt = member.attempt
        if attempt is not None and not is_fresh(verdict):
            result.append(Assessment(attempt, grade(attempt, as_of), scopes=member.scopes))
            continue
        failed = () if attempt is None or attempt.failure is None else (Evidence(
            EvidenceKind.COLLECTION_FAILED,
            f"{attempt.failure.reason}: {attempt.failure.detail}",
            attempt.source, attempt.observed_at),)
        evidence = (carried_evidence(member.observed_in, member.observation, run), *failed,
                    *verdict.evidence)
        result.append(replace(member, verdict=replace(verdict, evidence=evidence),
                              attempt=None))
    return result


def compose(previous: Sequence[Assessment], run: Snapshot, grade: Grader) -> Composition:
    """The snapshot ``run`` saves: the whole fleet at ``run.taken_at``.

    ``previous`` is the previous snapshot's fleet, each member's ``observed_in`` set to the
    snapshot that observed it. ``run.assessments`` are the run's fresh observations (their
    ``observed_in`` None) with their scopes; ``run.complete_scopes`` the directory scopes it
    listed completely. A partial run (no complete scope) never removes anyone.
    """
    members, removed = merge(previous, run)
    label = f"{run.source}: {run.label}" if run.label else run.source
    return Composition(replace(run, assessments=tuple(regrade(members, grade, run.taken_at,
                                                              label))),
                       tuple(removed))


def observed_count(snapshot: Snapshot) -> int:
    """Hosts the snapshot's own run observed (the rest were carried)."""
    return sum(1 for a in snapshot.assessments if a.observed_in is None)


def fresh_count(assessments: Iterable[Assessment]) -> int:
    """Hosts with a current reading (coverage's numerator)."""
    return sum(1 for a in assessments if is_fresh(a.verdict))
