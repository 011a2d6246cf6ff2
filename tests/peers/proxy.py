"""A loopback TCP relay that dies mid-answer, to test what a server vanishing mid-reply does.

``CuttingProxy(target_port, cut_after=N)`` listens on a free 127.0.0.1 port and relays bytes
both ways to ``127.0.0.1:target_port``. Once it has passed ``cut_after`` bytes from the server
to the client it resets both connections (SO_LINGER 0: an RST, as from a host that went away),
so the client sees the connection drop in the middle of an answer. TLS passes through
untouched: the client still validates the real server's certificate.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading

from tests.peers.loopback import HOST, AcceptLoop


def _reset(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    # close() alone neither wakes a thread blocked in recv() on this socket nor, while that
    # thread holds it, lets the kernel send the RST; SHUT_RD wakes it without telling the peer.
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RD)
    with contextlib.suppress(OSError):
        sock.close()


class CuttingProxy:
    """Relay to ``target_port``, resetting every connection after ``cut_after`` answer bytes."""

    def __init__(self, target_port: int, cut_after: int) -> None:
        self.target_port = target_port
        self.cut_after = cut_after
        self.cuts = 0  # connections reset so far: proves the cut happened mid-answer
        self._loop = AcceptLoop(self._relay, threaded=True, name="cutting-proxy")
        self.port = self._loop.port

    def _relay(self, client: socket.socket) -> None:
        try:
            server = socket.create_connection((HOST, self.target_port), timeout=10)
        except OSError:
            _reset(client)
            return
        done = threading.Event()

        def upstream() -> None:  # client -> server, unlimited
            with contextlib.suppress(OSError):
                while not done.is_set() and (data := client.recv(65536)):
                    server.sendall(data)
            done.set()

        threading.Thread(target=upstream, daemon=True).start()
        passed = 0
        with contextlib.suppress(OSError):
            while not done.is_set() and (data := server.recv(65536)):
                room = self.cut_after - passed
                client.sendall(data[:room])
                passed += min(len(data), room)
                if passed >= self.cut_after:
                    self.cuts += 1
                    break
        done.set()
        _reset(client)
        _reset(server)

    def close(self) -> None:
        self._loop.close()
