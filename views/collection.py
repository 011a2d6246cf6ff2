"""Collection: the recent runs, what failed and how to fix it, collecting and importing here."""

from __future__ import annotations

import os
from collections import defaultdict

import pandas as pd
import streamlit as st

from collectors import background
from collectors.inventory import InventoryError
from collectors.job import ImportResult, collection_job, load_plan
from collectors.probe import MAX_DOCUMENT_BYTES
from compliance.catalog import load_catalog
from compliance.evaluate import Policy
from compliance.failures import HINTS
from settings import SettingsError, env_name
from store import StoreError
from views import data, labels
from views.markdown import literal
from views.page import OUTSIDE_OFF, outside_view

CONFIG_ENV = env_name("collection", "config")
INVENTORY_ENV = env_name("collection", "inventory")
RECENT = 10
COMMAND = "python -m collectors collect --config collection.toml [--inventory hosts.csv]"

config = data.settings()
url = config.store_url
st.title("Collection")

st.subheader("Last runs")
history = data.snapshots(url)
if not history:
    st.info("No snapshot yet. Collect now or import probe files (below), or run "
            f"`{COMMAND}` (README, section *Collect*).")
else:
    rows = []
    recent = list(reversed(history[-RECENT:]))
    failed_on = data.run_failures(url, tuple(info.id for info in recent if not info.pruned))
    for info in recent:
        failures = failed_on.get(info.id)
        fresh, fleet = info.coverage
        rows.append({"id": info.id, "taken_at": info.taken_at, "source": info.source,
                     "scope": info.scope, "label": info.label,
                     "observed": info.observed_count if info.observed_count is not None
                                 else info.host_count,
                     "fleet": fleet, "coverage": f"{fresh}/{fleet}",
                     "failures": failures})
    st.dataframe(pd.DataFrame(rows), hide_index=True, column_config={
        "taken_at": st.column_config.DatetimeColumn("taken at (UTC)", format="YYYY-MM-DD HH:mm"),
        "scope": st.column_config.TextColumn(
            help="What the run was pointed at: the directory and its base, an inventory file, "
                 "imported probe documents"),
        "observed": st.column_config.NumberColumn(
            help="Hosts this run observed itself; the snapshot carries every other host of "
                 "the fleet forward with its own, older observation"),
        "fleet": st.column_config.NumberColumn(help="Hosts in the fleet at this snapshot"),
        "coverage": st.column_config.TextColumn(
            help="Hosts with a fresh observation / hosts in the fleet"),
        "failures": st.column_config.NumberColumn(
            help="Hosts this run could not read (empty: hosts pruned from the store)"),
    })

    latest = history[-1]
    groups: dict[str, list[tuple[str, str, int | None]]] = defaultdict(list)
    for host, reason, detail, observed_in, run_failed in data.failures(url, latest.id):
        groups[reason].append((host, detail, latest.id if run_failed else observed_in))
    st.subheader(f"Failures in snapshot #{latest.id}",
                 help="Every host of the fleet whose latest observation is a failure, and the "
                      "run that failed on it. Each is graded unknown, never patched.")
    if not groups:
        st.success("Every host answered.")
    for reason, failed in sorted(groups.items(), key=lambda item: (-len(item[1]), item[0])):
        with st.expander(f"**{literal(reason)}**: {len(failed)} "
                         f"host{'s' if len(failed) > 1 else ''}"):
            # Our own hints are Markdown (commands in backticks); a reason we do not know has
            # its stored hint on the host's detail (Hosts page), shown as plain text there.
            hint = HINTS.get(reason) or "no hint for this reason: see the host on the Hosts page"
            st.markdown(f"**Fix:** {hint}")
            st.dataframe(pd.DataFrame([{"host": host, "detail": detail, "snapshot": run}
                                       for host, detail, run in failed]),
                         hide_index=True)

    # The fingerprint's coverage (issue 18): what this snapshot's run read of OWA/ECP from the
    # outside, and what it carried from earlier runs.
    st.subheader(f"Outside view in snapshot #{latest.id}",
                 help="The unauthenticated HTTPS look at each server's and namespace's OWA/ECP "
                      "(docs/fingerprint.md). Read, failed and untrusted count the endpoints "
                      "this snapshot's run fingerprinted; carried ones were read by an earlier "
                      "run and are kept while fresh.")
    seen = outside_view(url, latest.id)
    if seen is None:
        st.caption(OUTSIDE_OFF)
    else:
        table = seen.endpoints
        own = table[table["carried_from"].isna()]
        trusted, failures, untrusted = data.endpoint_coverage(own)
        failed = own[own["failure_reason"] != ""]
        figures = st.columns(4)
        figures[0].metric("Endpoints read", trusted + untrusted, border=True)
        figures[1].metric("Failed", failures, border=True)
        figures[2].metric("Untrusted certificate", untrusted,
                          border=True, help="Read with record_invalid_certificate on: what "
                                            "they disclosed is shown, never counted as proof")
        figures[3].metric("Carried from earlier runs", len(table) - len(own), border=True)
        if len(failed):
            by_reason = (failed.groupby("failure_reason", sort=False)["name"]
                         .agg(endpoints="count", names=lambda n: ", ".join(map(str, n)))
                         .reset_index().sort_values(["endpoints", "failure_reason"],
                                                    ascending=[False, True], kind="stable"))
            st.dataframe(by_reason, hide_index=True, key="outside_failures", column_config={
                "failure_reason": st.column_config.TextColumn("Failure"),
                "endpoints": st.column_config.NumberColumn("Endpoints"),
                "names": st.column_config.TextColumn("Which", width="large")})
        with st.expander(f"Every endpoint ({len(table)})"):
            columns = [c for c in table.columns if c != "observed_at"]
            st.dataframe(table[columns], hide_index=True, key="outside_endpoints",
                         column_config={c: st.column_config.Column(labels.COLUMN_LABELS[c])
                                        for c in columns})

st.subheader("Collect now", help=(
    f"Set {CONFIG_ENV} to a collection config file (a copy of collection.example.toml) and, "
    f"optionally, {INVENTORY_ENV} to a CSV or TOML host list. The passwords come from "
    ".streamlit/secrets.toml or PROXYLOGON_LDAP_PASSWORD / PROXYLOGON_WINRM_PASSWORD."))
config_path = config.collection_config
inventory_path = config.collection_inventory
if not config_path:
    st.info("Collecting from here is off: no collection config. Copy `collection.example.toml` "
            "to `collection.toml`, fill in `[ldap]` and `[winrm]`, put the passwords in "
            f"`.streamlit/secrets.toml`, then set `{CONFIG_ENV}` to the file's path (and "
            f"`{INVENTORY_ENV}` to an optional host list) and restart the dashboard. The same "
            "run from the command line:")
    st.code(COMMAND, language="sh")
else:
    plan = None
    try:
        plan = load_plan(config_path, inventory_path)
        st.caption(plan.describe())
    except (SettingsError, InventoryError) as error:
        st.error(f"**The collection config cannot be used.** {literal(error)}")
    runner = background.runner_for(url)
    state = runner.state()
    if st.button("Collect now", key="collect_now", type="primary", icon=":material/sync:",
                 disabled=plan is None or state.running) and plan is not None:
        job = collection_job(
            plan, secrets=data.secrets(), environ=os.environ,
            open_store=lambda: data.store_for_writing(config), catalog=load_catalog(),
            policy=Policy(max_age=config.max_age), data_dir=config.data_dir,
            who=str(st.session_state.get("who", "dashboard user")))
        if runner.start(job, on_saved=data.invalidate):
            st.rerun()  # redraw with the button disabled and the progress bar live
        st.warning("A collection is already running; its progress is below.")
    watching = state.running

    @st.fragment(run_every=1 if watching else None)
    def progress() -> None:
        now = runner.state()
        if now.running:
            st.progress(now.fraction, text=now.text)
            if st.button("Stop", key="collect_stop", help="Nothing is saved; the previous "
                                                          "snapshots stay the latest."):
                runner.stop()
            return
        if watching:  # it just finished: redraw the whole page with the new snapshot
            data.invalidate()  # again: a read racing the save may have cached the old runs
            st.rerun()
        if now.phase is background.Phase.SAVED:
            st.success(f"Last collection: {literal(now.summary)}")
        elif now.phase is background.Phase.BUSY:
            st.warning("**Another collection is running**, from the command line or another "
                       f"dashboard; try again when it has finished. ({literal(now.error)})")
        elif now.phase is background.Phase.STOPPED:
            st.info(f"Last collection {literal(now.error)}")
        elif now.phase is background.Phase.FAILED:
            st.error(f"**The last collection failed.** {literal(now.error)}")

    progress()

# A probe document's limit, in Streamlit's MB (MiB): .streamlit/config.toml's
# server.maxUploadSize is the same whole number (tested), so the uploader's "Limit ... per
# file" and this help name one limit.
UPLOAD_LIMIT = f"{MAX_DOCUMENT_BYTES / 2**20:g} MB"
UPLOAD_LIMIT_MB = -(-MAX_DOCUMENT_BYTES // 2**20)
st.subheader("Import probe files", help=(
    "Documents printed by collectors/probe.ps1 run by hand on a server (exchange-probe/1, "
    f"at most {UPLOAD_LIMIT} each), as `python -m collectors import` stores them: one "
    "snapshot."))
uploads = st.file_uploader("Probe JSON files", type="json", accept_multiple_files=True,
                           key="import_files", max_upload_size=UPLOAD_LIMIT_MB,
                           help=f"exchange-probe/1 documents (.json), at most {UPLOAD_LIMIT} "
                                "each: a larger one is refused, as `python -m collectors "
                                "import` refuses it.")
if st.button("Import", key="import_now", icon=":material/upload:", disabled=not uploads):
    store = data.store_for_writing(config)
    result: ImportResult | None
    try:
        result = background.import_uploads([(f.name, f.getvalue()) for f in uploads or []],
                                           store=store, catalog=load_catalog(),
                                           policy=Policy(max_age=config.max_age),
                                           who=str(st.session_state.get("who", "dashboard user")))
    except StoreError as error:
        result = None
        st.session_state.pop("import_outcome", None)  # an older import's success is not this one's
        st.error(f"**Import failed.** {literal(error)}")
    finally:
        store.dispose()
    if result is not None:
        st.session_state["import_outcome"] = (result.run.summary() if result.run else None,
                                              result.rejected)
    if result is not None and result.run is not None:
        data.invalidate()
        st.rerun()  # the runs above now include the import
outcome = st.session_state.get("import_outcome")
if outcome is not None:
    summary, rejected = outcome
    for name, reason in rejected:
        st.error(f"Rejected {literal(name)}: {literal(reason)}")
    if summary:
        st.success(f"Imported: {literal(summary)}")
    else:
        st.warning("Nothing was imported.")
