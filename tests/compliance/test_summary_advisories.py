"""A host's summary seen through one advisory, or all of them at their worst (issue 19): the
pages' headline, matrix and worklist per advisory come from here."""

from __future__ import annotations

from compliance.models import Flag, Status
from compliance.summary import ALL, AdvisoryStatus, HostSummary

OWN, SHELL, NOTSHELL = "2021-03-proxylogon", "2021-05-proxyshell", "2022-11-proxynotshell"


def _summary(status=Status.PATCHED, flags=(), advisories=()):  # type: ignore[no-untyped-def]
    return HostSummary(
        host="EX16-01", fqdn="ex16-01.corp.example", status=status, product="2016", cu="CU19",
        build="15.1.2176.9", build_source="exsetup", known_build=True, release="CU19 Mar21SU",
        site="HQ", dag="DAG1", roles=(), flags=flags, mitigations=("backend_cookie_rewrite",),
        cves_open=(), action="None: the March 2021 fixes are installed", reason="",
        observed_at="2026-11-25T12:00:00+00:00", failure_reason="", failure_detail="",
        run_failed=False, indicator_count=0, advisories=advisories)


SHELL_OPEN = AdvisoryStatus(SHELL, Status.VULNERABLE, (Flag.UNSUPPORTED_CU,),
                            ("CVE-2021-34473",), "Install KB5003435")
NOTSHELL_UNKNOWN = AdvisoryStatus(NOTSHELL, Status.UNKNOWN, (), ("CVE-2022-41040",),
                                  "Collect again")


def test_the_own_advisory_is_the_summary_itself():
    summary = _summary(advisories=(SHELL_OPEN,))
    assert summary.for_advisory(None, OWN) is summary
    assert summary.for_advisory(OWN, OWN) is summary


def test_another_advisory_takes_its_status_flags_cves_and_action():
    summary = _summary(flags=(Flag.OUTSIDE_OLDER_THAN_INSIDE, Flag.OUT_OF_SUPPORT),
                       advisories=(SHELL_OPEN, NOTSHELL_UNKNOWN))
    shell = summary.for_advisory(SHELL, OWN)
    assert shell is not None and shell.status is Status.VULNERABLE
    assert shell.cves_open == ("CVE-2021-34473",) and shell.action == "Install KB5003435"
    # The outside view's flag is about the server: it holds for every advisory; a flag of the
    # own verdict that is about its fix does not.
    assert shell.flags == (Flag.UNSUPPORTED_CU, Flag.OUTSIDE_OLDER_THAN_INSIDE)
    assert shell.mitigations == ()  # the columns' mitigations are March 2021's
    assert shell.host == summary.host and shell.build == summary.build


def test_all_is_the_worst_with_every_open_action():
    summary = _summary(advisories=(SHELL_OPEN, NOTSHELL_UNKNOWN))
    every = summary.for_advisory(ALL, OWN)
    assert every is not None and every.status is Status.VULNERABLE is summary.worst()
    assert every.action == f"{SHELL}: Install KB5003435 | {NOTSHELL}: Collect again"
    assert every.cves_open == ("CVE-2021-34473", "CVE-2022-41040")
    assert Flag.UNSUPPORTED_CU in every.flags
    # Unknown outranks mitigated and patched, never vulnerable: fail closed.
    assert _summary(advisories=(NOTSHELL_UNKNOWN,)).worst() is Status.UNKNOWN
    assert _summary(Status.MITIGATED, advisories=(NOTSHELL_UNKNOWN,)).worst() is Status.UNKNOWN


def test_a_host_not_judged_by_an_advisory_has_no_status_for_it():
    old = _summary()  # a snapshot from before per-advisory verdicts
    assert old.for_advisory(SHELL, OWN) is None and old.status_for(SHELL) is None
    assert old.for_advisory(ALL, OWN, (OWN,)) is old  # no other advisory expected
    # By default every shipped advisory is expected (re-check review: a caller leaving it out
    # read a March-2021-only host as patched under "all").
    assert old.for_advisory(ALL, OWN).status is Status.UNKNOWN
    assert old.through(ALL, OWN).status is Status.UNKNOWN
    # Every advisory there is expected: one the snapshot holds no verdict for is unknown,
    # so "all" never reads patched on March 2021 alone (review of the fail-closed rule).
    every = old.for_advisory(ALL, OWN, (OWN, SHELL, NOTSHELL))
    assert every is not None and every.status is Status.UNKNOWN
    assert f"{SHELL}: Collect again" in every.action and NOTSHELL in every.action
    partial = _summary(advisories=(AdvisoryStatus(SHELL, Status.PATCHED),))
    assert partial.for_advisory(ALL, OWN, (OWN, SHELL, NOTSHELL)).status is Status.UNKNOWN
    assert partial.for_advisory(ALL, OWN, (OWN, SHELL)).status is Status.PATCHED


def test_through_an_advisory_not_judged_is_unknown_never_compliant():
    old = _summary()
    seen = old.through(SHELL, OWN)
    assert seen.status is Status.UNKNOWN and "Collect again" in seen.action
    assert seen.mitigations == () and seen.flags == ()
    judged = _summary(advisories=(SHELL_OPEN,))
    assert judged.through(SHELL, OWN) == judged.for_advisory(SHELL, OWN)


def test_shown_action_puts_the_compromise_first_only_where_the_investigation_found_indicators():
    """Review of issue 21 (M2): the verdict's action of a patched server ("None: ...") is true
    of the patch only; where its investigation found indicators, what to do first is
    investigate. An action that already says so is not said twice; other states keep it."""
    from compliance.investigation import InvestigationState as State
    from compliance.summary import COMPROMISE_FIRST, shown_action

    none = "None: the March 2021 fixes are installed"
    assert shown_action(none, State.INDICATORS_FOUND) == (
        f"{COMPROMISE_FIRST}; then none: the March 2021 fixes are installed")
    assert shown_action(none, "indicators_found").startswith(COMPROMISE_FIRST)
    assert shown_action("", State.INDICATORS_FOUND) == COMPROMISE_FIRST
    first = "Investigate for compromise first (...); then install KB5000871"
    assert shown_action(first, State.INDICATORS_FOUND) == first
    for state in (None, State.CLEAN, State.INCOMPLETE, State.NOT_INVESTIGATED, "clean"):
        assert shown_action(none, state) == none
