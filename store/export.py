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

from openpyxl import Workbook

from compliance.models import Assessment, Flag, Status

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
AUDIT_COLUMNS = ("id", "at", "who", "action", "snapshot_id", "detail")
WORKLIST_COLUMNS = (
    "wave", "priority", "host", "fqdn", "status", "product", "cu", "build", "build_source", "action",
    "reason", "flags", "mitigations", "site", "dag", "roles", "observed_at", "observed_in",
    "carried", "snapshot_id", "snapshot_taken_at",
)
# Lower sorts first: compromised hosts, then exposed, then unknown, then stop-gaps.
_URGENCY = {Status.VULNERABLE: 1, Status.UNKNOWN: 2, Status.MITIGATED: 3}


def inert(value: Any) -> str:
    """The value as text a terminal shows and does not obey: control and format characters
    (escape sequences, bell, newline, tab, bidirectional overrides) become visible escapes such
    as ``\\x1b`` or ``\\u202e``, so a host name cannot clear the screen or forge a line."""
    text = "" if value is None else str(value)
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else
                   (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")
                   for char in text)


def neutralise(value: Any) -> str:
    """The cell as text, with a leading quote when a spreadsheet would read a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


HOST_COLUMNS = (
    "host", "fqdn", "status", "product", "cu", "build", "build_source", "known_build", "release",
    "site", "dag", "roles", "flags", "mitigations", "cves_open", "action", "reason",
    "observed_at", "observed_in", "carried",
)


def host_row(assessment: Assessment, snapshot_id: int | None = None) -> dict[str, Any]:
    """One flat row per host: what the tables and exports show.

    ``observed_in`` is the snapshot whose run made the observation: the carried one's, or
    ``snapshot_id`` (the snapshot shown) for a host its own run observed. Keys: HOST_COLUMNS.
    """
    obs, verdict = assessment.observation, assessment.verdict
    observed_in = assessment.observed_in if assessment.carried else snapshot_id
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
        "observed_in": "" if observed_in is None else observed_in,
        "carried": assessment.carried,
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
        rows.append({**host_row(assessment, snapshot_id), "priority": urgency,
                     "snapshot_id": snapshot_id, "snapshot_taken_at": snapshot_taken_at})
    rows.sort(key=lambda row: (row["priority"], row["product"], row["cu"], row["host"]))
    return rows


SNAPSHOT_COLUMNS = (
    "host", "fqdn", "status", "product", "cu", "build", "build_source", "mitigations", "flags",
    "action", "reason", "observed_at", "observed_in", "carried", "site", "dag", "roles",
    "cves_open", "release",
)


def to_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str] = WORKLIST_COLUMNS) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([neutralise(row.get(column)) for column in columns])
    return buffer.getvalue()


# Roles that face the internet (OWA, ECP, EWS, Autodiscover, SMTP from outside) go first.
INTERNET_FACING = frozenset({"Cafe", "ClientAccess", "FrontendTransport", "Edge"})


def assign_waves(rows: list[dict[str, Any]], per_wave: int = 10) -> list[dict[str, Any]]:
    """Group worklist rows into maintenance waves, in place and returned sorted by wave.

    Internet-facing servers come first, then urgency. A wave takes at most one member of any
    DAG, so no DAG ever has all its members down in one window.
    """
    def facing(row: dict[str, Any]) -> bool:
        return bool(INTERNET_FACING & {r.strip() for r in str(row.get("roles", "")).split(",")})

    ordered = sorted(rows, key=lambda r: (not facing(r), r["priority"], r["host"].lower()))
    waves: list[tuple[list[dict[str, Any]], set[str]]] = []
    for row in ordered:
        dag = (row.get("dag") or "").lower()
        number = next((n for n, (members, dags) in enumerate(waves)
                       if len(members) < per_wave and not (dag and dag in dags)), None)
        if number is None:
            waves.append(([], set()))
            number = len(waves) - 1
        members, dags = waves[number]
        members.append(row)
        if dag:
            dags.add(dag)
        row["wave"] = number + 1
        row["internet_facing"] = facing(row)
    return sorted(ordered, key=lambda r: (r["wave"], not r["internet_facing"], r["priority"],
                                          r["host"].lower()))


def to_xlsx(rows: Sequence[dict[str, Any]], about: Sequence[tuple[str, str]],
            columns: Sequence[str] = WORKLIST_COLUMNS) -> bytes:
    """The worklist as an Excel workbook; every cell is written as inert text."""
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Worklist"
    sheet.append(list(columns))
    for row in rows:
        sheet.append([neutralise(row.get(column)) for column in columns])
    for cells in sheet.iter_rows(min_row=2):
        for cell in cells:
            cell.data_type = "s"  # never a formula, whatever the text
    info = book.create_sheet("About")
    for key, value in about:
        info.append([neutralise(key), neutralise(value)])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()
