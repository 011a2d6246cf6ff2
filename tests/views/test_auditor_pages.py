"""AppTest runs the auditors' pages (Snapshots, Catalogue) on their own, against real stores.

Each test seeds a fresh data directory: st.cache_data keys include the store URL, so no
test sees another's cached reads.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import text
from streamlit.testing.v1 import AppTest

from collectors.demo import seed_demo
from compliance.catalog import load_catalog
from compliance.evaluate import assess
from compliance.models import Host, Observation, Snapshot, Status
from store import SnapshotStore
from store.history import CATEGORY_LABELS, diff
from views.markdown import shown

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOTS = ROOT / "views" / "snapshots.py"
CATALOG = ROOT / "views" / "catalog.py"
HOSTS = ROOT / "views" / "hosts.py"
DIFF_LABELS = CATEGORY_LABELS  # the page names each category as the store does


@pytest.fixture
def store(monkeypatch, tmp_path) -> Iterator[SnapshotStore]:
    """An empty store where the pages look for it (the default SQLite file in the data dir)."""
    monkeypatch.setenv("PROXYLOGON_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PROXYLOGON_DEMO", "false")
    for name in ("PROXYLOGON_STORE_URL", "PROXYLOGON_SIGNING_KEY", "PROXYLOGON_MAX_AGE_DAYS"):
        monkeypatch.delenv(name, raising=False)
    opened = SnapshotStore.open(f"sqlite:///{tmp_path / 'compliance.db'}")
    yield opened
    opened.dispose()


@pytest.fixture
def demo(store: SnapshotStore) -> SnapshotStore:
    seed_demo(store, load_catalog(), datetime.now(UTC))
    return store


def _run(page: Path) -> AppTest:
    at = AppTest.from_file(str(page), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at


def _table(at: AppTest, column: str) -> pd.DataFrame:
    """The one dataframe on the page that has ``column``."""
    tables = [d.value for d in at.dataframe if column in d.value.columns]
    assert len(tables) == 1, [list(d.value.columns) for d in at.dataframe]
    return tables[0]


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _single(store: SnapshotStore, name: str, build: str, status: Status | None = None) -> int:
    """Save a one-host snapshot; ``status`` forges the recorded verdict's status."""
    now = datetime.now(UTC)
    catalog = load_catalog()
    observation = Observation(Host(name, roles=frozenset({"Mailbox"})), now - timedelta(hours=1),
                              "test", exsetup_version=build)
    snapshot = assess([observation], catalog, now, source="test", tool_version="test")
    if status is not None:
        (assessment,) = snapshot.assessments
        forged = replace(assessment, verdict=replace(assessment.verdict, status=status,
                                                     reason="judged by an older catalogue"))
        snapshot = Snapshot(**{**snapshot.__dict__, "assessments": (forged,)})
    return store.save(snapshot, catalog)


# -- Snapshots ------------------------------------------------------------------------------


def test_snapshots_page_lists_every_snapshot_and_offers_a_bundle(demo):
    at = _run(SNAPSHOTS)
    history = demo.history()
    listed = _table(at, "chain position")
    assert len(listed) == len(history)
    assert set(listed["id"]) == {s.id for s in history}
    assert set(listed["signed"]) == {"no"}
    assert any(history[-1].hash == c.value for c in at.code)  # the head digest
    assert not at.error and not any("verified" in s.value for s in at.success)  # not asked yet

    buttons = at.get("download_button")
    assert [b.proto.label for b in buttons] == ["Download the changes (CSV)", "Download evidence bundle",
                                               "Download the audit log (CSV)"]  # seeding
    assert at.selectbox(key="bundle_snapshot").value == history[-1].id
    assert any("verify --bundle" in c.value for c in at.caption)
    # Re-grading every host is on request: not run until asked.
    assert not any("judges every host as recorded" in s.value for s in at.success)
    at.toggle(key="reevaluate").set_value(True).run()
    assert any("judges every host as recorded" in s.value for s in at.success)


def test_verify_succeeds_on_an_intact_chain(demo):
    at = _run(SNAPSHOTS)
    at.button(key="verify").click().run()
    assert not at.exception
    assert any(f"{len(demo.history())} snapshots and {len(demo.audit_log())} audit entries, "
               "every digest and link verified" in s.value for s in at.success)
    assert not at.error


def test_verify_without_a_signing_key_says_signatures_were_not_checked(demo):
    at = _run(SNAPSHOTS)
    at.button(key="verify").click().run()
    assert any("signatures were not checked" in c.value for c in at.caption)


def test_verify_with_the_signing_key_says_signatures_were_checked(store, monkeypatch):
    monkeypatch.setenv("PROXYLOGON_SIGNING_KEY", "test-signing-key")
    signed = SnapshotStore.open(store.engine.url.render_as_string(), b"test-signing-key")
    _single(signed, "EX-SIGNED", "15.1.2176.9")
    signed.dispose()
    at = _run(SNAPSHOTS)
    at.button(key="verify").click().run()
    assert any("1 snapshots and 0 audit entries, every digest and link verified" in s.value
               for s in at.success)
    assert any("signatures were checked too" in c.value for c in at.caption)
    assert not any("not checked" in c.value for c in at.caption)


def test_verify_names_a_tampered_snapshot(demo):
    victim = demo.history()[2]
    with demo.engine.begin() as conn:  # before any verify run: data.verify is cached
        conn.execute(text("UPDATE results SET status='patched' WHERE snapshot_id=:id"),
                     {"id": victim.id})
    at = _run(SNAPSHOTS)
    at.button(key="verify").click().run()
    assert not at.exception
    assert not any("every digest and link verified" in s.value for s in at.success)
    (error,) = at.error
    assert f"snapshot #{victim.id} (position {victim.sequence})" in error.value
    assert "digest" in error.value


def test_diff_metrics_match_the_store(demo):
    history = demo.history()
    at = _run(SNAPSHOTS)
    assert at.selectbox(key="diff_a").value == history[-2].id
    assert at.selectbox(key="diff_b").value == history[-1].id
    for before in (history[-2], history[0]):
        at.selectbox(key="diff_a").set_value(before.id).run()
        assert not at.exception
        expected = diff(demo.verdicts(before.id), demo.verdicts(history[-1].id))
        metrics = _metrics(at)
        for name, label in DIFF_LABELS.items():
            assert metrics[label] == str(len(getattr(expected, name))), (before.id, label)
        changes = _table(at, "category")
        assert len(changes) == sum(len(v) for v in expected.__dict__.values())
    assert int(_metrics(at)["Newly patched"]) > 0  # the demo is a roll-out in progress


def test_as_of_shows_the_snapshot_in_force_or_says_there_was_none(demo):
    history = demo.history()
    at = _run(SNAPSHOTS)
    assert _metrics(at)["Hosts"] == str(history[-1].host_count)
    assert len(at.get("plotly_chart")) == 1

    third = history[2]
    at.date_input(key="as_of_date").set_value(third.taken_at.date()).run()
    assert any(f"**#{third.id} ·" in shown(m.value) for m in at.markdown)
    assert _metrics(at)["Vulnerable"] == str(third.counts["vulnerable"])

    day_before: date = history[0].taken_at.date() - timedelta(days=1)
    at.date_input(key="as_of_date").set_value(day_before).run()
    assert not at.exception
    assert any("No snapshot was in force" in i.value for i in at.info)
    assert "Hosts" not in _metrics(at)


def test_reevaluation_lists_hosts_today_judges_differently(store):
    _single(store, "EX-FORGED", "15.1.2176.9", status=Status.VULNERABLE)
    at = _run(SNAPSHOTS)
    assert any("Pick two different snapshots" in i.value for i in at.info)  # only one
    at.toggle(key="reevaluate").set_value(True).run()
    table = _table(at, "today's status")
    assert table.to_dict("records") == [{
        "host": "EX-FORGED", "recorded status": "vulnerable", "today's status": "patched",
        "recorded reason": "judged by an older catalogue",
        "today's reason": table["today's reason"][0]}]
    assert any("recorded verdict stays the evidence" in c.value for c in at.caption)


def test_snapshots_page_on_an_empty_store_says_what_to_do(store):
    at = _run(SNAPSHOTS)
    assert any("No snapshot yet" in i.value for i in at.info)


# -- Catalogue ------------------------------------------------------------------------------


def test_catalogue_lists_every_release_and_filters(demo):
    catalog = load_catalog()
    at = _run(CATALOG)
    releases = _table(at, "released")
    assert len(releases) == len(catalog.releases) == 373
    assert int(releases["disputed"].sum()) == sum(r.disputed for r in catalog.releases) > 0

    at.multiselect(key="cat_product").set_value(["2010"]).run()
    only_2010 = _table(at, "released")
    assert set(only_2010["product"]) == {"2010"}
    assert len(only_2010) == sum(r.product == "2010" for r in catalog.releases)

    at.multiselect(key="cat_product").set_value([]).run()
    at.text_input(key="cat_search").set_value("2176.9").run()
    assert list(_table(at, "released")["build"]) == ["15.1.2176.9"]


@pytest.mark.parametrize(("query", "builds"), [
    ("15.02.0792.010", ["15.2.792.10"]),   # the padded file version ExSetup prints
    (" 15.01.2176.009 ", ["15.1.2176.9"]),
    ("15.2.792.10", ["15.2.792.10"]),
    ("792.1", ["15.2.792.10", "15.2.792.13", "15.2.792.15"]),  # not a build: a substring
])
def test_catalogue_search_finds_a_padded_build(store, query, builds):
    at = _run(CATALOG)
    at.text_input(key="cat_search").set_value(query).run()
    assert not at.exception
    assert list(_table(at, "released")["build"]) == builds


def test_catalogue_search_keeps_substrings_for_anything_else(store):
    at = _run(CATALOG)
    at.text_input(key="cat_search").set_value("2019 cu8 mar21su").run()
    assert list(_table(at, "released")["build"]) == ["15.2.792.10"]


def test_catalogue_can_show_disputed_rows_only(store):
    catalog = load_catalog()
    disputed = [str(r.build) for r in catalog.releases if r.disputed]
    assert disputed and all(r.kind == "other" for r in catalog.releases if r.disputed)
    at = _run(CATALOG)
    at.checkbox(key="cat_disputed").check().run()
    only = _table(at, "released")
    assert list(only["build"]) == disputed and bool(only["disputed"].all())
    assert any(f"{len(disputed)} of {len(catalog.releases)} releases, {len(disputed)} disputed"
               in c.value for c in at.caption)
    # It combines with the other filters, and unchecked shows every row again.
    at.multiselect(key="cat_product").set_value(["2010"]).run()
    assert set(_table(at, "released")["product"]) <= {"2010"}
    assert len(_table(at, "released")) == sum(r.disputed and r.product == "2010"
                                              for r in catalog.releases)
    at.multiselect(key="cat_product").set_value([]).run()
    at.checkbox(key="cat_disputed").uncheck().run()
    assert len(_table(at, "released")) == len(catalog.releases)


def test_catalogue_shows_the_advisory_and_its_sources(demo):
    advisory = load_catalog().advisory
    at = _run(CATALOG)
    assert any(advisory.url in m.value and advisory.title in m.value for m in at.markdown)
    assert set(_table(at, "cve")["cve"]) == set(advisory.cve_ids)
    assert len(_table(at, "covers")) == len(advisory.mitigations)
    assert len(_table(at, "mitigated_when")) == len(advisory.products)
    assert len(_table(at, "supported_cu")) == sum(len(r.fixes) for r in advisory.products)
    captions = " ".join(c.value for c in at.caption)
    assert "compliance/data/builds.csv" in captions
    assert f"compliance/data/advisories/{advisory.id}.toml" in captions


def test_catalogue_knows_every_build_of_the_demo(demo):
    latest = demo.latest()
    assert latest is not None
    assert not [v for v in demo.verdicts(latest.id) if v.build and not v.known]
    at = _run(CATALOG)
    assert not at.warning
    assert any(f"Every build reported in snapshot #{latest.id} is in the catalogue" in s.value
               for s in at.success)


def test_catalogue_warns_about_a_build_it_does_not_know(store):
    _single(store, "EX-ODD", "15.1.2176.99")
    at = _run(CATALOG)
    (warning,) = at.warning
    assert "the catalogue does not know: EX-ODD (15.1.2176.99)" in shown(warning.value)
    assert "compliance/data/builds.csv" in warning.value
    # 2016 is out of support since 2025-10-14 (Microsoft Lifecycle): flagged beside it.
    assert list(_table(at, "flags")["flags"]) == ["not_in_catalog, out_of_support"]
    assert not at.success


def test_catalogue_page_runs_without_any_snapshot(store):
    at = _run(CATALOG)
    assert any("No snapshot yet" in i.value for i in at.info)
    assert len(_table(at, "released")) == 373


def test_verify_names_who_pruned_each_pruned_snapshot(store):
    for number in range(3):
        _single(store, f"EX-{number}", "15.1.2176.9")
    assert store.prune(1, "alice@corp.example") == 2
    at = _run(SNAPSHOTS)
    at.button(key="verify").click().run()
    assert not at.exception and not at.error
    success = " ".join(s.value for s in at.success)
    assert "2 pruned" in success and success.count("by alice") == 2, success


@pytest.mark.parametrize(("age", "warned"), [(119, False), (121, True)])
def test_catalogue_page_shows_its_age_and_warns_past_120_days(store, monkeypatch, age, warned):
    from compliance.catalog import Catalog

    _single(store, "EX-1", "15.1.2176.9")
    monkeypatch.setattr(Catalog, "age_days", lambda self, on: age)
    at = _run(CATALOG)
    assert not at.exception
    shown = [w.value for w in at.warning if "days old" in w.value]
    assert bool(shown) is warned
    if not warned:
        assert any(f"{age} days old" in c.value for c in at.caption)


def test_hosts_can_be_filtered_to_those_out_of_support(store):
    _single(store, "EX-2016", "15.1.2176.9")   # Exchange 2016: out of support since 2025-10-14
    _single(store, "EX-SE", "15.2.2562.17")    # Exchange SE: supported
    at = _run(HOSTS)
    assert "Out of support" in at.multiselect(key="f_flags").options  # shown by its label
    at.multiselect(key="f_flags").set_value(["out_of_support"]).run()
    assert list(_table(at, "host")["host"]) == ["EX-2016"]


def test_the_pages_bundle_is_signed_when_a_key_is_set(store, tmp_path):
    """Review 3, F9: the Snapshots page's bundle carries the manifest HMAC under the key."""
    from store.evidence import verify_bundle
    from views import data

    key = b"dummy-page-key"
    signed = SnapshotStore.open(store.engine.url.render_as_string(hide_password=False), key)
    snapshot_id = _single(signed, "EX-SIGNED", "15.1.2176.9")
    signed.dispose()
    path = tmp_path / "page.zip"
    path.write_bytes(data.evidence_bundle(store.engine.url.render_as_string(
        hide_password=False), snapshot_id, key))
    assert verify_bundle(path, key) == []


def test_a_link_to_hosts_no_host_matches_lists_none_not_all(store):
    """Review: ?need=mitigated only with no such host showed every host."""
    _single(store, "EX-2016", "15.1.2176.9")
    at = AppTest.from_file(str(HOSTS), default_timeout=60)
    at.query_params["need"] = "mitigated only"
    at.run()
    assert not at.exception
    assert any(c.value.startswith("0 of 1 hosts") for c in at.caption)
    at = AppTest.from_file(str(HOSTS), default_timeout=60)
    at.query_params["status"] = "patched"
    at.query_params["product"] = ""  # the "?" product bar: hosts without a known product
    at.run()
    assert any(c.value.startswith("0 of 1 hosts") for c in at.caption)


def test_the_demo_seeding_is_in_the_audit_log(demo):
    """Issue 16: the audit log said "Nothing recorded yet" beside 8 seeded snapshots."""
    entries = demo.audit_log()
    seeded = [e for e in entries if e["who"] == "demo" and e["action"] == "import"]
    assert sorted(e["snapshot_id"] for e in seeded) == [s.id for s in demo.history()]
    assert demo.verify().ok


def test_hosts_without_a_dag_can_be_chosen(demo):
    """Issue 16: the DAG chart had a "(none)" bar but the DAG filter no "(none)" option."""
    at = _run(HOSTS)
    assert "(none)" in at.multiselect(key="f_dag").options
    at.multiselect(key="f_dag").set_value(["(none)"]).run()
    table = _table(at, "dag")
    assert len(table) > 0 and set(table["dag"]) == {""}
