"""Per-advisory verdicts in the store (issue 19): each member judged by the other advisories
too, the full verdicts in the row's verdict JSON and their brief in the ``advisories`` column,
both under the format 6 digest; snapshots saved before read as judged by March 2021 only, and a
per-advisory value slipped into one of their rows is caught by verify.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from importlib import resources

import pytest
from sqlalchemy import text

from compliance.catalog import build_catalog
from compliance.evaluate import assess
from compliance.models import Host, Observation, Status
from compliance.summary import advisories_of
from compliance.verdicts import verdict_for, worst
from store import chain
from store.evidence import build_bundle, verify_bundle

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
KEY = b"dummy-signing-key-for-tests"
MARCH_SU, BELOW = "15.1.2176.9", "15.1.2176.2"  # 2016 CU19 with and without the March SU
LATER = "15.1.2176.14"  # 2016 CU19 May21SU
SECOND = "test-second-advisory"


@pytest.fixture(scope="module")
def second():
    """A second advisory built from the shipped March 2021 file, whose fix for 2016 CU19 is the
    May 2021 SU: a host on the March SU is patched for one and vulnerable for the other."""
    data = resources.files("compliance") / "data"
    toml = (data / "advisories" / "2021-03-proxylogon.toml").read_text(encoding="utf-8")
    toml = toml.replace('id = "2021-03-proxylogon"', f'id = "{SECOND}"', 1)
    toml = toml.replace('{ cu = "CU19", build = "15.1.2176.9", kb = "KB5000871"',
                        '{ cu = "CU19", build = "15.1.2176.14", kb = "KB5003435"', 1)
    assert SECOND in toml and "15.1.2176.14" in toml
    return build_catalog((data / "builds.csv").read_text(encoding="utf-8"), toml,
                         (data / "lifecycle.csv").read_text(encoding="utf-8"))


def _run(catalog, builds: dict[str, str], at: datetime = NOW):
    observations = [Observation(Host(name, f"{name.lower()}.corp.example"),
                                at - timedelta(minutes=5), "test", exsetup_version=build)
                    for name, build in builds.items()]
    return assess(observations, catalog, at, source="test", tool_version="t")


def test_every_member_is_judged_by_each_advisory_and_stored_under_the_digest(
        empty_store, shipped_catalog, second):
    snapshot_id = empty_store.save(
        _run(shipped_catalog, {"EX1": MARCH_SU, "EX2": LATER, "EX3": BELOW}), shipped_catalog,
        others=[second])
    members = {a.observation.host.name: a for a in empty_store.assessments(snapshot_id)}
    assert members["EX1"].verdict.status is Status.PATCHED
    assert verdict_for(members["EX1"], SECOND).status is Status.VULNERABLE
    assert worst(members["EX1"]) is Status.VULNERABLE
    assert verdict_for(members["EX2"], SECOND).status is Status.PATCHED
    assert worst(members["EX3"]) is Status.VULNERABLE
    assert verdict_for(members["EX1"], "no-such-advisory") is None
    summaries = {s.host: s for s in empty_store.summaries(snapshot_id, shipped_catalog)}
    assert summaries["EX1"].status_for(SECOND) is Status.VULNERABLE
    assert summaries["EX1"].status_for(None) is Status.PATCHED
    assert summaries["EX1"].worst() is Status.VULNERABLE
    assert summaries["EX2"].worst() is Status.PATCHED
    info = empty_store.info(snapshot_id)
    assert info.format == chain.CURRENT_FORMAT >= 6 and empty_store.verify().ok


def test_a_carried_member_is_judged_by_every_advisory_at_the_new_time(
        empty_store, shipped_catalog, second):
    empty_store.save(_run(shipped_catalog, {"EX1": MARCH_SU, "EX2": LATER}), shipped_catalog,
                     others=[second])
    later = NOW + timedelta(days=10)  # EX1 not observed again: stale by then
    newest = empty_store.save(_run(shipped_catalog, {"EX2": LATER}, at=later), shipped_catalog,
                              others=[second])
    carried = next(a for a in empty_store.assessments(newest)
                   if a.observation.host.name == "EX1")
    other = verdict_for(carried, SECOND)
    assert carried.verdict.status is Status.UNKNOWN and other.status is Status.UNKNOWN
    assert other.as_of == later
    assert other.evidence[0].kind == "carried"  # every verdict says the reading was carried


@pytest.mark.parametrize("statement", [
    "UPDATE results SET advisories = REPLACE(advisories, 'vulnerable', 'patched')",
    "UPDATE results SET verdict = REPLACE(verdict, '\"others\"', '\"others_\"')",
])
def test_a_changed_per_advisory_verdict_breaks_the_digest(empty_store, shipped_catalog, second,
                                                          statement):
    empty_store.save(_run(shipped_catalog, {"EX1": MARCH_SU}), shipped_catalog, others=[second])
    assert empty_store.verify().ok
    with empty_store.engine.begin() as conn:
        assert conn.execute(text(statement)).rowcount == 1
    report = empty_store.verify()
    assert not report.ok and any("does not match its recorded digest" in p.message
                                 for p in report.problems), report.problems


def test_a_snapshot_from_before_reads_as_its_own_advisory_only(empty_store, shipped_catalog,
                                                               second, monkeypatch):
    monkeypatch.setattr(chain, "CURRENT_FORMAT", 5)  # what schema 9 wrote
    old = empty_store.save(_run(shipped_catalog, {"EX1": MARCH_SU}), shipped_catalog)
    monkeypatch.undo()
    newest = empty_store.save(_run(shipped_catalog, {"EX1": MARCH_SU}, NOW + timedelta(hours=1)),
                              shipped_catalog, others=[second])
    assert empty_store.verify().ok
    (before,) = empty_store.summaries(old, shipped_catalog)
    assert before.advisories == () and before.status_for(SECOND) is None
    assert before.worst() is Status.PATCHED
    (after,) = empty_store.summaries(newest, shipped_catalog)
    assert after.status_for(SECOND) is Status.VULNERABLE
    # A forger adding per-advisory statuses to the old snapshot's rows (unhashed in format 5)
    # is caught: the column must be empty there.
    forged = json.dumps([[SECOND, "patched", [], [], "None"]])
    with empty_store.engine.begin() as conn:
        conn.execute(text("UPDATE results SET advisories = :v WHERE snapshot_id = :id"),
                     {"v": forged, "id": old})
    report = empty_store.verify()
    assert not report.ok and [p.snapshot_id for p in report.problems] == [old]
    assert "does not match its recorded digest" in report.problems[0].message


def test_the_evidence_bundle_carries_and_proves_the_per_advisory_verdicts(
        empty_store, shipped_catalog, second, tmp_path):
    keyed = type(empty_store).open(str(empty_store.engine.url), signing_key=KEY)
    snapshot_id = keyed.save(_run(shipped_catalog, {"EX1": MARCH_SU}), shipped_catalog,
                             others=[second])
    bundle = build_bundle(keyed, keyed.info(snapshot_id), NOW)
    path = tmp_path / "bundle.zip"
    path.write_bytes(bundle)
    assert verify_bundle(path, key=KEY) == []
    document = json.loads(_member(bundle, "snapshot.json"))
    (row,) = document["results"]
    assert advisories_of(row["advisories"])[0].status is Status.VULNERABLE
    assert json.loads(row["verdict"])["others"][0]["advisory"].startswith(SECOND)


def _member(bundle: bytes, name: str) -> str:
    import io
    import zipfile
    with zipfile.ZipFile(io.BytesIO(bundle)) as archive:
        return archive.read(name).decode()


def test_advisories_text_round_trips_and_refuses_what_no_writer_makes():
    from compliance.models import Flag
    from compliance.summary import AdvisoryStatus, advisories_text
    statuses = (AdvisoryStatus("a", Status.VULNERABLE, (Flag.CU_UPDATE_REQUIRED,), ("CVE-1",),
                               "Update"), AdvisoryStatus("b", Status.PATCHED))
    assert advisories_of(advisories_text(statuses)) == statuses
    assert advisories_text(()) is None and advisories_of(None) == ()
    for bad in ('[["a", "hacked", [], [], ""]]', "{", '[["a"]]', "[1]"):
        with pytest.raises(ValueError):
            advisories_of(bad)


def test_a_save_without_the_other_advisories_carries_none_of_an_earlier_time(
        empty_store, shipped_catalog, second):
    empty_store.save(_run(shipped_catalog, {"EX1": MARCH_SU, "EX2": LATER}), shipped_catalog,
                     others=[second])
    newest = empty_store.save(_run(shipped_catalog, {"EX2": LATER}, NOW + timedelta(hours=1)),
                              shipped_catalog)  # EX1 carried; no other advisory this time
    assert all(a.others == () for a in empty_store.assessments(newest))
    assert not empty_store.judged_by_others(newest) and empty_store.verify().ok


def test_an_other_verdicts_shared_evidence_is_stored_once_and_read_back_whole(
        empty_store, shipped_catalog, second):
    from compliance.codec import others_from_dict
    from compliance.evaluate import evaluate

    run = _run(shipped_catalog, {"EX1": MARCH_SU})
    snapshot_id = empty_store.save(run, shipped_catalog, others=[second])
    with empty_store.engine.connect() as conn:
        stored = conn.execute(text("SELECT verdict FROM results WHERE snapshot_id = :id"),
                              {"id": snapshot_id}).scalar_one()
    data = json.loads(stored)
    lines = data["others"][0]["evidence"]
    assert any(isinstance(line, int) for line in lines)  # shared with the own verdict's
    (member,) = empty_store.assessments(snapshot_id)
    assert member.others == (evaluate(run.assessments[0].observation, second, NOW),)
    for bad in (len(data["evidence"]), -1):
        forged = {**data, "others": [{**data["others"][0], "evidence": [bad]}]}
        with pytest.raises(ValueError):
            others_from_dict(forged)
