"""The stored form of an investigation (issue 21) and the worklist's triage order over it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from compliance.investigation import (
    Directive,
    DirectiveStep,
    Investigation,
    InvestigationState,
    StepState,
    Window,
)
from compliance.investigation_record import columns, dumps, first_scan, loads, stored_state
from compliance.models import Flag, Status
from compliance.summary import HostSummary
from compliance.worklist import rank

START = datetime(2021, 1, 5, 10, tzinfo=UTC)
FIXED = datetime(2021, 3, 10, tzinfo=UTC)


def _record() -> Investigation:
    steps = (DirectiveStep("full scan after the fix", FIXED, StepState.MET,
                           datetime(2021, 3, 11, tzinfo=UTC)),
             DirectiveStep("weekly scan 1", datetime(2021, 3, 18, tzinfo=UTC), StepState.MISSED),
             DirectiveStep("weekly scan 2", datetime(2021, 3, 25, tzinfo=UTC),
                           StepState.PENDING))
    return Investigation(InvestigationState.CLEAN, Window(START, FIXED, "ExSetup.exe's last write"),
                         ("a line",), "None for a compromise so far",
                         Directive("CISA ED 21-02", "ED21-02", steps))


def test_the_columns_come_from_the_record_and_it_round_trips():
    record = _record()
    brief = columns(record)
    assert (brief.state, brief.fixed_at, brief.next_scan_due, brief.steps_missed) == (
        InvestigationState.CLEAN, FIXED.isoformat(), "2021-03-25T00:00:00+00:00", 1)
    assert first_scan(record) == datetime(2021, 3, 11, tzinfo=UTC)
    assert loads(dumps(record)) == record
    assert columns(replace(record, window=None, directive=None)).fixed_at == ""


def test_a_row_from_before_reads_as_not_investigated_never_clean():
    assert stored_state(None, Status.PATCHED) is InvestigationState.NOT_INVESTIGATED
    assert stored_state(None, Status.NOT_APPLICABLE) is InvestigationState.NOT_APPLICABLE
    assert stored_state(InvestigationState.CLEAN, Status.PATCHED) is InvestigationState.CLEAN


def _summary(host: str, status: Status, state: InvestigationState | None,
             flags: tuple[Flag, ...] = ()) -> HostSummary:
    return HostSummary(host=host, fqdn="", status=status, product="2016", cu="CU19", build="",
                       build_source="", known_build=True, release="", site="", dag="",
                       roles=(), flags=flags, mitigations=(), cves_open=(), action="x",
                       reason="", observed_at="", failure_reason="", failure_detail="",
                       run_failed=False, indicator_count=0, investigation=state)


def test_the_triage_order_puts_indicators_first_and_uninvestigated_after_the_patch_work():
    fleet = [_summary("A-CLEAN", Status.PATCHED, InvestigationState.CLEAN),
             _summary("B-NOTLOOKED", Status.PATCHED, InvestigationState.NOT_INVESTIGATED),
             _summary("C-SHELL", Status.PATCHED, InvestigationState.INDICATORS_FOUND),
             _summary("D-OPEN", Status.VULNERABLE, InvestigationState.NOT_INVESTIGATED),
             _summary("E-HALF", Status.PATCHED, InvestigationState.INCOMPLETE),
             _summary("F-OLD", Status.PATCHED, None),
             _summary("G-SPARED", Status.NOT_APPLICABLE, InvestigationState.NOT_APPLICABLE)]
    ranked = [(item.host, item.priority) for item in rank(fleet, triage=True)]
    assert ranked == [("C-SHELL", 0), ("D-OPEN", 1), ("B-NOTLOOKED", 4), ("F-OLD", 4),
                      ("E-HALF", 5)]
    # Without the triage order the worklist is the patch work and the compromise indicators
    # (an investigation that found some counts as one: review of issue 21).
    assert [item.host for item in rank(fleet)] == ["C-SHELL", "D-OPEN"]
