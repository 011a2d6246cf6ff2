"""store/deadlines.py and deadlines.json in evidence bundles: each open host's due time, as
the policy gives it from the host's clock, readable and checked without the database."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from compliance.deadline import DeadlinePolicy, Directive
from compliance.models import Status
from store.deadlines import host_deadlines
from store.evidence import build_bundle, verify_bundle
from tests.store.test_open_since import DAY, START, _save

ED_21_02 = Directive("CISA ED 21-02", datetime(2021, 3, 5, 12, 0, tzinfo=UTC),
                     frozenset({Status.VULNERABLE, Status.UNKNOWN}))


@pytest.fixture
def fleet(empty_store, shipped_catalog):
    store, catalog = empty_store, shipped_catalog
    _save(store, catalog, START, EX1="vulnerable", EX2="patched", EX3="patched")
    last = _save(store, catalog, START + DAY, EX1="vulnerable", EX2="vulnerable",
                 EX3="indicators")
    return store, catalog, last


def test_each_open_host_is_due_by_its_status_and_its_clock(fleet):
    store, catalog, last = fleet
    found = host_deadlines(store, last, catalog, DeadlinePolicy())
    assert {host: d.deadline.due_at for host, d in found.items()} == {
        "EX1": START + 2 * DAY,   # vulnerable since START: 2 days
        "EX2": START + 3 * DAY,   # vulnerable since day 1: 2 days
        "EX3": START + DAY,       # compromise indicators: at once
    }
    directed = host_deadlines(store, last, catalog, DeadlinePolicy(directives=(ED_21_02,)))
    assert directed["EX2"].deadline.due_at == ED_21_02.due
    assert directed["EX2"].deadline.rule == "CISA ED 21-02"


def _members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _rezip(path: Path, members: dict[str, bytes]) -> Path:
    """The bundle with its members as given and a manifest rehashed to match (what anyone
    without the signing key can do)."""
    manifest = json.loads(members["manifest.json"])
    manifest["files"] = {name: hashlib.sha256(data).hexdigest()
                         for name, data in members.items() if name != "manifest.json"}
    with zipfile.ZipFile(path, "w") as target:
        for name, data in members.items():
            target.writestr(name, json.dumps(manifest) if name == "manifest.json" else data)
    return path


def test_a_bundle_holds_the_deadlines_as_of_its_snapshot(fleet, tmp_path):
    store, _catalog, last = fleet
    policy = DeadlinePolicy(directives=(ED_21_02,))
    members = _members(build_bundle(store, store.info(last), START + 10 * DAY,
                                    deadlines=policy))
    listed = json.loads(members["deadlines.json"])
    assert listed["as_of"] == store.info(last).taken_at.isoformat()
    assert listed["policy"]["directives"][0]["name"] == "CISA ED 21-02"
    items = {item["host"]: item for item in listed["items"]}
    assert set(items) == {"EX1", "EX2", "EX3"}
    # At the snapshot's time (day 1): EX3 was due at once, EX1 and EX2 not yet.
    assert {host: item["overdue"] for host, item in items.items()} == {
        "EX1": False, "EX2": False, "EX3": True}
    assert items["EX1"]["open_since"] == START.isoformat()
    assert verify_bundle(_rezip(tmp_path / "same.zip", members)) == []


@pytest.mark.parametrize(("forge", "problem"), [
    # a later due time: the host looks less late
    (lambda d: d["items"][0].update(due="2030-01-01T00:00:00+00:00"), "not what its policy"),
    # an overdue host shown as on time
    (lambda d: [i.update(overdue=False) for i in d["items"]], "not what its policy"),
    # a host taken off the list
    (lambda d: d["items"].pop(), "leaves out"),
    # a clock that starts after the snapshot
    (lambda d: d["items"][0].update(open_since="2030-01-01T00:00:00+00:00"),
     "does not start by the snapshot's time"),
    # a laxer policy than the one the bundle was made with, its items made to match it
    # would need the items recomputed: the policy alone changed is caught
    (lambda d: d["policy"]["days"].update(vulnerable=90), "not what its policy"),
    # a policy no writer makes
    (lambda d: d["policy"].update(basis="whenever"), "not a list of deadlines"),
])
def test_a_forged_deadline_list_is_caught(fleet, tmp_path, forge, problem):
    store, _catalog, last = fleet
    members = _members(build_bundle(store, store.info(last), START + 10 * DAY))
    listed = json.loads(members["deadlines.json"])
    forge(listed)
    members["deadlines.json"] = json.dumps(listed).encode()
    problems = verify_bundle(_rezip(tmp_path / "forged.zip", members))
    assert any(problem in p for p in problems), problems


def test_a_format_3_bundle_still_verifies_without_deadlines(empty_store, shipped_catalog,
                                                            tmp_path, monkeypatch):
    from store import chain
    from store.evidence import summary_csv, summary_text

    # A snapshot from before investigations (format 6; one of format 7 repacked in an older
    # bundle format is refused: test_investigations.py), and the older formats' hosts.csv and
    # summary.txt (without the investigation, which bundle format 6 added).
    monkeypatch.setattr(chain, "CURRENT_FORMAT", 6)
    store, catalog = empty_store, shipped_catalog
    _save(store, catalog, START, EX1="vulnerable", EX2="patched", EX3="patched")
    last = _save(store, catalog, START + DAY, EX1="vulnerable", EX2="vulnerable",
                 EX3="indicators")
    members = _members(build_bundle(store, store.info(last), START + 10 * DAY))
    document = json.loads(members["snapshot.json"])
    members["hosts.csv"] = summary_csv(document, last).encode()
    members["summary.txt"] = summary_text(
        document, json.loads(members["manifest.json"])["chain_verified_at_export"]).encode()
    del members["deadlines.json"]
    del members["investigations.json"]
    manifest = json.loads(members["manifest.json"])
    del manifest["files"]["investigations.json"]
    manifest["format"] = "proxylogon-evidence-bundle/3"
    members["manifest.json"] = json.dumps(manifest).encode()
    assert verify_bundle(_rezip(tmp_path / "three.zip", members)) == []
    manifest["format"] = "proxylogon-evidence-bundle/4"
    members["manifest.json"] = json.dumps(manifest).encode()
    assert any("deadlines.json" in p for p in verify_bundle(_rezip(tmp_path / "four.zip",
                                                                    members)))


def test_the_clock_never_runs_before_the_first_snapshot(fleet):
    store, catalog, last = fleet
    first = store.history()[0]
    for item in host_deadlines(store, last, catalog, DeadlinePolicy()).values():
        assert item.open_since is not None and item.open_since >= first.taken_at
        assert item.open_since <= store.info(last).taken_at + timedelta(0)
