"""One peer per test session, however many conftests register its fixture."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, Protocol, TypeVar


class _Stoppable(Protocol):
    def stop(self) -> None: ...


PeerT = TypeVar("PeerT", bound=_Stoppable)

# (session, name) -> peer. Importing a fixture in two conftests registers it twice; this keeps
# one running peer behind both.
_PEERS: dict[tuple[int, Hashable], Any] = {}


def session_peer(request: Any, name: Hashable, start: Callable[[], PeerT],
                 alive: Callable[[PeerT], bool] = lambda _peer: True) -> PeerT:
    """The session's peer called ``name``: started on first use (or if it died), stopped after
    the whole session, whichever conftest asked first."""
    key = (id(request.session), name)
    peer: PeerT | None = _PEERS.get(key)
    if peer is None or not alive(peer):
        started = peer = start()
        _PEERS[key] = started

        def stop() -> None:
            started.stop()
            _PEERS.pop(key, None)

        request.config.add_cleanup(stop)
    return peer
