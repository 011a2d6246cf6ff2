"""Session-scoped pytest fixtures for the AD-shaped slapd peer.

Use from a conftest (or a test module)::

    from tests.peers.fixtures import slapd_bulk, slapd_standard  # noqa: F401  (pytest fixtures)

or, once for the whole suite, ``pytest_plugins = ["tests.peers.fixtures"]`` in tests/conftest.py.

``slapd_standard`` serves ``ad_tree.standard_fleet()`` (20 servers, see that function for the
facts each one carries); ``slapd_bulk`` serves ``ad_tree.bulk_fleet(5000)`` (15000 entries of
class msExchExchangeServer including the transport sub-objects). Each runs in its own temp dir
and is stopped when the session ends. The same peer is shared by every conftest that imports
these fixtures (importing them in two conftests registers them twice; tests/peers/shared.py keeps it
at one slapd per fleet per session). Without slapd on the machine they skip (developer machines
only: ./test.sh installs slapd and ldap-utils, and in CI a skip fails the run).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.peers.ad_tree import BULK_STANDARD_SIZE, ad_ldif, bulk_fleet, standard_fleet
from tests.peers.shared import session_peer
from tests.peers.slapd import SlapdPeer, slapd_available, start_slapd


def require_slapd() -> None:
    if not slapd_available():
        pytest.skip("slapd/slapadd not installed (Debian packages slapd and ldap-utils; ./test.sh installs them)")


def _shared_peer(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, name: str,
                 make_ldif: Callable[[], str]) -> SlapdPeer:
    require_slapd()
    return session_peer(request, name, lambda: start_slapd(tmp_path_factory.mktemp(name), make_ldif()),
                        alive=lambda peer: peer.process.poll() is None)


@pytest.fixture(scope="session")
def slapd_standard(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> SlapdPeer:
    return _shared_peer(request, tmp_path_factory, "slapd-standard", lambda: ad_ldif(standard_fleet()))


@pytest.fixture(scope="session")
def slapd_bulk(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> SlapdPeer:
    return _shared_peer(request, tmp_path_factory, "slapd-bulk", lambda: ad_ldif(bulk_fleet(BULK_STANDARD_SIZE)))
