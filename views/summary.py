"""Key figures of a snapshot, computed once for the page and the tests."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from compliance.models import Status


@dataclass(frozen=True)
class Kpi:
    key: str
    label: str
    value: float
    display: str
    help: str
    # For "bad" figures (vulnerable, unknown) a rise is shown red.
    delta_color: Literal["normal", "inverse", "off"]
    percent: bool = False

    def delta_text(self, previous: Kpi) -> str | None:
        change = self.value - previous.value
        if self.percent:
            return f"{change:+.1f} pts" if change else None
        return f"{change:+.0f}" if change else None


def kpis(counts: Mapping[str, int]) -> list[Kpi]:
    """Hosts, patched share of affected hosts, mitigated only, vulnerable, unknown."""
    total = sum(counts.values())
    patched = counts.get(Status.PATCHED.value, 0)
    not_applicable = counts.get(Status.NOT_APPLICABLE.value, 0)
    affected = total - not_applicable
    share = 100.0 * patched / affected if affected else 0.0
    mitigated = counts.get(Status.MITIGATED.value, 0)
    vulnerable = counts.get(Status.VULNERABLE.value, 0)
    unknown = counts.get(Status.UNKNOWN.value, 0)
    return [
        Kpi("hosts", "Hosts", total, str(total),
            f"Hosts in the snapshot; {not_applicable} not affected (Exchange 2010 without UM).",
            "off"),
        Kpi("patched", "Patched", share, f"{share:.0f}%",
            f"{patched} of {affected} affected hosts have the March 2021 fixes.", "normal",
            percent=True),
        Kpi("mitigated", "Mitigated only", mitigated, str(mitigated),
            "Not patched; the interim mitigation against CVE-2021-26855 is in place.",
            "inverse"),
        Kpi("vulnerable", "Vulnerable", vulnerable, str(vulnerable),
            "Neither patched nor mitigated.", "inverse"),
        Kpi("unknown", "Unknown", unknown, str(unknown),
            "Unreachable, stale, or a build that cannot be judged: never counted as patched.",
            "inverse"),
    ]
