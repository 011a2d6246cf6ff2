"""The one-page report's investigation section (issue 21): of the snapshot's patched and
mitigated servers, how many are not investigated, incomplete, clean or with indicators found
(the Overview's figures and labels), the directive, and a "Patched, not investigated" column
in the trend; a snapshot saved before issue 21 reads "not read", never clean."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime

import pandas as pd

from compliance.catalog import load_catalog
from store import SnapshotInfo
from views.report import report_html

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
TRIAGE = load_catalog().advisory.triage


def _info(snapshot_id: int, counts: dict[str, int], format_: int = 7) -> SnapshotInfo:
    return SnapshotInfo(id=snapshot_id, taken_at=NOW, source="collect", label="weekly",
                        tool_version="t", catalog_version="c", advisory_id="a",
                        advisory_version="1", host_count=sum(counts.values()), counts=counts,
                        hash="ab" * 32, format=format_, observed_count=3, fresh_count=3)


def _table() -> pd.DataFrame:
    return pd.DataFrame([{"host": "A", "status": "patched", "need": "", "site": "HQ",
                          "dag": ""}])


OLD = _info(6, {"patched": 7, "vulnerable": 3}, format_=6)
NEW = _info(8, {"patched": 9, "mitigated": 3, "vulnerable": 1})
COUNTS = {
    OLD.id: {("patched", None): 7, ("vulnerable", None): 3},
    NEW.id: {("patched", "not_investigated"): 4, ("patched", "incomplete"): 2,
             ("patched", "clean"): 1, ("patched", "indicators_found"): 2,
             ("mitigated", "not_investigated"): 2, ("mitigated", "indicators_found"): 1,
             ("vulnerable", "not_investigated"): 1},
}


def _cells(page: str, first: str) -> list[str]:
    """The cells of the table row whose first cell is ``first``."""
    row = re.search(rf"<tr><td>{re.escape(first)}</td>(.*?)</tr>", page, re.S)
    assert row is not None, first
    return re.findall(r"<td[^>]*>(.*?)</td>", row.group(1))


def test_the_section_counts_the_patched_and_mitigated_servers_by_state() -> None:
    page = report_html(NEW, [OLD, NEW], _table(), "verified", NOW, investigations=COUNTS,
                       triage=TRIAGE)
    assert "<h2>Patched is not clean: has anyone looked for a back door?</h2>" in page
    # The Overview's figure, under its label.
    assert "<b>4 patched servers not investigated</b>" in page
    header = re.search(r"<tr><th>Status</th>(.*?)</tr>", page, re.S)
    assert header is not None
    assert re.findall(r"<th>(.*?)</th>", header.group(1)) == [
        "Not investigated", "Investigation incomplete", "Investigated, clean",
        "Indicators found", "Servers"]
    assert _cells(page, "Patched") == ["4", "2", "1", "2", "9"]
    assert _cells(page, "Mitigated only") == ["2", "0", "0", "1", "3"]
    assert "CISA ED 21-02" in page and "msert.exe /F /Q" in page
    assert "2021-04-05 16:00 UTC" in page and "5 days after a later fix" in page
    assert "4 weekly scans" in page
    assert ('content="default-src \'none\'; style-src \'unsafe-inline\'"' in page)


def test_the_trend_has_a_patched_not_investigated_column_and_old_snapshots_read_not_read(
        ) -> None:
    page = report_html(NEW, [OLD, NEW], _table(), "verified", NOW, investigations=COUNTS,
                       triage=TRIAGE)
    trend = page[page.index("<h2>Trend"):]
    assert "<th>Patched, not investigated</th>" in trend
    old = _cells(trend, f"#{OLD.id}")
    new = _cells(trend, f"#{NEW.id}")
    # After the time, the servers and the share: never a count of clean ones, "not read".
    assert old[3] == "7 not read"
    assert new[3] == "4"


def test_a_snapshot_saved_before_issue_21_is_counted_as_not_investigated_never_clean() -> None:
    page = report_html(OLD, [OLD], _table(), "verified", NOW, investigations=COUNTS,
                       triage=TRIAGE)
    assert "<b>7 patched servers not investigated</b>" in page
    assert _cells(page, "Patched") == ["7", "0", "0", "0", "7"]
    assert "7 of them saved before issue 21" in page


def test_stored_text_is_escaped() -> None:
    hostile = replace(TRIAGE, directive="<b>ED</b>", scan_command="<script>x</script>")
    page = report_html(NEW, [NEW], _table(), "verified", NOW, investigations=COUNTS,
                       triage=hostile)
    assert "<b>ED</b>" not in page and "&lt;b&gt;ED&lt;/b&gt;" in page
    assert "<script" not in page


def test_without_the_counts_the_report_is_as_before() -> None:
    page = report_html(NEW, [NEW], _table(), "verified", NOW)
    assert "Patched is not clean" not in page and "Patched, not investigated" not in page
