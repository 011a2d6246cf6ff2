"""Rows of a snapshot for people: the host table and the worklist, and their CSV form.

Every cell that leaves as a spreadsheet is neutralised against formula injection: a host
name or AD attribute starting with ``=``, ``+``, ``-``, ``@`` (or a tab or carriage return)
would otherwise run as a formula in Excel or LibreOffice.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

from compliance.models import Assessment, Flag, Status

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
WORKLIST_COLUMNS = (
    "priority", "host", "fqdn", "status", "product", "cu", "build", "build_source", "action",
    "reason", "flags", "mitigations", "site", "dag", "observed_at", "snapshot_id",
    "snapshot_taken_at",
)
# Lower sorts first: compromised hosts, then exposed, then unknown, then stop-gaps.
_URGENCY = {Status.VULNERABLE: 1, Status.UNKNOWN: 2, Status.MITIGATED: 3}


def neutralise(value: Any) -> str:
    """The cell as text, with a leading quote when a spreadsheet would read a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def host_row(assessment: Assessment) -> dict[str, Any]:
    """One flat row per host: what the tables and exports show."""
    obs, verdict = assessment.observation, assessment.verdict
    return {
        "host": obs.host.name,
        "fqdn": obs.host.fqdn or "",
        "status": verdict.status.value,
        "product": verdict.product or "",
        "cu": verdict.cu or "",
        "build": verdict.build or "",
        "build_source": verdict.build_source.value if verdict.build_source else "",
        "known_build": verdict.known,
        "release": verdict.release_name or "",
        "site": obs.host.site or "",
        "dag": obs.host.dag or "",
        "roles": ", ".join(sorted(obs.host.roles or ())),
        "flags": ", ".join(flag.value for flag in verdict.flags),
        "mitigations": ", ".join(verdict.mitigations),
        "cves_open": ", ".join(verdict.cves_open),
        "action": verdict.action,
        "reason": verdict.reason,
        "observed_at": obs.observed_at.isoformat() if obs.observed_at else "",
    }


def worklist(assessments: Iterable[Assessment], snapshot_id: int,
             snapshot_taken_at: str) -> list[dict[str, Any]]:
    """Hosts that are not compliant, most urgent first, each with its next action."""
    rows = []
    for assessment in assessments:
        verdict = assessment.verdict
        if verdict.status.compliant and Flag.INDICATORS_FOUND not in verdict.flags:
            continue
        urgency = 0 if Flag.INDICATORS_FOUND in verdict.flags else _URGENCY[verdict.status]
        rows.append({**host_row(assessment), "priority": urgency,
                     "snapshot_id": snapshot_id, "snapshot_taken_at": snapshot_taken_at})
    rows.sort(key=lambda row: (row["priority"], row["product"], row["cu"], row["host"]))
    return rows


SNAPSHOT_COLUMNS = (
    "host", "fqdn", "status", "product", "cu", "build", "build_source", "mitigations", "flags",
    "action", "reason", "observed_at", "site", "dag", "roles", "cves_open", "release",
)


def to_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str] = WORKLIST_COLUMNS) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([neutralise(row.get(column)) for column in columns])
    return buffer.getvalue()
