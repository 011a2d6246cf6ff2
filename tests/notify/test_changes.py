"""notify.changes: which differences between two snapshots make a message (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from compliance.models import Flag, Status
from compliance.summary import HostSummary
from notify.changes import Change, ChangeKind, Report, host_changes, ordered

NEW, REGRESSED, REMOVED, INDICATORS = (ChangeKind.NEW_SERVER, ChangeKind.REGRESSED,
                                       ChangeKind.MITIGATION_REMOVED, ChangeKind.NEW_INDICATORS)


def host(name: str, status: Status = Status.PATCHED, *, mitigations: tuple[str, ...] = (),
         indicators: int = 0, flags: tuple[Flag, ...] = ()) -> HostSummary:
    return HostSummary(
        host=name, fqdn=f"{name}.corp.example", status=status, product="Exchange Server 2016",
        cu="CU19", build="15.1.2176.9", build_source="exsetup", known_build=True, release="",
        site="HQ", dag="", roles=(), flags=flags, mitigations=mitigations, cves_open=(),
        action="", reason="", observed_at="2026-11-25T12:00:00+00:00", failure_reason="",
        failure_detail="", run_failed=False, indicator_count=indicators)


def kinds(changes: tuple[Change, ...]) -> list[tuple[ChangeKind, str]]:
    return [(change.kind, change.host) for change in changes]


FLEET = (host("EX01"), host("EX02", Status.MITIGATED, mitigations=("EOMT",)),
         host("EX03", Status.VULNERABLE, indicators=2))


def test_an_unchanged_fleet_makes_no_change():
    assert host_changes(FLEET, FLEET) == ()


def test_a_fleet_compared_with_nothing_is_all_new():
    changes = host_changes((), FLEET)
    assert kinds(changes) == [(INDICATORS, "EX03"), (NEW, "EX01"), (NEW, "EX02"), (NEW, "EX03")]
    assert changes[0].detail == "2 compromise indicators, 0 before"
    assert changes[1].detail == "first seen, patched"


def test_names_match_case_insensitively():
    renamed = (host("ex01"), host("Ex02", Status.MITIGATED, mitigations=("EOMT",)),
               host("ex03", Status.VULNERABLE, indicators=2))
    assert host_changes(FLEET, renamed) == ()


@pytest.mark.parametrize(("before", "after", "expected"), [
    (host("EX01"), host("EX01"), []),
    (host("EX01"), host("EX01", Status.VULNERABLE), [(REGRESSED, "patched -> vulnerable")]),
    (host("EX01"), host("EX01", Status.UNKNOWN), [(REGRESSED, "patched -> unknown")]),
    (host("EX01"), host("EX01", Status.NOT_APPLICABLE), [(REGRESSED, "patched -> not_applicable")]),
    (host("EX01", Status.VULNERABLE), host("EX01", Status.UNKNOWN), []),
    (host("EX01", Status.VULNERABLE), host("EX01"), []),  # fixed: good news is not news here
])
def test_only_leaving_patched_is_a_regression(before, after, expected):
    assert [(c.kind, c.detail) for c in host_changes([before], [after])] == expected


def test_a_mitigated_host_whose_mitigation_went_is_reported():
    before = host("EX02", Status.MITIGATED, mitigations=("EOMT", "IIS rewrite"))
    after = host("EX02", Status.VULNERABLE, mitigations=("IIS rewrite",))
    assert [(c.kind, c.detail) for c in host_changes([before], [after])] == [
        (REMOVED, "EOMT no longer in place; now vulnerable")]


def test_a_patched_host_that_drops_its_mitigation_needs_none():
    before = host("EX02", Status.MITIGATED, mitigations=("EOMT",))
    assert host_changes([before], [host("EX02", Status.PATCHED)]) == ()


def test_an_unreadable_mitigation_is_not_a_removed_one():
    before = host("EX02", Status.MITIGATED, mitigations=("EOMT",))
    after = host("EX02", Status.UNKNOWN, flags=(Flag.MITIGATION_UNREADABLE,))
    assert host_changes([before], [after]) == ()


def test_a_host_not_read_has_unknown_mitigations_not_removed_ones():
    """Unreachable or stale: nothing was seen removed."""
    before = host("EX02", Status.MITIGATED, mitigations=("EOMT",))
    assert host_changes([before], [host("EX02", Status.UNKNOWN)]) == ()


def test_a_patched_host_that_regresses_and_loses_its_mitigation_makes_two_changes():
    before = host("EX01", Status.PATCHED, mitigations=("EOMT",))
    after = host("EX01", Status.VULNERABLE)
    assert kinds(host_changes([before], [after])) == [(REGRESSED, "EX01"), (REMOVED, "EX01")]


@pytest.mark.parametrize(("before", "after", "reported"), [
    (0, 0, False), (2, 2, False), (3, 2, False), (0, 1, True), (2, 5, True)])
def test_only_more_indicators_than_before_are_reported(before, after, reported):
    changes = host_changes([host("EX03", indicators=before)], [host("EX03", indicators=after)])
    assert kinds(changes) == ([(INDICATORS, "EX03")] if reported else [])
    if reported:
        assert changes[0].detail == f"{after} compromise indicator{'s' * (after != 1)}, {before} before"


def test_a_new_host_without_indicators_is_only_new():
    assert kinds(host_changes([host("EX01")], [host("EX01"), host("EX09")])) == [(NEW, "EX09")]


def test_a_host_gone_from_the_fleet_is_not_news():
    assert host_changes(FLEET, FLEET[:1]) == ()


def test_a_name_twice_counts_once():
    assert kinds(host_changes((), [host("EX01"), host("ex01")])) == [(NEW, "EX01")]


def test_the_order_is_by_kind_then_host_whatever_the_input_order():
    previous = [host(name) for name in ("b", "A", "c")]
    current = [host(name, Status.VULNERABLE) for name in ("c", "b", "A")] + [host("Z"), host("d")]
    assert kinds(host_changes(previous, current)) == [
        (REGRESSED, "A"), (REGRESSED, "b"), (REGRESSED, "c"), (NEW, "d"), (NEW, "Z")]
    assert host_changes(previous, current) == host_changes(previous[::-1], current[::-1])


def test_kinds_are_declared_most_urgent_first():
    assert list(ChangeKind)[:2] == [ChangeKind.NEW_INDICATORS, ChangeKind.REGRESSED]
    assert list(ChangeKind)[-1] is ChangeKind.NEW_SERVER


TAKEN = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def test_a_report_orders_counts_and_says_when_it_is_empty():
    changes = (Change(ChangeKind.NEW_SERVER, "EX09", "first seen, vulnerable"),
               Change(ChangeKind.OVERDUE, "EX02", "due 2026-11-20"),
               Change(ChangeKind.NEW_SERVER, "EX08", "first seen, patched"))
    report = Report(7, TAKEN, 6, changes)
    assert report.changes == ordered(changes)
    assert [c.host for c in report.changes] == ["EX02", "EX08", "EX09"]
    assert report.counts == {ChangeKind.NEW_INDICATORS: 0, ChangeKind.REGRESSED: 0,
                             ChangeKind.MITIGATION_REMOVED: 0, ChangeKind.OVERDUE: 1,
                             ChangeKind.ACCEPTANCE_EXPIRING: 0, ChangeKind.NEW_SERVER: 2}
    assert not report.empty
    assert Report(7, TAKEN, 6, ()).empty


def test_a_report_needs_an_aware_time():
    with pytest.raises(ValueError, match="time zone"):
        Report(7, datetime(2026, 11, 25, 12, 0), 6, ())
    assert Report(7, TAKEN.astimezone(timezone(timedelta(hours=2))), None, ()).empty


def test_an_investigation_that_found_indicators_is_new_indicators():
    """Review of issue 21: a detection or a possible web shell found by the investigation
    (no CVE check hit, indicator count 0) is news, once: when it is first found."""
    from dataclasses import replace

    from compliance.investigation import InvestigationState
    from notify.changes import INVESTIGATION_FOUND

    looked = replace(host("EX01"), investigation=InvestigationState.NOT_INVESTIGATED)
    found = replace(host("EX01"), investigation=InvestigationState.INDICATORS_FOUND)
    assert [(c.kind, c.host, c.detail) for c in host_changes((looked,), (found,))] == [
        (INDICATORS, "EX01", INVESTIGATION_FOUND)]
    assert host_changes((found,), (found,)) == ()  # told once
    assert host_changes((host("EX01"),), (found,))[0].kind is INDICATORS  # from a row before
    assert kinds(host_changes((), (found,))) == [(INDICATORS, "EX01"), (NEW, "EX01")]
    # More CVE check hits as well: one change, the count's.
    both = replace(found, indicator_count=1)
    assert [c.detail for c in host_changes((looked,), (both,))] == [
        "1 compromise indicator, 0 before"]
    assert "detection" in INVESTIGATION_FOUND and "\x1b" not in INVESTIGATION_FOUND
