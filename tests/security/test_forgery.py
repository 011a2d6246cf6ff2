"""A database writer forging the evidence: every forgery of issue 12 fails verification.

Each test edits the store as an attacker with write access to the database would (SQL, no
signing key), then runs ``verify`` as an auditor would: the forgery must be named, never
reported OK. With a signing key set, even a forger who recomputes every digest is caught.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from compliance.evaluate import assess
from compliance.models import Host, Observation
from store import SnapshotStore, chain

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
KEY = b"dummy-signing-key-for-tests"
PATCHED, VULNERABLE = "15.1.2176.9", "15.1.2176.2"  # 2016 CU19 with and without the March SU


def _fill(store: SnapshotStore, catalog, weeks: int = 4) -> list[int]:
    """One snapshot a week; EX1 stays vulnerable throughout."""
    ids = []
    for week in range(weeks):
        at = NOW - timedelta(weeks=weeks - week)
        observations = [Observation(Host(f"EX{i}"), at, "test",
                                    exsetup_version=PATCHED if i == 0 else VULNERABLE)
                        for i in range(3)]
        ids.append(store.save(assess(observations, catalog, at, source="test",
                                     tool_version="t"), catalog))
    return ids


def _cli(url: str, *args: str, key: bytes | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"}
    if key:
        env["PROXYLOGON_SIGNING_KEY"] = key.decode()
    return subprocess.run([sys.executable, "-m", "store", "--db", url, "--secrets",
                           os.devnull, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def _problems(store: SnapshotStore, key: bytes | None = None) -> list[str]:
    report = store.verify(key)
    return [f"{p.where}: {p.message}" for p in report.problems]


def _forge_pruning(store: SnapshotStore, snapshot_id: int, with_header: bool) -> None:
    """Delete a snapshot's hosts and append, unsigned, the prune entry the tool would write
    (digest, link and head recomputed): all a database writer without the key can do."""
    from store.verification import header_record

    head = store.raw_header(snapshot_id)
    named: dict[str, object] = {"id": snapshot_id, "sequence": head["sequence"],
                                "hash": head["hash"]}
    if with_header:
        named["header"] = header_record(head)
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM results WHERE snapshot_id = :id"), {"id": snapshot_id})
        conn.execute(text("UPDATE snapshots SET pruned = 1 WHERE id = :id"), {"id": snapshot_id})
        sequence, previous = conn.execute(
            text("SELECT value FROM meta WHERE key = 'audit_head'")).scalar_one().split(":")
        entry = {"at": NOW.isoformat(), "who": "python -m store prune", "action": "prune",
                 "snapshot_id": None, "sequence": int(sequence) + 1, "previous_hash": previous,
                 "detail": json.dumps({"kept_newest": 2, "pruned": [named]})}
        entry["hash"] = chain.entry_digest(entry)
        conn.execute(text("INSERT INTO audit_log (at, who, action, snapshot_id, detail, sequence,"
                          " previous_hash, hash) VALUES (:at, :who, :action, :snapshot_id, "
                          ":detail, :sequence, :previous_hash, :hash)"), entry)
        conn.execute(text("UPDATE meta SET value = :v WHERE key = 'audit_head'"),
                     {"v": f"{entry['sequence']}:{entry['hash']}"})


def _cut_newest(store: SnapshotStore, snapshot_id: int) -> None:
    """Delete the newest snapshot and move the chain head back to the one before it, as a
    database writer would to hide the latest run."""
    newest = store.info(snapshot_id)
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM snapshots WHERE id = :id"), {"id": snapshot_id})
        conn.execute(text("UPDATE meta SET value = :v WHERE key = 'chain_head'"),
                     {"v": f"{newest.sequence - 1}:{newest.previous_hash}"})


@pytest.fixture
def signed(store_url, shipped_catalog):
    store = SnapshotStore.open(store_url, signing_key=KEY)
    ids = _fill(store, shipped_catalog)
    store.record("alice", "collect", ids[-1], "test")
    assert store.verify(KEY).ok
    yield store, ids
    store.dispose()


def test_deleting_a_snapshots_hosts_and_setting_pruned_is_caught(empty_store, shipped_catalog,
                                                                 store_url):
    ids = _fill(empty_store, shipped_catalog)
    with empty_store.engine.begin() as conn:
        conn.execute(text("DELETE FROM results WHERE snapshot_id = :id"), {"id": ids[1]})
        conn.execute(text("UPDATE snapshots SET pruned = 1 WHERE id = :id"), {"id": ids[1]})
    problems = _problems(empty_store)
    assert problems == [f"snapshot #{ids[1]} (position 2): its hosts are gone, but no pruning "
                        "in the audit chain names it: they were deleted outside the tool"]
    result = _cli(store_url, "verify")
    assert result.returncode == 1 and "deleted outside the tool" in result.stderr
    assert result.stderr.rstrip().endswith("verification failed: 1 problem(s)")


def test_a_forged_verdict_behind_the_pruned_flag_is_caught_and_never_diffed(
        empty_store, shipped_catalog, store_url):
    ids = _fill(empty_store, shipped_catalog)
    with empty_store.engine.begin() as conn:
        conn.execute(text("UPDATE results SET status = 'patched', verdict = replace(verdict, "
                          "'\"vulnerable\"', '\"patched\"') WHERE snapshot_id = :id"),
                     {"id": ids[1]})
        conn.execute(text("UPDATE snapshots SET pruned = 1 WHERE id = :id"), {"id": ids[1]})
    assert any("still holds its hosts" in p for p in _problems(empty_store))
    shown = _cli(store_url, "diff", str(ids[1]), str(ids[2]))
    assert shown.returncode == 2 and "newly patched" not in shown.stdout
    assert "was pruned" in shown.stderr


def test_renumbering_a_snapshot_is_caught(empty_store, shipped_catalog):
    ids = _fill(empty_store, shipped_catalog)
    with empty_store.engine.begin() as conn:
        conn.execute(text("PRAGMA foreign_keys=OFF"))
        conn.execute(text("UPDATE snapshots SET id = 99 WHERE id = :id"), {"id": ids[1]})
        conn.execute(text("UPDATE results SET snapshot_id = 99 WHERE snapshot_id = :id"),
                     {"id": ids[1]})
    found = _problems(empty_store)
    assert found[0] == ("snapshot #99 (position 2): content does not match its recorded "
                        "digest (a stored observation, verdict, summary column, outside view, "
                        "time, id or header was changed)")
    # The deadline clocks still name the old id: open_items was not renumbered with it.
    assert f"chain: open_items holds rows of snapshot #{ids[1]}, which is not in the store" \
        in found
    assert all("open_items" in problem for problem in found[1:])


def test_pruning_is_a_recorded_event_verify_names(empty_store, shipped_catalog, store_url):
    ids = _fill(empty_store, shipped_catalog)
    result = _cli(store_url, "prune", "--keep", "2")
    assert result.returncode == 0, result.stderr
    verified = _cli(store_url, "verify")
    assert verified.returncode == 0, verified.stderr
    assert "2 pruned: links only, each by a recorded pruning" in verified.stdout
    assert f"snapshot #{ids[0]} pruned 20" in verified.stdout
    entry = empty_store.audit_log(1)[0]
    assert entry["action"] == "prune"
    named = json.loads(entry["detail"])["pruned"]
    assert [n["id"] for n in named] == ids[:2]
    assert [n["hash"] for n in named] == [empty_store.info(i).hash for i in ids[:2]]
    # Deleting the prune entry (and moving the head back) un-accounts both snapshots.
    with empty_store.engine.begin() as conn:
        last = conn.execute(text("SELECT sequence, previous_hash FROM audit_log "
                                 "WHERE id = :id"), {"id": entry["id"]}).one()
        conn.execute(text("DELETE FROM audit_log WHERE id = :id"), {"id": entry["id"]})
        conn.execute(text("UPDATE meta SET value = :v WHERE key = 'audit_head'"),
                     {"v": f"{last[0] - 1}:{last[1]}"})
    problems = _problems(empty_store)
    assert sum("deleted outside the tool" in p for p in problems) == 2, problems


def test_a_pruning_that_names_another_digest_accounts_for_nothing(empty_store, shipped_catalog):
    ids = _fill(empty_store, shipped_catalog)
    empty_store.prune(3, "alice")
    # The forger rewrites the pruned header's digest and keeps the links consistent.
    forged = "f" * 64
    with empty_store.engine.begin() as conn:
        conn.execute(text("UPDATE snapshots SET hash = :h WHERE id = :id"),
                     {"h": forged, "id": ids[0]})
        conn.execute(text("UPDATE snapshots SET previous_hash = :h WHERE id = :id"),
                     {"h": forged, "id": ids[1]})
    problems = _problems(empty_store)
    assert any(f"snapshot #{ids[0]}" in p and "recorded another chain position or digest" in p
               for p in problems), problems


def test_an_edited_or_inserted_audit_entry_is_caught(empty_store, shipped_catalog):
    ids = _fill(empty_store, shipped_catalog)
    empty_store.record("alice", "export", ids[0], "csv to standard output")
    empty_store.record("bob", "collect", ids[-1], "3 hosts")
    assert empty_store.verify().ok and empty_store.verify().audit_entries == 2
    with empty_store.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET who = 'mallory' WHERE who = 'alice'"))
    assert any("who, when, what or detail was changed" in p for p in _problems(empty_store))
    with empty_store.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET who = 'alice' WHERE who = 'mallory'"))
        conn.execute(text("INSERT INTO audit_log (at, who, action, snapshot_id, detail) VALUES "
                          "('2026-01-01T00:00:00+00:00', 'x', 'prune', NULL, '{}')"))
    assert any("not part of the audit chain" in p for p in _problems(empty_store))


def test_with_a_key_a_recomputed_prune_entry_is_caught(signed, shipped_catalog):
    store, ids = signed
    # The forger deletes a snapshot's hosts and writes the prune entry the tool would have
    # written, digest and head included: everything but the HMAC, which needs the key.
    _forge_pruning(store, ids[1], with_header=False)
    assert store.verify().ok  # without the key the forgery is consistent
    problems = _problems(store, KEY)
    assert any("audit entry" in p and "unsigned: written without this key" in p
               for p in problems)
    assert any(f"snapshot #{ids[1]}" in p and "deleted outside the tool" in p for p in problems)


def test_with_a_key_removing_the_newest_snapshot_is_caught_by_the_signed_head(signed):
    store, ids = signed
    _cut_newest(store, ids[-1])
    # The truncated chain is consistent in itself; the audit entry naming the removed
    # snapshot gives it away, and with the key so does the head's signature.
    assert [p.split(": ", 1)[1] for p in _problems(store)] == [
        f"names snapshot #{ids[-1]}, which is not in the store (the newest snapshots were "
        "removed?)"]
    assert any("snapshots chain head is not signed" in p for p in _problems(store, KEY))


def test_with_a_key_a_renumbered_snapshot_with_a_recomputed_digest_is_caught(signed):
    store, ids = signed
    header = store.raw_header(ids[-1])
    results, inventory = store.raw_rows(ids[-1])
    forged = chain.digest({**header, "id": 77}, results, inventory)
    with store.engine.begin() as conn:
        conn.execute(text("PRAGMA foreign_keys=OFF"))
        conn.execute(text("UPDATE snapshots SET id = 77, hash = :h WHERE id = :id"),
                     {"h": forged, "id": ids[-1]})
        conn.execute(text("UPDATE results SET snapshot_id = 77 WHERE snapshot_id = :id"),
                     {"id": ids[-1]})
        conn.execute(text("UPDATE meta SET value = :v WHERE key = 'chain_head'"),
                     {"v": f"{header['sequence']}:{forged}"})
    assert any(f"names snapshot #{ids[-1]}, which is not in the store" in p
               for p in _problems(store))
    problems = _problems(store, KEY)
    assert "snapshot #77 (position 4): signature wrong for this key" in problems
    assert any("chain head is not signed" in p for p in problems)


def test_making_the_store_look_older_gets_nothing_signed(signed, store_url):
    """The migration to schema 5 signs nothing, so faking schema 4 to have it re-chain an
    edited audit log leaves every re-chained entry unsigned, and verify says so."""
    store, _ids = signed
    store.dispose()
    import sqlite3

    path = store_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        db.executescript("""
            UPDATE audit_log SET who = 'mallory' WHERE who = 'alice';
            INSERT INTO audit_log (at, who, action, snapshot_id, detail)
                VALUES ('2026-11-30T10:00:00+00:00', 'ceo', 'export', 1, 'bundle');
            DROP INDEX uq_audit_log_sequence;
            ALTER TABLE audit_log DROP COLUMN sequence;
            ALTER TABLE audit_log DROP COLUMN previous_hash;
            ALTER TABLE audit_log DROP COLUMN hash;
            ALTER TABLE audit_log DROP COLUMN signature;
            DELETE FROM meta WHERE key IN ('audit_head', 'audit_head_signature',
                                           'chain_head_signature');
            UPDATE meta SET value = '4' WHERE key = 'schema_version';
            UPDATE alembic_version SET version_num = '0004';
        """)
    reopened = SnapshotStore.open(store_url, signing_key=KEY)  # runs the migration again
    try:
        problems = _problems(reopened, KEY)
        assert sum("unsigned: written without this key" in p for p in problems) == 2, problems
        assert any("snapshots chain head is not signed" in p for p in problems), problems
        # Nor will a person adopting "unsigned history" bless it: those entries name snapshots
        # signed with the key, so they were written after it was in use.
        from store import StoreError

        with pytest.raises(StoreError, match="written after this key was in use"):
            reopened.adopt_key("bob", reopened.verify().state)
    finally:
        reopened.dispose()


def test_a_keyed_write_never_signs_over_a_head_moved_back(signed, shipped_catalog):
    store, ids = signed
    _cut_newest(store, ids[-1])
    at = NOW + timedelta(hours=1)
    run = assess([Observation(Host("EX9"), at, "t", exsetup_version=PATCHED)], shipped_catalog,
                 at, source="test", tool_version="t")
    from store import StoreError

    with pytest.raises(StoreError, match="not one this key signed, so nothing was written"):
        store.save(run, shipped_catalog)
    assert any("snapshots chain head is not signed" in p for p in _problems(store, KEY))


@pytest.mark.parametrize("head", ["chain_head", "audit_head"])
def test_a_deleted_head_is_a_problem_not_a_pass(signed, head):
    store, _ids = signed
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM meta WHERE key = :k"), {"k": head})
    kind = "snapshots" if head == "chain_head" else "audit"
    assert f"chain: the {kind} chain head is missing (removed outside the tool)" in \
        _problems(store)


def test_a_changed_row_is_never_carried_into_a_new_snapshot_or_pruned_away(
        empty_store, shipped_catalog):
    ids = _fill(empty_store, shipped_catalog)
    with empty_store.engine.begin() as conn:
        conn.execute(text("UPDATE results SET observation = replace(observation, :v, :p) "
                          "WHERE snapshot_id = :id AND host = 'EX1'"),
                     {"v": VULNERABLE, "p": PATCHED, "id": ids[-1]})
    at = NOW + timedelta(hours=1)
    run = assess([Observation(Host("EX0"), at, "t", exsetup_version=PATCHED)], shipped_catalog,
                 at, source="test", tool_version="t")
    from store import StoreError

    with pytest.raises(StoreError, match=f"snapshot #{ids[-1]}.*does not match its digest"):
        empty_store.save(run, shipped_catalog)
    assert len(empty_store.history()) == len(ids)
    # Nor can pruning delete the evidence: the changed snapshot refuses to go.
    with empty_store.engine.begin() as conn:
        conn.execute(text("UPDATE results SET status = 'patched' WHERE snapshot_id = :id"),
                     {"id": ids[0]})
    with pytest.raises(StoreError, match=f"snapshot #{ids[0]} .*does not match its recorded "
                                         "digest.*nothing was pruned"):
        empty_store.prune(1, "alice")
    assert not any(s.pruned for s in empty_store.history())


def test_the_header_of_a_pruned_snapshot_cannot_be_changed(empty_store, shipped_catalog):
    ids = _fill(empty_store, shipped_catalog)
    empty_store.prune(2, "alice")
    assert empty_store.verify().ok
    with empty_store.engine.begin() as conn:
        conn.execute(text("UPDATE snapshots SET counts = :c, label = 'all good' WHERE id = :id"),
                     {"c": '{"patched":3}', "id": ids[0]})
    assert [p for p in _problems(empty_store) if "differs from the one its pruning recorded"
            in p] == [f"snapshot #{ids[0]} (position 1): its header (time, counts, label, ...) "
                      "differs from the one its pruning recorded: changed since"]


def test_setting_a_key_on_an_existing_store_is_adopted_once(empty_store, shipped_catalog,
                                                            store_url):
    ids = _fill(empty_store, shipped_catalog, 2)
    empty_store.record("alice", "collect", ids[-1], "2 runs")
    unsigned = _problems(empty_store, KEY)
    assert unsigned and all("python -m store adopt-key --state" in p for p in unsigned)
    keyed = SnapshotStore.open(store_url, signing_key=KEY)
    try:
        at = NOW + timedelta(hours=1)
        run = assess([Observation(Host("EX0"), at, "t", exsetup_version=PATCHED)],
                     shipped_catalog, at, source="test", tool_version="t")
        from store import StoreError

        # A keyed write never signs on top of a head no one holding the key vouched for.
        with pytest.raises(StoreError, match="adopt it once"):
            keyed.save(run, shipped_catalog)
        head = empty_store.verify().state
        wrong = _cli(store_url, "adopt-key", "--state", "f" * 16, key=KEY)
        assert wrong.returncode == 2 and "does not begin the store's state digest" in wrong.stderr
        assert head not in wrong.stderr  # never handed the value to copy without comparing
        result = _cli(store_url, "adopt-key", "--state", head[:16], key=KEY)
        assert result.returncode == 0, result.stderr
        keyed.save(run, shipped_catalog)  # now the heads are signed: writing goes on
        verified = _cli(store_url, "verify", key=KEY)
        assert verified.returncode == 0, verified.stderr
        assert "unsigned history adopted under the key" in verified.stdout
        # What was adopted is fixed by the signed adoption: changing it now is caught.
        with keyed.engine.begin() as conn:
            conn.execute(text("UPDATE audit_log SET who = 'mallory' WHERE who = 'alice'"))
        assert not keyed.verify(KEY).ok
    finally:
        keyed.dispose()


def test_adopt_key_refuses_a_store_that_does_not_verify(empty_store, shipped_catalog,
                                                       store_url):
    ids = _fill(empty_store, shipped_catalog, 2)
    head = empty_store.verify().state
    with empty_store.engine.begin() as conn:
        conn.execute(text("UPDATE results SET status = 'patched' WHERE snapshot_id = :id"),
                     {"id": ids[0]})
    result = _cli(store_url, "adopt-key", "--state", head, key=KEY)
    assert result.returncode == 2 and "nothing was adopted" in result.stderr
    # and never without the key
    assert _cli(store_url, "adopt-key", "--state", head).returncode == 2


def test_adopt_key_refuses_an_unsigned_entry_after_signed_ones(signed):
    """Review 2, F2: an unsigned prune entry appended after signed entries, naming a snapshot
    whose hosts the forger deleted; verify without the key says OK, adopt-key must refuse."""
    store, ids = signed
    _forge_pruning(store, ids[1], with_header=True)
    assert store.verify().ok  # the precondition the hint gives for adopting
    from store import StoreError

    with pytest.raises(StoreError, match="written after this key was in use"):
        store.adopt_key("bob", store.verify().state)


@pytest.mark.parametrize("flip", ["newest", "all"])
def test_a_keyed_save_never_picks_its_base_by_a_column_the_forger_sets(signed, shipped_catalog,
                                                                      flip):
    """Review 2, F1a: format set to 1 on the unpruned snapshots and a verdict changed in the
    newest, so that the save composes from unverified rows; the changes put back afterwards."""
    store, ids = signed
    targets = ids[-1:] if flip == "newest" else ids
    with store.engine.begin() as conn:
        for snapshot_id in targets:
            conn.execute(text("UPDATE snapshots SET format = 1 WHERE id = :id"),
                         {"id": snapshot_id})
        conn.execute(text("UPDATE results SET observation = replace(observation, :v, :p) "
                          "WHERE snapshot_id = :id AND host = 'EX1'"),
                     {"v": VULNERABLE, "p": PATCHED, "id": ids[-1]})
    at = NOW + timedelta(hours=1)
    from store import StoreError

    with pytest.raises(StoreError, match="Nothing was written"):
        store.save(assess([Observation(Host("EX2"), at, "t", exsetup_version=PATCHED)],
                          shipped_catalog, at, source="test", tool_version="t"),
                   shipped_catalog)
    assert len(store.history()) == len(ids)


def test_a_keyed_record_never_extends_an_audit_head_moved_back(signed):
    """Review 2, F1c: the newest entry deleted, the head moved back and the new newest
    entry's signature emptied, so it looks unsigned."""
    store, ids = signed
    store.record("alice", "export", ids[0], "bundle")
    with store.engine.begin() as conn:
        newest = conn.execute(text("SELECT id, sequence, previous_hash FROM audit_log "
                                   "ORDER BY sequence DESC LIMIT 1")).one()
        conn.execute(text("DELETE FROM audit_log WHERE id = :id"), {"id": newest[0]})
        conn.execute(text("UPDATE meta SET value = :v WHERE key = 'audit_head'"),
                     {"v": f"{newest[1] - 1}:{newest[2]}"})
        conn.execute(text("UPDATE audit_log SET signature = NULL WHERE sequence = :s"),
                     {"s": newest[1] - 1})
    from store import StoreError

    with pytest.raises(StoreError, match="audit chain head is not one this key signed"):
        store.record("bob", "collect", ids[-1], "x")


def test_prune_refuses_a_store_that_does_not_verify_with_its_key(signed):
    """Review 2, F7: rows changed and the digest recomputed (only the HMAC gives it away):
    pruning would delete that evidence."""
    store, ids = signed
    header = store.raw_header(ids[0])
    results, inventory = store.raw_rows(ids[0])
    results = [(*r[:2], "patched", *r[3:]) for r in results]
    forged = chain.digest(header, results, inventory)
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE results SET status = 'patched' WHERE snapshot_id = :id"),
                     {"id": ids[0]})
        conn.execute(text("UPDATE snapshots SET hash = :h WHERE id = :id"),
                     {"h": forged, "id": ids[0]})
        conn.execute(text("UPDATE snapshots SET previous_hash = :h WHERE id = :id"),
                     {"h": forged, "id": ids[1]})
    from store import StoreError

    with pytest.raises(StoreError, match="nothing was pruned"):
        store.prune(1, "alice")
    assert store.raw_rows(ids[0])[0]  # the evidence is still there


@pytest.mark.parametrize("statement", [
    "UPDATE snapshots SET format = 'x' WHERE id = 2",
    "UPDATE snapshots SET counts = 'not json' WHERE id = 2",
    "UPDATE snapshots SET counts = '[1]' WHERE id = 2",
    "UPDATE snapshots SET taken_at = 'garbage' WHERE id = 2",
    "UPDATE snapshots SET hash = NULL WHERE id = 2",
    "UPDATE results SET observation = X'00ff' WHERE snapshot_id = 2 AND position = 0",
    "UPDATE snapshots SET signature = 'é' WHERE id = 2",
    "UPDATE meta SET value = 'é' WHERE key = 'chain_head_signature'",
])
def test_rows_no_writer_makes_are_one_line_in_verify_and_history(empty_store, shipped_catalog,
                                                                 store_url, statement):
    _fill(empty_store, shipped_catalog, 3)
    with empty_store.engine.begin() as conn:
        conn.execute(text(statement))
    for args in (["verify"], ["history"]):
        result = _cli(store_url, *args, key=KEY)
        assert "Traceback" not in result.stderr, result.stderr
        if result.returncode:
            assert result.returncode in (1, 2), result.stderr
            assert result.stderr.strip().splitlines()[-1].startswith(
                ("FAIL", "verification failed:", "error:")), result.stderr
    assert _cli(store_url, "verify", key=KEY).returncode == 1


@pytest.mark.parametrize("kind", ["trigger", "view"])
def test_a_store_holding_a_trigger_or_view_is_refused(store_url, shipped_catalog, kind):
    """Review 3, F1/F5: a trigger could swap rows in while the tool signs, or make a keyed
    import report a false summary; the tool creates none, so any is refused by name."""
    store = SnapshotStore.open(store_url, signing_key=KEY)
    _fill(store, shipped_catalog, 1)
    with store.engine.begin() as conn:
        if kind == "trigger":
            conn.execute(text("CREATE TRIGGER swap AFTER UPDATE ON meta BEGIN "
                              "UPDATE snapshots SET label = 'x'; END"))
        else:
            conn.execute(text("CREATE VIEW lens AS SELECT * FROM snapshots"))
    store.dispose()
    from store import StoreError

    with pytest.raises(StoreError, match=f"holds {kind} .*which this tool never creates"):
        SnapshotStore.open(store_url, signing_key=KEY)


def test_an_old_head_signature_cannot_cut_back_one_chain(signed, shipped_catalog):
    """Review 3, F4: both heads are signed together, so putting back an older audit head and
    its signature (recorded by someone with read access) while the snapshots went on fails."""
    store, _ids = signed
    with store.engine.connect() as conn:
        then = dict(conn.execute(text("SELECT key, value FROM meta")).all())
    at = NOW + timedelta(hours=1)
    newest = store.save(assess([Observation(Host("EX0"), at, "t", exsetup_version=PATCHED)],
                               shipped_catalog, at, source="test", tool_version="t"),
                        shipped_catalog)
    store.record("alice", "import", newest, "1 host")
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE sequence > :s"),
                     {"s": int(then["audit_head"].split(":")[0])})
        for key in ("audit_head", "audit_head_signature"):
            conn.execute(text("UPDATE meta SET value = :v WHERE key = :k"),
                         {"v": then[key], "k": key})
    assert any("audit chain head is not signed" in p for p in _problems(store, KEY))


def test_values_no_writer_makes_in_a_row_are_a_problem_not_a_traceback(empty_store,
                                                                       shipped_catalog,
                                                                       store_url):
    ids = _fill(empty_store, shipped_catalog, 2)
    with empty_store.engine.begin() as conn:
        conn.execute(text("UPDATE results SET observed_in = 9e999 WHERE snapshot_id = :id"),
                     {"id": ids[-1]})
    result = _cli(store_url, "verify")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr


def test_history_names_each_snapshots_own_format(empty_store, shipped_catalog, store_url):
    _fill(empty_store, shipped_catalog, 1)
    shown = _cli(store_url, "history")
    assert shown.returncode == 0 and f"format {chain.CURRENT_FORMAT}: fleet of 3 hosts" in \
        shown.stdout, shown.stdout
