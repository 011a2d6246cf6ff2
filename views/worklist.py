"""Worklist for admins: every host that still needs work, in maintenance waves, with what to do."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from compliance.worklist import (
    INVESTIGATION_INCOMPLETE,
    NOT_INVESTIGATED,
    PRIORITY_NAMES,
    TRIAGE_NAMES,
)
from store.export import to_csv, to_xlsx
from views import data, labels
from views.page import advisory_shown, current, snapshot_caption

ctx = current()
st.title("Worklist")
snapshot_caption(ctx)
advisory = advisory_shown(ctx)

per_wave = st.number_input("Hosts per maintenance wave", min_value=1, max_value=200, value=10,
                           key="per_wave")
table = data.worklist_table(ctx.config.store_url, ctx.snapshot,
                            ctx.snapshot.id == ctx.history[-1].id, int(per_wave), advisory)
every = len(table)
choice = st.columns(2)
show = choice[0].selectbox(
    "Show", ["all", "overdue", "soon"], key="w_due",
    format_func={"all": "Every host that needs work", "overdue": "Overdue only",
                 "soon": "Overdue or due within 7 days"}.__getitem__,
    help="Due dates of the [deadlines] policy: "
         f"{ctx.config.deadlines.policy().describe()}.")
order = choice[1].selectbox("Order", ["waves", "due"], key="w_order",
                            format_func={"waves": "Maintenance waves",
                                         "due": "Due date, earliest first"}.__getitem__)
if show == "overdue":
    table = table[table["overdue"]]
elif show == "soon":
    horizon = pd.Timestamp(data.deadline_moment(ctx.snapshot, ctx.snapshot.id
                                                == ctx.history[-1].id)) + pd.Timedelta(days=7)
    table = table[table["due"].notna() & (table["due"] <= horizon)]
if order == "due":
    table = table.sort_values("due", kind="stable", na_position="last")
hosts = len(table)
# Patched servers to check for a back door are listed last, apart from the patch and compromise
# work the Overview's headline counts (its figure is this page's "need work").
investigate = int(table["priority"].isin([NOT_INVESTIGATED, INVESTIGATION_INCOMPLETE]).sum())
work = hosts - investigate
waves = int(table["wave"].max()) if table["wave"].notna().any() else 0
overdue = int(table["overdue"].sum())
st.markdown(
    f"**{work}** host{'s' if work != 1 else ''} "
    + f"need work, in **{waves}** wave{'s' if waves != 1 else ''}"
    + (f", **{overdue} overdue**" if overdue else "")
    + (f", and **{investigate}** patched server{'s' if investigate != 1 else ''} to check for "
       "a back door" if investigate else "")
    + (f" ({hosts} of {every} rows shown)" if hosts != every else "") + ". "
    + ("Servers with compromise indicators (a CVE check hit, a malware detection or a possible "
       "web shell) come first, whatever their wave: isolating one and running MSERT needs no "
       "maintenance window. Then the patch work in its waves: " if advisory is None else "")
    + "internet-facing servers (Client Access, Cafe, Frontend Transport, Edge) first, then "
    "urgency: compromise indicators, vulnerable, unknown (unreachable, stale or unjudgeable), "
    "mitigated only"
    + (". Last, without a wave (a scan needs no window), patched servers nobody is recorded to "
       "have investigated for a back door, then those whose investigation is incomplete"
       if advisory is None else "")
    + ". A wave never takes two members of one DAG, so no DAG loses all its members at once."
)
NAMES = TRIAGE_NAMES if advisory is None else PRIORITY_NAMES
stem = (f"proxylogon-worklist-snapshot{ctx.snapshot.id}-{ctx.snapshot.taken_at:%Y%m%d}"
        + (f"-{advisory}" if advisory is not None else ""))
about = [("snapshot", str(ctx.snapshot.id)), ("taken at", ctx.snapshot.taken_at.isoformat()),
         ("snapshot digest", ctx.snapshot.hash), ("catalogue", ctx.snapshot.catalog_version),
         ("advisory", f"{ctx.snapshot.advisory_id} v{ctx.snapshot.advisory_version}"),
         *([("judged by", data.advisory_label(advisory))] if advisory is not None else [])]
left, right = st.columns(2)
# Both files are built on click only (each takes ~0.2-0.3 s at 10,000 rows: bench/excel.py).
left.download_button("Download worklist (CSV)", file_name=f"{stem}.csv",
                     data=data.audited(ctx.config, ctx.snapshot.id,
                                       f"worklist CSV ({hosts} hosts)",
                                       lambda: to_csv(data.worklist_rows(table))),
                     mime="text/csv", icon=":material/download:", key="csv", on_click="ignore")
demo = data.is_demo(ctx.config.store_url)
right.download_button("Download worklist (Excel)", file_name=f"{stem}.xlsx",
                      data=data.audited(ctx.config, ctx.snapshot.id,
                                        f"worklist Excel ({hosts} hosts)",
                                        lambda: to_xlsx(data.worklist_rows(table), about,
                                                        demo=demo)),
                      icon=":material/table:", key="xlsx", on_click="ignore",
                      mime="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
with st.expander("What priority and waves mean"):
    st.markdown("\n".join(f"- **Priority {rank}**: {name}" for rank, name in NAMES.items())
                + "\n\nA **wave** is one maintenance window: at most the number of servers "
                "chosen above, internet-facing ones first, and never two members of one DAG. "
                "The Excel file's Legend sheet says the same.")
ORDER = ("wave", "priority", "host", "status", "investigation", "due", "overdue", "accepted",
         "action", "investigation_action", "owner", "reason", "flags", "site", "dag", "product",
         "cu", "build", "deadline_rule")
st.dataframe(
    labels.compact(labels.status_chips(table)),  # each repeated text sent once
    hide_index=True,
    column_order=ORDER,
    column_config={
        **{name: st.column_config.TextColumn(labels.COLUMN_LABELS[name]) for name in ORDER},
        "wave": st.column_config.NumberColumn(labels.COLUMN_LABELS["wave"], pinned=True),
        "priority": st.column_config.NumberColumn(
            labels.COLUMN_LABELS["priority"], pinned=True,
            help="; ".join(f"{rank}: {name}" for rank, name in NAMES.items())),
        "investigation": st.column_config.SelectboxColumn(
            labels.COLUMN_LABELS["investigation"], options=list(labels.INVESTIGATION_LABELS),
            format_func=labels.investigation_label,
            help="The investigation after the fix (a full malware scan, logs covering the "
                 "exposure window): beside the status, never changing it"),
        "investigation_action": st.column_config.TextColumn(
            labels.COLUMN_LABELS["investigation_action"], width="large"),
        "host": st.column_config.TextColumn(labels.COLUMN_LABELS["host"], pinned=True),
        "status": labels.status_column(),
        **labels.deadline_columns(),
        "action": st.column_config.TextColumn(labels.COLUMN_LABELS["action"], width="large"),
    },
)
