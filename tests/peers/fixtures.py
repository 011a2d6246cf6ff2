"""Session-scoped pytest fixtures for the AD-shaped slapd peer.

Use from a conftest (or a test module)::

    from tests.peers.fixtures import slapd_bulk, slapd_standard  # noqa: F401  (pytest fixtures)

or, once for the whole suite, ``pytest_plugins = ["tests.peers.fixtures"]`` in tests/conftest.py.

``slapd_standard`` serves ``ad_tree.standard_fleet()`` (20 servers, see that function for the
facts each one carries); ``slapd_bulk`` serves ``ad_tree.bulk_fleet(5000)`` (15000 entries of
class msExchExchangeServer including the transport sub-objects). ``slapd_kerberos`` serves the
standard fleet and also accepts SASL GSSAPI from the session's realm (``kdc_peer``): bind as
``peer.service_principal`` to ``peer.kerberos_ldaps_url`` (tests/peers/slapd.py);
``slapd_kerberos_skewed`` is the same with slapd's clock an hour ahead (``SKEW_SECONDS``), a DC
whose clock drifted. Each runs in its own temp dir
and is stopped when the session ends. The same peer is shared by every conftest that imports
these fixtures (importing them in two conftests registers them twice; tests/peers/shared.py keeps it
at one slapd per fleet per session). Without slapd on the machine they skip (developer machines
only: ./test.sh installs slapd and ldap-utils, and in CI a skip fails the run).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.peers.ad_tree import BULK_STANDARD_SIZE, ad_ldif, bulk_fleet, standard_fleet
from tests.peers.kdc import KdcPeer
from tests.peers.shared import session_peer
from tests.peers.slapd import SlapdPeer, slapd_available, start_slapd

# Far beyond the 5 minutes Kerberos allows.
SKEW_SECONDS = 3600


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


@pytest.fixture(scope="session")
def slapd_kerberos(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                   kdc_peer: KdcPeer) -> SlapdPeer:
    require_slapd()
    return session_peer(request, "slapd-kerberos", lambda: start_slapd(
        tmp_path_factory.mktemp("slapd-kerberos"), ad_ldif(standard_fleet()), kerberos=kdc_peer),
        alive=lambda peer: peer.process.poll() is None)


@pytest.fixture(scope="session")
def slapd_kerberos_skewed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                          kdc_peer: KdcPeer) -> SlapdPeer:
    require_slapd()
    return session_peer(request, "slapd-kerberos-skewed", lambda: start_slapd(
        tmp_path_factory.mktemp("slapd-kerberos-skewed"), ad_ldif(standard_fleet()[:1]),
        kerberos=kdc_peer, clock_offset=SKEW_SECONDS), alive=lambda peer: peer.process.poll() is None)
