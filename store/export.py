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

from compliance.summary import HostSummary
from compliance.worklist import Item

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
AUDIT_COLUMNS = ("id", "at", "who", "action", "snapshot_id", "detail")
WORKLIST_COLUMNS = (
    "wave", "priority", "host", "fqdn", "status", "product", "cu", "build", "build_source", "action",
    "reason", "flags", "mitigations", "site", "dag", "roles", "observed_at", "observed_in",
    "carried", "snapshot_id", "snapshot_taken_at",
)


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


def host_row(summary: HostSummary, snapshot_id: int | None = None) -> dict[str, Any]:
    """One flat row per host: what the tables and exports show (lists joined with ", ").

    ``observed_in`` is the snapshot whose run made the observation: the carried one's, or
    ``snapshot_id`` (the snapshot shown) for a host its own run observed. Keys: HOST_COLUMNS.
    """
    observed_in = summary.observed_in if summary.carried else snapshot_id
    columns = summary.to_columns()
    row = {name: columns[name] for name in HOST_COLUMNS[:-2]}
    row["observed_in"] = "" if observed_in is None else observed_in
    row["carried"] = summary.carried
    return row


def worklist_rows(items: Iterable[Item], snapshot_id: int,
                  snapshot_taken_at: str) -> list[dict[str, Any]]:
    """The worklist (``compliance.worklist``) as flat rows, keys WORKLIST_COLUMNS."""
    return [{**host_row(item.summary, snapshot_id), "priority": item.priority,
             "wave": item.wave or "", "internet_facing": item.internet_facing,
             "snapshot_id": snapshot_id, "snapshot_taken_at": snapshot_taken_at}
            for item in items]


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
