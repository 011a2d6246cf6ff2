"""Plotly figure builders: pure functions of plain data, no Streamlit calls."""

from __future__ import annotations

import functools
import html
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import plotly.graph_objects as go

from compliance.models import Status
from views.labels import (
    INVESTIGATION_COLORS,
    INVESTIGATION_TREND_ORDER,
    STATUS_COLORS,
    STATUS_LABELS,
    STATUS_ORDER,
    investigation_label,
)
from views.summary import patched_share

NONE = "(none)"  # the bar of hosts without a site or DAG


TEMPLATE = "plotly_white"  # views/server.py loads it before the first page


@functools.cache
def template() -> dict[str, Any]:
    """The template as plain JSON, read once per process: a figure that names its template
    has plotly deep-copy and re-validate it (0.1-0.2 s a chart at 10,000 hosts)."""
    import plotly.io

    spec: dict[str, Any] = plotly.io.templates[TEMPLATE].to_plotly_json()
    return spec


def _figure(traces: list[dict[str, Any]], layout: dict[str, Any], title: str) -> go.Figure:
    """A figure from plain trace and layout dicts, with the shared title, margins, legend and
    template, built without plotly's per-property validation (the builders here are pure and
    their specs are checked against validated figures in tests/views/test_charts.py)."""
    legend = {"orientation": "h", "y": -0.15, **layout.pop("legend", {})}
    layout = {**layout, "title": {"text": title}, "margin": {"l": 10, "r": 10, "t": 50, "b": 10},
              "legend": legend, "template": template()}
    return go.Figure({"data": traces, "layout": layout}, _validate=False)


def status_bars(counts: Mapping[str, int]) -> go.Figure:
    """Hosts per status, one bar each in the fixed status order and colours, labelled with
    its count; the title gives the patched share of affected hosts
    (``views.summary.patched_share``, as the KPI says it). Bars carry their status value
    (``customdata``) so a click opens them (a pie's slices cannot be selected in Streamlit)."""
    statuses = [s for s in STATUS_ORDER if counts.get(s.value, 0)]
    bar = {"type": "bar", "y": [STATUS_LABELS[s] for s in statuses],
           "x": [counts[s.value] for s in statuses], "orientation": "h",
           "customdata": [[s.value] for s in statuses],
           "marker": {"color": [STATUS_COLORS[s] for s in statuses]},
           "text": [str(counts[s.value]) for s in statuses], "textposition": "auto",
           "hovertemplate": "%{y}: %{x} hosts<extra></extra>"}
    share, patched, affected = patched_share(counts)
    return _figure([bar], {"yaxis": {"autorange": "reversed"}, "showlegend": False,
                           "height": max(300, 40 * len(statuses) + 120)},
                   f"Hosts by status: {share:.0f}% patched ({patched} of {affected} affected)")


def plain(label: str) -> str:
    """An untrusted label (an AD site or DAG name) as text: plotly renders tags such as
    ``<a href>`` and ``<b>`` in labels, and shows entities as the characters they stand for."""
    return html.escape(label, quote=False)


def status_by_group(rows: Sequence[Mapping[str, Any]], group: str,
                    title: str) -> go.Figure:
    """Stacked horizontal bars: hosts per ``group`` value, split by status. Each row is one
    host, or ``hosts`` of them (``views.data.fleet_groups``)."""
    tally: Counter[tuple[str, str]] = Counter()
    for row in rows:
        tally[(row[group] or NONE, row["status"])] += int(row.get("hosts", 1))
    # "(none)" (hosts without a value) goes last, after the naturally sorted values.
    groups = sorted({g for g, _ in tally}, key=lambda g: (g == NONE, _natural(g)))
    labels = [plain(g) for g in groups]
    traces = []
    for status in STATUS_ORDER:
        values = [tally[(g, status.value)] for g in groups]
        if any(values):
            # customdata: (group value, status) of each bar, for click-through to Hosts.
            traces.append({"type": "bar", "name": STATUS_LABELS[status], "y": labels, "x": values,
                           "orientation": "h", "marker": {"color": STATUS_COLORS[status]},
                           "customdata": [[g, status.value] for g in groups]})
    return _figure(traces, {"barmode": "stack", "height": max(300, 28 * len(groups) + 120),
                            "legend": {"traceorder": "normal"},
                            "yaxis": {"autorange": "reversed"}}, title)


def status_trend(times: Sequence[datetime], counts: Sequence[Mapping[str, int]]) -> go.Figure:
    """Stacked area of status counts across snapshots, and the patched share of affected hosts
    (``views.summary.patched_share``) on a second axis."""
    traces: list[dict[str, Any]] = []
    for status in STATUS_ORDER:
        values = [c.get(status.value, 0) for c in counts]
        if any(values):
            traces.append({"type": "scatter", "name": STATUS_LABELS[status], "x": list(times),
                           "y": values, "mode": "lines+markers", "stackgroup": "status",
                           "line": {"color": STATUS_COLORS[status]}})
    layout: dict[str, Any] = {"yaxis": {"title": {"text": "hosts"}}}
    if counts:
        traces.append({"type": "scatter", "name": "Patched % of affected", "x": list(times),
                       "y": [round(patched_share(c)[0], 1) for c in counts], "mode": "lines",
                       "yaxis": "y2", "line": {"color": "#000000", "dash": "dot"}})
        layout["yaxis2"] = {"title": {"text": "% patched"}, "overlaying": "y", "side": "right",
                            "range": [0, 100], "showgrid": False}
    return _figure(traces, layout, "Status across snapshots")


def investigation_trend(times: Sequence[datetime],
                        splits: Sequence[Mapping[str, int]]) -> go.Figure:
    """Stacked area of the patched hosts of each snapshot per investigation state after the
    fix (``views.summary.investigation_split``: a state's value, or ``NOT_READ`` for a snapshot
    saved before issue 21, drawn apart and never as clean); one series per state present."""
    traces: list[dict[str, Any]] = []
    for key in INVESTIGATION_TREND_ORDER:
        values = [split.get(key, 0) for split in splits]
        if any(values):
            traces.append({"type": "scatter", "name": investigation_label(key),
                           "x": list(times), "y": values, "mode": "lines+markers",
                           "stackgroup": "investigation",
                           "line": {"color": INVESTIGATION_COLORS[key]},
                           "hovertemplate": "%{y} patched hosts<extra>%{fullData.name}</extra>"})
    return _figure(traces, {"yaxis": {"title": {"text": "patched hosts"}, "rangemode": "tozero"}},
                   "Patched servers: investigated after the fix?")


def _natural(text: str) -> tuple[object, ...]:
    """Sort 'CU9' before 'CU10'."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))


def burn_down(times: Sequence[datetime], remaining: Sequence[int],
              projected: datetime | None) -> go.Figure:
    """Non-compliant hosts per snapshot, and the line to zero at the recent rate."""
    traces: list[dict[str, Any]] = [
        {"type": "scatter", "name": "Hosts still to fix", "x": list(times), "y": list(remaining),
         "mode": "lines+markers", "line": {"color": STATUS_COLORS[Status.VULNERABLE]}}]
    if projected is not None and times:
        traces.append({"type": "scatter", "name": f"Projection: done by {projected:%Y-%m-%d}",
                       "x": [times[-1], projected], "y": [remaining[-1], 0], "mode": "lines",
                       "line": {"dash": "dash", "color": "#616161"}})
    return _figure(traces, {"yaxis": {"title": {"text": "hosts"}, "rangemode": "tozero"}},
                   "Burn-down of non-compliant hosts")
