"""Overview for managers: one headline first, then where the fleet stands and how it got there.

The headline is the worklist's count (compliance/worklist.py ``priority``), so the Overview,
the Worklist and its downloads give the same number; each part links to the Hosts page
filtered to it. Clicking a bar opens the Hosts page filtered to that group and status.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd
import streamlit as st

from compliance.models import Flag, Status
from compliance.worklist import PRIORITY_NAMES
from store import SnapshotInfo
from views import charts, data, integrity, labels
from views.markdown import literal
from views.page import OUTSIDE_OFF, advisory_shown, current, outside_view, snapshot_caption
from views.report import report_html
from views.summary import Kpi, investigation_split, kpis, projected_completion

HOSTS = "views/hosts.py"

ctx = current()
url = ctx.config.store_url
st.title("ProxyLogon exposure: overview")
snapshot_caption(ctx)
advisory = advisory_shown(ctx)
if ctx.snapshot.host_count == 0:
    st.info("The fleet is empty: every server was retired, or no run has found one yet. Run a "
            "collection (`python -m collectors collect`, see the README) or import probe files "
            "on the Collection page.")
    st.stop()

groups = data.fleet_groups(url, ctx.snapshot.id, advisory)  # a few hundred rows, not one per host
needs = groups.groupby("need")["hosts"].sum()
waiting = int(groups.loc[groups["need"] != "", "hosts"].sum())
if waiting == 0:
    st.success(f"**No server needs action.** All {int(groups['hosts'].sum())} servers are "
               "patched or not affected, and none shows compromise indicators.")
else:
    st.subheader(f"{waiting} server{'s' if waiting != 1 else ''} need action",
                 help="The Worklist's count of work: every server not patched (or not "
                      "affected), and every server with compromise indicators, patched or "
                      "not. Each server is counted once, under its most urgent need. The "
                      "Worklist and its downloads also list, last, the patched servers still "
                      "to check for a back door.")
    # Vulnerable, unknown, mitigated only, then compromise indicators (each server once).
    order = [1, 2, 3, 0]
    parts = [(PRIORITY_NAMES[p], int(needs.get(PRIORITY_NAMES[p], 0))) for p in order]
    latest = ctx.snapshot.id == ctx.history[-1].id
    accepted = len(data.accepted(url, ctx.snapshot, latest))
    columns = st.columns(len(parts))
    for column, (name, count) in zip(columns, parts, strict=True):
        with column:
            label = f"**{count}** {'with ' if name == PRIORITY_NAMES[0] else ''}{name}"
            st.page_link(HOSTS, label=label, query_params={"need": name},
                         icon=":material/filter_alt:", disabled=count == 0)
    # Deadlines ([deadlines] policy): what is late now, what is next, and the oldest open item.
    moment = data.deadline_moment(ctx.snapshot, latest)
    due = data.deadlines(url, ctx.snapshot.id)
    now_ = pd.Timestamp(moment)
    late = int((due["due"] <= now_).sum())
    soon = int(((due["due"] > now_) & (due["due"] <= now_ + pd.Timedelta(days=7))).sum())
    if advisory is not None:
        st.caption("Deadlines, acceptances and the trends below follow the March 2021 verdicts.")
    figures = st.columns(3)
    figures[0].metric("Overdue", late, border=True,
                      help="Servers past their due date under the deadline policy: "
                           f"{ctx.config.deadlines.policy().describe()}. "
                           + ("Now." if latest else "At this snapshot's time."))
    figures[1].metric("Due within 7 days", soon, border=True)
    figures[2].metric("Under a risk acceptance", accepted, border=True,
                      help="Servers needing action whose gap an approver accepted for a while "
                           "(counted above too: the status stays what the evidence says; they "
                           "come last on the Worklist).")
    links = st.columns(3)
    links[0].page_link(HOSTS, label="Overdue servers", query_params={"due": "overdue"},
                       icon=":material/event_busy:", disabled=late == 0)
    links[1].page_link(HOSTS, label="Due within 7 days", query_params={"due": "soon"},
                       icon=":material/event_upcoming:", disabled=soon == 0)
    opened = due.dropna(subset=["open_since"])
    if len(opened):
        oldest = opened.sort_values(["open_since", "due"], kind="stable").iloc[0]
        st.caption(f"Oldest open item: **{literal(oldest['host'])}**, needing work since "
                   f"{oldest['open_since']:%Y-%m-%d %H:%M} UTC"
                   + (" or earlier (older snapshots were pruned)" if oldest["pruned_before"]
                      else "")
                   + f", due {oldest['due']:%Y-%m-%d %H:%M} UTC.")


def _report() -> bytes:
    state = integrity.chain_state(url, ctx.config.signing_key, wait=0)
    latest = ctx.snapshot.id == ctx.history[-1].id
    return report_html(ctx.snapshot, ctx.history, data.host_table(url, ctx.snapshot.id),
                       state.words, datetime.now(UTC), demo=data.is_demo(url),
                       deadlines=data.deadlines(url, ctx.snapshot.id),
                       policy=ctx.config.deadlines.policy().describe(),
                       moment=data.deadline_moment(ctx.snapshot, latest),
                       investigations=data.investigation_trend(url, ctx.history),
                       triage=data.catalog().advisory.triage).encode()


st.download_button("One-page report (HTML, prints on A4)",
                   data=data.audited(ctx.config, ctx.snapshot.id, "one-page report", _report),
                   file_name=f"proxylogon-report-snapshot{ctx.snapshot.id}-"
                             f"{ctx.snapshot.taken_at:%Y%m%d}.html",
                   mime="text/html", icon=":material/print:", key="report", on_click="ignore")


def _counts(info: SnapshotInfo) -> dict[str, int]:
    """Hosts per status: the snapshot's recorded counts, or as the chosen advisory judged."""
    if advisory is None:
        return dict(info.counts)
    chosen = data.fleet_groups(url, info.id, advisory)
    return {str(k): int(v) for k, v in chosen.groupby("status")["hosts"].sum().items()}


def _figures(info: SnapshotInfo) -> list[Kpi]:
    flags = data.flag_counts(url, info.id)
    # Compromise indicators: a CVE check hit or an investigation that found a detection or a
    # possible web shell (issue 21), the hosts the headline counts "with compromise indicators".
    return kpis(_counts(info), info.coverage, data.compromised_count(url, info.id, advisory),
                flags[Flag.OUT_OF_SUPPORT.value],
                data.advisory_label(advisory) if advisory is not None else "")


now = _figures(ctx.snapshot)
before = _figures(ctx.previous) if ctx.previous else None
# Two rows of four, so every label is read whole at 1440 px.
columns = [*st.columns(4), *st.columns(4)]
for column, kpi in zip(columns, now, strict=True):
    delta = None
    if before is not None:
        previous = next(k for k in before if k.key == kpi.key)
        delta = kpi.delta_text(previous)
    column.metric(kpi.label, kpi.display, delta=delta, delta_color=kpi.delta_color,
                  help=kpi.help, border=True)

# Patched is not clean (issue 21): has anyone looked for a back door after the fix? About the
# March 2021 advisory (the one whose triage the snapshot judged).
if advisory is None:
    probed = data.investigation_counts(url, ctx.snapshot.id)
    st.markdown("**Patched is not clean: has anyone looked for a back door?**",
                help="The update does not remove a web shell planted before it (exploitation "
                     "began in January 2021). Each server's investigation after the fix: a full "
                     "Safety Scanner scan after it, logs reaching back to the start of the "
                     "exposure window. Beside the status, never changing it. Servers with "
                     "indicators found are counted once, above (\"Indicators found\").")
    tallies = st.columns(3)
    for column, (key, title, tip) in zip(tallies, (
            ("patched_not_investigated", "Patched, not investigated",
             "Patched servers with no full malware scan recorded after the fix"),
            ("incomplete", "Investigation incomplete",
             "Scanned after the fix, but the evidence cannot cover the exposure window"),
            ("clean", "Investigated, clean",
             "A full scan after the fix found nothing and the logs cover the window")),
            strict=True):
        column.metric(title, probed[key], border=True, help=tip)
    triage_links = st.columns(2)
    triage_links[0].page_link(HOSTS, label="Patched servers nobody has investigated",
                       query_params={"status": Status.PATCHED.value,
                                     "investigation": "not_investigated"},
                       icon=":material/filter_alt:",
                       disabled=probed["patched_not_investigated"] == 0)
    triage_links[1].page_link(HOSTS, label="Servers with compromise indicators",
                       query_params={"need": PRIORITY_NAMES[0]},
                       icon=":material/filter_alt:",
                       disabled=data.compromised_count(url, ctx.snapshot.id) == 0)

# The outside view (issue 18): what OWA/ECP disclose without credentials, against the inside.
seen = outside_view(url, ctx.snapshot.id)
if seen is None:
    st.caption(OUTSIDE_OFF)
else:
    older = data.flag_counts(url, ctx.snapshot.id)[Flag.OUTSIDE_OLDER_THAN_INSIDE.value]
    findings = seen.namespaces
    spaces = findings["namespace"].str.casefold().nunique()
    line = (f"Outside view: {older} host{'s' if older != 1 else ''} and {spaces} "
            f"namespace{'s' if spaces != 1 else ''} disagree with the inside view")
    # "Nothing disagrees" only when something was compared: an endpoint that failed, or whose
    # certificate was not trusted, compares nothing (review finding: all failed read as green).
    endpoints = seen.endpoints
    compared, failed, untrusted = data.endpoint_coverage(endpoints)
    unread = (f" {failed + untrusted} of {len(endpoints)} endpoints compared nothing "
              f"({failed} failed, {untrusted} with an untrusted certificate): see Collection."
              if failed or untrusted else "")
    if older or spaces:
        st.warning(f"**{line}.**{unread}", icon=":material/travel_explore:")
    elif compared == 0:
        st.warning(f"**Outside view: nothing could be compared.**{unread}",
                   icon=":material/travel_explore:")
    else:
        (st.info if unread else st.success)(f"**{line}.**{unread}",
                                            icon=":material/travel_explore:")
    if older:
        st.page_link(HOSTS, label=f"Hosts whose OWA/ECP serve an older build ({older})",
                     query_params={"flag": Flag.OUTSIDE_OLDER_THAN_INSIDE.value},
                     icon=":material/filter_alt:")
    if len(findings):
        # Names, builds and actions come from the network and AD: shown in cells, as text.
        st.dataframe(findings[["namespace", "finding", "builds", "hosts", "action"]],
                     hide_index=True, key="outside_namespaces", column_config={
                         name: st.column_config.TextColumn(labels.COLUMN_LABELS[name],
                                                           width="large" if name == "action"
                                                           else None)
                         for name in ("namespace", "finding", "builds", "hosts", "action")})

rows = groups[["product", "cu", "site", "dag", "status", "hosts"]].to_dict("records")
for row in rows:
    row["product_cu"] = f"{row['product'] or '?'} {row['cu'] or ''}".strip()


def _clicked(event: Any) -> list[dict[str, Any]]:
    """The points a click or box selection chose on a chart (empty without one)."""
    selection = getattr(event, "selection", None) or {}
    return list(selection.get("points", [])) if hasattr(selection, "get") else []


def _open_hosts(points: list[dict[str, Any]], column: str | None) -> None:
    """Open the Hosts page filtered to the first chosen bar: its group and its status."""
    for point in points:
        custom = point.get("customdata")
        if isinstance(custom, list | tuple) and len(custom) == 2:
            group, status = str(custom[0]), str(custom[1])
            query = {"status": status}
            value = "" if group == charts.NONE else group
            if column == "product_cu":  # "2016 CU19"; "?" where the product is not known
                product, _, cu = value.partition(" ")
                query.update(product="" if product == "?" else product, cu=cu)
            elif column is not None:
                query[column] = value
            st.switch_page(HOSTS, query_params=query)
        elif isinstance(custom, list | tuple) and len(custom) == 1:
            st.switch_page(HOSTS, query_params={"status": str(custom[0])})


left, right = st.columns([2, 3])
with left:
    by_status = st.plotly_chart(charts.status_bars(_counts(ctx.snapshot)), width="stretch",
                                on_select="rerun", selection_mode="points", key="chart_status")
    _open_hosts(_clicked(by_status), None)
with right:
    by_cu = st.plotly_chart(charts.status_by_group(rows, "product_cu", "Status by product and CU"),
                            width="stretch", on_select="rerun", selection_mode="points",
                            key="chart_cu")
    _open_hosts(_clicked(by_cu), "product_cu")
left, right = st.columns(2)
with left:
    by_site = st.plotly_chart(charts.status_by_group(rows, "site", "Status by AD site"),
                              width="stretch", on_select="rerun", selection_mode="points",
                              key="chart_site")
    _open_hosts(_clicked(by_site), "site")
with right:
    by_dag = st.plotly_chart(charts.status_by_group(rows, "dag", "Status by DAG"),
                             width="stretch", on_select="rerun", selection_mode="points",
                             key="chart_dag")
    _open_hosts(_clicked(by_dag), "dag")
st.caption("Click a bar to open its servers on the Hosts page.")

times = [s.taken_at for s in ctx.history]
remaining = [s.host_count - sum(s.counts.get(x.value, 0) for x in Status if x.compliant)
             for s in ctx.history]
projected = projected_completion(times, remaining)
left, right = st.columns(2)
left.plotly_chart(charts.burn_down(times, remaining, projected), width="stretch")
right.plotly_chart(charts.status_trend(times, [s.counts for s in ctx.history]), width="stretch")
if advisory is not None:
    st.caption("The burn-down and the trend follow the March 2021 verdicts.")
elif remaining and remaining[-1] == 0:
    st.success("Every affected host is patched.")
elif projected is not None:
    st.markdown(f"At the rate of the last snapshots the fleet is patched around "
                f"**{projected:%Y-%m-%d}** (the burn-down counts servers not patched; compromise "
                "indicators are not in it).")
else:
    st.warning("The recent snapshots show no progress in patching: no completion date can be "
               "projected.")

# Patched is not clean (issue 21): the patched servers' investigation after the fix in each
# snapshot shown, counted in one grouped query over them (cached under their ids). A snapshot
# saved before issue 21 holds no state: shown as not read, never as clean.
investigated = data.investigation_trend(url, ctx.history)
left, right = st.columns(2)
left.plotly_chart(charts.investigation_trend(
    times, [investigation_split(investigated[s.id]) for s in ctx.history]), width="stretch",
    key="chart_investigation")
triage = data.catalog().advisory.triage
right.markdown("**Patched is not clean.** Each snapshot's patched servers by their "
               "investigation after the fix, for the March 2021 advisory: not investigated (no "
               "full malware scan recorded after the fix), incomplete (the evidence cannot cover "
               "the exposure window), clean, or with indicators found. Snapshots saved before "
               "investigations were recorded show as not read, never as clean.")
if triage is not None:
    right.caption(f"{literal(triage.directive)}: a full scan ({literal(triage.scan_command)}) "
                  f"after the fix, due by {triage.first_scan_by:%Y-%m-%d %H:%M} UTC or "
                  f"{triage.first_scan_within_days} days after a later fix, then "
                  f"{triage.followup_scans} scans, one every {triage.followup_interval_days} "
                  "days. Each host's steps are on the Hosts page.")
