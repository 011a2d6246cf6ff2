"""Overview for managers: where the fleet stands, and how it got there."""

from __future__ import annotations

import streamlit as st

from compliance.models import Status
from views import charts, data
from views.page import current, snapshot_caption
from views.summary import kpis

ctx = current()
st.title("ProxyLogon exposure: overview")
snapshot_caption(ctx)

now = kpis(ctx.snapshot.counts)
before = kpis(ctx.previous.counts) if ctx.previous else None
columns = st.columns(5)
for column, kpi in zip(columns, now, strict=True):
    delta = None
    if before is not None:
        previous = next(k for k in before if k.key == kpi.key)
        delta = kpi.delta_text(previous)
    column.metric(kpi.label, kpi.display, delta=delta, delta_color=kpi.delta_color,
                  help=kpi.help, border=True)

table = data.host_table(ctx.config.store_url, ctx.snapshot.id)
rows = table.to_dict("records")
for row in rows:
    row["product_cu"] = f"{row['product'] or '?'} {row['cu'] or ''}".strip()

left, right = st.columns([2, 3])
left.plotly_chart(charts.status_donut(ctx.snapshot.counts), width="stretch")
right.plotly_chart(charts.status_by_group(rows, "product_cu", "Status by product and CU"),
                   width="stretch")
st.plotly_chart(charts.status_trend([s.taken_at for s in ctx.history],
                                    [s.counts for s in ctx.history]), width="stretch")

not_compliant = ctx.snapshot.host_count - sum(
    ctx.snapshot.counts.get(s.value, 0) for s in Status if s.compliant
)
st.markdown(f"**{not_compliant}** hosts still need work: see the **Worklist** page for what "
            "to do on each.")
