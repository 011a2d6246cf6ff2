"""Self-tests: the WS-Management peer's Kerberos (tests/peers/wsman.py) against the real pywinrm client.

pywinrm's Kerberos transport (pykerberos) takes its ticket from the default credential cache and its
realm from krb5.conf: each test points ``KRB5CCNAME`` at a cache of its own and ``KRB5_CONFIG`` at the
session KDC's (tests/peers/kdc.py) with ``monkeypatch.setenv``. Hosts are reached as ``localhost``:
the client asks for ``HTTP/localhost@PROBE.TEST``, the principal in the peer's keytab.
"""

from __future__ import annotations

import base64
import email.utils
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from winrm.exceptions import InvalidCredentialsError
from winrm.protocol import Protocol

from collectors.remote import krb_error
from tests.peers.kdc import KdcPeer
from tests.peers.wsman import HostBehavior, WsmanPeer, start_wsman
from tests.peers.wsman_fixtures import client_ticket, ensure_principal, kerberos_peer_process

pytestmark = pytest.mark.integration

gssapi = pytest.importorskip("gssapi", reason="gssapi not installed (pip install -r requirements-kerberos.txt)")
pytest.importorskip("kerberos", reason="pykerberos not installed (pip install -r requirements-kerberos.txt)")


@pytest.fixture
def ticket(kdc_peer: KdcPeer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """This test's client principal, its TGT in the default cache (a file of this test's own)."""
    for key, value in kdc_peer.env().items():
        monkeypatch.setenv(key, value)
    principal, ccache = client_ticket(kdc_peer, tmp_path, "t-peer-client")
    monkeypatch.setenv("KRB5CCNAME", ccache)
    return principal


def unique(name: str) -> str:
    return f"{name}-{time.monotonic_ns()}"


def protocol(url: str, ca_file: Path | str, **kwargs: Any) -> Protocol:
    """pywinrm's Protocol with Kerberos (it keeps the per-host path of ``url``)."""
    kwargs.setdefault("message_encryption", "auto")
    return Protocol(url, transport="kerberos", server_cert_validation="validate", ca_trust_path=str(ca_file),
                    read_timeout_sec=5, operation_timeout_sec=3, **kwargs)


def run(client: Protocol, command: str = "ipconfig") -> tuple[bytes, bytes, int]:
    shell = client.open_shell()
    try:
        command_id = client.run_command(shell, command)
        return client.get_command_output(shell, command_id)
    finally:
        client.close_shell(shell)


def gss_token(spn: str) -> tuple[Any, str]:
    """A client context for ``spn`` (``HTTP@localhost``) and its first token, as requests-kerberos makes it."""
    name = gssapi.Name(spn, gssapi.NameType.hostbased_service)
    context = gssapi.SecurityContext(name=name, usage="initiate",
                                     flags=gssapi.RequirementFlag.mutual_authentication)
    return context, base64.b64encode(context.step()).decode("ascii")


# ---- the ways in


@pytest.mark.parametrize(("scheme", "encryption"), [
    pytest.param("http", "always", id="http-message-encryption"),
    pytest.param("https", "auto", id="https-tls-only"),
    pytest.param("https", "always", id="https-and-message-encryption"),
])
def test_pywinrm_kerberos_runs_a_command(wsman_kerberos_peer: WsmanPeer, ticket: str, scheme: str,
                                         encryption: str) -> None:
    host = unique(f"k-{scheme}-{encryption}")
    wsman_kerberos_peer.set_host(host, HostBehavior(stdout="build 15.1.2176.9", exit_code=0))
    client = protocol(wsman_kerberos_peer.url(host, scheme=scheme, hostname="localhost"),
                      wsman_kerberos_peer.ca_file, username=ticket, message_encryption=encryption)

    assert run(client) == (b"build 15.1.2176.9", b"", 0)
    assert wsman_kerberos_peer.requests(host) == ["Create", "Command", "Receive", "Delete"]
    assert wsman_kerberos_peer.errors() == []


def test_an_unencrypted_body_over_http_is_refused_even_with_kerberos(wsman_kerberos_peer: WsmanPeer,
                                                                     ticket: str) -> None:
    # AllowUnencrypted=false, as Windows: Kerberos authenticates, but the body must be sealed.
    host = unique("k-http-plain")
    wsman_kerberos_peer.set_host(host, HostBehavior(stdout="x"))
    client = protocol(wsman_kerberos_peer.url(host, scheme="http", hostname="localhost"),
                      wsman_kerberos_peer.ca_file, username=ticket, message_encryption="never")
    with pytest.raises(InvalidCredentialsError):
        client.open_shell()
    assert wsman_kerberos_peer.requests(host) == []


def test_the_answer_that_completes_kerberos_carries_the_mutual_token(wsman_kerberos_peer: WsmanPeer,
                                                                     ticket: str) -> None:
    context, token = gss_token("HTTP@localhost")
    answer = requests.post(wsman_kerberos_peer.url(scheme="http", hostname="localhost"),
                           headers={"Authorization": f"Negotiate {token}"}, timeout=10)
    assert answer.status_code == 200
    scheme, _, mutual = answer.headers["WWW-Authenticate"].partition(" ")
    assert scheme == "Negotiate"
    context.step(base64.b64decode(mutual))  # the AP-REP: the client now knows the server holds the key
    assert context.complete


def test_a_hostname_override_names_another_spn(wsman_kerberos_peer: WsmanPeer, ticket: str) -> None:
    # Connected as 127.0.0.1, the client would ask for HTTP/127.0.0.1; the override asks for HTTP/localhost.
    host = unique("k-override")
    wsman_kerberos_peer.set_host(host, HostBehavior(stdout="ok"))
    client = protocol(wsman_kerberos_peer.url(host), wsman_kerberos_peer.ca_file, username=ticket,
                      kerberos_hostname_override="localhost")
    assert run(client)[0] == b"ok"


# ---- refusals


def test_ntlm_is_refused_when_disabled(wsman_kerberos_peer: WsmanPeer) -> None:
    host = unique("k-ntlm")
    wsman_kerberos_peer.set_host(host, HostBehavior(stdout="x"))
    before = len(wsman_kerberos_peer.auth_failures())
    client = Protocol(wsman_kerberos_peer.url(host), transport="ntlm", username=wsman_kerberos_peer.username,
                      password=wsman_kerberos_peer.password, ca_trust_path=str(wsman_kerberos_peer.ca_file),
                      read_timeout_sec=5, operation_timeout_sec=3)
    # requests-ntlm gets no NTLM challenge back: it says so with a PermissionError.
    with pytest.raises(PermissionError, match="NTLM challenge"):
        client.open_shell()
    assert wsman_kerberos_peer.requests(host) == []
    assert wsman_kerberos_peer.auth_failures()[before:] == ["NTLM is disabled on this peer"]


def test_ntlm_inside_negotiate_is_refused_too(wsman_kerberos_peer: WsmanPeer) -> None:
    import spnego

    client = spnego.client("TEST\\svc-probe", "x", protocol="ntlm")
    answer = requests.post(wsman_kerberos_peer.url(scheme="http", hostname="localhost"), timeout=10,
                           headers={"Authorization": "Negotiate " + base64.b64encode(client.step() or b"").decode()})
    assert answer.status_code == 401


def test_a_ticket_for_a_changed_key_is_answered_with_a_krb_error(kdc_peer: KdcPeer, tmp_path: Path,
                                                                 ticket: str) -> None:
    # The service's key changed at the KDC (an account reset) after its keytab was written: the
    # ticket is encrypted with kvno 2, the keytab holds kvno 1.
    service = ensure_principal(kdc_peer, "HTTP/t-peer-wrongkey.localhost")
    keytab = kdc_peer.keytab(service, tmp_path / "old.keytab")
    kdc_peer.change_key(service)
    with start_wsman(tmp_path / "peer", keytab=keytab, allow_ntlm=False) as peer:
        peer.set_host("ex", HostBehavior(stdout="x"))
        client = protocol(peer.url("ex", hostname="localhost"), peer.ca_file, username=ticket,
                          kerberos_hostname_override="t-peer-wrongkey.localhost")
        with pytest.raises(InvalidCredentialsError):
            client.open_shell()
        _context, token = gss_token("HTTP@t-peer-wrongkey.localhost")
        answer = requests.post(peer.url(scheme="http", hostname="localhost"), timeout=10,
                               headers={"Authorization": f"Negotiate {token}"})
        failures = peer.auth_failures()
    assert answer.status_code == 401
    error = krb_error(base64.b64decode(answer.headers["WWW-Authenticate"].partition(" ")[2]))
    assert error is not None and error.code == 44  # KRB_AP_ERR_BADKEYVER
    assert failures and all("kvno 2 not found in keytab" in failure for failure in failures)
    assert peer.requests("ex") == []


# ---- a host whose clock is off (the peer in its own process, under libfaketime)


def test_a_peer_3600_s_behind_refuses_the_ticket_and_says_its_time(kdc_peer: KdcPeer, tmp_path: Path,
                                                                   wsman_kerberos_peer: WsmanPeer,
                                                                   ticket: str) -> None:
    assert wsman_kerberos_peer.keytab is not None
    with kerberos_peer_process(kdc_peer, wsman_kerberos_peer.keytab, tmp_path / "skewed",
                               {"ex": {"stdout": "x"}}, clock_offset=-3600) as ready:
        assert ready["clock"] - time.time() == pytest.approx(-3600, abs=60)
        url = f"http://localhost:{ready['http_port']}/wsman/ex"
        client = protocol(url, ready["ca_file"], username=ticket, message_encryption="always")
        with pytest.raises(InvalidCredentialsError):
            client.open_shell()
        _context, token = gss_token("HTTP@localhost")
        answer = requests.post(url, headers={"Authorization": f"Negotiate {token}"}, timeout=10)
    assert answer.status_code == 401
    theirs = email.utils.parsedate_to_datetime(answer.headers["Date"])
    assert (theirs - datetime.now(UTC)).total_seconds() == pytest.approx(-3600, abs=60)
    error = krb_error(base64.b64decode(answer.headers["WWW-Authenticate"].partition(" ")[2]))
    assert error is not None and error.code in (33, 37)  # ticket not yet valid / clock skew too great
    assert error.stime is not None and (error.stime - datetime.now(UTC)).total_seconds() == pytest.approx(
        -3600, abs=60)


def test_a_peer_120_s_behind_is_within_kerberos_tolerance(kdc_peer: KdcPeer, tmp_path: Path,
                                                          wsman_kerberos_peer: WsmanPeer, ticket: str) -> None:
    assert wsman_kerberos_peer.keytab is not None
    with kerberos_peer_process(kdc_peer, wsman_kerberos_peer.keytab, tmp_path / "skewed",
                               {"ex": {"stdout": "in step"}}, clock_offset=-120) as ready:
        client = protocol(f"https://localhost:{ready['https_port']}/wsman/ex", ready["ca_file"], username=ticket)
        assert run(client)[0] == b"in step"
