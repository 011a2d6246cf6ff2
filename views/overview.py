"""Overview for managers: where the fleet stands, how it got there, when it will be done."""

from __future__ import annotations

import streamlit as st

from compliance.models import Flag, Status
from store import SnapshotInfo
from views import charts, data
from views.page import current, snapshot_caption
from views.summary import Kpi, kpis, projected_completion

ctx = current()
url = ctx.config.store_url
st.title("ProxyLogon exposure: overview")
snapshot_caption(ctx)
if ctx.snapshot.host_count == 0:
    st.info("The fleet is empty: every server was retired, or no run has found one yet. Run a "
            "collection (`python -m collectors collect`, see the README) or import probe files "
            "on the Collection page.")
    st.stop()


def _figures(info: SnapshotInfo) -> list[Kpi]:
    flags = data.flag_counts(url, info.id)
    return kpis(info.counts, info.coverage, flags[Flag.INDICATORS_FOUND.value],
                flags[Flag.OUT_OF_SUPPORT.value])


now = _figures(ctx.snapshot)
before = _figures(ctx.previous) if ctx.previous else None
columns = st.columns(len(now))
for column, kpi in zip(columns, now, strict=True):
    delta = None
    if before is not None:
        previous = next(k for k in before if k.key == kpi.key)
        delta = kpi.delta_text(previous)
    column.metric(kpi.label, kpi.display, delta=delta, delta_color=kpi.delta_color,
                  help=kpi.help, border=True)

table = data.host_table(url, ctx.snapshot.id)
rows = table.to_dict("records")
for row in rows:
    row["product_cu"] = f"{row['product'] or '?'} {row['cu'] or ''}".strip()

left, right = st.columns([2, 3])
left.plotly_chart(charts.status_donut(ctx.snapshot.counts), width="stretch")
right.plotly_chart(charts.status_by_group(rows, "product_cu", "Status by product and CU"),
                   width="stretch")
left, right = st.columns(2)
left.plotly_chart(charts.status_by_group(rows, "site", "Status by AD site"), width="stretch")
right.plotly_chart(charts.status_by_group(rows, "dag", "Status by DAG"), width="stretch")

times = [s.taken_at for s in ctx.history]
remaining = [s.host_count - sum(s.counts.get(x.value, 0) for x in Status if x.compliant)
             for s in ctx.history]
projected = projected_completion(times, remaining)
left, right = st.columns(2)
left.plotly_chart(charts.burn_down(times, remaining, projected), width="stretch")
right.plotly_chart(charts.status_trend(times, [s.counts for s in ctx.history]), width="stretch")
if remaining and remaining[-1] == 0:
    st.success("Every affected host is patched.")
elif projected is not None:
    st.markdown(f"**{remaining[-1]}** hosts still need work. At the rate of the last snapshots "
                f"the fleet is done around **{projected:%Y-%m-%d}**: see the **Worklist**.")
else:
    st.warning(f"**{remaining[-1] if remaining else 0}** hosts still need work and the recent "
               "snapshots show no progress: no completion date can be projected.")
