"""Hosts for admins: every server, filterable, with the evidence behind its verdict."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from views import data
from views.markdown import literal
from views.page import current, observed_by, snapshot_caption

ctx = current()
st.title("Hosts")
snapshot_caption(ctx)

url = ctx.config.store_url
table = data.host_table(url, ctx.snapshot.id)


def _options(column: str) -> list[str]:
    return sorted({value for value in table[column] if value})


def _listed(column: str) -> list[str]:
    """The options of a column whose cells list several values ("a, b")."""
    return sorted({value for cell in table[column] for value in cell.split(", ") if value})


filters = st.columns(6)
statuses = filters[0].multiselect("Status", _options("status"), key="f_status")
products = filters[1].multiselect("Product", _options("product"), key="f_product")
cus = filters[2].multiselect("CU", _options("cu"), key="f_cu")
sites = filters[3].multiselect("AD site", _options("site"), key="f_site")
dags = filters[4].multiselect("DAG", _options("dag"), key="f_dag")
search = filters[5].text_input("Host name contains", key="f_search")
more = st.columns(2)
flags = more[0].multiselect("Flags", _listed("flags"), key="f_flags")
roles = more[1].multiselect("Role", _listed("roles"), key="f_roles")

shown = table
for column, chosen in (("status", statuses), ("product", products), ("cu", cus),
                       ("site", sites), ("dag", dags)):
    if chosen:
        shown = shown[shown[column].isin(chosen)]
for column, chosen in (("flags", flags), ("roles", roles)):
    if chosen:  # any of the chosen values
        shown = shown[shown[column].apply(lambda cell, chosen=set(chosen):
                                          bool(set(cell.split(", ")) & chosen))]
if search:
    shown = shown[shown["host"].str.contains(search, case=False, regex=False)]

st.caption(f"{len(shown)} of {len(table)} hosts")
st.dataframe(
    shown,
    hide_index=True,
    column_order=("host", "status", "product", "cu", "build", "build_source", "flags", "site",
                  "dag", "roles", "mitigations", "observed_at", "observed_in", "action"),
    column_config={
        "observed_at": st.column_config.TextColumn("last observed"),
        "observed_in": st.column_config.NumberColumn(
            "observed in snapshot", format="#%d",
            help="The snapshot whose run made the observation; an older one than this "
                 "snapshot means the host was carried forward from that run."),
        "action": st.column_config.TextColumn("next action", width="large"),
    },
)

st.subheader("Host detail")
names = list(shown["host"])
if not names:
    st.info("No host matches the filters.")
    st.stop()
name = st.selectbox("Host", names, key="detail_host")
assessment = data.assessment(url, ctx.snapshot.id, name)
assert assessment is not None  # the name comes from this snapshot's table
verdict, obs = assessment.verdict, assessment.observation
st.markdown(f"**{literal(verdict.host)}** ({literal(obs.host.fqdn or 'no FQDN')}): "
            f"**{verdict.status.value}**"
            + (f" · {literal(verdict.product)} {literal(verdict.cu or '')}" if verdict.product else ""))
st.markdown(f"**Next action:** {literal(verdict.action)}")
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

builds, updates = st.columns(2)
builds.markdown("**Builds**")
builds.dataframe(pd.DataFrame([
    {"source": "AD (CU level only)", "value": obs.host.ad_build or "not known"},
    {"source": "ExSetup.exe (Security Update level)", "value": obs.exsetup_version or "not read"},
    {"source": "Catalogue", "value": verdict.release_name or ("not in the catalogue"
                                                               if verdict.build else "-")},
]), hide_index=True)
updates.markdown("**Installed updates**")
updates.dataframe(pd.DataFrame([{"KB": u.kb, "name": u.name, "installed": u.installed_on or ""}
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
