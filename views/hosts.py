"""Hosts for admins: every server, filterable, with the evidence behind its verdict."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from views import data
from views.page import current, snapshot_caption

ctx = current()
st.title("Hosts")
snapshot_caption(ctx)

table = data.host_table(ctx.config.store_url, ctx.snapshot.id)


def _options(column: str) -> list[str]:
    return sorted({value for value in table[column] if value})


filters = st.columns(5)
statuses = filters[0].multiselect("Status", _options("status"), key="f_status")
products = filters[1].multiselect("Product", _options("product"), key="f_product")
cus = filters[2].multiselect("CU", _options("cu"), key="f_cu")
sites = filters[3].multiselect("AD site", _options("site"), key="f_site")
search = filters[4].text_input("Host name contains", key="f_search")

shown = table
for column, chosen in (("status", statuses), ("product", products), ("cu", cus),
                       ("site", sites)):
    if chosen:
        shown = shown[shown[column].isin(chosen)]
if search:
    shown = shown[shown["host"].str.contains(search, case=False, regex=False)]

st.caption(f"{len(shown)} of {len(table)} hosts")
st.dataframe(
    shown,
    hide_index=True,
    column_order=("host", "status", "product", "cu", "build", "build_source", "flags", "site",
                  "dag", "roles", "mitigations", "observed_at", "action"),
    column_config={
        "observed_at": st.column_config.TextColumn("last observed"),
        "action": st.column_config.TextColumn("next action", width="large"),
    },
)

st.subheader("Host detail")
names = list(shown["host"])
if not names:
    st.info("No host matches the filters.")
    st.stop()
name = st.selectbox("Host", names, key="detail_host")
assessment = next(a for a in data.assessments(ctx.config.store_url, ctx.snapshot.id)
                  if a.observation.host.name == name)
verdict, obs = assessment.verdict, assessment.observation
st.markdown(f"**{verdict.host}** ({obs.host.fqdn or 'no FQDN'}): **{verdict.status.value}**")
st.markdown(f"**Next action:** {verdict.action}")
st.markdown(f"**Why:** {verdict.reason}")
if verdict.flags:
    st.markdown("**Flags:** " + ", ".join(f"`{flag.value}`" for flag in verdict.flags))
if verdict.cves_open:
    st.markdown("**CVEs not closed:** " + ", ".join(verdict.cves_open))
evidence = pd.DataFrame(
    [{"what": e.kind, "value": e.value, "source": e.source,
      "seen": e.observed_at.isoformat() if e.observed_at else ""} for e in verdict.evidence],
    columns=["what", "value", "source", "seen"],
)
st.markdown("**Evidence**")
st.dataframe(evidence, hide_index=True)
