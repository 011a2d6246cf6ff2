"""The Excel worklist, read back as a person's spreadsheet would: typed cells, a usable sheet
(bold frozen header, filter, widths), a legend, the demo warning, and inert text."""

from __future__ import annotations

import csv
import io
import zipfile
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest
from openpyxl import Workbook, load_workbook
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

from compliance.models import Flag, ServerRole, Status
from compliance.summary import HostSummary
from compliance.worklist import TRIAGE_NAMES, plan_waves, rank
from store.export import (
    DEMO_WARNING,
    EXCEL_MAX_ROWS,
    EXCEL_MAX_TEXT,
    MAX_WIDTH,
    STATUS_MEANINGS,
    WORKLIST_COLUMNS,
    Owners,
    to_csv,
    to_xlsx,
    worklist_rows,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
HOSTILE = '=HYPERLINK("http://evil.example","click")'
ABOUT = [("snapshot", "42"), ("taken at", NOW.isoformat())]


def _summary(host: str, status: Status = Status.VULNERABLE, **changes: Any) -> HostSummary:
    summary = HostSummary(
        host=host, fqdn=f"{host.lower()}.corp.example", status=status,
        product="Exchange Server 2016", cu="CU19", build="15.1.2176.2", build_source="exsetup",
        known_build=True, release="CU19", site="Site-A", dag="", roles=(ServerRole.MAILBOX,),
        flags=(), mitigations=(), cves_open=("CVE-2021-26855",),
        action="Install KB5000871", reason="CU19 without the March 2021 update",
        observed_at=(NOW - timedelta(hours=3)).isoformat(), failure_reason="",
        failure_detail="", run_failed=False, indicator_count=0)
    return replace(summary, **changes)


def _rows() -> list[dict[str, Any]]:
    summaries = [
        _summary("SHELL", Status.PATCHED, flags=(Flag.INDICATORS_FOUND,), dag="DAG1"),
        _summary(HOSTILE, fqdn="+cmd|' /C calc'!A0", site="@Site"),
        _summary("CAS1", roles=(ServerRole.CAFE,), dag="dag1"),
        _summary("DOWN", Status.UNKNOWN, observed_at="", build="", known_build=False),
        _summary("OLD", Status.MITIGATED, observed_at="last Tuesday", observed_in=40),
    ]
    owners = Owners.of({"site-a": "site-team@corp.example"}, {"Dag1": "dag-team@corp.example"})
    return worklist_rows(plan_waves(rank(summaries), 2), 42, NOW.isoformat(), owners)


def _book(rows: list[dict[str, Any]], demo: bool = False) -> Workbook:
    return load_workbook(io.BytesIO(to_xlsx(rows, ABOUT, demo=demo)))


def _records(sheet: Worksheet) -> dict[str, dict[str, Any]]:
    """The data rows by host (its text as written), each as {column: cell}."""
    header = [cell.value for cell in sheet[1]]
    return {cells[header.index("host")].value: dict(zip(header, cells, strict=True))
            for cells in sheet.iter_rows(min_row=2)}


def _number(cell: Any) -> bool:
    """A number cell. The writer writes 2 as "2.0" (Excel keeps every number as a double, so
    it is the same cell), which openpyxl reads back as a float."""
    return cell.data_type == "n" and type(cell.value) in (int, float)


def test_numbers_booleans_and_times_are_typed_cells():
    cells = _records(_book(_rows())["Worklist"])
    shell, down, old = cells["SHELL"], cells["DOWN"], cells["OLD"]
    for column in ("wave", "priority", "snapshot_id", "observed_in"):
        assert _number(shell[column]), column
    assert (shell["priority"].value, shell["snapshot_id"].value, old["observed_in"].value) == (
        0, 42, 40)
    assert shell["carried"].value is False and old["carried"].value is True
    assert shell["carried"].data_type == "b"
    # UTC, without a zone (Excel has none), shown to the minute.
    assert shell["observed_at"].value == datetime(2026, 11, 25, 9, 0)
    assert shell["snapshot_taken_at"].value == datetime(2026, 11, 25, 12, 0)
    assert shell["observed_at"].is_date and shell["observed_at"].number_format == "yyyy-mm-dd hh:mm"
    assert old["observed_at"].value == "last Tuesday"  # not ISO 8601: kept as text
    assert down["observed_at"].value is None  # never observed: an empty cell
    assert all(isinstance(cell.value, str) for cell in (shell["host"], shell["status"],
                                                       shell["build"], shell["cu"]))


def test_the_typed_cells_survive_the_pages_dataframe():
    rows = pd.DataFrame(_rows(), columns=list(WORKLIST_COLUMNS)).to_dict("records")
    cells = _records(_book(rows)["Worklist"])["SHELL"]
    assert _number(cells["wave"]) and cells["carried"].value is False
    assert isinstance(cells["observed_at"].value, datetime)


def test_other_columns_are_typed_too_and_numbers_in_text_stay_numbers():
    rows = [{"host": "EX1", "known_build": False, "internet_facing": "true", "wave": "3",
             "priority": 1.0, "observed_in": float("nan"), "observed_at": datetime(2026, 1, 2, 3, 4)}]
    columns = ("host", "known_build", "internet_facing", "wave", "priority", "observed_in",
               "observed_at")
    sheet = load_workbook(io.BytesIO(to_xlsx(rows, [], columns)))["Worklist"]
    assert [cell.value for cell in sheet[2]] == [
        "EX1", False, True, 3, 1, None, datetime(2026, 1, 2, 3, 4)]


def test_the_sheet_has_a_bold_frozen_header_a_filter_and_widths():
    rows = _rows()
    sheet = _book(rows)["Worklist"]
    assert [cell.value for cell in sheet[1]] == list(WORKLIST_COLUMNS)
    assert all(cell.font.b for cell in sheet[1])
    assert not sheet["A2"].font.b
    assert sheet.freeze_panes == "A2"
    last = get_column_letter(len(WORKLIST_COLUMNS))
    assert sheet.auto_filter.ref == f"A1:{last}{len(rows) + 1}"
    widths = {}
    for dimension in sheet.column_dimensions.values():  # openpyxl groups equal neighbours
        for index in range(dimension.min, dimension.max + 1):
            widths[WORKLIST_COLUMNS[index - 1]] = dimension.width
    assert set(widths) == set(WORKLIST_COLUMNS)
    assert widths["fqdn"] > len("+cmd|' /C calc'!A0") >= widths["wave"] - 4
    assert widths["snapshot_taken_at"] >= len("snapshot_taken_at")
    assert widths["observed_at"] >= len("yyyy-mm-dd hh:mm")


def test_a_long_text_widens_its_column_up_to_a_cap_and_is_cut_to_what_a_cell_holds():
    rows = [{"host": "EX1", "reason": "x" * 40_000, "flags": "after the long one"}]
    sheet = load_workbook(io.BytesIO(to_xlsx(rows, [])))["Worklist"]
    cells = _records(sheet)["EX1"]
    assert len(cells["reason"].value) == EXCEL_MAX_TEXT and cells["reason"].value.endswith("…")
    assert cells["flags"].value == "after the long one"  # the cells after it still written
    column = get_column_letter(WORKLIST_COLUMNS.index("reason") + 1)
    assert sheet.column_dimensions[column].width <= MAX_WIDTH + 3


def test_a_text_column_of_mixed_values_is_read_cell_by_cell():
    """A column of plain short strings is passed on whole; anything else in it (a formula-like
    text, None, NaN, a number, a text too long for a cell) sends it through cell by cell."""
    values = ["EX1", "=1+1", None, float("nan"), 7, "x" * 40_000, "-5", "EX2"]
    rows = [{"host": f"H{number}", "reason": value} for number, value in enumerate(values)]
    cells = _records(load_workbook(io.BytesIO(to_xlsx(rows, [])))["Worklist"])
    read = [cells[f"H{number}"]["reason"] for number in range(len(values))]
    assert [cell.value for cell in read[:5]] == ["EX1", "'=1+1", None, None, "7"]
    assert len(read[5].value) == EXCEL_MAX_TEXT and read[6].value == "'-5"
    assert all(cell.data_type == "s" for cell in read if cell.value is not None)
    plain = [{"host": f"H{number}", "reason": f"r{number}"} for number in range(3)]
    # One formula-like text, and a row without the column, in a column of plain text.
    hostile = [*plain, {"host": "H3", "reason": "@SUM(A1)"}, {"host": "H4"}]
    cells = _records(load_workbook(io.BytesIO(to_xlsx(hostile, [])))["Worklist"])
    assert [cells[f"H{n}"]["reason"].value for n in range(5)] == [
        "r0", "r1", "r2", "'@SUM(A1)", None]


def test_a_sheet_of_two_equal_headers_is_refused():
    """The writer takes a sheet's first row as dict keys: two equal cells there would lose a
    column, so the call fails instead (the About sheet's first line stands as its header)."""
    with pytest.raises(ValueError, match="same header"):
        to_xlsx(_rows(), ABOUT, ("host", "status", "host"))
    with pytest.raises(ValueError, match="same header"):
        to_xlsx(_rows(), [("x", "x"), *ABOUT])
    about = load_workbook(io.BytesIO(to_xlsx(_rows(), [ABOUT[0]])))["About"]
    assert [tuple(row) for row in about.iter_rows(values_only=True)] == [ABOUT[0]]
    assert not about["A1"].font.b  # the first line of About is no header to a reader


def test_the_legend_explains_priorities_waves_and_every_status():
    legend = _book(_rows())["Legend"]
    rows = [tuple(cells) for cells in legend.iter_rows(values_only=True)]
    assert rows[0] == ("column", "value", "meaning")
    assert legend["A1"].font.b
    priorities = {value: meaning for column, value, meaning in rows if column == "priority"}
    assert sorted(priorities) == [0, 1, 2, 3, 4, 5]  # 4 and 5: the investigation (issue 21)
    for number, name in TRIAGE_NAMES.items():
        assert priorities[number].startswith(name)
    assert "compromise indicators" in priorities[0] and "mitigated only" in priorities[3]
    assert "not investigated" in priorities[4] and "MSERT" in priorities[4]
    states = {value for column, value, _meaning in rows if column == "investigation"}
    assert states == {"indicators_found", "not_investigated", "incomplete", "clean",
                      "not_applicable"}
    waves = next(meaning for column, _value, meaning in rows if column == "wave")
    assert "one member of a DAG" in waves and "Internet-facing" in waves
    statuses = {value: meaning for column, value, meaning in rows if column == "status"}
    assert set(statuses) == {status.value for status in Status}
    assert set(STATUS_MEANINGS) == set(Status)


@pytest.mark.parametrize("demo", [False, True])
def test_the_demo_row_is_there_only_for_demo_data(demo):
    about = _book(_rows(), demo=demo)["About"]
    rows = [tuple(cells) for cells in about.iter_rows(values_only=True)]
    if demo:
        assert rows[0] == ("demo data", DEMO_WARNING) and about["A1"].font.b
        assert "DEMO DATA" in DEMO_WARNING
    assert rows[int(demo):] == ABOUT
    assert not any("demo" in str(value).lower() for row in rows[int(demo):] for value in row)


def test_every_text_cell_is_inert_and_no_cell_is_a_formula():
    data = to_xlsx(_rows(), [*ABOUT, ("=cmd", "@SUM(A1)")], demo=True)
    book = load_workbook(io.BytesIO(data))
    cells = _records(book["Worklist"])
    hostile = cells["'" + HOSTILE]
    assert hostile["host"].value == "'" + HOSTILE and hostile["host"].data_type == "s"
    assert hostile["fqdn"].value == "'+cmd|' /C calc'!A0" and hostile["fqdn"].data_type == "s"
    assert hostile["site"].value == "'@Site"
    assert [cell.value for cell in book["About"][4]] == ["'=cmd", "'@SUM(A1)"]
    for sheet in book.worksheets:
        for row in sheet.iter_rows():
            for cell in row:
                assert cell.data_type != "f", cell.coordinate
                if isinstance(cell.value, str):
                    assert not cell.value.startswith(("=", "+", "-", "@")), cell.coordinate
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for name in archive.namelist():
            if name.startswith("xl/worksheets/"):
                assert b"<f>" not in archive.read(name) and b"<f " not in archive.read(name)


def test_csv_and_excel_have_the_same_columns_in_the_same_order():
    rows = _rows()
    header = next(csv.reader(io.StringIO(to_csv(rows))))
    assert header == [cell.value for cell in _book(rows)["Worklist"][1]] == list(WORKLIST_COLUMNS)
    assert WORKLIST_COLUMNS.index("owner") == WORKLIST_COLUMNS.index("dag") + 1


def test_the_owner_column_is_filled_dag_first_then_site():
    cells = _records(_book(_rows())["Worklist"])
    assert cells["SHELL"]["owner"].value == "dag-team@corp.example"  # DAG1 ~ Dag1
    assert cells["CAS1"]["owner"].value == "dag-team@corp.example"  # dag1 ~ Dag1
    assert cells["DOWN"]["owner"].value == "site-team@corp.example"  # Site-A ~ site-a
    assert cells["'" + HOSTILE]["owner"].value is None  # @Site has no owner: empty


def test_an_empty_worklist_is_a_header_with_its_filter():
    sheet = load_workbook(io.BytesIO(to_xlsx([], ABOUT)))["Worklist"]
    assert [cell.value for cell in sheet[1]] == list(WORKLIST_COLUMNS)
    assert sheet.max_row == 1 and sheet.freeze_panes == "A2"


class _Huge(list[dict[str, Any]]):
    def __len__(self) -> int:
        return EXCEL_MAX_ROWS


def test_more_rows_than_a_sheet_holds_is_refused_before_any_work():
    with pytest.raises(ValueError, match="do not fit in one Excel sheet"):
        to_xlsx(_Huge(), ABOUT)


def test_the_investigation_action_reaches_the_csv_and_excel_inert():
    """Review of issue 21: a threat name or a path the server wrote, with an escape sequence
    and a bidirectional override, is shown as escapes in the worklist's CSV and Excel
    investigation_action (as the terminal and the pages show it), never as the characters."""
    from compliance.investigation import InvestigationState

    threat = "Backdoor:ASP/Chopper \x1b[2J\x1b]0;pwned\x07 C:\\inetpub\\gnp\u202eexa.aspx"
    rows = worklist_rows(rank([_summary(
        "SHELL", Status.PATCHED, investigation=InvestigationState.INDICATORS_FOUND,
        investigation_action=f"isolate and investigate: Defender detected {threat}")]),
        42, NOW.isoformat())
    text = to_csv(rows)
    assert "\x1b" not in text and "\u202e" not in text and "\x07" not in text
    cell = next(csv.DictReader(io.StringIO(text)))["investigation_action"]
    assert "\\x1b[2J" in cell and "\\u202e" in cell and "Backdoor:ASP/Chopper" in cell
    sheet = load_workbook(io.BytesIO(to_xlsx(rows, ABOUT))).worksheets[0]
    column = [c.value for c in sheet[1]].index("investigation_action") + 1
    assert sheet.cell(2, column).value == cell
