"""Self-tests: the WS-Management peer (tests/peers/wsman.py) against the real pywinrm client.

Also pins down what pywinrm raises for each failure the peer can stage; the collector's tests rely on
these. Every session is built with ``ca_trust_path`` (the default follows REQUESTS_CA_BUNDLE).
"""

from __future__ import annotations

import base64
import json
import signal
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
import winrm
from winrm.exceptions import InvalidCredentialsError, WinRMTransportError, WSManFaultError
from winrm.protocol import Protocol

from collectors.probe import compact, probe_script
from tests.peers.slapd import closed_port
from tests.peers.wsman import (
    CMD_LINE_LIMIT,
    CREATE_PROCESS_LIMIT,
    DEFAULT_HOST,
    DEFAULT_USERS,
    STDIN_BOOTSTRAP,
    HostBehavior,
    WsmanPeer,
    decode_command_line,
    start_fleet_process,
    start_wsman,
)

pytestmark = pytest.mark.integration

PROBE = "$ErrorActionPreference = 'Stop'\nGet-ExchangeServer | ConvertTo-Json -Depth 4\n"
DOC = json.dumps({"server": "EX01", "build": "15.2.986.14", "note": "café ✓"})
FULL_RUN = ["Create", "Command", "Receive", "Signal", "Delete"]


def session(peer: WsmanPeer, host: str, *, transport: str = "ntlm", scheme: str = "https", bad_tls: bool = False,
            password: str | None = None, **kwargs: Any) -> winrm.Session:
    """A pywinrm Session on ``peer.url(host)``. winrm.Session cuts every URL back to ``.../wsman``
    (Session._build_url), so the per-host path is put back on the transport."""
    url = peer.url(host, scheme=scheme, bad_tls=bad_tls)
    if scheme == "http":
        kwargs.setdefault("message_encryption", "always")
    made = winrm.Session(url, auth=(peer.username, peer.password if password is None else password),
                         transport=transport, server_cert_validation="validate", ca_trust_path=str(peer.ca_file),
                         **kwargs)
    made.protocol.transport.endpoint = url
    return made


def unique(name: str) -> str:
    return f"{name}-{time.monotonic_ns()}"


# ---- the three ways in


@pytest.mark.parametrize(("transport", "scheme"), [("basic", "https"), ("ntlm", "https"), ("ntlm", "http")])
def test_run_ps_returns_stdout_stderr_and_exit_code(wsman_peer: WsmanPeer, transport: str, scheme: str) -> None:
    host = unique(f"ex-{transport}-{scheme}")
    wsman_peer.set_host(host, HostBehavior(stdout=DOC, stderr="warning: slow", exit_code=3))

    result = session(wsman_peer, host, transport=transport, scheme=scheme).run_ps(PROBE)

    assert result.std_out.decode("utf-8") == DOC
    assert result.std_err == b"warning: slow"
    assert result.status_code == 3
    assert wsman_peer.scripts(host) == [PROBE]
    assert wsman_peer.requests(host) == FULL_RUN
    assert wsman_peer.errors() == []


def test_winrm_session_drops_the_host_path_protocol_keeps_it(tmp_path: Path) -> None:
    with start_wsman(tmp_path) as peer:  # its own peer: this test gives the default host a behaviour
        host = "ex-route"
        peer.set_host(host, HostBehavior(stdout="routed"))
        peer.set_host(DEFAULT_HOST, HostBehavior(stdout="default host"))

        plain = winrm.Session(peer.url(host), auth=(peer.username, peer.password), transport="ntlm",
                              ca_trust_path=str(peer.ca_file))
        assert plain.url == f"https://127.0.0.1:{peer.https_port}/wsman"  # the /<host> is gone
        assert plain.run_ps("1").std_out == b"default host"
        assert peer.scripts(DEFAULT_HOST) == ["1"]

        protocol = Protocol(peer.url(host), transport="ntlm", username=peer.username, password=peer.password,
                            ca_trust_path=str(peer.ca_file))
        shell = protocol.open_shell()
        command = protocol.run_command(shell, "powershell", ["-EncodedCommand",
                                                             base64.b64encode("2".encode("utf-16-le")).decode()])
        stdout, _stderr, code = protocol.get_command_output(shell, command)
        protocol.cleanup_command(shell, command)
        protocol.close_shell(shell)
        assert (stdout, code) == (b"routed", 0)
        assert peer.scripts(host) == ["2"]
        assert peer.open_shells() == 0


def test_decode_command_line_accepts_powershell_spellings() -> None:
    encoded = base64.b64encode("Get-Date\n".encode("utf-16-le")).decode()
    for flag in ("-encodedcommand", "-EncodedCommand", "-ENC", "-e", "-ec", "/EncodedCommand"):
        assert decode_command_line(f"powershell {flag} {encoded}") == "Get-Date\n"
    assert decode_command_line("powershell -NoProfile -NonInteractive -EncodedCommand " + encoded) == "Get-Date\n"
    assert decode_command_line("ipconfig /all") is None
    assert decode_command_line("powershell -EncodedCommand not-base64!") is None


def test_non_powershell_commands_are_recorded_verbatim(wsman_peer: WsmanPeer) -> None:
    host = unique("ex-cmd")
    wsman_peer.set_host(host, HostBehavior(stdout="x"))
    session(wsman_peer, host).run_cmd("ipconfig", ["/all"])
    assert wsman_peer.scripts(host) == ["ipconfig /all"]
    assert wsman_peer.commands(host) == ["ipconfig /all"]


# ---- command-line limits and standard input, as Windows has them


def protocol(peer: WsmanPeer, host: str, **kwargs: Any) -> Protocol:
    """pywinrm's Protocol on ``peer.url(host)`` (it keeps the host path), NTLM over HTTPS."""
    return Protocol(peer.url(host), transport="ntlm", username=peer.username, password=peer.password,
                    server_cert_validation="validate", ca_trust_path=str(peer.ca_file), **kwargs)


def encoded(script: str) -> str:
    return base64.b64encode(script.encode("utf-16-le")).decode("ascii")


def run_line(peer: WsmanPeer, host: str, command_line: str, **options: bool) -> tuple[bytes, bytes, int]:
    client = protocol(peer, host)
    shell = client.open_shell()
    command = client.run_command(shell, command_line, **options)
    answer = client.get_command_output(shell, command)
    client.cleanup_command(shell, command)
    client.close_shell(shell)
    return answer


def test_the_probe_as_one_encoded_command_line_is_refused_as_cmd_exe_refuses_it(wsman_peer: WsmanPeer) -> None:
    # The collector's old form: the whole compacted probe in one -EncodedCommand, through cmd.exe
    # (pywinrm's default). On Windows cmd.exe stops it at 8,191 characters: nothing runs.
    host = unique("ex-too-long")
    wsman_peer.set_host(host, HostBehavior(stdout=DOC))
    line = "powershell -NoProfile -NonInteractive -EncodedCommand " + encoded(compact(probe_script()))
    assert len(line) > 3 * CMD_LINE_LIMIT

    assert run_line(wsman_peer, host, line) == (b"", b"The command line is too long.\r\n", 1)
    assert wsman_peer.scripts(host) == []  # nothing ran
    assert wsman_peer.commands(host) == [line]
    assert wsman_peer.options(host)[0]["WINRS_SKIP_CMD_SHELL"] == "FALSE"
    assert wsman_peer.errors() == []


@pytest.mark.parametrize(("skip_cmd_shell", "limit", "refusal"), [
    pytest.param(False, CMD_LINE_LIMIT, b"The command line is too long.\r\n", id="cmd.exe"),
    pytest.param(True, CREATE_PROCESS_LIMIT, b"The filename or extension is too long.\r\n", id="CreateProcess"),
])
def test_command_line_limits(wsman_peer: WsmanPeer, skip_cmd_shell: bool, limit: int, refusal: bytes) -> None:
    host = unique("ex-limit")
    wsman_peer.set_host(host, HostBehavior(stdout="ran"))
    longest = "echo " + "x" * (limit - len("echo "))
    assert run_line(wsman_peer, host, longest, skip_cmd_shell=skip_cmd_shell) == (b"ran", b"", 0)
    assert run_line(wsman_peer, host, longest + "x", skip_cmd_shell=skip_cmd_shell) == (b"", refusal, 1)
    assert wsman_peer.scripts(host) == [longest]


def bootstrap_line() -> str:
    return "powershell -NoProfile -NonInteractive -EncodedCommand " + encoded(STDIN_BOOTSTRAP)


def test_the_stdin_bootstrap_runs_the_script_sent_on_stdin(wsman_peer: WsmanPeer) -> None:
    host = unique("ex-stdin")
    wsman_peer.set_host(host, HostBehavior(stdout=DOC, runtime=0.3))
    script = compact(probe_script())
    client = protocol(wsman_peer, host, operation_timeout_sec=1, read_timeout_sec=2)
    shell = client.open_shell()
    command = client.run_command(shell, bootstrap_line(), skip_cmd_shell=True, console_mode_stdin=False)
    # Blocked reading stdin: a Receive is held for the OperationTimeout, then answered with the fault.
    started = time.perf_counter()
    with pytest.raises(winrm.exceptions.WinRMOperationTimeoutError):
        client.get_command_output_raw(shell, command)
    assert 0.9 <= time.perf_counter() - started < 1.5
    assert wsman_peer.scripts(host) == []

    client.send_command_input(shell, command, script[:5000].encode("ascii"))
    assert wsman_peer.scripts(host) == []  # stdin still open: the script has not started
    # The clock starts before the last Send: the peer starts the script's runtime when that
    # Send arrives, which is before the client sees its answer (started after it, the client
    # measured 0.29999 s once).
    started = time.perf_counter()
    client.send_command_input(shell, command, script[5000:].encode("ascii"), end=True)
    stdout, stderr, code = client.get_command_output(shell, command)
    assert 0.3 <= time.perf_counter() - started < 1.5  # its runtime counts from the end of stdin
    client.close_shell(shell)

    assert (stdout.decode(), stderr, code) == (DOC, b"", 0)
    assert wsman_peer.scripts(host) == [script]
    assert wsman_peer.requests(host) == ["Create", "Command", "Receive", "Send", "Send", "Receive", "Delete"]
    assert wsman_peer.options(host) == [{"WINRS_CONSOLEMODE_STDIN": "FALSE", "WINRS_SKIP_CMD_SHELL": "TRUE"}]
    assert wsman_peer.errors() == []


def test_stdin_is_read_in_the_shells_code_page(wsman_peer: WsmanPeer) -> None:
    # What PowerShell reads from stdin is decoded with the console's code page (437 unless the
    # shell asks otherwise): UTF-8 bytes of a non-ASCII script arrive garbled; ASCII never does.
    host = unique("ex-codepage")
    wsman_peer.set_host(host, HostBehavior(stdout="ok"))
    for script in ("Write-Output 'caf\u00e9'\n", "Write-Output 'cafe'\n"):
        client = protocol(wsman_peer, host)
        shell = client.open_shell()
        command = client.run_command(shell, bootstrap_line(), skip_cmd_shell=True, console_mode_stdin=False)
        client.send_command_input(shell, command, script.encode("utf-8"), end=True)
        assert client.get_command_output(shell, command)[0] == b"ok"
        client.close_shell(shell)
    assert wsman_peer.scripts(host) == ["Write-Output 'caf\u251c\u2310'\n", "Write-Output 'cafe'\n"]


def test_expected_script_is_checked_when_stdin_ends(wsman_peer: WsmanPeer) -> None:
    host = unique("ex-stdin-expected")
    wsman_peer.set_host(host, HostBehavior(stdout="ok"))
    wsman_peer.expected_script = PROBE
    try:
        client = protocol(wsman_peer, host)
        shell = client.open_shell()
        command = client.run_command(shell, bootstrap_line(), skip_cmd_shell=True, console_mode_stdin=False)
        with pytest.raises(WSManFaultError, match="not the expected probe"):
            client.send_command_input(shell, command, b"Remove-Item C:\\ -Recurse\n", end=True)
        client.close_shell(shell)
    finally:
        wsman_peer.expected_script = None
    assert wsman_peer.mismatches(host) == ["Remove-Item C:\\ -Recurse\n"]


def test_a_stalled_send_ends_in_read_timeout_and_a_reset_one_in_connection_error(wsman_peer: WsmanPeer) -> None:
    for behavior, error in [(HostBehavior(stall="Send"), requests.exceptions.ReadTimeout),
                            (HostBehavior(reset="Send"), requests.exceptions.ConnectionError)]:
        host = unique("ex-send")
        wsman_peer.set_host(host, behavior)
        client = protocol(wsman_peer, host, read_timeout_sec=2, operation_timeout_sec=1)
        shell = client.open_shell()
        command = client.run_command(shell, bootstrap_line(), skip_cmd_shell=True, console_mode_stdin=False)
        with pytest.raises(error):
            client.send_command_input(shell, command, b"1\n", end=True)
        assert wsman_peer.requests(host) == ["Create", "Command", "Send"]


# ---- output shapes


def test_multi_part_output_arrives_whole(wsman_peer: WsmanPeer) -> None:
    host = unique("ex-chunks")
    document = json.dumps({"items": list(range(2000))})
    wsman_peer.set_host(host, HostBehavior(stdout=document, chunks=5))

    result = session(wsman_peer, host).run_ps(PROBE)

    assert result.std_out.decode() == document
    assert wsman_peer.requests(host) == ["Create", "Command"] + ["Receive"] * 5 + ["Signal", "Delete"]


def test_operation_timeouts_are_retried_then_the_answer_arrives(wsman_peer: WsmanPeer) -> None:
    host = unique("ex-optimeout")
    wsman_peer.set_host(host, HostBehavior(stdout=DOC, operation_timeouts=3))

    result = session(wsman_peer, host).run_ps(PROBE)

    assert result.std_out.decode() == DOC
    assert wsman_peer.requests(host).count("Receive") == 4


def test_latency_delays_the_answer(wsman_peer: WsmanPeer) -> None:
    host = unique("ex-slow")
    wsman_peer.set_host(host, HostBehavior(stdout="late", latency=0.3))
    started = time.perf_counter()
    assert session(wsman_peer, host).run_ps(PROBE).std_out == b"late"
    assert 0.3 <= time.perf_counter() - started < 1.5


def test_expected_script_refuses_anything_else(wsman_peer: WsmanPeer) -> None:
    host = unique("ex-expected")
    wsman_peer.set_host(host, HostBehavior(stdout="ok"))
    wsman_peer.expected_script = PROBE
    try:
        assert session(wsman_peer, host).run_ps(PROBE).std_out == b"ok"
        with pytest.raises(WSManFaultError, match="not the expected probe"):
            session(wsman_peer, host).run_ps("Remove-Item C:\\ -Recurse")
    finally:
        wsman_peer.expected_script = None
    assert wsman_peer.mismatches(host) == ["Remove-Item C:\\ -Recurse"]
    assert wsman_peer.scripts(host) == [PROBE, "Remove-Item C:\\ -Recurse"]


# ---- failures, and what pywinrm raises for each


@pytest.mark.parametrize("transport", ["basic", "ntlm"])
def test_http_401_is_invalid_credentials(wsman_peer: WsmanPeer, transport: str) -> None:
    host = unique("ex-401")
    wsman_peer.set_host(host, HostBehavior(http_status=401))
    with pytest.raises(InvalidCredentialsError, match="credentials were rejected"):
        session(wsman_peer, host, transport=transport).run_ps(PROBE)


def test_http_403_is_a_transport_error_not_a_winrm_error(wsman_peer: WsmanPeer) -> None:
    host = unique("ex-403")
    wsman_peer.set_host(host, HostBehavior(http_status=403))
    with pytest.raises(WinRMTransportError, match="Code 403") as caught:
        session(wsman_peer, host).run_ps(PROBE)
    assert caught.value.code == 403
    assert not isinstance(caught.value, winrm.exceptions.WinRMError)


def test_access_denied_fault(wsman_peer: WsmanPeer) -> None:
    host = unique("ex-denied")
    wsman_peer.set_host(host, HostBehavior(fault="access_denied"))
    with pytest.raises(WSManFaultError, match="Access is denied") as caught:
        session(wsman_peer, host).run_ps(PROBE)
    assert caught.value.wsman_fault_code == 5
    assert caught.value.code == 500
    assert caught.value.fault_subcode == "w:AccessDenied"
    assert wsman_peer.requests(host) == ["Create"]
    assert wsman_peer.scripts(host) == []


def test_generic_fault(wsman_peer: WsmanPeer) -> None:
    host = unique("ex-fault")
    wsman_peer.set_host(host, HostBehavior(fault="generic"))
    with pytest.raises(WSManFaultError) as caught:
        session(wsman_peer, host).run_ps(PROBE)
    assert caught.value.wsman_fault_code not in (None, 5)


def test_unknown_host_is_http_404(wsman_peer: WsmanPeer) -> None:
    with pytest.raises(WinRMTransportError, match="Code 404"):
        session(wsman_peer, unique("never-set")).run_ps(PROBE)


@pytest.mark.parametrize(("transport", "scheme"), [("basic", "https"), ("ntlm", "https"), ("ntlm", "http")])
def test_wrong_password_is_invalid_credentials(wsman_peer: WsmanPeer, transport: str, scheme: str) -> None:
    host = unique("ex-badpw")
    wsman_peer.set_host(host, HostBehavior(stdout="secret"))
    with pytest.raises(InvalidCredentialsError):
        session(wsman_peer, host, transport=transport, scheme=scheme, password="wrong").run_ps(PROBE)
    assert wsman_peer.requests(host) == []


def test_plain_http_refuses_basic_and_unencrypted_ntlm(wsman_peer: WsmanPeer) -> None:
    host = unique("ex-plain")
    wsman_peer.set_host(host, HostBehavior(stdout="x"))
    with pytest.raises(InvalidCredentialsError):
        session(wsman_peer, host, transport="basic", scheme="http", message_encryption="auto").run_ps(PROBE)
    with pytest.raises(InvalidCredentialsError):
        session(wsman_peer, host, transport="ntlm", scheme="http", message_encryption="never").run_ps(PROBE)
    assert wsman_peer.requests(host) == []


def test_bad_tls_certificate_is_ssl_error(wsman_peer: WsmanPeer) -> None:
    host = unique("ex-badtls")
    wsman_peer.set_host(host, HostBehavior(stdout="x"))
    with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        session(wsman_peer, host, bad_tls=True).run_ps(PROBE)


def test_closed_port_is_connection_error(wsman_peer: WsmanPeer) -> None:
    url = f"https://127.0.0.1:{closed_port()}/wsman"
    client = winrm.Session(url, auth=(wsman_peer.username, wsman_peer.password), transport="ntlm",
                           ca_trust_path=str(wsman_peer.ca_file))
    with pytest.raises(requests.exceptions.ConnectionError, match="Connection refused"):
        client.run_ps(PROBE)


@pytest.mark.parametrize(("action", "scheme"), [("Receive", "https"), ("Command", "https"), ("Receive", "http")])
def test_reset_is_connection_error(wsman_peer: WsmanPeer, action: str, scheme: str) -> None:
    host = unique("ex-reset")
    wsman_peer.set_host(host, HostBehavior(stdout="x", reset=action))
    with pytest.raises(requests.exceptions.ConnectionError, match="Connection aborted"):
        session(wsman_peer, host, scheme=scheme).run_ps(PROBE)
    assert wsman_peer.requests(host)[-1] == action


def test_truncated_answer_is_chunked_encoding_error_not_connection_error(wsman_peer: WsmanPeer) -> None:
    host = unique("ex-truncate")
    wsman_peer.set_host(host, HostBehavior(stdout=DOC, truncate=True))
    with pytest.raises(requests.exceptions.ChunkedEncodingError, match="IncompleteRead") as caught:
        session(wsman_peer, host).run_ps(PROBE)
    assert not isinstance(caught.value, requests.exceptions.ConnectionError)


def test_stall_ends_in_read_timeout(wsman_peer: WsmanPeer) -> None:
    host = unique("ex-stall")
    wsman_peer.set_host(host, HostBehavior(stdout="never", stall=True))
    started = time.perf_counter()
    with pytest.raises(requests.exceptions.ReadTimeout, match="read timeout=2"):
        session(wsman_peer, host, read_timeout_sec=2, operation_timeout_sec=1).run_ps(PROBE)
    assert 1.9 <= time.perf_counter() - started < 4
    assert wsman_peer.requests(host) == ["Create", "Command", "Receive"]


def test_stop_releases_stalled_clients_and_custom_users(tmp_path: Path) -> None:
    users = {"LAB\\other-probe": "Other-Secret-2", "plain-user": "Plain-Secret-3"}
    peer = start_wsman(tmp_path, users=users)
    outcome: list[BaseException | None] = []
    try:
        assert (peer.username, peer.password) == ("LAB\\other-probe", "Other-Secret-2")
        peer.set_host("ok", HostBehavior(stdout="fine"))
        peer.set_host("stuck", HostBehavior(stall=True))
        for user, password in users.items():
            client = winrm.Session(peer.url("ok"), auth=(user, password), transport="ntlm",
                                   ca_trust_path=str(peer.ca_file))
            client.protocol.transport.endpoint = peer.url("ok")
            assert client.run_ps("1").std_out == b"fine"
        # The session-wide peer's user is not one of this peer's, even though they share NTLM_USER_FILE.
        user, password = next(iter(DEFAULT_USERS.items()))
        stranger = winrm.Session(peer.url("ok"), auth=(user, password), transport="ntlm",
                                 ca_trust_path=str(peer.ca_file))
        stranger.protocol.transport.endpoint = peer.url("ok")
        with pytest.raises(InvalidCredentialsError):
            stranger.run_ps("1")

        def stalled_client() -> None:
            try:
                session(peer, "stuck", read_timeout_sec=60, operation_timeout_sec=50).run_ps("1")
                outcome.append(None)
            except BaseException as error:
                outcome.append(error)

        worker = threading.Thread(target=stalled_client)
        worker.start()
        deadline = time.monotonic() + 5
        while "Receive" not in peer.requests("stuck") and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        started = time.perf_counter()
        peer.stop()
        stop_seconds = time.perf_counter() - started
    worker.join(timeout=10)
    assert stop_seconds < 2
    assert len(outcome) == 1
    # Only the peer going away ends it: refused, reset, or cut mid-body, depending on timing.
    assert isinstance(outcome[0], requests.exceptions.ConnectionError
                      | requests.exceptions.ChunkedEncodingError)


# ---- speed


def test_per_call_time_and_64_concurrent_hosts(wsman_peer: WsmanPeer) -> None:
    host = unique("ex-speed")
    wsman_peer.set_host(host, HostBehavior(stdout=DOC))
    timings: dict[str, float] = {}
    for transport, scheme in [("ntlm", "https"), ("basic", "https"), ("ntlm", "http")]:
        samples = []
        for _ in range(20):
            client = session(wsman_peer, host, transport=transport, scheme=scheme)
            started = time.perf_counter()
            client.run_ps(PROBE)
            samples.append(time.perf_counter() - started)
        timings[f"{transport}/{scheme}"] = statistics.median(samples)

    hosts = {unique(f"ex-par-{index:02d}"): HostBehavior(stdout=DOC, latency=0.5) for index in range(64)}
    wsman_peer.set_hosts(hosts)
    with ThreadPoolExecutor(max_workers=64) as pool:
        started = time.perf_counter()
        results = list(pool.map(lambda name: session(wsman_peer, name).run_ps(PROBE), hosts))
        concurrent_seconds = time.perf_counter() - started

    print("\nWS-Man peer: median run_ps " + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in timings.items())
          + f"; 64 concurrent run_ps (NTLM/HTTPS, latency 0.5 s) in {concurrent_seconds:.2f} s")
    assert all(result.std_out.decode() == DOC for result in results)
    assert max(timings.values()) < 0.15  # ~245 ms per call would mean Nagle is back
    # Serialised it would take 32 s; ~1 s here is the client GIL, more on a loaded machine.
    assert 0.5 <= concurrent_seconds < 12.0


# ---- the peer in its own process


def test_fleet_process(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.json"
    fleet.write_text(json.dumps({"EX01": {"stdout": DOC, "exit_code": 0}, "EX02": {"http_status": 401}}))
    process, ready = start_fleet_process(fleet)
    try:
        assert set(ready) >= {"pid", "https_port", "http_port", "bad_tls_port", "ca_file", "username", "password"}
        url = f"https://127.0.0.1:{ready['https_port']}/wsman/EX01"
        client = winrm.Session(url, auth=(ready["username"], ready["password"]), transport="ntlm",
                               ca_trust_path=ready["ca_file"])
        client.protocol.transport.endpoint = url
        assert client.run_ps(PROBE).std_out.decode() == DOC
        client.protocol.transport.endpoint = url.replace("EX01", "ex02")  # names are case-insensitive
        with pytest.raises(InvalidCredentialsError):
            client.run_ps(PROBE)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0


def test_pywinrm_retries_operation_timeouts_forever(tmp_path: Path) -> None:
    """There is no overall bound in pywinrm: only the peer going away ends this run_ps."""
    outcome: list[BaseException | None] = []
    with start_wsman(tmp_path) as peer:
        peer.set_host("busy", HostBehavior(stdout="never", operation_timeouts=10**9, operation_timeout_delay=0.02))

        def client() -> None:
            try:
                session(peer, "busy", read_timeout_sec=2, operation_timeout_sec=1).run_ps("1")
                outcome.append(None)
            except BaseException as error:
                outcome.append(error)

        worker = threading.Thread(target=client)
        worker.start()
        time.sleep(0.6)
        receives = peer.requests("busy").count("Receive")
    worker.join(timeout=10)
    assert receives >= 10
    assert len(outcome) == 1
    # The peer closing mid-exchange surfaces as a refused/reset connection or, when it closes
    # while a response body is in flight, as a truncated body: both mean "the peer went away".
    went_away = (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError)
    assert isinstance(outcome[0], went_away), outcome[0]
