"""Tamper evidence: any change to a stored byte, a deleted or reordered snapshot fails verify."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text

from compliance.evaluate import assess
from compliance.models import Host, Observation
from store import SnapshotStore
from store.evidence import build_bundle, verify_bundle
from store.snapshots import ROW_KEYS

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def _fill(store: SnapshotStore, catalog, count: int = 4) -> list[int]:
    ids = []
    for week in range(count):
        at = NOW - timedelta(weeks=count - week)
        observations = [Observation(Host(f"EX{i}", site="S"), at, "test",
                                    exsetup_version="15.1.2176.9" if i < week else "15.1.2176.2")
                        for i in range(5)]
        ids.append(store.save(assess(observations, catalog, at, source="test", tool_version="t",
                                     discovered=[o.host for o in observations], scope="test"),
                               catalog))
    return ids


@pytest.fixture
def filled(empty_store, shipped_catalog):
    return empty_store, _fill(empty_store, shipped_catalog)


def test_an_untouched_chain_verifies(filled):
    store, ids = filled
    report = store.verify()
    assert report.ok and report.checked == len(ids)
    assert [s.sequence for s in store.history()] == [1, 2, 3, 4]
    assert store.history()[1].previous_hash == store.history()[0].hash


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        pytest.param("UPDATE results SET observation = replace(observation, '15.1.2176.2', "
                     "'15.1.2176.9') WHERE snapshot_id = :id AND position = 4",
                     "content does not match", id="observation-byte"),
        pytest.param("UPDATE results SET verdict = replace(verdict, '\"vulnerable\"', "
                     "'\"patched\"') WHERE snapshot_id = :id AND position = 4",
                     "content does not match", id="verdict"),
        pytest.param("UPDATE results SET status = 'patched' WHERE snapshot_id = :id "
                     "AND position = 4", "content does not match", id="status-column"),
        pytest.param("UPDATE snapshots SET taken_at = '2026-11-01T00:00:00+00:00' WHERE id = :id",
                     "content does not match", id="timestamp"),
        pytest.param("UPDATE discovered SET record = replace(record, 'EX1', 'EXX') WHERE "
                     "snapshot_id = :id", "content does not match", id="inventory"),
        pytest.param("DELETE FROM results WHERE snapshot_id = :id AND position = 0",
                     "content does not match", id="host-removed"),
    ],
)
def test_changing_a_stored_byte_fails_and_names_the_snapshot(filled, statement, message):
    store, ids = filled
    target = ids[2]
    with store.engine.begin() as conn:
        conn.execute(text(statement), {"id": target})
    report = store.verify()
    assert not report.ok
    assert [p.snapshot_id for p in report.problems] == [target]
    assert message in report.problems[0].message


def test_deleting_a_snapshot_breaks_the_chain_after_it(filled):
    store, ids = filled
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM snapshots WHERE id = :id"), {"id": ids[1]})
    report = store.verify()
    assert not report.ok
    assert report.problems[0].snapshot_id == ids[2]


def test_deleting_the_newest_snapshot_is_caught_by_the_head(filled):
    store, ids = filled
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM snapshots WHERE id = :id"), {"id": ids[-1]})
    report = store.verify()
    assert not report.ok and "chain head" in report.problems[-1].message


def test_reordering_the_chain_fails(filled):
    store, ids = filled
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE snapshots SET sequence = -1 WHERE id = :a"), {"a": ids[1]})
        conn.execute(text("UPDATE snapshots SET sequence = 2 WHERE id = :b"), {"b": ids[2]})
        conn.execute(text("UPDATE snapshots SET sequence = 3 WHERE id = :a"), {"a": ids[1]})
    report = store.verify()
    assert not report.ok
    assert {p.snapshot_id for p in report.problems} >= {ids[1], ids[2]}


def test_hmac_catches_a_rewritten_chain(empty_store, shipped_catalog, store_url):
    key = b"test-signing-key"
    signed = SnapshotStore.open(store_url, signing_key=key)
    ids = _fill(signed, shipped_catalog, 2)
    assert signed.verify(key).ok and signed.verify(key).signed == 2
    # A database administrator recomputes a digest after editing: the chain holds, the HMAC not.
    from store import chain

    header = signed.raw_header(ids[1])
    results, inventory = signed.raw_rows(ids[1])
    results[0] = (*results[0][:3], results[0][3].replace("15.1.2176", "15.1.2242"), *results[0][4:])
    forged = chain.digest(header, results, inventory)
    with signed.engine.begin() as conn:
        conn.execute(text("UPDATE results SET observation = :o WHERE snapshot_id = :id AND "
                          "position = 0"), {"o": results[0][3], "id": ids[1]})
        conn.execute(text("UPDATE snapshots SET hash = :h WHERE id = :id"), {"h": forged,
                                                                            "id": ids[1]})
        conn.execute(text("UPDATE meta SET value = :v WHERE key = 'chain_head'"),
                     {"v": f"2:{forged}"})
    assert signed.verify().ok  # without the key the forgery is consistent
    report = signed.verify(key)
    assert not report.ok and report.problems[0].snapshot_id == ids[1]
    signed.dispose()


def test_pruning_keeps_the_chain_verifiable(filled):
    store, ids = filled
    assert store.prune(keep=2) == 2
    report = store.verify()
    assert report.ok and report.pruned == 2
    assert store.assessments(ids[0]) == [] and len(store.assessments(ids[-1])) == 5
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE snapshots SET previous_hash = :h WHERE id = :id"),
                     {"h": "0" * 64, "id": ids[1]})
    assert not store.verify().ok


def test_bundle_checks_itself_and_fails_on_any_changed_file(filled, tmp_path):
    store, ids = filled
    bundle = tmp_path / "evidence.zip"
    bundle.write_bytes(build_bundle(store, store.info(ids[-1]), NOW))
    assert verify_bundle(bundle) == []
    names = zipfile.ZipFile(bundle).namelist()
    assert set(names) == {"snapshot.json", "hosts.csv", "summary.txt", "acceptances.json",
                          "deadlines.json", "investigations.json", "manifest.json"}
    for victim in ("snapshot.json", "hosts.csv", "summary.txt", "acceptances.json",
                   "deadlines.json", "investigations.json"):
        broken = tmp_path / f"broken-{victim}.zip"
        with zipfile.ZipFile(bundle) as source, zipfile.ZipFile(broken, "w") as target:
            for name in source.namelist():
                data = source.read(name)
                if name == victim:
                    data = data.replace(b"15.1.2176.2", b"15.1.2176.9", 1) if b"15.1.2176.2" in \
                        data else data + b" "
                target.writestr(name, data)
        problems = verify_bundle(broken)
        assert any(victim in p for p in problems), (victim, problems)


def test_verify_command_names_the_first_bad_snapshot(filled, store_url):
    store, ids = filled
    ok = subprocess.run([sys.executable, "-m", "store", "--db", store_url, "verify"], cwd=ROOT,
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and ok.stdout.startswith("OK: 4 snapshots"), ok.stderr
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE results SET status = 'patched' WHERE snapshot_id = :id"),
                     {"id": ids[1]})
    bad = subprocess.run([sys.executable, "-m", "store", "--db", store_url, "verify"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1
    assert f"FAIL snapshot #{ids[1]} (position 2)" in bad.stderr


def test_workers_report_exactly_what_one_process_reports(filled):
    store, ids = filled
    store.prune(keep=2)
    with store.engine.begin() as conn:  # one changed byte, one removed host
        conn.execute(text("UPDATE results SET verdict = replace(verdict, '\"vulnerable\"', "
                          "'\"patched\"') WHERE snapshot_id = :id AND position = 4"), {"id": ids[2]})
        conn.execute(text("DELETE FROM results WHERE snapshot_id = :id AND position = 0"),
                     {"id": ids[3]})
    alone = store.verify(workers=1)
    assert [p.snapshot_id for p in alone.problems] == [ids[2], ids[3]]
    assert store.verify(workers=2) == alone
    assert store.verify(workers=2, only=ids[3]) == store.verify(workers=1, only=ids[3])


def test_a_large_store_is_hashed_by_workers(filled, monkeypatch):
    import store.snapshots as snapshots

    store, _ids = filled
    headers = [{"id": s.id, "host_count": s.host_count, "pruned": s.pruned}
               for s in store.history()]
    assert store._parallel_checks(headers, None) is None  # 20 rows: hashed here
    monkeypatch.setattr(snapshots, "PARALLEL_ROWS", 1)
    monkeypatch.setattr(snapshots.os, "cpu_count", lambda: 2)
    report = store.verify()
    assert report.ok and report.rehashed == 4
    assert store._parallel_checks([dict(h) for h in _headers(store)], None) is not None


def _headers(store):
    from sqlalchemy import select

    from store import schema
    with store.engine.connect() as conn:
        return conn.execute(select(schema.snapshots)).mappings().all()


def test_a_worker_that_dies_leaves_the_rows_checked_here(filled, monkeypatch):
    """A worker killed on a loaded machine says nothing about the store: verify checks the
    rows itself and reports the same."""
    import concurrent.futures
    from concurrent.futures.process import BrokenProcessPool

    store, _ids = filled
    alone = store.verify(workers=1)

    class Dying:
        def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            pass

        def __enter__(self):  # type: ignore[no-untyped-def]
            return self

        def __exit__(self, *args):  # type: ignore[no-untyped-def]
            return False

        def map(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            raise BrokenProcessPool("a worker was killed")

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", Dying)
    assert store.verify(workers=2) == alone


def test_verify_of_one_snapshot_can_hash_the_rows_its_caller_read(filled):
    # An evidence bundle hands verify the rows it exports (not read twice): the same rows give
    # the same report; one added byte in them is that snapshot's problem.
    from store.evidence import snapshot_document

    store, ids = filled
    document = snapshot_document(store, store.info(ids[2]))
    rows = [tuple(r[key] for key in ROW_KEYS) for r in document["results"]]
    inventory = [(d["position"], d["host"], d["record"]) for d in document["discovered"]]
    given = store.verify(only=ids[2], only_rows=(rows, inventory, document["outside"]))
    assert given == store.verify(only=ids[2]) and given.ok
    changed = [(*rows[0][:3], rows[0][3] + " ", *rows[0][4:]), *rows[1:]]
    report = store.verify(only=ids[2], only_rows=(changed, inventory, document["outside"]))
    assert [p.snapshot_id for p in report.problems] == [ids[2]]
    with pytest.raises(ValueError, match="only_rows needs only"):
        store.verify(only_rows=(rows, inventory, None))


def test_a_format_7_digest_is_pinned_to_its_bytes():
    # Every stored snapshot's digest depends on these exact bytes: a faster framing (one hash
    # update per row) must hash the same ones. Value computed by the field-by-field framing.
    from store import chain

    header = dict.fromkeys(chain.HEADER_FIELDS)
    header.update(sequence=1, previous_hash="0" * 64, taken_at="2021-03-05T00:00:00+00:00",
                  host_count=1, format=7, id=3, observed_count=1, fresh_count=1)
    row = (0, "ex1", "patched", '{"a":1}', '{"b":2}', None, '["s"]',
           *([None] * len(chain.SUMMARY_FIELDS)), '{"state":"clean"}')
    inventory = [(0, "ex1", '{"dn":"CN=ex1"}'), (1, "ex\u00e92", "{}")]
    assert chain.digest(header, [row], inventory) == (
        "2c04b3f921cede80187d0b05483027d627a0a927e037301c1a27379235b6f8a9")


def test_a_format_7_digest_with_summary_values_is_pinned_to_its_bytes():
    # As above, with every kind of value a summary column holds (text needing JSON escapes,
    # non-ASCII, a bool, a number past 64 bits, NULL) and a second row: the one-update loop
    # must hash what the field-by-field framing hashed. Value computed by the framing before
    # that loop.
    from store import chain

    header = dict.fromkeys(chain.HEADER_FIELDS)
    header.update(sequence=1, previous_hash="0" * 64, taken_at="2021-03-05T00:00:00+00:00",
                  host_count=1, format=7, id=3, observed_count=1, fresh_count=1)
    count = len(chain.SUMMARY_FIELDS)
    values: list[object] = [f'v"{i}\\\u00e9\n\x01' for i in range(count)]
    values[:4] = [True, 0, None, 12345678901234567890]
    rows = [(0, "ex1", "patched", '{"a":1}', '{"b":2}', None, '["s"]', *values,
             '{"state":"clean"}'),
            (1, "ex\u00e92", "vulnerable", '{"a":"\u00e9"}', "{}", 7, None, *([None] * count),
             None)]
    assert chain.digest(header, rows, [(0, "ex1", '{"dn":"CN=ex1"}')]) == (
        "933aed5df96933f682c414e7c5e1e599501ad9a6cd338af0431305185d679518")


@pytest.mark.parametrize("forged", [3.9, 3.0, "3", " 3", "+3", "\u0663", True])
def test_an_observed_in_that_is_not_an_integer_matches_no_digest(forged):
    # Review (2026-12-02): the digest hashed str(int(observed_in)), so a SQLite row whose
    # observed_in was changed from 3 to 3.9, "3" or an Arabic-Indic three verified as signed.
    from store import chain

    header = dict.fromkeys(chain.HEADER_FIELDS)
    header.update(sequence=1, previous_hash="0" * 64, taken_at="2021-03-05T00:00:00+00:00",
                  host_count=1, id=3, observed_count=1, fresh_count=1)
    for version in (2, 4, 6, 7, 8):
        width = chain.ROW_WIDTH if version >= 4 else 7
        row = (0, "ex1", "patched", "{}", "{}", 3, None, *([None] * (width - 7)))
        signed = chain.stored_digest({**header, "format": version}, [row], [])
        assert signed is not None
        forged_row = (*row[:5], forged, *row[6:])
        assert chain.stored_digest({**header, "format": version}, [forged_row], []) is None


_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.text(), st.floats(),
                     st.binary(max_size=4))


@given(st.lists(_SCALARS, max_size=30).map(tuple))
def test_summary_json_is_json_dumps_byte_for_byte_errors_included(values):
    # chain._summary reuses one encoder for every row: what it returns, or raises, for any
    # row of column values must be exactly what json.dumps with the digest's options does.
    from store import chain

    try:
        expected: object = json.dumps(values, ensure_ascii=False, separators=(",", ":"),
                                      allow_nan=False).encode()
    except (TypeError, ValueError) as error:
        expected = type(error)
    try:
        found: object = chain._summary(values)
    except (TypeError, ValueError) as error:
        found = type(error)
    assert found == expected


def test_a_bundle_says_verified_only_when_its_own_rows_hash_even_if_the_caller_verified(
        filled, monkeypatch):
    # `store export --format bundle` verifies the whole store, then the bundle reads its rows:
    # a row changed between the two must not be exported as verified (a narrow seam: the
    # bundle's read is made to return a changed row).
    import io

    import store.evidence as evidence

    store, ids = filled
    real = evidence.snapshot_document

    def changed(store_: SnapshotStore, info: object) -> dict:
        document = real(store_, info)
        document["results"][0]["verdict"] += " "
        return document

    monkeypatch.setattr(evidence, "snapshot_document", changed)
    bundle = build_bundle(store, store.info(ids[-1]), datetime.now(UTC), verified=True)
    manifest = json.loads(zipfile.ZipFile(io.BytesIO(bundle)).read("manifest.json"))
    assert manifest["chain_verified_at_export"] is False
    monkeypatch.setattr(evidence, "snapshot_document", real)
    bundle = build_bundle(store, store.info(ids[-1]), datetime.now(UTC), verified=True)
    assert json.loads(zipfile.ZipFile(io.BytesIO(bundle)).read("manifest.json"))[
        "chain_verified_at_export"] is True
