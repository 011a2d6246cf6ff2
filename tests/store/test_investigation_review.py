"""Review of issue 21 in the store: an investigation that found indicators (a Defender or
MSERT detection, a possible web shell; no CVE check hit) is a compromise indicator for the
deadline clock and the worklist; evidence bundles of a format 7 snapshot must hold
investigations.json, and hosts.csv, summary.txt, ``store export --format csv`` and verify's OK
line carry the investigation."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from compliance.deadline import DeadlinePolicy
from compliance.evaluate import assess
from compliance.investigation import InvestigationState
from compliance.models import Flag, Host, Observation, Status
from compliance.traces import Detection, LogReach, Scan, Traces
from store.deadlines import host_deadlines
from store.evidence import INVESTIGATION_COLUMNS, build_bundle, verify_bundle

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
PATCHED, BELOW = "15.1.2176.9", "15.1.2176.2"  # 2016 CU19 with and without the March SU
OLD = datetime(2020, 12, 1, tzinfo=UTC)
LOGS = tuple(LogReach(log, OLD) for log in ("httpproxy", "ecp_server", "oab_generator",
                                             "application_event_log"))


def _observe(name: str, build: str, traces: Traces | None = None) -> Observation:
    return Observation(Host(name, f"{name.lower()}.corp.example"), NOW - timedelta(minutes=5),
                       "test", exsetup_version=build, traces=traces)


def _fleet() -> list[Observation]:
    fixed = NOW - timedelta(days=10)
    full = Scan(fixed + timedelta(days=1), "full", "1.0", True)
    detection = Detection("Backdoor:ASP/Chopper.F!dha", NOW - timedelta(days=2),
                          ("C:\\inetpub\\wwwroot\\aspnet_client\\x.aspx",))
    return [
        _observe("SHELL", PATCHED, Traces(scans=(full,), detections=(detection,),
                                          defender_available=True, log_reach=LOGS,
                                          candidates=(), fixed_at=fixed)),
        _observe("CLEANISH", PATCHED, Traces(scans=(full,), detections=(),
                                             defender_available=True, log_reach=LOGS,
                                             candidates=(), fixed_at=fixed)),
        _observe("OPEN", BELOW),
    ]


def _save(store, catalog) -> int:  # type: ignore[no-untyped-def]
    return store.save(assess(_fleet(), catalog, NOW, source="test", tool_version="t"), catalog)


def test_a_detection_alone_starts_the_indicators_clock_and_puts_the_host_on_the_worklist(
        empty_store, shipped_catalog):
    snapshot_id = _save(empty_store, shipped_catalog)
    shell = next(s for s in empty_store.summaries(snapshot_id, shipped_catalog)
                 if s.host == "SHELL")
    # The premise: patched, no CVE check hit, but the investigation found indicators.
    assert shell.status is Status.PATCHED and Flag.INDICATORS_FOUND not in shell.flags
    assert shell.investigation is InvestigationState.INDICATORS_FOUND
    assert "SHELL" in empty_store.open_since(snapshot_id)
    due = host_deadlines(empty_store, snapshot_id, shipped_catalog, DeadlinePolicy())
    assert due["SHELL"].deadline.rule.startswith("compromise indicators")
    assert due["SHELL"].deadline.due_at == empty_store.info(snapshot_id).taken_at
    assert "CLEANISH" not in due
    needing = {s.host for s in empty_store.summaries(snapshot_id, shipped_catalog,
                                                     needing_work=True)}
    assert "SHELL" in needing and "CLEANISH" not in needing
    # verify derives the clocks again with the same rule.
    assert empty_store.verify().ok


def _members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _rezip(path: Path, members: dict[str, bytes], **manifest_changes: object) -> Path:
    manifest = json.loads(members["manifest.json"])
    manifest.update(manifest_changes)
    manifest["files"] = {name: hashlib.sha256(data).hexdigest()
                         for name, data in members.items() if name != "manifest.json"}
    with zipfile.ZipFile(path, "w") as target:
        for name, data in members.items():
            target.writestr(name, json.dumps(manifest) if name == "manifest.json" else data)
    return path


def test_a_format_7_snapshot_repacked_without_investigations_json_is_refused(
        empty_store, shipped_catalog, tmp_path):
    snapshot_id = _save(empty_store, shipped_catalog)
    members = _members(build_bundle(empty_store, empty_store.info(snapshot_id), NOW))
    del members["investigations.json"]
    for version in (2, 3, 4):
        kept = {name: data for name, data in members.items()
                if name in ("snapshot.json", "hosts.csv", "summary.txt", "manifest.json")
                or (version >= 3 and name == "acceptances.json")
                or (version >= 4 and name == "deadlines.json")}
        problems = verify_bundle(_rezip(tmp_path / f"v{version}.zip", kept,
                                        format=f"proxylogon-evidence-bundle/{version}"))
        assert any("investigations.json" in p and "repacked" in p for p in problems), problems


def test_the_bundle_and_the_csv_export_carry_the_investigation(empty_store, shipped_catalog,
                                                                store_url, tmp_path):
    from store.__main__ import main

    snapshot_id = _save(empty_store, shipped_catalog)
    data = build_bundle(empty_store, empty_store.info(snapshot_id), NOW)
    members = _members(data)
    hosts = list(csv.DictReader(io.StringIO(members["hosts.csv"].decode())))
    assert list(hosts[0])[-2:] == list(INVESTIGATION_COLUMNS)
    by_name = {row["host"]: row for row in hosts}
    assert by_name["SHELL"]["investigation"] == "indicators_found"
    assert "isolate" in by_name["SHELL"]["investigation_action"].lower()
    summary = members["summary.txt"].decode()
    assert "Investigation after the fix" in summary and "indicators_found 1" in summary
    path = tmp_path / "bundle.zip"
    path.write_bytes(data)
    out, err = io.StringIO(), io.StringIO()
    assert main(["--db", store_url, "--secrets", os.devnull, "verify", "--bundle", str(path)],
                out, err) == 0, err.getvalue()
    assert "investigations.json" in out.getvalue()
    # hosts.csv must say what snapshot.json does: a state changed is caught.
    members["hosts.csv"] = members["hosts.csv"].replace(b"indicators_found", b"clean", 1)
    assert any("hosts.csv" in p for p in verify_bundle(_rezip(tmp_path / "f.zip", members)))
    # store export --format csv: the same two columns at the end.
    out, err = io.StringIO(), io.StringIO()
    assert main(["--db", store_url, "--secrets", os.devnull, "export", "--format", "csv"],
                out, err) == 0, err.getvalue()
    exported = {row["host"]: row for row in csv.DictReader(io.StringIO(out.getvalue()))}
    assert exported["SHELL"]["investigation"] == "indicators_found"
    assert exported["OPEN"]["investigation"] == "not_investigated"
