"""Session-scoped pytest fixtures for the WS-Management (WinRM) peer (tests/peers/wsman.py).

Registered for the whole suite by ``pytest_plugins = [..., "tests.peers.wsman_fixtures"]`` in
tests/conftest.py. ``wsman_peer`` runs in this process (threads), in a temp dir from
``tmp_path_factory``, and stops when the session ends. It is shared by every test: give each test
its own host names (``peer.set_host("t-<test>-ex01", HostBehavior(...))``), and restore
``peer.expected_script`` if a test sets it. Nothing to install: only the standard library, pyspnego
and cryptography, so it never skips.

``wsman_kerberos_peer`` is a second peer, for Kerberos: it accepts tickets for
``HTTP/localhost@PROBE.TEST`` from the session's KDC (``kdc_peer``; the principal and its keytab are
made here) and refuses NTLM, as a server whose NTLM is disabled by policy. Connect to it as
``localhost`` (``peer.url(name, hostname="localhost")``). Skips where the KDC is not installed, as
``kdc_peer`` does; needs ``gssapi`` (requirements-kerberos.txt). ``client_ticket`` gives a test a
client principal's TGT in a credential cache of its own; ``kerberos_peer_process`` runs a Kerberos
peer as a process of its own, on a skewed clock if asked (libfaketime).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.peers.kdc import FAKETIME_LIBRARY, KdcError, KdcPeer
from tests.peers.shared import session_peer
from tests.peers.wsman import WsmanPeer, faketime_env, start_fleet_process, start_wsman

# The service principal a client asks for when it connects to "localhost" (pywinrm's default SPN
# service class is HTTP, as Windows' WinRM registers it).
SERVICE_PRINCIPAL = "HTTP/localhost"


def ensure_principal(kdc: KdcPeer, name: str) -> str:
    """``name``'s full principal, created with a random key unless another fixture made it first."""
    try:
        return kdc.add_principal(name)
    except KdcError as error:
        if "already exists" not in str(error):
            raise
        return kdc.principal(name)


@pytest.fixture(scope="session")
def wsman_peer(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> WsmanPeer:
    return session_peer(request, "wsman", lambda: start_wsman(tmp_path_factory.mktemp("wsman")))


@pytest.fixture(scope="session")
def wsman_kerberos_peer(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                        kdc_peer: KdcPeer) -> WsmanPeer:
    pytest.importorskip("gssapi", reason="gssapi not installed (pip install -r requirements-kerberos.txt)")

    def start() -> WsmanPeer:
        workdir = tmp_path_factory.mktemp("wsman-kerberos")
        ensure_principal(kdc_peer, SERVICE_PRINCIPAL)
        keytab = kdc_peer.keytab(SERVICE_PRINCIPAL, workdir / "http.keytab")
        return start_wsman(workdir, keytab=keytab, allow_ntlm=False)

    return session_peer(request, "wsman-kerberos", start)


def client_ticket(kdc: KdcPeer, workdir: Path, name: str = "t-wsman-client") -> tuple[str, str]:
    """A client principal ``name`` (made once per session) and a new ``FILE:`` credential cache in
    ``workdir`` holding its TGT (kinit from its keytab): ``(principal, ccache name)``."""
    principal = ensure_principal(kdc, name)
    keytab = kdc.keytab(name, workdir / f"{name}.keytab")
    ccache = workdir / f"{name}.ccache"
    kdc.kinit(name, keytab, ccache)
    return principal, f"FILE:{ccache}"


@contextlib.contextmanager
def kerberos_peer_process(kdc: KdcPeer, keytab: Path, workdir: Path, fleet: dict[str, dict[str, Any]],
                          clock_offset: int = 0) -> Iterator[dict[str, Any]]:
    """A Kerberos peer (NTLM refused) as a process of its own, its wall clock ``clock_offset`` seconds
    off under libfaketime (0: not faked): a host whose clock drifted. Yields its ready line (ports,
    ``ca_file``, ``clock``: its ``time.time()`` when ready). Stopped, by its own handle, after."""
    if clock_offset and not FAKETIME_LIBRARY.exists():
        pytest.skip("libfaketime not installed (Debian package faketime; ./test.sh installs it)")
    workdir.mkdir(parents=True, exist_ok=True)
    fleet_file = workdir / "fleet.json"
    fleet_file.write_text(json.dumps(fleet), encoding="utf-8")
    env = dict(kdc.env())
    if clock_offset:
        env |= faketime_env(clock_offset)
    process, ready = start_fleet_process(fleet_file, workdir=workdir / "peer", keytab=keytab, allow_ntlm=False,
                                         env=env)
    try:
        yield ready
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
