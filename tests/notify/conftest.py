"""The notification peers on loopback, for the modules under tests/notify: a throwaway CA,
an aiosmtpd server with STARTTLS and AUTH for the module's ``USER``/``PASSWORD``, and an
HTTPS webhook receiver."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.peers.smtp import SmtpPeer
from tests.peers.tls import TlsFiles, make_tls_files
from tests.peers.webhook import WebhookPeer


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("notify-tls"))


@pytest.fixture
def smtp(request: pytest.FixtureRequest, tls: TlsFiles) -> Iterator[SmtpPeer]:
    peer = SmtpPeer(tls, username=request.module.USER, password=request.module.PASSWORD)
    yield peer
    peer.close()


@pytest.fixture
def webhook(tls: TlsFiles) -> Iterator[WebhookPeer]:
    peer = WebhookPeer(tls)
    yield peer
    peer.close()
