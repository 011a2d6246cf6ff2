"""Session-scoped pytest fixture for the WS-Management (WinRM) peer (tests/peers/wsman.py).

Registered for the whole suite by ``pytest_plugins = [..., "tests.peers.wsman_fixtures"]`` in
tests/conftest.py. ``wsman_peer`` runs in this process (threads), in a temp dir from
``tmp_path_factory``, and stops when the session ends. It is shared by every test: give each test
its own host names (``peer.set_host("t-<test>-ex01", HostBehavior(...))``), and restore
``peer.expected_script`` if a test sets it. Nothing to install: only the standard library, pyspnego
and cryptography, so it never skips.
"""

from __future__ import annotations

import pytest

from tests.peers.shared import session_peer
from tests.peers.wsman import WsmanPeer, start_wsman


@pytest.fixture(scope="session")
def wsman_peer(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> WsmanPeer:
    return session_peer(request, "wsman", lambda: start_wsman(tmp_path_factory.mktemp("wsman")))
