"""One verdict per advisory: every member of a snapshot judged by the other advisories too.

The snapshot's own advisory (March 2021, ``Catalog.advisory`` of the catalogue it is saved
with) gives ``Assessment.verdict``; each other advisory's catalogue
(``compliance.catalog.load_catalogs()``) gives one verdict in ``Assessment.others``, graded
from the same observation at the same moment by the same evaluator. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from functools import cache

from compliance.catalog import Catalog, load_catalogs
from compliance.evaluate import Policy, evaluate
from compliance.models import Assessment, Evidence, EvidenceKind, Status, Verdict, worst_status

# Lines of the snapshot's own verdict that are about the snapshot, not the advisory: that the
# reading was carried from an earlier run, and this run's failed attempt. Every verdict of the
# member says so.
_ABOUT_THE_RUN = (EvidenceKind.CARRIED, EvidenceKind.COLLECTION_FAILED)


def judge_others(assessments: Iterable[Assessment], catalogs: Sequence[Catalog],
                 as_of: datetime, policy: Policy | None = None) -> tuple[Assessment, ...]:
    """``assessments`` with ``others`` set: one verdict per catalogue in ``catalogs`` (in that
    order), judged at ``as_of``. No catalogues: none (a member carried from a snapshot judged by
    more keeps no verdict of an earlier time)."""
    members = tuple(assessments)
    if not catalogs:
        return tuple(replace(m, others=()) if m.others else m for m in members)
    chosen = policy or Policy()
    judged = []
    for member in members:
        context = tuple(e for e in member.verdict.evidence if e.kind in _ABOUT_THE_RUN)
        others = tuple(_with_context(evaluate(member.observation, catalog, as_of, chosen),
                                     context) for catalog in catalogs)
        judged.append(replace(member, others=others))
    return tuple(judged)


def _with_context(verdict: Verdict, context: tuple[Evidence, ...]) -> Verdict:
    return replace(verdict, evidence=(*context, *verdict.evidence)) if context else verdict


@cache
def _shipped() -> tuple[Catalog, ...]:
    return load_catalogs()


def other_catalogs(catalog: Catalog) -> tuple[Catalog, ...]:
    """The shipped catalogues of every advisory but ``catalog``'s (``load_catalogs``, read
    once per process): what a collection or an import judges its snapshot by, beside its own."""
    return tuple(c for c in _shipped() if c.advisory.id != catalog.advisory.id)


def all_verdicts(assessment: Assessment) -> tuple[Verdict, ...]:
    """The member's verdict for every advisory it was judged by, its own first."""
    return (assessment.verdict, *assessment.others)


def verdict_for(assessment: Assessment, advisory: str | None) -> Verdict | None:
    """The verdict for ``advisory`` (an id such as ``2021-05-proxyshell``; None: the
    snapshot's own); None when the member was not judged by it."""
    if advisory is None:
        return assessment.verdict
    return next((v for v in all_verdicts(assessment) if v.advisory_id == advisory), None)


def worst(assessment: Assessment) -> Status:
    """The worst status over every advisory the member was judged by."""
    return worst_status(v.status for v in all_verdicts(assessment))
