"""compliance/fleet.py: one fleet from many runs. Boundary cases by name:

- a partial run (an inventory of two, an import) carries every other member, never removes;
- a complete discovery of a scope removes the members of that scope it did not find, and only
  those: a member also listed in an inventory file or imported stays;
- a carried member keeps its observation and observed_in, and is re-graded at the new time,
  so an old observation turns unknown (stale) and never looks fresher than it was;
- a member without recorded scopes (from a format 1 snapshot) is never removed.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from compliance.evaluate import Policy, assess, evaluate
from compliance.fleet import (
    IMPORT,
    INVENTORY,
    compose,
    directory_scope,
    fresh_count,
    is_fresh,
    never_probed,
    observed_count,
)
from compliance.models import Assessment, Failure, Host, Observation, Reason, Status

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
AD = directory_scope("CN=Configuration,DC=corp,DC=example")
PATCHED, VULNERABLE = "15.1.2176.9", "15.1.2176.2"


def _obs(name: str, build: str, at: datetime) -> Observation:
    return Observation(Host(name), at, "test", exsetup_version=build)


def _run(catalog, at, hosts: dict[str, str], scopes=(AD,), complete=(AD,), source="collect"):
    return assess([_obs(name, build, at) for name, build in hosts.items()], catalog, at,
                  source=source, tool_version="t", scopes=lambda _host: tuple(scopes),
                  complete_scopes=tuple(complete))


def _grader(catalog, days: int = 7):
    policy = Policy(max_age=timedelta(days=days))
    return lambda obs, at: evaluate(obs, catalog, at, policy)


def _previous(snapshot, snapshot_id: int) -> list[Assessment]:
    """A saved snapshot's members as the store hands them to the next composition."""
    from dataclasses import replace

    return [a if a.carried else replace(a, observed_in=snapshot_id)
            for a in snapshot.assessments]


def _status(snapshot) -> dict[str, str]:
    return {a.observation.host.name: a.verdict.status.value for a in snapshot.assessments}


def test_a_partial_run_carries_every_other_member(shipped_catalog):
    full = compose([], _run(shipped_catalog, NOW - timedelta(days=1),
                            {"EX1": PATCHED, "EX2": VULNERABLE, "EX3": VULNERABLE}),
                   _grader(shipped_catalog)).snapshot
    partial = _run(shipped_catalog, NOW, {"EDGE1": PATCHED}, scopes=(INVENTORY,), complete=())
    result = compose(_previous(full, 1), partial, _grader(shipped_catalog))
    assert _status(result.snapshot) == {"EX1": "patched", "EX2": "vulnerable",
                                        "EX3": "vulnerable", "EDGE1": "patched"}
    assert result.removed == ()
    carried = {a.observation.host.name: a for a in result.snapshot.assessments if a.carried}
    assert set(carried) == {"EX1", "EX2", "EX3"}
    ex2 = carried["EX2"]
    assert ex2.observed_in == 1 and ex2.observation.observed_at == NOW - timedelta(days=1)
    assert ex2.verdict.as_of == NOW  # re-graded at the new snapshot's time
    assert ex2.verdict.evidence[0].kind == "carried" and "snapshot #1" in ex2.verdict.evidence[0].value
    assert observed_count(result.snapshot) == 1 and fresh_count(result.snapshot.assessments) == 4


def test_an_import_into_an_empty_fleet_is_the_fleet(shipped_catalog):
    run = _run(shipped_catalog, NOW, {"EXHAND01": VULNERABLE}, scopes=(IMPORT,), complete=())
    result = compose([], run, _grader(shipped_catalog))
    assert _status(result.snapshot) == {"EXHAND01": "vulnerable"}
    assert result.snapshot.assessments[0].scopes == (IMPORT,)
    assert not result.snapshot.assessments[0].carried


def test_a_carried_member_goes_stale_and_becomes_unknown(shipped_catalog):
    first = compose([], _run(shipped_catalog, NOW - timedelta(days=10), {"EX1": PATCHED}),
                    _grader(shipped_catalog)).snapshot
    assert _status(first) == {"EX1": "patched"}
    later = compose(_previous(first, 1),
                    _run(shipped_catalog, NOW, {"OTHER": PATCHED}, scopes=(IMPORT,), complete=()),
                    _grader(shipped_catalog, days=7)).snapshot
    ex1 = next(a for a in later.assessments if a.observation.host.name == "EX1")
    assert ex1.verdict.status is Status.UNKNOWN and ex1.verdict.unknown_reason is Reason.STALE
    assert not is_fresh(ex1.verdict) and fresh_count(later.assessments) == 1
    # Nothing looks fresher than it was: the observation time is the original one.
    assert ex1.observation.observed_at == NOW - timedelta(days=10)


def test_a_complete_discovery_removes_what_it_no_longer_finds_a_partial_run_never(shipped_catalog):
    grade = _grader(shipped_catalog)
    full = compose([], _run(shipped_catalog, NOW - timedelta(days=2),
                            {"EX1": PATCHED, "EX2": VULNERABLE, "DECOM": VULNERABLE}),
                   grade).snapshot
    # A partial run without DECOM: DECOM stays.
    partial = compose(_previous(full, 1),
                      _run(shipped_catalog, NOW - timedelta(days=1), {"EX1": PATCHED},
                           scopes=(INVENTORY,), complete=()), grade)
    assert "DECOM" in _status(partial.snapshot) and partial.removed == ()
    # The next full discovery of the same scope no longer finds DECOM: it leaves the fleet.
    rediscovered = compose(_previous(partial.snapshot, 2),
                           _run(shipped_catalog, NOW, {"EX1": PATCHED, "EX2": PATCHED}), grade)
    assert set(_status(rediscovered.snapshot)) == {"EX1", "EX2"}
    assert [a.observation.host.name for a in rediscovered.removed] == ["DECOM"]


def test_a_discovery_of_another_scope_removes_nobody(shipped_catalog):
    grade = _grader(shipped_catalog)
    forest_a = compose([], _run(shipped_catalog, NOW - timedelta(days=1), {"A1": PATCHED}),
                       grade).snapshot
    other = directory_scope("CN=Configuration,DC=other,DC=example")
    result = compose(_previous(forest_a, 1),
                     _run(shipped_catalog, NOW, {"B1": VULNERABLE}, scopes=(other,),
                          complete=(other,)), grade)
    assert _status(result.snapshot) == {"A1": "patched", "B1": "vulnerable"}
    assert result.removed == ()


def test_a_member_of_two_discoveries_stays_while_one_lists_it(shipped_catalog):
    grade = _grader(shipped_catalog)
    site = directory_scope("CN=Configuration,DC=corp,DC=example", [("include_sites", ["HQ"])])
    first = compose([], _run(shipped_catalog, NOW - timedelta(days=1), {"EX9": PATCHED},
                             scopes=(AD, site)), grade).snapshot
    assert first.assessments[0].scopes == tuple(sorted((AD, site)))
    result = compose(_previous(first, 1), _run(shipped_catalog, NOW, {"EX1": PATCHED}), grade)
    ex9 = next(a for a in result.snapshot.assessments if a.observation.host.name == "EX9")
    assert ex9.scopes == (site,) and ex9.carried and result.removed == ()


def test_a_host_ad_lists_is_a_member_through_ad_alone(shipped_catalog):
    # Listed in an inventory file too, then imported by hand: AD still decides.
    grade = _grader(shipped_catalog)
    first = compose([], _run(shipped_catalog, NOW - timedelta(days=2), {"EDGE": PATCHED},
                             scopes=(AD, INVENTORY)), grade).snapshot
    assert first.assessments[0].scopes == (AD,)
    imported = compose(_previous(first, 1),
                       _run(shipped_catalog, NOW - timedelta(days=1), {"edge": PATCHED},
                            scopes=(IMPORT,), complete=()), grade).snapshot
    assert imported.assessments[0].scopes == (AD,)
    gone = compose(_previous(imported, 2), _run(shipped_catalog, NOW, {"EX1": PATCHED}), grade)
    assert [a.observation.host.name for a in gone.removed] == ["edge"]


def test_an_older_document_never_replaces_a_newer_observation(shipped_catalog):
    grade = _grader(shipped_catalog)
    first = compose([], _run(shipped_catalog, NOW - timedelta(hours=1), {"EX1": VULNERABLE}),
                    grade).snapshot
    # A hand-run document of two days ago, imported now, that says "patched".
    document = assess([_obs("EX1", PATCHED, NOW - timedelta(days=2))], shipped_catalog, NOW,
                      source="import", tool_version="t", scopes=lambda _host: (IMPORT,))
    late = compose(_previous(first, 1), document, grade).snapshot
    (ex1,) = late.assessments
    assert ex1.verdict.status is Status.VULNERABLE and ex1.carried and ex1.observed_in == 1
    assert observed_count(late) == 0


def test_a_member_observed_in_the_future_is_replaced_by_a_newer_run(shipped_catalog):
    grade = _grader(shipped_catalog)
    future = assess([_obs("EX1", PATCHED, NOW + timedelta(days=3))], shipped_catalog, NOW,
                    source="import", tool_version="t", scopes=lambda _h: (IMPORT,))
    first = compose([], future, grade).snapshot
    assert first.assessments[0].verdict.unknown_reason is Reason.FUTURE
    later = compose(_previous(first, 1),
                    _run(shipped_catalog, NOW + timedelta(hours=1), {"EX1": VULNERABLE}), grade)
    (ex1,) = later.snapshot.assessments
    assert ex1.verdict.status is Status.VULNERABLE and not ex1.carried


def test_a_retired_host_leaves_whatever_its_scopes(shipped_catalog):
    grade = _grader(shipped_catalog)
    first = compose([], _run(shipped_catalog, NOW - timedelta(days=1),
                             {"EXTYPO": PATCHED, "EX1": PATCHED}, scopes=(IMPORT,), complete=()),
                    grade).snapshot
    retire = replace(_run(shipped_catalog, NOW, {}, complete=()), retired=("extypo",))
    result = compose(_previous(first, 1), retire, grade)
    assert _status(result.snapshot) == {"EX1": "patched"}
    assert [a.observation.host.name for a in result.removed] == ["EXTYPO"]


def test_a_member_without_recorded_scopes_is_never_removed(shipped_catalog):
    grade = _grader(shipped_catalog)
    legacy = Assessment(_obs("OLD", PATCHED, NOW - timedelta(days=1)),
                        evaluate(_obs("OLD", PATCHED, NOW - timedelta(days=1)), shipped_catalog,
                                 NOW - timedelta(days=1)), observed_in=1)
    result = compose([legacy], _run(shipped_catalog, NOW, {"EX1": PATCHED}), grade)
    assert set(_status(result.snapshot)) == {"OLD", "EX1"} and result.removed == ()


def test_names_match_case_insensitively_and_fresh_keeps_fleet_order(shipped_catalog):
    grade = _grader(shipped_catalog)
    first = compose([], _run(shipped_catalog, NOW - timedelta(days=1),
                             {"EX1": VULNERABLE, "EX2": VULNERABLE}), grade).snapshot
    result = compose(_previous(first, 1),
                     _run(shipped_catalog, NOW, {"ex2": PATCHED}, scopes=(IMPORT,), complete=()),
                     grade).snapshot
    assert [a.observation.host.name for a in result.assessments] == ["EX1", "ex2"]
    ex2 = result.assessments[1]
    assert ex2.verdict.status is Status.PATCHED and not ex2.carried
    assert ex2.scopes == (AD,)  # listed by AD: an import does not make it a member twice


def test_a_failed_probe_does_not_erase_a_fresh_reading(shipped_catalog):
    # The run did not reach the host (the README's case for a hand-run probe): its last reading
    # stands until it is stale, with the failed attempt as evidence; it is not "observed".
    grade = _grader(shipped_catalog)
    first = compose([], _run(shipped_catalog, NOW - timedelta(days=1), {"EX1": VULNERABLE},
                             scopes=(IMPORT,), complete=()), grade).snapshot
    failed = Observation(Host("EX1"), NOW, "winrm", failure=Failure("connect", "refused"))
    run = assess([failed], shipped_catalog, NOW, source="collect", tool_version="t",
                 scopes=lambda _host: (INVENTORY,))
    result = compose(_previous(first, 1), run, grade).snapshot
    (ex1,) = result.assessments
    assert ex1.verdict.status is Status.VULNERABLE and ex1.carried and ex1.attempt is None
    assert [e.kind for e in ex1.verdict.evidence[:2]] == ["carried", "collection_failed"]
    assert ex1.verdict.evidence[1].value == "connect: refused"
    assert observed_count(result) == 0 and fresh_count(result.assessments) == 1


def test_a_failed_probe_replaces_a_reading_that_is_no_longer_fresh(shipped_catalog):
    grade = _grader(shipped_catalog)
    first = compose([], _run(shipped_catalog, NOW - timedelta(days=9), {"EX1": PATCHED}),
                    grade).snapshot
    failed = Observation(Host("EX1"), NOW, "winrm", failure=Failure("connect", "refused"))
    run = assess([failed], shipped_catalog, NOW, source="collect", tool_version="t",
                 scopes=lambda _host: (AD,), complete_scopes=(AD,))
    result = compose(_previous(first, 1), run, grade).snapshot
    (ex1,) = result.assessments
    assert ex1.verdict.unknown_reason is Reason.UNREACHABLE and not ex1.carried
    assert "connect" in ex1.verdict.reason and ex1.scopes == (AD,)
    assert fresh_count(result.assessments) == 0


def test_an_older_document_replaces_a_failure(shipped_catalog):
    # A failure is no reading: a hand-run document from before it is still the latest reading.
    grade = _grader(shipped_catalog)
    failed = assess([Observation(Host("EX1"), NOW - timedelta(hours=1), "winrm",
                                 failure=Failure("connect", "refused"))], shipped_catalog,
                    NOW - timedelta(hours=1), source="collect", tool_version="t",
                    scopes=lambda _host: (INVENTORY,))
    first = compose([], failed, grade).snapshot
    document = assess([_obs("EX1", VULNERABLE, NOW - timedelta(days=1))], shipped_catalog, NOW,
                      source="import", tool_version="t", scopes=lambda _host: (IMPORT,))
    (ex1,) = compose(_previous(first, 1), document, grade).snapshot.assessments
    assert ex1.verdict.status is Status.VULNERABLE and not ex1.carried


def test_a_never_probed_member_is_unknown(shipped_catalog):
    verdict = evaluate(never_probed(Host("NEW1"), "discovery"), shipped_catalog, NOW)
    assert verdict.status is Status.UNKNOWN and verdict.unknown_reason is Reason.NO_OBSERVATION
    assert "never probed" in verdict.reason and not is_fresh(verdict)


@pytest.mark.parametrize(("filters", "expected"), [
    ((), "ad:cn=configuration,dc=corp,dc=example"),
    ((("include_sites", ("Berlin", "Athens")),),
     "ad:cn=configuration,dc=corp,dc=example [include_sites=athens,berlin]"),
    ((("include_sites", ()), ("only", ("EX1",))),
     "ad:cn=configuration,dc=corp,dc=example [only=ex1]"),
])
def test_directory_scope_keys(filters, expected):
    assert directory_scope("CN=Configuration,DC=corp,DC=example", filters) == expected
