"""Minor version 1.3 of the probe contract (issue 21): ``investigation``, what an investigation after the
fix builds on, read into ``Observation.traces``.

The literal document probe_documents/exchange2016_cu19_investigation_1.3.json (its MSERT lines follow the
public log quoted in tests/collectors/test_traces.py; the runs, the Defender record's threat id and the
files are constructed), documents built with tests/collectors/documents.py, the stored form
(compliance/codec.py) and its old rows, and an end-to-end collection through the WS-Management peer.
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

from collectors.probe import compact, load_document, parse_document, probe_script
from compliance.codec import observation_from_dict, observation_to_dict
from compliance.evaluate import assess
from compliance.models import Host, Observation, server_roles
from compliance.traces import Candidate, Detection, LogReach, Scan, Traces
from store import SnapshotStore
from tests.collectors.documents import (
    CLEAN_FULL_SCAN,
    candidate,
    defender_detection,
    dumps,
    investigation,
    msert_tail,
    probe_document,
)
from tests.peers.wsman import HostBehavior

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = Path(__file__).parent / "probe_documents"
FIXTURE = DOCUMENTS / "exchange2016_cu19_investigation_1.3.json"
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
EX = "C:\\Program Files\\Microsoft\\Exchange Server\\V15\\"
SHELL = "C:\\inetpub\\wwwroot\\aspnet_client\\system_web\\8Lw7tAhF9i1pJnRo.aspx"


def _at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def _dumps(data: object) -> str:
    # As store/snapshots.py writes an observation: sorted keys, no spaces, not ASCII-escaped.
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _fixture() -> Observation:
    obs = parse_document(FIXTURE.read_bytes(), Host("EX16-03"), "import", NOW)
    assert obs.failure is None, obs.failure
    return obs


# -- the literal document --------------------------------------------------------------------------


def test_the_1_3_document_reads_into_traces():
    obs = _fixture()
    traces = obs.traces
    assert traces is not None and obs.probe_errors == ()
    assert obs.exsetup_version == "15.1.2176.9" and obs.dotnet_release == 528049  # the rest as before
    # msert.old.log's run (an EOMT quick scan, four days after the fix) comes before msert.log's.
    assert traces.scans is not None
    assert [(s.started_at, s.kind, s.finished, s.detections) for s in traces.scans] == [
        (_at(2021, 3, 7, 20, 40, 2), "quick", True, ("Backdoor:ASP/SecChecker.A",)),
        (_at(2021, 3, 10, 10, 55, 13), "full", True, ())]
    assert traces.scans[1].raw == tuple(CLEAN_FULL_SCAN[1:])
    (detection,) = traces.detections or ()
    assert detection == Detection("Backdoor:ASP/SecChecker.A", _at(2021, 3, 7, 20, 46, 31),
                                  ("file:_" + SHELL,), True, detection.raw)
    assert traces.defender_available is True and not traces.detections_truncated
    assert traces.log_reach == (
        LogReach("httpproxy", _at(2021, 1, 4, 0, 0, 7)), LogReach("ecp_server", _at(2021, 1, 4, 0, 0, 9)),
        LogReach("oab_generator", _at(2021, 1, 4, 1)), LogReach("application_event_log", _at(2020, 12, 1, 8)))
    assert traces.candidates == (
        Candidate(EX + "FrontEnd\\HttpProxy\\owa\\auth\\logon.aspx", 11380, _at(2021, 3, 3, 21, 12, 50),
                  _at(2021, 2, 11, 2, 25, 38)),
        Candidate(EX + "FrontEnd\\HttpProxy\\ecp\\auth\\TimeoutLogoff.aspx", 2316, _at(2021, 3, 3, 21, 12, 51),
                  _at(2021, 2, 11, 2, 25, 40)),
        Candidate(SHELL, 472, _at(2021, 3, 2, 23, 55, 31), _at(2021, 3, 2, 23, 55, 31)))
    assert not traces.candidates_truncated and not traces.scans_truncated
    assert traces.fixed_at == _at(2021, 3, 3, 21, 14, 9)


def test_documents_before_1_3_have_no_traces():
    older = [path for path in sorted(DOCUMENTS.glob("*.json")) if "investigation" not in json.loads(path.read_text())]
    assert len(older) >= 10
    for path in older:
        obs = parse_document(path.read_bytes(), Host("X"), "import", NOW)
        assert obs.failure is None and obs.traces is None
        assert "traces" not in observation_to_dict(obs)
    # null reads as absent: not read.
    document = json.loads(older[0].read_text()) | {"investigation": None}
    assert parse_document(json.dumps(document), Host("X"), "import", NOW).traces is None


def test_an_investigation_of_the_wrong_json_type_refuses_the_document():
    obs = parse_document((DOCUMENTS / "invalid" / "investigation_text.json").read_bytes(), Host("X"), "winrm", NOW)
    assert obs.failure is not None and obs.failure.reason == "bad_output"
    assert "investigation" in obs.failure.detail


def test_a_broken_investigation_costs_only_itself():
    # Wrong types inside: the schema never sees them (load_document checks the type of the whole only);
    # the reader keeps what it can use and the build evidence is never lost.
    value = investigation(detections=[defender_detection(), "Backdoor:ASP/SecChecker.A"])  # type: ignore[list-item]
    value["msert_log"] = {"lines": "Threat Detected: x"}
    value["log_reach"] = "HttpProxy"
    value["candidates"] = [{"path": 7}, candidate(size=-3)]
    value["exsetup_written_at"] = "03/03/2021 21:14:09"
    document = probe_document("EX1", "15.2.858.5", errors=["eomt: key missing"], investigation=value)
    obs = parse_document(dumps(document), Host("EX1"), "winrm", NOW)
    assert obs.failure is None and obs.exsetup_version == "15.2.858.5"
    assert obs.probe_errors == ("eomt: key missing",
                                "investigation: msert_log left out, not an object with a list of lines",
                                "investigation: 1 Defender detection records dropped (not objects)",
                                "investigation: 1 candidate entries dropped (not objects with a path): the "
                                "list of candidates is not whole")
    traces = obs.traces
    assert traces is not None
    assert (traces.scans, traces.log_reach, traces.fixed_at) == (None, None, None)
    assert [d.threat for d in traces.detections or ()] == ["Backdoor:MSIL/Chopper.F!dha"]
    assert [(c.path, c.size) for c in traces.candidates or ()] == [(candidate()["path"], None)]
    # What was dropped is never read as the whole list (review 21, third round).
    assert traces.detections_truncated and traces.candidates_truncated


def test_probe_document_takes_an_investigation_and_load_document_accepts_it():
    document = probe_document("EX1", "15.1.2176.9", investigation=investigation(
        msert_log=msert_tail(CLEAN_FULL_SCAN, cut=True), detections=[defender_detection()],
        candidates=[candidate()], candidates_truncated=True))
    loaded = load_document(dumps(document))
    assert loaded["investigation"] == document["investigation"]
    assert "investigation" not in probe_document("EX1", "15.1.2176.9")  # a 1.1 document stays one


# -- the stored form -------------------------------------------------------------------------------


def test_document_to_observation_to_store_and_back_is_equal():
    obs = _fixture()
    stored = observation_to_dict(obs)
    assert set(stored["traces"]) == {"scans", "detections", "defender_available", "log_reach", "candidates",
                                     "candidates_truncated", "fixed_at", "scans_truncated", "detections_truncated"}
    assert stored["traces"]["fixed_at"] == "2021-03-03T21:14:09+00:00"
    assert observation_from_dict(json.loads(_dumps(stored))) == obs


@pytest.mark.parametrize("traces", [
    pytest.param(Traces(), id="nothing-read"),
    pytest.param(Traces(scans=(), detections=(), defender_available=False, log_reach=(), candidates=()),
                 id="read-empty"),
    pytest.param(Traces(defender_available=False, candidates_truncated=True, scans_truncated=True,
                        detections_truncated=True), id="flags"),
])
def test_traces_round_trip(traces: Traces):
    obs = replace(_fixture(), traces=traces)
    assert observation_from_dict(json.loads(_dumps(observation_to_dict(obs)))) == obs


OUTCOMES = ("found", "clean", "unknown")


@pytest.mark.parametrize("outcome", OUTCOMES)
def test_a_scans_outcome_and_reach_truncated_round_trip(outcome: str):
    scan = Scan(_at(2021, 3, 10, 10, 55, 13), "full", "1.333.1102.0", True, outcome=outcome)
    for traces in (Traces(scans=(scan,), reach_truncated=True), Traces(scans=(scan,))):
        obs = replace(_fixture(), traces=traces)
        assert observation_from_dict(json.loads(_dumps(observation_to_dict(obs)))) == obs


def test_traces_stored_before_the_outcome_read_as_unknown_and_encode_the_same():
    # A row stored before Scan.outcome and Traces.reach_truncated: no such keys. It reads as
    # "unknown" (never clean) and not truncated, and encodes to the very text it was stored as.
    old = ('{"candidates":null,"candidates_truncated":false,"defender_available":true,"detections":[],'
           '"detections_truncated":false,"fixed_at":"2021-03-03T21:14:09+00:00","log_reach":[],'
           '"scans":[{"detections":[],"finished":true,"kind":"full","raw":["Full Scan Results:"],'
           '"started_at":"2021-03-10T10:55:13+00:00","version":"1.333.1102.0"}],"scans_truncated":false}')
    stored = observation_to_dict(_fixture()) | {"traces": json.loads(old)}
    obs = observation_from_dict(json.loads(_dumps(stored)))
    assert obs.traces is not None and [s.outcome for s in obs.traces.scans or ()] == ["unknown"]
    assert not obs.traces.reach_truncated
    assert _dumps(observation_to_dict(obs)["traces"]) == old


@pytest.mark.parametrize("forged", ["Clean", "maybe", 0, True, None, ["clean"]])
def test_a_forged_stored_outcome_reads_as_unknown(forged: Any):
    stored = json.loads(_dumps(observation_to_dict(_fixture())))
    stored["traces"]["scans"][1]["outcome"] = forged
    stored["traces"]["reach_truncated"] = "true"
    traces = observation_from_dict(stored).traces
    assert traces is not None and traces.scans is not None
    assert traces.scans[1].outcome == "unknown" and not traces.reach_truncated


def test_an_observation_stored_before_reads_with_no_traces():
    obs = replace(_fixture(), traces=None)
    stored = observation_to_dict(obs)
    assert "traces" not in stored  # encodes to the very text stored before 1.3 (digests cover it)
    assert observation_from_dict(json.loads(_dumps(stored))).traces is None


@pytest.mark.parametrize(("member", "value", "expected"), [
    ("scans", "forged", None),
    ("scans", [{"kind": "full"}, 3], ()),
    ("detections", [{"threat": 7, "raw": ""}], ()),
    ("defender_available", "yes", None),
    ("log_reach", [{"log": None}], ()),
    ("candidates", [{"path": "C:\\x.aspx", "size": True}], ()),
    ("fixed_at", "2021-03-03 21:14", None),
    ("fixed_at", "2021-03-03T21:14:09", None),  # no offset: not as written
    ("candidates_truncated", "true", False),
])
def test_a_forged_stored_member_is_not_read(member: str, value: Any, expected: Any):
    stored = json.loads(_dumps(observation_to_dict(_fixture())))
    stored["traces"][member] = value
    assert getattr(observation_from_dict(stored).traces, member) == expected
    stored["traces"] = ["not", "an", "object"]
    assert observation_from_dict(stored).traces is None


def test_a_1_3_observation_is_saved_read_back_and_verified(empty_store, shipped_catalog):
    # Through a real store: what the digests cover is this encoding, so the snapshot verifies.
    obs = replace(_fixture(), host=Host("EX16-03", roles=server_roles(["Mailbox"])), observed_at=NOW)
    snapshot = assess([obs], shipped_catalog, NOW, source="test", tool_version="0.test")
    snapshot_id = empty_store.save(snapshot, shipped_catalog)
    (loaded,) = (a.observation for a in empty_store.assessments(snapshot_id))
    assert loaded == obs and loaded.traces == obs.traces
    assert empty_store.verify(workers=1).ok


# -- end to end: `python -m collectors collect` against the WS-Management peer ---------------------


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.integration
def test_collect_stores_the_traces_the_probe_printed(wsman_peer, tmp_path):
    shell = investigation(
        msert_old_log=msert_tail(json.loads(FIXTURE.read_text())["investigation"]["msert_old_log"]["lines"]),
        detections=[defender_detection()], candidates=[candidate(SHELL, size=472)])
    fleet = {
        "T13-TRACES": probe_document("T13-TRACES", "15.1.2176.9", collected_at=_now(), investigation=shell),
        "T13-NODEF": probe_document("T13-NODEF", "15.2.858.5", collected_at=_now(),
                                    errors=["defender_detections: 0x800106ba"],
                                    investigation=investigation(defender_available=False, msert_log=None)),
        "T13-OLDER": probe_document("T13-OLDER", "15.2.858.5", collected_at=_now()),  # a 1.2 probe
    }
    lines = ["name,winrm_url"]
    for name, document in fleet.items():
        wsman_peer.set_host(name, HostBehavior(stdout=dumps(document), chunks=3))
        lines.append(f"{name},{wsman_peer.url(name)}")
    inventory = tmp_path / "hosts.csv"
    inventory.write_text("\n".join(lines) + "\n")
    config = tmp_path / "collection.toml"
    config.write_text("[winrm]\n" f'username = "{wsman_peer.username.replace(chr(92), chr(92) * 2)}"\n'
                      f'ca_file = "{wsman_peer.ca_file}"\ndeadline_seconds = 10\nretries = 0\n')
    db = f"sqlite:///{tmp_path / 'store.db'}"
    env = {**os.environ, "PROXYLOGON_WINRM_PASSWORD": wsman_peer.password,
           "PROXYLOGON_DATA_DIR": str(tmp_path / "data")}
    wsman_peer.expected_script = compact(probe_script())  # the 1.3 probe is what goes out
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
        assert store.verify(workers=1).ok
    finally:
        store.dispose()
    traces = stored["T13-TRACES"].traces
    assert traces is not None and traces.scans is not None
    assert [(s.started_at, s.kind, s.detections) for s in traces.scans] == [
        (_at(2021, 3, 7, 20, 40, 2), "quick", ("Backdoor:ASP/SecChecker.A",)),
        (_at(2021, 3, 10, 10, 55, 13), "full", ())]
    assert [d.threat for d in traces.detections or ()] == ["Backdoor:MSIL/Chopper.F!dha"]
    assert [c.path for c in traces.candidates or ()] == [SHELL]
    assert traces.fixed_at == _at(2021, 3, 3, 21, 14, 9) and traces.log_reach is not None
    nodef = stored["T13-NODEF"].traces
    # Defender's cmdlets failed (defender_detections error): its history is unknown, not "absent".
    assert nodef is not None and (nodef.defender_available, nodef.detections, nodef.scans) == (None, None, ())
    assert stored["T13-OLDER"].traces is None
