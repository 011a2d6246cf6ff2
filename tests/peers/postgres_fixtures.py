"""pytest fixtures for the throwaway PostgreSQL peer (tests/peers/postgres.py).

Registered for the whole suite by ``pytest_plugins`` in tests/conftest.py.

``postgres_peer`` (session): one cluster per test session (per xdist worker), started on first
use (~0.7 s: initdb plus start-up) and stopped, its temp dir removed, when the session ends.
``postgres_url`` (function): the ``postgresql+psycopg://`` URL of a FRESH, empty database
``t_<n>`` made for this test only (CREATE DATABASE, ~50 ms), dropped WITH (FORCE) after the test,
so store tests never see each other's data. Dispose your engines in the test or in a fixture that
depends on ``postgres_url`` (it is torn down first); the drop disconnects any left over.

Without the PostgreSQL server binaries both skip (developer machines only: ./test.sh installs the
Debian package postgresql, and in CI a skip fails the run).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator

import pytest

from tests.peers.postgres import PostgresPeer, postgres_available, start_postgres
from tests.peers.shared import session_peer

_COUNTER = itertools.count(1)


def require_postgres() -> None:
    if not postgres_available():
        pytest.skip("PostgreSQL server binaries not found (initdb/postgres/pg_ctl under /usr/lib/postgresql/*/bin; "
                    "Debian package postgresql, ./test.sh installs it)")


@pytest.fixture(scope="session")
def postgres_peer(request: pytest.FixtureRequest) -> PostgresPeer:
    require_postgres()
    return session_peer(request, "postgres", lambda: start_postgres("pgpeer"),
                        alive=lambda peer: peer.running())


@pytest.fixture
def postgres_url(postgres_peer: PostgresPeer) -> Iterator[str]:
    """URL of a fresh empty database for this test only."""
    import psycopg

    name = f"t_{next(_COUNTER)}"
    url = postgres_peer.new_database(name)
    yield url
    with contextlib.suppress(psycopg.Error):  # best effort: the whole cluster goes at the end of the session
        postgres_peer.drop_database(name)
