"""Catalogue for auditors: the advisory and the build catalogue every verdict is judged by."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import streamlit as st

from compliance.builds import BuildParseError, parse_dotted
from compliance.sulevel import newest_releases
from compliance.summary import ALL
from views import data
from views.markdown import literal

catalog = data.catalog()
advisory = catalog.advisory
config = data.settings()
latest = data.latest(config.store_url)
ADVISORY_FILE = f"compliance/data/advisories/{advisory.id}.toml"
# The advisory the frame's selector names (every one for "all"); March 2021 by default.
_choice = st.session_state.get("advisory") or advisory.id
shown_advisories = [c.advisory for c in data.catalogs()
                    if _choice == ALL or c.advisory.id == _choice] or [advisory]
CATALOGUE_MAX_AGE_DAYS = 120  # about one quarter's Security Update plus a month

st.title("Catalogue and advisory")
st.caption(f"Catalogue version **{catalog.version}** (newest release {catalog.newest_release}; "
           "the suffix is a hash of both data files) · advisory "
           f"{advisory.id} v{advisory.version} · every snapshot records both versions")
age = catalog.age_days(datetime.now(UTC).date())
if age > CATALOGUE_MAX_AGE_DAYS:
    st.warning(f"**The catalogue is {age} days old** (its newest release is "
               f"{catalog.newest_release}): Exchange ships Security Updates about every quarter. "
               "A server on a CU released since grades `unknown`; a newer SU on a known CU is "
               "judged by its build alone, flagged `not_in_catalog`. Update "
               "`compliance/data/builds.csv` from Microsoft's build table.")
else:
    st.caption(f"The catalogue's newest release is {age} days old (a warning shows past "
               f"{CATALOGUE_MAX_AGE_DAYS} days).")
if latest is not None and latest.catalog_version != catalog.version:
    st.info(f"The latest snapshot (#{latest.id}) was judged by catalogue "
            f"{literal(latest.catalog_version)}; this is catalogue {catalog.version}. The Snapshots "
            "page shows where today's catalogue would judge differently.")

st.subheader("Builds seen in the latest snapshot")
if latest is None:
    st.info("No snapshot yet: nothing to compare with the catalogue.")
elif latest.pruned:
    st.info(f"The latest snapshot (#{latest.id}) is pruned: its hosts are gone.")
else:
    # known is False when the reported build matches no catalogue row (a CU-level build
    # from AD counts as known when its CU is catalogued).
    unknown = data.unknown_builds(config.store_url, latest.id)
    if len(unknown):
        named = ", ".join(f"{literal(host)} ({literal(build)})"
                          for host, build in zip(unknown["host"][:10], unknown["build"][:10],
                                                 strict=True))
        more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        subject = f"{len(unknown)} hosts report builds" if len(unknown) > 1 else "1 host reports a build"
        st.warning(f"{subject} the catalogue does not know: {named}{more}; update "
                   "`compliance/data/builds.csv`.")
        st.dataframe(unknown, hide_index=True)
    else:
        st.success(f"Every build reported in snapshot #{latest.id} is in the catalogue.")

st.subheader("Advisories" if len(shown_advisories) > 1 else "Advisory")
for advisory in shown_advisories:
    st.markdown(f"**{advisory.title}**  \n`{advisory.id}` version {advisory.version}, published "
                f"{advisory.published} · [{advisory.url}]({advisory.url})")
    st.markdown("**CVEs**")
    st.dataframe(pd.DataFrame([{"cve": c.id, "title": c.title, "source": c.source}
                               for c in advisory.cves]), hide_index=True)
    st.markdown("**Interim mitigations**")
    st.dataframe(pd.DataFrame(
        [{"id": m.id, "title": m.title, "kind": m.kind, "names": ", ".join(m.names),
          "covers": ", ".join(m.covers), "products": ", ".join(m.products), "source": m.source}
         for m in advisory.mitigations]), hide_index=True)
    st.markdown("**Rules per product**")
    st.dataframe(pd.DataFrame(
        [{"product": r.product, "cves": ", ".join(r.cves), "requires_role": r.requires_role or "",
          "fixed_from": r.fixed_from or "", "upgrade_to": r.upgrade_to or "",
          "mitigated_when": ", ".join(r.mitigated_when), "fixes": len(r.fixes), "source": r.source}
         for r in advisory.products]), hide_index=True)
    st.markdown("**Fixing builds per CU**")
    st.dataframe(pd.DataFrame(
        [{"product": f.product, "cu": f.cu, "build": str(f.build), "kb": f.kb,
          "supported_cu": f.supported_cu, "source": f.source}
         for r in advisory.products for f in r.fixes]), hide_index=True)
    st.caption("`supported_cu` false: a special update for an out-of-support CU, which "
               "fixes these CVEs but not necessarily older ones.")

st.subheader("Newest known release per CU")
st.caption("What a server on each CU should run at least (issue 19's Security Update level): "
           "the CU's newest update the catalogue knows, or the CU itself when it got none. "
           "Disputed rows are left out.")
newest = newest_releases(catalog)
st.dataframe(pd.DataFrame(
    [{"product and CU": f"{product} {cu}", "newest": release.name, "newest build": str(release.build),
      "newest kb": release.kb or "", "newest released": release.released}
     for (product, cu), release in newest.items()],
    columns=["product and CU", "newest", "newest build", "newest kb", "newest released"]),
    hide_index=True, key="newest_per_cu")

st.subheader("Build catalogue")
st.caption(f"{len(catalog.releases)} releases, newest {catalog.newest_release}. Rows where "
           "sources disagree are kept, marked disputed and highlighted: a host on such a build "
           "is graded unknown.")
releases = pd.DataFrame(
    [{"build": str(r.build), "product": r.product, "cu": r.cu, "kind": r.kind, "name": r.name,
      "kb": r.kb or "", "released": r.released, "source": r.source, "disputed": r.disputed,
      "notes": r.notes} for r in catalog.releases])
haystack = releases[["build", "cu", "name", "kb", "notes"]].agg(" ".join, axis=1)


def _needle(query: str) -> str:
    """A query that is a four-part build (the padded ``15.02.0792.010`` ExSetup prints too) in
    the catalogue's form, ``15.2.792.10``; anything else as typed, for a substring search."""
    try:
        return str(parse_dotted(query))
    except BuildParseError:
        return query


def _shade_disputed(frame: pd.DataFrame) -> pd.DataFrame:
    """The CSS of every cell: disputed rows shaded, at once for the whole table (a function
    called per row took a quarter of a second for the catalogue's rows)."""
    shade = frame["disputed"].astype(bool).map({True: "background-color: #fdecea", False: ""})
    return pd.DataFrame(dict.fromkeys(frame.columns, shade), index=frame.index)


filters = st.columns([1, 2, 1], vertical_alignment="bottom")
products = filters[0].multiselect("Product", sorted(set(releases["product"])), key="cat_product")
search = filters[1].text_input(
    "Build, name, KB or note contains", key="cat_search",
    help="A whole build is matched in any form ExSetup prints: 15.02.0792.010 finds "
         "15.2.792.10. Anything else is a case-insensitive substring.")
disputed_only = filters[2].checkbox("Disputed only", key="cat_disputed",
                                    help="Rows where sources disagree (kind `other`)")
shown = releases
if products:
    shown = shown[shown["product"].isin(products)]
if disputed_only:
    shown = shown[shown["disputed"]]
if search:
    shown = shown[haystack[shown.index].str.contains(_needle(search), case=False, regex=False)]
st.caption(f"{len(shown)} of {len(releases)} releases, {int(shown['disputed'].sum())} disputed")
st.dataframe(
    shown.style.apply(_shade_disputed, axis=None),
    hide_index=True,
    column_config={"disputed": st.column_config.CheckboxColumn("disputed"),
                   "notes": st.column_config.TextColumn("notes", width="large")},
)

st.subheader("Sources")
st.markdown(
    f"- Advisory: [{catalog.advisory.url}]({catalog.advisory.url})\n"
    "- `msdocs`: Microsoft, [Exchange Server build numbers and release dates]"
    "(https://learn.microsoft.com/en-us/exchange/new-features/build-numbers-and-release-dates)\n"
    "- `CSS-Exchange`: [microsoft/CSS-Exchange](https://github.com/microsoft/CSS-Exchange) "
    "(HealthChecker build dictionary, EOMT, ExchangeMitigations)\n"
    "- `eightwone`: [Exchange versions, builds and dates]"
    "(https://eightwone.com/references/versions-builds-dates/)"
)
st.caption(f"The data files: `compliance/data/builds.csv` (one row per release, with its "
           f"source) and `{ADVISORY_FILE}` (CVEs, fixing builds, mitigations, per-product "
           "rules; its header comments name every source key). Adding a release is adding a row.")

