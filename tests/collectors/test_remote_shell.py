"""One host's run through the WinRM seam: fake shells, no peer, no network.

``probe_host`` and ``probe_all`` take an ``open_shell`` factory (pywinrm's in production). The
fakes here answer, fail or block as a server would, so the classification of failures, the
retries and the deadlines are tested in milliseconds; tests/collectors/test_remote.py runs the
same paths end to end through pywinrm and the WS-Man peer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
import requests
from winrm import exceptions as winrm_errors

from collectors.probe import compact, probe_script
from collectors.remote import (
    STDIN_BOOTSTRAP,
    STDIN_COMMAND,
    STILL_RUNNING,
    Output,
    ProbeFailed,
    Target,
    WinrmConfig,
    _classify,
    endpoint,
    probe_all,
    probe_host,
    run_probe_once,
)
from compliance.failures import HINTS
from compliance.models import Host, Observation
from tests.collectors.documents import dumps, probe_document
from tests.peers.wsman import decode_command_line

URL = "https://ex01.corp.example:5986/wsman"
PASSWORD = "S3cret-Pa55"
DEADLINE = 1.0  # seconds, per host: the probe's own cut is a quarter earlier


def _config(**overrides: object) -> WinrmConfig:
    settings: dict[str, object] = {"username": "CORP\\svc-probe", "deadline_seconds": DEADLINE,
                                   "retries": 0, "backoff_seconds": 0.01}
    settings.update(overrides)
    return WinrmConfig(**settings)  # type: ignore[arg-type]


def _document(name: str = "EX01") -> bytes:
    return dumps(probe_document(name, "15.1.2176.9", collected_at=datetime.now(UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ"))).encode()


def _until_cut(cut_at: float) -> Output:
    """Block as a read does until the socket under it is shut at ``cut_at``, then fail as it."""
    time.sleep(max(0.0, cut_at - time.monotonic()))
    raise requests.exceptions.ConnectionError("('Connection aborted.', OSError(107))")


@dataclass
class FakeShell:
    answer: Callable[[FakeShell], Output]
    cut_at: float
    on_send: Callable[[FakeShell], None] = lambda shell: None
    commands: list[str] = field(default_factory=list)
    stdin: list[bytes] = field(default_factory=list)
    closed: list[tuple[str | None, float]] = field(default_factory=list)
    receives: int = 0

    def run(self, command_line: str) -> str:
        self.commands.append(command_line)
        return "CMD-1"

    def send(self, command_id: str, data: bytes) -> None:
        assert command_id == "CMD-1" and self.commands and not self.stdin
        self.on_send(self)
        self.stdin.append(data)

    def receive(self, command_id: str) -> Output:
        assert command_id == "CMD-1"
        self.receives += 1
        return self.answer(self)

    def close(self, command_id: str | None, cut_at: float) -> None:
        self.closed.append((command_id, cut_at))


@dataclass
class Opener:
    """An ``open_shell`` factory: ``fail`` (when given) raises on opening, the shells answer
    with ``answer``; every shell opened is kept."""

    answer: Callable[[FakeShell], Output] = lambda shell: (_document(), b"", 0, True)
    fail: Callable[[int], BaseException | None] = lambda attempt: None
    on_send: Callable[[FakeShell], None] = lambda shell: None
    shells: list[FakeShell] = field(default_factory=list)
    attempts: int = 0

    def __call__(self, url: str, config: WinrmConfig, password: str, cut_at: float) -> FakeShell:
        assert (url, password) == (URL, PASSWORD)
        self.attempts += 1
        error = self.fail(self.attempts)
        if error is not None:
            raise error
        shell = FakeShell(self.answer, cut_at, self.on_send)
        self.shells.append(shell)
        return shell


def _probe(opener: Opener, **config: object) -> Observation:
    return probe_host(Target(Host("EX01"), URL), _config(**config), PASSWORD, open_shell=opener)


def test_a_document_in_parts_becomes_the_observation_and_the_shell_is_deleted():
    document = _document()
    parts = iter([(document[:100], b"", -1, False), STILL_RUNNING,
                  (document[100:], b"", 0, True)])
    opener = Opener(answer=lambda shell: next(parts))
    started = time.monotonic()
    observation = _probe(opener, deadline_seconds=120)
    assert observation.failure is None, observation.failure
    assert observation.exsetup_version == "15.1.2176.9"
    (shell,) = opener.shells
    # A short constant command line; the probe itself goes to its standard input, as ASCII.
    assert shell.commands == [STDIN_COMMAND]
    assert decode_command_line(shell.commands[0]) == STDIN_BOOTSTRAP
    assert shell.stdin == [compact(probe_script()).encode("ascii")]
    assert shell.receives == 3
    # A finished command is not signalled; the shell is deleted, with time up to the deadline
    # (its exchanges were cut 5 s earlier: the time kept for this cleanup).
    ((command, cleanup_cut),) = shell.closed
    assert command is None
    assert started + 120 - 0.5 < cleanup_cut <= time.monotonic() + 120
    assert cleanup_cut - shell.cut_at == pytest.approx(5.0)


def _raise(error: BaseException) -> Callable[[int], BaseException]:
    return lambda attempt: error


def _answer(output: Output) -> Callable[[FakeShell], Output]:
    return lambda shell: output


@pytest.mark.parametrize(("opener", "reason", "detail"), [
    pytest.param(Opener(fail=_raise(winrm_errors.InvalidCredentialsError("the specified "
                 "credentials were rejected by the server"))), "auth", "rejected", id="auth"),
    pytest.param(Opener(fail=_raise(winrm_errors.WinRMTransportError("http", 401, ""))), "auth",
                 "401", id="http-401"),
    pytest.param(Opener(fail=_raise(winrm_errors.WSManFaultError(
        500, "Bad HTTP response returned from server. Code 500", "", "Access is denied.",
        wsman_fault_code=5))), "access_denied", "Access is denied", id="access-denied"),
    pytest.param(Opener(fail=_raise(winrm_errors.WinRMTransportError("http", 403, ""))),
                 "access_denied", "403", id="http-403"),
    pytest.param(Opener(fail=_raise(winrm_errors.WSManFaultError(
        500, "Bad HTTP response", "", "The maximum number of concurrent shells for this user "
        "has been exceeded.", wsman_fault_code=2150858843))), "probe_error",
        "WS-Management fault", id="other-fault"),
    pytest.param(Opener(fail=_raise(requests.exceptions.SSLError(
        "CERTIFICATE_VERIFY_FAILED"))), "tls", "CERTIFICATE_VERIFY_FAILED", id="tls"),
    pytest.param(Opener(fail=_raise(requests.exceptions.ConnectionError(
        "Failed to resolve 'ex01.corp.example' ([Errno -2] Name or service not known)"))), "dns",
        "Failed to resolve", id="dns"),
    pytest.param(Opener(fail=_raise(requests.exceptions.ConnectionError(
        "[Errno 111] Connection refused"))), "connect", "refused", id="refused"),
    pytest.param(Opener(fail=_raise(requests.exceptions.ReadTimeout("read timed out"))),
                 "timeout", "read timed out", id="read-timeout"),
    pytest.param(Opener(answer=_answer((b"Exchange is not installed here\r\n", b"", 0, True))),
                 "bad_output", "", id="not-a-document"),
    pytest.param(Opener(answer=_answer((b"", b"Get-Command : The term 'ExSetup.exe' is not "
                                        b"recognized", 1, True))),
                 "probe_error", "probe exited with 1: Get-Command", id="probe-exit-code"),
])
def test_failures_are_classified_with_their_hint(opener, reason, detail):
    observation = _probe(opener)
    failure = observation.failure
    assert failure is not None and failure.reason == reason, failure
    assert failure.hint == HINTS[reason]
    assert detail in failure.detail
    # What the host said names its endpoint; a bad document is named by what is wrong in it.
    assert failure.detail.startswith(URL) or reason == "bad_output"
    assert observation.exsetup_version is None
    for shell in opener.shells:  # a shell that was opened is deleted
        assert len(shell.closed) == 1


def test_the_password_never_appears_in_a_failure():
    opener = Opener(fail=_raise(winrm_errors.InvalidCredentialsError(
        f"rejected user CORP\\svc-probe with password {PASSWORD}")))
    failure = _probe(opener).failure
    assert failure is not None and failure.reason == "auth"
    assert PASSWORD not in failure.detail + failure.hint and "***" in failure.detail


def test_connection_failures_are_retried_and_nothing_else_is():
    flaky = Opener(fail=lambda attempt: requests.exceptions.ConnectionError(
        "[Errno 111] Connection refused") if attempt == 1 else None)
    observation = _probe(flaky, retries=2)
    assert observation.failure is None and flaky.attempts == 2
    rejected = Opener(fail=_raise(winrm_errors.InvalidCredentialsError("rejected")))
    assert _probe(rejected, retries=2).failure is not None
    assert rejected.attempts == 1  # the same password again would only lock the account


def test_plain_http_is_refused_before_any_shell_is_opened():
    opener = Opener()
    observation = probe_host(Target(Host("EX01"), "http://ex01.corp.example:5985/wsman"),
                             _config(), PASSWORD, open_shell=opener)
    assert observation.failure is not None and "plain HTTP" in observation.failure.detail
    assert opener.attempts == 0


def test_a_blocked_read_is_cut_at_the_deadline_and_the_shell_still_deleted():
    opener = Opener(answer=lambda shell: _until_cut(shell.cut_at))
    started = time.monotonic()
    observation = _probe(opener, retries=2)
    elapsed = time.monotonic() - started
    failure = observation.failure
    assert failure is not None and failure.reason == "timeout", failure
    assert "cut at the per-host deadline" in failure.detail
    assert opener.attempts == 1  # a deadline is not retried
    (shell,) = opener.shells
    assert shell.cut_at - started == pytest.approx(DEADLINE * 3 / 4, abs=0.05)
    assert DEADLINE * 3 / 4 <= elapsed < DEADLINE
    # Not finished: the command is stopped, then the shell deleted, within the deadline.
    ((command, cleanup_cut),) = shell.closed
    assert command == "CMD-1" and cleanup_cut - started == pytest.approx(DEADLINE, abs=0.05)


def test_a_probe_that_never_finishes_is_ended_at_the_deadline():
    def still_running(shell: FakeShell) -> Output:
        time.sleep(0.05)  # the server's OperationTimeout, shortened
        return STILL_RUNNING

    opener = Opener(answer=still_running)
    started = time.monotonic()
    observation = _probe(opener, retries=2)
    failure = observation.failure
    assert failure is not None and failure.reason == "timeout", failure
    assert "still running" in failure.detail and opener.attempts == 1
    assert time.monotonic() - started < DEADLINE
    assert opener.shells[0].receives > 5 and opener.shells[0].closed[0][0] == "CMD-1"


def test_a_send_blocked_until_the_cut_ends_the_host_at_its_deadline():
    def blocked(shell: FakeShell) -> None:  # a server that never takes the probe's input
        _until_cut(shell.cut_at)

    opener = Opener(on_send=blocked)
    started = time.monotonic()
    observation = _probe(opener, retries=2)
    failure = observation.failure
    assert failure is not None and failure.reason == "timeout", failure
    assert "cut at the per-host deadline" in failure.detail and opener.attempts == 1
    assert DEADLINE * 3 / 4 <= time.monotonic() - started < DEADLINE
    (shell,) = opener.shells
    assert shell.receives == 0  # nothing is read before the probe has been sent whole
    ((command, cleanup_cut),) = shell.closed  # the command is stopped, the shell deleted
    assert command == "CMD-1" and cleanup_cut - started == pytest.approx(DEADLINE, abs=0.05)


@pytest.mark.parametrize("size", [100, 10_500, 40_000, 1_000_000])
def test_the_command_line_is_short_whatever_the_scripts_size(size):
    script = ("Write-Output 1\n" * size)[:size]
    opener = Opener()
    out, _err, code = run_probe_once(URL, _config(), PASSWORD, script, time.monotonic() + 10,
                                     opener)
    assert code == 0 and out
    (shell,) = opener.shells
    assert shell.commands == [STDIN_COMMAND] and len(STDIN_COMMAND) < 1_000
    assert shell.stdin == [script.encode("ascii")]


def test_the_compacted_probe_is_ascii():
    # The probe travels on standard input, which PowerShell decodes in the console's code page:
    # only ASCII reads the same in every one of them.
    script = compact(probe_script())
    offending = sorted({c for c in script if not c.isascii()})
    assert not offending, f"collectors/probe.ps1 has non-ASCII characters: {offending}"


def test_a_script_that_is_not_ascii_is_refused_before_any_shell_is_opened():
    opener = Opener()
    with pytest.raises(ProbeFailed, match="not ASCII"):
        run_probe_once(URL, _config(), PASSWORD, "Write-Output 'caf\u00e9'\n",
                       time.monotonic() + 10, opener)
    assert opener.attempts == 0


def test_no_shell_is_opened_once_the_deadline_has_passed():
    opener = Opener()
    with pytest.raises(ProbeFailed, match="deadline reached before connecting"):
        run_probe_once(URL, _config(), PASSWORD, "script", time.monotonic() - 1, opener)
    assert opener.attempts == 0


def test_probe_all_keeps_order_reports_progress_and_bounds_concurrency():
    lock = threading.Lock()
    running, most = 0, 0

    def answer(shell: FakeShell) -> Output:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.02)
        with lock:
            running -= 1
        return _document(), b"", 0, True

    def fail(attempt: int) -> BaseException | None:
        return winrm_errors.InvalidCredentialsError("rejected") if attempt == 5 else None

    opener = Opener(answer=answer, fail=fail)
    ticks: list[bool] = []
    targets = [Target(Host(f"EX{i:02d}"), URL) for i in range(12)]
    results = probe_all(targets, _config(concurrency=3), PASSWORD, progress=ticks.append,
                        open_shell=opener)
    assert [o.host.name for o in results] == [t.host.name for t in targets]
    assert sorted(ticks) == [False] * 11 + [True]
    assert sum(o.failure is not None for o in results) == 1
    assert 1 < most <= 3


def test_probe_all_stops_when_asked():
    release = threading.Event()

    def hang(attempt: int) -> None:  # opening never ends before the test releases it
        release.wait(30)

    opener = Opener(fail=hang)
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    try:
        with pytest.raises(InterruptedError):
            probe_all([Target(Host(f"EX{i}"), URL) for i in range(4)],
                      _config(concurrency=2, deadline_seconds=60), PASSWORD, stop=stop,
                      open_shell=opener)
    finally:
        release.set()
    assert time.monotonic() - started < 0.2 + 1


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
