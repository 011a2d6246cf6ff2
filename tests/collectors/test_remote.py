"""The WinRM probe runner end to end: transports, deadlines, failures (real pywinrm, WS-Man peer).

The unit tests of classification and deadlines go through the seam, with fake shells:
tests/collectors/test_remote_shell.py.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from collectors.probe import compact, probe_script
from collectors.remote import STDIN_COMMAND, Target, WinrmConfig, probe_all, probe_host
from compliance.models import Host
from tests.collectors.documents import dumps, probe_document
from tests.peers.wsman import CMD_LINE_LIMIT, HostBehavior

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


def test_the_real_probe_runs_through_windows_command_line_limits(wsman_peer):
    # The peer refuses, as cmd.exe does, any command line over 8,191 characters; the compacted
    # probe (~10,500 characters, ~28,000 as one -EncodedCommand) travels on standard input.
    name = "R-STDIN"
    script = compact(probe_script())
    assert len(script) > 10_000
    wsman_peer.set_host(name, _document(name))
    wsman_peer.expected_script = script
    try:
        obs = probe_host(Target(Host(name), wsman_peer.url(name)), _config(wsman_peer),
                         wsman_peer.password)
    finally:
        wsman_peer.expected_script = None
    assert obs.failure is None, obs.failure
    assert obs.exsetup_version == "15.1.2176.9"
    assert wsman_peer.scripts(name) == [script] and wsman_peer.mismatches(name) == []
    assert wsman_peer.commands(name) == [STDIN_COMMAND]
    assert len(STDIN_COMMAND) < 1_000 < CMD_LINE_LIMIT
    (options,) = wsman_peer.options(name)
    assert options["WINRS_SKIP_CMD_SHELL"] == "TRUE"  # no cmd.exe at all
    assert options["WINRS_CONSOLEMODE_STDIN"] == "FALSE"  # stdin is a pipe, for $input
    assert wsman_peer.requests(name) == ["Create", "Command", "Send", "Receive", "Delete"]


def test_a_stalled_send_is_cut_at_the_deadline(wsman_peer):
    name = "R-SEND-STALL"
    wsman_peer.set_host(name, replace(_document(name), stall="Send"))
    started = time.monotonic()
    obs = probe_host(Target(Host(name), wsman_peer.url(name)),
                     _config(wsman_peer, deadline_seconds=3, read_timeout_seconds=10,
                             operation_timeout_seconds=5, retries=2, backoff_seconds=0.1),
                     wsman_peer.password)
    elapsed = time.monotonic() - started
    assert obs.failure is not None and obs.failure.reason == "timeout", obs.failure
    assert "deadline" in obs.failure.detail
    assert elapsed < 3 + 0.5, elapsed  # the cut, not the 10 s read timeout, ended it
    # Cut before the deadline, leaving time to stop the command and delete the shell.
    assert wsman_peer.requests(name) == ["Create", "Command", "Send", "Signal", "Delete"]


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


def test_a_probe_running_past_the_operation_timeout_is_asked_again(wsman_peer):
    # As Windows does, the peer holds each Receive for the OperationTimeout (1 s here), then
    # answers the OperationTimeout fault; the probe's output comes with the Receive after 2.5 s.
    name = "R-RUNTIME"
    wsman_peer.set_host(name, replace(_document(name), runtime=2.5))
    started = time.monotonic()
    obs = probe_host(Target(Host(name), wsman_peer.url(name)),
                     _config(wsman_peer, operation_timeout_seconds=1), wsman_peer.password)
    assert obs.failure is None, obs.failure
    assert obs.exsetup_version == "15.1.2176.9"
    assert 2.5 <= time.monotonic() - started < 2.5 + 2
    assert wsman_peer.requests(name) == ["Create", "Command", "Send"] + ["Receive"] * 3 + ["Delete"]


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


def test_probe_all_stops_when_asked(wsman_peer):
    names = [f"R-HALT-{i}" for i in range(4)]
    for name in names:
        wsman_peer.set_host(name, HostBehavior(stall=True))
    stop = threading.Event()
    threading.Timer(1.5, stop.set).start()
    started = time.monotonic()
    with pytest.raises(InterruptedError):
        probe_all([Target(Host(n), wsman_peer.url(n)) for n in names],
                  _config(wsman_peer, concurrency=2), wsman_peer.password, stop=stop)
    assert time.monotonic() - started < 1.5 + 2  # stopped, not waited out to the deadline
