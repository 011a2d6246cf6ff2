"""Snapshot format 8: each row's JSON columns enter the digest as their SHA-256, which
PostgreSQL computes where the text lies (store.snapshots._row_check), so verify receives 32
bytes instead of ~8 KB per row (issue 15: verify <= 10 s at 52 x 10,000). What must hold: the
database's hash is the hash of the very text the pages read; a value that only poses as a
hash (a SQLite BLOB, a function someone defined, a column type with its own cast) never
verifies; the text path and the hashed path give one digest."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select, text

from compliance.evaluate import assess
from compliance.models import Host, Observation
from store import SnapshotStore, chain, schema
from store.snapshots import _JSON_KEYS, ROW_KEYS, _driver_rows, _hashes_json, _json_digest

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
HEADER = {**dict.fromkeys(chain.HEADER_FIELDS), "sequence": 1, "previous_hash": "0" * 64,
          "taken_at": "2021-03-05T00:00:00+00:00", "host_count": 2, "format": 8, "id": 3,
          "observed_count": 2, "fresh_count": 2}
_COUNT = len(chain.SUMMARY_FIELDS)
ROWS = [(0, "ex1", "patched", '{"a":1}', '{"b":2}', None, '["s"]',
         *([True, 0, None, 12345678901234567890] + [f'v"{i}\\\u00e9\n' for i in range(_COUNT - 4)]),
         '{"state":"clean"}'),
        (1, "ex\u00e92", "vulnerable", '{"a":"\u00e9\U0001f600"}', "{}", 7, None, *([None] * _COUNT),
         None)]
INVENTORY = [(0, "ex1", '{"dn":"CN=ex1"}')]


def _hashed(rows):
    """The rows as PostgreSQL sends them to verify: JSON columns by their SHA-256."""
    return [(*row[:3], hashlib.sha256(row[3].encode()).digest(),
             hashlib.sha256(row[4].encode()).digest(), *row[5:-1],
             None if row[-1] is None else hashlib.sha256(row[-1].encode()).digest())
            for row in rows]


def _framed(rows) -> str:
    """Format 8 as specified, field by field (chain._field framing), not by the fast loop."""
    hasher = hashlib.sha256(b"proxylogon-snapshot/8")
    fields = chain.HEADER_FIELDS + chain.FLEET_FIELDS + chain.IDENTITY_FIELDS
    chain._field(hasher, json.dumps({k: HEADER[k] for k in fields}, sort_keys=True,
                                    separators=(",", ":"), ensure_ascii=False).encode())
    for row in rows:
        for value in (f"R{row[0]}".encode(), row[1].encode(), row[2].encode(),
                      hashlib.sha256(row[3].encode()).digest(),
                      hashlib.sha256(row[4].encode()).digest(),
                      b"" if row[5] is None else str(row[5]).encode(), (row[6] or "").encode(),
                      json.dumps(row[7:-1], ensure_ascii=False, separators=(",", ":")).encode(),
                      b"" if row[-1] is None else hashlib.sha256(row[-1].encode()).digest()):
            chain._field(hasher, value)
    for position, host, record in INVENTORY:
        for value in (f"D{position}".encode(), host.encode(), record.encode()):
            chain._field(hasher, value)
    chain._field(hasher, b"O0")
    return hasher.hexdigest()


def test_a_format_8_digest_is_its_specified_framing_and_pinned():
    # Every format 8 snapshot's digest depends on these bytes; the pinned value keeps a later
    # "faster" loop from changing them, the framing above says what they are.
    expected = _framed(ROWS)
    assert chain.digest(HEADER, ROWS, INVENTORY) == expected == (
        "c49c43e4db752791707fbeafbba4bfea01c081ec678a929f21b27aca056e2b07")


def test_the_hashed_path_gives_the_text_paths_digest_and_only_for_format_8():
    assert chain.digest(HEADER, _hashed(ROWS), INVENTORY, hashed_json=True) == \
        chain.digest(HEADER, ROWS, INVENTORY)
    with pytest.raises(ValueError, match="format 7 hashes its rows' JSON as text"):
        chain.digest({**HEADER, "format": 7}, _hashed(ROWS), INVENTORY, hashed_json=True)
    # Format 7 of the same rows is another digest (claiming the other format is caught).
    assert chain.digest({**HEADER, "format": 7}, ROWS, INVENTORY) != chain.digest(
        HEADER, ROWS, INVENTORY)


@pytest.mark.parametrize("column", [3, 4, -1])
@pytest.mark.parametrize("posing", [
    "digest as text", "digest as bytes on the text path", "31 bytes", "bytearray", "none"])
def test_a_value_posing_as_a_hash_matches_no_digest(column, posing):
    # On the text path (SQLite, a bundle) only text is hashed: a BLOB holding the SHA-256 of
    # the signed text must not verify. On the hashed path only 32 bytes are a hash.
    real = ROWS[0][column]
    digest = hashlib.sha256(real.encode()).digest()
    hashed_json, value = {
        "digest as text": (True, real),
        "digest as bytes on the text path": (False, digest),
        "31 bytes": (True, digest[:31]),
        "bytearray": (True, bytearray(digest)),
        "none": (True, None) if column != -1 else (False, b""),
    }[posing]
    rows = _hashed(ROWS) if hashed_json else list(ROWS)
    row = list(rows[0])
    row[column] = value
    assert chain.stored_digest(HEADER, [tuple(row), *rows[1:]], INVENTORY, None,
                               hashed_json) is None


@given(st.text())
def test_json_digest_is_sha256_of_utf8_and_refuses_a_lone_surrogate(value):
    try:
        expected = hashlib.sha256(value.encode()).digest()
    except UnicodeEncodeError:
        with pytest.raises(UnicodeEncodeError):
            chain.json_digest(value)
        return
    assert chain.json_digest(value) == expected


# -- on the backends -------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def any_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("postgres_url")


def _store(url: str, catalog) -> tuple[SnapshotStore, int]:
    store = SnapshotStore.open(url)
    at = NOW - timedelta(days=1)
    observations = [Observation(Host(f"EX{i}\u00e9", site="S\U0001f600"), at, "test",
                                exsetup_version="15.1.2176.9" if i % 2 else "15.1.2176.2")
                    for i in range(4)]
    snapshot_id = store.save(assess(observations, catalog, at, source="test", tool_version="t",
                                    discovered=[o.host for o in observations]), catalog)
    return store, snapshot_id


def test_postgresql_hashes_the_json_and_sqlite_does_not(any_url, shipped_catalog):
    store, snapshot_id = _store(any_url, shipped_catalog)
    try:
        assert store.info(snapshot_id).format == chain.CURRENT_FORMAT == 8
        with store.engine.connect() as conn:
            hashes = _hashes_json(conn)
            assert hashes == (conn.dialect.name == "postgresql")
            stored = SnapshotStore._rows(conn, snapshot_id)[0]
            if hashes:  # the database's hash of each JSON value is json_digest of its text
                query = (select(*(_json_digest(schema.results.c[key]) for key in
                                  ("observation", "verdict", "investigation_detail")))
                         .where(schema.results.c.snapshot_id == snapshot_id)
                         .order_by(schema.results.c.position))
                found = list(_driver_rows(conn, query))
                assert found == [(chain.json_digest(row[3]), chain.json_digest(row[4]),
                                  None if row[-1] is None else chain.json_digest(row[-1]))
                                 for row in stored]
                assert any(row[-1] is not None for row in stored)
        assert store.verify(workers=1).ok
    finally:
        store.dispose()


@pytest.mark.parametrize("statement", [
    "UPDATE results SET observation = observation || ' ' WHERE position = 1",
    "UPDATE results SET verdict = replace(verdict, 'patched', 'vulnerable') WHERE position = 1",
    "UPDATE results SET investigation_detail = NULL WHERE investigation_detail IS NOT NULL",
    "UPDATE results SET investigation_detail = '{}' WHERE position = 0",
])
def test_a_changed_json_column_is_caught_on_both_backends(any_url, shipped_catalog, statement):
    store, snapshot_id = _store(any_url, shipped_catalog)
    try:
        with store.engine.begin() as conn:
            assert conn.execute(text(statement)).rowcount >= 1
        for workers in (1, 2):
            report = store.verify(workers=workers)
            assert [p.snapshot_id for p in report.problems] == [snapshot_id], report.problems
    finally:
        store.dispose()


def test_a_sqlite_blob_holding_the_signed_texts_hash_is_caught(tmp_path, shipped_catalog):
    # SQLite keeps whatever it is given: 32 bytes that are the SHA-256 of the signed JSON
    # must not pass for it (the text the pages would decode is gone).
    store, snapshot_id = _store(f"sqlite:///{tmp_path / 'store.db'}", shipped_catalog)
    try:
        with store.engine.connect() as conn:
            row = SnapshotStore._rows(conn, snapshot_id)[0][0]
        with store.engine.begin() as conn:
            conn.execute(text("UPDATE results SET observation = :hash WHERE position = 0"),
                         {"hash": chain.json_digest(row[ROW_KEYS.index("observation")])})
        report = store.verify(workers=1)
        assert [p.snapshot_id for p in report.problems] == [snapshot_id]
    finally:
        store.dispose()


def test_functions_shadowing_postgresqls_hash_are_not_called(postgres_url, shipped_catalog):
    # Someone who can write the database appends a space to an observation, defines a
    # public.convert_to that strips it again (so an unqualified hash is the signed text's),
    # and puts public first on the database's search path: verify calls pg_catalog's own
    # functions, so the changed observation is still caught. (Checked to fail with the
    # unqualified names.)
    store, snapshot_id = _store(postgres_url, shipped_catalog)
    try:
        with store.engine.begin() as conn:
            conn.execute(text(
                "CREATE FUNCTION public.convert_to(text, name) RETURNS bytea LANGUAGE sql "
                "AS $$ SELECT pg_catalog.convert_to(pg_catalog.rtrim($1, ' '), $2) $$"))
            conn.execute(text("UPDATE results SET observation = observation || ' ' "
                              "WHERE position = 0"))
            database = conn.execute(text("SELECT current_database()")).scalar_one()
            conn.execute(text(f'ALTER DATABASE "{database}" SET search_path = public, '
                              f'pg_catalog'))
    finally:
        store.dispose()
    import psycopg

    # A plain session (not the store's) takes the forger's function for the unqualified name.
    with psycopg.connect(postgres_url.replace("postgresql+psycopg://", "postgresql://")) as raw:
        assert raw.execute("SHOW search_path").fetchone()[0] == "public, pg_catalog"
        stored = raw.execute("SELECT observation FROM results WHERE position = 0").fetchone()[0]
        assert stored.endswith(" ") and raw.execute(
            "SELECT convert_to(observation, 'UTF8') FROM results WHERE position = 0"
        ).fetchone()[0] == stored[:-1].encode()
    shadowed = SnapshotStore.open(postgres_url)
    try:
        with shadowed.engine.connect() as conn:  # the store's sessions search pg_catalog first
            assert conn.execute(text("SHOW search_path")).scalar_one() == "public"
        for workers in (1, 2):
            report = shadowed.verify(workers=workers)
            assert [p.snapshot_id for p in report.problems] == [snapshot_id], report.problems
    finally:
        shadowed.dispose()


def test_a_json_column_no_longer_text_is_hashed_by_the_client(postgres_url, shipped_catalog):
    # A table owner can change a column's type (to one whose cast to text might show verify
    # other bytes than the pages read): verify then reads the text as the pages do.
    store, snapshot_id = _store(postgres_url, shipped_catalog)
    try:
        with store.engine.begin() as conn:
            conn.execute(text("ALTER TABLE results ALTER COLUMN verdict TYPE varchar"))
        with store.engine.connect() as conn:
            assert not _hashes_json(conn)
        assert store.verify(workers=1).ok
        with store.engine.begin() as conn:
            conn.execute(text("UPDATE results SET verdict = verdict || ' ' WHERE position = 2"))
        assert [p.snapshot_id for p in store.verify(workers=1).problems] == [snapshot_id]
    finally:
        store.dispose()


def test_every_json_key_is_a_text_column_of_results():
    assert set(ROW_KEYS) >= _JSON_KEYS
    assert all(str(schema.results.c[key].type) == "TEXT" for key in _JSON_KEYS)
