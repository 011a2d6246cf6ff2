"""The Overview's investigation trend (issue 21): the patched servers of each snapshot shown
per investigation state, read in one grouped query cached under the snapshot ids; a snapshot
saved before issue 21 is shown as not read, never as clean. On the demo fleet: the chart is
on the Overview and shows every state."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import plotly.graph_objects as go
from sqlalchemy import event

from compliance.investigation import InvestigationState
from store import SnapshotInfo
from views import data
from views.charts import investigation_trend
from views.labels import INVESTIGATION_LABELS, NOT_READ, NOT_READ_LABEL
from views.summary import investigation_split

T0 = datetime(2021, 3, 1, tzinfo=UTC)
State = InvestigationState


def test_the_split_counts_one_status_and_never_reads_a_missing_state_as_clean() -> None:
    counts = {("patched", "clean"): 2, ("patched", None): 3, ("patched", "fine"): 1,
              ("patched", "incomplete"): 4, ("vulnerable", "not_investigated"): 5,
              ("mitigated", "indicators_found"): 6}
    assert investigation_split(counts) == {"clean": 2, NOT_READ: 3, "not_investigated": 1,
                                           "incomplete": 4}
    assert investigation_split(counts, "mitigated") == {"indicators_found": 6}
    assert investigation_split({}) == {}


def test_the_chart_stacks_the_states_and_shows_not_read_apart() -> None:
    splits = [{NOT_READ: 5}, {"clean": 1, "incomplete": 1, "not_investigated": 2,
                              "indicators_found": 1}]
    fig = investigation_trend([T0, T0 + timedelta(weeks=1)], splits)
    names = [trace.name for trace in fig.data]
    assert names == [INVESTIGATION_LABELS[State.CLEAN], INVESTIGATION_LABELS[State.INCOMPLETE],
                     INVESTIGATION_LABELS[State.NOT_INVESTIGATED],
                     INVESTIGATION_LABELS[State.INDICATORS_FOUND], NOT_READ_LABEL]
    by_name = {trace.name: list(trace.y) for trace in fig.data}
    assert by_name[INVESTIGATION_LABELS[State.CLEAN]] == [0, 1]
    assert by_name[NOT_READ_LABEL] == [5, 0]
    assert all(trace.stackgroup == "investigation" for trace in fig.data)
    assert "Patched servers" in fig.layout.title.text
    # Built without plotly's validation, as the other charts: what validating gives back.
    spec = fig.to_plotly_json()
    assert json.loads(go.Figure(spec).to_json()) == json.loads(fig.to_json())
    assert investigation_trend([], []).data == ()


def _info(snapshot_id: int, format_: int, counts: dict[str, int],
          pruned: bool = False) -> SnapshotInfo:
    return SnapshotInfo(id=snapshot_id, taken_at=T0, source="collect", label="", tool_version="t",
                        catalog_version="c", advisory_id="a", advisory_version="1",
                        host_count=sum(counts.values()), counts=counts, format=format_,
                        pruned=pruned)


def test_the_trend_is_read_once_for_the_snapshots_that_hold_states(demo_app) -> None:
    _at, store = demo_app
    url = str(store.engine.url)
    data.invalidate()
    history = store.history()
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    engine = data.engine(url)
    # Before issue 21 (format 6), format 1 and pruned: their header's counts, all not read.
    older = [_info(901, 6, {"patched": 4, "vulnerable": 1}), _info(902, 1, {"patched": 2}),
             _info(903, 7, {"patched": 3}, pruned=True)]
    shown = [*older, *history]
    event.listen(engine, "before_cursor_execute", seen)
    try:
        trend = data.investigation_trend(url, shown)
        again = data.investigation_trend(url, shown)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert len([s for s in statements if "GROUP BY" in s.upper()]) == 1  # then cached
    assert again == trend
    assert trend[901] == {("patched", None): 4, ("vulnerable", None): 1}
    assert trend[902] == {("patched", None): 2} and trend[903] == {("patched", None): 3}
    latest = history[-1]
    stored = store.investigation_trend([latest.id])[latest.id]
    assert trend[latest.id] == stored
    assert sum(stored.values()) == latest.host_count
    assert all(state is not None for _status, state in stored)
    # Every state the demo gives a patched server is in its latest snapshot's trend point.
    assert set(investigation_split(stored)) == {
        "not_investigated", "incomplete", "clean", "indicators_found"}


def test_the_overview_shows_the_trend_of_the_patched_servers_states(demo_app) -> None:
    at, store = demo_app
    charts = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    found = [c for c in charts
             if "investigat" in c["layout"].get("title", {}).get("text", "").lower()]
    assert len(found) == 1
    traces = {trace["name"]: trace["y"] for trace in found[0]["data"]}
    history = store.history()
    latest = history[-1]
    stored = investigation_split(store.investigation_trend([latest.id])[latest.id])
    for state in (State.CLEAN, State.INCOMPLETE, State.NOT_INVESTIGATED, State.INDICATORS_FOUND):
        label = INVESTIGATION_LABELS[state]
        assert len(traces[label]) == len(history)
        assert traces[label][-1] == stored[state.value] > 0
    assert NOT_READ_LABEL not in traces  # every demo snapshot holds states

