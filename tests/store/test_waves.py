"""Maintenance waves and the Excel worklist."""

from __future__ import annotations

import io
from collections import Counter, defaultdict

from openpyxl import load_workbook

from store.export import WORKLIST_COLUMNS, assign_waves, to_xlsx


def _row(host: str, dag: str = "", roles: str = "Mailbox", priority: int = 1) -> dict:
    return {"host": host, "dag": dag, "roles": roles, "priority": priority}


def test_no_wave_takes_two_members_of_one_dag_and_facing_roles_go_first():
    rows = [_row(f"DB{i}", dag="DAG1") for i in range(4)]
    rows += [_row(f"MB{i}", dag="DAG2") for i in range(3)]
    rows += [_row("CAS1", roles="Cafe, FrontendTransport"), _row("EDGE1", roles="Edge"),
             _row("LONE", priority=0)]
    waved = assign_waves(rows, per_wave=3)
    members: dict[tuple[int, str], int] = defaultdict(int)
    for row in waved:
        if row["dag"]:
            members[(row["wave"], row["dag"])] += 1
    assert all(count == 1 for count in members.values())
    sizes = Counter(row["wave"] for row in waved)
    assert max(sizes.values()) <= 3
    assert {r["host"] for r in waved if r["wave"] == 1} >= {"CAS1", "EDGE1"}
    assert len({r["wave"] for r in waved if r["dag"] == "DAG1"}) == 4  # 4 members, 4 waves


def test_excel_cells_are_inert_text():
    rows = [{"host": '=HYPERLINK("http://evil.example","x")', "action": "+cmd", "wave": 1}]
    book = load_workbook(io.BytesIO(to_xlsx(rows, [("snapshot", "7")])))
    sheet = book["Worklist"]
    assert [c.value for c in sheet[1]] == list(WORKLIST_COLUMNS)
    header = list(WORKLIST_COLUMNS)
    host = sheet.cell(row=2, column=header.index("host") + 1)
    assert host.value.startswith("'=HYPERLINK") and host.data_type == "s"
    assert sheet.cell(row=2, column=header.index("action") + 1).value == "'+cmd"
    assert book["About"]["B1"].value == "7"
