"""Whole-fleet snapshots in the store: composing on save, format 1 snapshots composed on read,
the chain and evidence bundles over carried rows, diffs, pruning and re-evaluation."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from compliance.evaluate import Policy, assess
from compliance.fleet import IMPORT, INVENTORY, directory_scope
from compliance.models import Host, Observation, Reason, Status
from store import StoreError, chain, clock
from store.evidence import build_bundle, verify_bundle
from store.history import diff, reevaluate
from store.legacy import fill_summaries
from store.snapshots import open_rows

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
AD = directory_scope("CN=Configuration,DC=corp,DC=example")
PATCHED, VULNERABLE = "15.1.2176.9", "15.1.2176.2"


def _run(catalog, at, hosts: dict[str, str], scopes=(AD,), complete=(AD,), source="collect"):
    observations = [Observation(Host(name, site="S"), at, "test", exsetup_version=build)
                    for name, build in hosts.items()]
    return assess(observations, catalog, at, source=source, tool_version="t",
                  discovered=[o.host for o in observations] if complete else (),
                  scopes=lambda _host: tuple(scopes), complete_scopes=tuple(complete),
                  label=f"{source} of {len(hosts)}")


def _statuses(store, snapshot_id, catalog) -> dict[str, str]:
    return {a.observation.host.name: a.verdict.status.value
            for a in store.fleet(snapshot_id, catalog)}


FULL = {"EX1": PATCHED, "EX2": VULNERABLE, "EX3": VULNERABLE, "DECOM": PATCHED}


def test_a_partial_collection_after_a_full_one_keeps_the_fleet(empty_store, shipped_catalog):
    full = empty_store.save(_run(shipped_catalog, NOW - timedelta(days=1), FULL), shipped_catalog)
    partial = empty_store.save(_run(shipped_catalog, NOW, {"EDGE1": PATCHED, "EX2": PATCHED},
                                    scopes=(INVENTORY,), complete=()), shipped_catalog)
    info = empty_store.info(partial)
    assert info.fleet and info.host_count == 5 and info.observed_count == 2
    assert info.counts["vulnerable"] == 1 and info.counts["patched"] == 4
    assert info.coverage == (5, 5)
    rows = {a.observation.host.name: a for a in empty_store.assessments(partial)}
    assert rows["EX3"].observed_in == full and rows["EX3"].carried
    assert rows["EX2"].observed_in is None and rows["EX2"].scopes == (AD,)  # AD lists it
    assert rows["EX3"].verdict.evidence[0].kind == "carried"
    changes = diff([a.verdict for a in empty_store.fleet(full, shipped_catalog)],
                   [a.verdict for a in empty_store.fleet(partial, shipped_catalog)])
    assert not changes.removed_hosts and [c.host for c in changes.new_hosts] == ["EDGE1"]
    assert [c.host for c in changes.newly_patched] == ["EX2"]
    assert empty_store.verify().ok


def test_an_import_into_an_empty_store_is_the_fleet(empty_store, shipped_catalog):
    saved = empty_store.save(_run(shipped_catalog, NOW, {"EXHAND01": VULNERABLE},
                                  scopes=(IMPORT,), complete=(), source="import"),
                             shipped_catalog)
    assert _statuses(empty_store, saved, shipped_catalog) == {"EXHAND01": "vulnerable"}
    assert empty_store.info(saved).observed_count == 1


def test_a_carried_host_goes_stale(empty_store, shipped_catalog):
    empty_store.save(_run(shipped_catalog, NOW - timedelta(days=10), {"EX1": PATCHED}),
                     shipped_catalog)
    later = empty_store.save(_run(shipped_catalog, NOW, {"OTHER": PATCHED}, scopes=(IMPORT,),
                                  complete=()), shipped_catalog, Policy(max_age=timedelta(days=7)))
    ex1 = empty_store.assessment(later, "EX1")
    assert ex1 is not None and ex1.verdict.status is Status.UNKNOWN
    assert ex1.verdict.unknown_reason is Reason.STALE
    assert ex1.observation.observed_at == NOW - timedelta(days=10)
    assert empty_store.info(later).coverage == (1, 2)


def test_a_full_discovery_removes_a_partial_run_keeps(empty_store, shipped_catalog):
    full = empty_store.save(_run(shipped_catalog, NOW - timedelta(days=2), FULL), shipped_catalog)
    partial = empty_store.save(_run(shipped_catalog, NOW - timedelta(days=1), {"EX1": PATCHED},
                                    scopes=(INVENTORY,), complete=()), shipped_catalog)
    assert "DECOM" in _statuses(empty_store, partial, shipped_catalog)
    without = {k: v for k, v in FULL.items() if k != "DECOM"}
    again = empty_store.save(_run(shipped_catalog, NOW, without), shipped_catalog)
    assert set(_statuses(empty_store, again, shipped_catalog)) == set(without)
    changes = diff([a.verdict for a in empty_store.fleet(partial, shipped_catalog)],
                   [a.verdict for a in empty_store.fleet(again, shipped_catalog)])
    assert [(c.host, c.before, c.after) for c in changes.removed_hosts] == [
        ("DECOM", "patched", None)]
    assert full < partial < again and empty_store.verify().ok


def test_the_chain_covers_carried_rows_and_scopes(empty_store, shipped_catalog):
    empty_store.save(_run(shipped_catalog, NOW - timedelta(days=1), FULL), shipped_catalog)
    later = empty_store.save(_run(shipped_catalog, NOW, {"EX1": PATCHED}, scopes=(IMPORT,),
                                  complete=()), shipped_catalog)
    assert empty_store.verify().ok
    for statement in (
        "UPDATE results SET observed_in = NULL WHERE snapshot_id = :id AND host = 'EX2'",
        "UPDATE results SET scopes = '[]' WHERE snapshot_id = :id AND host = 'EX3'",
        "UPDATE snapshots SET fresh_count = 99 WHERE id = :id",
        "UPDATE snapshots SET format = 1 WHERE id = :id",
    ):
        with empty_store.engine.begin() as conn:
            before = conn.execute(text("SELECT observed_in, scopes FROM results WHERE "
                                       "snapshot_id = :id ORDER BY position"), {"id": later}).all()
            header = conn.execute(text("SELECT fresh_count, format FROM snapshots WHERE id = :id"),
                                  {"id": later}).one()
            conn.execute(text(statement), {"id": later})
        report = empty_store.verify()
        assert not report.ok and report.problems[0].snapshot_id == later, statement
        with empty_store.engine.begin() as conn:  # put it back for the next case
            for position, (observed_in, scopes) in enumerate(before):
                conn.execute(text("UPDATE results SET observed_in = :i, scopes = :s WHERE "
                                  "snapshot_id = :id AND position = :p"),
                             {"i": observed_in, "s": scopes, "id": later, "p": position})
            conn.execute(text("UPDATE snapshots SET fresh_count = :f, format = :v WHERE id = :id"),
                         {"f": header[0], "v": header[1], "id": later})
        assert empty_store.verify().ok


def test_a_bundle_of_a_carried_snapshot_checks_itself(empty_store, shipped_catalog, tmp_path):
    first = empty_store.save(_run(shipped_catalog, NOW - timedelta(days=1), FULL),
                             shipped_catalog)
    later = empty_store.save(_run(shipped_catalog, NOW, {"EX1": PATCHED}, scopes=(IMPORT,),
                                  complete=()), shipped_catalog)
    path = tmp_path / "bundle.zip"
    path.write_bytes(build_bundle(empty_store, empty_store.info(later), NOW))
    assert verify_bundle(path) == []
    with zipfile.ZipFile(path) as archive:
        rows = {r["host"]: r for r in csv.DictReader(io.StringIO(
            archive.read("hosts.csv").decode()))}
        summary = archive.read("summary.txt").decode()
        document = json.loads(archive.read("snapshot.json"))
    assert rows["EX2"]["observed_in"] == str(first) and rows["EX2"]["carried"] == "True"
    assert rows["EX1"]["observed_in"] == str(later) and rows["EX1"]["carried"] == "False"
    assert "1 observed by this run" in summary and "3 carried forward" in summary
    # Claiming a carried host was observed by this run changes the digest.
    document["results"][1]["observed_in"] = None
    forged = tmp_path / "forged.zip"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(forged, "w") as target:
        for name in source.namelist():
            target.writestr(name, source.read(name) if name != "snapshot.json"
                            else json.dumps(document).encode())
    assert any("digest" in p or "changed" in p for p in verify_bundle(forged))


def test_pruning_never_takes_the_fleet_from_the_newest(empty_store, shipped_catalog):
    empty_store.save(_run(shipped_catalog, NOW - timedelta(days=1), FULL), shipped_catalog)
    newest = empty_store.save(_run(shipped_catalog, NOW, {"EX1": PATCHED}, scopes=(IMPORT,),
                                   complete=()), shipped_catalog)
    with pytest.raises(StoreError, match="keep at least 1"):
        empty_store.prune(keep=0)
    assert empty_store.prune(keep=1) == 1
    assert len(empty_store.assessments(newest)) == 4
    after = empty_store.save(_run(shipped_catalog, NOW + timedelta(hours=1), {"NEW": PATCHED},
                                  scopes=(IMPORT,), complete=()), shipped_catalog)
    assert set(_statuses(empty_store, after, shipped_catalog)) == {*FULL, "NEW"}
    assert empty_store.verify().ok


def test_reevaluation_covers_carried_rows(empty_store, shipped_catalog):
    empty_store.save(_run(shipped_catalog, NOW - timedelta(days=1), FULL), shipped_catalog)
    later = empty_store.save(_run(shipped_catalog, NOW, {"EX1": PATCHED}, scopes=(IMPORT,),
                                  complete=()), shipped_catalog)
    assert reevaluate(empty_store.fleet(later, shipped_catalog), shipped_catalog, NOW) == []
    # Judged a week later, the carried observations (a day older than the run's own) are
    # stale and the run's own is just within the limit: re-evaluation says so.
    week = reevaluate(empty_store.fleet(later, shipped_catalog), shipped_catalog,
                      NOW + timedelta(days=7))
    assert {c.host for c in week} == set(FULL) - {"EX1"}


def _legacy(store, at: datetime, hosts: dict[str, str], catalog, inventory=(),
            source: str = "collect", scope: str = "") -> int:
    """Write a format 1 snapshot as the tool wrote it before fleets: its run's hosts only."""
    from compliance.codec import host_to_dict, observation_to_dict, verdict_to_dict

    run = _run(catalog, at, hosts, complete=())
    dumps = lambda data: json.dumps(data, sort_keys=True, separators=(",", ":"),  # noqa: E731
                                    ensure_ascii=False)
    rows = [(p, a.observation.host.name, a.verdict.status.value,
             dumps(observation_to_dict(a.observation)), dumps(verdict_to_dict(a.verdict)))
            for p, a in enumerate(run.assessments)]
    discovered = [(p, name, dumps(host_to_dict(Host(name)))) for p, name in enumerate(inventory)]
    counts = {}
    for row in rows:
        counts[row[2]] = counts.get(row[2], 0) + 1
    with store.engine.begin() as conn:
        head = conn.execute(text("SELECT value FROM meta WHERE key = 'chain_head'")).scalar_one()
        sequence, previous = head.split(":")
        header = {"taken_at": at.isoformat(), "source": source, "label": "old",
                  "tool_version": "0.3", "catalog_version": "c", "advisory_id": "a",
                  "advisory_version": "1", "scope": scope, "host_count": len(rows),
                  "counts": dumps(counts), "discovered_count": len(discovered),
                  "sequence": int(sequence) + 1, "previous_hash": previous}
        digest = chain.digest(header, rows, discovered)
        conn.execute(text(
            "INSERT INTO snapshots (taken_at, source, label, tool_version, catalog_version, "
            "advisory_id, advisory_version, scope, host_count, counts, discovered_count, "
            "sequence, previous_hash, hash, pruned) VALUES (:taken_at, :source, :label, "
            ":tool_version, :catalog_version, :advisory_id, :advisory_version, :scope, "
            ":host_count, :counts, :discovered_count, :sequence, :previous_hash, :hash, false)"),
            {**header, "hash": digest})
        snapshot_id = conn.execute(text("SELECT max(id) FROM snapshots")).scalar_one()
        for row in rows:
            conn.execute(text("INSERT INTO results (snapshot_id, position, host, status, "
                              "observation, verdict) VALUES (:s, :p, :h, :st, :o, :v)"),
                         dict(zip(("p", "h", "st", "o", "v"), row, strict=True), s=snapshot_id))
        for position, name, record in discovered:
            conn.execute(text("INSERT INTO discovered (snapshot_id, position, host, record) "
                              "VALUES (:s, :p, :h, :r)"),
                         {"s": snapshot_id, "p": position, "h": name, "r": record})
        conn.execute(text("UPDATE meta SET value = :v WHERE key = 'chain_head'"),
                     {"v": f"{header['sequence']}:{digest}"})
        fill_summaries(conn)  # what the schema 7 migration does for rows written before it
        clock.backfill(conn, open_rows)  # and the schema 8 one
    return int(snapshot_id)


def test_old_partial_snapshots_are_kept_as_recorded_and_composed_on_read(empty_store,
                                                                         shipped_catalog):
    full = _legacy(empty_store, NOW - timedelta(days=2), FULL, shipped_catalog,
                   inventory=[*FULL, "NEVER"])
    hand = _legacy(empty_store, NOW - timedelta(days=1), {"EXHAND01": PATCHED}, shipped_catalog)
    assert empty_store.verify().ok
    assert not empty_store.info(hand).fleet
    assert [a.observation.host.name for a in empty_store.assessments(hand)] == ["EXHAND01"]
    composed = {a.observation.host.name: a for a in empty_store.fleet(hand, shipped_catalog)}
    assert set(composed) == {*FULL, "NEVER", "EXHAND01"}
    assert composed["EX2"].verdict.status is Status.VULNERABLE and composed["EX2"].carried
    assert composed["EX2"].observed_in == full
    assert composed["NEVER"].verdict.unknown_reason is Reason.NO_OBSERVATION
    assert "never probed" in composed["NEVER"].verdict.reason
    # Also in the snapshot whose inventory listed it: graded, with an action, not a stand-in.
    never = next(a for a in empty_store.fleet(full, shipped_catalog)
                 if a.observation.host.name == "NEVER")
    assert never.verdict.unknown_reason is Reason.NO_OBSERVATION and never.verdict.action
    assert never.carried and never.verdict.evidence[0].kind == "carried"
    assert not composed["EXHAND01"].carried
    figures = empty_store.legacy_figures(shipped_catalog)
    assert figures[hand]["host_count"] == 6 and figures[hand]["counts"]["vulnerable"] == 2
    assert figures[hand]["fresh_count"] == 5
    # The first save after the upgrade starts from the composed fleet.
    saved = empty_store.save(_run(shipped_catalog, NOW, {"EX1": PATCHED}, scopes=(IMPORT,),
                                  complete=()), shipped_catalog)
    assert set(_statuses(empty_store, saved, shipped_catalog)) == set(composed)
    assert empty_store.verify().problems == []


@pytest.mark.parametrize("keep", [1, 2])
def test_the_fleet_of_a_pruned_snapshot_is_empty_not_an_error(empty_store, shipped_catalog, keep):
    ids = [empty_store.save(_run(shipped_catalog, NOW - timedelta(days=3 - n), FULL),
                            shipped_catalog) for n in range(3)]
    empty_store.prune(keep=keep)
    assert empty_store.fleet(ids[0], shipped_catalog) == []
    assert len(empty_store.fleet(ids[-1], shipped_catalog)) == len(FULL)


def test_fleet_rows_survive_a_reopen(store_url, shipped_catalog):
    from store import SnapshotStore

    first = SnapshotStore.open(store_url)
    first.save(_run(shipped_catalog, NOW - timedelta(days=1), FULL), shipped_catalog)
    first.dispose()
    second = SnapshotStore.open(store_url)
    try:
        saved = second.save(_run(shipped_catalog, NOW, {"X": PATCHED}, scopes=(IMPORT,),
                                 complete=()), shipped_catalog)
        assert len(second.assessments(saved)) == 5
    finally:
        second.dispose()
    assert Path(store_url.removeprefix("sqlite:///")).is_file()


EXCHANGE_BASE = "CN=Microsoft Exchange,CN=Services,CN=Configuration,DC=corp,DC=example"


def _legacy_store(store, catalog) -> tuple[int, int]:
    """An upgraded store: a full AD collection (EX-D listed but not assessed), then an import."""
    full = _legacy(store, NOW - timedelta(days=2), {"EX-A": PATCHED, "EX-B": VULNERABLE,
                                                    "EX-C": PATCHED}, catalog,
                   inventory=["EX-A", "EX-B", "EX-C", "EX-D"],
                   scope=f"AD ldaps://dc1.corp.example {EXCHANGE_BASE}")
    hand = _legacy(store, NOW - timedelta(days=1), {"ex-a": PATCHED}, catalog, source="import",
                   scope="import of 1 probe documents")
    return full, hand


def test_pruning_never_takes_hosts_only_format_1_snapshots_hold(empty_store, shipped_catalog):
    _full, hand = _legacy_store(empty_store, shipped_catalog)
    assert empty_store.prune(keep=1) == 0  # no whole-fleet snapshot yet: both are needed
    assert len(empty_store.fleet(hand, shipped_catalog)) == 4
    saved = empty_store.save(_run(shipped_catalog, NOW, {"EXNEW": PATCHED}, scopes=(IMPORT,),
                                  complete=()), shipped_catalog)
    assert empty_store.prune(keep=1) == 2  # now the whole-fleet snapshot holds them all
    assert set(_statuses(empty_store, saved, shipped_catalog)) == {
        "ex-a", "EX-B", "EX-C", "EX-D", "EXNEW"}
    assert empty_store.info(saved).counts["vulnerable"] == 1 and empty_store.verify().ok


def test_a_format_1_host_a_discovery_listed_can_be_removed_by_the_same_discovery(
        any_store, shipped_catalog):
    empty_store = any_store
    _full, hand = _legacy_store(empty_store, shipped_catalog)
    scopes = {a.observation.host.name: a.scopes for a in empty_store.fleet(hand, shipped_catalog)}
    ad = directory_scope(EXCHANGE_BASE)
    assert scopes == {"ex-a": (ad,), "EX-B": (ad,), "EX-C": (ad,), "EX-D": (ad,)}
    # This version's complete discovery of the same forest lists only EX-A and EX-C.
    saved = empty_store.save(_run(shipped_catalog, NOW, {"EX-A": PATCHED, "EX-C": PATCHED},
                                  scopes=(ad,), complete=(ad,)), shipped_catalog)
    assert set(_statuses(empty_store, saved, shipped_catalog)) == {"EX-A", "EX-C"}
    changes = diff([a.verdict for a in empty_store.fleet(hand, shipped_catalog)],
                   [a.verdict for a in empty_store.fleet(saved, shipped_catalog)])
    assert sorted(c.host for c in changes.removed_hosts) == ["EX-B", "EX-D"]


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request, tmp_path):
    from store import SnapshotStore

    url = (f"sqlite:///{tmp_path / 'any.db'}" if request.param == "sqlite"
           else request.getfixturevalue("postgres_url"))
    opened = SnapshotStore.open(url)
    yield opened
    opened.dispose()


def test_format_1_figures_match_the_composed_fleet(any_store, shipped_catalog):
    empty_store = any_store
    full, hand = _legacy_store(empty_store, shipped_catalog)
    figures = empty_store.legacy_figures(shipped_catalog)
    for snapshot_id in (full, hand):
        fleet = empty_store.fleet(snapshot_id, shipped_catalog)
        counts = {status.value: 0 for status in Status}
        for a in fleet:
            counts[a.verdict.status.value] += 1
        assert figures[snapshot_id]["counts"] == counts
        assert figures[snapshot_id]["host_count"] == len(fleet) == 4
        assert figures[snapshot_id]["fresh_count"] == sum(
            1 for a in fleet if a.verdict.unknown_reason is None)
    assert figures[full]["observed_count"] == 3 and figures[hand]["observed_count"] == 1
    # A week later every carried host is stale, in the figures as in the fleet.
    later = _legacy(empty_store, NOW + timedelta(days=8), {"EX-C": PATCHED}, shipped_catalog,
                    source="import")
    week = empty_store.legacy_figures(shipped_catalog)[later]
    assert week["counts"]["unknown"] == 3 and week["fresh_count"] == 1


@pytest.mark.parametrize(("statement", "message"), [
    ("UPDATE results SET scopes = '[\"ad:x\"]' WHERE snapshot_id = :legacy",
     "format 1 snapshot carries whole-fleet fields"),
    ("UPDATE results SET observed_in = 1 WHERE snapshot_id = :legacy",
     "format 1 snapshot carries whole-fleet fields"),
    ("UPDATE snapshots SET fresh_count = 4 WHERE id = :legacy",
     "format 1 snapshot carries whole-fleet fields"),
    ("UPDATE snapshots SET pruned = true WHERE id = :newest", "newest snapshot is marked pruned"),
    ("UPDATE snapshots SET pruned = true WHERE id = :legacy", "still holds its hosts"),
    ("UPDATE snapshots SET format = 2 WHERE id = :newest", "does not match its recorded digest"),
    ("UPDATE snapshots SET format = 9 WHERE id = :newest", "does not match its recorded digest"),
    # Format 7 hashes the JSON as text, not its SHA-256: claiming it is caught.
    ("UPDATE snapshots SET format = 7 WHERE id = :newest", "does not match its recorded digest"),
    # Format 6 hashes no investigation (issue 21): claiming it is caught.
    ("UPDATE snapshots SET format = 6 WHERE id = :newest", "does not match its recorded digest"),
    # Format 5 hashes no per-advisory column: claiming it is caught.
    ("UPDATE snapshots SET format = 5 WHERE id = :newest", "does not match its recorded digest"),
    # Format 4 hashes no outside view (nor its absence): claiming it is caught.
    ("UPDATE snapshots SET format = 4 WHERE id = :newest", "does not match its recorded digest"),
    # Format 3 hashes no summary column: changing one and claiming format 3 is caught.
    ("UPDATE snapshots SET format = 3 WHERE id = :newest", "does not match its recorded digest"),
])
def test_verify_catches_forged_fleet_fields_on_every_format(empty_store, shipped_catalog,
                                                            statement, message):
    _full, hand = _legacy_store(empty_store, shipped_catalog)
    newest = empty_store.save(_run(shipped_catalog, NOW, {"EXNEW": PATCHED}, scopes=(IMPORT,),
                                   complete=()), shipped_catalog)
    assert empty_store.verify().ok
    with empty_store.engine.begin() as conn:
        conn.execute(text(statement), {"legacy": hand, "newest": newest})
    report = empty_store.verify()
    assert not report.ok and any(message in p.message for p in report.problems), report.problems


def test_counts_and_failures_of_a_format_1_snapshot_come_from_its_composed_fleet(
        empty_store, shipped_catalog):
    full, hand = _legacy_store(empty_store, shipped_catalog)
    newest = empty_store.save(_run(shipped_catalog, NOW, {"EXNEW": PATCHED}, scopes=(IMPORT,),
                                   complete=()), shipped_catalog)
    counted = empty_store.summary_counts([full, hand, newest], shipped_catalog)
    for snapshot_id in (full, hand, newest):
        summaries = empty_store.summaries(snapshot_id, shipped_catalog)
        flagged = sum(1 for s in summaries if s.flags)
        assert sum(v for k, v in counted[snapshot_id].items() if k.startswith("flag:")) == \
            sum(len(s.flags) for s in summaries) and (flagged == 0) == (
                not any(k.startswith("flag:") for k in counted[snapshot_id]))
        assert counted[snapshot_id].get("run_failed", 0) == sum(s.run_failed for s in summaries)
        assert empty_store.failures(snapshot_id, shipped_catalog) == [
            (s.host, s.failure_reason, s.failure_detail, s.observed_in, s.run_failed)
            for s in summaries if s.failure_reason]


def _groups_of(summaries) -> Counter:
    from compliance.summary import SEPARATOR

    return Counter((s.product, s.cu, s.site, s.dag, s.status.value,
                    SEPARATOR.join(f.value for f in s.flags)) for s in summaries)


def test_group_counts_add_up_to_the_fleet_in_every_format(empty_store, shipped_catalog):
    from collectors.demo import seed_demo

    _full, hand = _legacy_store(empty_store, shipped_catalog)  # format 1: composed on read
    ids = [hand, *seed_demo(empty_store, shipped_catalog, NOW)]
    for snapshot_id in ids:
        counted = Counter({row[:-1]: row[-1]
                           for row in empty_store.group_counts(snapshot_id, shipped_catalog)})
        assert counted == _groups_of(empty_store.summaries(snapshot_id, shipped_catalog))
        assert sum(counted.values()) == len(empty_store.summaries(snapshot_id, shipped_catalog))


def test_clocks_survive_format_1_runs_that_did_not_reach_a_host(empty_store, shipped_catalog):
    """A format 1 snapshot held its run's hosts only: a host it did not hold keeps the clock
    it had (review of issue 17: the first whole-fleet save restarted it)."""
    store, catalog = empty_store, shipped_catalog
    _legacy(store, NOW - timedelta(days=20), {"EX-A": PATCHED, "EX-B": VULNERABLE}, catalog)
    _legacy(store, NOW - timedelta(days=10), {"EX-A": PATCHED}, catalog)  # not EX-B
    assert store.verify().ok
    latest = store.save(_run(catalog, NOW, {"EX-A": PATCHED, "EX-B": VULNERABLE},
                             scopes=(INVENTORY,), complete=()), catalog)
    assert store.open_since(latest)["EX-B"].at == NOW - timedelta(days=20)
    assert store.verify().ok
    with store.engine.begin() as conn:  # and verify holds the save to it
        conn.execute(text("UPDATE open_items SET since = :at WHERE snapshot_id = :id"),
                     {"at": NOW.isoformat(), "id": latest})
    assert any("deadline clock" in p.message for p in store.verify().problems)
