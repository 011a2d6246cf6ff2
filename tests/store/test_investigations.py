"""The investigation after the fix in the store (issue 21): judged at save for every member
(carried ones too), its summary columns and its record under the format 7 digest and agreeing
with each other; a store of schema 10 migrated with its snapshots unchanged, reading as not
investigated; the observed fix time carried from snapshot to snapshot; the evidence bundle's
investigations.json.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from compliance.evaluate import assess
from compliance.investigation import InvestigationState, StepState
from compliance.investigation_record import BEFORE, columns, dumps, loads
from compliance.models import Host, InstalledUpdate, Observation, Status
from compliance.summary import summarise
from compliance.traces import Scan, Traces
from store import SnapshotStore, chain
from store.evidence import build_bundle, verify_bundle
from store.verification import summary_matches
from tests.compliance.traces_fixtures import ROOT_FOLDERS, logs_at

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
PATCHED, BELOW = "15.1.2176.9", "15.1.2176.2"  # 2016 CU19 with and without the March SU
OLD = datetime(2020, 12, 1, tzinfo=UTC)  # before the exposure window's start
LOGS = logs_at(OLD)


def _traces(fixed: datetime, scans: tuple[Scan, ...] = ()) -> Traces:
    return Traces(scans=scans, detections=(), defender_available=True, log_reach=LOGS,
                  candidates=(), fixed_at=fixed, candidate_folders=ROOT_FOLDERS)


def _observe(name: str, at: datetime, build: str, traces: Traces | None = None,
             indicators: tuple[str, ...] = ()) -> Observation:
    # The fix's install day bounds the fix time (compliance/investigation.py), and the CVE
    # checks' logs reach back past the window's start: what a clean judgement needs.
    updates = () if traces is None or traces.fixed_at is None else (InstalledUpdate(
        "KB5000871", "Security Update for Exchange Server 2016 CU19 (KB5000871)",
        traces.fixed_at.date().isoformat()),)
    return Observation(Host(name, f"{name.lower()}.corp.example"), at - timedelta(minutes=5),
                       "test", exsetup_version=build, traces=traces, indicators=indicators,
                       installed_updates=updates, log_window_days=4000.0)


def _run(observations: list[Observation], catalog, at: datetime = NOW):  # type: ignore[no-untyped-def]
    return assess(observations, catalog, at, source="test", tool_version="t")


def _fleet(catalog, at: datetime = NOW) -> list[Observation]:  # type: ignore[no-untyped-def]
    fixed = at - timedelta(days=10)
    full = Scan(fixed + timedelta(days=3), "full", "1.0", True, outcome="clean")
    quick = Scan(fixed + timedelta(days=3), "quick", "1.0", True, outcome="clean")
    return [
        _observe("CLEAN", at, PATCHED, _traces(fixed, (full,))),
        _observe("QUICK", at, PATCHED, _traces(fixed, (quick,))),
        _observe("NOSCAN", at, PATCHED, _traces(fixed)),
        _observe("OLDPROBE", at, PATCHED),
        _observe("HIT", at, PATCHED, _traces(fixed, (full,)), indicators=("CVE-2021-26855",)),
        _observe("OPEN", at, BELOW),
    ]


def test_each_member_is_judged_at_save_and_the_columns_agree_with_the_record(
        empty_store, shipped_catalog):
    snapshot_id = empty_store.save(_run(_fleet(shipped_catalog), shipped_catalog),
                                   shipped_catalog)
    found = {s.host: s for s in empty_store.summaries(snapshot_id, shipped_catalog)}
    assert {host: s.investigation for host, s in found.items()} == {
        "CLEAN": InvestigationState.CLEAN, "QUICK": InvestigationState.INCOMPLETE,
        "NOSCAN": InvestigationState.NOT_INVESTIGATED,
        "OLDPROBE": InvestigationState.NOT_INVESTIGATED,
        "HIT": InvestigationState.INDICATORS_FOUND,
        "OPEN": InvestigationState.NOT_INVESTIGATED}
    # The investigation never changes the patch status.
    assert found["HIT"].status is Status.PATCHED and found["OPEN"].status is Status.VULNERABLE
    assert "Patch first" in found["OPEN"].investigation_action
    records = empty_store.investigations(snapshot_id)
    for host, summary in found.items():
        brief = columns(records[host])
        assert (brief.state, brief.action, brief.fixed_at, brief.next_scan_due,
                brief.steps_missed) == (summary.investigation, summary.investigation_action,
                                        summary.fixed_at, summary.next_scan_due,
                                        summary.steps_missed)
    clean = records["CLEAN"]
    assert clean.directive is not None and clean.directive.steps[0].state is StepState.MET
    assert found["CLEAN"].next_scan_due  # the first weekly scan is not due yet
    rows, _inventory = empty_store.raw_rows(snapshot_id)
    assert all(summary_matches(row) for row in rows)
    assert empty_store.info(snapshot_id).format == chain.CURRENT_FORMAT >= 7
    assert empty_store.verify().ok


def test_a_changed_investigation_column_or_record_breaks_the_digest(empty_store,
                                                                   shipped_catalog):
    snapshot_id = empty_store.save(_run(_fleet(shipped_catalog), shipped_catalog),
                                   shipped_catalog)
    for statement in ("UPDATE results SET investigation = 'clean' WHERE host = 'NOSCAN'",
                      "UPDATE results SET investigation_detail = replace(investigation_detail, "
                      "'not_investigated', 'clean') WHERE host = 'NOSCAN'"):
        with empty_store.engine.begin() as conn:
            saved = conn.execute(text("SELECT investigation, investigation_detail FROM results "
                                      "WHERE host = 'NOSCAN'")).one()
            conn.execute(text(statement))
        report = empty_store.verify()
        assert not report.ok and report.problems[0].snapshot_id == snapshot_id
        with empty_store.engine.begin() as conn:
            conn.execute(text("UPDATE results SET investigation = :a, investigation_detail = :b "
                              "WHERE host = 'NOSCAN'"), {"a": saved[0], "b": saved[1]})
        assert empty_store.verify().ok


def test_the_observed_fix_time_is_carried_from_the_first_snapshot_seen_patched(
        empty_store, shipped_catalog):
    first_at = NOW - timedelta(days=14)
    # Without ExSetup's time: the fix time is when the server was first seen patched.
    first = empty_store.save(_run([_observe("EX1", first_at, PATCHED)], shipped_catalog,
                                  first_at), shipped_catalog)
    seen = empty_store.summaries(first, shipped_catalog)[0].fixed_at
    assert seen == (first_at - timedelta(minutes=5)).isoformat()
    scan = Scan(first_at + timedelta(days=1), "full", "1.0", True, outcome="clean")
    traces = Traces(scans=(scan,), detections=(), defender_available=True, log_reach=LOGS,
                    candidates=(), candidate_folders=ROOT_FOLDERS)
    second = empty_store.save(_run([_observe("EX1", NOW, PATCHED, traces)], shipped_catalog),
                              shipped_catalog)
    summary = empty_store.summaries(second, shipped_catalog)[0]
    # A scan after the first sighting counts as after the fix, though this run saw it later.
    assert summary.fixed_at == seen and summary.investigation is InvestigationState.CLEAN
    window = empty_store.investigation(second, "EX1").window
    assert window is not None and window.end_source == "the observed fix time"
    # A carried member is judged again at the new snapshot's time.
    later = NOW + timedelta(days=5)
    third = empty_store.save(_run([_observe("EX2", later, BELOW)], shipped_catalog, later),
                             shipped_catalog)
    carried = {s.host: s for s in empty_store.summaries(third, shipped_catalog)}["EX1"]
    assert carried.carried and carried.investigation is InvestigationState.CLEAN
    # The first two weekly scans' intervals passed without one; the third is still to come.
    assert carried.steps_missed == 2 and carried.next_scan_due
    assert empty_store.verify().ok


def test_a_store_of_schema_10_is_migrated_and_its_snapshots_read_as_not_investigated(
        tmp_path, shipped_catalog, monkeypatch):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = SnapshotStore.open(url)
    monkeypatch.setattr(chain, "CURRENT_FORMAT", 6)  # what schema 10 wrote
    old = store.save(_run(_fleet(shipped_catalog, NOW - timedelta(days=1)), shipped_catalog,
                          NOW - timedelta(days=1)), shipped_catalog)
    monkeypatch.undo()
    before = store.raw_rows(old)
    with store.engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_results_investigation"))  # schema 12's
        conn.execute(text("DROP INDEX ix_results_judged"))  # schema 14's
        for name in chain.INVESTIGATION_FIELDS:
            conn.execute(text(f"ALTER TABLE results DROP COLUMN {name}"))
        conn.execute(text("UPDATE alembic_version SET version_num = '0010'"))
    store.dispose()
    store = SnapshotStore.open(url)  # migrates to the head (0011, 0012)
    try:
        rows, inventory = store.raw_rows(old)
        assert (rows, inventory) == (
            [(*row[:-len(chain.INVESTIGATION_FIELDS)], *[None] * len(chain.INVESTIGATION_FIELDS))
             for row in before[0]], before[1])
        assert store.verify().ok and store.info(old).format == 6
        summaries = store.summaries(old, shipped_catalog)
        assert all(s.investigation is None for s in summaries)
        assert store.investigation(old, "NOSCAN") is None
        # A value slipped into a row of the earlier format matches no digest.
        with store.engine.begin() as conn:
            conn.execute(text("UPDATE results SET investigation = 'clean' WHERE host = 'OPEN'"))
        assert not store.verify().ok
        with store.engine.begin() as conn:
            conn.execute(text("UPDATE results SET investigation = NULL WHERE host = 'OPEN'"))
        new = store.save(_run(_fleet(shipped_catalog), shipped_catalog), shipped_catalog)
        assert store.info(new).format == chain.CURRENT_FORMAT >= 7
        assert {s.investigation for s in store.summaries(new, shipped_catalog)} >= {
            InvestigationState.CLEAN, InvestigationState.INDICATORS_FOUND}
        assert store.verify().ok
    finally:
        store.dispose()


def test_the_record_round_trips_and_refuses_what_no_writer_makes(empty_store, shipped_catalog):
    snapshot_id = empty_store.save(_run(_fleet(shipped_catalog), shipped_catalog),
                                   shipped_catalog)
    for record in empty_store.investigations(snapshot_id).values():
        assert loads(dumps(record)) == record
    assert loads(None) is None and loads("") is None
    for bad in ('{"state": "fine"}', "[1]", '{"state": "clean", "next_action": "", '
                '"window": {"start": "2021-01-01T00:00:00"}, "evidence": [], "directive": null}'):
        try:
            loads(bad)
        except ValueError:
            continue
        raise AssertionError(f"read {bad!r}")


def test_the_bundle_holds_each_hosts_investigation_and_directive(empty_store, shipped_catalog,
                                                                 tmp_path):
    snapshot_id = empty_store.save(_run(_fleet(shipped_catalog), shipped_catalog),
                                   shipped_catalog)
    data = build_bundle(empty_store, empty_store.info(snapshot_id), NOW)
    path = tmp_path / "bundle.zip"
    path.write_bytes(data)
    assert verify_bundle(path) == []
    listed = json.loads(zipfile.ZipFile(io.BytesIO(data)).read("investigations.json"))
    hosts = {item["host"]: item for item in listed["hosts"]}
    assert listed["snapshot_id"] == snapshot_id and set(hosts) == {
        "CLEAN", "QUICK", "NOSCAN", "OLDPROBE", "HIT", "OPEN"}
    clean = hosts["CLEAN"]
    assert clean["state"] == "clean" and clean["first_full_scan"] is not None
    assert clean["directive"]["name"] == "CISA ED 21-02"
    assert clean["directive"]["steps"][0]["state"] == "met"
    assert hosts["HIT"]["state"] == "indicators_found" and hosts["HIT"]["status"] == "patched"
    summaries = {s.host: s for s in empty_store.summaries(snapshot_id, shipped_catalog)}
    assert all(hosts[h]["state"] == s.investigation.value for h, s in summaries.items()
               if s.investigation is not None)
    # Changing it (and its manifest line) is caught: it must be what snapshot.json derives to.
    members = {n: zipfile.ZipFile(io.BytesIO(data)).read(n)
               for n in zipfile.ZipFile(io.BytesIO(data)).namelist()}
    members["investigations.json"] = members["investigations.json"].replace(
        b'"state":"indicators_found"', b'"state":"clean"')
    manifest = json.loads(members["manifest.json"])
    manifest["files"]["investigations.json"] = hashlib.sha256(
        members["investigations.json"]).hexdigest()
    members["manifest.json"] = json.dumps(manifest).encode()
    forged = tmp_path / "forged.zip"
    with zipfile.ZipFile(forged, "w") as target:
        for name, content in members.items():
            target.writestr(name, content)
    assert any("investigations.json" in p for p in verify_bundle(forged))


def test_a_snapshot_from_before_is_listed_as_not_investigated_in_the_bundle(
        empty_store, shipped_catalog, monkeypatch, tmp_path):
    monkeypatch.setattr(chain, "CURRENT_FORMAT", 6)
    snapshot_id = empty_store.save(_run(_fleet(shipped_catalog), shipped_catalog),
                                   shipped_catalog)
    monkeypatch.undo()
    data = build_bundle(empty_store, empty_store.info(snapshot_id), NOW)
    path = tmp_path / "bundle.zip"
    path.write_bytes(data)
    assert verify_bundle(path) == []
    listed = json.loads(zipfile.ZipFile(io.BytesIO(data)).read("investigations.json"))
    assert {(i["state"], i["recorded"], i["next_action"]) for i in listed["hosts"]} == {
        ("not_investigated", False, BEFORE)}
    assert summarise(empty_store.assessments(snapshot_id)[0]).investigation is None
