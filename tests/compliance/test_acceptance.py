"""compliance/acceptance.py: what may be accepted, for how long, and when an acceptance ends."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from compliance.acceptance import (
    MAX_DAYS,
    AcceptanceError,
    Ending,
    accept,
    revoke,
    standing,
)
from compliance.models import Flag, Status
from compliance.summary import HostSummary

NOW = datetime(2021, 3, 8, 9, 0, tzinfo=UTC)
EEMS_RULE = "url_rewrite_ssrf"  # an interim mitigation id of the advisory


def _host(status: Status = Status.MITIGATED, mitigations: tuple[str, ...] = (EEMS_RULE,),
          flags: tuple[Flag, ...] = ()) -> HostSummary:
    return HostSummary(
        host="EX16-01", fqdn="ex16-01.corp.example", status=status, product="2016", cu="CU17",
        build="15.1.2044.4", build_source="exsetup", known_build=True, release="CU17",
        site="HQ", dag="DAG1", roles=(), flags=flags, mitigations=mitigations, cves_open=(),
        action="", reason="", observed_at=NOW.isoformat(), failure_reason="",
        failure_detail="", run_failed=False, indicator_count=0)


def _accept(summary: HostSummary | None = None, **changes):  # type: ignore[no-untyped-def]
    fields = {"reason": "interim mitigation in place, CU upgrade planned",
              "approver": "A. Approver", "ticket": "CHG-1234",
              "expires_at": NOW + timedelta(days=30), "accepted_by": "admin@corp.example",
              "now": NOW, **changes}
    return accept(summary or _host(), **fields)


def test_an_acceptance_records_the_gap_as_it_stands():
    accepted = _accept()
    assert (accepted.host, accepted.status, accepted.mitigations) == (
        "EX16-01", Status.MITIGATED, (EEMS_RULE,))
    assert accepted.badge == "accepted until 2021-04-07 by A. Approver"
    assert standing(accepted, _host(), NOW).in_force


@pytest.mark.parametrize(("status", "flags", "message"), [
    (Status.PATCHED, (), "no gap to accept"),
    (Status.NOT_APPLICABLE, (), "no gap to accept"),
    (Status.VULNERABLE, (Flag.INDICATORS_FOUND,), "compromise indicators"),
    (Status.PATCHED, (Flag.INDICATORS_FOUND,), "no gap to accept"),
])
def test_no_gap_and_compromise_are_never_accepted(status, flags, message):
    with pytest.raises(AcceptanceError, match=message):
        _accept(_host(status, flags=flags))


def test_vulnerable_and_unknown_hosts_may_be_accepted():
    for status in (Status.VULNERABLE, Status.UNKNOWN):
        assert _accept(_host(status, mitigations=())).status is status


def test_the_expiry_is_required_after_now_and_at_most_the_maximum():
    assert _accept(expires_at=NOW + timedelta(days=MAX_DAYS)).expires_at == NOW + timedelta(
        days=MAX_DAYS)  # exactly the maximum: allowed
    with pytest.raises(AcceptanceError, match=f"more than {MAX_DAYS} days"):
        _accept(expires_at=NOW + timedelta(days=MAX_DAYS, seconds=1))
    with pytest.raises(AcceptanceError, match="more than 14 days"):
        _accept(expires_at=NOW + timedelta(days=15), max_days=14)
    for expiry in (NOW, NOW - timedelta(days=1)):
        with pytest.raises(AcceptanceError, match="after now"):
            _accept(expires_at=expiry)
    with pytest.raises(AcceptanceError, match="time zone"):
        _accept(expires_at=(NOW + timedelta(days=1)).replace(tzinfo=None))
    with pytest.raises(AcceptanceError, match="at least one day"):
        _accept(max_days=0)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("reason", "   ", "needs a reason"),
    ("approver", "", "needs an approver"),
    ("reason", "x" * 501, "longer than 500"),
    ("ticket", "T" * 501, "longer than 500"),
])
def test_reason_and_approver_are_required_and_texts_bounded(field, value, message):
    with pytest.raises(AcceptanceError, match=message):
        _accept(**{field: value})


def test_texts_are_kept_on_one_line():
    accepted = _accept(reason="planned\nfor Q2\t upgrade", ticket="")
    assert accepted.reason == "planned for Q2 upgrade" and accepted.ticket == ""


def test_it_ends_by_itself_at_the_exact_instant_of_expiry():
    accepted = _accept()
    just_before = accepted.expires_at - timedelta(microseconds=1)
    assert standing(accepted, _host(), just_before).in_force
    ended = standing(accepted, _host(), accepted.expires_at)
    assert (ended.in_force, ended.ending) == (False, Ending.EXPIRED)
    assert standing(accepted, _host(), NOW - timedelta(seconds=1)).ending is Ending.NOT_YET


@pytest.mark.parametrize(("later", "ending"), [
    (_host(Status.VULNERABLE, mitigations=()), Ending.STATUS_CHANGED),
    (_host(Status.MITIGATED, mitigations=("another_mitigation",)), Ending.MITIGATION_GONE),
    (_host(Status.UNKNOWN, mitigations=()), Ending.STATUS_CHANGED),
    (_host(Status.PATCHED, mitigations=()), Ending.STATUS_CHANGED),
    (_host(flags=(Flag.INDICATORS_FOUND,)), Ending.INDICATORS),
    (None, Ending.HOST_GONE),
])
def test_it_ends_when_the_evidence_changes_in_a_way_it_did_not_cover(later, ending):
    accepted = _accept()
    result = standing(accepted, later, NOW + timedelta(days=1))
    assert (result.in_force, result.ending) == (False, ending)
    assert result.detail


def test_a_change_it_did_cover_leaves_it_in_force():
    accepted = _accept()
    later = replace(_host(mitigations=(EEMS_RULE, "ecp_pool_stopped")), build="15.1.2044.6",
                    observed_at=(NOW + timedelta(days=2)).isoformat())
    assert standing(accepted, later, NOW + timedelta(days=2)).in_force


def test_revoked_is_ended_from_then_on_and_only_once():
    accepted = _accept()
    revoked = revoke(accepted, by="lead@corp.example", now=NOW + timedelta(days=3))
    assert standing(revoked, _host(), NOW + timedelta(days=2)).in_force  # as it stood then
    result = standing(revoked, _host(), NOW + timedelta(days=3))
    assert result.ending is Ending.REVOKED and "lead@corp.example" in result.detail
    with pytest.raises(AcceptanceError, match="already revoked"):
        revoke(revoked, by="lead@corp.example", now=NOW + timedelta(days=4))


def test_after_expiry_a_later_revocation_does_not_rewrite_why_it_ended():
    accepted = _accept(expires_at=NOW + timedelta(days=1))
    revoked = revoke(accepted, by="lead", now=NOW + timedelta(days=5))
    assert standing(revoked, _host(), NOW + timedelta(days=6)).ending is Ending.EXPIRED
