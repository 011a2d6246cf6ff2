"""Loopback plumbing shared by the test peers: free ports and a stoppable accept loop."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable

HOST = "127.0.0.1"


def free_port() -> int:
    """A loopback port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class AcceptLoop:
    """Listen on a free 127.0.0.1 port and hand each connection to ``handle``.

    ``threaded``: one thread per connection (a relay), or one at a time on the loop's own
    thread (a server whose tests look at each outcome in order). ``close()`` stops accepting
    and waits for the loop.
    """

    def __init__(self, handle: Callable[[socket.socket], None], *, threaded: bool,
                 name: str) -> None:
        self._handle, self._threaded = handle, threaded
        self._listener = socket.create_server((HOST, 0))
        self._listener.settimeout(0.2)  # so close() is noticed without a connection
        self.port = int(self._listener.getsockname()[1])
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self._threaded:
                threading.Thread(target=self._handle, args=(connection,), daemon=True).start()
            else:
                self._handle(connection)

    def close(self) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        self._thread.join(timeout=5)
