"""Deadlines are real: a WinRM server that trickles its answer cannot hold a host, or the run.

A slowloris-style server sends one byte a second, so every read the client makes succeeds well
within its read timeout while the answer never completes. The per-host deadline must still end
the exchange (at the socket level), the host must be recorded as ``timeout`` with its hint, and
``python -m collectors collect`` must save its snapshot and exit within the deadline plus a
small margin: no thread left behind may keep the process alive.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from collectors.remote import (
    ABANDON_AFTER_SECONDS,
    Shell,
    Target,
    WinrmConfig,
    probe_all,
    probe_host,
)
from compliance.failures import HINTS
from compliance.models import Host, Observation
from store import SnapshotStore
from tests.collectors.documents import dumps, probe_document
from tests.peers.loopback import AcceptLoop
from tests.peers.wsman import HostBehavior, WsmanPeer

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 4  # seconds, per host
MARGIN = 5  # seconds: what the deadline may be overrun by, start-up and saving included
TRICKLE = 1.0  # seconds per byte


def _document(name: str, **behavior: float) -> HostBehavior:
    return HostBehavior(stdout=dumps(probe_document(
        name, "15.1.2176.9", collected_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))),
        **behavior)


def _config(peer: WsmanPeer, **overrides: object) -> WinrmConfig:
    # Every read of a byte-a-second answer succeeds within read_timeout_seconds.
    settings: dict[str, object] = {
        "username": peer.username, "ca_file": str(peer.ca_file), "deadline_seconds": DEADLINE,
        "read_timeout_seconds": 3, "operation_timeout_seconds": 2, "retries": 1,
        "backoff_seconds": 0.2}
    settings.update(overrides)
    return WinrmConfig(**settings)  # type: ignore[arg-type]


def _within(seconds: float, call: Callable[[], Observation]) -> tuple[Observation, float]:
    """``call()``'s answer and how long it took; fails (leaving it behind) past ``seconds``."""
    outcome: list[Observation] = []
    started = time.monotonic()
    worker = threading.Thread(target=lambda: outcome.append(call()), daemon=True)
    worker.start()
    worker.join(seconds)
    elapsed = time.monotonic() - started
    assert outcome, f"no answer within {seconds} s: the deadline did not hold"
    return outcome[0], elapsed


def _assert_timeout(observation: Observation) -> None:
    failure = observation.failure
    assert failure is not None and failure.reason == "timeout", failure
    assert failure.hint == HINTS["timeout"]
    assert observation.exsetup_version is None


@pytest.mark.parametrize(("scheme", "extra"), [
    pytest.param("https", {}, id="ntlm-https"),
    pytest.param("http", {"allow_http": True}, id="ntlm-encrypted-http"),
])
def test_a_trickled_answer_is_cut_at_the_deadline(wsman_peer, scheme, extra):
    name = f"SLOW-ANSWER-{scheme}"
    wsman_peer.set_host(name, _document(name, trickle=TRICKLE))
    target = Target(Host(name), wsman_peer.url(name, scheme=scheme))
    observation, elapsed = _within(DEADLINE + MARGIN, lambda: probe_host(
        target, _config(wsman_peer, **extra), wsman_peer.password))
    _assert_timeout(observation)
    assert "deadline" in observation.failure.detail  # type: ignore[union-attr]
    assert elapsed < DEADLINE + 1, elapsed
    # The cut left time for the cleanup: the shell was closed on the server, within the deadline.
    assert wsman_peer.requests(name)[-1] == "Delete", wsman_peer.requests(name)


@contextlib.contextmanager
def _trickling_tls_server() -> Iterator[int]:
    """A port whose server answers a ClientHello with a TLS record announcing 16 kB, then sends
    it a byte a second: the handshake never ends, yet every read gets a byte."""
    stopping = threading.Event()

    def handle(connection: socket.socket) -> None:
        with contextlib.suppress(OSError), connection:
            connection.recv(65536)  # the ClientHello
            connection.sendall(b"\x16\x03\x03\x40\x00")  # handshake record, 16384 bytes long
            while not stopping.wait(TRICKLE):
                connection.sendall(b"\x00")

    loop = AcceptLoop(handle, threaded=True, name="trickling-tls")
    try:
        yield loop.port
    finally:
        stopping.set()
        loop.close()


def test_a_trickled_tls_handshake_is_cut_at_the_deadline(wsman_peer):
    # CPython also bounds a whole handshake by the socket timeout (the read timeout); the cut
    # holds it to the deadline whatever that timeout is.
    with _trickling_tls_server() as port:
        target = Target(Host("SLOW-HANDSHAKE"), f"https://127.0.0.1:{port}/wsman")
        observation, elapsed = _within(DEADLINE + MARGIN, lambda: probe_host(
            target, _config(wsman_peer), wsman_peer.password))
    _assert_timeout(observation)
    assert elapsed < DEADLINE + 1, elapsed


def _probe_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("probe")}


def test_probe_all_answers_within_the_deadline_beside_a_trickling_host(wsman_peer):
    names = ["SLOW-ALL-GOOD", "SLOW-ALL-TRICKLE"]
    wsman_peer.set_host(names[0], _document(names[0]))
    wsman_peer.set_host(names[1], _document(names[1], trickle=TRICKLE))
    before = _probe_threads()
    started = time.monotonic()
    results = probe_all([Target(Host(n), wsman_peer.url(n)) for n in names],
                        _config(wsman_peer, concurrency=2), wsman_peer.password)
    elapsed = time.monotonic() - started
    assert elapsed < DEADLINE + MARGIN, elapsed
    assert [o.host.name for o in results] == names
    assert results[0].failure is None and results[0].exsetup_version == "15.1.2176.9"
    _assert_timeout(results[1])
    assert all(t.daemon for t in _probe_threads() - before)


def test_a_probe_stuck_outside_any_socket_is_abandoned_on_a_daemon_thread(wsman_peer):
    """What no socket cut can reach (a name lookup that hangs, say) still ends the host: here
    a shell (the WinRM seam) that never opens, whatever its cut."""
    release = threading.Event()

    def stuck(url: str, config: WinrmConfig, password: str, cut_at: float) -> Shell:
        release.wait(60)
        raise ConnectionError("released by the test")

    before = _probe_threads()
    try:
        started = time.monotonic()
        results = probe_all([Target(Host("SLOW-STUCK"), wsman_peer.url("SLOW-STUCK"))],
                            _config(wsman_peer, deadline_seconds=1, read_timeout_seconds=10),
                            wsman_peer.password, open_shell=stuck)
        elapsed = time.monotonic() - started
        left = _probe_threads() - before
    finally:
        release.set()
    assert 1 + ABANDON_AFTER_SECONDS <= elapsed < 1 + MARGIN, elapsed
    _assert_timeout(results[0])
    assert left and all(t.daemon for t in left)  # abandoned, and it cannot hold the exit


def test_collect_exits_within_the_deadline_against_a_trickling_peer(wsman_peer, tmp_path):
    good, slow = "SLOW-RUN-GOOD", "SLOW-RUN-TRICKLE"
    wsman_peer.set_host(good, _document(good))
    wsman_peer.set_host(slow, _document(slow, trickle=TRICKLE))
    inventory = tmp_path / "hosts.csv"
    inventory.write_text(f"name,winrm_url\n{good},{wsman_peer.url(good)}\n"
                         f"{slow},{wsman_peer.url(slow)}\n")
    config = tmp_path / "collection.toml"
    config.write_text(
        "[winrm]\n"
        f'username = "{wsman_peer.username.replace(chr(92), chr(92) * 2)}"\n'
        f'ca_file = "{wsman_peer.ca_file}"\n'
        f"deadline_seconds = {DEADLINE}\nread_timeout_seconds = 3\noperation_timeout_seconds = 2\n"
        "concurrency = 4\nretries = 1\nbackoff_seconds = 0.2\n")
    db = f"sqlite:///{tmp_path / 'store.db'}"
    env = {**os.environ, "PROXYLOGON_WINRM_PASSWORD": wsman_peer.password,
           "PROXYLOGON_DATA_DIR": str(tmp_path / "data")}
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "collectors", "collect", "--config", str(config), "--inventory",
         str(inventory), "--db", db, "--secrets", os.devnull],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _out, err = process.communicate(timeout=DEADLINE + MARGIN)
    except subprocess.TimeoutExpired:
        process.kill()
        _out, err = process.communicate()
        pytest.fail(f"collect still ran {DEADLINE + MARGIN} s after it started (deadline "
                    f"{DEADLINE} s); its output:\n{err}")
    elapsed = time.monotonic() - started
    print(f"collect against a trickling peer: exited after {elapsed:.1f} s "
          f"(deadline_seconds = {DEADLINE})")
    assert process.returncode == 0, err
    assert "snapshot #1 saved" in err and "Traceback" not in err, err

    store = SnapshotStore.open(db)
    try:
        latest = store.latest()
        assert latest is not None
        by_name = {a.observation.host.name: a.observation for a in store.assessments(latest.id)}
    finally:
        store.dispose()
    assert by_name[good].failure is None and by_name[good].exsetup_version == "15.1.2176.9"
    _assert_timeout(by_name[slow])
