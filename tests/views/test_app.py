"""AppTest runs every page from app.py on the demo store and on an empty store."""

from __future__ import annotations

import os
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from streamlit.testing.v1 import AppTest

from compliance.acceptance import accept
from compliance.catalog import load_catalog
from compliance.fleet import is_fresh
from compliance.investigation import InvestigationState
from compliance.models import Flag, Status
from store import SnapshotStore
from store.acceptances import acceptances, record_revocation
from store.acceptances import record as record_acceptance
from tests.views.apps import open_app

ROOT = Path(__file__).resolve().parents[2]
PAGES = ("views/overview.py", "views/hosts.py", "views/worklist.py", "views/collection.py",
         "views/snapshots.py", "views/catalog.py")


_app = open_app


def _badge(at: AppTest) -> bool:
    return any("Demo data" in m.value for m in at.markdown)


def test_every_page_runs_on_the_demo_store_with_the_badge(demo_app):
    at, _store = demo_app
    for page in PAGES:
        at.switch_page(page)
        at.run()
        assert not at.exception, (page, at.exception)
        assert _badge(at), page


def test_overview_kpis_match_the_store(demo_app):
    at, store = demo_app
    latest = store.latest()
    assert latest is not None and latest.source == "demo"
    statuses = Counter(a.verdict.status.value for a in store.assessments(latest.id))
    metrics = {m.label: m.value for m in at.metric}
    affected = latest.host_count - statuses["not_applicable"]
    # A CVE check hit, or an investigation that found a detection or a possible web shell
    # (review of issue 21): one "Indicators found" figure.
    indicators = sum(1 for s in store.summaries(latest.id, load_catalog())
                     if Flag.INDICATORS_FOUND in s.flags
                     or s.investigation is InvestigationState.INDICATORS_FOUND)
    fresh = sum(1 for a in store.assessments(latest.id) if is_fresh(a.verdict))
    assert metrics["In fleet"] == str(latest.host_count) == "68"
    assert metrics["Coverage"] == f"{100 * fresh / latest.host_count:.0f}%"
    assert metrics["Indicators found"] == str(indicators) == "3"
    assert "Indicators" not in metrics  # one figure, not two that disagree
    assert metrics["Patched"] == f"{100 * statuses['patched'] / affected:.0f}%"
    assert metrics["Mitigated only"] == str(statuses["mitigated"])
    assert metrics["Vulnerable"] == str(statuses["vulnerable"])
    assert metrics["Unknown"] == str(statuses["unknown"])
    ended = sum(1 for a in store.assessments(latest.id)
                if "out_of_support" in [f.value for f in a.verdict.flags])
    assert metrics["Out of support"] == str(ended) and ended > 0
    assert len(at.get("plotly_chart")) == 7  # and the investigation trend
    assert any(f"snapshot #{latest.id}" in c.value for c in at.caption)


def test_hosts_filters_change_the_table_and_detail_shows_evidence(demo_app):
    at, store = demo_app
    at.switch_page("views/hosts.py")
    at.run()
    latest = store.latest()
    assert latest is not None
    table = at.dataframe[0].value
    assert len(table) == latest.host_count

    at.multiselect(key="f_status").set_value(["vulnerable"]).run()
    filtered = at.dataframe[0].value
    assert 0 < len(filtered) < latest.host_count
    assert {cell[0] for cell in filtered["status"]} == {"vulnerable"}  # a coloured chip
    assert len(filtered) == latest.counts["vulnerable"]

    at.multiselect(key="f_status").set_value([]).run()
    at.multiselect(key="f_roles").set_value(["Edge"]).run()
    assert set(at.dataframe[0].value["host"]) == {"DEMO-EDGE01", "DEMO-EDGE02"}
    at.multiselect(key="f_roles").set_value([]).run()
    at.multiselect(key="f_flags").set_value(["indicators_found"]).run()
    flagged = at.dataframe[0].value
    assert len(flagged) == sum("indicators_found" in cell.split(", ") for cell in table["flags"])
    assert len(flagged) >= 1 and all("indicators_found" in cell for cell in flagged["flags"])
    at.multiselect(key="f_flags").set_value([]).run()
    at.multiselect(key="f_status").set_value(["vulnerable"]).run()
    at.text_input(key="f_search").set_value("EX16OLD06").run()
    assert list(at.dataframe[0].value["host"]) == ["DEMO-EX16OLD06"]
    assert all(box.key != "detail_host" or box.value is None for box in at.selectbox)
    assert any("EX16OLD06" in m.value and "Vulnerable" in m.value for m in at.markdown)
    texts = " ".join(m.value for m in at.markdown)
    assert "Next action:" in texts and "CU23" in texts
    frames = [d.value for d in at.dataframe]
    evidence = next(f for f in frames if "what" in f.columns)
    assert "exsetup_build" in set(evidence["what"])
    timeline = next(f for f in frames if "taken at" in f.columns)
    assert len(timeline) == len(store.history())  # present in every demo snapshot
    assert timeline["status"].iloc[-1] == "vulnerable"


def test_worklist_lists_every_non_compliant_host(demo_app):
    at, store = demo_app
    at.switch_page("views/worklist.py")
    at.run()
    latest = store.latest()
    assert latest is not None
    expected = {a.verdict.host for a in store.assessments(latest.id)
                if not a.verdict.status.compliant or "indicators_found" in
                [f.value for f in a.verdict.flags]}
    # Issue 21: and every patched host whose investigation after the fix is not done (after
    # the patch work, priority 4 and 5).
    summaries = store.summaries(latest.id, load_catalog())
    found = {s.host for s in summaries if s.investigation is not None
             and s.investigation.value == "indicators_found"}
    later = {s.host for s in summaries if s.status.value == "patched"
             and s.investigation is not None
             and s.investigation.value in ("not_investigated", "incomplete")}
    shown = at.dataframe[0].value
    assert found and later  # the demo fleet shows both
    assert set(shown["host"]) == expected | found | later
    assert set(shown.loc[shown["priority"] == 0, "host"]) >= found
    assert set(shown.loc[shown["priority"] >= 4, "host"]) == later - expected
    assert (shown["action"].str.len() > 0).all()
    assert len(at.get("download_button")) == 2  # CSV and Excel
    # The wave rule: no wave holds two members of one DAG.
    members = shown[shown["dag"] != ""].groupby(["wave", "dag"]).size()
    assert (members == 1).all()
    at.number_input(key="per_wave").set_value(3).run()
    assert at.dataframe[0].value.groupby("wave").size().max() <= 3


def test_empty_store_without_demo_says_what_to_do(monkeypatch, tmp_path):
    at = _app(monkeypatch, tmp_path, demo=False)
    at.run()
    assert not at.exception
    assert not _badge(at)
    for page in PAGES:
        at.switch_page(page)
        at.run()
        assert not at.exception, page
        assert any("No snapshot yet" in i.value for i in at.info), page


def test_bad_setting_shows_an_error_page_not_a_traceback(monkeypatch, tmp_path):
    at = _app(monkeypatch, tmp_path)
    monkeypatch.setenv("PROXYLOGON_MAX_AGE_DAYS", "soon")
    at.run()
    assert not at.exception
    assert any("max_age_days" in e.value for e in at.error)


def test_unopenable_store_shows_an_error_page(monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    at = _app(monkeypatch, blocker / "sub")
    at.run()
    assert not at.exception
    assert any("cannot be opened" in e.value for e in at.error)


def test_after_retiring_the_demo_fleet_every_page_says_the_fleet_is_empty(demo_app, tmp_path):
    import subprocess
    import sys

    import streamlit as st

    at, _store = demo_app
    done = subprocess.run([sys.executable, "-m", "store", "--db",
                           f"sqlite:///{tmp_path / 'compliance.db'}", "--secrets",
                           os.devnull, "retire", "--demo", "--reason",
                           "real data from now on"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    st.cache_data.clear()  # the dashboard sees it within its cache's 60 s; the test at once
    at.run()
    assert not at.exception, at.exception
    assert not _badge(at)  # no demo host is shown any more
    assert any("The fleet is empty" in i.value for i in at.info)
    assert not any("patched" in s.value for s in at.success)
    for page in PAGES:
        at.switch_page(page)
        at.run()
        assert not at.exception, (page, at.exception)


def test_collection_failures_match_the_stored_json(demo_app):
    """The Collection page counts failures from the summary columns: the same figures as
    decoding every observation and verdict of each snapshot (the way they were counted)."""
    from compliance.models import EvidenceKind

    at, store = demo_app
    at.switch_page("views/collection.py")
    at.run()
    assert not at.exception
    runs = next(d.value for d in at.dataframe if "failures" in d.value.columns)
    for snapshot_id, shown in zip(runs["id"], runs["failures"], strict=True):
        expected = sum(1 for a in store.assessments(int(snapshot_id))
                       if (a.observation.failure is not None and not a.carried)
                       or any(e.kind == EvidenceKind.COLLECTION_FAILED for e in a.verdict.evidence))
        assert shown == expected, snapshot_id
    assert runs["failures"].sum() > 0  # the demo fleet has unreachable hosts
    latest = store.latest()
    assert latest is not None
    failing = {a.observation.host.name for a in store.assessments(latest.id)
               if a.observation.failure is not None
               or any(e.kind == EvidenceKind.COLLECTION_FAILED for e in a.verdict.evidence)}
    listed = {host for d in at.dataframe if "detail" in d.value.columns for host in d.value["host"]}
    assert failing and listed == failing


def test_a_header_count_that_is_not_a_number_still_shows_the_red_banner(monkeypatch, tmp_path):
    import streamlit as st

    at = _app(monkeypatch, tmp_path)
    at.run()
    store = SnapshotStore.open(f"sqlite:///{tmp_path / 'compliance.db'}")
    with store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE snapshots SET host_count = 'abc' WHERE id = 1")
    store.dispose()
    st.cache_data.clear()  # as a restarted server: an edit in place moves no chain head
    st.cache_resource.clear()
    fresh = _app(monkeypatch, tmp_path)
    deadline = time.monotonic() + 60
    while True:  # the check runs in a child process; the page polls until it is done
        fresh.run()
        if any("does not verify" in e.value for e in fresh.error) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert any("does not verify" in e.value for e in fresh.error), [e.value for e in fresh.error]


def _accepted(store, status, *, days: int = 30, ago: timedelta = timedelta(0),  # type: ignore[no-untyped-def]
              ticket: str = "CHG-1", pick: int = 0):
    """Record an acceptance of the ``pick``-th host of the latest snapshot with ``status``,
    made ``ago`` and ending ``days`` after that; (the host's summary, the entry's id)."""
    latest = store.latest()
    summary = [s for s in store.summaries(latest.id, load_catalog()) if s.status is status][pick]
    made_at = datetime.now(UTC) - ago
    entry = record_acceptance(store, accept(
        summary, reason="CU upgrade planned", approver="A. Approver", ticket=ticket,
        expires_at=made_at + timedelta(days=days), accepted_by="admin", now=made_at), latest.id)
    return summary, entry


def test_an_acceptance_in_force_stands_beside_the_status_and_is_counted(demo_app):
    at, store = demo_app
    accepted, _ = _accepted(store, Status.MITIGATED, ago=timedelta(days=1))
    expired, _ = _accepted(store, Status.MITIGATED, ago=timedelta(days=40), pick=1)
    mitigated = [accepted, expired]
    at.run()
    accepted_figure = next(m for m in at.metric if m.label == "Under a risk acceptance")
    assert accepted_figure.value == "1"
    at.switch_page("views/hosts.py")
    at.run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    shown = dict(zip(table["host"], table["accepted"], strict=True))
    assert shown[mitigated[0].host].startswith("accepted until ")
    assert shown[mitigated[1].host] == ""  # expired: nothing beside its status
    assert sum(bool(v) for v in shown.values()) == 1
    statuses = dict(zip(table["host"], table["status"], strict=True))
    assert statuses[mitigated[0].host] == ["mitigated"]  # the verdict is unchanged


def test_an_accepted_host_comes_last_on_the_worklist_with_its_badge(demo_app):
    at, store = demo_app
    vulnerable, _ = _accepted(store, Status.VULNERABLE, days=7)
    at.switch_page("views/worklist.py")
    at.run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    last = table.iloc[-1]
    assert last["host"] == vulnerable.host and last["accepted"].startswith("accepted until")
    assert (table["accepted"] == "").sum() == len(table) - 1
    assert last["wave"] > table.iloc[:-1]["wave"].max()


def _by_label(widgets, label):  # type: ignore[no-untyped-def]
    return next(w for w in widgets if w.label == label)


def _host_detail(at, store, status: Status) -> str:  # type: ignore[no-untyped-def]
    """Open the Hosts page's detail of the latest snapshot's first host with ``status``."""
    host = next(s.host for s in store.summaries(store.latest().id, load_catalog())
                if s.status is status)
    at.switch_page("views/hosts.py")
    at.run()
    at.selectbox(key="detail_host").set_value(host).run()
    assert not at.exception, at.exception
    return host


def test_an_admin_records_an_acceptance_from_the_host_detail(demo_app):
    at, store = demo_app
    host = _host_detail(at, store, Status.MITIGATED)
    _by_label(at.text_input, "Reason").input("EEMS rule in place, CU upgrade in CHG-9")
    _by_label(at.text_input, "Approver").input("A. Approver")
    _by_label(at.number_input, "Accepted for (days)").set_value(30)
    _by_label(at.button, "Record the acceptance").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    (recorded,) = acceptances(store)
    assert (recorded.acceptance.host, recorded.acceptance.accepted_by) == (
        host, "local user (dashboard)")
    assert any("Risk accepted until" in i.value for i in at.info)
    assert all(e.label != "Accept this risk for a while (admins)" for e in at.expander)


def test_an_empty_reason_is_refused_and_nothing_recorded(demo_app):
    at, store = demo_app
    _host_detail(at, store, Status.VULNERABLE)
    _by_label(at.text_input, "Approver").input("A. Approver")
    _by_label(at.button, "Record the acceptance").click().run()
    assert any("needs a reason" in e.value for e in at.error)
    assert acceptances(store) == []


def test_no_acceptance_is_offered_for_a_patched_host(demo_app):
    at, store = demo_app
    _host_detail(at, store, Status.PATCHED)
    assert all(e.label != "Accept this risk for a while (admins)" for e in at.expander)


def test_auditors_read_acceptances_as_they_stood(demo_app):
    at, store = demo_app
    host, entry = _accepted(store, Status.MITIGATED, days=10, ago=timedelta(minutes=5),
                            ticket="CHG-3")
    now = datetime.now(UTC)
    record_revocation(store, entry, "lead", now - timedelta(minutes=1))
    at.switch_page("views/snapshots.py")
    at.run()
    at.date_input(key="as_of_date").set_value(now.date()).run()  # recorded today
    assert not at.exception, at.exception
    table = next(d.value for d in at.dataframe if "accepted_status" in d.value.columns)
    (row,) = table.to_dict("records")
    assert (row["host"], row["ticket"], row["approver"]) == (host.host, "CHG-3", "A. Approver")
    assert row["standing"].startswith("ended: revoked")


def test_deadlines_overdue_counts_and_due_dates_on_every_page(demo_app):
    """A manager sees overdue counts; Hosts and the Worklist filter and sort by due date."""
    at, store = demo_app
    latest = store.latest()
    assert latest is not None
    figures = {m.label: m.value for m in at.metric}
    overdue = int(figures["Overdue"])
    assert overdue > 0  # the demo fleet's vulnerable hosts have been open for weeks
    assert any("Oldest open item" in c.value for c in at.caption)

    at.switch_page("views/hosts.py")
    at.run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    needing = table[table["need"] != ""]
    assert needing["due"].notna().all() and table[table["need"] == ""]["due"].isna().all()
    at.selectbox(key="f_due").set_value("overdue").run()
    late = at.dataframe[0].value
    assert len(late) == overdue and late["overdue"].all()
    at.selectbox(key="f_order").set_value("due").run()
    ordered = at.dataframe[0].value["due"].tolist()
    assert ordered == sorted(ordered)

    at.switch_page("views/worklist.py")
    at.run()
    assert not at.exception, at.exception
    worklist = at.dataframe[0].value
    assert int(worklist["overdue"].sum()) == overdue
    at.selectbox(key="w_due").set_value("overdue").run()
    assert len(at.dataframe[0].value) == overdue
    assert any(f"**{overdue} overdue**" in m.value for m in at.markdown)


def test_the_overview_links_to_the_overdue_hosts(demo_app):
    at, _store = demo_app
    at.switch_page("views/hosts.py")
    at.query_params["due"] = "overdue"
    at.run()
    assert not at.exception, at.exception
    assert at.selectbox(key="f_due").value == "overdue"
    assert at.dataframe[0].value["overdue"].all()


def test_the_report_states_the_deadlines(demo_app):
    from datetime import UTC, datetime

    import pandas as pd

    from views.report import report_html

    _at, store = demo_app
    latest = store.latest()
    assert latest is not None
    due = pd.DataFrame({"host": ["<b>EX1</b>", "EX2"],
                        "due": pd.to_datetime(["2021-03-04T00:00:00Z", "2031-01-01T00:00:00Z"],
                                              utc=True),
                        "deadline_rule": ["vulnerable: 2 days", "later"],
                        "open_since": pd.to_datetime(["2021-03-02T00:00:00Z", None], utc=True),
                        "pruned_before": [False, False]})
    table = pd.DataFrame({"need": [], "site": [], "dag": [], "status": []})
    page = report_html(latest, store.history(), table, "verified", datetime.now(UTC),
                       deadlines=due, policy="vulnerable 2 days")
    assert "1 overdue" in page and "&lt;b&gt;EX1&lt;/b&gt;" in page and "<b>EX1</b>" not in page
    assert "Oldest open item" in page and "Policy: vulnerable 2 days" in page


def test_an_admin_accepts_a_set_chosen_by_the_filters(demo_app):
    at, store = demo_app
    at.switch_page("views/hosts.py")
    at.run()
    at.multiselect(key="f_status").set_value(["mitigated"]).run()
    table = at.dataframe[0].value
    acceptable = [h for h, flags in zip(table["host"], table["flags"], strict=True)
                  if "indicators_found" not in flags.split(", ")]
    assert len(acceptable) >= 2
    label = (f"Accept the risk of the {len(acceptable)} filtered hosts that may be accepted "
             "(admins)")
    assert any(e.label == label for e in at.expander)
    _by_label(at.text_input, "Reason").input("EEMS rule in place, CU upgrade in CHG-9")
    _by_label(at.text_input, "Approver").input("A. Approver")
    _by_label(at.button, f"Record {len(acceptable)} acceptances").click().run()
    assert not at.exception, at.exception
    assert sorted(r.acceptance.host for r in acceptances(store)) == sorted(acceptable)
    assert all(e.label != label for e in at.expander)  # none left to accept
    assert store.verify().ok


def test_a_forged_second_row_of_a_host_never_stops_the_deadline_pages(demo_app):
    """A fleet holding one name twice is forged (verify names it); the pages still show both
    rows, each with the host's earliest due time, and stop nowhere."""
    at, store = demo_app
    latest = store.latest()
    assert latest is not None
    with store.engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO results SELECT snapshot_id, position + 100000, host, status, "
            "observation, verdict, observed_in, scopes, fqdn, product, cu, build, build_source, "
            "known_build, release, site, dag, roles, flags, mitigations, cves_open, action, "
            "reason, observed_at, failure_reason, failure_detail, run_failed, indicator_count, advisories, "
            "investigation, investigation_action, fixed_at, next_scan_due, steps_missed, "
            "investigation_detail FROM results WHERE snapshot_id = ? AND status = 'vulnerable' LIMIT 1", (latest.id,))
        conn.exec_driver_sql(
            "INSERT INTO open_items SELECT snapshot_id, position + 100000, host, "
            "'2000-01-01T00:00:00+00:00', pruned_before FROM open_items WHERE snapshot_id = ? "
            "AND host = (SELECT host FROM results WHERE position >= 100000)", (latest.id,))
    assert not store.verify().ok
    for page in ("views/overview.py", "views/hosts.py", "views/worklist.py"):
        at.switch_page(page)
        at.run()
        assert not at.exception, (page, at.exception)
    at.switch_page("views/hosts.py")
    at.run()
    table = at.dataframe[0].value
    twice = table[table["host"].duplicated(keep=False)]
    assert len(twice) == 2 and twice["overdue"].all()


def test_the_catalog_page_names_the_builds_it_does_not_know_and_shades_disputed_rows(demo_app):
    from compliance.evaluate import assess
    from compliance.models import Host, Observation

    at, store = demo_app
    at.switch_page("views/catalog.py")
    at.run()
    assert not at.exception, at.exception
    assert any("Every build reported" in s.value for s in at.success)  # the demo's are known
    catalogue = at.dataframe[-1].value
    assert catalogue["disputed"].any() and len(catalogue) == len(load_catalog().releases)
    # A run that finds a build the catalogue does not know: the page names it.
    at_time = datetime.now(UTC)
    observations = [Observation(Host("EX-NEWBUILD"), at_time, "test", exsetup_version="15.1.9999.1"),
                    Observation(Host("EX-KNOWN"), at_time, "test", exsetup_version="15.1.2176.9")]
    store.save(assess(observations, load_catalog(), at_time, source="test", tool_version="t",
                      discovered=[o.host for o in observations], scope="catalog page"),
               load_catalog())
    at.run()
    assert not at.exception, at.exception
    warning = " ".join(w.value for w in at.warning)
    assert "1 host reports a build the catalogue does not know" in warning
    assert r"EX\-NEWBUILD (15\.1\.9999\.1)" in warning and "KNOWN" not in warning  # markdown-escaped
