"""compliance/outside.py: the outside view reconciled with the inside one (issue 18 part 3).

The case table per host and per namespace, how a flag lands on a verdict, and the rule as a
property: reconciling never makes a host patched and never removes a flag.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compliance.builds import encode_version_number
from compliance.catalog import load_catalog
from compliance.deadline import DeadlinePolicy, deadline
from compliance.evaluate import Policy, evaluate
from compliance.models import (
    Assessment,
    Build,
    EvidenceKind,
    Flag,
    Host,
    Observation,
    Reason,
    ServerRole,
    Status,
    Verdict,
)
from compliance.outside import (
    FindingKind,
    OutsideView,
    ViewKind,
    compare_host,
    compare_namespace,
    reconcile,
)
from compliance.outside import (
    apply as apply_outside,
)
from compliance.worklist import priority, stored_priority

CATALOG = load_catalog()
AS_OF = datetime(2021, 3, 20, 12, 0, tzinfo=UTC)
SEEN = AS_OF - timedelta(hours=1)
MAILBOX = frozenset({ServerRole.MAILBOX})

CU19_BASE, CU19_FEB, CU19_MAR, CU19_APR = (Build(15, 1, 2176, r) for r in (2, 4, 9, 12))
CU18, CU19, CU20, CU5 = (Build(15, 1, b) for b in (2106, 2176, 2242, 845))
CU20_BASE, CU21_BASE = Build(15, 1, 2242, 4), Build(15, 1, 2308, 8)
NAMESPACE = "mail.corp.example"


def ad(build: Build) -> str:
    """AD's versionNumber for ``build``'s CU, as discovery stores it."""
    return str(encode_version_number(build))


def observation(name: str = "EX01", exsetup: str | None = str(CU19_MAR),
                ad_build: str | None = ad(CU19), **names: tuple[str, ...]) -> Observation:
    host = Host(name, f"{name.lower()}.corp.example", roles=MAILBOX, ad_build=ad_build, **names)
    return Observation(host, SEEN, "test", exsetup_version=exsetup)


def view(name: str = "EX01", full: tuple[Build, ...] = (), cu: tuple[Build, ...] = (),
         kind: ViewKind = ViewKind.SERVER, trusted: bool = True,
         at: datetime = SEEN) -> OutsideView:
    return OutsideView(name, kind, at, full, cu, trusted,
                       tuple(f"{b} from test at /owa/" for b in full + cu))


# -- per host -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("exsetup", "ad_build", "full", "cu", "flagged", "said"), [
    # ExSetup at the March SU of CU19 (15.1.2176.9)
    pytest.param(str(CU19_MAR), ad(CU19), (CU19_MAR,), (), False, "the same as ExSetup's",
                 id="same"),
    pytest.param(str(CU19_MAR), ad(CU19), (CU19_FEB,), (), True, "older than ExSetup's",
                 id="outside-older-su"),
    pytest.param(str(CU19_MAR), ad(CU19), (CU19_APR,), (), False, "inside reading may be stale",
                 id="outside-newer"),
    pytest.param(str(CU19_MAR), ad(CU19), (), (CU19,), False, "never shows the Security Update",
                 id="three-part-only-same-cu"),
    pytest.param(str(CU19_MAR), ad(CU19), (), (CU18,), True, "older than ExSetup's",
                 id="three-part-older-cu"),
    pytest.param(str(CU19_MAR), ad(CU19), (), (CU20,), False, "inside reading may be stale",
                 id="three-part-newer-cu"),
    pytest.param(str(CU19_MAR), ad(CU19), (CU19_MAR,), (CU19,), False, "the same as",
                 id="both-same"),
    # AD's CU level only (ExSetup not read): an SU-level outside build cannot be compared
    pytest.param(None, ad(CU19), (CU19_BASE,), (), False, "never shows the Security Update",
                 id="ad-only-same-cu"),
    pytest.param(None, ad(CU20), (CU19_MAR,), (), True, "older than AD's CU level",
                 id="ad-only-older-cu"),
    pytest.param(None, ad(CU19), (), (CU18,), True, "older than AD's CU level",
                 id="ad-only-three-part-older"),
    pytest.param(None, None, (CU19_BASE,), (CU19,), False, "nothing inside to compare",
                 id="nothing-inside"),
])
def test_the_host_case_table(exsetup, ad_build, full, cu, flagged, said):
    found = compare_host(observation(exsetup=exsetup, ad_build=ad_build), view(full=full, cu=cu),
                         AS_OF)
    assert found.flags == ((Flag.OUTSIDE_OLDER_THAN_INSIDE,) if flagged else ())
    assert bool(found.action) is flagged and bool(found.reason) is flagged
    assert any(said in e.value for e in found.evidence), [e.value for e in found.evidence]
    assert {e.kind for e in found.evidence} == {EvidenceKind.OUTSIDE_VIEW}
    assert all(e.observed_at == SEEN and "outside view" in e.source for e in found.evidence)


def test_an_su_installed_without_elevation_gets_the_elevated_rerun_action():
    found = compare_host(observation(), view(full=(CU19_FEB,), cu=(CU19,)), AS_OF)
    assert found.flags == (Flag.OUTSIDE_OLDER_THAN_INSIDE,)
    assert "installed without elevation" in found.action
    assert "rerun it from an elevated command prompt" in found.action
    assert "15.1.2176.4" in found.action and "15.1.2176.9" in found.action


def test_an_older_cu_outside_gets_the_check_where_the_name_goes_action():
    found = compare_host(observation(), view(cu=(CU18,)), AS_OF)
    assert "resolves" in found.action and "elevated" in found.action
    assert "without elevation" not in found.action


@pytest.mark.parametrize(("outside", "why"), [
    pytest.param(OutsideView("EX01", ViewKind.SERVER, SEEN, problem="certificate not trusted: "
                             "self-signed certificate"), "self-signed", id="untrusted"),
    pytest.param(view(full=(CU19_FEB,), at=AS_OF - timedelta(days=8)), "older than the limit",
                 id="stale"),
    pytest.param(view(full=(CU19_FEB,), at=AS_OF + timedelta(hours=1)), "after", id="future"),
    pytest.param(view(), "disclosed no build", id="no-build"),
])
def test_a_view_that_proves_nothing_is_evidence_only(outside, why):
    found = compare_host(observation(), outside, AS_OF, Policy(max_age=timedelta(days=7)))
    assert found.flags == () and found.action == ""
    assert len(found.evidence) == 1 and why in found.evidence[0].value


def test_an_untrusted_view_cannot_carry_builds():
    with pytest.raises(ValueError, match="untrusted"):
        view(full=(CU19_MAR,), trusted=False)
    with pytest.raises(ValueError, match="three"):
        view(cu=(CU19_MAR,))


# -- applying to a verdict ----------------------------------------------------------------------

def graded(obs: Observation) -> Assessment:
    return Assessment(obs, evaluate(obs, CATALOG, AS_OF))


def test_a_patched_host_with_old_owa_is_flagged_stays_patched_and_needs_action():
    before = graded(observation())
    assert before.verdict.status is Status.PATCHED
    assert priority(before.verdict.status, before.verdict.flags) is None
    after = reconcile([before], [view(full=(CU19_FEB,))], CATALOG, AS_OF).assessments[0].verdict
    assert after.status is Status.PATCHED
    assert after.flags == (*before.verdict.flags, Flag.OUTSIDE_OLDER_THAN_INSIDE)
    assert after.evidence[:len(before.verdict.evidence)] == before.verdict.evidence
    assert after.action.startswith("OWA/ECP on EX01 serve 15.1.2176.4")
    assert "None" not in after.action
    assert after.reason.startswith(before.verdict.reason)
    assert priority(after.status, after.flags) == 1  # ranked as vulnerable
    assert stored_priority(after.status.value, ", ".join(after.flags)) == 1
    due = deadline(after.status, after.flags, DeadlinePolicy(), open_since=SEEN, published=SEEN)
    assert due is not None and due.due_at == SEEN + timedelta(days=2)


def test_applying_twice_changes_nothing_more():
    before = graded(observation()).verdict
    found = compare_host(observation(), view(full=(CU19_FEB,)), AS_OF)
    once = apply_outside(before, found)
    assert apply_outside(once, found) == once


def _verdict(status: Status, action: str, flags: tuple[Flag, ...] = ()) -> Verdict:
    return Verdict("EX01", status, "why", action, AS_OF, flags=flags)


@pytest.mark.parametrize(("before", "starts", "keeps"), [
    (_verdict(Status.PATCHED, "None for ProxyLogon. The special update fixes only the March "
              "2021 CVEs: move to CU23", (Flag.UNSUPPORTED_CU,)), "OWA/ECP on", "move to CU23"),
    (_verdict(Status.PATCHED, "Investigate for compromise first", (Flag.INDICATORS_FOUND,)),
     "Investigate for compromise first; then OWA/ECP on", ""),
    (_verdict(Status.VULNERABLE, "Install KB5000871"), "Install KB5000871. OWA/ECP on", ""),
    (_verdict(Status.NOT_APPLICABLE, "None: this server is not affected"),
     "None: this server is not affected", ""),
])
def test_the_action_of_a_flagged_verdict(before, starts, keeps):
    found = compare_host(observation(), view(full=(CU19_FEB,)), AS_OF)
    after = apply_outside(before, found)
    assert after.status is before.status and Flag.OUTSIDE_OLDER_THAN_INSIDE in after.flags
    assert after.action.startswith(starts) and keeps in after.action


@pytest.mark.parametrize(("status", "flags", "expected"), [
    (Status.PATCHED, (Flag.OUTSIDE_OLDER_THAN_INSIDE,), 1),
    (Status.UNKNOWN, (Flag.OUTSIDE_OLDER_THAN_INSIDE,), 1),
    (Status.MITIGATED, (Flag.OUTSIDE_OLDER_THAN_INSIDE,), 1),
    (Status.PATCHED, (Flag.OUTSIDE_OLDER_THAN_INSIDE, Flag.INDICATORS_FOUND), 0),
    (Status.NOT_APPLICABLE, (Flag.OUTSIDE_OLDER_THAN_INSIDE,), None),  # the advisory spares it
])
def test_the_flag_ranks_as_vulnerable(status, flags, expected):
    assert priority(status, flags) == expected
    assert priority(status, iter(flags)) == expected  # a one-shot iterable reads the same
    assert (deadline(status, flags, DeadlinePolicy(), open_since=SEEN, published=SEEN)
            is None) is (expected is None)


def test_a_server_view_matches_by_name_or_fqdn_case_insensitively_and_newest_wins():
    fleet = [graded(observation("EX01")), graded(observation("EX02"))]
    views = [view("ex01", full=(CU19_FEB,)), view("EX02.CORP.EXAMPLE", full=(CU19_FEB,)),
             view("EX02.corp.example", full=(CU19_MAR,), at=SEEN + timedelta(minutes=1)),
             view("EX09", full=(CU19_FEB,))]
    done = reconcile(fleet, views, CATALOG, AS_OF)
    assert [Flag.OUTSIDE_OLDER_THAN_INSIDE in a.verdict.flags for a in done.assessments] == [
        True, False]
    assert done.namespaces == ()


# -- per namespace ------------------------------------------------------------------------------

FLEET = [observation("EX01", internal_names=(NAMESPACE,)),
         observation("EX02", exsetup=str(CU19_BASE), external_names=("MAIL.corp.example",)),
         observation("EX03", exsetup=None, ad_build=ad(CU20))]


def findings(full: tuple[Build, ...] = (), cu: tuple[Build, ...] = (), trusted: bool = True):
    return compare_namespace(view(NAMESPACE, full, cu, ViewKind.NAMESPACE, trusted), FLEET,
                             CATALOG, AS_OF)


@pytest.mark.parametrize(("full", "cu", "expected"), [
    pytest.param((CU19_MAR,), (CU19,), {}, id="a-patched-known-build"),
    pytest.param((CU20_BASE,), (), {}, id="ad-only-server-on-that-cu"),
    pytest.param((CU19_MAR, CU19_BASE), (), {FindingKind.NAMESPACE_SERVES_UNPATCHED: (CU19_BASE,)},
                 id="mixes-patched-and-unpatched"),
    pytest.param((CU21_BASE,), (), {FindingKind.NOT_IN_INVENTORY: (CU21_BASE,)},
                 id="unknown-patched-build"),
    pytest.param((CU19_FEB,), (), {FindingKind.NAMESPACE_SERVES_UNPATCHED: (CU19_FEB,),
                                   FindingKind.NOT_IN_INVENTORY: (CU19_FEB,)},
                 id="unknown-unpatched-build"),
    pytest.param((CU19_FEB, CU21_BASE), (), {FindingKind.NAMESPACE_SERVES_UNPATCHED: (CU19_FEB,),
                                             FindingKind.NOT_IN_INVENTORY: (CU19_FEB, CU21_BASE)},
                 id="mixes-two-unknown-builds"),
    pytest.param((), (CU19,), {}, id="three-part-known-cu"),
    pytest.param((), (CU5,), {FindingKind.NAMESPACE_SERVES_UNPATCHED: (CU5,),
                              FindingKind.NOT_IN_INVENTORY: (CU5,)}, id="three-part-cu-never-fixed"),
])
def test_the_namespace_case_table(full, cu, expected):
    found = findings(full, cu)
    assert {f.kind: f.builds for f in found} == expected
    for finding in found:
        assert finding.namespace == NAMESPACE and finding.hosts == ("EX01", "EX02")
        assert finding.seen == full + cu
        assert all(str(b) in finding.evidence[0].value for b in full + cu)  # every build listed
        assert all(e.kind == EvidenceKind.OUTSIDE_VIEW for e in finding.evidence)


def test_a_namespace_mixing_builds_says_so_and_names_the_unpatched_node():
    (finding,) = findings((CU19_MAR, CU19_BASE))
    assert finding.seen == (CU19_MAR, CU19_BASE)
    assert "more than one build" in finding.evidence[0].value
    assert finding.action.startswith(f"A node behind {NAMESPACE} is unpatched (15.1.2176.2)")
    assert any("below the fix" in e.value for e in finding.evidence)


def test_a_namespace_build_no_server_runs_is_not_in_inventory():
    (finding,) = findings((CU21_BASE,))
    assert finding.kind is FindingKind.NOT_IN_INVENTORY
    assert "no known server runs" in finding.action and "inventory" in finding.action


def test_an_untrusted_or_stale_namespace_view_has_no_finding():
    assert findings(trusted=False) == ()
    stale = view(NAMESPACE, (CU19_FEB,), (), ViewKind.NAMESPACE, at=AS_OF - timedelta(days=30))
    assert compare_namespace(stale, FLEET, CATALOG, AS_OF) == ()


def test_reconcile_reports_namespaces_and_leaves_hosts_to_their_server_views():
    fleet = [graded(o) for o in FLEET]
    done = reconcile(fleet, [view(NAMESPACE, (CU19_FEB,), (), ViewKind.NAMESPACE)], CATALOG,
                     AS_OF)
    assert done.assessments == tuple(fleet)  # a namespace view flags no host by itself
    assert {f.kind for f in done.namespaces} == set(FindingKind)


# -- the rule, as a property --------------------------------------------------------------------

NEAR = sorted({CU19_BASE, CU19_FEB, CU19_MAR, CU19_APR, CU20_BASE, CU21_BASE,
               Build(15, 1, 2106, 2), Build(15, 1, 2106, 13), Build(15, 2, 792, 3),
               Build(15, 2, 858, 5), Build(15, 0, 1497, 2), Build(14, 3, 496, 0),
               Build(15, 1, 845, 34)})
# Mostly real builds of a few lines, so outside and inside often compare; some arbitrary.
builds = st.one_of(st.sampled_from(NEAR), st.sampled_from(NEAR),
                   st.builds(Build, st.integers(14, 15), st.integers(0, 2),
                             st.integers(0, 3000), st.integers(0, 40)))
cu_levels = builds.map(lambda b: replace(b, revision=None))
names = st.sampled_from(["EX01", "EX02", "EX03"])
namespaces = st.lists(st.sampled_from([NAMESPACE, "owa.corp.example"]), max_size=2,
                      unique=True).map(tuple)


@st.composite
def assessments(draw: st.DrawFn, name: str) -> Assessment:
    host = Host(name, f"{name.lower()}.corp.example",
                roles=draw(st.none() | st.just(MAILBOX)),
                ad_build=draw(st.none() | cu_levels.map(ad) | st.just("garbage")),
                internal_names=draw(namespaces), external_names=draw(namespaces))
    obs = Observation(host, draw(st.none() | st.just(SEEN)), "test",
                      exsetup_version=draw(st.one_of(builds.map(str), builds.map(str),
                                                     st.none(), st.just("15.1"))))
    verdict = Verdict(name, draw(st.sampled_from(Status)), draw(st.text(max_size=20)),
                      draw(st.text(max_size=40)), AS_OF,
                      flags=tuple(draw(st.lists(st.sampled_from(Flag), unique=True))))
    return Assessment(obs, verdict)


@st.composite
def views(draw: st.DrawFn) -> OutsideView:
    trusted = draw(st.booleans())
    name = draw(names | names.map(lambda n: f"{n.lower()}.corp.example")
                | st.sampled_from([NAMESPACE, NAMESPACE.upper(), "owa.corp.example"]))
    return OutsideView(
        name, draw(st.sampled_from(ViewKind)),
        AS_OF - timedelta(hours=draw(st.integers(-1, 24 * 8))),  # mostly fresh, some not
        tuple(sorted(set(draw(st.lists(builds, max_size=3))))) if trusted else (),
        tuple(sorted(set(draw(st.lists(cu_levels, max_size=2))))) if trusted else (),
        trusted)


@settings(max_examples=300, deadline=None)
@given(st.lists(names, unique=True, min_size=1, max_size=3).flatmap(
           lambda ns: st.tuples(*(assessments(n) for n in ns))),
       st.lists(views(), max_size=6))
def test_reconciling_never_patches_and_never_removes_a_flag(fleet, outside):
    done = reconcile(fleet, outside, CATALOG, AS_OF)
    assert len(done.assessments) == len(fleet)
    for before, after in zip(fleet, done.assessments, strict=True):
        old, new = before.verdict, after.verdict
        assert new.status is old.status  # so never patched when it was not
        assert new.flags[:len(old.flags)] == old.flags
        assert set(new.flags) - set(old.flags) <= {Flag.OUTSIDE_OLDER_THAN_INSIDE}
        assert after.observation == before.observation
        was, now = priority(old.status, old.flags), priority(new.status, new.flags)
        assert was is None or (now is not None and now <= was)  # urgency only ever rises
        if new.status is Status.PATCHED and Flag.OUTSIDE_OLDER_THAN_INSIDE in new.flags:
            assert now is not None
    for finding in done.namespaces:
        assert finding.builds and set(finding.builds) <= set(finding.seen)


def test_a_cu_level_build_the_versionnumber_cannot_hold_is_not_judged_as_another():
    """Review finding: 15.1.34944 was masked to 15.1.2176 (and 79.1.2176 to major 15) before
    being graded, so a namespace could be judged on a CU it never disclosed."""
    from compliance.builds import BuildParseError
    from compliance.outside import judge, unpatched

    for parts in ((15, 1, 34944), (79, 1, 2176), (15, 64, 2176)):
        with pytest.raises(BuildParseError):
            encode_version_number(Build(*parts, None))
        verdict = judge(Build(*parts, None), CATALOG, AS_OF)
        assert verdict.status is Status.UNKNOWN and not unpatched(verdict)
        # graded as a server whose build could not be read, not as the CU masking gives
        assert verdict.unknown_reason is not Reason.AD_ONLY, verdict
    masked = judge(Build(15, 1, 2176, None), CATALOG, AS_OF)
    assert masked.unknown_reason is Reason.AD_ONLY
    below = judge(Build(15, 1, 2106, None), CATALOG, AS_OF)  # CU18: a CU a real answer names
    assert below.status is not Status.PATCHED
