"""Session-scoped pytest fixture for the MIT Kerberos KDC peer (tests/peers/kdc.py).

Registered for the whole suite by ``pytest_plugins`` in tests/conftest.py. ``kdc_peer`` is one
realm (``PROBE.TEST``) for the session, in a temp dir from ``tmp_path_factory``; tests add their
own principals with names of their own (``kdc_peer.add_principal("t-<test>-svc")``), never
change another test's. Without krb5kdc on the machine it skips (developer machines only:
./test.sh installs the packages, and in CI a skip fails the run).
"""

from __future__ import annotations

import pytest

from tests.peers.kdc import PACKAGES, KdcPeer, kdc_available, start_kdc
from tests.peers.shared import session_peer


def require_kdc() -> None:
    if not kdc_available():
        pytest.skip(f"MIT Kerberos KDC not installed (Debian packages {' '.join(PACKAGES)}; "
                    "./test.sh installs them)")


@pytest.fixture(scope="session")
def kdc_peer(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> KdcPeer:
    require_kdc()
    return session_peer(request, "kdc", lambda: start_kdc(tmp_path_factory.mktemp("kdc")),
                        alive=lambda peer: peer.process.poll() is None)
