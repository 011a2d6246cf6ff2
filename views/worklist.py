"""Worklist for admins: every host that still needs work, and exactly what to do next."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from store.export import WORKLIST_COLUMNS, to_csv, worklist
from views import data
from views.page import current, snapshot_caption

ctx = current()
st.title("Worklist")
snapshot_caption(ctx)

rows = worklist(data.assessments(ctx.config.store_url, ctx.snapshot.id), ctx.snapshot.id,
                ctx.snapshot.taken_at.isoformat())
st.markdown(
    f"**{len(rows)}** hosts need work, most urgent first: compromise indicators, then "
    "vulnerable, then unknown (unreachable, stale or unjudgeable), then mitigated only."
)
st.download_button(
    "Download worklist (CSV)",
    data=to_csv(rows),
    file_name=f"proxylogon-worklist-snapshot{ctx.snapshot.id}-"
              f"{ctx.snapshot.taken_at:%Y%m%d}.csv",
    mime="text/csv",
    icon=":material/download:",
)
st.dataframe(
    pd.DataFrame(rows, columns=list(WORKLIST_COLUMNS)),
    hide_index=True,
    column_order=("priority", "host", "status", "product", "cu", "build", "action", "reason",
                  "flags", "site", "dag"),
    column_config={"action": st.column_config.TextColumn("next action", width="large")},
)
