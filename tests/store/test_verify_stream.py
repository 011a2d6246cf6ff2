"""verify reads each snapshot's rows as a stream from the driver (store.snapshots._driver_rows)
and hashes them as they arrive: what it hashes must be exactly what SQLAlchemy reads, and a row
the digest stops at must not leave the others unchecked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text

from compliance.evaluate import assess
from compliance.models import Host, Observation
from store import SnapshotStore, schema
from store.snapshots import ROW_KEYS, _driver_rows, _OpenRows
from store.verification import check_rows

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def any_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("postgres_url")


def _store(url: str, catalog, hosts: int = 6) -> tuple[SnapshotStore, int]:
    store = SnapshotStore.open(url)
    at = NOW - timedelta(days=1)
    observations = [Observation(Host(f"EX{i}", site="S"), at, "test",
                                exsetup_version="15.1.2176.9" if i % 2 else "15.1.2176.2")
                    for i in range(hosts)]
    snapshot_id = store.save(assess(observations, catalog, at, source="test", tool_version="t",
                                    discovered=[o.host for o in observations]), catalog)
    return store, snapshot_id


def _results(snapshot_id: int):  # the query SnapshotStore._rows runs (ROW_KEYS)
    return (select(*(schema.results.c[key] for key in ROW_KEYS))
            .where(schema.results.c.snapshot_id == snapshot_id)
            .order_by(schema.results.c.position))


def _typed(rows):
    return [[(type(value), value) for value in row] for row in rows]


def test_streamed_rows_are_the_rows_sqlalchemy_reads(any_url, shipped_catalog):
    store, snapshot_id = _store(any_url, shipped_catalog)
    with store.engine.begin() as conn:  # values no writer makes, read as SQLAlchemy reads them
        conn.execute(text("UPDATE results SET known_build = NULL, indicator_count = NULL "
                          "WHERE position = 1"))
        if conn.dialect.name == "sqlite":
            conn.execute(text("UPDATE results SET known_build = 'yes', run_failed = 2, "
                              "indicator_count = 'many', observed_in = 1.5 WHERE position = 2"))
    try:
        with store.engine.connect() as conn:
            # What SQLAlchemy's own rows hold (SnapshotStore._rows reads the driver's too).
            results = [tuple(row) for row in conn.execute(_results(snapshot_id)).all()]
            inventory = [tuple(row) for row in conn.execute(
                select(schema.discovered.c.position, schema.discovered.c.host,
                       schema.discovered.c.record)
                .where(schema.discovered.c.snapshot_id == snapshot_id)
                .order_by(schema.discovered.c.position)).all()]
            streamed = list(_driver_rows(conn, _results(snapshot_id)))
            assert len(streamed) == 6 and _typed(streamed) == _typed(results)
            assert _typed(SnapshotStore._rows(conn, snapshot_id)[0]) == _typed(results)
            assert any(isinstance(row[ROW_KEYS.index("known_build")], bool) for row in streamed)
            inventory_stmt = (select(schema.discovered.c.position, schema.discovered.c.host,
                                     schema.discovered.c.record)
                              .where(schema.discovered.c.snapshot_id == snapshot_id)
                              .order_by(schema.discovered.c.position))
            assert _typed(_driver_rows(conn, inventory_stmt)) == _typed(inventory)
    finally:
        store.dispose()


def test_a_stream_left_part_read_leaves_the_connection_usable(any_url, shipped_catalog):
    store, snapshot_id = _store(any_url, shipped_catalog)
    try:
        with store.engine.connect() as conn:
            rows = _driver_rows(conn, _results(snapshot_id))
            assert next(rows)[0] == 0
            rows.close()
            assert conn.execute(select(schema.results.c.position)
                                .where(schema.results.c.snapshot_id == snapshot_id)
                                .order_by(schema.results.c.position.desc())).first() == (5,)
    finally:
        store.dispose()


def test_rows_after_one_the_digest_stops_at_are_checked_still(empty_store, shipped_catalog):
    store = empty_store
    observations = [Observation(Host(f"EX{i}"), NOW, "test", exsetup_version="15.1.2176.2")
                    for i in range(4)]
    snapshot_id = store.save(assess(observations, shipped_catalog, NOW, source="test",
                                    tool_version="t"), shipped_catalog)
    header = store.raw_header(snapshot_id)
    results, inventory = store.raw_rows(snapshot_id)
    whole = check_rows(header, results, inventory, store.raw_outside(snapshot_id))
    assert whole.digest == header["hash"]
    noted = _OpenRows()
    streamed = check_rows(header, iter(results), inventory, store.raw_outside(snapshot_id),
                          noted)
    assert streamed == whole and [p for p, _host in noted.found] == [0, 1, 2, 3]

    broken = [*results[:1], (*results[1][:3], None, *results[1][4:]), *results[2:]]
    seen: list[tuple[object, ...]] = []
    check = check_rows(header, iter(broken), inventory, None, seen.append)
    assert check.digest is None and seen == broken  # every row, the ones after it too

    def failing(row: tuple[object, ...]) -> None:
        if row[0] == 1:
            raise ValueError("not a position")

    with pytest.raises(ValueError, match="not a position"):  # never taken for a bad row
        check_rows(header, iter(results), inventory, None, failing)


def test_postgresql_stores_the_large_texts_with_lz4_and_they_read_back_unchanged(
        postgres_url, shipped_catalog):
    # Schema 13: verify's reads decompress every observation and verdict; LZ4 is several times
    # faster than pglz for the server. The value (and so every digest) is the same.
    store, snapshot_id = _store(postgres_url, shipped_catalog, hosts=40)
    try:
        with store.engine.connect() as conn:
            methods = dict(conn.execute(text(
                "SELECT attname, attcompression FROM pg_attribute WHERE attrelid = "
                "'results'::regclass AND attname IN ('observation', 'verdict', "
                "'investigation_detail')")).all())
            assert methods == dict.fromkeys(("observation", "verdict", "investigation_detail"), "l")
            assert conn.execute(text("SELECT attcompression FROM pg_attribute WHERE attrelid = "
                                     "'discovered'::regclass AND attname = 'record'")
                                ).scalar_one() == "l"
            # A value long enough to be compressed is, and with LZ4.
            long = conn.execute(text(
                "SELECT count(*) FROM results WHERE snapshot_id = :id AND "
                "pg_column_compression(observation) = 'lz4'"), {"id": snapshot_id}).scalar_one()
        report = store.verify()
        assert report.ok and report.rehashed == 1
        assert long > 0
    finally:
        store.dispose()
