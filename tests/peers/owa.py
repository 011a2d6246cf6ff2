"""An OWA/ECP-like HTTPS peer on loopback, for the fingerprint tests (collectors/fingerprint.py).

``start_owa(workdir)`` starts it on a free 127.0.0.1 port (threads of this process) with a
certificate from a throwaway CA (tests/peers/tls.py: ``peer.ca_file``; ``peer.other_ca_file`` is an
unrelated CA, for "wrong CA is refused" tests); ``peer.stop()`` closes it.
``python -m tests.peers.owa --delay 0.2`` runs one in a process of its own (see ``main``).

Virtual endpoints: the first path segment names one, ``https://127.0.0.1:P/<name>/`` (``peer.url``),
configured with ``peer.set_endpoint(name, node, ...)``; with several nodes it is a load balancer
that sends each request to the next node in turn. A name never configured answers 404, unless
the peer has a ``default`` endpoint (the benchmark's 2,000 alike).

What a node (``OwaNode``) answers, after shared/reference/outside_view.md (paths are
case-insensitive, as on IIS):

    GET /<name>/owa/ or /<name>/owa     302, Location: <base>owa/auth/logon.aspx?url=<base, escaped
                                        with lower-case escapes>owa%2f&reason=0 (F1), X-OWA-Version
                                        (F2) and X-FEServer headers, a Set-Cookie (to show that the
                                        client sends none back)
    GET /<name>/owa/auth/logon.aspx...  200 text/html, ~28 KB, <title>Outlook</title> and the
                                        resource paths /owa/auth/<logon_version>/themes/... (F3), or
                                        /owa/<logon_version>/themes/... with ``auth_segment=False``
                                        (2010, F5); X-OWA-Version too
    GET /<name>/ecp/Current/exporttool/microsoft.exchange.ediscovery.exporttool.application
                                        200 application/x-ms-application, the ~16 KB ClickOnce
                                        manifest with ``manifest_version`` in its three
                                        assemblyIdentity elements (F4); 404 when None (2010)
    anything else                       404

A node with ``status=500`` is one broken after a Security Update installed without elevation
(F6): every request answers 500 with the ASP.NET error, no version header. ``delay`` holds every
answer; ``trickle`` sends the body a byte at a time, that many seconds apart; ``redirect`` sends
/owa/ elsewhere; ``padding`` puts that many bytes before the logon page's resource paths.

Every request is recorded (``peer.seen(name)``): method, path, headers, which node answered, and
when it started and ended (``peer.peak(names)``: the most requests in flight at once). Any method
is answered (and recorded), so a test can tell that only GETs were sent.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import json
import os
import re
import shutil
import signal
import socket
import socketserver
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote

from tests.peers.loopback import HOST
from tests.peers.tls import TlsFiles, make_tls_files

MANIFEST_PATH = "ecp/current/exporttool/microsoft.exchange.ediscovery.exporttool.application"
PAGE_SIZE = 28_000  # bytes of a real logon page (F1)
BROKEN_BODY = (b"<html><head><title>Could not load file or assembly 'Microsoft.Exchange.Common, "
               b"Version=15.0.0.0, Culture=neutral, PublicKeyToken=31bf3856ad364e35' or one of its "
               b"dependencies.</title></head><body><h1>Server Error in '/owa' Application.</h1>"
               b"</body></html>")


@dataclass(frozen=True)
class OwaNode:
    """One Exchange server's answers (see the module docstring). Defaults: 2016 CU19 with the
    March 2021 SU (15.1.2176.9) disclosing all three ways."""

    header: str | None = "15.1.2176.9"
    logon_version: str | None = "15.1.2176"
    auth_segment: bool = True
    manifest_version: str | None = "15.1.2176.9"
    manifest_body: bytes | None = None  # sent as is instead of the manifest
    logon_body: bytes | None = None  # sent as is instead of the logon page
    status: int = 200
    delay: float = 0.0
    trickle: float = 0.0
    redirect: str | None = None
    padding: int = 0
    fe_server: str = "EX01"


@dataclass
class Seen:
    """One request as the peer received it."""

    endpoint: str
    method: str
    path: str
    headers: dict[str, str]
    node: int
    started: float
    client_port: int = 0  # tells the client's connections apart
    ended: float = 0.0  # 0 while the peer is still answering


@dataclass
class _Endpoint:
    nodes: tuple[OwaNode, ...]
    turn: itertools.count[int] = field(default_factory=itertools.count)

    def next_node(self) -> tuple[int, OwaNode]:
        index = next(self.turn) % len(self.nodes)
        return index, self.nodes[index]


@functools.lru_cache(maxsize=64)  # the benchmark's 2,000 endpoints share one page
def logon_page(version: str, *, auth_segment: bool = True, padding: int = 0) -> bytes:
    """A logon page shaped like Exchange's (F3; F5 without ``auth_segment``), about 28 KB."""
    root = f"/owa/auth/{version}" if auth_segment else f"/owa/{version}"
    title = "Outlook" if auth_segment else "Outlook Web App"
    head = (
        '<!DOCTYPE html>\n<html>\n<head>\n'
        '<meta http-equiv="X-UA-Compatible" content="IE=10" />\n'
        f"<!-- {'x' * padding} -->\n"
        f'<link rel="shortcut icon" href="{root}/themes/resources/favicon.ico" type="image/x-icon">\n'
        '<meta name="robots" content="noindex, nofollow" />\n'
        f"<title>{title}</title>\n<style>\n"
        '@font-face { font-family: "Segoe UI WPC"; '
        f'src: url("{root}/themes/resources/segoeui-regular.eot?#iefix") format("embedded-opentype"), '
        f'url("{root}/themes/resources/segoeui-regular.ttf") format("truetype"); }}\n'
        "</style>\n"
        f'<link href="{root}/themes/resources/owafont.css" rel="stylesheet" type="text/css">\n'
        "</head>\n<!-- OwaPage = ASP.auth_logon_aspx -->\n<body>\n"
        "<noscript><div>To use Outlook, browser settings must allow scripts to run.</div></noscript>\n"
        "<script type=\"text/javascript\">\nfunction IsOwaPremiumBrowser() { return true; }\n"
    )
    tail = "</script>\n</body>\n</html>\n"
    filler = "// " + "logon " * ((PAGE_SIZE - len(head) - len(tail)) // 6) + "\n"
    return (head + filler + tail).encode("ascii")


@functools.lru_cache(maxsize=64)
def manifest(version: str) -> bytes:
    """The export tool's ClickOnce deployment manifest (F4), its version in three places."""
    identity = (f'name="microsoft.exchange.ediscovery.exporttool.application" version="{version}" '
                'publicKeyToken="b1d1a6c45aa418ce" language="neutral" processorArchitecture="msil"')
    digest = "k4HKo1Vyr4Q5Ny+Xw0PnyRZ3uWqQ7X5/lQ1aZzQ2Qq8="
    hashes = "\n".join(f"      <!-- file hash {i}: {digest} -->" for i in range(150))
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<asmv1:assembly xsi:schemaLocation="urn:schemas-microsoft-com:asm.v1 assembly.adaptive.xsd" '
        'manifestVersion="1.0" xmlns:asmv1="urn:schemas-microsoft-com:asm.v1" '
        'xmlns:asmv2="urn:schemas-microsoft-com:asm.v2" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns="urn:schemas-microsoft-com:asm.v2">\n'
        f'  <assemblyIdentity {identity} xmlns="urn:schemas-microsoft-com:asm.v1" />\n'
        '  <description asmv2:publisher="Microsoft Corporation" asmv2:product="Microsoft Exchange '
        'eDiscovery Export Tool" xmlns="urn:schemas-microsoft-com:asm.v1" />\n'
        '  <deployment install="false" trustURLParameters="true" mapFileExtensions="true" />\n'
        "  <dependency>\n"
        '    <dependentAssembly dependencyType="install" codebase="microsoft.exchange.ediscovery.'
        'exporttool.exe.manifest" size="7632">\n'
        f'      <assemblyIdentity name="microsoft.exchange.ediscovery.exporttool" version="{version}" '
        'publicKeyToken="b1d1a6c45aa418ce" language="neutral" processorArchitecture="msil" '
        'type="win32" />\n'
        f"{hashes}\n"
        "    </dependentAssembly>\n  </dependency>\n"
        '<publisherIdentity name="CN=Microsoft Corporation, O=Microsoft Corporation, L=Redmond, '
        'S=Washington, C=US" issuerKeyHash="3f8e1d1e0e0e2b5b9d0a2c7d4a4d0b3b7c6e5f4a" />'
        '<Signature Id="StrongNameSignature" xmlns="http://www.w3.org/2000/09/xmldsig#"><KeyInfo>'
        '<msrel:RelData xmlns:msrel="http://schemas.microsoft.com/windows/rel/2005/reldata">'
        '<r:license xmlns:r="urn:mpeg:mpeg21:2003:01-REL-R-NS" '
        'xmlns:as="http://schemas.microsoft.com/windows/pki/2005/Authenticode"><r:grant>'
        f'<as:ManifestInformation Hash="{digest}" Description="" Url="">'
        f'<as:assemblyIdentity {identity} xmlns="urn:schemas-microsoft-com:asm.v1" />'
        "</as:ManifestInformation></r:grant></r:license></msrel:RelData></KeyInfo></Signature>"
        "</asmv1:assembly>\n"
    ).encode()


def _lower_escapes(text: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), quote(text, safe=""))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() must not wait for stalled or kept-alive connections
    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(self, peer: OwaPeer, tls: ssl.SSLContext) -> None:
        self.peer, self.tls = peer, tls
        super().__init__((HOST, 0), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would call socket.getfqdn (a reverse lookup): skip it.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = HOST, int(self.server_address[1])

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # clients that refuse the certificate, hang up, or were cut at a deadline
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Microsoft-IIS/10.0"
    sys_version = ""
    server: _Server

    def setup(self) -> None:
        sock = cast(socket.socket, self.request)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(10)  # the handshake, and a client that goes quiet
        self.request = self.server.tls.wrap_socket(sock, server_side=True)
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        # do_GET, do_POST, do_PROPFIND...: every method is answered and recorded.
        if name.startswith("do_"):
            return self._serve
        raise AttributeError(name)

    def _serve(self) -> None:
        peer = self.server.peer
        started = time.monotonic()
        name, _, rest = self.path.lstrip("/").partition("/")
        endpoint = peer.endpoint(name)
        index, node = endpoint.next_node() if endpoint else (-1, None)
        seen = Seen(name, self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                    index, started, int(self.client_address[1]))
        peer._record(seen)  # before answering: a client that has its answer finds it recorded
        if node is not None and node.delay:
            time.sleep(node.delay)
        base = f"https://{HOST}:{self.server.server_port}/{name}/"
        status, headers, body = _answer(node, rest, base) if node else (404, {}, b"")
        try:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if node is not None and node.trickle and body:
                for offset in range(len(body)):
                    self.wfile.write(body[offset:offset + 1])
                    self.wfile.flush()
                    time.sleep(node.trickle)
            elif self.command != "HEAD":
                self.wfile.write(body)
        finally:
            seen.ended = time.monotonic()


def _answer(node: OwaNode, rest: str, base: str) -> tuple[int, dict[str, str], bytes]:
    """What ``node`` answers to ``rest`` (the path after the endpoint's name)."""
    if node.status != 200:
        return node.status, {"Content-Type": "text/html; charset=utf-8"}, BROKEN_BODY
    owa = {"X-FEServer": node.fe_server}
    if node.header is not None:
        owa["X-OWA-Version"] = node.header
    path = rest.split("?", 1)[0].lower()
    if path in ("owa", "owa/"):
        location = node.redirect or (f"{base}owa/auth/logon.aspx?url="
                                     f"{_lower_escapes(base + 'owa/')}&reason=0")
        return 302, {**owa, "Location": location, "Content-Type": "text/html; charset=utf-8",
                     "Set-Cookie": "ClientId=0123456789ABCDEF; path=/; secure; HttpOnly"}, (
            f'<html><head><title>Object moved</title></head><body><h2>Object moved to <a href="'
            f'{location}">here</a>.</h2></body></html>'.encode())
    if path == "owa/auth/logon.aspx" and (node.logon_body is not None or node.logon_version):
        body = node.logon_body if node.logon_body is not None else logon_page(
            cast(str, node.logon_version), auth_segment=node.auth_segment, padding=node.padding)
        return 200, {**owa, "Content-Type": "text/html; charset=utf-8",
                     "Set-Cookie": "ClientId=0123456789ABCDEF; path=/; secure; HttpOnly"}, body
    if path == MANIFEST_PATH and (node.manifest_body is not None or node.manifest_version):
        body = node.manifest_body if node.manifest_body is not None else manifest(
            cast(str, node.manifest_version))
        return 200, {"Content-Type": "application/x-ms-application"}, body
    return 404, {"Content-Type": "text/html"}, b"<html><body>404 - File or directory not found.</body></html>"


class OwaPeer:
    """The running peer: ``url(name)``, ``set_endpoint``, ``seen``, ``peak``, ``stop``."""

    def __init__(self, files: TlsFiles, default: Sequence[OwaNode] = ()) -> None:
        self.ca_file, self.other_ca_file = files.ca_file, files.other_ca_file
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(files.cert_file, files.key_file)
        context.num_tickets = 0  # the client never resumes sessions: skip the tickets
        self._lock = threading.Lock()
        self._endpoints: dict[str, _Endpoint] = {}
        self._default = _Endpoint(tuple(default)) if default else None
        self._seen: list[Seen] = []
        self._server = _Server(self, context)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="owa-peer", daemon=True)
        self._thread.start()

    def url(self, name: str) -> str:
        return f"https://{HOST}:{self.port}/{name}/"

    def set_endpoint(self, name: str, *nodes: OwaNode) -> str:
        """Configure ``name`` (one node, or several behind a round-robin balancer); its URL."""
        if not nodes or "/" in name:
            raise ValueError("an endpoint needs a name without '/' and at least one node")
        with self._lock:
            self._endpoints[name] = _Endpoint(tuple(nodes))
        return self.url(name)

    def endpoint(self, name: str) -> _Endpoint | None:
        with self._lock:
            return self._endpoints.get(name, self._default)

    def _record(self, seen: Seen) -> None:
        with self._lock:
            if len(self._seen) < 100_000:  # the benchmark's 6,000 and then some
                self._seen.append(seen)

    def seen(self, name: str | None = None) -> list[Seen]:
        """The requests an endpoint (or every endpoint) received, in the order they came."""
        with self._lock:
            return [s for s in self._seen if name is None or s.endpoint == name]

    def peak(self, names: Sequence[str] | None = None) -> int:
        """The most requests to ``names`` (default: all) the peer was answering at once."""
        chosen = set(names) if names is not None else None
        now = time.monotonic()
        events = sorted(event for s in self.seen() if chosen is None or s.endpoint in chosen
                        for event in ((s.started, 1), (s.ended or now, -1)))
        level = peak = 0
        for _when, step in events:  # an end sorts before a start at the same instant
            level += step
            peak = max(peak, level)
        return peak

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def start_owa(workdir: Path, default: Sequence[OwaNode] = ()) -> OwaPeer:
    """Start a peer on a free loopback port; its TLS files go into ``workdir``."""
    return OwaPeer(make_tls_files(workdir), default)


# --------------------------------------------------------------------------------------------------
# python -m tests.peers.owa


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.peers.owa",
                                     description="run the OWA peer; every name answers as one node")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--version", default="15.1.2176.9", help="the build every node discloses")
    parser.add_argument("--workdir", type=Path, help="for the TLS files (default: a temp dir)")
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    temp_dir = None if args.workdir else tempfile.mkdtemp(prefix="owa-peer-")
    workdir = args.workdir or Path(cast(str, temp_dir))
    cu_level = ".".join(args.version.split(".")[:3])
    peer = start_owa(workdir, [OwaNode(header=args.version, logon_version=cu_level,
                                       manifest_version=args.version, delay=args.delay)])
    try:
        print(json.dumps({"pid": os.getpid(), "host": HOST, "port": peer.port,
                          "ca_file": str(peer.ca_file)}), flush=True)
        while not stop.wait(1.0):
            pass
    finally:
        peer.stop()
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)
    return 0


def start_process(*, delay: float, version: str = "15.1.2176.9",
                  timeout: float = 30.0) -> tuple[subprocess.Popen[str], Mapping[str, Any]]:
    """Run ``python -m tests.peers.owa`` (cwd: the project root) and wait for its ready line (pid,
    port, ca_file). Stop it with ``process.terminate(); process.wait()``."""
    root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen([sys.executable, "-m", "tests.peers.owa", "--delay", str(delay),
                                "--version", version], cwd=root, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, text=True)
    ready: dict[str, Any] = {}

    def read_ready() -> None:
        assert process.stdout is not None
        with contextlib.suppress(ValueError):
            ready.update(json.loads(process.stdout.readline()))

    reader = threading.Thread(target=read_ready, daemon=True)
    reader.start()
    reader.join(timeout)
    if not ready:
        process.kill()
        process.wait(timeout=10)
        raise RuntimeError(f"the OWA peer process did not get ready within {timeout:.0f} s")
    return process, ready


if __name__ == "__main__":
    raise SystemExit(main())
