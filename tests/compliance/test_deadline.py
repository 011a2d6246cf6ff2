"""compliance/deadline.py: due dates from both policy kinds, directives, and the exact instant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from compliance.deadline import (
    Basis,
    DeadlinePolicy,
    Directive,
    deadline,
    published_at,
)
from compliance.models import Flag, Status

PUBLISHED = published_at("2021-03-02")
FIRST_SEEN = datetime(2021, 3, 10, 9, 30, tzinfo=UTC)
ED_21_02 = Directive("CISA ED 21-02", datetime(2021, 3, 5, 12, 0, tzinfo=UTC),
                     frozenset({Status.VULNERABLE, Status.UNKNOWN}))


def test_publication_is_read_as_its_first_instant_in_utc():
    assert datetime(2021, 3, 2, 0, 0, tzinfo=UTC) == PUBLISHED
    with pytest.raises(ValueError):
        published_at("March 2021")


@pytest.mark.parametrize(("status", "flags", "due"), [
    (Status.VULNERABLE, (), FIRST_SEEN + timedelta(days=2)),
    (Status.MITIGATED, (), FIRST_SEEN + timedelta(days=14)),
    (Status.UNKNOWN, (), FIRST_SEEN + timedelta(days=2)),
    # patched but compromised: indicators are due at once
    (Status.PATCHED, (Flag.INDICATORS_FOUND,), FIRST_SEEN),
    # the earliest of the kinds that apply wins
    (Status.MITIGATED, (Flag.INDICATORS_FOUND,), FIRST_SEEN),
])
def test_first_seen_days_per_status(status, flags, due):
    found = deadline(status, flags, DeadlinePolicy(), open_since=FIRST_SEEN, published=PUBLISHED)
    assert found is not None and found.due_at == due and found.since == FIRST_SEEN


@pytest.mark.parametrize("status", [Status.PATCHED, Status.NOT_APPLICABLE])
def test_a_host_that_needs_nothing_has_no_deadline(status):
    assert deadline(status, (Flag.SUSPICIOUS_FILES,), DeadlinePolicy(), open_since=FIRST_SEEN,
                    published=PUBLISHED) is None


def test_published_basis_counts_from_the_advisory_whatever_the_host():
    policy = DeadlinePolicy(basis=Basis.PUBLISHED)
    found = deadline(Status.MITIGATED, (), policy, open_since=FIRST_SEEN, published=PUBLISHED)
    assert found is not None
    assert found.due_at == datetime(2021, 3, 16, tzinfo=UTC)
    assert "publication" in found.rule


def test_an_unknown_start_counts_from_publication_the_earliest():
    found = deadline(Status.VULNERABLE, (), DeadlinePolicy(), open_since=None,
                     published=PUBLISHED)
    assert found is not None and found.due_at == datetime(2021, 3, 4, tzinfo=UTC)


def test_a_directive_is_earlier_for_the_statuses_it_names_only():
    policy = DeadlinePolicy(directives=(ED_21_02,))
    vulnerable = deadline(Status.VULNERABLE, (), policy, open_since=FIRST_SEEN,
                          published=PUBLISHED)
    mitigated = deadline(Status.MITIGATED, (), policy, open_since=FIRST_SEEN,
                         published=PUBLISHED)
    assert vulnerable is not None and vulnerable.due_at == ED_21_02.due
    assert vulnerable.rule == "CISA ED 21-02" and vulnerable.since is None
    assert mitigated is not None and mitigated.due_at == FIRST_SEEN + timedelta(days=14)


def test_a_later_directive_does_not_push_a_deadline_back():
    late = Directive("board deadline", datetime(2022, 1, 1, tzinfo=UTC),
                     frozenset({Status.VULNERABLE}))
    found = deadline(Status.VULNERABLE, (), DeadlinePolicy(directives=(late,)),
                     open_since=FIRST_SEEN, published=PUBLISHED)
    assert found is not None and found.due_at == FIRST_SEEN + timedelta(days=2)


def test_overdue_from_the_exact_due_instant_on():
    found = deadline(Status.VULNERABLE, (), DeadlinePolicy(), open_since=FIRST_SEEN,
                     published=PUBLISHED)
    assert found is not None
    due = found.due_at
    assert not found.overdue(due - timedelta(microseconds=1))
    assert found.overdue(due)
    assert found.overdue(due + timedelta(microseconds=1))
    # the same instant in another offset is the same instant
    assert found.overdue(due.astimezone(timezone(timedelta(hours=-5))))


def test_a_directive_boundary_is_exact_too():
    found = deadline(Status.UNKNOWN, (), DeadlinePolicy(directives=(ED_21_02,)),
                     open_since=FIRST_SEEN, published=PUBLISHED)
    assert found is not None
    assert not found.overdue(datetime(2021, 3, 5, 11, 59, 59, 999999, tzinfo=UTC))
    assert found.overdue(datetime(2021, 3, 5, 12, 0, tzinfo=UTC))


def test_a_kind_without_days_is_due_at_once():
    policy = DeadlinePolicy(days={"vulnerable": 2.0})
    found = deadline(Status.MITIGATED, (), policy, open_since=FIRST_SEEN, published=PUBLISHED)
    assert found is not None and found.due_at == FIRST_SEEN


def test_naive_times_are_refused():
    with pytest.raises(ValueError, match="time zone"):
        deadline(Status.VULNERABLE, (), DeadlinePolicy(), open_since=datetime(2021, 3, 10),
                 published=PUBLISHED)


def test_the_policy_describes_itself_in_one_line():
    text = DeadlinePolicy(directives=(ED_21_02,)).describe()
    assert "vulnerable 2 days" in text and "mitigated 14 days" in text
    assert "CISA ED 21-02 by 2021-03-05 12:00 UTC (unknown, vulnerable)" in text
    assert "\n" not in text


def test_a_start_at_the_calendars_edge_counts_from_publication():
    edge = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14)))
    found = deadline(Status.VULNERABLE, (), DeadlinePolicy(), open_since=edge,
                     published=PUBLISHED)
    assert found is not None and found.due_at == PUBLISHED + timedelta(days=2)


def test_an_investigation_that_found_indicators_starts_the_indicators_clock():
    """Review of issue 21: a Defender/MSERT detection or a web-shell candidate (the
    investigation's ``indicators_found``, no CVE check hit) is a compromise indicator for the
    deadline too, patched or not."""
    from compliance.deadline import INDICATORS, kinds
    from compliance.investigation import InvestigationState

    found = InvestigationState.INDICATORS_FOUND
    assert kinds(Status.PATCHED, (), found) == (INDICATORS,)
    assert kinds(Status.PATCHED, (), InvestigationState.NOT_INVESTIGATED) == ()
    due = deadline(Status.PATCHED, (), DeadlinePolicy(), open_since=FIRST_SEEN,
                   published=PUBLISHED, investigation=found)
    assert due is not None and due.due_at == FIRST_SEEN
    assert due.rule.startswith("compromise indicators")
    # A vulnerable host with a detection: the earliest (indicators, 0 days) wins.
    due = deadline(Status.VULNERABLE, (), DeadlinePolicy(), open_since=FIRST_SEEN,
                   published=PUBLISHED, investigation=found)
    assert due is not None and due.due_at == FIRST_SEEN
    assert deadline(Status.PATCHED, (), DeadlinePolicy(), open_since=FIRST_SEEN,
                    published=PUBLISHED, investigation=InvestigationState.CLEAN) is None
