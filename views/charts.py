"""Plotly figure builders: pure functions of plain data, no Streamlit calls."""

from __future__ import annotations

import html
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import plotly.graph_objects as go

from compliance.models import Status
from views.labels import STATUS_COLORS, STATUS_LABELS, STATUS_ORDER
from views.summary import patched_share

NONE = "(none)"  # the bar of hosts without a site or DAG


TEMPLATE = "plotly_white"  # views/server.py loads it before the first page


def _layout(fig: go.Figure, title: str) -> go.Figure:
    fig.update_layout(title=title, margin={"l": 10, "r": 10, "t": 50, "b": 10},
                      legend={"orientation": "h", "y": -0.15}, template=TEMPLATE)
    return fig


def status_bars(counts: Mapping[str, int]) -> go.Figure:
    """Hosts per status, one bar each in the fixed status order and colours, labelled with
    its count; the title gives the patched share of affected hosts
    (``views.summary.patched_share``, as the KPI says it). Bars carry their status value
    (``customdata``) so a click opens them (a pie's slices cannot be selected in Streamlit)."""
    statuses = [s for s in STATUS_ORDER if counts.get(s.value, 0)]
    fig = go.Figure(go.Bar(
        y=[STATUS_LABELS[s] for s in statuses], x=[counts[s.value] for s in statuses],
        orientation="h", customdata=[[s.value] for s in statuses],
        marker_color=[STATUS_COLORS[s] for s in statuses], text=[counts[s.value] for s in statuses],
        textposition="auto", hovertemplate="%{y}: %{x} hosts<extra></extra>",
    ))
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(height=max(300, 40 * len(statuses) + 120), showlegend=False)
    share, patched, affected = patched_share(counts)
    return _layout(fig, f"Hosts by status: {share:.0f}% patched ({patched} of {affected} "
                        "affected)")


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
    fig = go.Figure()
    for status in STATUS_ORDER:
        values = [tally[(g, status.value)] for g in groups]
        if any(values):
            # customdata: (group value, status) of each bar, for click-through to Hosts.
            fig.add_trace(go.Bar(name=STATUS_LABELS[status], y=[plain(g) for g in groups], x=values,
                                 orientation="h", marker_color=STATUS_COLORS[status],
                                 customdata=[[g, status.value] for g in groups]))
    fig.update_layout(barmode="stack", height=max(300, 28 * len(groups) + 120),
                      legend_traceorder="normal")
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, title)


def status_trend(times: Sequence[datetime], counts: Sequence[Mapping[str, int]]) -> go.Figure:
    """Stacked area of status counts across snapshots, and the patched share of affected hosts
    (``views.summary.patched_share``) on a second axis."""
    fig = go.Figure()
    for status in STATUS_ORDER:
        values = [c.get(status.value, 0) for c in counts]
        if any(values):
            fig.add_trace(go.Scatter(
                name=STATUS_LABELS[status], x=list(times), y=values, mode="lines+markers",
                stackgroup="status", line={"color": STATUS_COLORS[status]},
            ))
    if counts:
        fig.add_trace(go.Scatter(
            name="Patched % of affected", x=list(times),
            y=[round(patched_share(c)[0], 1) for c in counts], mode="lines",
            yaxis="y2", line={"color": "#000000", "dash": "dot"}))
        fig.update_layout(yaxis2={"title": "% patched", "overlaying": "y", "side": "right",
                                  "range": [0, 100], "showgrid": False})
    fig.update_yaxes(title="hosts", selector={"overlaying": None})
    return _layout(fig, "Status across snapshots")


def _natural(text: str) -> tuple[object, ...]:
    """Sort 'CU9' before 'CU10'."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))


def burn_down(times: Sequence[datetime], remaining: Sequence[int],
              projected: datetime | None) -> go.Figure:
    """Non-compliant hosts per snapshot, and the line to zero at the recent rate."""
    fig = go.Figure(go.Scatter(name="Hosts still to fix", x=list(times), y=list(remaining),
                               mode="lines+markers", line={"color": STATUS_COLORS[Status.VULNERABLE]}))
    if projected is not None and times:
        fig.add_trace(go.Scatter(name=f"Projection: done by {projected:%Y-%m-%d}",
                                 x=[times[-1], projected], y=[remaining[-1], 0], mode="lines",
                                 line={"dash": "dash", "color": "#616161"}))
    fig.update_yaxes(title="hosts", rangemode="tozero")
    return _layout(fig, "Burn-down of non-compliant hosts")
