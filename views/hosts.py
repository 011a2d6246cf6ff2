"""Hosts for admins: every server, filterable, with the evidence behind its verdict."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from compliance.acceptance import ACCEPTABLE, MAX_TEXT, AcceptanceError
from compliance.models import Flag
from compliance.summary import ALL, shown_action
from compliance.verdicts import all_verdicts, verdict_for
from settings import Role
from store import StoreError
from views import data, labels
from views.investigation import investigation_timeline
from views.markdown import literal
from views.page import (
    OUTSIDE_OFF,
    advisory_shown,
    current,
    observed_by,
    outside_view,
    snapshot_caption,
)

ctx = current()
st.title("Hosts")
snapshot_caption(ctx)
advisory = advisory_shown(ctx)

url = ctx.config.store_url
table = data.host_table(url, ctx.snapshot.id, advisory)
# Risk acceptances in force stand beside the status; they never change it. They accept a gap
# of the March 2021 verdicts: under another advisory they are neither shown nor offered.
badges = (data.accepted(url, ctx.snapshot, ctx.snapshot.id == ctx.history[-1].id)
          if advisory is None else {})
table = table.assign(accepted=[badges.get(host.casefold(), "") for host in table["host"].tolist()]
                     if badges else "")
latest = ctx.snapshot.id == ctx.history[-1].id
# Due dates under the [deadlines] policy; overdue now, or at an earlier snapshot's own time.
moment = data.deadline_moment(ctx.snapshot, latest)
table = data.with_deadlines(table, url, ctx.snapshot.id, moment)
SOON = pd.Timedelta(days=7)
DUE_CHOICES = {"any": "Any", "overdue": "Overdue", "soon": "Due within 7 days",
               "open": "Has a deadline"}
NONE = "(none)"  # the option for hosts without a site or DAG, as the charts name them
FILTERS = ("f_status", "f_need", "f_product", "f_cu", "f_site", "f_dag", "f_flags", "f_roles",
           "f_search", "f_due", "f_investigation")


def _options(column: str) -> list[str]:
    values = sorted({value for value in table[column].unique() if value}
                    | set(st.session_state.get("hosts_link_extra", {}).get(column, ())))
    if column in ("product", "cu", "site", "dag") and (table[column] == "").any() \
            and NONE not in values:
        values.append(NONE)
    return values


def _listed(column: str) -> list[str]:
    """The options of a column whose cells list several values ("a, b")."""
    return sorted({value for cell in table[column].unique() for value in cell.split(", ")
                   if value})


def _from_link() -> None:
    """Filters from the link that opened the page (the Overview's headline or a chart bar):
    applied once per link, so the person's own changes stay."""
    query = {key: st.query_params[key] for key in st.query_params}
    signature = tuple(sorted(query.items()))
    if not query or st.session_state.get("hosts_link") == signature:
        return
    st.session_state["hosts_link"] = signature
    # A linked value no host has (yet) stays a choice, so the list shows none rather than
    # silently every host.
    st.session_state["hosts_link_extra"] = {
        name: [value or NONE] for name, value in query.items()
        if name in ("status", "need", "product", "cu", "site", "dag", "investigation")}
    for key in FILTERS:
        st.session_state.pop(key, None)
    chosen = {"status": ("f_status", _options("status")), "need": ("f_need", _options("need")),
              "product": ("f_product", _options("product")), "cu": ("f_cu", _options("cu")),
              "site": ("f_site", _options("site")), "dag": ("f_dag", _options("dag")),
              "flag": ("f_flags", _listed("flags")),
              "investigation": ("f_investigation", _options("investigation"))}
    for name, value in query.items():
        if name in ("product", "cu", "site", "dag") and value == "":
            value = NONE
        if name in chosen and value in chosen[name][1]:
            st.session_state[chosen[name][0]] = [value]
        elif name == "host":
            st.session_state["f_search"] = value
        elif name == "due" and value in DUE_CHOICES:
            st.session_state["f_due"] = value


def _acceptance_form(names: list[str], key: str, label: str) -> None:
    """The admins' form recording one risk acceptance per host of ``names``."""
    with st.expander(label, icon=":material/rule:"):
        st.caption("The status stays what the evidence says. Each acceptance ends by itself at "
                   "its expiry, or as soon as its host's status changes, an interim mitigation "
                   "seen now disappears, or compromise indicators appear. Each is signed into "
                   "the audit log.")
        max_days = ctx.config.acceptance_max_days
        with st.form(key, clear_on_submit=True):
            reason = st.text_input("Reason", max_chars=MAX_TEXT,
                                   placeholder="interim mitigation in place, CU upgrade planned")
            approver = st.text_input("Approver", max_chars=MAX_TEXT)
            ticket = st.text_input("Ticket (optional)", max_chars=MAX_TEXT)
            days = st.number_input("Accepted for (days)", min_value=1, max_value=max_days,
                                   value=min(30, max_days))
            submitted = st.form_submit_button("Record the acceptance" if len(names) == 1
                                              else f"Record {len(names)} acceptances")
        if not submitted:
            return
        recorded, refusals = [], []
        for host in names:
            try:
                recorded.append(data.record_acceptance(
                    ctx.config, ctx.snapshot.id, host, reason=reason, approver=approver,
                    ticket=ticket, days=int(days)))
            except (AcceptanceError, StoreError) as refused:
                refusals.append(refused)
                if len(names) == 1 or (isinstance(refused, AcceptanceError) and not (
                        reason.strip() and approver.strip())):
                    break  # the same mistake for every host: said once
        for problem in refusals[:5]:
            st.error(f"**Not recorded.** {literal(problem)}")
        if recorded:
            st.success(f"Acceptance #{recorded[0]} recorded for {literal(names[0])}."
                       if len(names) == 1 else f"{len(recorded)} acceptances recorded.")
            if not refusals:  # else the refusals stay on screen; the table updates next run
                st.rerun()


def _answer(status: Any, seconds: Any) -> str:
    """An OWA or ECP answer of the outside view: its HTTP status and time."""
    return "no answer" if pd.isna(status) else f"HTTP {int(status)} in {float(seconds):.2f} s"


_from_link()
top = st.columns(3)
statuses = top[0].multiselect("Status", _options("status"), key="f_status",
                              format_func=labels.status_label)
needs = top[1].multiselect("Needs", _options("need"), key="f_need",
                           help="The worklist's reason to act: compromise indicators, "
                                "vulnerable, unknown, mitigated only")
search = top[2].text_input("Host name contains", key="f_search")
middle = st.columns(4)
products = middle[0].multiselect("Product", _options("product"), key="f_product")
cus = middle[1].multiselect("CU", _options("cu"), key="f_cu")
sites = middle[2].multiselect("AD site", _options("site"), key="f_site")
dags = middle[3].multiselect("DAG", _options("dag"), key="f_dag")
more = st.columns(4)
flags = more[0].multiselect("Flags", _listed("flags"), key="f_flags",
                            format_func=labels.flag_label)
roles = more[1].multiselect("Role", _listed("roles"), key="f_roles")
due_filter = more[2].selectbox("Deadline", list(DUE_CHOICES), key="f_due",
                               format_func=DUE_CHOICES.__getitem__,
                               help=f"Due dates of the [deadlines] policy: "
                                    f"{ctx.config.deadlines.policy().describe()}. Overdue "
                                    + ("now." if latest else "at this snapshot's time."))
by_due = more[3].selectbox("Order", ["fleet", "due"], key="f_order",
                           format_func={"fleet": "Fleet order",
                                        "due": "Due date, earliest first"}.__getitem__)
investigations = st.multiselect(
    "Investigation", _options("investigation"), key="f_investigation",
    format_func=labels.investigation_label,
    help="Whether anyone looked for a back door after the fix (issue 21): a full malware scan "
         "after the fix, logs reaching back to the start of the exposure window. Beside the "
         "status, never changing it.")

shown = table
for column, chosen in (("status", statuses), ("need", needs), ("product", products),
                       ("cu", cus), ("site", sites), ("dag", dags),
                       ("investigation", investigations)):
    if chosen:
        values = ["" if value == NONE else value for value in chosen]
        shown = shown[shown[column].isin(values)]
for column, chosen in (("flags", flags), ("roles", roles)):
    if chosen:  # any of the chosen values
        shown = shown[shown[column].apply(lambda cell, chosen=set(chosen):
                                          bool(set(cell.split(", ")) & chosen))]
if search:
    shown = shown[shown["host"].str.contains(search, case=False, regex=False)]
if due_filter == "overdue":
    shown = shown[shown["overdue"]]
elif due_filter == "soon":
    shown = shown[shown["due"].notna() & ~shown["overdue"]
                  & (shown["due"] <= pd.Timestamp(moment) + SOON)]
elif due_filter == "open":
    shown = shown[shown["due"].notna()]
if by_due == "due":
    shown = shown.sort_values("due", kind="stable", na_position="last")

st.caption(f"{len(shown)} of {len(table)} hosts · click a row for its evidence")
ORDER = ("host", "status", "investigation", "accepted", "due", "overdue", "action", "need",
         "investigation_action", "product", "cu", "build", "su_level",
         "build_source", "site", "dag", "flags", "roles", "mitigations", "observed_at",
         "observed_in")
view = shown.reset_index(drop=True)
event = st.dataframe(
    labels.compact(labels.status_chips(view[list(ORDER)])),  # only the shown columns
    hide_index=True,
    column_order=ORDER,
    column_config={
        **{name: st.column_config.TextColumn(labels.COLUMN_LABELS[name]) for name in ORDER},
        "host": st.column_config.TextColumn(labels.COLUMN_LABELS["host"], pinned=True),
        "status": labels.status_column(),
        **labels.deadline_columns(),
        "action": st.column_config.TextColumn(labels.COLUMN_LABELS["action"], width="large"),
        "investigation": st.column_config.SelectboxColumn(
            labels.COLUMN_LABELS["investigation"], options=list(labels.INVESTIGATION_LABELS),
            format_func=labels.investigation_label),
        "observed_in": st.column_config.NumberColumn(
            labels.COLUMN_LABELS["observed_in"], format="#%d",
            help="The snapshot whose run made the observation; an older one than this "
                 "snapshot means the host was carried forward from that run."),
    },
    on_select="rerun", selection_mode="single-row", key="hosts_table",
)

# Host x advisory (issue 19): the same hosts, one status per advisory and the worst of them.
if data.judged_by_others(url, ctx.snapshot.id):
    with st.expander("Host × advisory matrix", icon=":material/grid_on:",
                     expanded=advisory is not None):
        matrix = data.advisory_matrix(url, ctx.snapshot.id)
        matrix = matrix[matrix["host"].isin(set(view["host"]))].reset_index(drop=True)
        judged = [c for c in matrix.columns if c != "host"]
        st.dataframe(labels.status_chips(matrix, tuple(judged)), hide_index=True,
                     key="advisory_matrix", column_config={
                         "host": st.column_config.TextColumn(labels.COLUMN_LABELS["host"],
                                                             pinned=True),
                         **{c: labels.status_column(
                             "Worst" if c == data.MATRIX_WORST else data.advisory_short(c),
                             help=None if c == data.MATRIX_WORST else data.advisory_label(c))
                            for c in judged}})
        st.caption("Empty: the snapshot holds no verdict for that advisory (it counts as "
                   "unknown in the worst).")

admin = Role.ADMIN in st.session_state.get("roles", ())
filtered = due_filter != "any" or any(st.session_state.get(key) for key in FILTERS
                                      if key != "f_due")
# A set chosen by the filters: each host its own acceptance, of its own evidence. Only an
# admin's filtered view of the latest snapshot offers it (walking 10,000 rows costs 0.1 s).
chosen = [host for host, status, flag_cell, badge in zip(
    view["host"], view["status"], view["flags"], view["accepted"], strict=True)
    if status in {s.value for s in ACCEPTABLE} and not badge
    and Flag.INDICATORS_FOUND.value not in flag_cell.split(", ")
] if admin and latest and filtered and advisory is None else []
if len(chosen) > 1:
    _acceptance_form(chosen, "accept_filtered",
                     f"Accept the risk of the {len(chosen)} filtered hosts that may be "
                     "accepted (admins)")
st.subheader("Host detail")
names = list(view["host"])
picked = [row for row in event.selection.rows if row < len(names)] if event else []
if not names:
    st.info("No host matches the filters.")
    st.stop()
if picked:
    name: str | None = names[picked[0]]
elif len(names) == 1:
    name = names[0]
else:
    name = st.selectbox("Host", names, key="detail_host", index=None,
                        placeholder="Click a row above, or choose a host")
if name is None:
    st.stop()
assessment = data.assessment(url, ctx.snapshot.id, name)
assert assessment is not None  # the name comes from this snapshot's table
verdict, obs = assessment.verdict, assessment.observation
if advisory is not None and advisory != ALL:
    # The detail follows the frame's advisory, as the table does.
    chosen_verdict = verdict_for(assessment, advisory)
    if chosen_verdict is None:
        st.warning(f"This snapshot holds no verdict of {literal(name)} for "
                   f"{literal(data.advisory_label(advisory))}: it counts as unknown. Collect "
                   "again. Shown below: the March 2021 verdict.")
    else:
        verdict = chosen_verdict
elif advisory == ALL:
    # The table's row already holds the worst, as "all advisories" reads it (an advisory
    # without a verdict counts as unknown).
    worst_cell = view.loc[view["host"] == name, "status"].iloc[0]
    st.caption(f"Worst over every advisory: **{labels.status_label(worst_cell)}** "
               "(each advisory's verdict under *By advisory*; shown first: March 2021).")
st.markdown(f"**{literal(verdict.host)}** ({literal(obs.host.fqdn or 'no FQDN')}): "
            f"**{labels.status_label(verdict.status.value)}**"
            + (f" · {literal(verdict.product)} {literal(verdict.cu or '')}" if verdict.product else ""))
if name.casefold() in badges:
    st.info(f"Risk {literal(badges[name.casefold()])}: the status stays what the evidence "
            "says (`python -m store acceptances` gives the reason and ticket).",
            icon=":material/assignment_turned_in:")
# A compromise comes first whichever advisory the frame follows (its table cell says so too).
shown_cell = view.loc[view["host"] == name, "investigation"]
shown_state = shown_cell.iloc[0] if len(shown_cell) else None
st.markdown("**Next action:** " + literal(shown_action(verdict.action, shown_state)))
due_row = view[view["host"] == name]
if len(due_row) and pd.notna(due_row["due"].iloc[0]):
    due_at = due_row["due"].iloc[0]
    late = bool(due_row["overdue"].iloc[0])
    (st.warning if late else st.info)(
        f"**{'Overdue' if late else 'Due'}** {due_at:%Y-%m-%d %H:%M} UTC "
        f"({literal(due_row['deadline_rule'].iloc[0])}).", icon=":material/event:")
if (admin and latest and advisory is None and name.casefold() not in badges
        and verdict.status in ACCEPTABLE and Flag.INDICATORS_FOUND not in verdict.flags):
    _acceptance_form([name], "accept_risk", "Accept this risk for a while (admins)")
st.markdown(observed_by(assessment, ctx.snapshot.id, {s.id: s for s in ctx.history}))
st.markdown(f"**Why:** {literal(verdict.reason)}")
if obs.failure is not None:
    st.error(f"Collection failed ({literal(obs.failure.reason)}): {literal(obs.failure.detail)}"
             f"\n\n**Fix:** {literal(obs.failure.hint or 'see the README')}")
for error in obs.probe_errors:
    st.warning(f"Part of the probe failed: {literal(error)}")
if verdict.flags:
    st.markdown("**Flags:** " + ", ".join(f"`{flag.value}`" for flag in verdict.flags))
if verdict.cves_open:
    st.markdown("**CVEs not closed:** " + ", ".join(verdict.cves_open))
if assessment.others:
    st.markdown("**By advisory**", help="One verdict per advisory, each from the same "
                "observation at the snapshot's time.")
    # The investigation after the fix judged the snapshot's own advisory's exposure window
    # (its verdict comes first): that row puts a compromise first, as the Next action above
    # does; the others are their verdicts' own.
    st.dataframe(labels.status_chips(pd.DataFrame(
        [{"advisory": data.advisory_label(v.advisory_id), "status": v.status.value,
          "action": shown_action(v.action, shown_state) if number == 0 else v.action,
          "reason": v.reason, "cves": ", ".join(v.cves_open)}
         for number, v in enumerate(all_verdicts(assessment))],
        columns=["advisory", "status", "action", "reason", "cves"])),
        hide_index=True, key="host_advisories", column_config={
            "advisory": st.column_config.TextColumn("Advisory"),
            "status": labels.status_column(),
            "action": st.column_config.TextColumn(
                labels.COLUMN_LABELS["action"], width="large",
                help="Each advisory's verdict's next action. The March 2021 row's comes after "
                     "\"Investigate for compromise first\" when the investigation after the "
                     "fix (which covers its exposure window) found indicators, as the next "
                     "action above says whichever advisory is shown."),
            "reason": st.column_config.TextColumn("Why", width="large"),
            "cves": st.column_config.TextColumn("CVEs not closed")})

try:
    investigation_timeline(data.investigation(url, ctx.snapshot.id, name), obs, verdict.status)
except StoreError as error:
    # A damaged record is shown as such, never as a stopped page (nor as clean).
    st.error(f"**Investigation after the fix:** {literal(str(error))}",
             icon=":material/report:")

plan = data.plan(url, ctx.snapshot.id, name)
if plan is not None:
    st.markdown("**Upgrade plan**", help="The ordered minimal steps from this build to every "
                "advisory's fix and the newest Security Update the catalogue knows, with the "
                "prerequisites of a CU upgrade (compliance/data/prerequisites.toml). Check each "
                "step against Microsoft's release notes before a change window.")
    st.caption(literal(plan.reason))
    if plan.steps:
        st.markdown("\n".join(
            f"{number}. {literal(step.text)}"
            + (f" ([{literal(step.kb)}]({step.link}))" if step.kb and step.link else "")
            for number, step in enumerate(plan.steps, start=1)))

st.markdown("**Builds, from three sources**",
            help="AD knows the CU level only; ExSetup.exe on the server shows the Security "
                 "Update level; the outside view is what OWA/ECP disclose without credentials, "
                 "as an attacker sees them. An outside view never makes a host patched.")
ad_side, exsetup_side, outside_side = st.columns(3, border=True)
ad_side.markdown(f"**AD** (CU level only)  \n{literal(obs.host.ad_build or 'not known')}")
exsetup_side.markdown(
    f"**ExSetup.exe** (Security Update level)  \n{literal(obs.exsetup_version or 'not read')}"
    f"  \nCatalogue: {literal(verdict.release_name or ('not in the catalogue' if verdict.build else '-'))}")
seen = outside_view(url, ctx.snapshot.id)
endpoint = seen.server(name, obs.host.fqdn or "") if seen is not None else None
with outside_side:
    if endpoint is None or not len(endpoint):
        st.markdown("**Outside view**  \nnot fingerprinted")
        st.caption(OUTSIDE_OFF if seen is None
                   else "This snapshot's outside view holds no endpoint for this server.")
    else:
        row = endpoint.iloc[0]
        lines = [f"**Outside view** ({literal(row['url'])})"]
        if row["tls_verified"]:
            lines.append("certificate valid")
        elif row["tls_problem"] or not row["failure_reason"]:
            lines.append(f"certificate **not trusted** ({literal(row['tls_problem'] or 'no TLS')})"
                         ": nothing it disclosed counts")
        lines += [f"OWA: {_answer(row['owa_status'], row['owa_seconds'])}",
              f"ECP: {_answer(row['ecp_status'], row['ecp_seconds'])}"]
        if row["failure_reason"]:
            lines.append(f"Failed ({literal(row['failure_reason'])}): "
                         f"{literal(row['failure_detail'])}")
        if pd.notna(row["carried_from"]):
            lines.append(f"Carried from snapshot #{int(row['carried_from'])}")
        st.markdown("  \n".join(lines))
        told = seen.disclosures if seen is not None else pd.DataFrame()
        told = told[(told["kind"] == "server") & (told["name"] == row["name"])]
        if len(told):
            st.dataframe(told[["build", "certainty", "source", "raw", "problem"]],
                         hide_index=True, key="outside_disclosures", column_config={
                             name: st.column_config.TextColumn(labels.COLUMN_LABELS[name])
                             for name in ("build", "certainty", "source", "raw", "problem")})
        else:
            st.caption("It disclosed no build.")
st.markdown("**Installed updates**")
st.dataframe(pd.DataFrame([{"KB": u.kb, "name": u.name, "installed": u.installed_on or ""}
                           for u in obs.installed_updates], columns=["KB", "name", "installed"]),
             hide_index=True)
st.markdown("**Evidence**")
evidence = pd.DataFrame(
    [{"what": e.kind, "value": e.value, "source": e.source,
      "seen": e.observed_at.isoformat() if e.observed_at else ""} for e in verdict.evidence],
    columns=["what", "value", "source", "seen"],
)
st.dataframe(evidence, hide_index=True)

st.markdown("**Across snapshots**")
timeline = pd.DataFrame(
    [{"snapshot": info.id, "taken at": info.taken_at.strftime("%Y-%m-%d %H:%M"),
      "status": recorded["status"], "build": recorded.get("build") or "",
      "observed by": f"carried from #{observed_in}" if observed_in is not None else "its run",
      "mitigations": ", ".join(recorded.get("mitigations") or []),
      "flags": ", ".join(recorded.get("flags") or [])}
     for info, recorded, observed_in in data.host_timeline(url, name)],
    columns=["snapshot", "taken at", "status", "build", "observed by", "mitigations", "flags"],
)
st.dataframe(timeline, hide_index=True)
