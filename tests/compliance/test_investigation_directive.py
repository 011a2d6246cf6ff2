"""The directive's first step (compliance/investigation.py ``directive``): when the first full
scan after the fix is due, on each boundary, with literal dates.

CISA ED 21-02, Supplemental Direction v2 (2021-03-31): the first full MSERT scan by 2021-04-05
12:00 EDT (16:00 UTC); a server fixed later gets the days the directive gave, 5 (31 March to
5 April), from its fix. The advisory file holds both (``[triage]`` ``first_scan_by`` and
``first_scan_within_days``). Judged by the shipped March 2021 advisory.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from compliance.advisory import Advisory
from compliance.catalog import load_catalog
from compliance.investigation import (
    Checks,
    Investigation,
    InvestigationState,
    StepState,
    judge,
)
from compliance.models import Status
from compliance.traces import Scan, Traces
from tests.compliance.traces_fixtures import ROOT_FOLDERS, logs_at

S = timedelta(seconds=1)
DAY = timedelta(days=1)
WEEK = timedelta(days=7)
START = datetime(2021, 1, 5, 10, 0, tzinfo=UTC)  # the window's start (shipped)
BY = datetime(2021, 4, 5, 16, 0, tzinfo=UTC)  # 2021-04-05 12:00 EDT: the directive's date
EARLY_FIX = datetime(2021, 3, 4, 12, 0, tzinfo=UTC)  # fixed before the directive
# Fixed five days before the date, to the second: the date and fix + 5 days coincide.
CROSSING = datetime(2021, 3, 31, 16, 0, tzinfo=UTC)
LOGS = logs_at(START)


@pytest.fixture(scope="module")
def advisory() -> Advisory:
    return load_catalog().advisory


def _scan(at: datetime) -> Scan:
    return Scan(at, "full", "1.333.1000.0", True, outcome="clean")


def _judge(advisory: Advisory, fixed: datetime, scans: tuple[datetime, ...],
           now: datetime) -> Investigation:
    traces = Traces(scans=tuple(_scan(at) for at in scans), detections=(),
                    defender_available=True, log_reach=LOGS, candidates=(), fixed_at=fixed,
                    candidate_folders=ROOT_FOLDERS)
    return judge(traces, advisory, now, status=Status.PATCHED, fixed_at=fixed,
                 checks=Checks(window_days=365.0))


def _first(result: Investigation) -> tuple[StepState, datetime | None, datetime | None]:
    assert result.directive is not None
    step = result.directive.steps[0]
    return step.state, step.due, step.met_by


def test_the_shipped_first_scan_due_is_data(advisory: Advisory) -> None:
    assert advisory.triage is not None
    assert advisory.triage.first_scan_by == BY
    assert advisory.triage.first_scan_within_days == 5


@pytest.mark.parametrize(("fixed", "due"), [
    pytest.param(EARLY_FIX, BY, id="fixed-4-march"),
    pytest.param(datetime(2021, 3, 30, 23, 59, 59, tzinfo=UTC), BY, id="fixed-30-march"),
    pytest.param(CROSSING - S, BY, id="a-second-before-the-crossing"),
    pytest.param(CROSSING, BY, id="at-the-crossing"),
    pytest.param(CROSSING + S, BY + S, id="a-second-after-the-crossing"),
    pytest.param(datetime(2021, 4, 1, 12, 0, tzinfo=UTC),
                 datetime(2021, 4, 6, 12, 0, tzinfo=UTC), id="fixed-1-april"),
    pytest.param(datetime(2021, 6, 10, 8, 30, tzinfo=UTC),
                 datetime(2021, 6, 15, 8, 30, tzinfo=UTC), id="fixed-in-june"),
])
def test_the_first_scan_is_due_at_the_later_of_the_date_and_five_days_after_the_fix(
        advisory: Advisory, fixed: datetime, due: datetime) -> None:
    # Judged the moment after the fix: nothing is late yet, whenever it was fixed.
    result = _judge(advisory, fixed, (), fixed + S)
    assert _first(result) == (StepState.PENDING, due, None)


@pytest.mark.parametrize(("fixed", "due"), [
    pytest.param(EARLY_FIX, BY, id="fixed-before-31-march"),
    pytest.param(datetime(2021, 4, 2, 12, 0, tzinfo=UTC),
                 datetime(2021, 4, 7, 12, 0, tzinfo=UTC), id="fixed-after-31-march"),
])
def test_a_scan_at_or_before_the_due_time_meets_the_first_step(
        advisory: Advisory, fixed: datetime, due: datetime) -> None:
    for scan in (due - S, due):
        result = _judge(advisory, fixed, (scan,), due + DAY)
        assert _first(result) == (StepState.MET, due, scan)
        assert result.state is InvestigationState.CLEAN


@pytest.mark.parametrize(("fixed", "due"), [
    pytest.param(EARLY_FIX, BY, id="fixed-before-31-march"),
    pytest.param(datetime(2021, 4, 2, 12, 0, tzinfo=UTC),
                 datetime(2021, 4, 7, 12, 0, tzinfo=UTC), id="fixed-after-31-march"),
])
def test_a_scan_a_second_after_the_due_time_is_late(
        advisory: Advisory, fixed: datetime, due: datetime) -> None:
    result = _judge(advisory, fixed, (due + S,), due + DAY)
    # Missed, and when the scan came is kept: the weekly scans count from it.
    assert _first(result) == (StepState.MISSED, due, due + S)
    assert result.directive is not None and not result.directive.met
    week = result.directive.steps[1]
    assert (week.state, week.due) == (StepState.PENDING, due + S + WEEK)
    # The investigation itself is complete: the directive never changes the state.
    assert result.state is InvestigationState.CLEAN
    assert result.next_action == (
        "None for a compromise so far; full scan after the fix (msert.exe /F /Q) (due "
        f"{due:%Y-%m-%d %H:%M:%S} UTC) ran late, on {due + S:%Y-%m-%d %H:%M:%S} UTC; the next "
        f"scan (msert.exe /F /Q) is due by {due + S + WEEK:%Y-%m-%d %H:%M:%S} UTC "
        "(CISA ED 21-02)")


def test_no_scan_the_first_step_is_pending_until_its_due_time_then_missed(
        advisory: Advisory) -> None:
    at_due = _judge(advisory, EARLY_FIX, (), BY)
    assert _first(at_due) == (StepState.PENDING, BY, None)
    assert at_due.state is InvestigationState.NOT_INVESTIGATED
    after = _judge(advisory, EARLY_FIX, (), BY + S)
    assert _first(after) == (StepState.MISSED, BY, None)
    assert after.directive is not None
    # The weekly scans count from a first scan that has not happened: not due yet.
    assert [(s.state, s.due) for s in after.directive.steps[1:]] == [
        (StepState.PENDING, None)] * 4


def test_a_scan_before_the_fix_meets_nothing(advisory: Advisory) -> None:
    result = _judge(advisory, EARLY_FIX, (EARLY_FIX - DAY,), BY + S)
    assert _first(result) == (StepState.MISSED, BY, None)


def test_the_fix_time_unknown_leaves_the_first_step_due_without_a_time(
        advisory: Advisory) -> None:
    traces = Traces(scans=(), detections=(), defender_available=True, log_reach=LOGS,
                    candidates=())
    result = judge(traces, advisory, BY + WEEK, status=Status.PATCHED,
                   checks=Checks(window_days=365.0))
    assert _first(result) == (StepState.DUE, None, None)


def test_a_server_not_fixed_has_no_first_scan_due(advisory: Advisory) -> None:
    traces = Traces(scans=(), detections=(), defender_available=True, log_reach=LOGS,
                    candidates=())
    result = judge(traces, advisory, BY + WEEK, status=Status.MITIGATED)
    assert _first(result) == (StepState.PENDING, None, None)


def test_the_weekly_scans_count_from_the_first_scan_not_its_due_time(
        advisory: Advisory) -> None:
    first = EARLY_FIX + DAY
    result = _judge(advisory, EARLY_FIX, (first, first + WEEK), first + WEEK + DAY)
    assert result.directive is not None
    assert [(s.state, s.due) for s in result.directive.steps[:3]] == [
        (StepState.MET, BY), (StepState.MET, first + WEEK), (StepState.PENDING, first + 2 * WEEK)]
    assert replace(result.directive, steps=result.directive.steps[:2]).met
