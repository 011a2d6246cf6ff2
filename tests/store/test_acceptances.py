"""store/acceptances.py: acceptances are audit-chain entries, read back as of any moment."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from collectors.demo import seed_demo
from compliance.acceptance import Ending, accept, standing
from compliance.models import Status
from store import SnapshotStore, StoreError
from store.acceptances import acceptances, record, record_revocation

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
KEY = b"dummy-signing-key-for-tests"


@pytest.fixture
def demo(empty_store, shipped_catalog):
    latest = seed_demo(empty_store, shipped_catalog, NOW)[-1]
    summaries = empty_store.summaries(latest, shipped_catalog)
    mitigated = next(s for s in summaries if s.status is Status.MITIGATED)
    return empty_store, latest, mitigated


def _acceptance(summary, at: datetime = NOW, days: int = 30):  # type: ignore[no-untyped-def]
    return accept(summary, reason="CU upgrade planned", approver="A. Approver",
                  ticket="CHG-1", expires_at=at + timedelta(days=days),
                  accepted_by="admin@corp.example", now=at)


def test_an_acceptance_is_read_back_as_recorded_and_as_of_its_time(demo):
    store, latest, host = demo
    made = _acceptance(host, NOW + timedelta(hours=1))
    entry = record(store, made, latest)
    (found,) = acceptances(store)
    assert (found.id, found.snapshot_id, found.acceptance) == (entry, latest, made)
    assert acceptances(store, as_of=NOW) == []  # not yet recorded then
    assert standing(found.acceptance, host, NOW + timedelta(days=2)).in_force
    audit = store.audit_log()[0]
    assert (audit["action"], audit["who"], audit["snapshot_id"]) == ("accept",
                                                                     "admin@corp.example", latest)
    assert store.verify().ok


def test_a_revocation_applies_from_its_time_and_only_once(demo):
    store, latest, host = demo
    entry = record(store, _acceptance(host), latest)
    later = NOW + timedelta(days=3)
    record_revocation(store, entry, "lead@corp.example", later)
    before = acceptances(store, as_of=NOW + timedelta(days=1))[0].acceptance
    after = acceptances(store)[0].acceptance
    assert before.revoked_at is None and after.revoked_at == later
    assert standing(after, host, later).ending is Ending.REVOKED
    with pytest.raises(StoreError, match="already revoked"):
        record_revocation(store, entry, "lead@corp.example", later + timedelta(hours=1))
    with pytest.raises(StoreError, match="no acceptance #999"):
        record_revocation(store, 999, "lead@corp.example", later)
    assert store.verify().ok


@pytest.mark.parametrize("statement", [
    # a longer acceptance than was approved
    "UPDATE audit_log SET detail = replace(detail, '2026-12-25', '2027-12-25') "
    "WHERE action = 'accept'",
    # a second approver's name
    "UPDATE audit_log SET detail = replace(detail, 'A. Approver', 'CISO') WHERE action = 'accept'",
    # the revocation removed
    "DELETE FROM audit_log WHERE action = 'revoke'",
])
def test_a_forged_or_edited_acceptance_fails_verification(demo, statement):
    store, latest, host = demo
    entry = record(store, _acceptance(host), latest)
    record_revocation(store, entry, "lead", NOW + timedelta(days=1))
    store.record("ops", "export", latest, "after")  # the revocation is not the newest entry
    with store.engine.begin() as conn:
        conn.execute(text(statement))
    assert not store.verify().ok


def test_an_inserted_acceptance_is_not_read_unless_chained_and_fails_verification(demo):
    store, latest, host = demo
    record(store, _acceptance(host), latest)
    with store.engine.begin() as conn:  # a copy of the entry, for another host
        conn.execute(text(
            "INSERT INTO audit_log (at, who, action, snapshot_id, detail, sequence, "
            "previous_hash, hash) SELECT at, who, action, snapshot_id, replace(detail, :host, "
            "'DEMO-OTHER'), NULL, previous_hash, hash FROM audit_log WHERE action = 'accept'"),
            {"host": host.host})
    # Outside the chain (no position), it is never read as an acceptance, and verify names it.
    assert [r.acceptance.host for r in acceptances(store)] == [host.host]
    assert not store.verify().ok
    with store.engine.begin() as conn:  # given a position, it reads, and verify names it
        conn.execute(text("UPDATE audit_log SET sequence = 999 WHERE sequence IS NULL"))
    assert len(acceptances(store)) == 2
    assert not store.verify().ok


def test_with_the_key_the_entries_are_signed(store_url, shipped_catalog):
    store = SnapshotStore.open(store_url, KEY)
    try:
        latest = seed_demo(store, shipped_catalog, NOW)[-1]
        host = next(s for s in store.summaries(latest, shipped_catalog)
                    if s.status is Status.VULNERABLE)
        record(store, _acceptance(host), latest)
        assert store.audit_log()[0]["signature"] and store.verify(KEY).ok
    finally:
        store.dispose()


@pytest.mark.parametrize("detail", ["not json", "[]", json.dumps({"format": 2}),
                                    json.dumps({"format": 1, "host": 5}), "{" * 100_000])
def test_an_entry_no_version_of_the_tool_writes_is_never_in_force(demo, detail):
    store, latest, _host = demo
    store.record("someone", "accept", latest, detail)
    store.record("someone", "revoke", None, detail)
    assert acceptances(store) == []


def _cli(url: str, *args: str) -> tuple[int, str, str]:
    import io
    import os

    from store.__main__ import main

    out, err = io.StringIO(), io.StringIO()
    code = main(["--db", url, "--secrets", os.devnull, *args], out, err)
    return code, out.getvalue(), err.getvalue()


def test_the_command_line_accepts_lists_and_revokes(demo, store_url, monkeypatch):
    store, _latest, host = demo
    monkeypatch.setenv("PROXYLOGON_ACCEPTANCE_MAX_DAYS", "14")
    code, out, err = _cli(store_url, "accept", host.host.lower(), "--reason", "EEMS in place",
                          "--approver", "A. Approver", "--ticket", "CHG-9", "--days", "15")
    assert code == 2 and "1 to 14 days" in err and not out
    code, out, err = _cli(store_url, "accept", host.host.lower(), "--reason", "EEMS in place",
                          "--approver", "A. Approver", "--ticket", "CHG-9", "--days", "14")
    assert code == 0, err
    entry = int(out.split("#")[1].split(":")[0])
    code, out, _ = _cli(store_url, "acceptances")
    assert code == 0 and f"#{entry}\t{host.host}\t" in out and "in force" in out
    code, out, _ = _cli(store_url, "acceptances", "--as-of", "2020-01-01")
    assert code == 0 and out == ""
    assert _cli(store_url, "revoke", str(entry))[0] == 0
    assert "ended: revoked" in _cli(store_url, "acceptances")[1]
    code, _, err = _cli(store_url, "revoke", str(entry))
    assert code == 2 and "already revoked" in err
    assert store.verify().ok


def test_a_set_chosen_by_filters_is_accepted_host_by_host(demo, store_url, shipped_catalog):
    store, latest, _host = demo
    fleet = store.summaries(latest, shipped_catalog)
    mitigated = [s for s in fleet if s.status is Status.MITIGATED]
    acceptable = [s for s in mitigated if "indicators_found" not in {f.value for f in s.flags}]
    assert len(acceptable) >= 2
    code, out, err = _cli(store_url, "accept", "--status", "mitigated", "--reason",
                          "EEMS in place", "--approver", "A. Approver", "--days", "30")
    recorded = {r.acceptance.host for r in acceptances(store)}
    assert recorded == {s.host for s in acceptable}
    assert out.count("acceptance #") == len(acceptable)
    # Each is one acceptance of its own host; a second run is refused host by host.
    code, out, err = _cli(store_url, "accept", "--status", "mitigated", "--reason", "again",
                          "--approver", "A. Approver", "--days", "30")
    assert code == 1 and out == "" and "revoke it first" in err
    assert f"0 of {len(mitigated)} hosts accepted" in err
    code, _out, err = _cli(store_url, "accept", "--status", "mitigated", "--site", "NO-SITE",
                           "--reason", "r", "--approver", "a", "--days", "1")
    assert code == 2 and "matches the filters" in err
    code, _out, err = _cli(store_url, "accept", "--reason", "r", "--approver", "a", "--days",
                           "1")
    assert code == 2 and "name the hosts" in err
    assert store.verify().ok


@pytest.mark.parametrize(("args", "message"), [
    (["accept", "NO-SUCH-HOST", "--reason", "r", "--approver", "a", "--days", "1"],
     "not in the fleet"),
    (["accept", "X", "--reason", "r", "--approver", "a", "--until", "soon"], "not an ISO 8601"),
    (["acceptances", "--as-of", "yesterday"], "not an ISO 8601"),
    (["accept", "X", "--reason", "r", "--approver", "a", "--days", "10000000000"], "1 to 90"),
    (["accept", "X", "--reason", "r", "--approver", "a", "--days", "0"], "1 to 90"),
    (["accept", "HOST", "--reason", "r", "--approver", "a", "--until", "9999-12-31"], "90 days"),
    (["accept", "HOST", "--reason", " ", "--approver", "a", "--days", "1"], "needs a reason"),
])
def test_command_line_mistakes_are_one_line(demo, store_url, args, message):
    _store, _latest, host = demo
    code, out, err = _cli(store_url, *[host.host if a == "HOST" else a for a in args])
    assert code == 2 and message in err and err.count("\n") == 1 and not out


def test_a_bundle_holds_the_acceptances_as_of_its_snapshot(demo, tmp_path):
    import io
    import zipfile

    from store.evidence import build_bundle, verify_bundle

    store, latest, host = demo
    info = store.info(latest)
    entry = record(store, _acceptance(host, info.taken_at - timedelta(hours=1)), latest)

    def bundled(snapshot_id: int) -> dict:  # type: ignore[type-arg]
        data = build_bundle(store, store.info(snapshot_id), NOW + timedelta(days=1))
        path = tmp_path / f"b{snapshot_id}.zip"
        path.write_bytes(data)
        assert verify_bundle(path) == []
        return json.loads(zipfile.ZipFile(io.BytesIO(data)).read("acceptances.json"))

    now_ = bundled(latest)
    assert now_["as_of"] == info.taken_at.isoformat()
    (row,) = now_["acceptances"]
    assert (row["id"], row["host"], row["in_force"], row["ticket"]) == (entry, host.host, True,
                                                                       "CHG-1")
    assert bundled(latest - 1)["acceptances"] == []  # not yet recorded at that snapshot


def test_a_format_2_bundle_still_verifies_and_a_format_3_one_needs_its_acceptances(
        empty_store, shipped_catalog, tmp_path, monkeypatch):
    import hashlib
    import io
    import zipfile

    from store import chain
    from store.evidence import build_bundle, summary_csv, summary_text, verify_bundle

    # An older bundle holds a snapshot from before investigations (format 6; a format 7 one
    # repacked so is refused: test_investigations.py), and its hosts.csv and summary.txt
    # without the investigation (bundle format 6 on).
    monkeypatch.setattr(chain, "CURRENT_FORMAT", 6)
    store = empty_store
    latest = seed_demo(store, shipped_catalog, NOW)[-1]
    data = build_bundle(store, store.info(latest), NOW)
    members = {n: zipfile.ZipFile(io.BytesIO(data)).read(n)
               for n in zipfile.ZipFile(io.BytesIO(data)).namelist()}
    document = json.loads(members["snapshot.json"])
    members["hosts.csv"] = summary_csv(document, latest).encode()
    members["summary.txt"] = summary_text(
        document, json.loads(members["manifest.json"])["chain_verified_at_export"]).encode()

    def rezip(manifest: dict, names: list[str]) -> Path:  # type: ignore[type-arg]
        path = tmp_path / f"{len(names)}-{manifest['format'][-1]}.zip"
        with zipfile.ZipFile(path, "w") as target:
            for name in names:
                target.writestr(name, members[name])
            target.writestr("manifest.json", json.dumps(manifest))
        return path

    manifest = json.loads(members["manifest.json"])
    old = {**manifest, "format": "proxylogon-evidence-bundle/2",
           "files": {n: hashlib.sha256(members[n]).hexdigest() for n in manifest["files"]
                     if n not in ("acceptances.json", "deadlines.json",
                                  "investigations.json")}}
    assert verify_bundle(rezip(old, ["snapshot.json", "hosts.csv", "summary.txt"])) == []
    missing = {**manifest, "files": old["files"]}
    assert any("acceptances.json is not in the manifest" in p for p in verify_bundle(
        rezip(missing, ["snapshot.json", "hosts.csv", "summary.txt"])))
    members["acceptances.json"] = b'{"as_of": "2020-01-01T00:00:00+00:00", "acceptances": []}'
    moved = {**manifest, "format": "proxylogon-evidence-bundle/3",
             "files": {**old["files"], "acceptances.json": hashlib.sha256(
                 members["acceptances.json"]).hexdigest()}}
    assert any("not as of the snapshot's time" in p for p in verify_bundle(
        rezip(moved, ["snapshot.json", "hosts.csv", "summary.txt", "acceptances.json"])))


def test_an_odd_revocation_entry_never_stops_the_reading(demo):
    store, latest, host = demo
    entry = record(store, _acceptance(host), latest)
    store.record("   ", "revoke", None, json.dumps({"format": 1, "acceptance": entry}),
                 at=NOW + timedelta(days=1))
    (found,) = acceptances(store)
    assert found.acceptance.revoked_by == "?"
    assert standing(found.acceptance, host, NOW + timedelta(days=2)).ending is Ending.REVOKED


def test_one_acceptance_of_a_host_at_a_time(demo):
    store, latest, host = demo
    record(store, _acceptance(host), latest, host)
    with pytest.raises(StoreError, match=r"is in force .* revoke it first"):
        record(store, _acceptance(host, NOW + timedelta(hours=1)), latest, host)


def test_times_are_kept_in_utc_whatever_offset_they_came_with(demo):
    from datetime import timezone

    _store, _latest, host = demo
    east = timezone(timedelta(hours=5))
    made = accept(host, reason="r", approver="a", ticket="", accepted_by="x",
                  now=NOW.astimezone(east),
                  expires_at=datetime(2026, 12, 2, 3, 0, tzinfo=east))  # 2026-12-01 22:00 UTC
    assert made.expires_at.tzinfo is UTC and made.badge.startswith("accepted until 2026-12-01")


def _rebundled(data: bytes, tmp_path: Path, change) -> Path:  # type: ignore[no-untyped-def]
    """The bundle with ``change(members, manifest)`` applied and the manifest's digests
    recomputed (what anyone can do without the key)."""
    import hashlib
    import io
    import zipfile

    source = zipfile.ZipFile(io.BytesIO(data))
    members = {n: source.read(n) for n in source.namelist() if n != "manifest.json"}
    manifest = json.loads(source.read("manifest.json"))
    change(members, manifest)
    manifest["files"] = {n: hashlib.sha256(members[n]).hexdigest() for n in manifest["files"]
                         if n in members}
    path = tmp_path / "changed.zip"
    with zipfile.ZipFile(path, "w") as target:
        for name, content in members.items():
            target.writestr(name, content)
        target.writestr("manifest.json", json.dumps(manifest))
    return path


def test_a_forged_acceptance_list_in_a_bundle_is_caught(demo, tmp_path):
    from store.evidence import build_bundle, verify_bundle

    store, latest, host = demo
    info = store.info(latest)
    # One that had expired by the snapshot's time, then one in force.
    record(store, _acceptance(host, info.taken_at - timedelta(days=3), days=1), latest)
    record(store, _acceptance(host, info.taken_at - timedelta(hours=1)), latest)
    data = build_bundle(store, info, NOW)

    def rows(members):  # type: ignore[no-untyped-def]
        return json.loads(members["acceptances.json"])

    def revived(members, _manifest):  # type: ignore[no-untyped-def]
        # An ended claim fails closed and is allowed; an expired one shown in force is not.
        listed = rows(members)
        listed["acceptances"][0].update(in_force=True, ended=None)
        members["acceptances.json"] = json.dumps(listed).encode()

    def invented(members, _manifest):  # type: ignore[no-untyped-def]
        listed = rows(members)
        fake = {**listed["acceptances"][0], "host": "DEMO-OTHER", "status": "patched"}
        listed["acceptances"].append(fake)
        members["acceptances.json"] = json.dumps(listed).encode()

    def planted_in_format_2(members, manifest):  # type: ignore[no-untyped-def]
        manifest["format"] = "proxylogon-evidence-bundle/2"
        manifest["files"].pop("acceptances.json")

    for change, message in ((revived, "its standing is not what"),
                            (invented, "not an acceptance this tool records"),
                            (planted_in_format_2, "not among its format's files")):
        problems = verify_bundle(_rebundled(data, tmp_path, change))
        assert any(message in p for p in problems), (change.__name__, problems)


def test_a_time_beyond_what_can_be_used_is_one_line(demo, store_url):
    code, out, err = _cli(store_url, "acceptances", "--as-of", "0001-01-01T00:00+05:00")
    assert code == 2 and "not an ISO 8601 time this tool can use" in err and not out


def test_an_acceptance_ended_by_the_evidence_stays_ended(empty_store, shipped_catalog, tmp_path):
    """Indicators seen once end it for good, even when a later snapshot no longer shows them
    (review of issue 17: the badge used to come back)."""
    from store.acceptances import standing_in
    from store.evidence import build_bundle, verify_bundle
    from tests.store.test_open_since import DAY, START, _save

    store, catalog = empty_store, shipped_catalog
    first = _save(store, catalog, START, EX1="vulnerable")
    host = store.summaries(first, catalog)[0]
    made = accept(host, reason="CU upgrade planned", approver="A. Approver", ticket="CHG-1",
                  expires_at=START + 30 * DAY, accepted_by="admin", now=START + DAY / 2)
    record(store, made, first, host)
    second = _save(store, catalog, START + DAY, EX1="indicators")
    third = _save(store, catalog, START + 2 * DAY, EX1="vulnerable")
    (recorded,) = acceptances(store)
    now_summary = store.summaries(third, catalog)[0]
    assert standing(made, now_summary, START + 2 * DAY).in_force  # the snapshot alone
    state = standing_in(store, recorded, now_summary, START + 2 * DAY)
    assert not state.in_force and state.ending is Ending.INDICATORS
    assert "snapshot of" in state.detail
    assert second
    # The bundle of the third snapshot says it ended, and verifies.
    bundle = tmp_path / "b.zip"
    bundle.write_bytes(build_bundle(store, store.info(third), START + 3 * DAY))
    assert verify_bundle(bundle) == []
    # A second acceptance may now be recorded (the first is not in force).
    again = accept(now_summary, reason="again", approver="A. Approver", ticket="",
                   expires_at=START + 30 * DAY, accepted_by="admin", now=START + 2 * DAY)
    record(store, again, third, now_summary)


def test_an_acceptance_whose_snapshots_were_pruned_reads_as_ended(empty_store, shipped_catalog):
    """What it lived through is gone: it cannot be followed, so it is not in force (review of
    issue 17: an acceptance ended by indicators came back after a prune)."""
    from store.acceptances import standing_in
    from tests.store.test_open_since import DAY, START, _save

    store, catalog = empty_store, shipped_catalog
    first = _save(store, catalog, START, EX1="vulnerable")
    host = store.summaries(first, catalog)[0]
    made = accept(host, reason="CU upgrade planned", approver="A. Approver", ticket="",
                  expires_at=START + 30 * DAY, accepted_by="admin", now=START + DAY / 2)
    record(store, made, first, host)
    _save(store, catalog, START + DAY, EX1="indicators")
    _save(store, catalog, START + 2 * DAY, EX1="vulnerable")
    last = _save(store, catalog, START + 3 * DAY, EX1="vulnerable")
    assert store.prune(keep=1) == 3
    (recorded,) = acceptances(store)
    state = standing_in(store, recorded, store.summaries(last, catalog)[0], START + 3 * DAY)
    assert not state.in_force and "pruned" in state.detail
