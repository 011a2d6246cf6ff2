"""The WinRM probe runner: transports, deadline, failure classes (real pywinrm, WS-Man peer)."""

from __future__ import annotations

import sys
import threading
import time
import types
from datetime import UTC, datetime

import pytest
import requests
from winrm import exceptions as winrm_errors

from collectors.remote import (
    HINTS,
    ProbeFailed,
    Target,
    WinrmConfig,
    WorkerDied,
    _classify,
    endpoint,
    probe_all,
    probe_host,
)
from compliance.models import Host
from tests.collectors.documents import dumps, probe_document
from tests.peers.wsman import HostBehavior

pytestmark = pytest.mark.integration


def _document(name: str) -> HostBehavior:
    return HostBehavior(stdout=dumps(probe_document(
        name, "15.1.2176.9", collected_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))))


def _config(peer, **overrides) -> WinrmConfig:
    settings = {"username": peer.username, "ca_file": str(peer.ca_file), "deadline_seconds": 10,
                "read_timeout_seconds": 4, "operation_timeout_seconds": 2, "retries": 0}
    settings.update(overrides)
    return WinrmConfig(**settings)


@pytest.mark.parametrize(
    ("transport", "scheme", "extra"),
    [
        pytest.param("ntlm", "https", {}, id="ntlm-https"),
        pytest.param("basic", "https", {}, id="basic-https"),
        pytest.param("ntlm", "http", {"allow_http": True}, id="ntlm-encrypted-http"),
    ],
)
def test_transports(wsman_peer, transport, scheme, extra):
    name = f"R-{transport}-{scheme}"
    wsman_peer.set_host(name, _document(name))
    obs = probe_host(Target(Host(name), wsman_peer.url(name, scheme=scheme)),
                     _config(wsman_peer, transport=transport, **extra), wsman_peer.password)
    assert obs.failure is None, obs.failure
    assert obs.exsetup_version == "15.1.2176.9"
    assert wsman_peer.requests(name)[0] == "Create"


@pytest.mark.parametrize(
    ("transport", "allow_http"),
    [pytest.param("ntlm", False, id="http-not-allowed"),
     pytest.param("basic", True, id="basic-over-http")],
)
def test_plain_http_is_refused_unless_allowed_and_encrypted(wsman_peer, transport, allow_http):
    name = f"R-refused-{transport}"
    wsman_peer.set_host(name, _document(name))
    obs = probe_host(Target(Host(name), wsman_peer.url(name, scheme="http")),
                     _config(wsman_peer, transport=transport, allow_http=allow_http),
                     wsman_peer.password)
    assert obs.failure is not None
    assert "plain HTTP" in obs.failure.detail or "Basic" in obs.failure.detail
    assert wsman_peer.requests(name) == []  # nothing was sent


def test_stall_is_cut_at_the_deadline(wsman_peer):
    wsman_peer.set_host("R-STALL", HostBehavior(stall=True))
    started = time.monotonic()
    obs = probe_host(Target(Host("R-STALL"), wsman_peer.url("R-STALL")),
                     _config(wsman_peer, deadline_seconds=3, read_timeout_seconds=2,
                             operation_timeout_seconds=1, retries=2, backoff_seconds=0.1),
                     wsman_peer.password)
    elapsed = time.monotonic() - started
    assert obs.failure is not None and obs.failure.reason == "timeout"
    assert elapsed < 3 + 2 + 1, elapsed


def test_endless_operation_timeouts_are_cut_at_the_deadline(wsman_peer):
    wsman_peer.set_host("R-FOREVER", HostBehavior(stdout="{}", operation_timeouts=10**9,
                                                  operation_timeout_delay=0.3))
    started = time.monotonic()
    obs = probe_host(Target(Host("R-FOREVER"), wsman_peer.url("R-FOREVER")),
                     _config(wsman_peer, deadline_seconds=2), wsman_peer.password)
    assert obs.failure is not None and obs.failure.reason == "timeout"
    assert time.monotonic() - started < 2 + 3


def test_password_never_appears_in_a_failure(wsman_peer):
    wsman_peer.set_host("R-401", HostBehavior(http_status=401))
    obs = probe_host(Target(Host("R-401"), wsman_peer.url("R-401")), _config(wsman_peer),
                     "S3cret-Pa55")
    assert obs.failure is not None and obs.failure.reason == "auth"
    assert "S3cret-Pa55" not in obs.failure.detail + obs.failure.hint


def test_probe_all_keeps_order_and_reports_progress(wsman_peer):
    names = [f"R-ALL-{i}" for i in range(6)]
    for name in names:
        wsman_peer.set_host(name, _document(name))
    ticks: list[bool] = []
    results = probe_all([Target(Host(n), wsman_peer.url(n)) for n in names],
                        _config(wsman_peer, concurrency=3), wsman_peer.password,
                        progress=ticks.append)
    assert [o.host.name for o in results] == names
    assert ticks == [False] * 6


def test_probe_all_over_two_processes(wsman_peer, monkeypatch, tmp_path):
    # The workers are fresh interpreters that run nothing of this process. multiprocessing's
    # spawn re-ran __main__ in each, and after an AppTest __main__ is the dashboard: CI saw a
    # worker die there. (A fork would instead copy the locks of this process's TLS server
    # threads.) So __main__ here is a script that leaves a mark if anything runs it.
    mark = tmp_path / "main-was-run"
    script = tmp_path / "dashboard.py"
    script.write_text(f"open({str(mark)!r}, 'w').close()\n")
    fake_main = types.ModuleType("__main__")
    fake_main.__file__ = str(script)
    monkeypatch.setitem(sys.modules, "__main__", fake_main)
    names = [f"R-PROC-{i}" for i in range(8)]
    for name in names:
        wsman_peer.set_host(name, _document(name))
    wsman_peer.set_host("R-PROC-DENIED", HostBehavior(fault="access_denied"))
    names.append("R-PROC-DENIED")
    ticks: list[bool] = []
    results = probe_all([Target(Host(n), wsman_peer.url(n)) for n in names],
                        _config(wsman_peer, concurrency=2, processes=2), wsman_peer.password,
                        progress=ticks.append)
    assert [o.host.name for o in results] == names
    assert sorted(ticks) == [False] * 8 + [True], [(o.host.name, o.failure) for o in results]
    assert results[-1].failure is not None and results[-1].failure.reason == "access_denied"
    assert not mark.exists()


def test_probe_all_stops_its_workers_when_asked(wsman_peer):
    names = [f"R-HALT-{i}" for i in range(4)]
    for name in names:
        wsman_peer.set_host(name, HostBehavior(stall=True))
    stop = threading.Event()
    threading.Timer(1.5, stop.set).start()
    started = time.monotonic()
    with pytest.raises(InterruptedError):
        probe_all([Target(Host(n), wsman_peer.url(n)) for n in names],
                  _config(wsman_peer, concurrency=2, processes=2), wsman_peer.password,
                  stop=stop)
    assert time.monotonic() - started < 1.5 + 5 + 2  # stopped, not waited out to the deadline


def test_endpoint_defaults_to_https_5986_on_the_fqdn():
    config = WinrmConfig(username="u")
    assert endpoint(Host("EX1", fqdn="ex1.corp.example"), config) == \
        "https://ex1.corp.example:5986/wsman"
    assert endpoint(Host("EX1"), config, "https://jump:443/wsman") == "https://jump:443/wsman"


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        pytest.param(requests.exceptions.ConnectionError(
            "HTTPSConnectionPool: Failed to resolve 'ex1.corp.example' ([Errno -2] Name or "
            "service not known)"), "dns", id="dns"),
        pytest.param(requests.exceptions.ConnectionError("[Errno 111] Connection refused"),
                     "connect", id="refused"),
        pytest.param(requests.exceptions.SSLError("CERTIFICATE_VERIFY_FAILED"), "tls", id="tls"),
        pytest.param(winrm_errors.InvalidCredentialsError("rejected"), "auth", id="auth"),
        pytest.param(winrm_errors.WinRMTransportError("http", 403, "forbidden"), "access_denied",
                     id="http-403"),
        pytest.param(requests.exceptions.ReadTimeout("read timed out"), "timeout", id="timeout"),
        pytest.param(TimeoutError("timed out"), "timeout", id="socket-timeout"),
        pytest.param(requests.exceptions.ChunkedEncodingError("IncompleteRead"), "connect",
                     id="broken-mid-answer"),
        pytest.param(ProbeFailed("timeout", "deadline"), "timeout", id="deadline"),
        pytest.param(ValueError("odd"), "probe_error", id="anything-else"),
    ],
)
def test_failure_classes(error, reason):
    assert _classify(error)[0] == reason
    assert HINTS[reason]


@pytest.mark.parametrize(("exitcode", "how"), [
    pytest.param(-9, "killed by SIGKILL", id="signal"),
    pytest.param(1, "exit code 1", id="exit-code"),
    pytest.param(None, "its output closed while it still ran", id="still-running"),
])
def test_a_dead_worker_is_named_with_how_it_ended(exitcode, how):
    message = str(WorkerDied(3, exitcode))
    assert message.startswith(f"probe worker process 3 ended without its results ({how})")
    assert "[winrm] processes = 1" in message
