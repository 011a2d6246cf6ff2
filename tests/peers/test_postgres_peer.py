"""Self-tests: the throwaway PostgreSQL peer is what tests/peers/postgres.py claims it is."""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.peers.postgres import PostgresPeer, postgres_available, start_postgres

pytestmark = pytest.mark.integration


def test_cluster_is_up_on_loopback(postgres_peer: PostgresPeer) -> None:
    print(f"\nPostgreSQL {postgres_peer.version}: initdb {postgres_peer.initdb_seconds:.2f} s, "
          f"start to ready {postgres_peer.start_seconds:.2f} s, port {postgres_peer.port}")
    assert postgres_peer.running()
    assert postgres_peer.host == "127.0.0.1"
    assert postgres_peer.url == f"postgresql+psycopg://postgres@127.0.0.1:{postgres_peer.port}/peer"
    assert postgres_peer.base_dir.parent == Path(tempfile.gettempdir())
    assert postgres_peer.data_dir.is_dir() and postgres_peer.socket_dir.is_dir()
    with socket.create_connection((postgres_peer.host, postgres_peer.port), timeout=2):
        pass
    with postgres_peer.connect() as conn:
        settings = dict(conn.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN "
            "('listen_addresses', 'fsync', 'server_encoding', 'lc_collate', 'unix_socket_directories')"
        ).fetchall())
    assert settings == {
        "listen_addresses": "127.0.0.1", "fsync": "off", "server_encoding": "UTF8", "lc_collate": "C",
        "unix_socket_directories": str(postgres_peer.socket_dir),
    }


def test_sqlalchemy_round_trip(postgres_url: str) -> None:
    engine = sa.create_engine(postgres_url)
    try:
        metadata = sa.MetaData()
        items = sa.Table("items", metadata,
                         sa.Column("id", sa.Integer, primary_key=True),
                         sa.Column("name", sa.String(100), nullable=False),
                         sa.Column("data", sa.JSON))
        with engine.begin() as conn:
            assert conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg"
            metadata.create_all(conn)
            conn.execute(items.insert(), [{"name": name, "data": {"n": i}}
                                          for i, name in enumerate(["b", "Ä", "a", "B"])])
        with engine.connect() as conn:
            rows = conn.execute(sa.select(items.c.name, items.c.data).order_by(items.c.name)).all()
        # C collation: byte order, like SQLite's default BINARY collation.
        assert rows == [("B", {"n": 3}), ("a", {"n": 2}), ("b", {"n": 0}), ("Ä", {"n": 1})]
    finally:
        engine.dispose()


def test_fresh_databases_are_empty_and_isolated(postgres_peer: PostgresPeer, postgres_url: str) -> None:
    other_url = postgres_peer.new_database("isolation_other")
    first, other = sa.create_engine(postgres_url), sa.create_engine(other_url)
    try:
        assert postgres_url != other_url
        assert sa.inspect(first).get_table_names() == []
        with first.begin() as conn:
            conn.execute(sa.text("CREATE TABLE only_here (x int)"))
            conn.execute(sa.text("INSERT INTO only_here VALUES (1)"))
        assert sa.inspect(first).get_table_names() == ["only_here"]
        assert sa.inspect(other).get_table_names() == []
    finally:
        first.dispose()
        other.dispose()
        postgres_peer.drop_database("isolation_other")


def test_new_database_rejects_odd_names(postgres_peer: PostgresPeer) -> None:
    for name in ("", "Upper", "semi;colon", "x" * 64, "1abc"):
        with pytest.raises(ValueError):
            postgres_peer.new_database(name)


def test_standalone_start_and_stop() -> None:
    if not postgres_available():
        pytest.skip("PostgreSQL server binaries not found (Debian package postgresql; ./test.sh installs it)")
    peer = start_postgres("pgpeer-selftest")
    with peer:
        engine = sa.create_engine(peer.url)
        try:
            with engine.connect() as conn:
                assert conn.execute(sa.text("SELECT current_database()")).scalar_one() == "peer"
        finally:
            engine.dispose()
    assert not peer.running()
    assert not peer.base_dir.exists()
    peer.stop()  # idempotent
