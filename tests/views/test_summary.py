"""KPI figures: patched share of affected hosts, deltas, empty snapshot."""

from __future__ import annotations

from views.summary import kpis


def _by_key(counts):
    return {k.key: k for k in kpis(counts)}


def test_patched_share_excludes_not_applicable_hosts():
    figures = _by_key({"patched": 6, "not_applicable": 2, "vulnerable": 2, "mitigated": 1,
                       "unknown": 1})
    assert figures["hosts"].display == "12"
    assert figures["patched"].display == "60%"  # 6 of the 10 affected
    assert figures["vulnerable"].display == "2"


def test_deltas_are_signed_and_absent_when_unchanged():
    before = _by_key({"patched": 5, "vulnerable": 5})
    after = _by_key({"patched": 6, "vulnerable": 4})
    assert after["patched"].delta_text(before["patched"]) == "+10.0 pts"
    assert after["vulnerable"].delta_text(before["vulnerable"]) == "-1"
    assert after["hosts"].delta_text(before["hosts"]) is None


def test_empty_snapshot_does_not_divide_by_zero():
    figures = _by_key({})
    assert figures["patched"].display == "0%"
