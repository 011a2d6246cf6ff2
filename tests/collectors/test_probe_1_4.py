"""Minor version 1.4 of the probe contract: every HttpProxy protocol folder in ``log_reach`` (an emptied
one too), and the probe's ``install_path`` kept in the observation (issue 21, the two gaps after review).

Literal probe documents, judged the way a snapshot judges them (``judge_observation`` with the shipped March
2021 advisory): an emptied ``HttpProxy\\Ecp`` (what the CVE-2021-27065 check reads) and a protocol folder not
there at all keep a patched, scanned server ``incomplete``, naming the folder; every folder reaching back far
enough lets it be ``clean`` (with a 1.5 probe's ``candidate_folders``: a document from before 1.5 is never
clean, its web-shell search skipped hidden files and the IIS root). The install path the probe read from the
registry decides which ``logon.aspx`` is the standard install's; a path that is not a plain absolute Windows
path, or one the ``web.config`` paths contradict, excuses no file. Then the stored form (old rows read and
encode as before) and an end-to-end collection through the WS-Management peer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from collectors.probe import compact, parse_document, probe_script
from collectors.traces import MAX_CANDIDATE_FOLDERS, MAX_PATH, parse_candidate_folders
from compliance.catalog import load_catalog
from compliance.codec import observation_from_dict, observation_to_dict
from compliance.evaluate import assess, evaluate
from compliance.investigation import Investigation, InvestigationState, judge_observation
from compliance.models import Host, Observation, Status, server_roles
from compliance.traces import CandidateFolder, LogReach
from store import SnapshotStore
from tests.collectors.documents import (
    CLEAN_FULL_SCAN,
    EX,
    PROTOCOL_FOLDERS,
    candidate,
    candidate_folders,
    defender_detection,
    dumps,
    investigation,
    msert_tail,
    probe_document,
    protocol_folders,
)
from tests.peers.wsman import HostBehavior

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = Path(__file__).parent / "probe_documents" / "exchange2016_cu19_investigation_1.4_ecp_emptied.json"
# After the full scan of 10 March (documents.CLEAN_FULL_SCAN) and the fix installed on 3 March.
NOW = datetime(2021, 3, 20, 12, 0, tzinfo=UTC)
State = InvestigationState

# As probe.ps1 1.4 prints log_reach: one entry per HttpProxy protocol folder, the oldest file's creation
# time in it or null when it holds none; one for the ECP server log's and the OAB generator log's folders;
# the Application event log's oldest event.
COVERING = [
    {"log": "HttpProxy", "folder": EX + "Logging\\HttpProxy\\Autodiscover", "oldest": "2020-11-30T08:00:00Z"},
    {"log": "HttpProxy", "folder": EX + "Logging\\HttpProxy\\Eas", "oldest": "2020-12-01T00:00:03Z"},
    {"log": "HttpProxy", "folder": EX + "Logging\\HttpProxy\\Ecp", "oldest": "2021-01-04T00:00:07Z"},
    {"log": "HttpProxy", "folder": EX + "Logging\\HttpProxy\\Ews", "oldest": "2020-12-14T10:20:00Z"},
    {"log": "HttpProxy", "folder": EX + "Logging\\HttpProxy\\Mapi", "oldest": "2020-12-01T00:00:01Z"},
    {"log": "HttpProxy", "folder": EX + "Logging\\HttpProxy\\Oab", "oldest": "2020-12-02T06:00:00Z"},
    {"log": "HttpProxy", "folder": EX + "Logging\\HttpProxy\\Owa", "oldest": "2020-12-01T00:00:05Z"},
    {"log": "HttpProxy", "folder": EX + "Logging\\HttpProxy\\OwaCalendar", "oldest": "2020-12-20T00:00:00Z"},
    {"log": "HttpProxy", "folder": EX + "Logging\\HttpProxy\\PowerShell", "oldest": "2020-12-01T00:00:02Z"},
    {"log": "HttpProxy", "folder": EX + "Logging\\HttpProxy\\RpcHttp", "oldest": "2020-12-01T00:00:04Z"},
    {"log": "HttpProxy", "folder": EX + "Logging\\HttpProxy\\PushNotifications", "oldest": "2020-12-03T00:00:00Z"},
    {"log": "ECP\\Server", "folder": EX + "Logging\\ECP\\Server", "oldest": "2021-01-04T00:00:09Z"},
    {"log": "OABGeneratorLog", "folder": EX + "Logging\\OABGeneratorLog", "oldest": "2021-01-04T01:00:00Z"},
    {"log": "Application", "oldest": "2020-12-01T08:00:00Z"},
]
ECP_EMPTIED = [entry | {"oldest": None} if entry.get("folder", "").endswith("\\Ecp") else entry
               for entry in COVERING]
ECP_GONE = [entry for entry in COVERING if not entry.get("folder", "").endswith("\\Ecp")]
UNNAMED_EMPTIED = [entry | {"oldest": None} if entry.get("folder", "").endswith("\\PushNotifications")
                   else entry for entry in COVERING]


def _document(reach: list[dict[str, Any]] | None = None, *, install_path: str | None = EX,
              candidates: list[dict[str, Any]] | None = None,
              web_config: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """A patched 2016 CU19 server (KB5000871 installed on 3 March), a clean full MSERT scan on 10 March,
    its CVE checks reading logs that reach back years, as probe.ps1 1.4 prints it."""
    document = probe_document("EX16-14", "15.1.2176.9", kbs=["KB5000871"], investigation=investigation(
        log_reach_entries=COVERING if reach is None else reach, candidates=candidates))
    document["indicators"]["log_window_days"] = 4000
    document["install_path"] = install_path
    if web_config is not None:
        document["web_config"] = web_config
    return document


def _observed(document: dict[str, Any] | bytes) -> Observation:
    text = document if isinstance(document, bytes) else dumps(document)
    obs = parse_document(text, Host("EX16-14"), "import", NOW)
    assert obs.failure is None, obs.failure
    return obs


def _judged(document: dict[str, Any] | bytes) -> Investigation:
    obs = _observed(document)
    catalog = load_catalog()
    verdict = evaluate(obs, catalog, NOW)
    assert verdict.status is Status.PATCHED and verdict.product == "2016"
    return judge_observation(obs, verdict, catalog.advisory, NOW)


# -- how far back each HttpProxy protocol folder reaches ---------------------------------------------


def test_every_protocol_folder_reaching_back_far_enough_can_be_clean():
    result = _judged(_current())
    assert result.state is State.CLEAN, result.evidence
    assert any("Log httpproxy (for CVE-2021-27065) reaches back to 2021-01-04 00:00:07 UTC: covers the "
               "window" in line for line in result.evidence)


def test_an_emptied_ecp_folder_keeps_the_server_incomplete_and_names_the_folder():
    # An intruder cleared HttpProxy\Ecp (what the CVE-2021-27065 check reads); the other folders reach
    # back to December: before 1.4 the folder gave no entry and the log looked covered.
    result = _judged(_document(ECP_EMPTIED))
    assert result.state is State.INCOMPLETE
    assert result.next_action.startswith("The httpproxy folder Ecp holds no file: the window from "
                                         "2021-01-05 10:00:00 UTC cannot be checked here")
    assert any(line.startswith("Log httpproxy (for CVE-2021-27065): folder Ecp holds no file")
               for line in result.evidence)


def test_the_literal_1_4_document_with_an_emptied_ecp_folder():
    document = json.loads(FIXTURE.read_text(encoding="utf-8"))
    assert [entry["oldest"] for entry in document["investigation"]["log_reach"]
            if entry.get("folder", "").endswith("\\Ecp")] == [None]
    obs = _observed(FIXTURE.read_bytes())
    assert obs.traces is not None and obs.traces.log_reach is not None
    assert LogReach("httpproxy", None, "Ecp") in obs.traces.log_reach
    assert LogReach("httpproxy", datetime(2020, 12, 1, 0, 0, 5, tzinfo=UTC), "Owa") in obs.traces.log_reach
    assert obs.install_path == EX
    result = _judged(FIXTURE.read_bytes())
    assert result.state is State.INCOMPLETE and "httpproxy folder Ecp holds no file" in result.next_action


def test_an_emptied_folder_the_advisory_does_not_name_is_still_a_gap():
    # Its requests (whatever the protocol) cannot be checked for CVE-2021-26855 either: fail closed.
    result = _judged(_document(UNNAMED_EMPTIED))
    assert result.state is State.INCOMPLETE
    assert "The httpproxy folder PushNotifications holds no file" in result.next_action


def test_a_needed_protocol_folder_not_there_at_all_keeps_it_incomplete():
    result = _judged(_document(ECP_GONE))
    assert result.state is State.INCOMPLETE
    assert result.next_action.startswith("The httpproxy folder Ecp was not listed")
    assert "the window from 2021-01-05 10:00:00 UTC cannot be checked here" in result.next_action


def test_a_1_3_document_without_folders_cannot_show_the_folders():
    # One entry per log (a 1.3 probe before the review), or per folder holding files (after it): an
    # emptied folder gave no entry, so the folders the checks need are not known to be covered.
    older = _document([{"log": "HttpProxy", "oldest": "2020-12-01T00:00:00Z"}, *COVERING[-3:]])
    result = _judged(older)
    assert result.state is State.INCOMPLETE and "folder" in result.next_action and "not listed" in \
        result.next_action


def test_a_protocol_folder_reaching_back_too_little_is_named():
    late = [entry | {"oldest": "2021-02-01T00:00:00Z"} if entry.get("folder", "").endswith("\\Owa") else entry
            for entry in COVERING]
    result = _judged(_document(late))
    assert result.state is State.INCOMPLETE
    assert result.next_action.startswith("The httpproxy log reaches back only to 2021-02-01 00:00:00 UTC "
                                         "(folder Owa)")


def test_documents_builds_the_same_protocol_folders():
    assert [entry["folder"].rsplit("\\", 1)[1] for entry in protocol_folders()[:len(PROTOCOL_FOLDERS)]] == \
        list(PROTOCOL_FOLDERS)
    assert _judged(_current(protocol_folders())).state is State.CLEAN
    assert _judged(_current(protocol_folders(Ecp=None))).state is State.INCOMPLETE


# -- the probe's install path ------------------------------------------------------------------------


LOGON_IN_WINDOW = {"size": 11380, "created": "2021-03-03T21:12:50Z", "modified": "2021-03-03T21:12:50Z"}
OWN_LOGON = EX + "FrontEnd\\HttpProxy\\owa\\auth\\logon.aspx"
OTHER_LOGON = "D:\\Exchange\\FrontEnd\\HttpProxy\\owa\\auth\\logon.aspx"


def _logon(path: str) -> list[dict[str, Any]]:
    return [candidate(path, **LOGON_IN_WINDOW)]


def test_the_probes_install_path_is_kept():
    obs = _observed(_document())
    assert obs.install_path == EX
    assert observation_from_dict(json.loads(json.dumps(observation_to_dict(obs)))) == obs


def test_the_standard_logon_page_under_the_probes_install_path_is_evidence_only():
    result = _judged(_current(candidates=_logon(OWN_LOGON)))
    assert result.state is State.CLEAN
    assert any("a file of the standard install" in line for line in result.evidence)


def test_a_logon_page_elsewhere_is_not_excused_when_the_install_path_is_known():
    # Without the probe's install path, any plain absolute path ending in FrontEnd\HttpProxy\owa\auth
    # was taken as the install's: D:\Exchange was excused although Exchange is on C:.
    result = _judged(_document(candidates=_logon(OTHER_LOGON)))
    assert result.state is State.INDICATORS_FOUND
    assert result.next_action.startswith(f"A possible web shell {OTHER_LOGON}")


HOSTILE_PATHS = [
    pytest.param("Exchange Server\\V15\\", id="relative"),
    pytest.param("\\\\fileserver\\share\\V15\\", id="unc"),
    pytest.param("C:\\..\\Exchange\\", id="dot-dot"),
    pytest.param("C:\\Exchange \\", id="trailing-space"),
    pytest.param("C:\\Exchange\\V15:stream\\", id="stream"),
    pytest.param("C:\\Ex\u0007change\\", id="control-character"),
    pytest.param("C:\\Ex<change>\\", id="reserved-character"),
    pytest.param("C:\\inetpub\\wwwroot\\aspnet_client\\", id="aspnet-client"),
    pytest.param("C:\\", id="a-drive-alone"),
    pytest.param("", id="empty"),
    pytest.param("D:\\Exchange\\" + "x\\" * 600, id="over-long"),
    pytest.param("\u202eD:\\Exchange\\", id="bidi-mark"),
]


@pytest.mark.parametrize("install_path", HOSTILE_PATHS)
def test_an_odd_install_path_excuses_no_file(install_path: str):
    # Never a crash, never an excuse: neither the probe's odd path nor the structural guess the reader
    # falls back to without one (which excused D:\Exchange before) counts.
    for path in (OTHER_LOGON, OWN_LOGON):
        result = _judged(_document(install_path=install_path, candidates=_logon(path)))
        assert result.state is State.INDICATORS_FOUND, (install_path, path)
        assert any("install path" in line and "no file is taken as one of the standard install" in line
                   for line in result.evidence)


def test_an_over_long_install_path_is_left_out_with_a_probe_error():
    obs = _observed(_document(install_path="D:\\Exchange\\" + "x\\" * 600))
    assert obs.install_path is None
    assert obs.probe_errors == ("install_path: left out, longer than 1024 characters",)


def test_an_install_path_the_web_configs_contradict_excuses_no_file():
    # The registry says C:, the web.config files the same probe read say D:: neither is trusted.
    configs = [{"path": f"D:\\Exchange\\{where}\\web.config", "state": "fine"}
               for where in ("ClientAccess\\Owa", "ClientAccess\\ecp", "FrontEnd\\HttpProxy\\owa",
                             "FrontEnd\\HttpProxy\\ecp")]
    for path in (OTHER_LOGON, OWN_LOGON):
        result = _judged(_document(candidates=_logon(path), web_config=configs))
        assert result.state is State.INDICATORS_FOUND, path
        assert any("disagree" in line for line in result.evidence)
    agreeing = [{"path": item["path"].replace("D:\\Exchange\\", EX), "state": "fine"} for item in configs]
    assert _judged(_current(candidates=_logon(OWN_LOGON), web_config=agreeing)).state is State.CLEAN
    # Case aside (Windows paths), and the trailing backslash, they agree.
    upper = [{"path": item["path"].upper(), "state": "fine"} for item in agreeing]
    assert _judged(_current(candidates=_logon(OWN_LOGON), web_config=upper,
                            install_path=EX.rstrip("\\"))).state is State.CLEAN


# -- the stored form ---------------------------------------------------------------------------------


def _dumps(data: object) -> str:
    # As store/snapshots.py writes an observation: sorted keys, no spaces, not ASCII-escaped.
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def test_folders_and_the_install_path_round_trip():
    obs = _observed(_document(ECP_EMPTIED))
    stored = json.loads(_dumps(observation_to_dict(obs)))
    assert stored["install_path"] == EX
    ecp = [entry for entry in stored["traces"]["log_reach"] if entry.get("folder") == "Ecp"]
    assert ecp == [{"log": "httpproxy", "oldest": None, "folder": "Ecp"}]
    assert {"log": "application_event_log", "oldest": "2020-12-01T08:00:00+00:00"} in \
        stored["traces"]["log_reach"]  # no folder: no key
    assert observation_from_dict(stored) == obs


def test_rows_stored_before_read_and_encode_as_before():
    # An observation stored before 1.4: no install_path key, log reach entries without folder.
    obs = replace(_observed(_document()), install_path=None)
    old = json.loads(_dumps(observation_to_dict(obs)))
    old["traces"]["log_reach"] = [{"log": "httpproxy", "oldest": "2020-12-01T00:00:00+00:00"},
                                  {"log": "application_event_log", "oldest": None}]
    assert "install_path" not in old
    text = _dumps(old)
    read = observation_from_dict(json.loads(text))
    assert read.install_path is None and read.traces is not None
    assert read.traces.log_reach == (LogReach("httpproxy", datetime(2020, 12, 1, tzinfo=UTC)),
                                     LogReach("application_event_log", None))
    assert _dumps(observation_to_dict(read)) == text


@pytest.mark.parametrize("forged", [7, ["C:\\"], {"path": "C:\\"}, True])
def test_a_forged_stored_install_path_or_folder_is_not_read(forged: Any):
    stored = json.loads(_dumps(observation_to_dict(_observed(_document()))))
    stored["install_path"] = forged
    stored["traces"]["log_reach"][0]["folder"] = forged
    obs = observation_from_dict(stored)
    assert obs.install_path is None
    assert obs.traces is not None and obs.traces.log_reach is not None
    assert obs.traces.log_reach[0].folder is None


def test_a_1_4_observation_is_saved_read_back_and_verified(empty_store, shipped_catalog):
    obs = replace(_observed(_document(ECP_EMPTIED)), host=Host("EX16-14", roles=server_roles(["Mailbox"])),
                  observed_at=NOW)
    snapshot_id = empty_store.save(assess([obs], shipped_catalog, NOW, source="test", tool_version="0.test"),
                                   shipped_catalog)
    (loaded,) = (a.observation for a in empty_store.assessments(snapshot_id))
    assert loaded == obs
    assert empty_store.verify(workers=1).ok
    found = empty_store.investigations(snapshot_id)["EX16-14"]
    assert found.state is State.INCOMPLETE and "httpproxy folder Ecp holds no file" in found.next_action


# -- end to end: `python -m collectors collect` against the WS-Management peer -------------------------


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.integration
def test_collect_keeps_the_folders_and_the_install_path(wsman_peer, tmp_path):
    fleet = {
        "T14-ECP": _document(ECP_EMPTIED) | {"host": "T14-ECP", "collected_at": _now()},
        "T14-ODD": _document(install_path="\\\\fileserver\\share\\V15\\", candidates=_logon(OTHER_LOGON))
        | {"host": "T14-ODD", "collected_at": _now()},
    }
    lines = ["name,winrm_url"]
    for name, document in fleet.items():
        wsman_peer.set_host(name, HostBehavior(stdout=dumps(document), chunks=2))
        lines.append(f"{name},{wsman_peer.url(name)}")
    inventory = tmp_path / "hosts.csv"
    inventory.write_text("\n".join(lines) + "\n")
    config = tmp_path / "collection.toml"
    config.write_text("[winrm]\n" f'username = "{wsman_peer.username.replace(chr(92), chr(92) * 2)}"\n'
                      f'ca_file = "{wsman_peer.ca_file}"\ndeadline_seconds = 10\nretries = 0\n')
    db = f"sqlite:///{tmp_path / 'store.db'}"
    env = {**os.environ, "PROXYLOGON_WINRM_PASSWORD": wsman_peer.password,
           "PROXYLOGON_DATA_DIR": str(tmp_path / "data")}
    wsman_peer.expected_script = compact(probe_script())  # the 1.4 probe is what goes out
    try:
        done = subprocess.run([sys.executable, "-m", "collectors", "collect", "--config", str(config),
                               "--inventory", str(inventory), "--db", db, "--secrets", os.devnull],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    finally:
        wsman_peer.expected_script = None
    assert done.returncode == 0, done.stderr
    assert all(not wsman_peer.mismatches(name) for name in fleet)
    store = SnapshotStore.open(db)
    try:
        latest = store.latest()
        assert latest is not None
        stored = {a.observation.host.name: a.observation for a in store.assessments(latest.id)}
        found = store.investigations(latest.id)
        assert store.verify(workers=1).ok
    finally:
        store.dispose()
    ecp = stored["T14-ECP"]
    assert ecp.install_path == EX and ecp.traces is not None
    assert LogReach("httpproxy", None, "Ecp") in (ecp.traces.log_reach or ())
    assert found["T14-ECP"].state is State.INCOMPLETE
    assert "httpproxy folder Ecp holds no file" in found["T14-ECP"].next_action
    assert stored["T14-ODD"].install_path == "\\\\fileserver\\share\\V15\\"
    assert found["T14-ODD"].state is State.INDICATORS_FOUND


# -- review 21 (second round): one server's document against the reader and the judge ---------------


@pytest.mark.parametrize("days", [36_500.1, 1e6, 1e9, 1e12, -0.1, -1e12, pytest.param(10**400, id="past-a-float")])
def test_a_log_window_out_of_bounds_is_not_read_and_named(days: float):
    # indicators.log_window_days is any JSON number to the schema: a hundred years (36,500 days) is
    # more than any log an Exchange server keeps; past it (or below 0) the value is no reading, and a
    # day count past the calendar stopped the fleet's save (OverflowError in the judge).
    document = _current()
    document["indicators"]["log_window_days"] = days
    obs = _observed(document)
    assert obs.log_window_days is None
    assert obs.probe_errors == ("log_window_days: left out, a number out of range (from 0 to 36500 days)",)
    result = _judged(document)
    assert result.state is State.INCOMPLETE
    assert result.next_action.startswith("The CVE checks read no log file")


@pytest.mark.parametrize("days", [0, 36_500, 36_500.0])
def test_a_log_window_at_its_bounds_is_read(days: float):
    document = _current()
    document["indicators"]["log_window_days"] = days
    obs = _observed(document)
    assert obs.log_window_days == days and obs.probe_errors == ()
    assert _judged(document).state is (State.CLEAN if days else State.INCOMPLETE)


@pytest.mark.parametrize(("line", "offset"), [("Started On Fri Dec 31 23:59:59 9999", -720),
                                              ("Started On Mon Jan  1 00:00:00 0001", 840)])
def test_an_msert_start_at_the_end_of_the_calendar_is_not_read(line: str, offset: int):
    lines = ["Microsoft Safety Scanner v1.333, (build 1.333.1102.0)", line, "Full Scan Results:"]
    document = _document()
    document["investigation"]["msert_log"] = msert_tail(lines, utc_offset_minutes=offset)
    obs = parse_document(dumps(document), Host("EX16-14"), "import", NOW)  # raised OverflowError
    assert obs.failure is None and obs.traces is not None
    assert [scan.started_at for scan in obs.traces.scans or ()] == [None]
    assert _judged(document).state is State.INCOMPLETE


@pytest.mark.parametrize("day", ["9999-12-31", "0001-01-01"])
def test_an_install_date_at_the_end_of_the_calendar_is_not_credible(day: str):
    document = _document()
    document["installed_updates"][0]["installed_on"] = day
    result = _judged(document)  # raised OverflowError
    assert result.state is State.NOT_INVESTIGATED
    assert result.next_action.startswith("The time of the fix is not known")
    assert any(f"installed on {day}" in line and "not credible" in line for line in result.evidence)


def test_a_run_out_of_the_tail_whose_summary_found_something_unnamed_is_an_indicator():
    # msert.log cut: the tail holds the clean run of 10 March; the whole file's matches hold a run of
    # 25 January whose summary found something it names in a form not read ("Return code: 7").
    tail = msert_tail(CLEAN_FULL_SCAN, cut=True)
    tail["matches"] = ["Started On Mon Jan 25 10:00:00 2021", "Full Scan Results:",
                       "Found something in a form not read", "Return code: 7 (0x7)",
                       "Started On Wed Mar 10 11:55:13 2021", "Full Scan Results:", "Return code: 0 (0x0)"]
    document = _document()
    document["investigation"]["msert_log"] = tail
    result = _judged(document)
    assert result.state is State.INDICATORS_FOUND, (result.state, result.next_action)
    assert "reports a detection the log names in a form not read" in result.next_action


def test_a_detection_printed_beside_available_false_is_an_indicator():
    document = _document()
    document["investigation"]["defender"] = {
        "available": False, "truncated": False,
        "detections": [defender_detection("Backdoor:ASP/SecChecker.A", detected_at="2021-02-01T00:00:00Z")]}
    result = _judged(document)
    assert result.state is State.INDICATORS_FOUND
    assert not any("Defender is not available" in line for line in result.evidence)


# -- minor version 1.5 (review of issue 21): the folders the web-shell search looked in ---------------

ROOT_GONE = ("The IIS root folder C:\\inetpub\\wwwroot was not found: web shells there were not looked for; "
             "check where the Default Web Site lives")
MOVED = Path(__file__).parent / "probe_documents" / "exchange2016_cu19_investigation_1.5_iis_root_moved.json"


def _with_folders(folders: list[dict[str, Any]] | None, **changed: Any) -> dict[str, Any]:
    """``_document`` as probe.ps1 1.5 prints it: with the candidate folders (None: without, as before 1.5)."""
    document = _document(**changed)
    if folders is not None:
        document["investigation"]["candidate_folders"] = folders
    return document


def _current(reach: list[dict[str, Any]] | None = None, **changed: Any) -> dict[str, Any]:
    """``_document`` as the current probe (1.5) prints it, every candidate folder there: a 1.4 document is
    never clean (its web-shell search skipped hidden files and the IIS root)."""
    return _with_folders(candidate_folders(), reach=reach, **changed)


def test_an_iis_root_not_there_keeps_a_patched_scanned_server_incomplete():
    # inetpub moved to D: and applicationHost.config unreadable or naming a folder that is gone: the probe
    # listed a folder that is not there, and the one IIS serves was never looked in. Before 1.5 nothing in
    # the document said so, and the server could be clean.
    result = _judged(_with_folders(candidate_folders(present=False)))
    assert result.state is State.INCOMPLETE
    assert result.next_action == ROOT_GONE
    assert any(line.startswith("Web-shell folder C:\\inetpub\\wwwroot (the IIS root): not there")
               for line in result.evidence)


def test_every_candidate_folder_there_can_be_clean():
    result = _judged(_with_folders(candidate_folders("D:\\inetpub\\wwwroot")))
    assert result.state is State.CLEAN, result.evidence
    assert any(line.startswith("Web-shell folders looked in: D:\\inetpub\\wwwroot (the IIS root, directly), "
                               "D:\\inetpub\\wwwroot\\aspnet_client, ") for line in result.evidence)


def test_an_aspnet_client_folder_not_there_is_evidence_only_an_auth_folder_is_a_gap():
    # Nothing can be hidden in a folder that is not there; but every Exchange 2016 server holds OWA's
    # and ECP's auth folders: one "not there" was not looked in (final re-check of issue 21).
    result = _judged(_with_folders(candidate_folders(aspnet_client=False)))
    assert result.state is State.CLEAN, result.evidence
    assert any(line.startswith("Web-shell folder C:\\inetpub\\wwwroot\\aspnet_client: not there")
               for line in result.evidence)
    result = _judged(_with_folders(candidate_folders(auth=False)))
    assert result.state is State.INCOMPLETE
    assert "auth was not found (every server with the Client Access front end holds it)" in \
        result.next_action


def test_a_list_of_candidate_folders_without_the_iis_root_is_a_gap():
    # A 1.5 probe always lists the IIS root first: a list without it (cut, forged) cannot show it was read.
    result = _judged(_with_folders(candidate_folders()[1:]))
    assert result.state is State.INCOMPLETE
    assert result.next_action.startswith("The web-shell search names no IIS root folder")


PRE_1_5 = ("The web-shell search was made by a probe before contract 1.5: hidden files and the IIS root were "
           "not looked at; re-collect with the current probe")


def test_a_1_4_document_without_candidate_folders_reads_as_before_and_is_incomplete():
    # Read as before (no folders: not read); judged incomplete, naming why: a probe before 1.5 listed no
    # hidden file and never looked in the IIS root itself, nor in a moved one (review 21, third round).
    obs = _observed(_document())
    assert obs.traces is not None and obs.traces.candidate_folders is None
    result = _judged(_document())
    assert (result.state, result.next_action) == (State.INCOMPLETE, PRE_1_5)
    assert not any("Web-shell folder" in line for line in result.evidence)
    assert f"Not shown: {PRE_1_5}" in result.evidence
    # The same document from a 1.5 probe is clean.
    assert _judged(_current()).state is State.CLEAN


def test_the_literal_1_5_document_with_the_iis_root_on_another_drive():
    document = json.loads(MOVED.read_text(encoding="utf-8"))
    obs = _observed(MOVED.read_bytes())
    assert obs.traces is not None
    assert obs.traces.candidate_folders == tuple(
        CandidateFolder(entry["path"], entry["present"], entry["iis_root"])
        for entry in document["investigation"]["candidate_folders"])
    assert obs.traces.candidate_folders[0] == CandidateFolder("D:\\inetpub\\wwwroot", True, iis_root=True)
    # The web shell hidden (attrib +h +s) in D:\inetpub\wwwroot\aspnet_client: listed from 1.5 on.
    result = _judged(MOVED.read_bytes())
    assert result.state is State.INDICATORS_FOUND
    assert result.next_action.startswith(
        "A possible web shell D:\\inetpub\\wwwroot\\aspnet_client\\system_web\\8Lw7tAhF9i1pJnRo.aspx")


@pytest.mark.parametrize(("entry", "read"), [
    pytest.param({"path": "D:\\w", "present": True, "iis_root": True}, CandidateFolder("D:\\w", True, True),
                 id="as-printed"),
    pytest.param({"path": "D:\\w", "present": "true", "iis_root": True}, None,
                 id="present-not-a-boolean-is-not-read"),
    pytest.param({"path": "D:\\w", "present": True, "iis_root": 1}, None,
                 id="root-not-a-boolean-is-not-read"),
    pytest.param({"path": "", "present": True, "iis_root": True}, None, id="no-path"),
    pytest.param({"present": False, "iis_root": True}, None, id="path-missing"),
    pytest.param("D:\\w", None, id="not-an-object"),
])
def test_a_candidate_folder_entry_is_read_fail_closed(entry: Any, read: CandidateFolder | None):
    assert parse_candidate_folders([entry]) == (() if read is None else (read,))


def test_the_candidate_folders_are_bounded_and_not_read_when_not_a_list():
    assert parse_candidate_folders(None) is None and parse_candidate_folders({"path": "C:\\"}) is None
    many = [{"path": f"C:\\f{i}", "present": True, "iis_root": False} for i in range(MAX_CANDIDATE_FOLDERS + 5)]
    assert len(parse_candidate_folders(many) or ()) == MAX_CANDIDATE_FOLDERS
    (long,) = parse_candidate_folders([{"path": "C:\\" + "x" * 5000, "present": True, "iis_root": True}]) or ()
    assert len(long.path) == MAX_PATH


FOLDERS_CUT = ("The list of web-shell folders was longer than is read, or held an entry that could not be read "
               "(see the probe errors): a folder not there, the IIS root among them, may be missing from it; "
               "re-collect with the current probe")


DROPPED = ("investigation: 1 candidate_folders entries dropped (not objects with a plain absolute path and "
           "boolean present and iis_root)")


@pytest.mark.parametrize(("extra", "error"), [
    pytest.param([{"path": f"C:\\f{i}", "present": True, "iis_root": False} for i in range(MAX_CANDIDATE_FOLDERS)],
                 f"investigation: 4 candidate_folders entries past the first {MAX_CANDIDATE_FOLDERS} left out",
                 id="past-the-cap"),
    pytest.param([{"present": False, "iis_root": True}],
                 DROPPED,
                 id="no-path"),
    pytest.param([None], DROPPED,
                 id="null"),
])
def test_candidate_folders_left_out_are_flagged_and_named(extra: list[Any], error: str):
    # Either may be the IIS root "not there": the list is never read as complete.
    document = _with_folders(candidate_folders() + extra)
    obs = _observed(document)
    assert obs.traces is not None and obs.traces.candidate_folders_truncated
    assert error in obs.probe_errors
    result = _judged(document)
    assert (result.state, result.next_action) == (State.INCOMPLETE, FOLDERS_CUT)
    stored = json.loads(_dumps(observation_to_dict(obs)))
    assert stored["traces"]["candidate_folders_truncated"] is True
    assert observation_from_dict(stored) == obs
    whole = _observed(_with_folders(candidate_folders()))
    assert whole.traces is not None and not whole.traces.candidate_folders_truncated
    assert "candidate_folders_truncated" not in observation_to_dict(whole)["traces"]  # stored only when true


NO_APPLICATION_HOST = ("candidates: Cannot find path 'C:\\Windows\\System32\\inetsrv\\config\\applicationHost.config' "
                       "because it does not exist.")


@pytest.mark.parametrize("error", [
    pytest.param(NO_APPLICATION_HOST, id="file-not-found"),
    pytest.param("candidates: applicationHost.config names no folder of the Default Web Site", id="no-folder"),
])
def test_an_iis_root_not_read_from_application_host_config_is_never_clean(error: str):
    # What probe.ps1 prints when it could not read the Default Web Site's folder (e.g. a 32-bit PowerShell
    # under WOW64 before it read through sysnative): a candidates error, and %SystemDrive%\inetpub\wwwroot
    # listed without being claimed the IIS root. Before, the fallback was silent and marked iis_root.
    folders = [entry | {"iis_root": False} for entry in candidate_folders()]
    document = _with_folders(folders)
    document["errors"] = [error]
    obs = _observed(document)
    assert obs.traces is not None and obs.traces.candidates_truncated and error in obs.probe_errors
    result = _judged(document)
    assert result.state is State.INCOMPLETE
    assert result.next_action.startswith("The list of .aspx/.ashx files is not whole")
    assert any(line.startswith("Not shown: The web-shell search names no IIS root folder") for line in result.evidence)
    # The control: the same document read from applicationHost.config, no error.
    assert _judged(_current()).state is State.CLEAN


def test_candidate_folders_round_trip_and_are_stored_only_when_read():
    obs = _observed(_with_folders(candidate_folders(present=False)))
    stored = json.loads(_dumps(observation_to_dict(obs)))
    assert stored["traces"]["candidate_folders"][0] == {"path": "C:\\inetpub\\wwwroot", "present": False,
                                                        "iis_root": True}
    assert observation_from_dict(stored) == obs
    assert "candidate_folders" not in observation_to_dict(_observed(_document()))["traces"]


def test_traces_stored_before_1_5_read_and_encode_as_before():
    text = _dumps(observation_to_dict(_observed(_document())))
    read = observation_from_dict(json.loads(text))
    assert read.traces is not None and read.traces.candidate_folders is None
    assert _dumps(observation_to_dict(read)) == text


@pytest.mark.parametrize(("forged", "read"), [
    pytest.param("C:\\inetpub\\wwwroot", None, id="a-text"),
    pytest.param([{"path": 7, "present": True, "iis_root": True}], (), id="path-not-a-text"),
    pytest.param([{"path": "C:\\w", "present": "true", "iis_root": "true"}], (CandidateFolder("C:\\w", False),),
                 id="flags-not-true"),
])
def test_a_forged_stored_candidate_folder_is_read_fail_closed(forged: Any, read: Any):
    stored = json.loads(_dumps(observation_to_dict(_observed(_with_folders(candidate_folders())))))
    stored["traces"]["candidate_folders"] = forged
    traces = observation_from_dict(stored).traces
    assert traces is not None and traces.candidate_folders == read


@pytest.mark.integration
def test_collect_keeps_the_candidate_folders(wsman_peer, tmp_path):
    fleet = {
        "T15-ROOT": _with_folders(candidate_folders(present=False)) | {"host": "T15-ROOT", "collected_at": _now()},
        "T15-MOVED": json.loads(MOVED.read_text(encoding="utf-8")) | {"host": "T15-MOVED", "collected_at": _now()},
        "T15-OLD": _document() | {"host": "T15-OLD", "collected_at": _now()},
    }
    lines = ["name,winrm_url"]
    for name, document in fleet.items():
        wsman_peer.set_host(name, HostBehavior(stdout=dumps(document), chunks=2))
        lines.append(f"{name},{wsman_peer.url(name)}")
    inventory = tmp_path / "hosts.csv"
    inventory.write_text("\n".join(lines) + "\n")
    config = tmp_path / "collection.toml"
    config.write_text("[winrm]\n" f'username = "{wsman_peer.username.replace(chr(92), chr(92) * 2)}"\n'
                      f'ca_file = "{wsman_peer.ca_file}"\ndeadline_seconds = 10\nretries = 0\n')
    db = f"sqlite:///{tmp_path / 'store.db'}"
    env = {**os.environ, "PROXYLOGON_WINRM_PASSWORD": wsman_peer.password,
           "PROXYLOGON_DATA_DIR": str(tmp_path / "data")}
    wsman_peer.expected_script = compact(probe_script())  # the 1.5 probe is what goes out
    try:
        done = subprocess.run([sys.executable, "-m", "collectors", "collect", "--config", str(config),
                               "--inventory", str(inventory), "--db", db, "--secrets", os.devnull],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    finally:
        wsman_peer.expected_script = None
    assert done.returncode == 0, done.stderr
    assert all(not wsman_peer.mismatches(name) for name in fleet)
    store = SnapshotStore.open(db)
    try:
        latest = store.latest()
        assert latest is not None
        stored = {a.observation.host.name: a.observation for a in store.assessments(latest.id)}
        found = store.investigations(latest.id)
        assert store.verify(workers=1).ok
    finally:
        store.dispose()
    gone = stored["T15-ROOT"].traces
    assert gone is not None and gone.candidate_folders is not None
    assert gone.candidate_folders[0] == CandidateFolder("C:\\inetpub\\wwwroot", False, iis_root=True)
    assert (found["T15-ROOT"].state, found["T15-ROOT"].next_action) == (State.INCOMPLETE, ROOT_GONE)
    assert found["T15-MOVED"].state is State.INDICATORS_FOUND
    old = stored["T15-OLD"].traces
    assert old is not None and old.candidate_folders is None
    assert (found["T15-OLD"].state, found["T15-OLD"].next_action) == (State.INCOMPLETE, PRE_1_5)


def test_a_patched_scanned_exchange_2010_server_can_be_clean():
    """Review of issue 21 (M3): on Exchange 2010 only CVE-2021-26857 applies, whose check
    reads the Application event log (its reach is judged with the logs); the probe searches no
    log file there, so indicators.log_window_days is null. That is no gap: a 2010 server with a
    clean full scan after the fix and an event log reaching back before the window is clean
    (before, "The CVE checks read no log file ...: re-collect" kept it incomplete for ever)."""
    doc = probe_document("EX10-01", "14.3.513.0", kbs=["KB5000978"],
                         roles=["Mailbox", "ClientAccess", "UnifiedMessaging"],
                         investigation=investigation(log_reach_entries=[
                             {"log": "Application", "oldest": "2020-12-01T08:00:00Z"}], candidate_folders=[
                             # A 1.5 probe on 2010: no FrontEnd\HttpProxy, so the auth folders are not there.
                             entry | {"path": entry["path"].replace("V15", "V14")}
                             for entry in candidate_folders(auth=False)]))
    doc["install_path"] = "C:\\Program Files\\Microsoft\\Exchange Server\\V14\\"
    doc["product_line"] = "v14"
    doc["indicators"]["log_window_days"] = None  # what the probe prints on 2010
    obs = parse_document(json.dumps(doc), Host("EX10-01"), "import", NOW)
    catalog = load_catalog()
    verdict = evaluate(obs, catalog, NOW)
    assert verdict.status is Status.PATCHED and verdict.product == "2010", verdict
    result = judge_observation(obs, verdict, catalog.advisory, NOW)
    assert result.state is InvestigationState.CLEAN, (result.state, result.next_action)
    assert any("search no log file" in line for line in result.evidence)
    # On 2016, the same null is still a gap: its CVE checks search HttpProxy and ECP logs.
    doc16 = _current()
    doc16["indicators"]["log_window_days"] = None
    result16 = _judged(doc16)
    assert result16.state is InvestigationState.INCOMPLETE, result16
    assert "The CVE checks read no log file" in result16.next_action


def test_a_detection_printed_before_defenders_error_is_an_indicator():
    """Review of issue 21: Defender's cmdlet failed part-way (an error line), having printed a
    China Chopper detection first. Dropping the list made the server only incomplete; what was
    printed counts (indicators_found), and the list is never taken for the whole history."""
    document = _document()
    document["investigation"]["defender"]["detections"] = [
        defender_detection("Backdoor:ASP/Chopper.F!dha", detected_at="2021-03-01T00:00:00Z")]
    document["errors"] = ["defender_detections: 0x800106ba service stopped"]
    result = _judged(document)
    assert result.state is InvestigationState.INDICATORS_FOUND, result
    assert any("Chopper" in line for line in result.evidence)


# -- review 21 (third round): what a reader cut or dropped, and a document from before 1.5 ----------
# (the reviewer's tests of tests/security/test_investigation_review_2.py, moved here)


def test_a_document_from_before_1_5_is_never_clean():
    """A 1.4 (or any pre-1.5) document's candidate search listed no hidden file (no -Force) and never
    looked in a moved IIS root. Nothing in such a document can show those gaps did not matter, and
    probe.ps1's header documents running older copies by hand and importing their output."""
    document = _document()  # as probe.ps1 1.4 prints it: no candidate_folders
    assert "candidate_folders" not in document["investigation"]
    assert _judged(document).state is not State.CLEAN


def test_candidate_folders_past_the_readers_cap_are_never_read_as_complete():
    """parse_candidate_folders keeps the first MAX_CANDIDATE_FOLDERS (10) entries: an IIS root "not
    there" past them must not leave the server clean. A list cut at its cap is never read as complete."""
    listed = candidate_folders() * 2 + candidate_folders()[:2]  # 10 entries, all there
    listed.append({"path": "D:\\inetpub\\wwwroot", "present": False, "iis_root": True})
    assert _judged(_with_folders(listed)).state is not State.CLEAN


@pytest.mark.parametrize("entry", [{}, "x", None, {"path": "", "size": 1}],
                         ids=["empty-object", "text", "null", "empty-path"])
def test_a_candidate_entry_the_reader_cannot_read_is_never_clean(entry: Any):
    """A listed file that could not be read is a file nobody looked at."""
    document = _with_folders(candidate_folders())
    document["investigation"]["candidates"] = [entry]
    assert _judged(document).state is not State.CLEAN


@pytest.mark.parametrize("entry", [None, "Backdoor:ASP/SecChecker.A", 7], ids=["null", "text", "number"])
def test_a_defender_record_the_reader_cannot_read_is_never_clean(entry: Any):
    """A detection nobody could read must not leave the server clean."""
    document = _with_folders(candidate_folders())
    document["investigation"]["defender"]["detections"] = [entry]
    assert _judged(document).state is not State.CLEAN


@pytest.mark.parametrize("defender", [{}, {"available": None, "detections": [], "truncated": False},
                                      {"available": "true", "detections": [], "truncated": False}],
                         ids=["empty", "available-null", "available-text"])
def test_defender_said_neither_present_nor_absent_is_not_absent(defender: dict[str, Any]):
    """Only a literal false may mean "Defender absent" (which excuses its history); anything else that
    is not a literal true is unknown (None)."""
    document = _with_folders(candidate_folders())
    document["investigation"]["defender"] = defender
    assert _judged(document).state is not State.CLEAN
