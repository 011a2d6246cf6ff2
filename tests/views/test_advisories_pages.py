"""The pages per advisory (issue 19) on the demo fleet: the frame's selector, the host x
advisory matrix, the headline and worklist per advisory, a host's plan and SU level. The
demo's 2016 CU19 servers on the March 2021 SU are patched for ProxyLogon and vulnerable to
ProxyShell, with the May 2021 SU (KB5003435) as their next step."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from compliance.catalog import load_catalog
from compliance.models import Status
from store import SnapshotStore

SHELL, NOTSHELL = "2021-05-proxyshell", "2022-11-proxynotshell"
MARCH_ONLY = "15.1.2176.9"  # 2016 CU19 Mar21SU


def _march_only(store: SnapshotStore) -> str:
    """A demo host patched for March 2021 (on its SU) and not for ProxyShell."""
    summaries = store.summaries(store.latest().id, load_catalog())
    return next(s.host for s in summaries if s.build == MARCH_ONLY
                and s.status is Status.PATCHED and s.status_for(SHELL) is Status.VULNERABLE)


def _frame(at: AppTest, choice: str) -> None:
    at.sidebar.selectbox(key="advisory").set_value(choice).run()
    assert not at.exception, at.exception


def test_the_selector_defaults_to_march_2021_and_offers_every_advisory(demo_app):
    at, _store = demo_app
    selector = at.sidebar.selectbox(key="advisory")
    assert selector.value == "2021-03-proxylogon"
    assert selector.options[-1] == "All advisories (worst)" and len(selector.options) == 4


def test_the_matrix_shows_a_host_patched_for_march_but_open_to_proxyshell(demo_app):
    at, store = demo_app
    host = _march_only(store)
    at.switch_page("views/hosts.py")
    at.run()
    assert not at.exception, at.exception
    (matrix,) = [d.value for d in at.dataframe if SHELL in d.value.columns]
    row = matrix[matrix["host"] == host].iloc[0]
    assert row["2021-03-proxylogon"] == ["patched"] and row[SHELL] == ["vulnerable"]
    assert row["worst"] == ["vulnerable"]


def test_the_hosts_page_judges_by_the_chosen_advisory_with_the_right_action_and_plan(demo_app):
    at, store = demo_app
    host = _march_only(store)
    at.switch_page("views/hosts.py")
    at.run()
    _frame(at, SHELL)
    table = next(d.value for d in at.dataframe if "need" in d.value.columns
                 or "su_level" in d.value.columns)
    row = table[table["host"] == host].iloc[0]
    assert row["status"] == ["vulnerable"] and "KB5003435" in row["action"]
    assert row["su_level"].endswith("behind")  # the May 2021 SU is newer than its build
    at.selectbox(key="detail_host").set_value(host).run()
    assert not at.exception, at.exception
    text = "\n".join(m.value for m in at.markdown)
    assert "**Upgrade plan**" in text
    steps = [line for line in text.splitlines() if line[:2] in ("1.", "2.", "3.")]
    assert steps and "KB5003435" in steps[0]  # the quick step: the May 2021 SU for CU19
    assert any("CU23" in line for line in steps)  # then the newest CU of the line
    by_advisory = next(d.value for d in at.dataframe if "advisory" in d.value.columns)
    # Every advisory once, the detail's chosen one included (not the chosen one twice).
    assert len(by_advisory) == 3 and by_advisory["advisory"].nunique() == 3
    assert "March 2021" in " ".join(by_advisory["advisory"])


def test_the_headline_and_worklist_follow_the_chosen_advisory(demo_app):
    at, store = demo_app
    host = _march_only(store)
    latest = store.latest()
    summaries = store.summaries(latest.id, load_catalog())
    open_shell = sum(1 for s in summaries if s.status_for(SHELL) is not Status.PATCHED
                     and s.status_for(SHELL) is not Status.NOT_APPLICABLE)
    _frame(at, SHELL)
    metrics = {m.label: m.value for m in at.metric}
    patched = sum(1 for s in summaries if s.status_for(SHELL) is Status.PATCHED)
    affected = len(summaries) - sum(1 for s in summaries
                                    if s.status_for(SHELL) is Status.NOT_APPLICABLE)
    assert metrics["Patched"] == f"{100 * patched / affected:.0f}%"
    assert metrics["Vulnerable"] == str(sum(1 for s in summaries
                                            if s.status_for(SHELL) is Status.VULNERABLE))
    assert open_shell > sum(1 for s in summaries if not s.status.compliant)
    at.switch_page("views/worklist.py")
    at.run()
    assert not at.exception, at.exception
    worklist = next(d.value for d in at.dataframe if "wave" in d.value.columns)
    row = worklist[worklist["host"] == host].iloc[0]
    assert "KB5003435" in row["next_step"] and row["next_kb"] == "KB5003435"
    assert row["next_link"] == "https://support.microsoft.com/help/5003435"
    # March 2021 alone: the host needs no patch work; it is listed only when its
    # investigation after the fix is not done (issue 21), after the patch work.
    _frame(at, "2021-03-proxylogon")
    worklist = next(d.value for d in at.dataframe if "wave" in d.value.columns)
    listed = worklist[worklist["host"] == host]
    assert listed.empty or int(listed["priority"].iloc[0]) >= 4


def test_all_advisories_show_each_host_at_its_worst(demo_app):
    at, store = demo_app
    host = _march_only(store)
    at.switch_page("views/hosts.py")
    at.run()
    _frame(at, "all")
    table = next(d.value for d in at.dataframe if "su_level" in d.value.columns)
    row = table[table["host"] == host].iloc[0]
    assert row["status"] == ["vulnerable"] and f"{SHELL}:" in row["action"]


def test_the_catalogue_page_shows_every_advisory_and_the_newest_release_per_cu(demo_app):
    at, _store = demo_app
    at.switch_page("views/catalog.py")
    at.run()
    _frame(at, "all")
    text = "\n".join(m.value for m in at.markdown)
    assert "ProxyShell" in text and "ProxyNotShell" in text
    newest = next(d.value for d in at.dataframe if "newest build" in d.value.columns)
    row = newest[newest["product and CU"] == "2016 CU19"].iloc[0]
    assert row["newest build"] == "15.1.2176.14"  # the May 2021 SU, CU19's last


def test_a_snapshot_judged_by_march_only_never_reads_compliant_for_the_others(
        monkeypatch, tmp_path):
    from datetime import UTC, datetime, timedelta

    from compliance.evaluate import assess
    from compliance.models import Host, Observation
    from tests.views.apps import open_app

    catalog = load_catalog()
    now = datetime.now(UTC)
    run = assess([Observation(Host("EX1", "ex1.corp.example"), now - timedelta(minutes=5),
                              "test", exsetup_version="15.2.1748.49")],  # every fix in
                 catalog, now, source="test", tool_version="t")
    store = SnapshotStore.open(f"sqlite:///{tmp_path / 'compliance.db'}")
    store.save(run, catalog)  # no other advisory: March 2021 only
    store.dispose()
    at = open_app(monkeypatch, tmp_path, demo=False)
    at.switch_page("views/hosts.py")
    at.run()
    assert not at.exception, at.exception
    for choice in (SHELL, "all"):
        _frame(at, choice)
        table = next(d.value for d in at.dataframe if "su_level" in d.value.columns)
        assert list(table["status"]) == [["unknown"]], choice
        assert any("holds the March 2021 verdicts only" in w.value for w in at.warning)
    _frame(at, "2021-03-proxylogon")
    table = next(d.value for d in at.dataframe if "su_level" in d.value.columns)
    assert list(table["status"]) == [["patched"]] and list(table["su_level"]) == ["current"]


def test_the_host_detail_follows_the_chosen_advisory_and_offers_no_march_acceptance(demo_app):
    at, store = demo_app
    host = next(s.host for s in store.summaries(store.latest().id, load_catalog())
                if s.status is Status.MITIGATED and s.status_for(SHELL) is Status.VULNERABLE)
    at.switch_page("views/hosts.py")
    at.run()
    at.selectbox(key="detail_host").set_value(host).run()
    # March 2021 (the default): the mitigated host may be accepted by an admin.
    assert any(b.label == "Record the acceptance" for b in at.button)
    _frame(at, SHELL)
    text = "\n".join(m.value for m in at.markdown)
    assert "**Vulnerable**" in text and "**Next action:** Install" in text
    # An acceptance accepts a gap of the March 2021 verdict: not offered under another one.
    assert not any(b.label == "Record the acceptance" for b in at.button)
    table = next(d.value for d in at.dataframe if "su_level" in d.value.columns)
    assert set(table["accepted"]) <= {""}
