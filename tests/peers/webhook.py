"""A real HTTPS webhook receiver on loopback: the standard library's threaded HTTP server behind
TLS from the test CA, recording every request it is sent.

``WebhookPeer(files)`` answers 200 unless told otherwise: ``answer(500, 500)`` makes the next
two requests get 500 (then 200 again), ``answer(302)`` one redirect to ``/elsewhere`` on the
same server (a client that follows it shows up there). ``url(path)`` is its address;
``close()`` stops it.
"""

from __future__ import annotations

import ssl
import threading
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.peers.loopback import HOST
from tests.peers.tls import TlsFiles


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # with its query
    headers: dict[str, str]  # names lower-cased
    body: bytes


class WebhookPeer:
    def __init__(self, files: TlsFiles) -> None:
        self.requests: list[Request] = []
        self._answers: deque[int] = deque()
        self._lock = threading.Lock()
        peer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with peer._lock:
                    peer.requests.append(Request(
                        "POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    status = peer._answers.popleft() if peer._answers else 200
                reply = b'{"ok":true}' if status < 300 else b'{"error":"as told"}'
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", peer.url("/elsewhere"))
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: object) -> None:
                pass

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(files.cert_file, files.key_file)
        self._server = ThreadingHTTPServer((HOST, 0), Handler)
        self._server.daemon_threads = True
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.port = int(self._server.server_address[1])
        # A short poll so close() returns at once (the default waits up to half a second).
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        name="webhook", daemon=True)
        self._thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"https://{HOST}:{self.port}{path}"

    def answer(self, *statuses: int) -> None:
        """The statuses of the next requests, in order (then 200)."""
        with self._lock:
            self._answers.extend(statuses)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
