"""collectors/traces.py: the probe's ``investigation`` (contract 1.3) as ``compliance.traces`` records.

Literal samples, each with where it comes from. The Microsoft Safety Scanner's log format is not
documented by Microsoft; what is known of it comes from public copies:

* QUICK_WITH_DETECTION is verbatim the msert.log a NinjaOne community script prints in its help
  (``.EXAMPLE``, "Run the Microsoft Safety Scanner, collect the results, and optionally save the results
  to a multiline custom field", a run of Thu Feb 22 2024, MSERT 1.405); public GitHub copies of the
  script, found through the code index (two copies with the same text).
* "No infection found" and "Return code: 0 (0x0)" are what a clean run reports: the same script tests
  ``-match "No infection found"`` to call a run clean, and a public project note quotes a clean full
  scan's "final result: No infection found ... return code: 0 (0x0)" (MSERT 1.455). The clean runs below
  (tests/collectors/documents.py CLEAN_FULL_SCAN and others) are built on the layout of
  QUICK_WITH_DETECTION with those lines: constructed, not copied.
* EOMT.ps1 (microsoft/CSS-Exchange, Security/src/EOMT.ps1, ``RunMsert``) runs ``msert.exe /Q`` (``/F /Q``
  for a full scan), appends the previous msert.log to msert.old.log, and decides a run found something by
  ``Select-String -Pattern "Threat Detected"``.
* Threat names: Backdoor:ASP/SecChecker.A, Exploit:Script/Exmann.A!dha, Behavior:Win32/Exmann.A and
  Trojan:JS/Chopper!dha are the Defender detections Microsoft listed for HAFNIUM on 2021-03-02 (quoted in
  cyware-labs/Operation-Exchange-Marauder's README); Backdoor:MSIL/Chopper.F!dha (threat id 2147776854) is
  the Defender event a public ACSC IR challenge 2021 write-up shows for a China Chopper page. The runs that
  name them are constructed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collectors.traces import (
    MAX_CANDIDATES,
    MAX_DETECTIONS,
    MAX_FOLDER,
    MAX_LINE,
    MAX_LOG_REACH,
    MAX_RUN_RAW,
    MAX_SCANS,
    local_time,
    parse_candidates,
    parse_defender,
    parse_log_reach,
    parse_msert_log,
    traces_from_investigation,
)
from compliance.traces import Candidate, Detection, LogReach, Scan, Traces
from tests.collectors.documents import CLEAN_FULL_SCAN, candidate, defender_detection, investigation, msert_tail

# Verbatim: NinjaOne's "Run the Microsoft Safety Scanner" script, its .EXAMPLE (see the module docstring).
QUICK_WITH_DETECTION = """\
---------------------------------------------------------------------------------------
Microsoft Safety Scanner v1.405, (build 1.405.445.0)
Started On Thu Feb 22 13:33:34 2024

Engine: 1.1.24010.10
Signatures: 1.405.445.0
MpGear: 1.1.16330.1
Run Mode: Scan Run in Quiet Mode

Quick Scan Results:
-------------------
Threat Detected: Virus:DOS/EICAR_Test_File, not removed.
    Action: NoAction, Result: 0x00000000
        file://C:\\Windows\\system32\\eicarcom2.zip->eicar_com.zip->eicar.com
            SigSeq: 0x00000555DC2DDDB0
        file://C:\\Windows\\system32\\eicar.com
            SigSeq: 0x00000555DC2DDDB0
        file://C:\\Windows\\eicar.com
            SigSeq: 0x00000555DC2DDDB0
        containerfile://C:\\Windows\\system32\\eicarcom2.zip

Results Summary:
----------------
Found Virus:DOS/EICAR_Test_File, not removed.
Successfully Submitted MAPS Report
Successfully Submitted Heartbeat Report
Microsoft Safety Scanner Finished On Thu Feb 22 13:35:58 2024


Return code: 7 (0x7)""".splitlines()

# Constructed on QUICK_WITH_DETECTION's layout: an EOMT quick scan (EOMT runs "msert.exe /Q") finding
# two of the detections Microsoft named for HAFNIUM on 2021-03-02, in a web shell under aspnet_client.
# The day is space-padded, as C's ctime pads it.
EXCHANGE_DETECTIONS = """\
---------------------------------------------------------------------------------------
Microsoft Safety Scanner v1.333, (build 1.333.526.0)
Started On Sun Mar  7 21:40:02 2021

Engine: 1.1.17900.7
Signatures: 1.333.526.0
MpGear: 1.1.16330.1
Run Mode: Scan Run in Quiet Mode

Quick Scan Results:
-------------------
Threat Detected: Backdoor:ASP/SecChecker.A, not removed.
    Action: NoAction, Result: 0x00000000
        file://C:\\inetpub\\wwwroot\\aspnet_client\\system_web\\8Lw7tAhF9i1pJnRo.aspx
            SigSeq: 0x00000555DC2DDDB0
Threat Detected: Exploit:Script/Exmann.A!dha, not removed.
    Action: NoAction, Result: 0x00000000
        file://C:\\Program Files\\Microsoft\\Exchange Server\\V15\\FrontEnd\\HttpProxy\\owa\\auth\\errorEE.aspx

Results Summary:
----------------
Found Backdoor:ASP/SecChecker.A, not removed.
Found Exploit:Script/Exmann.A!dha, not removed.
Found Trojan:JS/Chopper!dha, not removed.
Successfully Submitted MAPS Report
Successfully Submitted Heartbeat Report
Microsoft Safety Scanner Finished On Sun Mar  7 21:47:55 2021


Return code: 7 (0x7)""".splitlines()

# Constructed: a customized scan of the folders CSS-Exchange's Defender-MSERT-Guidance.md names, clean.
CUSTOMIZED_CLEAN = """\
---------------------------------------------------------------------------------------
Microsoft Safety Scanner v1.333, (build 1.333.1102.0)
Started On Wed Mar 10 00:30:00 2021

Engine: 1.1.17900.7
Signatures: 1.333.1102.0
Customized Scan Results:
-------------------

Results Summary:
----------------
No infection found.
Microsoft Safety Scanner Finished On Wed Mar 10 00:41:07 2021


Return code: 0 (0x0)""".splitlines()


def _at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


# -- the Microsoft Safety Scanner log ------------------------------------------------------------


def test_a_quick_scan_with_a_detection_public_sample():
    (scan,) = parse_msert_log(QUICK_WITH_DETECTION, -300)  # US Eastern in February: UTC-5
    assert scan.started_at == _at(2024, 2, 22, 18, 33, 34)
    assert (scan.kind, scan.version, scan.finished) == ("quick", "1.405.445.0", True)
    # "Threat Detected:" and the summary's "Found" name one threat: once.
    assert scan.detections == ("Virus:DOS/EICAR_Test_File",)
    assert scan.raw == tuple(QUICK_WITH_DETECTION[1:])  # the run's lines as they stood (the dashes open it)


def test_a_clean_full_scan():
    (scan,) = parse_msert_log(CLEAN_FULL_SCAN, 60)
    assert scan == Scan(started_at=_at(2021, 3, 10, 10, 55, 13), kind="full", version="1.333.1102.0",
                        finished=True, detections=(), raw=tuple(CLEAN_FULL_SCAN[1:]), outcome="clean")


def test_a_scan_with_detections_of_the_exchange_families_and_a_space_padded_day():
    (scan,) = parse_msert_log(EXCHANGE_DETECTIONS, 60)
    assert scan.started_at == _at(2021, 3, 7, 20, 40, 2)
    assert scan.kind == "quick" and scan.finished
    # In order, each once: two "Threat Detected" lines, and a third name only in the summary.
    assert scan.detections == ("Backdoor:ASP/SecChecker.A", "Exploit:Script/Exmann.A!dha", "Trojan:JS/Chopper!dha")


def test_a_customized_scan_local_time_converted_across_midnight():
    # 00:30 local at UTC+1 is 23:30 the day before; the same at UTC-5 is 05:30 the same day.
    (scan,) = parse_msert_log(CUSTOMIZED_CLEAN, 60)
    assert scan.started_at == _at(2021, 3, 9, 23, 30) and scan.kind == "customized"
    assert scan.detections == () and scan.finished
    (late,) = parse_msert_log(["Started On Tue Mar  9 22:00:00 2021"], -300)
    assert late.started_at == _at(2021, 3, 10, 3, 0)
    # New Year's Eve in Auckland (UTC+13) is still the old year in UTC.
    (new_year,) = parse_msert_log(["Started On Fri Jan  1 09:15:00 2021"], 780)
    assert new_year.started_at == _at(2020, 12, 31, 20, 15)


def test_a_log_with_two_runs_an_old_one_and_a_new_one():
    scans = parse_msert_log(EXCHANGE_DETECTIONS + CLEAN_FULL_SCAN, 60)
    assert [(s.started_at, s.kind, s.detections != ()) for s in scans] == [
        (_at(2021, 3, 7, 20, 40, 2), "quick", True), (_at(2021, 3, 10, 10, 55, 13), "full", False)]
    # Each run keeps its own lines: the second's dashes close the first.
    assert scans[0].raw[-1] == CLEAN_FULL_SCAN[0] and scans[1].raw[0] == CLEAN_FULL_SCAN[1]


def test_a_log_cut_in_the_middle_of_a_run_keeps_what_it_shows_without_a_start():
    # The tail starts inside the quick scan's detections (the probe keeps the last lines).
    tail = EXCHANGE_DETECTIONS[15:] + CLEAN_FULL_SCAN
    first, second = parse_msert_log(tail, 60)
    assert first.started_at is None and first.kind == "unknown" and first.version is None
    assert first.finished and first.detections == (
        "Exploit:Script/Exmann.A!dha", "Backdoor:ASP/SecChecker.A", "Trojan:JS/Chopper!dha")
    assert first.raw[0] == EXCHANGE_DETECTIONS[15]
    assert second.started_at == _at(2021, 3, 10, 10, 55, 13)


def test_a_run_cut_before_its_end_is_not_finished():
    (scan,) = parse_msert_log(EXCHANGE_DETECTIONS[:14], 60)  # the scan was still running, or was killed
    assert not scan.finished and scan.detections == ("Backdoor:ASP/SecChecker.A",)


def test_a_garbage_line_stays_raw_and_changes_nothing():
    garbage = ["\x00\x01\x02 binary \ufffd junk ::: Threat", "Started On yesterday at noon", "Found 3 files"]
    lines = CLEAN_FULL_SCAN[:12] + garbage[:1] + CLEAN_FULL_SCAN[12:]
    (scan,) = parse_msert_log(lines, 60)
    assert scan.detections == () and scan.finished and scan.kind == "full"
    assert "\x01\x02 binary \ufffd junk ::: Threat" in scan.raw  # NULs dropped, the rest as it stood
    # An unreadable start is a run whose start is unknown; "Found <not a threat name>" no detection.
    scans = parse_msert_log(garbage[1:], 60)
    assert [(s.started_at, s.detections) for s in scans] == [(None, ())]
    assert scans[0].raw == tuple(garbage[1:])


def test_garbage_alone_is_no_run():
    assert parse_msert_log(["", "---------", "lorem ipsum", "\x00"], 60) == ()
    assert parse_msert_log([], 60) == ()


def test_a_utf16_log_read_as_8_bit_text_still_parses():
    # Read as 8-bit text, UTF-16 has a NUL after every character, and the file's first line starts with
    # its byte-order mark (FF FE: "\u00ff\u00fe"); read as UTF-8 with a mark, "\ufeff".
    widened = ["\x00".join(line) + ("\x00" if line else "") for line in QUICK_WITH_DETECTION[1:]]
    widened[0] = "\u00ff\u00fe" + widened[0]
    (scan,) = parse_msert_log(widened, 0)
    assert scan.detections == ("Virus:DOS/EICAR_Test_File",) and scan.started_at == _at(2024, 2, 22, 13, 33, 34)
    assert scan.version == "1.405.445.0" and scan.raw[0] == QUICK_WITH_DETECTION[1]
    (marked,) = parse_msert_log(["\ufeff" + QUICK_WITH_DETECTION[1]], 0)
    assert marked.version == "1.405.445.0"


@pytest.mark.parametrize("offset", [None, "60", 60.5, True, 14 * 60 + 1, -14 * 60 - 1])
def test_an_unknown_or_impossible_offset_leaves_the_start_unknown(offset: Any):
    (scan,) = parse_msert_log(CLEAN_FULL_SCAN, offset)
    assert scan.started_at is None and scan.kind == "full" and scan.finished


@pytest.mark.parametrize("when", ["Wed Feb 30 11:55:13 2021", "Wed Mar 10 25:55:13 2021", "Mer Mär 10 11:55:13 2021",
                                  "2021-03-10 11:55:13", "", "Wed Mar 10 11:55:13"])
def test_an_impossible_or_foreign_start_time_is_none(when: str):
    assert local_time(when, 0) is None


def test_unknown_kinds_and_a_header_without_a_build():
    lines = ["Microsoft Safety Scanner v1.99", "Started On Mon Jan  4 10:00:00 2021", "Boot Scan Results:",
             "Threat Detected: , not removed.", "Threat Detected: something odd"]
    (scan,) = parse_msert_log(lines, 0)
    assert (scan.version, scan.kind) == ("1.99", "unknown")
    # A detection line whose name cannot be read is still a detection (fail closed), as it stood.
    assert scan.detections == ("(no name)", "something odd")


def test_a_run_keeps_a_bounded_raw_with_what_it_did():
    many = [f"        file://C:\\inetpub\\wwwroot\\aspnet_client\\{i}.aspx" for i in range(500)]
    lines = EXCHANGE_DETECTIONS[:14] + many + EXCHANGE_DETECTIONS[14:]
    (scan,) = parse_msert_log(lines, 60)
    assert len(scan.raw) == MAX_RUN_RAW + 1 and scan.raw[-1].endswith("more lines left out]")
    assert "Microsoft Safety Scanner Finished On Sun Mar  7 21:47:55 2021" in scan.raw
    assert "Found Trojan:JS/Chopper!dha, not removed." in scan.raw
    assert scan.finished and len(scan.detections) == 3
    long = parse_msert_log(["Threat Detected: " + "A" * 5000], 60)[0]
    assert all(len(line) <= MAX_LINE for line in long.raw) and len(long.detections[0]) <= 200


def test_hostile_input_never_raises():
    for value in (None, "Threat Detected: x", 7, {"lines": []}, [None, 3, ["Threat Detected: x"], {"a": 1}]):
        assert parse_msert_log(value, 60) == ()
    # Lone surrogates cannot be stored (UTF-8): replaced.
    (scan,) = parse_msert_log(["Threat Detected: Backdoor:ASP/\ud800x.A, removed."], 60)
    assert "\ud800" not in scan.detections[0]
    scan.detections[0].encode("utf-8")


@given(st.lists(st.one_of(st.text(max_size=80), st.sampled_from(
    QUICK_WITH_DETECTION + EXCHANGE_DETECTIONS + CUSTOMIZED_CLEAN + ["Started On", "Found", "Threat Detected:"])),
    max_size=60), st.one_of(st.none(), st.integers(-2000, 2000)))
def test_any_lines_give_bounded_runs(lines: list[str], offset: int | None):
    for scan in parse_msert_log(lines, offset):
        assert scan.kind in {"full", "quick", "customized", "unknown"}
        assert len(scan.raw) <= MAX_RUN_RAW + 1 and all(len(line) <= MAX_LINE for line in scan.raw)
        assert all(isinstance(name, str) and name for name in scan.detections)
        assert scan.started_at is None or scan.started_at.tzinfo is UTC


# -- Defender ------------------------------------------------------------------------------------


def test_defender_records():
    records = [
        defender_detection(),  # the ACSC IR challenge 2021 write-up's China Chopper page
        defender_detection(None, threat_id="2147776320", detected_at=None, resources=[], action_success=None),
        defender_detection("Backdoor:ASP/SecChecker.A", resources=[f"file:_C:\\x\\{i}.aspx" for i in range(9)]),
    ]
    chopper, unnamed, many = parse_defender(records)[0]
    assert chopper == Detection(
        threat="Backdoor:MSIL/Chopper.F!dha", detected_at=_at(2021, 4, 5, 22, 1, 21),
        resources=("file:_C:\\Windows\\Microsoft.NET\\Framework64\\v4.0.30319\\Temporary ASP.NET Files\\root"
                   "\\a056c683\\f67bca3c\\App_Web_euav215z.dll",),
        remediated=True, raw=chopper.raw)
    assert '"threat": "Backdoor:MSIL/Chopper.F!dha"' in chopper.raw and '"threat_id": "2147776854"' in chopper.raw
    # Get-MpThreat did not name it: known by its ThreatID; nothing read is None.
    assert (unnamed.threat, unnamed.detected_at, unnamed.resources, unnamed.remediated) == (
        "ThreatID 2147776320", None, (), None)
    assert len(many.resources) == 5


def test_defender_records_that_are_not_objects_are_dropped_and_counted():
    found, errors = parse_defender(["Backdoor:ASP/SecChecker.A", None, defender_detection(), 7])
    assert [d.threat for d in found] == ["Backdoor:MSIL/Chopper.F!dha"]
    assert errors == ("investigation: 3 Defender detection records dropped (not objects)",)


def test_defender_records_past_the_bound_and_odd_values():
    found, errors = parse_defender([defender_detection(detected_at="2021-04-05 22:01:21")] * (MAX_DETECTIONS + 3))
    assert len(found) == MAX_DETECTIONS and found[0].detected_at is None  # not the probe's time format
    assert errors == (f"investigation: 3 Defender detection records past the first {MAX_DETECTIONS} left out",)
    odd = {"threat": ["x"], "threat_id": True, "resources": "file:_C:\\x", "action_success": "true",
           "deep": [[[[[[[[[[[]]]]]]]]]]]}
    (detection,), _ = parse_defender([odd])
    assert (detection.threat, detection.resources, detection.remediated) == ("(no name)", (), None)
    assert parse_defender("x") == ((), ()) and parse_defender(None) == ((), ())


# -- log reach and candidates --------------------------------------------------------------------


def test_log_reach_names_and_times():
    reach = parse_log_reach([{"log": "HttpProxy", "oldest": "2021-01-04T00:00:07Z"},
                             {"log": "ECP\\Server", "oldest": None},
                             {"log": "OABGeneratorLog", "oldest": "2021-13-04T00:00:00Z"},
                             {"log": "Application", "oldest": "2020-12-01T08:00:00Z"},
                             {"log": "Later\\Log", "oldest": "2021-01-01T00:00:00Z"}, {"log": ""}, "HttpProxy"])
    assert reach == (LogReach("httpproxy", _at(2021, 1, 4, 0, 0, 7)), LogReach("ecp_server", None),
                     LogReach("oab_generator", None), LogReach("application_event_log", _at(2020, 12, 1, 8)),
                     LogReach("later\\log", _at(2021, 1, 1)))


def test_candidates():
    entries = [candidate(), candidate("C:\\x.ashx", size=-1, created=None, modified="yesterday"),
               {"path": ""}, {"size": 3}, "C:\\y.aspx", candidate(size=True)]  # type: ignore[list-item]
    found, left_out = parse_candidates(entries)
    assert found == (
        Candidate("C:\\inetpub\\wwwroot\\aspnet_client\\system_web\\errorEE.aspx", 1203, _at(2021, 3, 2, 3, 14, 15),
                  _at(2021, 3, 2, 3, 14, 15)),
        Candidate("C:\\x.ashx", None, None, None),
        Candidate("C:\\inetpub\\wwwroot\\aspnet_client\\system_web\\errorEE.aspx", None, _at(2021, 3, 2, 3, 14, 15),
                  _at(2021, 3, 2, 3, 14, 15)))
    # The three entries that could not be read are files nobody looked at: counted, never silent.
    assert left_out == ("investigation: 3 candidate entries dropped (not objects with a path): the list of "
                        "candidates is not whole",)
    found, left_out = parse_candidates([candidate()] * (MAX_CANDIDATES + 1))
    assert len(found) == MAX_CANDIDATES
    assert left_out == (f"investigation: 1 candidate entries past the first {MAX_CANDIDATES} left out",)
    assert parse_candidates([candidate()])[1] == ()
    assert parse_candidates("x") == ((), ()) and parse_candidates(None) == ((), ())


@pytest.mark.parametrize("entry", [{}, "x", None, {"path": "", "size": 1}, {"path": 7}],
                         ids=["empty-object", "text", "null", "empty-path", "path-not-a-text"])
def test_a_candidate_entry_that_cannot_be_read_marks_the_list_not_whole(entry: Any):
    traces, errors = traces_from_investigation(investigation(candidates=[candidate(), entry]))
    assert traces is not None and traces.candidates_truncated and len(traces.candidates or ()) == 1
    assert errors == ("investigation: 1 candidate entries dropped (not objects with a path): the list of "
                      "candidates is not whole",)


@pytest.mark.parametrize("record", [None, "Backdoor:ASP/SecChecker.A", 7, []], ids=["null", "text", "number", "list"])
def test_a_defender_record_that_cannot_be_read_marks_the_history_not_whole(record: Any):
    traces, errors = traces_from_investigation(investigation(detections=[defender_detection(), record]))
    assert traces is not None and traces.detections_truncated and len(traces.detections or ()) == 1
    assert errors == ("investigation: 1 Defender detection records dropped (not objects)",)
    traces, _ = traces_from_investigation(investigation(detections=[defender_detection()]))
    assert traces is not None and not traces.detections_truncated  # the control


@pytest.mark.parametrize(("said", "listed", "available", "read"), [
    pytest.param(True, [], True, (), id="true"),
    pytest.param(False, None, False, None, id="false-absent"),
    pytest.param(None, [], None, None, id="null"),
    pytest.param("true", [], None, None, id="text"),
    pytest.param(1, [], None, None, id="one"),
    pytest.param({}, [], None, None, id="object"),
    pytest.param("missing", [], None, None, id="missing"),
])
def test_only_a_literal_false_says_defender_is_absent(said: Any, listed: Any, available: bool | None, read: Any):
    # False excuses Defender's history ("absent, the scanner stands alone"): only the probe's literal false
    # may. Anything else that is not true is unknown, its history not read.
    value = investigation()
    value["defender"] = {"detections": listed, "truncated": False}
    if said != "missing":
        value["defender"]["available"] = said
    traces, errors = traces_from_investigation(value)
    assert traces is not None and (traces.defender_available, traces.detections) == (available, read)
    assert (errors != ()) is (available is None)


def test_a_detection_beside_an_unknown_availability_is_read_as_a_list_cut_short():
    value = investigation()
    value["defender"] = {"available": None, "detections": [defender_detection()], "truncated": False}
    traces, _ = traces_from_investigation(value)
    assert traces is not None and traces.defender_available is None
    assert len(traces.detections or ()) == 1 and traces.detections_truncated


# -- the whole investigation ---------------------------------------------------------------------


def test_the_default_investigation_reads_whole():
    traces, errors = traces_from_investigation(investigation())
    assert errors == ()
    assert traces == Traces(
        scans=parse_msert_log(CLEAN_FULL_SCAN, 60), detections=(), defender_available=True,
        log_reach=(LogReach("httpproxy", _at(2021, 1, 4, 0, 0, 7)), LogReach("ecp_server", _at(2021, 1, 4, 0, 0, 9)),
                   LogReach("oab_generator", _at(2021, 1, 4, 1)),
                   LogReach("application_event_log", _at(2020, 12, 1, 8))),
        candidates=(), candidates_truncated=False, fixed_at=_at(2021, 3, 3, 21, 14, 9))


def test_the_old_log_comes_first_and_each_log_has_its_own_offset():
    # msert.old.log written in winter (UTC+1), msert.log in summer (UTC+2); the server's offset now +1.
    value = investigation(msert_old_log=msert_tail(EXCHANGE_DETECTIONS, utc_offset_minutes=60),
                          msert_log=msert_tail(["Started On Mon Jun 14 10:00:00 2021"], utc_offset_minutes=120))
    traces, _ = traces_from_investigation(value)
    assert traces is not None and traces.scans is not None
    assert [s.started_at for s in traces.scans] == [_at(2021, 3, 7, 20, 40, 2), _at(2021, 6, 14, 8)]
    value["msert_log"]["utc_offset_minutes"] = None  # not given: the server's offset
    traces, _ = traces_from_investigation(value)
    assert traces is not None and traces.scans is not None and traces.scans[1].started_at == _at(2021, 6, 14, 9)


def test_no_msert_log_is_read_and_empty_but_a_failed_part_is_not_read():
    traces, _ = traces_from_investigation(investigation(msert_log=None))
    assert traces is not None and traces.scans == ()
    traces, _ = traces_from_investigation(investigation(), ["msert_log: Access to the path is denied."])
    assert traces is not None and traces.scans is None and traces.detections == ()
    traces, _ = traces_from_investigation({k: v for k, v in investigation().items() if k != "msert_log"})
    assert traces is not None and traces.scans is None


def test_a_cut_log_and_too_many_runs_say_runs_may_be_missing():
    traces, _ = traces_from_investigation(investigation(msert_log=msert_tail(CLEAN_FULL_SCAN, cut=True)))
    assert traces is not None and traces.scans_truncated
    traces, _ = traces_from_investigation(investigation(msert_log=msert_tail(CUSTOMIZED_CLEAN * (MAX_SCANS + 2))))
    assert traces is not None and traces.scans is not None
    assert len(traces.scans) == MAX_SCANS and traces.scans_truncated


def test_defender_absent_failed_and_truncated():
    traces, _ = traces_from_investigation(investigation(defender_available=False))
    assert traces is not None and (traces.defender_available, traces.detections) == (False, None)
    # Printed before the error: read (a detection counts), as a list cut short; availability unknown.
    traces, _ = traces_from_investigation(investigation(detections=[defender_detection()]),
                                          ["defender_detections: 0x800106ba"])
    assert traces is not None and traces.defender_available is None
    assert len(traces.detections or ()) == 1 and traces.detections_truncated
    traces, _ = traces_from_investigation(investigation(detections=[defender_detection()], defender_truncated=True))
    assert traces is not None and traces.detections_truncated and len(traces.detections or ()) == 1
    value = investigation()
    value["defender"] = {"available": True, "detections": "none"}
    traces, _ = traces_from_investigation(value)
    assert traces is not None and (traces.defender_available, traces.detections) == (None, None)


def test_a_candidates_error_marks_the_list_incomplete():
    denied = "candidates: Access to the path 'C:\\inetpub\\wwwroot\\aspnet_client' is denied."
    traces, _ = traces_from_investigation(investigation(candidates=[candidate()]), [denied])
    assert traces is not None and traces.candidates_truncated and len(traces.candidates or ()) == 1


def test_not_an_object_and_absent():
    assert traces_from_investigation(None) == (None, ())
    assert traces_from_investigation(["x"]) == (None, ("investigation: left out, not an object",))
    traces, errors = traces_from_investigation({})
    assert errors == () and traces == Traces()  # a member not there is not read


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=30)),
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(st.text(max_size=12), children,
                                                                                max_size=4)),
    max_leaves=12)
keys = ("utc_offset_minutes", "exsetup_written_at", "msert_log", "msert_old_log", "defender", "log_reach",
        "candidates", "candidates_truncated")


@given(st.fixed_dictionaries({}, optional={key: json_values for key in keys}),
       st.lists(st.sampled_from(["msert_log: x", "defender_detections: x", "candidates: x", "x"]), max_size=3))
def test_whatever_the_investigation_holds_the_reader_does_not_raise(value: dict[str, Any], errors: list[str]):
    traces, added = traces_from_investigation(value, errors)
    assert isinstance(traces, Traces)
    assert all(line.startswith("investigation: ") for line in added)


# -- review of issue 21: the boundaries an attacker pushes on --------------------------------------

STOPPED = "defender_detections: 0x800106ba: The Windows Defender service is not running"


def test_defender_cmdlets_absent_is_false_but_defender_stopped_is_unknown_boundary():
    # No cmdlets, no error: Defender is not there (False). The cmdlets there but failing (the service
    # stopped, what intruders commonly do): its history is unknown (None), never "not available".
    absent, _ = traces_from_investigation(investigation(defender_available=False))
    assert absent is not None and (absent.defender_available, absent.detections) == (False, None)
    stopped, _ = traces_from_investigation(investigation(defender_available=False), [STOPPED])
    assert stopped is not None and (stopped.defender_available, stopped.detections) == (None, None)
    # An "available" with the error line: the error wins, still unknown; what it printed is read
    # as a list cut short (a detection counts, and never stands for the whole history).
    forged, _ = traces_from_investigation(investigation(detections=[defender_detection()]), [STOPPED])
    assert forged is not None and forged.defender_available is None
    assert len(forged.detections or ()) == 1 and forged.detections_truncated


def _outcome(*summary: str) -> str:
    lines = ["Microsoft Safety Scanner v1.333, (build 1.333.1102.0)", "Started On Wed Mar 10 11:55:13 2021",
             "Full Scan Results:", "-------------------", "Results Summary:", "----------------", *summary]
    (scan,) = parse_msert_log(lines, 60)
    return scan.outcome


def test_scan_outcome_clean_only_on_an_explicit_clean_summary_or_return_code_0_boundary():
    # Public sample (QUICK_WITH_DETECTION) and the clean runs built on its layout.
    (found,) = parse_msert_log(QUICK_WITH_DETECTION, 60)
    assert found.outcome == "found"
    (clean,) = parse_msert_log(CLEAN_FULL_SCAN, 60)
    assert clean.outcome == "clean"
    (customized,) = parse_msert_log(CUSTOMIZED_CLEAN, 60)
    assert customized.outcome == "clean"
    assert _outcome("No infection found.") == "clean"
    assert _outcome("Return code: 0 (0x0)") == "clean"
    assert _outcome("Return code: 1 (0x1)") == "found"  # one past clean
    assert _outcome("Return code: 7 (0x7)") == "found"
    assert _outcome("Return code: 0 (0x7)") == "found"  # contradictory: not clean
    # A "Found" line the parser cannot name still says something was found.
    assert _outcome("Found 1 threat(s), not removed.", "Return code: 7 (0x7)") == "found"
    assert _outcome("Found") == "found"
    assert _outcome("No infection found.", "Return code: 7 (0x7)") == "found"
    assert _outcome("Threat detected - Backdoor:ASP/SecChecker.A") == "unknown"  # another shape: unread
    assert _outcome() == "unknown"  # no summary: never clean
    assert _outcome("Return code: none") == "unknown"
    (cut,) = parse_msert_log(CLEAN_FULL_SCAN[:12], 60)  # the tail stops before the summary
    assert cut.outcome == "unknown"


def test_a_detection_in_a_run_out_of_the_cut_tail_is_still_seen_from_the_file_matches():
    # msert.log cut: the tail holds only the clean run of 10 March; the probe's matches over the
    # whole file (Select-String, at most 200) hold the run of 7 March that fell out of it.
    matches = [line for line in EXCHANGE_DETECTIONS + CLEAN_FULL_SCAN
               if any(word in line for word in ("Threat Detected", "Found ", "Started On", "Scan Results:",
                                                 "Return code"))]
    tail = msert_tail(CLEAN_FULL_SCAN[1:], cut=True) | {"matches": matches}
    traces, _ = traces_from_investigation(investigation(msert_log=tail))
    assert traces is not None and traces.scans is not None and traces.scans_truncated
    first, last = traces.scans
    assert first.started_at is None and first.kind == "unknown" and not first.finished
    assert first.detections == ("Backdoor:ASP/SecChecker.A", "Exploit:Script/Exmann.A!dha", "Trojan:JS/Chopper!dha")
    assert first.outcome == "found" and "Started On Sun Mar  7 21:40:02 2021" in first.raw
    assert (last.started_at, last.detections, last.outcome) == (_at(2021, 3, 10, 10, 55, 13), (), "clean")


def test_file_matches_of_runs_the_tail_holds_add_nothing_and_a_placeable_one_is_placed():
    matches = [line for line in EXCHANGE_DETECTIONS if line.startswith(("Started On", "Threat Detected", "Found "))]
    # The run is in the tail: its detections are not repeated.
    traces, _ = traces_from_investigation(investigation(msert_log=msert_tail(EXCHANGE_DETECTIONS) | {
        "matches": matches}))
    assert traces is not None and [s.started_at for s in traces.scans or ()] == [_at(2021, 3, 7, 20, 40, 2)]
    # A tail holding the run's start but not its detection lines (a forged or odd tail): the detections
    # the matches give for that start are placed in that run.
    cut = EXCHANGE_DETECTIONS[:3] + EXCHANGE_DETECTIONS[24:]
    traces, _ = traces_from_investigation(investigation(msert_log=msert_tail(cut, cut=True) | {"matches": matches}))
    assert traces is not None and traces.scans is not None and len(traces.scans) == 1
    assert set(traces.scans[0].detections) == {"Backdoor:ASP/SecChecker.A", "Exploit:Script/Exmann.A!dha",
                                               "Trojan:JS/Chopper!dha"}
    # Matches that are not a list of texts: ignored, never an exception.
    for junk in ("Threat Detected: x", [3, None, {"a": 1}], [""] * 5000):
        traces, _ = traces_from_investigation(investigation(msert_log=msert_tail(CLEAN_FULL_SCAN) | {
            "matches": junk}))
        assert traces is not None and len(traces.scans or ()) == 1


def test_log_reach_keeps_each_httpproxy_protocol_folder_by_name_boundary():
    # HttpProxy per protocol folder (contract 1.4: every direct subfolder, an emptied one with oldest
    # null): Owa reaches back to 4 January, Ecp only to 1 March, Eas holds no file. Each is kept under
    # its folder's name, so the judge can name the one that does not cover the window.
    entries = [{"log": "HttpProxy", "folder": "C:\\Ex\\Logging\\HttpProxy\\Owa", "oldest": "2021-01-04T00:00:07Z"},
               {"log": "HttpProxy", "folder": "C:\\Ex\\Logging\\HttpProxy\\Ecp", "oldest": "2021-03-01T00:00:00Z"},
               {"log": "HttpProxy", "folder": "C:\\Ex\\Logging\\HttpProxy\\Eas", "oldest": None},
               {"log": "ECP\\Server", "folder": "C:\\Ex\\Logging\\ECP\\Server", "oldest": "2021-01-04T00:00:09Z"},
               {"log": "Application", "oldest": "2020-12-01T08:00:00Z"}]
    assert parse_log_reach(entries) == (LogReach("httpproxy", _at(2021, 1, 4, 0, 0, 7), "Owa"),
                                        LogReach("httpproxy", _at(2021, 3, 1), "Ecp"),
                                        LogReach("httpproxy", None, "Eas"),
                                        LogReach("ecp_server", _at(2021, 1, 4, 0, 0, 9)),
                                        LogReach("application_event_log", _at(2020, 12, 1, 8)))
    # Two readings of one folder (or of a log without folders, as 1.3 printed them): the one reaching
    # back least is kept; one without a time makes it not found.
    again = {"log": "HttpProxy", "folder": "C:\\Ex\\Logging\\HttpProxy\\Owa", "oldest": "2021-02-01T00:00:00Z"}
    assert parse_log_reach([entries[0], again]) == (LogReach("httpproxy", _at(2021, 2, 1), "Owa"),)
    undated = [{"log": "HttpProxy", "oldest": "2021-01-04T00:00:07Z"}, {"log": "HttpProxy", "oldest": None}]
    assert parse_log_reach(undated) == (LogReach("httpproxy", None),)
    # The ECP server log's and the OAB generator log's folder is the log itself: no name kept.
    assert parse_log_reach(entries[3:4] * 2) == (LogReach("ecp_server", _at(2021, 1, 4, 0, 0, 9)),)


@pytest.mark.parametrize(("folder", "name"), [
    ("C:\\Ex\\Logging\\HttpProxy\\Ecp", "Ecp"),
    ("C:\\Ex\\Logging\\HttpProxy\\Ecp\\", "Ecp"),
    ("C:/Ex/Logging/HttpProxy/OwaCalendar", "OwaCalendar"),
    ("Ecp", "Ecp"),
    ("x" * 1000, "x" * MAX_FOLDER),
    ("", None),
    ("\\\\", None),
    (7, None),
    (None, None),
    (["Ecp"], None),
])
def test_a_folders_name_is_its_last_part_bounded(folder: object, name: str | None):
    (reach,) = parse_log_reach([{"log": "HttpProxy", "folder": folder, "oldest": None}])
    assert reach == LogReach("httpproxy", None, name)


def test_log_reach_past_its_cap_or_cut_by_the_probe_is_marked_truncated_boundary():
    value = investigation()
    full = value["log_reach"] + [{"log": "HttpProxy", "folder": f"F{i}", "oldest": "2021-01-04T00:00:07Z"}
                                 for i in range(MAX_LOG_REACH - len(value["log_reach"]))]
    traces, _ = traces_from_investigation(value | {"log_reach": full})
    assert traces is not None and not traces.reach_truncated  # exactly at the cap
    late = {"log": "HttpProxy", "folder": "late", "oldest": "2021-03-01T00:00:00Z"}
    traces, _ = traces_from_investigation(value | {"log_reach": [*full, late]})
    assert traces is not None and traces.reach_truncated  # one past it
    traces, _ = traces_from_investigation(value | {"log_reach_truncated": True})
    assert traces is not None and traces.reach_truncated


def test_a_malformed_msert_tail_costs_only_itself():
    old = msert_tail(EXCHANGE_DETECTIONS)
    for garbage in ("garbage", {"lines": "Threat Detected: x"}, ["x"], 7):
        traces, errors = traces_from_investigation(investigation(msert_log=garbage, msert_old_log=old))  # type: ignore[arg-type]
        assert traces is not None and traces.scans is not None
        assert [s.detections for s in traces.scans] == [
            ("Backdoor:ASP/SecChecker.A", "Exploit:Script/Exmann.A!dha", "Trojan:JS/Chopper!dha")]
        assert traces.scans_truncated  # msert.log's runs may be missing
        assert errors == ("investigation: msert_log left out, not an object with a list of lines",)
    traces, errors = traces_from_investigation(investigation(msert_log="garbage", msert_old_log=None))  # type: ignore[arg-type]
    assert traces is not None and traces.scans is None  # nothing readable: not read


HOSTILE = "\u202eTrojan:JS/Chop\u200bper!dha\u2066\x85\x1b[31m\ufeff\U000e0041\ud800"


def test_hostile_text_is_kept_as_evidence_and_never_raises():
    lines = ["Microsoft Safety Scanner v1.333, (build 1.333.1102.0)", "Started On Wed Mar 10 11:55:13 2021",
             "Full Scan Results:", f"Threat Detected: {HOSTILE}, removed.", f"Found {HOSTILE}", HOSTILE,
             "Return code: 7 (0x7)"]
    (scan,) = parse_msert_log(lines, 60)
    assert scan.outcome == "found" and scan.detections and all(isinstance(d, str) for d in scan.detections)
    assert any("\u202e" in line for line in scan.raw)  # raw as it stood (minus a lone surrogate)
    record = defender_detection(HOSTILE, resources=[HOSTILE])
    (detection,), _ = parse_defender([record])
    assert "\u200b" in detection.threat
    found, _ = parse_candidates([candidate("C:\\inetpub\\wwwroot\\aspnet_client\\" + HOSTILE + ".aspx")])
    assert "\u202e" in found[0].path
    assert parse_log_reach([{"log": HOSTILE, "oldest": None}])[0].oldest is None
    (reach,) = parse_log_reach([{"log": "HttpProxy", "folder": "C:\\Ex\\" + HOSTILE.replace("/", ""),
                                "oldest": None}])
    assert reach.folder is not None and "\u202e" in reach.folder and "\ud800" not in reach.folder


# -- review 21 (second round): the calendar's ends, Defender's flag, a summary out of the tail ------


@pytest.mark.parametrize(("when", "offset"), [("Fri Dec 31 23:59:59 9999", -720),
                                              ("Mon Jan  1 00:00:00 0001", 840)])
def test_a_start_at_the_end_of_the_calendar_is_not_read_and_never_raises(when: str, offset: int):
    # Applying the offset leaves the calendar (OverflowError, not ValueError): the start is not read.
    assert local_time(when, offset) is None
    lines = ["Microsoft Safety Scanner v1.333, (build 1.333.1102.0)", f"Started On {when}", "Full Scan Results:"]
    (scan,) = parse_msert_log(lines, offset)
    assert scan.started_at is None and f"Started On {when}" in scan.raw
    # One second and one minute of offset inside the calendar: still read.
    assert local_time("Fri Dec 31 11:59:59 9999", -720) == datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert local_time("Mon Jan  1 14:00:00 0001", 840) == datetime(1, 1, 1, 0, 0, tzinfo=UTC)


def test_detections_printed_beside_available_false_still_count():
    # A forged or odd "available": false beside a list of detections: what the server printed is
    # evidence whatever the flag, and Defender's presence is then unknown, never "not available".
    value = investigation()
    value["defender"] = {"available": False, "truncated": False, "detections": [defender_detection()]}
    traces, errors = traces_from_investigation(value)
    assert traces is not None and traces.defender_available is None
    assert [d.threat for d in traces.detections or ()] == ["Backdoor:MSIL/Chopper.F!dha"]
    assert errors == ("investigation: Defender said it is not available, yet listed detections: "
                      "they are read, and whether it is available is not known",)
    # False with an empty or no list stays "not available" (its cmdlets are absent).
    for listed in ([], None):
        value["defender"] = {"available": False, "truncated": False, "detections": listed}
        traces, errors = traces_from_investigation(value)
        assert traces is not None and (traces.defender_available, traces.detections, errors) == (False, None, ())


def test_a_summary_out_of_the_tail_that_found_something_unnamed_is_a_finished_found_run():
    # The run of 25 January fell out of the tail; the whole file's matches hold its summary, which
    # says something was found in a form not read. Its stand-in is finished (a summary is printed at
    # a run's end), so the judge's rule on a finished run reporting an unnamed detection applies.
    matches = ["Started On Mon Jan 25 10:00:00 2021", "Full Scan Results:", "Found something in a form not read",
               "Return code: 7 (0x7)", "Started On Wed Mar 10 11:55:13 2021", "Full Scan Results:",
               "Return code: 0 (0x0)"]
    tail = msert_tail(CLEAN_FULL_SCAN, cut=True) | {"matches": matches}
    traces, _ = traces_from_investigation(investigation(msert_log=tail))
    assert traces is not None and traces.scans is not None
    first, last = traces.scans
    assert (first.started_at, first.finished, first.detections, first.outcome) == (None, True, (), "found")
    assert last.outcome == "clean"
    # Named detections out of the tail keep a stand-in that is not finished: its names count.
    named = [line for line in EXCHANGE_DETECTIONS if line.startswith(("Started On", "Threat Detected", "Found "))]
    traces, _ = traces_from_investigation(investigation(msert_log=tail | {"matches": named}))
    assert traces is not None and traces.scans is not None
    assert not traces.scans[0].finished and traces.scans[0].detections
