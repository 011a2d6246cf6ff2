"""Transport security: TLS 1.2 or later, validated certificates, for LDAP and for WinRM.

The server here completes TLS handshakes (old versions too) and records what each client
negotiated and sent after it: a refused session must end before any request, so before a
credential, crosses it.
"""

from __future__ import annotations

import socket
import ssl
import warnings
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from collectors.directory import DirectoryConfig, DirectoryError, _require_modern_tls, open_connection
from collectors.remote import Target, WinrmConfig, probe_host
from compliance.models import Host
from tests.peers.tls import TlsFiles, TlsOnlyServer, make_tls_files

PASSWORD = "Transport-Test-Pass-1"
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    TLS_1_1 = ssl.TLSVersion.TLSv1_1


@pytest.fixture
def loopback_tls(tmp_path) -> TlsFiles:
    return make_tls_files(tmp_path / "tls")


@pytest.fixture
def elsewhere_tls(tmp_path) -> TlsFiles:
    """A certificate from the trusted CA, but for another host than the one dialled."""
    return make_tls_files(tmp_path / "elsewhere", names=("dc9.elsewhere.example",), ips=())


def _ldap(files: TlsFiles) -> DirectoryConfig:
    return DirectoryConfig(servers=(), bind_user="CN=svc,DC=test,DC=example",
                           ca_file=str(files.ca_file), connect_timeout=3.0, timeout=5.0)


def _winrm(files: TlsFiles) -> WinrmConfig:
    return WinrmConfig(username="TEST\\svc-probe", ca_file=str(files.ca_file),
                       deadline_seconds=10, read_timeout_seconds=3, retries=0)


# Forward secret but CBC with SHA-1: OpenSSL's DEFAULT list takes it, Python's default does not.
WEAK_CIPHER = "ECDHE-ECDSA-AES128-SHA"


def _serve(files: TlsFiles, maximum: ssl.TLSVersion | None = None,
           ciphers: str | None = None) -> TlsOnlyServer:
    return TlsOnlyServer(files, maximum_version=maximum, ciphers=ciphers)


def _old_client_handshake(files: TlsFiles, port: int) -> str:
    """What a lax client negotiates with the server: proves the server really speaks that."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(files.ca_file)
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    with context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                             server_hostname="127.0.0.1") as wrapped:
        return f"{wrapped.version()} {wrapped.cipher()[0]}"


def _wait_outcomes(server: TlsOnlyServer, count: int) -> list[str]:
    server.close()  # joins the server thread: every connection so far is recorded
    assert len(server.outcomes) == count, server.outcomes
    return server.outcomes


def test_ldap_sends_its_bind_over_a_modern_tls_session(loopback_tls):
    """The control for the refusals below: a good server gets the bind request."""
    server = _serve(loopback_tls)
    try:
        with pytest.raises(DirectoryError):  # the server speaks no LDAP; the bind fails
            open_connection(_ldap(loopback_tls), f"ldaps://127.0.0.1:{server.port}", PASSWORD)
    finally:
        outcomes = _wait_outcomes(server, 1)
    version, _, sent = outcomes[0].partition(" +")
    assert version in ("TLSv1.2", "TLSv1.3") and sent != "0 bytes"


def test_ldap_refuses_a_server_that_only_speaks_tls_1_1(loopback_tls):
    server = _serve(loopback_tls, TLS_1_1)
    url = f"ldaps://127.0.0.1:{server.port}"
    try:
        assert _old_client_handshake(loopback_tls, server.port).startswith("TLSv1.1 ")
        with pytest.raises(DirectoryError) as caught:
            open_connection(_ldap(loopback_tls), url, PASSWORD)
    finally:
        outcomes = _wait_outcomes(server, 2)
    assert caught.value.server == url and caught.value.operation == "TLS handshake"
    assert "TLS 1.2 or later" in str(caught.value)
    assert outcomes[1].startswith("failed:")  # no session, so no bind was ever sent


def test_ldap_refuses_a_server_that_only_offers_a_weak_cipher(loopback_tls):
    server = _serve(loopback_tls, ciphers=WEAK_CIPHER)
    try:
        assert _old_client_handshake(loopback_tls, server.port) == f"TLSv1.2 {WEAK_CIPHER}"
        with pytest.raises(DirectoryError) as caught:
            open_connection(_ldap(loopback_tls), f"ldaps://127.0.0.1:{server.port}", PASSWORD)
    finally:
        outcomes = _wait_outcomes(server, 2)
    assert caught.value.operation == "TLS handshake"
    assert outcomes[1].startswith("failed:")


def test_ldap_refuses_a_certificate_for_another_host(elsewhere_tls):
    server = _serve(elsewhere_tls)
    try:
        with pytest.raises(DirectoryError) as caught:
            open_connection(_ldap(elsewhere_tls), f"ldaps://127.0.0.1:{server.port}", PASSWORD)
    finally:
        outcomes = _wait_outcomes(server, 1)
    assert caught.value.operation == "TLS handshake"
    # ldap3 checks the name after the handshake: it must hang up before sending the bind.
    assert outcomes[0].endswith("+0 bytes") or outcomes[0].startswith("failed:"), outcomes


def _session(version: str | None) -> Any:
    return SimpleNamespace(socket=SimpleNamespace(version=lambda: version))


@pytest.mark.parametrize("version", ["TLSv1", "TLSv1.1", "SSLv3", None])
def test_a_session_below_tls_1_2_is_refused_before_the_bind(version):
    """Even where the system's OpenSSL policy would let an old handshake through."""
    with pytest.raises(DirectoryError, match=r"minimum TLS 1\.2"):
        _require_modern_tls(_session(version), "ldaps://dc.test.example")


@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
def test_tls_1_2_and_1_3_sessions_are_accepted(version):
    _require_modern_tls(_session(version), "ldaps://dc.test.example")


def _probe(files: TlsFiles, port: int):
    host = Host("EX-TLS")
    return probe_host(Target(host, f"https://127.0.0.1:{port}/wsman"), _winrm(files), PASSWORD,
                      now=lambda: datetime(2026, 11, 25, tzinfo=UTC))


def test_winrm_refuses_a_server_that_only_speaks_tls_1_1(loopback_tls):
    server = _serve(loopback_tls, TLS_1_1)
    try:
        assert _old_client_handshake(loopback_tls, server.port).startswith("TLSv1.1 ")
        observation = _probe(loopback_tls, server.port)
    finally:
        outcomes = _wait_outcomes(server, 2)
    assert observation.failure is not None and observation.failure.reason == "tls"
    assert outcomes[1].startswith("failed:")
    assert PASSWORD not in observation.failure.detail


def test_winrm_refuses_a_server_that_only_offers_a_weak_cipher(loopback_tls):
    server = _serve(loopback_tls, ciphers=WEAK_CIPHER)
    try:
        assert _old_client_handshake(loopback_tls, server.port) == f"TLSv1.2 {WEAK_CIPHER}"
        observation = _probe(loopback_tls, server.port)
    finally:
        outcomes = _wait_outcomes(server, 2)
    assert observation.failure is not None and observation.failure.reason == "tls"
    assert outcomes[1].startswith("failed:")


def test_winrm_refuses_a_certificate_for_another_host(elsewhere_tls):
    server = _serve(elsewhere_tls)
    try:
        observation = _probe(elsewhere_tls, server.port)
    finally:
        outcomes = _wait_outcomes(server, 1)
    assert observation.failure is not None and observation.failure.reason == "tls"
    assert outcomes[0].startswith("failed:") or outcomes[0].endswith("+0 bytes"), outcomes


def test_winrm_sends_its_request_over_a_modern_tls_session(loopback_tls):
    server = _serve(loopback_tls)
    try:
        observation = _probe(loopback_tls, server.port)
    finally:
        outcomes = _wait_outcomes(server, 1)
    assert observation.failure is not None and observation.failure.reason != "tls"
    version, _, sent = outcomes[0].partition(" +")
    assert version in ("TLSv1.2", "TLSv1.3") and sent != "0 bytes"
