"""compliance/investigation.py: one literal ``Traces`` per state and per boundary (issue 21).

Judged by the shipped March 2021 advisory: its window starts 2021-01-05 10:00 UTC (6 January
in UTC+14). Each case changes one thing of a clean server (``CLEAN``).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from compliance.advisory import Advisory
from compliance.catalog import load_catalog, load_catalogs
from compliance.evaluate import evaluate
from compliance.investigation import (
    Checks,
    Investigation,
    InvestigationState,
    StepState,
    fix_time,
    judge,
    judge_observation,
)
from compliance.models import (
    Failure,
    Flag,
    Host,
    InstalledUpdate,
    Observation,
    Status,
    WebConfigFile,
    WebConfigState,
)
from compliance.traces import Candidate, CandidateFolder, Detection, LogReach, Scan, Traces
from compliance.triage import TRACE_LOGS
from compliance.worklist import (
    INDICATORS_FIRST,
    INVESTIGATION_INCOMPLETE,
    NOT_INVESTIGATED,
    TRIAGE_NAMES,
    priority,
    triage_priority,
)
from tests.compliance.traces_fixtures import FOLDERS, ROOT_FOLDERS, logs_at

S = timedelta(seconds=1)
DAY = timedelta(days=1)
WEEK = timedelta(days=7)
START = datetime(2021, 1, 5, 10, 0, tzinfo=UTC)
FIX = datetime(2021, 3, 4, 12, 0, tzinfo=UTC)
FIRST = FIX + DAY  # the full scan after the fix
NOW = datetime(2021, 3, 8, 12, 0, tzinfo=UTC)
State = InvestigationState


@pytest.fixture(scope="module")
def advisory() -> Advisory:
    return load_catalog().advisory


def full(at: datetime | None, **changes: object) -> Scan:
    scan = Scan(at, "full", "1.333.1000.0", True, outcome="clean")
    return replace(scan, **changes)  # type: ignore[arg-type]


def shell(created: datetime | None, modified: datetime | None = None,
          path: str = r"C:\inetpub\wwwroot\aspnet_client\system_web\x.aspx") -> Candidate:
    return Candidate(path, 400, created, modified if modified is not None else created)


LOGS = logs_at(START)


def folders_of(install: str) -> tuple[CandidateFolder, ...]:
    """``ROOT_FOLDERS`` with OWA's and ECP's auth folders under ``install`` (the judge asks for
    them under the install path on Exchange 2013 and later)."""
    base = install.rstrip("\\")
    return (*ROOT_FOLDERS[:2], CandidateFolder(base + "\\FrontEnd\\HttpProxy\\owa\\auth", True),
            CandidateFolder(base + "\\FrontEnd\\HttpProxy\\ecp\\auth", True))


CLEAN = Traces(scans=(full(FIRST),), detections=(), defender_available=True, log_reach=LOGS,
               candidates=(), fixed_at=FIX, candidate_folders=ROOT_FOLDERS)


# CVE checks whose logs reach back a year from the collection: they cover the window.
COVERED = Checks(window_days=365.0)


def run(advisory: Advisory, traces: Traces | None = CLEAN, *, status: Status = Status.PATCHED,
        now: datetime = NOW, **options: object) -> Investigation:
    """Judged with the fix observed at ``FIX`` and the CVE checks covering the window, unless
    ``options`` say otherwise."""
    options.setdefault("fixed_at", FIX)
    options.setdefault("checks", COVERED)
    return judge(traces, advisory, now, status=status, **options)  # type: ignore[arg-type]


def test_the_shipped_window_starts_on_6_january_in_the_earliest_time_zone(
        advisory: Advisory) -> None:
    assert advisory.exposure is not None and advisory.exposure.start == START


def test_clean(advisory: Advisory) -> None:
    result = run(advisory)
    assert result.state is State.CLEAN
    assert result.window is not None
    assert (result.window.start, result.window.end) == (START, FIX)
    assert result.window.end_source == "the observed fix time"
    assert any(line.startswith("ExSetup.exe last written 2021-03-04 12:00:00 UTC: evidence only")
               for line in result.evidence)
    assert result.evidence[0].startswith("Exposure window: from 2021-01-05 10:00:00 UTC")
    assert any("MSERT scan started 2021-03-05 12:00:00 UTC (after the fix): full, finished"
               in line for line in result.evidence)
    assert advisory.triage is not None
    assert sum("covers the window" in line for line in result.evidence) == len(advisory.triage.logs)
    assert result.next_action.startswith("None for a compromise so far; the next scan "
                                         "(msert.exe /F /Q) is due by 2021-03-12 12:00:00 UTC")


# -- no traces, no scan -----------------------------------------------------------------------


def test_no_traces_from_an_older_probe(advisory: Advisory) -> None:
    result = run(advisory, None)
    assert result.state is State.NOT_INVESTIGATED
    assert "contract 1.3" in result.next_action
    assert any("did not read them" in line for line in result.evidence)


def test_no_traces_from_a_failed_host_says_why(advisory: Advisory) -> None:
    failure = Failure("timeout", "no answer in 120 s", "raise [winrm] deadline_seconds")
    result = run(advisory, None, failure=failure)
    assert result.state is State.NOT_INVESTIGATED
    assert result.next_action == ("Fix the collection and re-collect (raise [winrm] "
                                  "deadline_seconds)")
    assert any("the collection failed (timeout: no answer in 120 s)" in line
               for line in result.evidence)


def test_traces_with_nothing_read(advisory: Advisory) -> None:
    result = run(advisory, Traces(fixed_at=FIX))
    assert result.state is State.NOT_INVESTIGATED
    assert "read none" in result.next_action


def test_no_scan_at_all(advisory: Advisory) -> None:
    result = run(advisory, replace(CLEAN, scans=()))
    assert result.state is State.NOT_INVESTIGATED
    assert result.next_action.startswith("Run msert.exe /F /Q (a full Safety Scanner scan) and "
                                         "re-collect: no scan after the fix on 2021-03-04")


HOUR = timedelta(hours=1)


@pytest.mark.parametrize(("started", "state"), [
    pytest.param(FIX - S, State.NOT_INVESTIGATED, id="one-second-before-the-fix"),
    pytest.param(FIX, State.NOT_INVESTIGATED, id="in-the-second-of-the-fix"),
    pytest.param(FIX + S, State.NOT_INVESTIGATED, id="one-second-after-the-fix"),
    pytest.param(FIX + HOUR, State.NOT_INVESTIGATED, id="an-hour-after-the-fix"),
    pytest.param(FIX + HOUR + S, State.CLEAN, id="an-hour-and-a-second-after-the-fix"),
])
def test_a_scan_counts_only_an_hour_after_the_fix(advisory: Advisory, started: datetime,
                                                  state: InvestigationState) -> None:
    # The MSERT log's local times are converted with one offset: across a daylight-saving
    # change a scan may be an hour earlier than it reads (review of issue 21, case 6).
    result = run(advisory, replace(CLEAN, scans=(full(started),)))
    assert result.state is state
    if FIX < started <= FIX + HOUR:
        assert any("within an hour after the fix" in line for line in result.evidence)


def test_a_scan_dated_after_the_collection_does_not_count(advisory: Advisory) -> None:
    result = run(advisory, replace(CLEAN, scans=(full(NOW + S),)))
    assert result.state is State.NOT_INVESTIGATED
    assert any("after the collection: not credible" in line for line in result.evidence)


def test_a_scan_dated_after_the_observation_does_not_count(advisory: Advisory) -> None:
    # Judged a day after the collection: a scan dated between the two is not credible.
    seen = FIRST + HOUR
    result = run(advisory, replace(CLEAN, scans=(full(seen + S),)), observed_at=seen)
    assert result.state is State.NOT_INVESTIGATED
    assert any("after the collection: not credible" in line for line in result.evidence)
    assert run(advisory, replace(CLEAN, scans=(full(seen),)),
               observed_at=seen).state is State.CLEAN


# -- incomplete -------------------------------------------------------------------------------


@pytest.mark.parametrize(("scan", "said"), [
    pytest.param(full(FIRST, kind="quick"), "was quick: run msert.exe /F /Q", id="quick-scan"),
    pytest.param(full(FIRST, kind="customized"), "was customized", id="customized-scan"),
    pytest.param(full(FIRST, finished=False), "was full and did not finish", id="unfinished"),
])
def test_a_scan_after_the_fix_that_is_not_a_finished_full_scan(
        advisory: Advisory, scan: Scan, said: str) -> None:
    result = run(advisory, replace(CLEAN, scans=(full(FIX - DAY), scan)))
    assert result.state is State.INCOMPLETE
    assert said in result.next_action


def test_a_finished_full_scan_beside_a_quick_one_is_enough(advisory: Advisory) -> None:
    scans = (full(FIRST, kind="quick"), full(FIRST + S))
    assert run(advisory, replace(CLEAN, scans=scans)).state is State.CLEAN


def test_a_scan_whose_start_was_not_read(advisory: Advisory) -> None:
    result = run(advisory, replace(CLEAN, scans=(full(None),)))
    assert result.state is State.INCOMPLETE
    assert result.next_action.startswith("A scan's start could not be read")


def _reach(log: str, oldest: datetime | None, folder: str | None = None) -> tuple[LogReach, ...]:
    """``LOGS`` with ``log`` (only its ``folder``, if given) reaching back to ``oldest``."""
    return tuple(replace(entry, oldest=oldest) if entry.log == log
                 and folder in (None, entry.folder) else entry for entry in LOGS)


@pytest.mark.parametrize("log", TRACE_LOGS)
def test_a_log_reaching_one_second_short_of_the_window(advisory: Advisory, log: str) -> None:
    result = run(advisory, replace(CLEAN, log_reach=_reach(log, START + S)))
    assert result.state is State.INCOMPLETE
    # Of HttpProxy, the protocol folders reaching back least are named (the first three).
    where = " (folders Autodiscover, Eas, Ecp and 7 more)" if log == "httpproxy" else ""
    assert result.next_action == (
        f"The {log} log reaches back only to 2021-01-05 10:00:01 UTC{where}: the window from "
        "2021-01-05 10:00:00 UTC cannot be checked here; look at the IIS logs and backups")


@pytest.mark.parametrize("folder", FOLDERS)
def test_one_protocol_folder_reaching_one_second_short_is_named(advisory: Advisory,
                                                                 folder: str) -> None:
    result = run(advisory, replace(CLEAN, log_reach=_reach("httpproxy", START + S, folder)))
    assert result.state is State.INCOMPLETE
    assert result.next_action.startswith("The httpproxy log reaches back only to 2021-01-05 "
                                         f"10:00:01 UTC (folder {folder}): the window from")


def test_an_emptied_protocol_folder_is_a_gap_named_by_its_folder(advisory: Advisory) -> None:
    # An intruder cleared HttpProxy\Ecp: the probe lists it with no oldest file (contract 1.4).
    result = run(advisory, replace(CLEAN, log_reach=_reach("httpproxy", None, "Ecp")))
    assert result.state is State.INCOMPLETE
    assert result.next_action == (
        "The httpproxy folder Ecp holds no file: the window from 2021-01-05 10:00:00 UTC cannot "
        "be checked here (an emptied folder hides what was logged there); look at the IIS logs "
        "and backups")
    # Read for both CVEs (all HttpProxy logs, and HttpProxy\Ecp), said once as a gap.
    assert [line for line in result.evidence if "folder Ecp holds no file" in line] == [
        "Log httpproxy (for CVE-2021-26855): folder Ecp holds no file",
        "Log httpproxy (for CVE-2021-27065): folder Ecp holds no file",
        "Not shown: " + result.next_action]
    # Another folder, one the advisory does not name, emptied: a gap too (fail closed).
    extra = (*LOGS, LogReach("httpproxy", None, "PushNotifications"))
    result = run(advisory, replace(CLEAN, log_reach=extra))
    assert result.state is State.INCOMPLETE
    assert result.next_action.startswith("The httpproxy folder PushNotifications holds no file")
    two = (*_reach("httpproxy", None, "Ecp"), LogReach("httpproxy", None, "Owa"))
    assert run(advisory, replace(CLEAN, log_reach=two)).next_action.startswith(
        "The httpproxy folders Ecp, Owa hold no file")


@pytest.mark.parametrize(("reach", "named"), [
    pytest.param(tuple(e for e in LOGS if e.folder != "Ecp"), "Ecp", id="ecp-not-there"),
    pytest.param(tuple(e for e in LOGS if e.folder != "OwaCalendar"), "OwaCalendar",
                 id="owacalendar-not-there"),
    pytest.param((LogReach("httpproxy", START), *LOGS[len(FOLDERS):]),
                 "Autodiscover, Eas, Ecp and 7 more", id="an-older-probe-without-folders"),
    pytest.param((*(replace(e, folder=(e.folder or "").upper() + "X") for e in LOGS[:len(FOLDERS)]),
                  *LOGS[len(FOLDERS):]), "Autodiscover, Eas, Ecp and 7 more", id="other-names"),
])
def test_a_needed_protocol_folder_not_listed_is_a_gap(advisory: Advisory,
                                                       reach: tuple[LogReach, ...],
                                                       named: str) -> None:
    result = run(advisory, replace(CLEAN, log_reach=reach))
    assert result.state is State.INCOMPLETE
    folders = "folders" if "," in named else "folder"
    assert result.next_action.startswith(f"The httpproxy {folders} {named} was not listed" if
                                         folders == "folder" else
                                         f"The httpproxy {folders} {named} were not listed")
    assert "the window from 2021-01-05 10:00:00 UTC cannot be checked here" in result.next_action


def test_protocol_folders_are_matched_whatever_their_case(advisory: Advisory) -> None:
    upper = tuple(replace(e, folder=e.folder.upper()) if e.folder else e for e in LOGS)
    assert run(advisory, replace(CLEAN, log_reach=upper)).state is State.CLEAN


def test_exchange_2010_needs_no_protocol_folder(advisory: Advisory) -> None:
    # CVE-2021-26857 alone affects 2010: the Application event log is all it needs.
    reach = (LogReach("application_event_log", START),)
    assert run(advisory, replace(CLEAN, log_reach=reach), product="2010").state is State.CLEAN


def test_a_log_reaching_further_back_than_the_window(advisory: Advisory) -> None:
    reach = _reach("httpproxy", START - 30 * DAY)
    assert run(advisory, replace(CLEAN, log_reach=reach)).state is State.CLEAN


@pytest.mark.parametrize("reach", [
    pytest.param(tuple(e for e in LOGS if e.log != "application_event_log"), id="not-listed"),
    pytest.param(_reach("application_event_log", None), id="not-found"),
    pytest.param((*LOGS, LogReach("application_event_log", START + DAY)), id="two-readings"),
])
def test_the_application_event_log_is_required(advisory: Advisory,
                                               reach: tuple[LogReach, ...]) -> None:
    result = run(advisory, replace(CLEAN, log_reach=reach))
    assert result.state is State.INCOMPLETE
    assert "application_event_log" in result.next_action


def test_only_the_logs_of_the_products_cves_are_required(advisory: Advisory) -> None:
    # Exchange 2010 is affected by CVE-2021-26857 alone: the Application event log.
    reach = (LogReach("application_event_log", START),)
    assert run(advisory, replace(CLEAN, log_reach=reach), product="2010").state is State.CLEAN
    assert run(advisory, replace(CLEAN, log_reach=reach), product="2016").state is \
        State.INCOMPLETE
    assert run(advisory, replace(CLEAN, log_reach=reach)).state is State.INCOMPLETE


@pytest.mark.parametrize(("traces", "said"), [
    pytest.param(replace(CLEAN, scans=None), "msert.log could not be read", id="scans-unread"),
    pytest.param(replace(CLEAN, detections=None), "Defender's detection history",
                 id="defender-unread"),
    pytest.param(replace(CLEAN, detections=None, defender_available=None),
                 "Defender's detection history", id="defender-unknown"),
    pytest.param(replace(CLEAN, log_reach=None), "logs reach was not read", id="reach-unread"),
    pytest.param(replace(CLEAN, candidates=None), "web-shell folders", id="candidates-unread"),
    pytest.param(replace(CLEAN, candidates_truncated=True), "files is not whole",
                 id="candidates-truncated"),
])
def test_partly_unreadable_traces(advisory: Advisory, traces: Traces, said: str) -> None:
    result = run(advisory, traces)
    assert result.state is State.INCOMPLETE
    assert said in result.next_action
    assert any(line.startswith("Not shown: ") for line in result.evidence)


PRE_1_5 = ("The web-shell search was made by a probe before contract 1.5: hidden files and the IIS root "
           "were not looked at; re-collect with the current probe")


def test_a_web_shell_search_before_contract_1_5_is_never_clean(advisory: Advisory) -> None:
    # No candidate_folders: the search skipped hidden files (no -Force) and never looked in the IIS
    # root itself, nor in a moved one. Nothing else in the traces can show that did not matter.
    result = run(advisory, replace(CLEAN, candidate_folders=None))
    assert (result.state, result.next_action) == (State.INCOMPLETE, PRE_1_5)
    assert f"Not shown: {PRE_1_5}" in result.evidence
    # Candidates not read at all: that gap is said, and this one not twice over.
    unread = run(advisory, replace(CLEAN, candidates=None, candidate_folders=None))
    assert unread.state is State.INCOMPLETE
    assert not any(PRE_1_5 in line for line in unread.evidence)


def test_a_list_of_web_shell_folders_not_whole_is_never_clean(advisory: Advisory) -> None:
    # Longer than the reader keeps, or an entry it could not read: the IIS root "not there" may be
    # the one left out.
    result = run(advisory, replace(CLEAN, candidate_folders_truncated=True))
    assert result.state is State.INCOMPLETE
    assert result.next_action.startswith("The list of web-shell folders was longer than is read, or held "
                                         "an entry that could not be read")


def test_without_defender_the_scanner_stands_alone(advisory: Advisory) -> None:
    result = run(advisory, replace(CLEAN, detections=None, defender_available=False))
    assert result.state is State.CLEAN
    assert any("Defender is not available" in line for line in result.evidence)


def test_no_scan_outranks_the_other_gaps(advisory: Advisory) -> None:
    result = run(advisory, replace(CLEAN, scans=(), log_reach=None))
    assert result.state is State.NOT_INVESTIGATED
    assert any("logs reach" in line for line in result.evidence)


# -- indicators found -------------------------------------------------------------------------


def test_a_cve_check_hit(advisory: Advisory) -> None:
    result = run(advisory, indicators=("CVE-2021-26855: ServerInfo~a]@x.example:444/autod",))
    assert result.state is State.INDICATORS_FOUND
    assert result.next_action.startswith("The CVE checks found CVE-2021-26855")
    assert result.next_action.endswith("isolate and investigate (CISA ED 21-02)")


@pytest.mark.parametrize("threat", [
    "Backdoor:ASP/SecChecker.A", "Trojan:JS/Chopper!dha", "Backdoor:MSIL/Chopper.F!dha",
    "Exploit:Script/Exmann.A!dha", "Behavior:Win32/Exmann.A", "Ransom:Win32/DoejoCrypt.A",
    "exploit:script/exchgproxyrequest.a!gen",
])
def test_a_defender_detection_of_a_named_family(advisory: Advisory, threat: str) -> None:
    detection = Detection(threat, FIX - DAY, (r"file:_C:\inetpub\x.aspx",), True)
    result = run(advisory, replace(CLEAN, detections=(detection,)))
    assert result.state is State.INDICATORS_FOUND
    assert result.next_action == (f"A detection of {threat} (Defender) on 2021-03-03 12:00:00 "
                                  "UTC: isolate and investigate (CISA ED 21-02)")
    assert any("a threat named for these attacks" in line for line in result.evidence)
    assert any("remediated: yes" in line for line in result.evidence)


def test_a_named_family_counts_even_before_the_window(advisory: Advisory) -> None:
    detection = Detection("Backdoor:ASP/SecChecker.A", START - WEEK)
    assert run(advisory, replace(CLEAN, detections=(detection,))).state is \
        State.INDICATORS_FOUND


@pytest.mark.parametrize(("when", "state"), [
    pytest.param(START - S, State.CLEAN, id="one-second-before-the-window"),
    pytest.param(START, State.INDICATORS_FOUND, id="at-the-windows-start"),
    pytest.param(NOW - DAY, State.INDICATORS_FOUND, id="after-the-fix"),
    pytest.param(None, State.INDICATORS_FOUND, id="undated"),
])
def test_another_detection_counts_from_the_windows_start(
        advisory: Advisory, when: datetime | None, state: InvestigationState) -> None:
    detection = Detection("Trojan:Win32/CoinMiner!MSR", when)
    result = run(advisory, replace(CLEAN, detections=(detection,)))
    assert result.state is state
    if state is State.CLEAN:
        assert any("before the exposure window: evidence only" in line
                   for line in result.evidence)


def test_an_msert_detection_on_the_scan_after_the_fix(advisory: Advisory) -> None:
    scan = full(FIRST, detections=("Backdoor:ASP/SecChecker.A",))
    result = run(advisory, replace(CLEAN, scans=(scan,)))
    assert result.state is State.INDICATORS_FOUND
    assert result.next_action.startswith("A detection of Backdoor:ASP/SecChecker.A (MSERT) on "
                                         "2021-03-05 12:00:00 UTC")


@pytest.mark.parametrize(("candidate", "state"), [
    pytest.param(shell(START - S), State.CLEAN, id="one-second-before-the-window"),
    pytest.param(shell(START), State.INDICATORS_FOUND, id="at-the-windows-start"),
    pytest.param(shell(FIX - S), State.INDICATORS_FOUND, id="one-second-inside"),
    pytest.param(shell(FIX), State.INDICATORS_FOUND, id="at-the-fix"),
    pytest.param(shell(FIX + S), State.INDICATORS_FOUND, id="one-second-after-the-fix"),
    pytest.param(shell(FIRST + DAY), State.INDICATORS_FOUND, id="after-the-full-scan"),
    pytest.param(shell(NOW), State.INDICATORS_FOUND, id="at-the-collection"),
    pytest.param(shell(START - WEEK, FIX - S), State.INDICATORS_FOUND,
                 id="modified-inside-created-before"),
    pytest.param(Candidate(r"C:\x\y.ashx", None, None, None), State.INDICATORS_FOUND,
                 id="times-not-read"),
    pytest.param(Candidate(r"C:\x\y.ashx", None, None, FIX + DAY), State.INDICATORS_FOUND,
                 id="creation-not-read"),
])
def test_a_web_shell_candidate_counts_from_the_windows_start_on(
        advisory: Advisory, candidate: Candidate, state: InvestigationState) -> None:
    # A shell written after the fix (and after the full scan) is one too (review, case 3).
    result = run(advisory, replace(CLEAN, candidates=(candidate,)))
    assert result.state is state
    if state is State.CLEAN:
        assert any("before the exposure window, evidence only" in line
                   for line in result.evidence)
    else:
        assert result.next_action.startswith(f"A possible web shell {candidate.path}")


OWA_AUTH = r"C:\Program Files\Microsoft\Exchange Server\V15\FrontEnd\HttpProxy\owa\auth"
ECP_AUTH = r"D:\Exchange\FrontEnd\HttpProxy\ecp\auth"


@pytest.mark.parametrize(("path", "state"), [
    pytest.param(OWA_AUTH + r"\logon.aspx", State.CLEAN, id="owa-logon"),
    pytest.param(OWA_AUTH.upper() + r"\ERRORFE.ASPX", State.CLEAN, id="owa-errorfe-upper-case"),
    pytest.param(ECP_AUTH + r"\TimeoutLogoff.aspx", State.CLEAN, id="ecp-timeoutlogoff"),
    pytest.param(OWA_AUTH + r"\Current\logon.aspx", State.INDICATORS_FOUND,
                 id="owa-subfolder"),
    pytest.param(OWA_AUTH + r"\15.1.2176\themes\logon.aspx", State.INDICATORS_FOUND,
                 id="owa-version-folder"),
    pytest.param(ECP_AUTH + r"\errorFE.aspx", State.INDICATORS_FOUND, id="ecp-other-name"),
    pytest.param(OWA_AUTH + r"\errorEE.aspx", State.INDICATORS_FOUND, id="owa-shell-name"),
    pytest.param(r"C:\inetpub\wwwroot\aspnet_client\logon.aspx", State.INDICATORS_FOUND,
                 id="aspnet-client"),
    pytest.param(r"C:\inetpub\wwwroot\aspnet_client\FrontEnd\HttpProxy\owa\auth\logon.aspx",
                 State.INDICATORS_FOUND, id="owa-layout-under-aspnet-client"),
    pytest.param(OWA_AUTH + r"\x\FrontEnd\HttpProxy\owa\auth\logon.aspx",
                 State.INDICATORS_FOUND, id="owa-layout-under-owa-auth"),
    pytest.param(r"FrontEnd\HttpProxy\owa\auth\logon.aspx", State.INDICATORS_FOUND,
                 id="relative-path"),
    pytest.param(r"C:\..\FrontEnd\HttpProxy\owa\auth\logon.aspx", State.INDICATORS_FOUND,
                 id="dot-dot-path"),
])
def test_files_of_the_standard_install_are_evidence_only(advisory: Advisory, path: str,
                                                         state: InvestigationState) -> None:
    # Written by the fix's own installation, just before ExSetup.exe: inside the window.
    # The folder must be the install's, not any folder ending in its name (review, case 4).
    result = run(advisory, replace(CLEAN, candidates=(shell(FIX - 60 * S, path=path),)))
    assert result.state is state
    if state is State.CLEAN:
        assert any("a file of the standard install" in line for line in result.evidence)


EXCHANGE = "C:\\Program Files\\Microsoft\\Exchange Server\\V15\\"


@pytest.mark.parametrize(("path", "state"), [
    pytest.param(OWA_AUTH + r"\logon.aspx", State.CLEAN, id="in-the-install"),
    pytest.param(OWA_AUTH.upper() + r"\LOGON.ASPX", State.CLEAN, id="case-changed"),
    pytest.param(ECP_AUTH + r"\TimeoutLogoff.aspx", State.INDICATORS_FOUND,
                 id="another-install-path"),
    pytest.param(r"C:\inetpub\wwwroot\aspnet_client\FrontEnd\HttpProxy\owa\auth\logon.aspx",
                 State.INDICATORS_FOUND, id="under-aspnet-client"),
])
def test_with_the_install_path_known_the_folder_must_be_exactly_the_installs(
        advisory: Advisory, path: str, state: InvestigationState) -> None:
    result = run(advisory, replace(CLEAN, candidates=(shell(FIX - 60 * S, path=path),)),
                 install_path=EXCHANGE)
    assert result.state is state


@pytest.mark.parametrize(("traces", "said"), [
    pytest.param(replace(CLEAN, scans_truncated=True), "msert.log was cut", id="msert-cut"),
    pytest.param(replace(CLEAN, detections_truncated=True), "more detections than were read",
                 id="defender-cut"),
    pytest.param(replace(CLEAN, reach_truncated=True), "how far back the logs reach was cut",
                 id="reach-cut"),
    pytest.param(replace(CLEAN, scans=(full(FIRST, outcome="unknown"),)),
                 "could not be read (neither", id="summary-not-read"),
    pytest.param(replace(CLEAN, scans=(full(FIRST), full(FIRST + HOUR, outcome="unknown"))),
                 "could not be read (neither", id="a-later-summary-not-read"),
])
def test_what_was_cut_or_not_read_keeps_it_incomplete(advisory: Advisory, traces: Traces,
                                                      said: str) -> None:
    # Review, case 5.
    result = run(advisory, traces)
    assert result.state is State.INCOMPLETE
    assert said in result.next_action


@pytest.mark.parametrize(("scan", "state"), [
    pytest.param(full(FIRST, outcome="found"), State.INDICATORS_FOUND, id="after-the-fix"),
    pytest.param(full(FIRST, outcome="found", kind="quick"), State.INDICATORS_FOUND,
                 id="quick-scan"),
    pytest.param(full(START + DAY, outcome="found"), State.INDICATORS_FOUND, id="in-the-window"),
    pytest.param(full(None, outcome="found"), State.INDICATORS_FOUND, id="undated"),
    pytest.param(full(START - DAY, outcome="found"), State.CLEAN, id="before-the-window"),
])
def test_a_detection_the_log_names_in_a_form_not_read(advisory: Advisory, scan: Scan,
                                                      state: InvestigationState) -> None:
    # Review, case 5: "Return code: 7" and a detection line of another shape.
    result = run(advisory, replace(CLEAN, scans=(*CLEAN.scans, scan)))  # type: ignore[misc]
    assert result.state is state
    assert any("a detection the log names in a form not read" in line
               for line in result.evidence)


def test_only_a_scan_whose_summary_says_clean_is_the_clean_scan(advisory: Advisory) -> None:
    result = run(advisory, replace(CLEAN, scans=(full(FIRST, outcome="unknown", finished=False),
                                                 full(FIX - DAY))))
    assert result.state is State.INCOMPLETE


@pytest.mark.parametrize("threat", [
    "Trojan:JS/Ch\u043epper!dha",  # a Cyrillic o
    "Trojan:JS/Chop\u200bper!dha",  # a zero-width space inside
    "\ufeffBackdoor:ASP/SecChecker.A",  # a byte-order mark before it
    "Ｂackdoor:ASP/SecChecker.A",  # a full-width B
    "Trojan:Win32/\u0421oinMiner",  # a Cyrillic C in a name of no family
    "",  # a record without a name
    "(no name)",
    "ThreatID 2147776320",
])
def test_look_alike_and_nameless_detections_count_whenever_dated(
        advisory: Advisory, threat: str) -> None:
    # Review, case 7: dated before the window, where another name is evidence only.
    result = run(advisory, replace(CLEAN, detections=(Detection(threat, START - WEEK),)))
    assert result.state is State.INDICATORS_FOUND


def test_indicators_come_before_every_gap(advisory: Advisory) -> None:
    traces = replace(CLEAN, scans=(), log_reach=None, candidates=(shell(FIX - DAY),))
    assert run(advisory, traces).state is State.INDICATORS_FOUND


# -- servers not fixed, or not affected ----------------------------------------------------------


@pytest.mark.parametrize(("status", "first"), [
    (Status.VULNERABLE, "Patch first; then run msert.exe /F /Q and re-collect"),
    (Status.MITIGATED, "Patch first (interim mitigations are not a fix); then run"),
    (Status.UNKNOWN, "Establish the patch status first (it is unknown); then run"),
])
def test_a_server_not_fixed_has_no_after_the_fix(advisory: Advisory, status: Status,
                                                 first: str) -> None:
    result = run(advisory, status=status)  # its full scan after FIX is no scan after a fix
    assert result.state is State.NOT_INVESTIGATED
    assert result.next_action.startswith(first)
    assert result.window is not None and result.window.end is None
    assert result.directive is not None
    assert [step.state for step in result.directive.steps] == [StepState.PENDING] * 5


def test_a_server_not_fixed_is_still_exposed(advisory: Advisory) -> None:
    # No fix closes its window: a file written last week is inside it.
    result = run(advisory, replace(CLEAN, candidates=(shell(NOW - WEEK),)),
                 status=Status.VULNERABLE)
    assert result.state is State.INDICATORS_FOUND


def test_a_server_not_affected(advisory: Advisory) -> None:
    traces = replace(CLEAN, candidates=(shell(FIX - DAY),))
    result = run(advisory, traces, status=Status.NOT_APPLICABLE)
    assert result.state is State.NOT_APPLICABLE
    assert any("evidence only (ProxyLogon does not affect the server)" in line
               for line in result.evidence)
    detection = Detection("Trojan:Win32/CoinMiner!MSR", FIX)
    assert run(advisory, replace(traces, detections=(detection,)),
               status=Status.NOT_APPLICABLE).state is State.INDICATORS_FOUND


# -- the fix time -----------------------------------------------------------------------------


SU = "Security Update for Exchange Server 2016 Cumulative Update 19 (KB5000871)"


def _su(day: str | None, kb: str = "KB5000871", name: str = SU) -> InstalledUpdate:
    return InstalledUpdate(kb, name, day)


# The end of 3 March 2021 in the latest time zone (UTC-12): 4 March 12:00 UTC.
END_OF_3_MARCH = datetime(2021, 3, 4, 12, 0, tzinfo=UTC)


def test_the_earliest_upper_bound_ends_the_window(advisory: Advisory) -> None:
    # Installed on 3 March (server time): the fix was in by the end of that day anywhere; the
    # store saw it patched later. ExSetup.exe's time is evidence only.
    traces = replace(CLEAN, scans=(full(END_OF_3_MARCH + HOUR + S),), fixed_at=START + S)
    result = run(advisory, traces, fixed_at=FIX + DAY, fix_updates=(_su("2021-03-03"),))
    assert result.window is not None and result.window.end == END_OF_3_MARCH
    assert result.window.end_source == ("KB5000871 installed on 2021-03-03 (the end of that "
                                        "day in any time zone)")
    assert result.state is State.CLEAN
    assert fix_time(END_OF_3_MARCH, (_su("2021-03-03"),)) == (
        END_OF_3_MARCH, "KB5000871 installed on 2021-03-03 (the end of that day in any time "
        "zone) and the observed fix time")
    assert fix_time(None, (_su("3/3/2021"),)) == (None, "")


def test_exsetups_write_time_never_ends_the_window(advisory: Advisory) -> None:
    # Review, case 1: ExSetup.exe's LastWriteTime is its package's file time (11 February);
    # the update was installed 9 March. A scan on 5 March is before the fix, and a shell
    # written 4 March is inside the window.
    traces = replace(CLEAN, fixed_at=datetime(2021, 2, 11, 2, 25, 40, tzinfo=UTC),
                     scans=(full(datetime(2021, 3, 5, 9, 0, tzinfo=UTC)),))
    result = run(advisory, traces, fixed_at=None, fix_updates=(_su("2021-03-09"),),
                 now=datetime(2021, 4, 20, tzinfo=UTC))
    assert result.window is not None
    assert result.window.end == datetime(2021, 3, 10, 12, 0, tzinfo=UTC)
    assert result.state is State.NOT_INVESTIGATED
    shell_4_march = shell(datetime(2021, 3, 4, 2, 0, tzinfo=UTC))
    assert run(advisory, replace(traces, candidates=(shell_4_march,)), fixed_at=None,
               fix_updates=(_su("2021-03-09"),), now=datetime(2021, 4, 20, tzinfo=UTC)
               ).state is State.INDICATORS_FOUND
    # ExSetup.exe's time alone is no fix time at all.
    alone = run(advisory, replace(CLEAN, fixed_at=FIX), fixed_at=None)
    assert alone.state is State.NOT_INVESTIGATED
    assert alone.next_action.startswith("The time of the fix is not known")


def test_a_fix_time_before_the_install_date_is_not_credible(advisory: Advisory) -> None:
    # Review, case 3: an observed fix time on 6 January, the update installed 3 March.
    early = START + DAY
    result = run(advisory, replace(CLEAN, scans=(full(early + DAY),)), fixed_at=early,
                 fix_updates=(_su("2021-03-03"),))
    assert result.window is not None and result.window.end == END_OF_3_MARCH
    assert result.state is State.NOT_INVESTIGATED
    # Before the advisory's publication, too: the first rule that refuses it names it.
    assert any(f"{_at_text(early)}" in line and "not credible" in line
               for line in result.evidence), result.evidence


def _at_text(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


@pytest.mark.parametrize(("traces_fix", "observed", "updates"), [
    pytest.param(None, None, (), id="not-read"),
    pytest.param(FIX, None, (), id="exsetup-only"),
    pytest.param(None, NOW + S, (), id="after-the-collection"),
    pytest.param(None, START - S, (), id="before-the-window"),
    pytest.param(None, None, (_su("2021-03-10"),), id="installed-after-the-collection"),
    pytest.param(None, None, (_su("2021-01-03"),), id="installed-before-the-window"),
    pytest.param(None, None, (_su(None),), id="install-date-not-read"),
])
def test_an_unknown_or_incredible_fix_time(advisory: Advisory, traces_fix: datetime | None,
                                           observed: datetime | None,
                                           updates: tuple[InstalledUpdate, ...]) -> None:
    result = run(advisory, replace(CLEAN, fixed_at=traces_fix), fixed_at=observed,
                 fix_updates=updates)
    assert result.state is State.NOT_INVESTIGATED
    assert result.next_action.startswith("The time of the fix is not known")
    assert result.directive is not None
    assert result.directive.steps[0].state is StepState.DUE


def test_with_the_fix_time_unknown_the_window_stays_open(advisory: Advisory) -> None:
    traces = replace(CLEAN, fixed_at=None, candidates=(shell(NOW - DAY),))
    assert run(advisory, traces, fixed_at=None).state is State.INDICATORS_FOUND


def test_naive_times_are_read_as_utc(advisory: Advisory) -> None:
    naive = replace(CLEAN, scans=(full(FIRST.replace(tzinfo=None)),),
                    fixed_at=FIX.replace(tzinfo=None),
                    log_reach=tuple(replace(e, oldest=START.replace(tzinfo=None)) for e in LOGS))
    assert run(advisory, naive, now=NOW.replace(tzinfo=None), fixed_at=FIX.replace(tzinfo=None),
               observed_at=NOW.replace(tzinfo=None)).state is State.CLEAN


def test_an_advisory_without_triage_data(advisory: Advisory) -> None:
    proxyshell = load_catalogs()[1].advisory
    result = run(proxyshell)
    assert result.state is State.NOT_INVESTIGATED
    assert result.window is None and result.directive is None
    assert "define no exposure window" in result.next_action
    hit = run(proxyshell, indicators=("CVE-2021-27065: Set-OabVirtualDirectory",))
    assert hit.state is State.INDICATORS_FOUND


# -- the directive (CISA ED 21-02: a full scan, then weekly for four weeks) ---------------------


# The first scan's due time: the directive's date (2021-04-05 12:00 EDT), later than five days
# after FIX (tests/compliance/test_investigation_directive.py has its boundaries).
FIRST_DUE = datetime(2021, 4, 5, 16, 0, tzinfo=UTC)


def _steps(result: Investigation) -> list[tuple[StepState, datetime | None, datetime | None]]:
    assert result.directive is not None
    return [(step.state, step.due, step.met_by) for step in result.directive.steps]


def test_every_weekly_scan_met(advisory: Advisory) -> None:
    scans = tuple(full(FIRST + k * WEEK) for k in range(5))  # each exactly at its due time
    result = run(advisory, replace(CLEAN, scans=scans), now=FIRST + 30 * DAY)
    assert _steps(result) == [(StepState.MET, FIRST_DUE, FIRST)] + [
        (StepState.MET, FIRST + k * WEEK, FIRST + k * WEEK) for k in range(1, 5)]
    assert result.directive is not None and result.directive.met
    assert result.directive.name == "CISA ED 21-02"
    assert result.next_action == "None: every scan CISA ED 21-02 asks for is recorded"


def test_a_late_weekly_scan_meets_the_next_week_not_its_own(advisory: Advisory) -> None:
    scans = (full(FIRST), full(FIRST + WEEK + S), full(FIRST + 3 * WEEK))
    result = run(advisory, replace(CLEAN, scans=scans), now=FIRST + 3 * WEEK + DAY)
    assert [state for state, _, _ in _steps(result)] == [
        StepState.MET, StepState.MISSED, StepState.MET, StepState.MET, StepState.PENDING]
    assert result.state is State.CLEAN
    assert result.next_action == (
        "None for a compromise so far; weekly scan 1 of 4 (due 2021-03-12 12:00:00 UTC) was "
        "missed; the next scan (msert.exe /F /Q) is due by 2021-04-02 12:00:00 UTC "
        "(CISA ED 21-02)")


def test_quick_or_unfinished_follow_ups_do_not_count(advisory: Advisory) -> None:
    scans = (full(FIRST), full(FIRST + WEEK, kind="quick"), full(FIRST + WEEK, finished=False))
    result = run(advisory, replace(CLEAN, scans=scans), now=FIRST + WEEK + S)
    assert _steps(result)[1] == (StepState.MISSED, FIRST + WEEK, None)


def test_a_pending_week_is_due_until_its_end(advisory: Advisory) -> None:
    at_due = run(advisory, now=FIRST + WEEK)
    assert _steps(at_due)[1] == (StepState.PENDING, FIRST + WEEK, None)
    after = run(advisory, now=FIRST + WEEK + S)
    assert _steps(after)[1] == (StepState.MISSED, FIRST + WEEK, None)


def test_no_scan_after_the_fix_leaves_the_first_step_pending_until_due(
        advisory: Advisory) -> None:
    result = run(advisory, replace(CLEAN, scans=(full(FIX - DAY),)))
    assert _steps(result) == [(StepState.PENDING, FIRST_DUE, None)] + [
        (StepState.PENDING, None, None)] * 4


def test_the_directive_is_tracked_when_indicators_are_found(advisory: Advisory) -> None:
    scan = full(FIRST, detections=("Backdoor:ASP/SecChecker.A",))
    result = run(advisory, replace(CLEAN, scans=(scan,)))
    assert result.state is State.INDICATORS_FOUND
    assert _steps(result)[0] == (StepState.MET, FIRST_DUE, FIRST)
    # What was read stays evidence whatever the state: the scan and how far each log reaches.
    assert any(line.startswith("MSERT scan started 2021-03-05 12:00:00 UTC (after the fix)")
               for line in result.evidence)
    assert advisory.triage is not None
    assert sum("covers the window" in line for line in result.evidence) == len(advisory.triage.logs)


# -- from a snapshot's observation and verdict ---------------------------------------------------


def _observed(**changes: object) -> Observation:
    """A patched 2016 CU19 server collected at ``NOW``: the fix recorded installed on 3 March,
    its CVE checks' logs reaching back a year."""
    observation = Observation(
        Host("EX1", "ex1.corp.example"), NOW, "test", exsetup_version="15.1.2176.9",
        installed_updates=(_su("2021-02-10", "KB4602269"), _su("2021-03-03")),
        log_window_days=365.0, traces=CLEAN)
    return replace(observation, **changes)  # type: ignore[arg-type]


def _judged(observation: Observation, fixed_at: datetime | None = None) -> Investigation:
    catalog = load_catalog()
    verdict = evaluate(observation, catalog, NOW)
    assert verdict.status is Status.PATCHED and verdict.product == "2016"
    return judge_observation(observation, verdict, catalog.advisory, NOW, fixed_at)


def test_judge_observation_bounds_the_fix_by_the_install_date(advisory: Advisory) -> None:
    result = _judged(_observed())
    assert result.state is State.CLEAN
    assert result.window is not None and result.window.end == END_OF_3_MARCH
    assert result.window.end_source.startswith("KB5000871 installed on 2021-03-03")
    # The observed fix time, earlier, ends it; one before the install date is refused.
    observed = _judged(_observed(), fixed_at=END_OF_3_MARCH - HOUR)
    assert observed.window is not None and observed.window.end == END_OF_3_MARCH - HOUR
    refused = _judged(_observed(), fixed_at=datetime(2021, 3, 2, 9, 0, tzinfo=UTC))
    assert refused.window is not None and refused.window.end == END_OF_3_MARCH
    # The earlier KB is not the fix; a record of the fix for another CU bounds nothing here.
    other_cu = _su("2021-03-01", name=SU.replace("Update 19", "Update 18"))
    moved = _judged(_observed(installed_updates=(other_cu, _su("2021-03-03"))))
    assert moved.window is not None and moved.window.end == END_OF_3_MARCH
    # No record and no observed fix time: the fix time is not known.
    unknown = _judged(_observed(installed_updates=()))
    assert unknown.state is State.NOT_INVESTIGATED


@pytest.mark.parametrize(("changes", "said"), [
    pytest.param({"probe_errors": ("CVE-2021-26855: Access denied",)},
                 "A CVE check could not read its logs", id="check-error"),
    pytest.param({"indicators_truncated": True}, "cut short by a cap or the deadline",
                 id="checks-truncated"),
    pytest.param({"log_window_days": None}, "The CVE checks read no log file",
                 id="no-log-file-read"),
    pytest.param({"log_window_days": 30.4}, "the window from 2021-01-05 10:00:00 UTC is not "
                 "covered", id="thirty-days"),
])
def test_clean_needs_the_cve_checks_to_cover_the_window(
        advisory: Advisory, changes: dict[str, object], said: str) -> None:
    # Review, case 2: the logs on disk reach January, but what the checks read did not.
    result = _judged(_observed(**changes))
    assert result.state is State.INCOMPLETE
    assert said in result.next_action


@pytest.mark.parametrize(("days", "state"), [
    # NOW - START is 62 days and 2 hours; the tenth of a day rounding is allowed for.
    pytest.param(62.0 + 2 / 24 + 0.05, State.CLEAN, id="reaching-the-start"),
    pytest.param(62.0 + 2 / 24 + 0.05 - 1 / 86400, State.INCOMPLETE, id="a-second-short"),
])
def test_the_cve_checks_window_is_counted_from_the_observation(
        advisory: Advisory, days: float, state: InvestigationState) -> None:
    result = run(advisory, checks=Checks(window_days=days), observed_at=NOW)
    assert result.state is state


def test_judge_without_the_checks_reach_is_never_clean(advisory: Advisory) -> None:
    assert run(advisory, checks=None).state is State.INCOMPLETE


def test_the_verdicts_indicators_unreadable_flag_is_enough(advisory: Advisory) -> None:
    catalog = load_catalog()
    observation = _observed()
    verdict = evaluate(observation, catalog, NOW)
    flagged = replace(verdict, flags=(*verdict.flags, Flag.INDICATORS_UNREADABLE))
    result = judge_observation(observation, flagged, catalog.advisory, NOW)
    assert result.state is State.INCOMPLETE


def test_judge_observation_reads_the_install_path_from_the_web_configs(
        advisory: Advisory) -> None:
    configs = (WebConfigFile(r"D:\Exchange\ClientAccess\Owa\web.config", WebConfigState.FINE),)
    inside = shell(FIX - DAY, path=ECP_AUTH + r"\TimeoutLogoff.aspx")
    elsewhere = shell(FIX - DAY, path=OWA_AUTH + r"\logon.aspx")
    traces = replace(CLEAN, candidates=(inside,), candidate_folders=folders_of(r"D:\Exchange"))
    assert _judged(_observed(web_configs=configs, traces=traces)).state is State.CLEAN
    traces = replace(CLEAN, candidates=(elsewhere,))
    assert _judged(_observed(web_configs=configs, traces=traces)).state is \
        State.INDICATORS_FOUND


def _configs(install: str) -> tuple[WebConfigFile, ...]:
    return tuple(WebConfigFile(install + where + r"\web.config", WebConfigState.FINE)
                 for where in (r"ClientAccess\Owa", r"FrontEnd\HttpProxy\owa"))


D_OWA = r"D:\Exchange\FrontEnd\HttpProxy\owa\auth\logon.aspx"


@pytest.mark.parametrize(("install", "configs", "path", "state"), [
    # The probe's own reading (the Setup key's MsiInstallPath) decides, web.config files or not.
    pytest.param(EXCHANGE, None, OWA_AUTH + r"\logon.aspx", State.CLEAN, id="probe-own"),
    pytest.param(EXCHANGE, None, D_OWA, State.INDICATORS_FOUND, id="probe-other-folder"),
    pytest.param(r"D:\Exchange", None, D_OWA, State.CLEAN, id="probe-no-trailing-backslash"),
    pytest.param(EXCHANGE, _configs(EXCHANGE.upper()), OWA_AUTH + r"\logon.aspx", State.CLEAN,
                 id="agreeing-web-configs"),
    # Contradicted by the web.config paths the same probe read: neither is trusted.
    pytest.param(EXCHANGE, _configs("D:\\Exchange\\"), OWA_AUTH + r"\logon.aspx",
                 State.INDICATORS_FOUND, id="disagreeing-own"),
    pytest.param(EXCHANGE, _configs("D:\\Exchange\\"), D_OWA, State.INDICATORS_FOUND,
                 id="disagreeing-theirs"),
    pytest.param(EXCHANGE, (*_configs(EXCHANGE),
                            WebConfigFile(r"C:\elsewhere\web.config", WebConfigState.FINE)),
                 OWA_AUTH + r"\logon.aspx", State.INDICATORS_FOUND, id="one-config-elsewhere"),
    # Not a plain absolute Windows path: not known, and no guess either.
    pytest.param(r"Exchange\V15", None, D_OWA, State.INDICATORS_FOUND, id="relative"),
    pytest.param(r"\\fs\share\V15", None, D_OWA, State.INDICATORS_FOUND, id="unc"),
    pytest.param(r"D:\Exchange\..\x", None, D_OWA, State.INDICATORS_FOUND, id="dot-dot"),
    pytest.param("D:\\Ex\tchange", None, D_OWA, State.INDICATORS_FOUND, id="control"),
    pytest.param(r"D:\Ex|change", None, D_OWA, State.INDICATORS_FOUND, id="reserved"),
    pytest.param("", None, D_OWA, State.INDICATORS_FOUND, id="empty"),
    # An odd web.config-derived path with no reading of the probe's: not known, no guess.
    pytest.param(None, _configs("..\\x\\"), r"..\x\FrontEnd\HttpProxy\owa\auth\logon.aspx",
                 State.INDICATORS_FOUND, id="web-configs-relative"),
    # Neither (an observation stored before the probe's was kept): as before, the structural guess.
    pytest.param(None, None, D_OWA, State.CLEAN, id="neither-the-guess"),
])
def test_judge_observation_prefers_the_probes_install_path(
        advisory: Advisory, install: str | None, configs: tuple[WebConfigFile, ...] | None,
        path: str, state: InvestigationState) -> None:
    traces = replace(CLEAN, candidates=(shell(FIX - DAY, path=path),),
                     candidate_folders=folders_of(install or EXCHANGE))
    result = _judged(_observed(install_path=install, web_configs=configs, traces=traces))
    assert result.state is state
    # Why no file is excused, when the install path is not trusted.
    doubted = state is State.INDICATORS_FOUND and (install, configs) != (EXCHANGE, None)
    assert any("no file is taken as one of the standard install" in line
               for line in result.evidence) is doubted


def test_a_probe_error_on_the_install_path_excuses_no_file(advisory: Advisory) -> None:
    # The reader left out the probe's value (too long): not known, and no guess either.
    traces = replace(CLEAN, candidates=(shell(FIX - DAY, path=D_OWA),))
    left_out = _observed(traces=traces,
                         probe_errors=("install_path: left out, longer than 1024 characters",))
    result = _judged(left_out)
    assert result.state is State.INDICATORS_FOUND
    assert any("install_path: left out" in line and "no file is taken" in line
               for line in result.evidence)


def test_judge_observation_reads_the_observation_and_the_verdict(advisory: Advisory) -> None:
    host = Host("EX1", "ex1.corp.example")
    observation = Observation(host, NOW, "test", exsetup_version="15.1.2176.9",
                              log_window_days=365.0,
                              traces=replace(CLEAN, log_reach=(LogReach("application_event_log",
                                                                        START),)))
    verdict = evaluate(observation, load_catalog(), NOW)
    assert verdict.status is Status.PATCHED and verdict.product == "2016"
    result = judge_observation(observation, verdict, advisory, NOW, FIX)
    assert result.state is State.INCOMPLETE  # 2016: every log is needed, not only 2010's
    hit = replace(observation, indicators=("CVE-2021-27065: Set-OabVirtualDirectory",))
    assert judge_observation(hit, verdict, advisory, NOW).state is State.INDICATORS_FOUND
    with pytest.raises(ValueError, match="2021-05-proxyshell"):
        judge_observation(observation, replace(verdict, advisory="2021-05-proxyshell/1"),
                          advisory, NOW)


# -- the triage order (compliance/worklist.py) --------------------------------------------------


@pytest.mark.parametrize(("status", "flags", "investigation", "expected"), [
    (Status.PATCHED, (), State.INDICATORS_FOUND, INDICATORS_FIRST),
    (Status.VULNERABLE, (), State.INDICATORS_FOUND, INDICATORS_FIRST),
    (Status.PATCHED, (Flag.INDICATORS_FOUND,), State.CLEAN, INDICATORS_FIRST),
    (Status.VULNERABLE, (), State.NOT_INVESTIGATED, 1),
    (Status.UNKNOWN, (), None, 2),
    (Status.MITIGATED, (), State.NOT_INVESTIGATED, 3),
    (Status.PATCHED, (), State.NOT_INVESTIGATED, NOT_INVESTIGATED),
    (Status.PATCHED, (), None, NOT_INVESTIGATED),
    (Status.PATCHED, (), State.INCOMPLETE, INVESTIGATION_INCOMPLETE),
    (Status.PATCHED, (), State.CLEAN, None),
    (Status.PATCHED, (Flag.WEB_CONFIG_BROKEN,), State.CLEAN, 2),
    (Status.NOT_APPLICABLE, (), State.NOT_APPLICABLE, None),
    (Status.NOT_APPLICABLE, (), None, None),
])
def test_triage_priority(status: Status, flags: tuple[Flag, ...],
                         investigation: InvestigationState | None, expected: int | None) -> None:
    assert triage_priority(status, flags, investigation) == expected
    if investigation is not State.INDICATORS_FOUND and priority(status, flags) is not None:
        assert triage_priority(status, flags, investigation) == priority(status, flags)


def test_the_triage_order_puts_patched_work_after_the_patch_work() -> None:
    assert max(p for p in TRIAGE_NAMES if p < NOT_INVESTIGATED) < NOT_INVESTIGATED \
        < INVESTIGATION_INCOMPLETE
    assert TRIAGE_NAMES[NOT_INVESTIGATED] == "not investigated"



def test_an_install_date_before_the_advisory_was_published_is_not_credible():
    """Re-check finding: KB5000871 "installed" on 2021-01-06 (it was published 2021-03-02)
    ended the window on 7 January, so a scan in January counted as after the fix."""
    from compliance.catalog import load_catalog
    from compliance.investigation import (
        Checks,
        InvestigationState,
        fix_readings,  # noqa: F401  (the readings it weighs)
        judge,
    )
    from compliance.models import InstalledUpdate, Status
    from compliance.traces import Scan, Traces

    advisory = load_catalog().advisory
    early = InstalledUpdate("KB5000871", "Security Update for Exchange Server 2016 CU19",
                            "2021-01-06")
    scan = Scan(datetime(2021, 1, 8, 12, tzinfo=UTC), "full", "1", True, outcome="clean")
    reach = tuple(replace(entry, oldest=datetime(2020, 12, 1, tzinfo=UTC)) for entry in LOGS)
    traces = Traces(scans=(scan,), detections=(), defender_available=True, log_reach=reach,
                    candidates=(), candidate_folders=ROOT_FOLDERS)
    found = judge(traces, advisory, datetime(2021, 4, 20, tzinfo=UTC), status=Status.PATCHED,
                  fix_updates=(early,), observed_at=datetime(2021, 4, 20, tzinfo=UTC),
                  checks=Checks(window_days=200.0), product="2016")
    assert found.state is not InvestigationState.CLEAN
    assert any("before the advisory's publication" in line for line in found.evidence)
    on_the_day = InstalledUpdate("KB5000871", "Security Update for Exchange Server 2016 CU19",
                                 "2021-03-02")
    later = Scan(datetime(2021, 3, 10, tzinfo=UTC), "full", "1", True, outcome="clean")
    found = judge(Traces(scans=(later,), detections=(), defender_available=True,
                         log_reach=reach, candidates=(), candidate_folders=ROOT_FOLDERS), advisory,
                  datetime(2021, 4, 20, tzinfo=UTC), status=Status.PATCHED,
                  fix_updates=(on_the_day,), observed_at=datetime(2021, 4, 20, tzinfo=UTC),
                  checks=Checks(window_days=200.0), product="2016")
    assert found.state is InvestigationState.CLEAN, found.evidence  # the control


# -- review 21 (second round): values at the calendar's ends never raise, never clean ---------------


@pytest.mark.parametrize("days", [1e6, 1e9, 1e12, -1e12, 36_500.1, float("nan"), float("inf")])
def test_a_log_window_past_its_bounds_is_not_credible(advisory: Advisory, days: float) -> None:
    # The reader bounds log_window_days (0 to MAX_LOG_WINDOW_DAYS); an observation stored or built
    # without it must not stop the save (OverflowError) nor cover the window.
    result = run(advisory, checks=Checks(window_days=days))
    assert result.state is State.INCOMPLETE
    assert result.next_action.startswith(f"The CVE checks' logs reach back {days} days: not credible")


def test_a_log_window_at_its_bound_covers(advisory: Advisory) -> None:
    assert run(advisory, checks=Checks(window_days=36_500.0)).state is State.CLEAN
    assert run(advisory, checks=Checks(window_days=0.0)).state is State.INCOMPLETE


@pytest.mark.parametrize(("day", "said"), [("9999-12-31", "after the collection"),
                                           ("0001-01-01", "before the advisory's publication")])
def test_an_install_date_at_the_end_of_the_calendar_is_not_credible(
        advisory: Advisory, day: str, said: str) -> None:
    result = run(advisory, fixed_at=None, fix_updates=(_su(day),))  # raised OverflowError
    assert result.state is State.NOT_INVESTIGATED
    assert any(f"KB5000871 installed on {day}" in line and said in line
               and line.endswith(": not credible") for line in result.evidence), result.evidence
    # Beside an observed fix time: the far future one also makes that time not credible (it is
    # before the update's install day), as any install date after the collection does.
    assert run(advisory, fix_updates=(_su("9999-12-31"),)).state is State.NOT_INVESTIGATED
    assert run(advisory, fix_updates=(_su("2099-12-31"),)).state is State.NOT_INVESTIGATED


@pytest.mark.parametrize("threat", ["Backdoor:ASP/SecChecker.A\nx", "Trojan:JS/Chopper\n!dha",
                                    "Exploit:Script/Exmann.A\r\n!dha", "Trojan:JS/Chop\nper!dha",
                                    "\x01", "Backdoor:ASP/Sec\x00Checker.A"])
def test_a_named_family_with_a_control_character_counts_whenever_dated(
        advisory: Advisory, threat: str) -> None:
    # A "*" stopped at a line break, so such a name dated before the window was evidence only.
    result = run(advisory, replace(CLEAN, detections=(Detection(threat, START - WEEK),)))
    assert result.state is State.INDICATORS_FOUND
