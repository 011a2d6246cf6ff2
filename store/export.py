"""Rows of a snapshot for people: the host table and the worklist, as CSV and as Excel.

Every cell that leaves as a spreadsheet is neutralised against formula injection: a host
name or AD attribute starting with ``=``, ``+``, ``-``, ``@`` (or a tab or carriage return)
would otherwise run as a formula in Excel or LibreOffice. The Excel workbook is written by
rustpy-xlsxwriter (Rust's rust_xlsxwriter underneath), which writes a Python ``str`` as a
string cell, never as a formula, a number or a link (no formula or link option is given); only
the columns typed below are written as numbers, booleans or dates.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from itertools import repeat
from operator import itemgetter
from typing import Any

import rustpy_xlsxwriter as xlsx

from compliance.investigation import InvestigationState
from compliance.investigation_record import BEFORE, stored_state
from compliance.models import Status
from compliance.summary import HostSummary, shown_action
from compliance.worklist import TRIAGE_NAMES, Item

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
AUDIT_COLUMNS = ("id", "at", "who", "action", "snapshot_id", "detail")
WORKLIST_COLUMNS = (
    "wave", "priority", "host", "fqdn", "status", "product", "cu", "build", "build_source", "action",
    "next_step", "next_kb", "next_link", "reason", "flags", "mitigations", "site", "dag", "owner",
    "accepted", "due", "overdue",
    "deadline_rule", "roles", "observed_at", "observed_in", "carried", "snapshot_id",
    "snapshot_taken_at",
    # Issue 21: the investigation after the fix (compliance/investigation.py), after the
    # columns every earlier export had.
    "investigation", "investigation_action",
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
    row = summary.to_columns(HOST_COLUMNS[:-2])
    row["observed_in"] = "" if observed_in is None else observed_in
    row["carried"] = summary.carried
    return row


def investigation_cells(summary: HostSummary) -> dict[str, str]:
    """``investigation`` (the state; a host stored before issue 21 reads as not investigated)
    and ``investigation_action`` (its next action, or why there is none on record). The action
    quotes what the server read (threat names, file paths): made ``inert``, so an escape
    sequence or a bidirectional override in it reaches no terminal, spreadsheet or page as
    such."""
    return investigation_cells_of(summary.investigation, summary.investigation_action,
                                  summary.status)


def investigation_cells_of(state: InvestigationState | None, action: str,
                           status: Status) -> dict[str, str]:
    """``investigation_cells`` of a stored state (None: none stored), action and status."""
    return {"investigation": stored_state(state, status).value,
            "investigation_action": inert(action) if state is not None else BEFORE}


@dataclass(frozen=True)
class Owners:
    """Who takes a host's work: its DAG's owner, else its site's owner, else nobody ("").

    ``site`` and ``dag`` are (name, owner) pairs, as ``[worklist] site_owners`` and
    ``dag_owners`` declare them (``Settings.site_owners``, ``Settings.dag_owners``); names match
    case-insensitively, as AD compares them.
    """

    site: tuple[tuple[str, str], ...] = ()
    dag: tuple[tuple[str, str], ...] = ()
    _site: dict[str, str] = field(init=False, repr=False, compare=False)
    _dag: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_site", {name.casefold(): owner for name, owner in self.site})
        object.__setattr__(self, "_dag", {name.casefold(): owner for name, owner in self.dag})

    @classmethod
    def of(cls, site: Mapping[str, str], dag: Mapping[str, str]) -> Owners:
        return cls(tuple(site.items()), tuple(dag.items()))

    def owner_for(self, site: str, dag: str) -> str:
        """The DAG's owner when the host's DAG has one, else the site's, else ""."""
        return (dag and self._dag.get(dag.casefold())) or (
            site and self._site.get(site.casefold())) or ""


NO_OWNERS = Owners()


def worklist_rows(items: Iterable[Item], snapshot_id: int, snapshot_taken_at: str,
                  owners: Owners | None = None,
                  accepted: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """The worklist (``compliance.worklist``) as flat rows, keys WORKLIST_COLUMNS (and
    ``internet_facing``); ``owner`` from ``owners`` (``Owners.owner_for``), ``accepted`` the
    badge of a risk acceptance in force (``accepted``: lower-case name -> badge), else ""."""
    owners = owners or NO_OWNERS
    accepted = accepted or {}
    return [{**host_row(item.summary, snapshot_id), **investigation_cells(item.summary),
             "action": shown_action(item.summary.action, item.summary.investigation),
             "priority": item.priority,
             "wave": item.wave or "", "internet_facing": item.internet_facing,
             "owner": owners.owner_for(item.summary.site, item.summary.dag),
             "accepted": accepted.get(item.summary.host.casefold(), ""),
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


# --- Excel ----------------------------------------------------------------------------------

# Columns written as typed cells (any other column, and any value these cannot read, is text).
NUMBER_COLUMNS = frozenset({"wave", "priority", "snapshot_id", "observed_in", "id",
                            "indicator_count"})
BOOLEAN_COLUMNS = frozenset({"known_build", "carried", "internet_facing", "run_failed",
                             "overdue"})
DATETIME_COLUMNS = frozenset({"observed_at", "snapshot_taken_at", "at", "due"})
DATETIME_FORMAT = "yyyy-mm-dd hh:mm"
EXCEL_MAX_ROWS = 1_048_576
EXCEL_MAX_TEXT = 32_767  # UTF-16 code units in one cell
MAX_WIDTH = 60  # characters: a longer column is cut on screen, its cells keep their text
MIN_WIDTH = 6

STATUS_MEANINGS = {
    Status.PATCHED: "the ProxyLogon security update (or a later build) is installed",
    Status.MITIGATED: "not patched, but Microsoft's interim mitigations are in place: a "
                      "stop-gap, the update is still due",
    Status.VULNERABLE: "an affected build without the update: patch it",
    Status.NOT_APPLICABLE: "a version ProxyLogon does not affect",
    Status.UNKNOWN: "no usable reading: unreachable, stale, or a build that cannot be judged",
}
PRIORITY_MEANINGS = {
    0: "compromise indicators (a CVE check hit, a malware detection or a possible web "
       "shell), patched or not: isolate and investigate first, whatever the wave (the update "
       "does not remove a web shell)",
    1: "an affected build without the update: patch it",
    2: "no usable reading (unreachable, stale or unjudgeable): find out",
    3: "only the interim mitigations: a stop-gap, the update is still due",
    4: "patched, but no full malware scan after the fix is recorded: the update does not "
       "remove a back door planted before it (run MSERT /F /Q and collect again)",
    5: "patched and scanned, but the evidence cannot cover the exposure window (logs too "
       "short, not a full scan, a part not read): see investigation_action",
}
INVESTIGATION_MEANINGS = {
    "indicators_found": "a CVE check hit, a malware detection or a possible web shell: "
                        "isolate and investigate",
    "not_investigated": "no scan after the fix is recorded (or the server is not fixed yet)",
    "incomplete": "scanned after the fix, but the evidence cannot cover the exposure window",
    "clean": "a full scan after the fix found nothing and the logs cover the window",
    "not_applicable": "the advisory does not affect the server",
}
DEMO_WARNING = ("DEMO DATA: a fictional fleet for trying the dashboard, not a collection from "
                "real servers")
WAVES_MEANING = (
    "Maintenance windows, numbered from 1. Internet-facing servers (Client Access / Cafe, "
    "Front End Transport, Edge) come first, then priority. A wave takes at most one member of "
    "a DAG, so no DAG has all its copies down in one window. Empty for a server that needs "
    "only its investigation (a scan needs no window).")


def _utf16_cut(text: str) -> str:
    """The text cut to what one Excel cell holds, marked with an ellipsis."""
    if len(text) <= EXCEL_MAX_TEXT // 2 or len(text.encode("utf-16-le")) <= 2 * EXCEL_MAX_TEXT:
        return text
    head = text.encode("utf-16-le")[:2 * (EXCEL_MAX_TEXT - 1)].decode("utf-16-le", "ignore")
    return head + "…"


def _text(value: Any) -> str:
    """The cell as text: ``neutralise``d and cut to what a cell holds; "" for a NaN."""
    if isinstance(value, float) and math.isnan(value):
        return ""  # a missing value that came through a DataFrame
    return _utf16_cut(neutralise(value))


# Column readers: each value of one column as the cell to write, as the one-value readers
# (``_text``, ``_number``, ``_boolean``) give it. A worklist is some 300,000 cells, and Python
# calls per cell cost more than the writer: a column of one plain type (the usual one) is
# checked and passed on in C loops.
_NONE = type(None)


def _texts(values: list[Any]) -> list[Any]:
    kinds = set(map(type, values))
    if _NONE in kinds and kinds <= {str, _NONE}:
        values = ["" if value is None else value for value in values]
        kinds = {str}
    if kinds != {str} or max(map(len, values)) > EXCEL_MAX_TEXT // 2:
        return list(map(_text, values))
    if not any(map(str.startswith, values, repeat(FORMULA_PREFIXES))):
        return values
    return ["'" + value if value.startswith(FORMULA_PREFIXES) else value for value in values]


def _number(value: Any) -> int | float | str:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return _text(value)


def _numbers(values: list[Any]) -> list[Any]:
    return values if set(map(type, values)) <= {int} else list(map(_number, values))


def _boolean(value: Any) -> bool | str:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return _text(value)


def _booleans(values: list[Any]) -> list[Any]:
    return values if set(map(type, values)) <= {bool} else list(map(_boolean, values))


def _excel_time(value: datetime) -> datetime | None:
    """UTC without a zone (Excel has none): a naive time is taken as UTC already."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value if value.year >= 1900 else None  # Excel's calendar starts in 1900


def _times() -> Callable[[list[Any]], list[Any]]:
    """A column reader of ISO 8601 times, remembering each text (a worklist repeats a few)."""
    seen: dict[str, datetime | str] = {}

    def read(value: Any) -> datetime | str:
        if isinstance(value, str):
            if value not in seen:
                try:
                    parsed = _excel_time(datetime.fromisoformat(value))
                except ValueError:
                    parsed = None
                seen[value] = _text(value) if parsed is None else parsed
            return seen[value]
        if isinstance(value, datetime):
            return _excel_time(value) or _text(value)
        if isinstance(value, date):
            return datetime(value.year, value.month, value.day) if value.year >= 1900 else _text(value)
        return _text(value)

    return lambda values: list(map(read, values))


def _width(values: list[Any], timed: bool) -> int:
    """The widest cell of a column, in characters (a time shows as DATETIME_FORMAT)."""
    if timed:
        texts = [value for value in values if isinstance(value, str)]
        return max(max(map(len, texts), default=0),
                   len(DATETIME_FORMAT) if len(texts) < len(values) else 0)
    return max(map(len, map(str, values)), default=0)


def _sheet(header: Sequence[str], lines: Iterable[Sequence[Any]]) -> Any:
    """A sheet as the writer takes it: ``header`` as its first row, then ``lines``.

    The writer takes a sheet as dicts: the first one's keys are the first row, and each dict's
    values are read in order, not by key. With no line, a DataFrame's columns give that row.
    ``ValueError`` when two header cells are equal (one key would hide the other's column).
    """
    if len(set(header)) < len(header):
        raise ValueError(f"two columns of one sheet would have the same header: {list(header)}")
    # Each line is as long as the header (the Worklist's: its columns' values; About's: pairs):
    # zip's strict check would cost ~10 ms of the workbook's ~0.2 s at 10,000 lines.
    records = [dict(zip(header, line, strict=False)) for line in lines]
    if records:
        return records
    import pandas as pd  # only here: the app has it loaded, a script need not pay for it

    return pd.DataFrame(columns=list(header))


def to_xlsx(rows: Sequence[dict[str, Any]], about: Sequence[tuple[str, str]],
            columns: Sequence[str] = WORKLIST_COLUMNS, *, demo: bool = False) -> bytes:
    """The rows as an Excel workbook to hand over as it is: sheet "Worklist" (a bold, frozen
    header of the column keys, as the CSV's; an autofilter; widths from the content), "Legend"
    (priorities, waves, statuses) and "About" (``about``, after a demo-data warning when
    ``demo``). Numbers, booleans and times (UTC) are typed cells; every text cell is
    ``neutralise``d and written as a string, never as a formula.

    ``ValueError`` when the rows do not fit in one sheet, when two columns have the same name,
    or when the About sheet's first line (the warning, else ``about[0]``) has its value equal
    to its label (the writer puts a sheet's first row in dict keys). ``RuntimeError`` (the
    writer's) when it cannot write the unnamed temporary files each sheet's rows pass through
    (the system's temporary directory missing or full).
    """
    if len(rows) >= EXCEL_MAX_ROWS:
        raise ValueError(f"{len(rows)} rows do not fit in one Excel sheet "
                         f"(at most {EXCEL_MAX_ROWS - 1} below the header)")
    read_times = _times()
    table: list[list[Any]] = []  # column by column: each column read, and measured, in one pass
    widths: list[float] = []
    for name in columns:
        reader = (_numbers if name in NUMBER_COLUMNS else _booleans if name in BOOLEAN_COLUMNS
                  else read_times if name in DATETIME_COLUMNS else _texts)
        try:
            values = reader(list(map(itemgetter(name), rows)))
        except KeyError:  # a row without the column: an empty cell
            values = reader([row.get(name) for row in rows])
        # Every value _texts gives is a str, measured as it is; a number's width is its str's.
        width = max(max(map(len, values), default=0) if reader is _texts
                    else _width(values, name in DATETIME_COLUMNS), len(name), MIN_WIDTH)
        widths.append(min(width, MAX_WIDTH) + 2)
        table.append(values)
    bold = xlsx.Format().set_bold()
    sheets = [("Worklist", _sheet([_text(name) for name in columns], zip(*table, strict=False))),
              ("Legend", _sheet(("column", "value", "meaning"), legend()))]
    widths_of: dict[str, dict[str, float] | list[float]] = {
        "Worklist": widths, "Legend": [18.0, 18.0, 100.0]}
    lines = [("demo data", DEMO_WARNING)] if demo else []
    lines += [(_text(key), _text(value)) for key, value in about]
    first = xlsx.Format()  # the About sheet's first line: plain, or the demo warning
    if demo:
        first.set_bold().set_font_color("#9C0006").set_background_color("#FFC7CE")
    if lines:
        # The About sheet has no header: its first line takes the place the writer gives one.
        sheets.append(("About", _sheet(lines[0], lines[1:])))
        widths_of["About"] = [20.0, 80.0]
    else:
        sheets.append(("About", []))
    buffer = io.BytesIO()
    # The writer's default, constant memory mode, which is its fastest: each row goes out to an
    # unnamed temporary file as it comes, text inline (no shared-string table to build).
    xlsx.write_worksheets(
        sheets, buffer, autofit=False,
        datetime_format=DATETIME_FORMAT,  # every datetime cell, UTC
        header_format={"Worklist": bold, "Legend": bold, "About": first},
        freeze_panes={"Worklist": {"row": 1, "col": 0}, "Legend": {"row": 1, "col": 0}},
        autofilter={"Worklist": True},
        column_widths=widths_of)
    return buffer.getvalue()


def legend() -> list[tuple[str, int | str, str]]:
    """The Legend sheet's rows below its header: (column, value, meaning)."""
    rows: list[tuple[str, int | str, str]] = [
        ("priority", rank, f"{TRIAGE_NAMES[rank]}: {PRIORITY_MEANINGS[rank]}")
        for rank in sorted(TRIAGE_NAMES)]
    rows.append(("wave", "1, 2, …", WAVES_MEANING))
    rows += [("status", status.value, STATUS_MEANINGS[status]) for status in Status]
    rows += [("observed_at", DATETIME_FORMAT, "when the host was last observed, in UTC"),
             ("snapshot_taken_at", DATETIME_FORMAT, "when the snapshot was taken, in UTC"),
             ("carried", "TRUE / FALSE", "TRUE: this snapshot's run could not read the host; "
              "its last reading, from snapshot observed_in, was carried forward"),
             ("owner", "", "who takes the host's work: its DAG's owner, else its AD site's "
              "([worklist] in the settings); empty when neither is declared"),
             ("accepted", "accepted until … by …", "a risk acceptance in force: the status "
              "stays what the evidence says, and the host comes after every other host; "
              "python -m store acceptances gives its reason and ticket"),
             ("due", DATETIME_FORMAT, "by when the host must be fixed under the deadline "
              "policy ([deadlines] in the settings), in UTC"),
             ("overdue", "TRUE / FALSE", "TRUE: the due time had passed when the file was "
              "made (for the latest snapshot), or at the snapshot's time (for an earlier one)"),
             ("deadline_rule", "", "which rule of the policy set the due time"),
             ("next_step", "", "the first step of the host's upgrade plan towards every "
              "advisory's fix and the newest Security Update (compliance/plan.py); without one, "
              "why (nothing to install, or read the build first)"),
             ("next_kb", "KB…", "the Knowledge Base article of that step, if any"),
             ("next_link", "https://support.microsoft.com/help/…", "that article's page"),
             *(("investigation", state, meaning)
               for state, meaning in INVESTIGATION_MEANINGS.items()),
             ("investigation_action", "", "what to do next for the investigation after the "
              "fix (issue 21)"),
             ("any text", "'=…", "a leading ' was added to a text starting with = + - @ (or a tab "
              "or carriage return) so that no spreadsheet runs it as a formula")]
    return rows
