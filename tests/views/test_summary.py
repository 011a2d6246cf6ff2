"""KPI figures: patched share of affected hosts, deltas, empty snapshot."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from views.summary import kpis, projected_completion


def _by_key(counts):
    return {k.key: k for k in kpis(counts)}


def test_patched_share_excludes_not_applicable_hosts():
    figures = _by_key({"patched": 6, "not_applicable": 2, "vulnerable": 2, "mitigated": 1,
                       "unknown": 1})
    assert figures["hosts"].display == "100%"
    assert figures["patched"].display == "60%"  # 6 of the 10 affected
    assert figures["vulnerable"].display == "2"


def test_deltas_are_signed_and_absent_when_unchanged():
    before = _by_key({"patched": 5, "vulnerable": 5})
    after = _by_key({"patched": 6, "vulnerable": 4})
    assert after["patched"].delta_text(before["patched"]) == "+10.0 pts"
    assert after["vulnerable"].delta_text(before["vulnerable"]) == "-1"
    assert after["inventory"].delta_text(before["inventory"]) is None


def test_empty_snapshot_does_not_divide_by_zero():
    figures = _by_key({})
    assert figures["patched"].display == "0%"


def test_coverage_and_indicators():
    # 20 hosts in the fleet, 10 with a fresh observation (the rest stale or unreachable).
    figures = _by_key_full({"patched": 9, "vulnerable": 1, "unknown": 10}, coverage=(10, 20),
                           indicators=2)
    assert figures["inventory"].display == "20" and figures["inventory"].label == "In fleet"
    assert figures["hosts"].display == "50%"
    assert figures["indicators"].display == "2"


def _by_key_full(counts, **kwargs):
    return {k.key: k for k in kpis(counts, **kwargs)}


def test_projection_from_the_recent_rate():
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    times = [t0 + timedelta(weeks=w) for w in range(4)]
    assert projected_completion(times, [40, 30, 20, 10]) == times[-1] + timedelta(weeks=1)
    assert projected_completion(times, [10, 10, 10, 10]) is None  # no progress
    assert projected_completion(times, [10, 12, 14, 16]) is None  # getting worse
    assert projected_completion(times[:1], [5]) is None
    assert projected_completion(times, [3, 2, 1, 0]) == times[-1]
    # only the last four snapshots count: an old fast start does not flatter the estimate
    longer = [t0 + timedelta(weeks=w) for w in range(6)]
    assert projected_completion(longer, [100, 50, 40, 30, 20, 10]) == longer[-1] + timedelta(weeks=1)


def test_out_of_support_is_a_figure_of_its_own():
    figures = _by_key_full({"patched": 3, "vulnerable": 1}, out_of_support=3)
    assert figures["out_of_support"].display == "3"
    assert figures["out_of_support"].label == "Out of support"
    assert "Exchange SE" in figures["out_of_support"].help
