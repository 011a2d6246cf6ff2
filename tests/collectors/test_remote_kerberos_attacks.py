"""Attacks on the Kerberos transport (issue 20's fresh review): each test asserts the behaviour
README's "Kerberos only" and SECURITY.md claim, and failed before its fix.

Boundaries: a server that refuses the ticket with a KRB-ERROR whose free text says "Server not
found in Kerberos database" (a reason that would allow ntlm_fallback); a server whose own key is
stale (not the collector's keytab); a man in the middle over plain HTTP replacing the sealed
Receive answer with a clear one; the environment when activate cannot start.
"""
from __future__ import annotations

import base64
import http.client
import os
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from collectors.kerberos import Ticket, activate
from tests.collectors import test_remote_kerberos as _remote
from tests.collectors.documents import dumps, probe_document
from tests.peers.wsman import HostBehavior, start_wsman
from tests.peers.wsman_fixtures import ensure_principal

pytestmark = pytest.mark.integration
# The Kerberos probe's helpers and fixtures (a principal with a ticket, the realm's environment).
_config, _probe = _remote._config, _remote._probe
krb5_env, principal = _remote.krb5_env, _remote.principal


def _der(tag: int, body: bytes) -> bytes:
    n = len(body)
    return bytes([tag]) + (bytes([n]) if n < 128 else bytes([0x81, n])) + body


def _krb_error(etext: str, code: int = 60) -> bytes:
    return _der(0x7E, _der(0x30, _der(0xA6, _der(0x02, bytes([code])))
                           + _der(0xAB, _der(0x1B, etext.encode()))))


@pytest.fixture
def hostile() -> tuple[str, list[str]]:
    """A server on loopback answering every request 401 + a KRB-ERROR whose e-text it chooses."""
    seen: list[str] = []
    token = base64.b64encode(_krb_error("Server not found in Kerberos database")).decode()

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_a: object) -> None: ...

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append(self.headers.get("Authorization", ""))
            self.send_response(401)
            self.send_header("WWW-Authenticate", f"Negotiate {token}")
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://localhost:{server.server_address[1]}/wsman", seen
    server.shutdown()


def test_a_server_that_refused_the_ticket_cannot_talk_the_collector_into_ntlm(wsman_kerberos_peer, principal, hostile):
    url, seen = hostile
    obs = _probe(url, _config(principal, "", scheme="http", allow_http=True, ntlm_fallback=True), "EX",
                 password="Collector-Pw-1")
    assert seen and seen[0].startswith("Negotiate ")  # a service ticket WAS had and sent
    assert not any("TlRMTVNTUA" in auth for auth in seen), (obs.failure, seen)  # NTLMSSP
    assert obs.failure is not None and obs.failure.reason == "auth"
    assert "spn_not_found" not in obs.failure.detail  # only the KRB-ERROR code is read


def test_a_server_refusal_is_not_reported_as_the_collectors_keytab(principal, krb5_env, tmp_path):
    service = ensure_principal(krb5_env, "HTTP/t-rv-stale.localhost")
    keytab = krb5_env.keytab(service, tmp_path / "old.keytab")
    krb5_env.change_key(service)
    with start_wsman(tmp_path / "peer", keytab=keytab) as peer:
        peer.set_host("EX", HostBehavior(stdout="{}"))
        obs = _probe(peer.url("EX", hostname="localhost"),
                     _config(principal, peer.ca_file, spn_hostname="t-rv-stale.localhost"), "EX")
    assert obs.failure is not None
    assert "ktpass" not in obs.failure.hint, obs.failure.hint
    assert "service_key" in obs.failure.detail


def test_over_plain_http_an_unsealed_answer_is_refused(principal, krb5_env, tmp_path, wsman_kerberos_peer):
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    peer = wsman_kerberos_peer
    peer.set_host("T-RV-MITM", HostBehavior(stdout=dumps(probe_document("T-RV-MITM", "15.2.792.3", collected_at=now))))
    forged = dumps(probe_document("T-RV-MITM", "15.2.1118.7", collected_at=now, kbs=["KB5000871"])).encode()
    forged_soap = (
        '<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" '
        'xmlns:rsp="http://schemas.microsoft.com/wbem/wsman/1/windows/shell"><s:Header/><s:Body>'
        f'<rsp:ReceiveResponse><rsp:Stream Name="stdout" CommandId="x">{base64.b64encode(forged).decode()}'
        '</rsp:Stream><rsp:CommandState CommandId="x" State="http://schemas.microsoft.com/wbem/wsman/1/'
        'windows/shell/CommandState/Done"><rsp:ExitCode>0</rsp:ExitCode></rsp:CommandState>'
        '</rsp:ReceiveResponse></s:Body></s:Envelope>').encode()
    oks = [0]

    class Mitm(BaseHTTPRequestHandler):  # passes through, but swaps the Receive answer for plaintext
        protocol_version = "HTTP/1.1"

        def log_message(self, *_a: object) -> None: ...

        def do_POST(self) -> None:
            if not hasattr(self, "up"):
                self.up = http.client.HTTPConnection("127.0.0.1", peer.http_port)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.up.request("POST", self.path, body=body, headers={
                k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")})
            answer = self.up.getresponse()
            data, headers = answer.read(), [(k, v) for k, v in answer.getheaders() if k.lower() not in (
                "content-length", "connection", "date", "server")]
            if answer.status == 200:
                oks[0] += 1
                if oks[0] == 5:  # the auth exchange, Create, Command, Send, then Receive
                    data = forged_soap
                    headers = [(k, v) for k, v in headers if k.lower() != "content-type"]
                    headers.append(("Content-Type", "application/soap+xml;charset=UTF-8"))
            self.send_response(answer.status)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    mitm = ThreadingHTTPServer(("127.0.0.1", 0), Mitm)
    threading.Thread(target=mitm.serve_forever, daemon=True).start()
    try:
        obs = _probe(f"http://localhost:{mitm.server_address[1]}/wsman/T-RV-MITM",
                     _config(principal, peer.ca_file, scheme="http", allow_http=True), "T-RV-MITM")
    finally:
        mitm.shutdown()
    assert oks[0] >= 5
    assert obs.exsetup_version != "15.2.1118.7", "a forged, unsealed answer was graded"
    assert obs.failure is not None and "in clear" in obs.failure.detail


def test_activate_leaves_no_credential_cache_behind_when_it_cannot_start(monkeypatch):
    monkeypatch.delenv("KRB5CCNAME", raising=False)
    monkeypatch.setattr(Path, "write_text", lambda *a, **k: (_ for _ in ()).throw(OSError(28, "disk full")))
    with pytest.raises(OSError), activate(Ticket("svc@R", "MEMORY:exprobe-x", 100, True)):
        pass
    assert "KRB5CCNAME" not in os.environ



_CT = {
    "bare": "multipart/encrypted",
    "kerberos_protocol": ('multipart/encrypted;protocol="application/HTTP-Kerberos-session-'
                          'encrypted";boundary="Encrypted Boundary"'),
    "garbage_sealed": ('multipart/encrypted;protocol="application/HTTP-SPNEGO-session-'
                       'encrypted";boundary="Encrypted Boundary"'),
}


@pytest.mark.parametrize("variant", list(_CT))
def test_over_plain_http_an_answer_not_sealed_by_the_session_protocol_is_refused(
        principal, krb5_env, tmp_path, wsman_kerberos_peer, variant):
    """Re-check finding: a bare "multipart/encrypted" (or another protocol's) Content-Type
    over a clear body passed the first fix, and pywinrm handed the body on as it was."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    peer = wsman_kerberos_peer
    peer.set_host("T-RV-MITM2", HostBehavior(stdout=dumps(probe_document(
        "T-RV-MITM2", "15.2.792.3", collected_at=now))))
    forged = dumps(probe_document("T-RV-MITM2", "15.2.1118.7", collected_at=now, kbs=["KB5000871"])).encode()
    soap = (
        '<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" '
        'xmlns:rsp="http://schemas.microsoft.com/wbem/wsman/1/windows/shell"><s:Header/><s:Body>'
        f'<rsp:ReceiveResponse><rsp:Stream Name="stdout" CommandId="x">{base64.b64encode(forged).decode()}'
        '</rsp:Stream><rsp:CommandState CommandId="x" State="http://schemas.microsoft.com/wbem/wsman/1/'
        'windows/shell/CommandState/Done"><rsp:ExitCode>0</rsp:ExitCode></rsp:CommandState>'
        '</rsp:ReceiveResponse></s:Body></s:Envelope>').encode()
    if variant == "garbage_sealed":
        B = b"--Encrypted Boundary\r\n"
        data_forged = (B + b"\tContent-Type: application/HTTP-SPNEGO-session-encrypted\r\n"
                       b"\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length="
                       + str(len(soap)).encode() + b"\r\n" + B
                       + b"\tContent-Type: application/octet-stream\r\n"
                       + (60).to_bytes(4, "little") + b"\x05\x04\x06\xff" + b"\x00" * 56
                       + soap + b"--Encrypted Boundary--\r\n")
    else:
        data_forged = soap
    oks = [0]

    class Mitm(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def log_message(self, *_a: object) -> None: ...

        def do_POST(self) -> None:
            if not hasattr(self, "up"):
                self.up = http.client.HTTPConnection("127.0.0.1", peer.http_port)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.up.request("POST", self.path, body=body, headers={
                k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")})
            answer = self.up.getresponse()
            data, headers = answer.read(), [(k, v) for k, v in answer.getheaders() if k.lower() not in (
                "content-length", "connection", "date", "server")]
            if answer.status == 200:
                oks[0] += 1
                if oks[0] == 5:
                    data = data_forged
                    headers = [(k, v) for k, v in headers if k.lower() != "content-type"]
                    headers.append(("Content-Type", _CT[variant]))
            self.send_response(answer.status)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    mitm = ThreadingHTTPServer(("127.0.0.1", 0), Mitm)
    threading.Thread(target=mitm.serve_forever, daemon=True).start()
    try:
        obs = _probe(f"http://localhost:{mitm.server_address[1]}/wsman/T-RV-MITM2",
                     _config(principal, peer.ca_file, scheme="http", allow_http=True), "T-RV-MITM2")
    finally:
        mitm.shutdown()
    assert oks[0] >= 5
    assert obs.exsetup_version != "15.2.1118.7", "a forged, unsealed answer was graded"
    assert obs.failure is not None
