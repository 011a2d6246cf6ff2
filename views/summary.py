"""Key figures of a snapshot, computed once for the page and the tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from compliance.investigation import InvestigationState
from compliance.models import Status
from views.labels import NOT_READ, STATUS_LABELS


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


def patched_share(counts: Mapping[str, int]) -> tuple[float, int, int]:
    """(percent, patched, affected): the one definition of "patched" the KPI, the donut and the
    trend share. Affected hosts are every host but those the advisory does not apply to
    (Exchange 2010 without Unified Messaging); unknown ones count as affected and unpatched."""
    total = sum(counts.values())
    patched = counts.get(Status.PATCHED.value, 0)
    affected = total - counts.get(Status.NOT_APPLICABLE.value, 0)
    return (100.0 * patched / affected if affected else 0.0), patched, affected


def investigation_split(counts: Mapping[tuple[str, str | None], int],
                        status: str = Status.PATCHED.value) -> dict[str, int]:
    """The hosts of ``status`` per investigation state, from (status, stored state) counts
    (``views.data.investigation_trend``): a state's value, ``NOT_READ`` where none is stored
    (a snapshot saved before issue 21: never clean), and a value no writer makes counted as
    not investigated (as the host table reads it). States without hosts are left out."""
    split: dict[str, int] = {}
    for (held, state), hosts in counts.items():
        if held != status or not hosts:
            continue
        if state is None:
            key = NOT_READ
        elif state in {s.value for s in InvestigationState}:
            key = state
        else:
            key = InvestigationState.NOT_INVESTIGATED.value
        split[key] = split.get(key, 0) + hosts
    return split


PATCHED_HELP = ("Patched hosts as a share of affected hosts: every host but those the advisory "
                "does not apply to (Exchange 2010 without Unified Messaging). Unknown hosts "
                "count as affected and not patched.")


def kpis(counts: Mapping[str, int], coverage: tuple[int, int] | None = None,
         indicators: int = 0, out_of_support: int = 0, judged_by: str = "") -> list[Kpi]:
    """Hosts in the fleet, coverage (hosts with a fresh observation / hosts in the fleet, as
    ``SnapshotInfo.coverage`` gives it), patched share of affected hosts, mitigated only,
    vulnerable, unknown, hosts with compromise indicators, hosts on a product out of
    support. ``judged_by``: the advisory the counts come from (its title), when not March 2021."""
    total = sum(counts.values())
    not_applicable = counts.get(Status.NOT_APPLICABLE.value, 0)
    share, patched, affected = patched_share(counts)
    mitigated = counts.get(Status.MITIGATED.value, 0)
    vulnerable = counts.get(Status.VULNERABLE.value, 0)
    unknown = counts.get(Status.UNKNOWN.value, 0)
    fresh, fleet = coverage if coverage is not None else (total, total)
    share_fresh = 100.0 * fresh / fleet if fleet else 0.0
    return [
        Kpi("inventory", "In fleet", fleet, str(fleet),
            "Exchange servers known from every run: AD discoveries, inventory files and "
            "imported probe documents. A partial run never removes a server; a full AD "
            "discovery that no longer finds one does, and so does `python -m store retire`.",
            "off"),
        Kpi("hosts", "Coverage", share_fresh, f"{share_fresh:.0f}%",
            f"{fresh} of {fleet} servers have a fresh observation (read within the max-age "
            "limit, not failed); the rest are unknown until a run reads them. "
            f"{not_applicable} not affected (Exchange 2010 without UM).", "normal",
            percent=True),
        Kpi("patched", "Patched", share, f"{share:.0f}%",
            f"{patched} of {affected} affected hosts have "
            + (f"the fixes of {judged_by}. " if judged_by else "the March 2021 fixes. ")
            + PATCHED_HELP, "normal",
            percent=True),
        Kpi("mitigated", STATUS_LABELS[Status.MITIGATED], mitigated, str(mitigated),
            "Not patched; the advisory's interim mitigation is in place"
            + ("." if judged_by else " (against CVE-2021-26855)."),
            "inverse"),
        Kpi("vulnerable", STATUS_LABELS[Status.VULNERABLE], vulnerable, str(vulnerable),
            "Neither patched nor mitigated.", "inverse"),
        Kpi("unknown", STATUS_LABELS[Status.UNKNOWN], unknown, str(unknown),
            "Unreachable, stale, or a build that cannot be judged: never counted as patched.",
            "inverse"),
        Kpi("indicators", "Indicators found", indicators, str(indicators),
            "Hosts with compromise indicators: a CVE check hit, a malware detection (Defender, "
            "MSERT) or a possible web shell. Isolate and investigate, patched or not (the "
            "update does not remove a web shell). The headline's \"with compromise "
            "indicators\" counts the same hosts.", "inverse"),
        Kpi("out_of_support", "Out of support", out_of_support, str(out_of_support),
            "Hosts on an Exchange version that receives no more security updates (2010, "
            "2013, and since 2025-10-14 2016 and 2019), whatever their ProxyLogon status: "
            "plan the move to Exchange SE. Filter them on the Hosts page (Flags: "
            "out_of_support).", "inverse"),
    ]


def projected_completion(times: Sequence[datetime], remaining: Sequence[int],
                         window: int = 4) -> datetime | None:
    """When the non-compliant count reaches zero at the recent rate (least squares over the
    last ``window`` snapshots); None without progress or with fewer than two snapshots."""
    points = list(zip(times, remaining, strict=True))[-window:]
    if len(points) < 2:
        return None
    if points[-1][1] == 0:
        return points[-1][0]
    origin = points[0][0]
    xs = [(t - origin).total_seconds() / 86400 for t, _ in points]
    ys = [float(n) for _, n in points]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread == 0:
        return None
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread
    if slope >= 0:
        return None
    return points[-1][0] + timedelta(days=ys[-1] / -slope)
