"""Session-scoped pytest fixtures for the AD-shaped slapd peer.

Use from a conftest (or a test module)::

    from tests.peers.fixtures import slapd_bulk, slapd_standard  # noqa: F401  (fixtures)

``slapd_standard`` serves ``ad_tree.standard_fleet()`` (20 servers, see that function for the
facts each one carries); ``slapd_bulk`` serves ``ad_tree.bulk_fleet(5000)`` (15000 entries of
class msExchExchangeServer including the transport sub-objects). Each runs in its own temp dir
and is stopped at the end of the session. Without slapd on the machine they skip (developer
machines only: ./test.sh installs slapd and ldap-utils, and in CI a skip fails the run).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.peers.ad_tree import BULK_STANDARD_SIZE, ad_ldif, bulk_fleet, standard_fleet
from tests.peers.slapd import SlapdPeer, slapd_available, start_slapd


def require_slapd() -> None:
    if not slapd_available():
        pytest.skip("slapd/slapadd not installed (Debian packages slapd and ldap-utils; ./test.sh installs them)")


@pytest.fixture(scope="session")
def slapd_standard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlapdPeer]:
    require_slapd()
    peer = start_slapd(tmp_path_factory.mktemp("slapd-standard"), ad_ldif(standard_fleet()))
    yield peer
    peer.stop()


@pytest.fixture(scope="session")
def slapd_bulk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlapdPeer]:
    require_slapd()
    peer = start_slapd(tmp_path_factory.mktemp("slapd-bulk"), ad_ldif(bulk_fleet(BULK_STANDARD_SIZE)))
    yield peer
    peer.stop()
