"""The one-page report: the Overview's headline, escaped stored text, nothing external."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd

from store import SnapshotInfo
from views.report import report_html

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _info(snapshot_id: int, counts: dict[str, int]) -> SnapshotInfo:
    return SnapshotInfo(id=snapshot_id, taken_at=NOW, source="collect", label="<b>weekly</b>",
                        tool_version="t", catalog_version="c<1>", advisory_id="a",
                        advisory_version="1", host_count=sum(counts.values()), counts=counts,
                        hash="ab" * 32, format=4, observed_count=3, fresh_count=3)


def _table() -> pd.DataFrame:
    return pd.DataFrame([
        {"host": "A", "status": "vulnerable", "need": "vulnerable",
         "site": "<script>alert(1)</script>", "dag": ""},
        {"host": "B", "status": "patched", "need": "compromise indicators", "site": "HQ",
         "dag": "DAG1"},
        {"host": "C", "status": "patched", "need": "", "site": "HQ", "dag": "DAG1"},
    ])


def test_the_report_states_the_headline_and_escapes_stored_text():
    info = _info(8, {"vulnerable": 1, "patched": 2})
    page = report_html(info, [_info(7, {"vulnerable": 2, "patched": 1}), info], _table(),
                       "verified (signatures checked)", NOW)
    assert ("2 servers need action: 1 vulnerable, 0 unknown, 0 mitigated only, 1 with "
            "compromise indicators") in page
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>weekly</b>" not in page and "c&lt;1&gt;" in page
    assert "67% of affected servers patched (2 of 3)" in page
    assert "Snapshot chain: verified" in page and "chain-ok" in page
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert "DEMO DATA" not in page
    assert "(none)" in page  # host C's DAG-less neighbour A


def test_a_failed_chain_and_demo_data_are_said_first():
    info = _info(1, {"patched": 1})
    table = pd.DataFrame([{"host": "A", "status": "patched", "need": "", "site": "", "dag": ""}])
    page = report_html(info, [info], table, "FAILED verification (2 problems)", NOW, demo=True)
    assert "DEMO DATA" in page and "chain-bad" in page
    assert "No server needs action" in page
