"""One host of a snapshot as the pages show, filter and count it: a flat, typed summary.

The store keeps these fields as columns of each result row (written at save, covered by the
snapshot's digest from format 4 on), so a page reads a few short columns instead of decoding
every observation and verdict. ``summarise`` is the only place they are derived, from the
assessment the row also stores as JSON; ``verify`` and the property tests check that the two
always agree.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from compliance.builds import BuildParseError, parse_dotted
from compliance.catalog import ADVISORY_IDS
from compliance.investigation import Investigation, InvestigationState
from compliance.investigation_record import columns as investigation_columns
from compliance.models import (
    Assessment,
    Build,
    BuildSource,
    EvidenceKind,
    Flag,
    ServerRole,
    Status,
    Verdict,
    worst_status,
)

# Lists are stored as one text, joined with this: every element is an enum value, a
# mitigation id of the advisory or a CVE id, none of which holds it.
SEPARATOR = ", "


def full_build(build: str, build_source: str) -> Build | None:
    """A stored summary's build as the server's full build, when it is one: read from
    ExSetup.exe or proven by an installed update (``BuildSource.cu_level_only`` false). None
    for a CU level only (AD, AdminDisplayVersion), no build, or a text that does not parse:
    only a full build shows the Security Update level or can start an upgrade plan."""
    try:
        if BuildSource(build_source).cu_level_only:
            return None
        return parse_dotted(build)
    except (ValueError, BuildParseError):
        return None


@dataclass(frozen=True, slots=True)
class AdvisoryStatus:
    """A host's verdict for one of the other advisories, in brief (``Assessment.others``):
    the advisory's id (``2021-05-proxyshell``), its status, flags, open CVEs and action."""

    advisory: str
    status: Status
    flags: tuple[Flag, ...] = ()
    cves_open: tuple[str, ...] = ()
    action: str = ""

    @classmethod
    def of(cls, verdict: Verdict) -> AdvisoryStatus:
        return cls(verdict.advisory_id, verdict.status, verdict.flags,
                   verdict.cves_open, verdict.action)


def _not_judged(advisory: str) -> AdvisoryStatus:
    """What a host reads as for an advisory its snapshot holds no verdict for (one judged
    before the advisory was added): unknown, never compliant, and how to get a verdict."""
    return AdvisoryStatus(advisory, Status.UNKNOWN, action=f"Collect again: this snapshot was "
                          f"judged before advisory {advisory} was added, so it holds no "
                          "verdict for it")


def judged_by_all(own: AdvisoryStatus, others: Sequence[AdvisoryStatus],
                  expected: Sequence[str] = ADVISORY_IDS) -> list[AdvisoryStatus] | None:
    """A host's verdicts under "all advisories": its snapshot's own (``own``), the others it
    was judged by, and each advisory of ``expected`` it was not judged by as unknown (fail
    closed: no verdict for an advisory is not "nothing to do" for it). None when there is
    nothing beside its own verdict (it reads as that)."""
    held = {a.advisory for a in others}
    missing = [_not_judged(a) for a in expected if a != own.advisory and a not in held]
    if not others and not missing:
        return None
    return [own, *others, *missing]


_ADVISORIES_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def advisories_text(advisories: Sequence[AdvisoryStatus]) -> str | None:
    """The stored ``advisories`` column: a JSON list of ``[advisory, status, [flags],
    [cves], action]``; None when the host was judged by one advisory only (every snapshot
    stored before per-advisory verdicts: format 5 and earlier)."""
    if not advisories:
        return None
    return _ADVISORIES_JSON.encode([[a.advisory, a.status.value, [f.value for f in a.flags],
                                     list(a.cves_open), a.action] for a in advisories])


def advisories_of(text: object) -> tuple[AdvisoryStatus, ...]:
    """``advisories_text`` read back; ``ValueError`` for anything no writer of this tool makes."""
    if text is None or text == "":
        return ()
    try:
        data = json.loads(str(text))
        return tuple(AdvisoryStatus(str(advisory), Status(status), tuple(Flag(f) for f in flags),
                                    tuple(str(c) for c in cves), str(action))
                     for advisory, status, flags, cves, action in data)
    except (TypeError, ValueError, KeyError) as error:
        raise ValueError(f"unreadable per-advisory statuses: {error}") from None


@dataclass(frozen=True, slots=True)
class HostSummary:
    """What a page needs of one host; strings are "" where the assessment has none.

    ``failure_reason``/``failure_detail``: the host's latest observation is a failure, or this
    snapshot's run failed on a host whose fresh reading it carried (its verdict's
    ``collection_failed`` evidence); ``run_failed``: this snapshot's own run failed on it
    (either way), as opposed to a failure carried from an earlier run.
    ``indicator_count``: the probe's compromise-indicator hits. ``observed_in`` is not a
    summary column but the row's own (the snapshot whose run made a carried observation).
    """

    host: str
    fqdn: str
    status: Status
    product: str
    cu: str
    build: str
    build_source: str
    known_build: bool
    release: str
    site: str
    dag: str
    roles: tuple[ServerRole, ...]
    flags: tuple[Flag, ...]
    mitigations: tuple[str, ...]
    cves_open: tuple[str, ...]
    action: str
    reason: str
    observed_at: str  # ISO 8601, "" when never observed
    failure_reason: str
    failure_detail: str
    run_failed: bool
    indicator_count: int
    # The other advisories' verdicts in brief (empty: judged by the snapshot's own advisory,
    # March 2021, only).
    advisories: tuple[AdvisoryStatus, ...] = ()
    # Issue 21: the investigation after the fix (compliance/investigation_record.py ``Brief``),
    # judged at save for the snapshot's own advisory. None: not judged (a row stored before
    # issue 21, which reads as not investigated: ``investigation_record.stored_state``).
    investigation: InvestigationState | None = None
    investigation_action: str = ""
    fixed_at: str = ""  # ISO 8601: the fix time the window ends at, "" when not known
    next_scan_due: str = ""  # ISO 8601: when the directive's next scan is due, "" for none
    steps_missed: int = 0  # the directive's steps whose interval passed without a scan
    observed_in: int | None = None

    @property
    def carried(self) -> bool:
        return self.observed_in is not None

    def status_for(self, advisory: str | None) -> Status | None:
        """The status for ``advisory`` (an id; None: the snapshot's own, i.e. ``status``);
        None when the host was not judged by it (a snapshot from before it was added)."""
        if advisory is None:
            return self.status
        return next((a.status for a in self.advisories if a.advisory == advisory), None)

    def worst(self) -> Status:
        """The worst status over the snapshot's own advisory and every other one."""
        return worst_status([self.status, *(a.status for a in self.advisories)])

    def for_advisory(self, advisory: str | None, own: str = "",
                     expected: Sequence[str] = ADVISORY_IDS) -> HostSummary | None:
        """This host as judged by ``advisory``: its status, flags, open CVEs and action
        (mitigations only for the snapshot's own advisory, ``own``, whose columns these are).
        ``advisory`` None or ``own``: this summary. ``ALL``: the worst status over every
        advisory, every flag, every open CVE, and the action of each advisory not compliant
        (prefixed by its id); an advisory of ``expected`` (by default every shipped one) the
        host was not judged by counts as unknown. None when the host was not judged by ``advisory`` (a
        snapshot from before it was added)."""
        if advisory is None or advisory == own:
            return self
        # Flags about the server rather than the advisory's fix (set beside the snapshot's own
        # verdict only: the outside view, compliance/outside.py) hold for every advisory.
        kept = tuple(f for f in self.flags if f in _SERVER_FLAGS)
        if advisory == ALL:
            mine = AdvisoryStatus(own, self.status, self.flags, self.cves_open, self.action)
            judged = judged_by_all(mine, self.advisories, expected)
            if judged is None:
                return self
            flags = tuple(dict.fromkeys(f for a in judged for f in a.flags))
            cves = tuple(dict.fromkeys(c for a in judged for c in a.cves_open))
            open_ = [a for a in judged if not a.status.compliant]
            action = (" | ".join(f"{a.advisory}: {a.action}" for a in open_) if open_
                      else self.action)
            return replace(self, status=worst_status(a.status for a in judged), flags=flags,
                           cves_open=cves, action=action, mitigations=())
        found = next((a for a in self.advisories if a.advisory == advisory), None)
        if found is None:
            return None
        flags = (*found.flags, *(f for f in kept if f not in found.flags))
        return replace(self, status=found.status, flags=flags, cves_open=found.cves_open,
                       action=found.action, mitigations=())

    def through(self, advisory: str | None, own: str = "",
                expected: Sequence[str] = ADVISORY_IDS) -> HostSummary:
        """``for_advisory``, failing closed: a host not judged by ``advisory`` reads as
        ``unknown`` for it, with the action that makes it judged (collect again)."""
        seen = self.for_advisory(advisory, own, expected)
        if seen is not None:
            return seen
        unjudged = _not_judged(str(advisory))
        return replace(self, status=unjudged.status, flags=(), cves_open=(), mitigations=(),
                       action=unjudged.action)

    @property
    def compliant(self) -> bool:
        return self.status.compliant

    def to_columns(self, names: Sequence[str] | None = None) -> dict[str, Any]:
        """The stored columns (``COLUMNS``, or those of ``names``, a subset, in that order):
        lists joined into text. A table of 50,000 rows asks only for what it shows."""
        wanted = COLUMNS if names is None else names
        values: dict[str, Any] = {name: getattr(self, name) for name in wanted}
        if "status" in values:
            values["status"] = self.status.value
        for name in _LISTS:
            if name in values:
                values[name] = SEPARATOR.join(str(item) for item in getattr(self, name))
        if "advisories" in values:
            values["advisories"] = advisories_text(self.advisories)
        if self.investigation is None:  # not judged: NULL, as every row before issue 21
            values.update((name, None) for name in INVESTIGATION_COLUMNS if name in values)
        elif "investigation" in values:
            values["investigation"] = self.investigation.value
        return values

    @classmethod
    def from_columns(cls, row: Mapping[str, Any] | Sequence[Any],
                     observed_in: int | None = None) -> HostSummary:
        """From stored columns, by name or in ``COLUMNS`` order; ``ValueError`` for a value
        no writer of this tool makes (an unknown status, flag or role)."""
        values = dict(row) if isinstance(row, Mapping) else dict(zip(COLUMNS, row, strict=True))
        return cls(
            host=str(values["host"]), fqdn=str(values["fqdn"]), status=Status(values["status"]),
            product=str(values["product"]), cu=str(values["cu"]), build=str(values["build"]),
            build_source=str(values["build_source"]), known_build=bool(values["known_build"]),
            release=str(values["release"]), site=str(values["site"]), dag=str(values["dag"]),
            roles=_roles(values["roles"]), flags=_flags(values["flags"]),
            mitigations=_split(values["mitigations"]), cves_open=_split(values["cves_open"]),
            action=str(values["action"]), reason=str(values["reason"]),
            observed_at=str(values["observed_at"]), failure_reason=str(values["failure_reason"]),
            failure_detail=str(values["failure_detail"]),
            run_failed=bool(values["run_failed"]),
            indicator_count=int(values["indicator_count"]),
            advisories=advisories_of(values.get("advisories")),
            investigation=InvestigationState(values["investigation"])
            if values.get("investigation") else None,
            investigation_action=str(values.get("investigation_action") or ""),
            fixed_at=str(values.get("fixed_at") or ""),
            next_scan_due=str(values.get("next_scan_due") or ""),
            steps_missed=int(values.get("steps_missed") or 0), observed_in=observed_in)


COLUMNS = tuple(name for name in HostSummary.__dataclass_fields__ if name != "observed_in")
# ``HostSummary.for_advisory``: every advisory at once, each host at its worst.
ALL = "all"
_SERVER_FLAGS = frozenset({Flag.OUTSIDE_OLDER_THAN_INSIDE})
_LISTS = ("roles", "flags", "mitigations", "cves_open")
# The columns of the investigation (issue 21), the last of ``COLUMNS``.
INVESTIGATION_COLUMNS = ("investigation", "investigation_action", "fixed_at", "next_scan_due",
                         "steps_missed")
assert COLUMNS[-len(INVESTIGATION_COLUMNS):] == INVESTIGATION_COLUMNS


def _split(text: object) -> tuple[str, ...]:
    return tuple(str(text).split(SEPARATOR)) if text else ()


# A fleet has few distinct role and flag cells: each is read once (50,000 rows made 400,000
# enum lookups, a third of reading a snapshot's summaries). Bounded; a cell no writer makes
# raises ValueError each time (exceptions are not kept).
@lru_cache(maxsize=1024)
def _roles(text: object) -> tuple[ServerRole, ...]:
    return tuple(ServerRole(r) for r in _split(text))


@lru_cache(maxsize=1024)
def _flags(text: object) -> tuple[Flag, ...]:
    return tuple(Flag(f) for f in _split(text))


COMPROMISE_FIRST = ("Investigate for compromise first (the investigation after the fix found "
                    "indicators: a detection, a web-shell candidate or a CVE check hit; the "
                    "update does not remove a back door)")


def shown_action(action: str, state: InvestigationState | str | None) -> str:
    """A host's next action as the pages and worklist files show it: the verdict's
    (``action``), after "investigate for compromise first" when its investigation after the
    fix found indicators (``state``) and the verdict does not already say so (a patched
    server's verdict says "None: the fixes are installed", true of the patch only). The
    stored ``action`` column stays the verdict's (the snapshot's digest covers it)."""
    found = InvestigationState.INDICATORS_FOUND
    if (state is not found and state != found.value) or action.startswith("Investigate"):
        return action
    return f"{COMPROMISE_FIRST}; then {action[:1].lower()}{action[1:]}" if action else \
        COMPROMISE_FIRST


def summarise(assessment: Assessment, investigation: Investigation | None = None,
              ) -> HostSummary:
    """The summary of one stored assessment (the only derivation of the columns), with its
    ``investigation`` as stored beside it (None: none, a row from before issue 21)."""
    obs, verdict = assessment.observation, assessment.verdict
    failure_reason = failure_detail = ""
    run_failed = False
    if obs.failure is not None:
        failure_reason, failure_detail = obs.failure.reason, obs.failure.detail
        run_failed = not assessment.carried
    else:
        failed = next((e for e in verdict.evidence if e.kind == EvidenceKind.COLLECTION_FAILED),
                      None)
        if failed is not None:
            failure_reason, _, failure_detail = failed.value.partition(": ")
            run_failed = True
    return HostSummary(
        host=obs.host.name, fqdn=obs.host.fqdn or "", status=verdict.status,
        product=verdict.product or "", cu=verdict.cu or "", build=verdict.build or "",
        build_source=verdict.build_source.value if verdict.build_source else "",
        known_build=verdict.known, release=verdict.release_name or "",
        site=obs.host.site or "", dag=obs.host.dag or "",
        roles=tuple(sorted(obs.host.roles or ())), flags=verdict.flags,
        mitigations=verdict.mitigations, cves_open=verdict.cves_open, action=verdict.action,
        reason=verdict.reason,
        observed_at=obs.observed_at.isoformat() if obs.observed_at else "",
        failure_reason=failure_reason, failure_detail=failure_detail, run_failed=run_failed,
        indicator_count=len(obs.indicators),
        advisories=tuple(AdvisoryStatus.of(other) for other in assessment.others),
        **_investigation_fields(investigation), observed_in=assessment.observed_in)


def _investigation_fields(investigation: Investigation | None) -> dict[str, Any]:
    if investigation is None:
        return {}
    brief = investigation_columns(investigation)
    return {"investigation": brief.state, "investigation_action": brief.action,
            "fixed_at": brief.fixed_at, "next_scan_due": brief.next_scan_due,
            "steps_missed": brief.steps_missed}
