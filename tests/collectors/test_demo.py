"""The demo fleet: realistic mix, fictional names, history, same path as real data."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from collectors.demo import WEEKS, demo_observations, fleet_size, seed_demo, snapshot_times
from compliance.evaluate import evaluate
from compliance.models import Flag, Status

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def test_fleet_size_is_within_the_brief():
    assert 60 <= fleet_size() <= 100


def test_names_are_fictional(shipped_catalog):
    for obs in demo_observations(shipped_catalog, WEEKS - 1, NOW):
        assert obs.host.name.startswith(("DEMO-",))
        assert obs.host.fqdn is not None and obs.host.fqdn.endswith(".example")


def test_latest_snapshot_has_every_kind_of_host(empty_store, shipped_catalog):
    ids = seed_demo(empty_store, shipped_catalog, NOW)
    assert len(ids) == WEEKS
    latest = empty_store.assessments(ids[-1])
    statuses = Counter(a.verdict.status for a in latest)
    for status in Status:
        assert statuses[status] >= 1, status
    flags = Counter(f for a in latest for f in a.verdict.flags)
    assert flags[Flag.UNSUPPORTED_CU] >= 2
    assert flags[Flag.CU_UPDATE_REQUIRED] >= 1
    assert flags[Flag.INDICATORS_FOUND] == 1
    assert {a.verdict.product for a in latest} >= {
        "2010", "2013", "2016", "2019"}
    assert len({a.observation.host.site for a in latest}) >= 4
    assert len({a.observation.host.dag for a in latest if a.observation.host.dag}) >= 4
    reasons = {a.observation.failure.reason for a in latest if a.observation.failure}
    assert len(reasons) >= 3  # several classes of unreachable


def test_history_shows_a_rollout_in_progress(empty_store, shipped_catalog):
    seed_demo(empty_store, shipped_catalog, NOW)
    history = empty_store.history()
    patched = [s.counts["patched"] for s in history]
    assert patched[0] < patched[len(patched) // 2] < patched[-1]
    assert history[-1].taken_at <= NOW
    assert NOW - history[-1].taken_at < timedelta(days=1)  # fresh: not stale by default
    assert history[-1].taken_at - history[0].taken_at >= timedelta(weeks=WEEKS - 1)


def test_stored_verdicts_are_what_evaluate_gives(empty_store, shipped_catalog):
    ids = seed_demo(empty_store, shipped_catalog, NOW)
    taken = snapshot_times(NOW)[-1]
    for assessment in empty_store.assessments(ids[-1]):
        assert evaluate(assessment.observation, shipped_catalog, taken) == assessment.verdict


def test_the_demo_shows_the_later_advisories(empty_store, shipped_catalog):
    """Issue 19: hosts patched for March 2021 but open to ProxyShell, one with the May 2021 SU,
    and a 2019 CU12 server whose ProxyNotShell rule (EOMTv2's, read by content) mitigates."""
    ids = seed_demo(empty_store, shipped_catalog, NOW)
    summaries = {s.host: s for s in empty_store.summaries(ids[-1], shipped_catalog)}
    shell = "2021-05-proxyshell"
    assert any(s.status is Status.PATCHED and s.status_for(shell) is Status.VULNERABLE
               for s in summaries.values())
    assert any(s.build == "15.1.2176.14" and s.status_for(shell) is Status.PATCHED
               for s in summaries.values())
    assert summaries["DEMO-EX19NEW01"].status_for("2022-11-proxynotshell") is Status.MITIGATED
    assert summaries["DEMO-EX19NEW02"].worst() is Status.PATCHED
