"""Snapshots for auditors: the hash chain, what changed, what was in force, and evidence."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pandas as pd
import streamlit as st

from store.export import AUDIT_COLUMNS, to_csv
from store.history import CATEGORY_LABELS
from views import charts, data, integrity, labels
from views.markdown import literal
from views.page import current, snapshot_caption

ctx = current()
url = ctx.config.store_url
by_id = {s.id: s for s in ctx.history}
st.title("Snapshots and evidence")
snapshot_caption(ctx)


def _label(snapshot_id: int) -> str:
    info = by_id[snapshot_id]
    return f"#{info.id} · {info.taken_at:%Y-%m-%d %H:%M} UTC · {info.label or info.source}"


def _pruned_note(snapshot_id: int) -> str:
    return (f"Snapshot #{snapshot_id} was pruned: its hosts were deleted, only its header and "
            "digest remain.")


st.subheader("Chain of snapshots")
head = max(ctx.history, key=lambda s: s.sequence)
st.markdown(f"Head digest (chain position {head.sequence}, snapshot #{head.id}):")
st.code(head.hash, language=None)  # st.code shows stored text as it is, never as Markdown
pressed = st.button("Verify the chain", key="verify", icon=":material/verified:",
                    help="Recompute every snapshot's digest and every link now, like "
                         "`python -m store verify`.")
if pressed:
    st.session_state["chain_checked"] = True
if st.session_state.get("chain_checked"):
    state = integrity.chain_state(url, ctx.config.signing_key, wait=3600, fresh=pressed)
    report = state.report
    if report is None:
        st.error(f"**The chain could not be verified**: {literal(state.error)}")
    elif report.ok:
        pruned = (f" {report.pruned} pruned: their links are verified, their hosts are gone, "
                  "and a pruning in the audit log accounts for each ("
                  + "; ".join(f"#{p.snapshot_id} {literal(p.at[:16])} by {literal(p.who)}"
                              for p in report.prunings[:5])
                  + ("…" if len(report.prunings) > 5 else "") + ")."
                  if report.pruned else "")
        st.success(f"{report.checked} snapshots and {report.audit_entries} audit entries, every "
                   f"digest and link verified.{pruned}")
    else:
        lines = [
            # The messages quote stored values, which whoever tampered with the store chose.
            f"- {p.where}: {literal(p.message)}" for p in report.problems
        ]
        st.error(f"**The chain does not verify**: {len(report.problems)} problem(s) in "
                 f"{report.checked} snapshots.\n" + "\n".join(lines))
    if ctx.config.signing_key:
        st.caption("HMAC signatures were checked too, with the signing key set here.")
    else:
        st.caption("HMAC signatures were not checked: no signing key is set here. Set "
                   "`[store] signing_key`, or run `python -m store verify` where it is set.")

st.dataframe(
    pd.DataFrame(
        [{"id": s.id, "taken at (UTC)": f"{s.taken_at:%Y-%m-%d %H:%M}", "source": s.source,
          "label": s.label, "hosts": s.host_count,
          **{status.value: s.counts.get(status.value, 0) for status in labels.STATUS_ORDER},
          "chain position": s.sequence, "digest": s.hash[:16] + "…",
          "signed": "yes" if s.signature else "no", "pruned": s.pruned}
         for s in reversed(ctx.history)],
    ),
    hide_index=True,
    column_config={"not_applicable": st.column_config.NumberColumn("n/a")},
)

st.subheader("What changed")
ids = [s.id for s in ctx.history]
pick = st.columns(2)
before_id = pick[0].selectbox("From snapshot", ids, index=max(0, len(ids) - 2),
                              format_func=_label, key="diff_a")
after_id = pick[1].selectbox("To snapshot", ids, index=len(ids) - 1, format_func=_label,
                             key="diff_b")
if before_id == after_id:
    st.info("Pick two different snapshots to compare.")
elif by_id[before_id].pruned or by_id[after_id].pruned:
    st.warning(_pruned_note(before_id if by_id[before_id].pruned else after_id))
else:
    changes = data.snapshot_diff(url, before_id, after_id)
    counted = [(CATEGORY_LABELS[name], len(listed)) for name, listed in changes.__dict__.items()]
    for column, (label, count) in zip(st.columns(len(counted)), counted, strict=True):
        column.metric(label, count, border=True)
    rows = changes.rows()
    if rows:
        for row in rows:
            row["before"], row["after"] = (labels.status_label(row["before"]),
                                           labels.status_label(row["after"]))
        st.caption("Each host once, under its most important change.")
        st.dataframe(pd.DataFrame(rows), hide_index=True, column_config={
            name: st.column_config.TextColumn(labels.COLUMN_LABELS[name])
            for name in ("category", "host", "before", "after", "detail")})
        st.download_button("Download the changes (CSV)",
                           data=data.audited(ctx.config, after_id,
                                             f"changes from snapshot #{before_id} (CSV)",
                                             lambda: to_csv(rows, ("category", "host", "before",
                                                                   "after", "detail"))),
                           file_name=f"proxylogon-changes-{before_id}-to-{after_id}.csv",
                           mime="text/csv", key="diff_csv", icon=":material/download:",
                           on_click="ignore")
    else:
        st.success(f"No host changed between #{before_id} and #{after_id}.")

st.subheader("As of a date")
as_of_date = st.date_input("Snapshot in force at the end of (UTC)",
                           value=ctx.snapshot.taken_at.date(), key="as_of_date")
moment = datetime.combine(as_of_date, time.max, tzinfo=UTC)
in_force = data.as_of(url, moment)
if in_force is None:
    first = ctx.history[0]
    st.info(f"No snapshot was in force on {as_of_date:%Y-%m-%d}: the first one was taken "
            f"{first.taken_at:%Y-%m-%d %H:%M} UTC.")
else:
    st.markdown(f"In force at the end of {as_of_date:%Y-%m-%d}: **{literal(_label(in_force.id))}**, "
                f"judged by catalogue {literal(in_force.catalog_version)} and advisory "
                f"{literal(in_force.advisory_id)} v{literal(in_force.advisory_version)}.")
    figures = [("Hosts", in_force.host_count)] + [
        (labels.STATUS_LABELS[s], in_force.counts.get(s.value, 0)) for s in labels.STATUS_ORDER]
    for column, (label, value) in zip(st.columns(len(figures)), figures, strict=True):
        column.metric(label, value, border=True)
    st.columns(2)[0].plotly_chart(charts.status_bars(in_force.counts), width="stretch")
    accepted = data.acceptance_rows(url, in_force, min(moment, datetime.now(UTC)))
    st.markdown(f"**Risk acceptances** recorded by the end of {as_of_date:%Y-%m-%d}, as they "
                "stood then (each is an entry of the audit chain, signed when the store has a "
                "key; `python -m store acceptances --as-of` gives the same):")
    if accepted:
        st.dataframe(pd.DataFrame(accepted, columns=list(data.ACCEPTANCE_COLUMNS)),
                     hide_index=True, key="acceptances_table")
    else:
        st.caption("None.")

st.subheader("Evidence bundle")
bundled = [s.id for s in reversed(ctx.history) if not s.pruned]
if not bundled:
    st.info("Every snapshot is pruned: there is no host data left to bundle.")
    st.stop()
chosen = st.selectbox("Snapshot", bundled, format_func=_label, key="bundle_snapshot")
st.download_button(
    "Download evidence bundle",
    data.audited(ctx.config, chosen, "evidence bundle",
                 lambda: data.evidence_bundle(url, chosen, ctx.config.signing_key)),
    on_click="ignore",
    file_name=f"proxylogon-evidence-snapshot{chosen}-{by_id[chosen].taken_at:%Y%m%d}.zip",
    mime="application/zip",
    icon=":material/download:",
)
st.caption(
    "A zip of `snapshot.json`, `hosts.csv`, `summary.txt`, `acceptances.json` (the risk "
    "acceptances as they stood then), `deadlines.json` (each open host's due time) and "
    "`manifest.json`. Check it "
    "anywhere, without the database: `python -m store verify --bundle FILE`. That proves the "
    "files are unchanged since export and that the snapshot matches its digest. It does not "
    "prove on its own that this is the snapshot recorded then (compare its digest with the "
    "chain above, or check its HMAC), nor that the servers told the probe the truth."
)

st.subheader("Re-evaluation with today's catalogue")
today = data.catalog()
# It grades every host's stored observation again (seconds for a large fleet): on request.
asked = st.toggle(f"Re-evaluate snapshot #{chosen} with today's catalogue (version "
                  f"{today.version})", key="reevaluate")
differences = (data.reevaluation(url, chosen, ctx.config.max_age.total_seconds() / 86400)
               if asked else None)
if differences is None:
    st.caption("Shows which hosts today's catalogue would judge differently from what was "
               "recorded then, for example after a newly catalogued build.")
elif not differences:
    st.success(f"Snapshot #{chosen}: today's catalogue (version {today.version}) judges every "
               "host as recorded.")
else:
    st.markdown(f"Today's catalogue (version {today.version}) would judge **{len(differences)}"
                f"** hosts of snapshot #{chosen} differently (recorded with catalogue "
                f"{by_id[chosen].catalog_version}).")
    st.dataframe(
        pd.DataFrame(
            [{"host": r.host, "recorded status": r.recorded.status.value,
              "today's status": r.today.status.value,
              "recorded reason": r.recorded.reason, "today's reason": r.today.reason}
             for r in differences],
        ),
        hide_index=True,
    )
    st.caption("The recorded verdict stays the evidence of what was known then; this only "
               "shows where knowledge has moved on since.")

st.subheader("Audit log")
entries = data.audit_log(url)
st.caption("Every collection, import, export and pruning, newest first: who, when, what, and "
           "which snapshot. From the command line: `python -m store audit`.")
if entries:
    log_table = pd.DataFrame(entries, columns=list(AUDIT_COLUMNS))
    st.dataframe(log_table, hide_index=True, key="audit_table")
    st.download_button("Download the audit log (CSV)",
                       data=lambda: to_csv(entries, AUDIT_COLUMNS),
                       file_name="proxylogon-audit-log.csv", mime="text/csv", key="audit_csv",
                       on_click="ignore")
else:
    st.info("Nothing recorded yet.")
