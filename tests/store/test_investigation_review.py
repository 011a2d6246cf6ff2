"""Review of issue 21 in the store: an investigation that found indicators (a Defender or
MSERT detection, a possible web shell; no CVE check hit) is a compromise indicator for the
deadline clock and the worklist; evidence bundles of a format 7 snapshot must hold
investigations.json, and hosts.csv, summary.txt, ``store export --format csv`` and verify's OK
line carry the investigation; hosts.csv (bundle format 7) and the CSV export tell a patched
server with indicators to investigate first, as the pages do, beside the verdict's own action."""

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
from compliance.summary import COMPROMISE_FIRST, shown_action
from compliance.traces import Detection, LogReach, Scan, Traces
from store.deadlines import host_deadlines
from store.evidence import (
    BUNDLE_FORMAT,
    INVESTIGATION_COLUMNS,
    VERDICT_ACTION,
    build_bundle,
    snapshot_csv,
    summary_csv,
    verify_bundle,
)
from store.export import SNAPSHOT_COLUMNS

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
    # After every earlier column (bundle format 7 adds the verdict's own action last).
    assert list(hosts[0]) == [*SNAPSHOT_COLUMNS, *INVESTIGATION_COLUMNS, VERDICT_ACTION]
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


# -- Review 2 of issue 21 (L-a): the next action in the CSV export and the bundle's hosts.csv ---------
# Moved from tests/security/test_investigation_review_2.py (SHELL: patched, a Chopper detection after
# the fix, so its investigation found indicators; its verdict says "None: the fixes are installed").


def _compromised(store, catalog) -> int:  # type: ignore[no-untyped-def]
    snapshot_id = _save(store, catalog)
    assert store.investigations(snapshot_id)["SHELL"].state is InvestigationState.INDICATORS_FOUND
    return snapshot_id


def test_the_csv_export_tells_a_compromised_patched_server_to_investigate_first(empty_store,
                                                                                shipped_catalog):
    """``python -m store export --format csv`` (snapshot_csv) wrote the verdict's action beside
    investigation=indicators_found: shown_action was not applied there."""
    snapshot_id = _compromised(empty_store, shipped_catalog)
    assessments = empty_store.assessments(snapshot_id)
    recorded = empty_store.investigations(snapshot_id)
    text = snapshot_csv(assessments, snapshot_id,
                        [recorded.get(a.observation.host.name) for a in assessments])
    rows = {row["host"]: row for row in csv.DictReader(io.StringIO(text))}
    shell = rows["SHELL"]
    assert shell["investigation"] == "indicators_found"
    assert shell["action"].startswith(COMPROMISE_FIRST), shell["action"]
    # The verdict's own action (the stored, hashed one) stays beside it for an auditor.
    assert shell["verdict_action"].startswith("None"), shell["verdict_action"]
    assert shell["action"] == shown_action(shell["verdict_action"], "indicators_found")
    # Every other host: its verdict's action, as before.
    for name in ("CLEANISH", "OPEN"):
        assert rows[name]["investigation"] != "indicators_found"
        assert rows[name]["action"] == rows[name]["verdict_action"]
        assert not rows[name]["action"].startswith("Investigate for compromise")
    # Existing consumers: every earlier column in its place, the new one last.
    assert list(shell) == [*SNAPSHOT_COLUMNS, *INVESTIGATION_COLUMNS, VERDICT_ACTION]


def test_the_store_export_cli_tells_a_compromised_patched_server_to_investigate_first(
        empty_store, shipped_catalog, store_url):
    from store.__main__ import main

    _compromised(empty_store, shipped_catalog)
    out, err = io.StringIO(), io.StringIO()
    assert main(["--db", store_url, "--secrets", os.devnull, "export", "--format", "csv"],
                out, err) == 0, err.getvalue()
    rows = {row["host"]: row for row in csv.DictReader(io.StringIO(out.getvalue()))}
    assert rows["SHELL"]["action"].startswith(COMPROMISE_FIRST)
    assert rows["OPEN"]["action"] == rows["OPEN"]["verdict_action"]
    assert rows["OPEN"]["action"].startswith("Install")


def test_the_bundles_hosts_csv_tells_a_compromised_patched_server_to_investigate_first(
        empty_store, shipped_catalog, tmp_path):
    snapshot_id = _compromised(empty_store, shipped_catalog)
    data = build_bundle(empty_store, empty_store.info(snapshot_id), datetime.now(UTC), True)
    members = _members(data)
    assert json.loads(members["manifest.json"])["format"] == BUNDLE_FORMAT
    rows = {row["host"]: row for row in csv.DictReader(io.StringIO(
        members["hosts.csv"].decode("utf-8")))}
    assert rows["SHELL"]["investigation"] == "indicators_found"
    assert rows["SHELL"]["action"].startswith(COMPROMISE_FIRST), rows["SHELL"]["action"]
    assert rows["SHELL"]["verdict_action"].startswith("None")
    assert rows["OPEN"]["action"] == rows["OPEN"]["verdict_action"]
    # The same bytes as the CSV export, and verify derives them again from the signed rows.
    assessments = empty_store.assessments(snapshot_id)
    recorded = empty_store.investigations(snapshot_id)
    assert members["hosts.csv"].decode() == snapshot_csv(
        assessments, snapshot_id, [recorded.get(a.observation.host.name) for a in assessments])
    path = tmp_path / "bundle.zip"
    path.write_bytes(data)
    assert verify_bundle(path) == []


def test_a_bundle_whose_hosts_csv_shows_the_verdicts_action_for_a_compromised_server_is_refused(
        empty_store, shipped_catalog, tmp_path):
    """A hosts.csv edited back to "None: the fixes are installed" for a server with indicators
    (the manifest rehashed, no key) no longer says what snapshot.json derives to."""
    snapshot_id = _compromised(empty_store, shipped_catalog)
    members = _members(build_bundle(empty_store, empty_store.info(snapshot_id), NOW, True))
    text = members["hosts.csv"].decode()
    shell = next(row for row in csv.DictReader(io.StringIO(text)) if row["host"] == "SHELL")
    assert shell["action"] in text
    members["hosts.csv"] = text.replace(shell["action"], shell["verdict_action"], 1).encode()
    problems = verify_bundle(_rezip(tmp_path / "forged.zip", members))
    assert any(p.startswith("hosts.csv says something snapshot.json does not")
               for p in problems), problems
    # Dropping the verdict's column (a hosts.csv as format 6 wrote it, claimed as the current
    # format) is caught too.
    members["hosts.csv"] = summary_csv(json.loads(members["snapshot.json"]), snapshot_id,
                                       True).encode()
    problems = verify_bundle(_rezip(tmp_path / "format6-as-7.zip", members))
    assert any(p.startswith("hosts.csv says something") for p in problems), problems


def test_a_format_6_bundle_still_verifies_with_the_verdicts_action(empty_store, shipped_catalog,
                                                                    tmp_path):
    """Bundles written before (format 6: hosts.csv's action is the verdict's, no
    verdict_action) derive again to their own bytes; only the new format applies
    shown_action, and a format 6 bundle with the new hosts.csv is refused as well."""
    snapshot_id = _compromised(empty_store, shipped_catalog)
    members = _members(build_bundle(empty_store, empty_store.info(snapshot_id), NOW, True))
    new_hosts = members["hosts.csv"]
    old_hosts = summary_csv(json.loads(members["snapshot.json"]), snapshot_id, True)
    rows = list(csv.DictReader(io.StringIO(old_hosts)))
    assert list(rows[0]) == [*SNAPSHOT_COLUMNS, *INVESTIGATION_COLUMNS]
    shell = next(row for row in rows if row["host"] == "SHELL")
    assert shell["investigation"] == "indicators_found" and shell["action"].startswith("None")
    members["hosts.csv"] = old_hosts.encode()
    old = "proxylogon-evidence-bundle/6"
    assert verify_bundle(_rezip(tmp_path / "format6.zip", members, format=old)) == []
    members["hosts.csv"] = new_hosts
    problems = verify_bundle(_rezip(tmp_path / "format7-as-6.zip", members, format=old))
    assert any(p.startswith("hosts.csv says something") for p in problems), problems
