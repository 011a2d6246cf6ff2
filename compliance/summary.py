"""One host of a snapshot as the pages show, filter and count it: a flat, typed summary.

The store keeps these fields as columns of each result row (written at save, covered by the
snapshot's digest from format 4 on), so a page reads a few short columns instead of decoding
every observation and verdict. ``summarise`` is the only place they are derived, from the
assessment the row also stores as JSON; ``verify`` and the property tests check that the two
always agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from compliance.models import Assessment, EvidenceKind, Flag, ServerRole, Status

# Lists are stored as one text, joined with this: every element is an enum value, a
# mitigation id of the advisory or a CVE id, none of which holds it.
SEPARATOR = ", "


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
    observed_in: int | None = None

    @property
    def carried(self) -> bool:
        return self.observed_in is not None

    @property
    def compliant(self) -> bool:
        return self.status.compliant

    def to_columns(self) -> dict[str, Any]:
        """The stored columns (``COLUMNS``): lists joined into text."""
        values: dict[str, Any] = {name: getattr(self, name) for name in COLUMNS}
        values["status"] = self.status.value
        for name in _LISTS:
            values[name] = SEPARATOR.join(str(item) for item in getattr(self, name))
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
            roles=tuple(ServerRole(r) for r in _split(values["roles"])),
            flags=tuple(Flag(f) for f in _split(values["flags"])),
            mitigations=_split(values["mitigations"]), cves_open=_split(values["cves_open"]),
            action=str(values["action"]), reason=str(values["reason"]),
            observed_at=str(values["observed_at"]), failure_reason=str(values["failure_reason"]),
            failure_detail=str(values["failure_detail"]),
            run_failed=bool(values["run_failed"]),
            indicator_count=int(values["indicator_count"]), observed_in=observed_in)


COLUMNS = tuple(name for name in HostSummary.__dataclass_fields__ if name != "observed_in")
_LISTS = ("roles", "flags", "mitigations", "cves_open")


def _split(text: object) -> tuple[str, ...]:
    return tuple(str(text).split(SEPARATOR)) if text else ()


def summarise(assessment: Assessment) -> HostSummary:
    """The summary of one stored assessment (the only derivation of the columns)."""
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
        indicator_count=len(obs.indicators), observed_in=assessment.observed_in)
