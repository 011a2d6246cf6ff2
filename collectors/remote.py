"""Run the read-only probe on each server over WinRM (pywinrm): bounded and concurrent.

Every host yields an ``Observation``. A failure becomes one too, classified as ``dns``,
``connect``, ``tls``, ``auth``, ``access_denied``, ``timeout``, ``probe_error`` or
``bad_output``, with a one-line fix hint. pywinrm's own loop retries OperationTimeout faults
forever, and its read timeout bounds one HTTP read only. So the shell, command, send and
receive steps are driven here (``run_probe_once``), with an overall deadline per host.

How the probe travels: the command line is a short constant, ``STDIN_COMMAND`` (PowerShell
running ``STDIN_BOOTSTRAP``: read the whole of standard input, run it as a script block),
started without cmd.exe (``WINRS_SKIP_CMD_SHELL``); the probe itself (~10,500 characters,
ASCII) follows on the command's standard input in one WS-Man Send. As one
``-EncodedCommand`` (~28,000 characters) it would pass neither cmd.exe's 8,191-character
command line nor, with a larger probe, CreateProcess's 32,767; standard input has no such
limit (pywinrm issues #87 and #184).

One host's exchanges go through a ``Shell``, opened by an injected factory (``open_shell``,
as ``directory.discover`` takes ``connect``): ``open_winrm_shell`` in production, fakes in
the unit tests of classification and deadlines; the WS-Man test peer serves the end-to-end
tests. A shell raises the libraries' own errors, translated once, by ``_classify``:

    winrm InvalidCredentialsError, AuthenticationError, WinRMTransportError 401  -> auth
    winrm WSManFaultError code 5 / "Access is denied", WinRMTransportError 403   -> access_denied
    other WSManFaultError, WinRMError                                            -> probe_error
    other WinRMTransportError, requests ConnectionError, ChunkedEncodingError    -> connect
    requests ConnectionError naming a failed name lookup                         -> dns
    requests SSLError, ssl.SSLError                                              -> tls
    requests Timeout, TimeoutError; any error once the host's cut has passed     -> timeout
    anything else                                                                -> probe_error

The deadline holds at the socket level: every connection a host's probe opens is shut down
when its time is up (``_Cutoff``), so a read blocked on a server that answers a byte at a time
returns at once. Every host runs on a daemon thread of this process (``probe_all``; a probe
costs ~10 ms of CPU and waits seconds to a minute, so threads keep up with thousands of
servers: see bench/collection.py), and a host whose thread is still busy shortly after its
deadline anyway (a name lookup that hangs) is recorded as ``timeout`` and left behind: nothing
keeps the run, or the process, past the deadline.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import math
import queue
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import requests
from requests.adapters import DEFAULT_POOLBLOCK, HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from winrm import exceptions as winrm_errors
from winrm.protocol import Protocol as WsmanProtocol
from winrm.transport import Transport

from collectors.probe import compact, parse_document, probe_script
from compliance.failures import HINTS, TRANSIENT
from compliance.models import Failure, Host, Observation

log = logging.getLogger(__name__)

SOURCE = "winrm"
# The last seconds of each host's deadline (this, or a quarter of it if less) are kept for
# closing the probe's shell on the server: the probe itself is cut before them.
CLEANUP_SECONDS = 5.0
# How long past its deadline a host's thread may stay busy before the run goes on without it:
# the socket cut ends every exchange at the deadline, so only what no socket holds is left.
ABANDON_AFTER_SECONDS = 2.0


@dataclass(frozen=True)
class WinrmConfig:
    username: str
    transport: str = "ntlm"  # ntlm (default), kerberos, basic (HTTPS only)
    scheme: str = "https"
    port: int = 5986
    allow_http: bool = False  # plain HTTP, only with NTLM message encryption
    ca_file: str | None = None
    deadline_seconds: float = 120.0
    read_timeout_seconds: int = 30
    operation_timeout_seconds: int = 20
    concurrency: int = 32
    retries: int = 2
    backoff_seconds: float = 1.0


@dataclass(frozen=True)
class Target:
    """A host to probe and where: the inventory may override the endpoint."""

    host: Host
    url: str


class ProbeFailed(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


class ConfigError(ValueError):
    """The WinRM settings cannot be used as given."""


# What a shell's ``receive`` gives: stdout and stderr since the last call, the exit code (-1
# until done), and whether the command is done.
Output = tuple[bytes, bytes, int, bool]
STILL_RUNNING: Output = (b"", b"", -1, False)


class Shell(Protocol):
    """A command shell opened on one host, as ``run_probe_once`` drives it: the WinRM seam.

    Each call may wait on the host, for one read timeout at most and never past the shell's
    cut (the ``cut_at`` it was opened with): then it raises. Errors are the libraries' own,
    left for ``_classify`` (see the module docstring).
    """

    def run(self, command_line: str) -> str:
        """Start ``command_line`` as a process of its own (no cmd.exe), its standard input a
        pipe; its command id."""
        ...

    def send(self, command_id: str, data: bytes) -> None:
        """Write ``data`` to the command's standard input, then close it."""
        ...

    def receive(self, command_id: str) -> Output:
        """The command's output since the last call; ``STILL_RUNNING`` when the server had
        nothing new within its OperationTimeout."""
        ...

    def close(self, command_id: str | None, cut_at: float) -> None:
        """Stop the command (when given: it has not finished) and delete the shell, every
        exchange cut at ``cut_at`` now; best effort, never raises."""
        ...


# open_shell(url, config, password, cut_at) -> a shell opened on the host at ``url``, every
# exchange (its opening included) cut at ``cut_at`` (``time.monotonic()``).
ShellFactory = Callable[[str, WinrmConfig, str, float], Shell]


def endpoint(host: Host, config: WinrmConfig, override: str | None = None) -> str:
    if override:
        return override
    name = host.fqdn or host.name
    return f"{config.scheme}://{name}:{config.port}/wsman"


def check_config(config: WinrmConfig, url: str) -> None:
    scheme = urlsplit(url).scheme.lower()
    if scheme == "http":
        if not config.allow_http:
            raise ConfigError(f"{url}: plain HTTP refused; use HTTPS or set allow_http = true "
                              "(then only NTLM with message encryption is used)")
        if config.transport not in ("ntlm", "kerberos"):
            raise ConfigError(f"{url}: over plain HTTP only NTLM or Kerberos (with message "
                              "encryption) is allowed, not Basic")
    elif scheme != "https":
        raise ConfigError(f"{url}: not an http(s) URL")


def _ca_path(config: WinrmConfig) -> str:
    # Always explicit: pywinrm's default follows REQUESTS_CA_BUNDLE from the environment.
    if config.ca_file:
        return config.ca_file
    default = ssl.get_default_verify_paths()
    return default.cafile or default.capath or "/etc/ssl/certs/ca-certificates.crt"


class _Cutoff:
    """A host's deadline at the socket level: at ``at`` (``time.monotonic()``) every connection
    opened under ``watching()`` is shut down, so a read blocked on it returns at once, however
    the server trickles its answer; one opened later is shut down as it is made.

    It keeps a duplicate of each socket: wrapping in TLS detaches the original socket object,
    and the connection must stay cuttable during the handshake too.
    """

    _active = threading.local()

    def __init__(self, at: float) -> None:
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._timer: threading.Timer | None = None
        self._round = 0
        self.fired = False
        self.move(at)

    def move(self, at: float) -> bool:
        """Cut at ``at`` from now on (connections already cut stay cut); whether it had fired."""
        with self._lock:
            fired = self.fired
            if self._timer is not None:
                self._timer.cancel()
            self._round += 1
            self.fired = False
            self._timer = threading.Timer(max(0.0, at - time.monotonic()), self._fire,
                                          args=(self._round,))
            self._timer.daemon = True
            self._timer.start()
            return fired

    def _fire(self, round_: int) -> None:
        with self._lock:
            if round_ != self._round:  # moved meanwhile
                return
            self.fired = True
            for sock in self._sockets:
                _shut(sock)

    @classmethod
    def watch(cls, sock: socket.socket) -> None:
        """Called with each new connection's socket, on the thread that made it."""
        cutoff: _Cutoff | None = getattr(cls._active, "cutoff", None)
        if cutoff is None:
            return
        copy = sock.dup()
        with cutoff._lock:
            cutoff._sockets.append(copy)
            if cutoff.fired:
                _shut(copy)

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        """Connections this thread opens meanwhile are cut with this cutoff."""
        previous = getattr(self._active, "cutoff", None)
        self._active.cutoff = self
        try:
            yield
        finally:
            self._active.cutoff = previous

    def close(self) -> None:
        with self._lock:
            self._round += 1
            if self._timer is not None:
                self._timer.cancel()
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed by the other side
        sock.shutdown(socket.SHUT_RDWR)


class _CutHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _Cutoff.watch(sock)
        return sock


class _CutHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _Cutoff.watch(sock)
        return sock


class _CutHTTPPool(HTTPConnectionPool):
    ConnectionCls = _CutHTTPConnection


class _CutHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _CutHTTPSConnection


class _CutAdapter(HTTPAdapter):
    """requests' adapter, its connections watched by the active ``_Cutoff``."""

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = DEFAULT_POOLBLOCK,
                         **pool_kwargs: Any) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _CutHTTPPool, "https": _CutHTTPSPool}


class _CutTransport(Transport):
    """pywinrm's transport, with ``_CutAdapter`` mounted before the session's first request."""

    def build_session(self) -> requests.Session:
        return _mount(super().build_session())

    def setup_encryption(self, session: requests.Session) -> None:
        # Called by build_session with the new session, which it uses for the first exchange.
        super().setup_encryption(_mount(session))


def _mount(session: requests.Session) -> requests.Session:
    if not isinstance(session.get_adapter("https://"), _CutAdapter):
        adapter = _CutAdapter()
        session.mount("https://", adapter)
        session.mount("http://", adapter)
    return session


def _protocol(url: str, config: WinrmConfig, password: str, read_timeout: int) -> WsmanProtocol:
    operation_timeout = max(1, min(config.operation_timeout_seconds, read_timeout - 1))
    common: dict[str, Any] = {
        "endpoint": url, "username": config.username, "password": password,
        "server_cert_validation": "validate", "ca_trust_path": _ca_path(config),
        "message_encryption": "always" if url.lower().startswith("http:") else "auto",
        "proxy": None, "service": "HTTP"}
    protocol = WsmanProtocol(transport=config.transport,  # type: ignore[arg-type]  # check_config
                             read_timeout_sec=max(read_timeout, operation_timeout + 1),
                             operation_timeout_sec=operation_timeout, **common)
    # The same transport, its connections cut at the deadline (Protocol builds its own).
    protocol.transport = _CutTransport(auth_method=config.transport,  # type: ignore[arg-type]
                                       read_timeout_sec=protocol.read_timeout_sec, **common)
    return protocol


_T = TypeVar("_T")


class _WinrmShell:
    """pywinrm's shell on one host; every connection it opens is cut at its cut (``_Cutoff``)."""

    def __init__(self, url: str, config: WinrmConfig, password: str, cut_at: float) -> None:
        self._url, self._config, self._password = url, config, password
        self._cut_at = cut_at
        self._read_timeout = max(2, min(config.read_timeout_seconds,
                                        math.ceil(cut_at - time.monotonic())))
        self._protocol = _protocol(url, config, password, self._read_timeout)
        self._cutoff = _Cutoff(cut_at)
        self._broken = False  # a connection failed or was cut: NTLM message encryption with it
        self._shell_id = ""

    def _call(self, step: Callable[[], _T], longest: int) -> _T:
        # No single HTTP read may wait past the cut (``_Cutoff`` ends trickled ones).
        self._protocol.transport.read_timeout_sec = max(1, min(
            longest, math.ceil(self._cut_at - time.monotonic())))
        with self._cutoff.watching():
            try:
                return step()
            except requests.exceptions.RequestException:
                self._broken = True
                raise

    def open(self) -> None:
        self._shell_id = self._call(self._protocol.open_shell, self._config.read_timeout_seconds)

    def run(self, command_line: str) -> str:
        # No cmd.exe: neither its 8,191-character limit nor its metacharacters apply. Standard
        # input is a pipe, not a console, as PowerShell's $input needs.
        return self._call(lambda: self._protocol.run_command(
            self._shell_id, command_line, console_mode_stdin=False, skip_cmd_shell=True),
            self._config.read_timeout_seconds)

    def send(self, command_id: str, data: bytes) -> None:
        self._call(lambda: self._protocol.send_command_input(
            self._shell_id, command_id, data, end=True), self._config.read_timeout_seconds)

    def receive(self, command_id: str) -> Output:
        try:
            return self._call(lambda: self._protocol.get_command_output_raw(
                self._shell_id, command_id), self._config.read_timeout_seconds)
        except winrm_errors.WinRMOperationTimeoutError:
            return STILL_RUNNING  # the server's way of saying "still running": ask again

    def close(self, command_id: str | None, cut_at: float) -> None:
        # Best effort and brief: a server that stalled or dropped the connection cannot be
        # cleaned up.
        try:
            self._broken |= self._cutoff.move(cut_at)
            self._cut_at = cut_at
            if self._broken:  # its connection is gone, and with it any NTLM message encryption
                self._protocol = _protocol(self._url, self._config, self._password,
                                           self._read_timeout)
            if command_id:
                self._call(lambda: self._protocol.cleanup_command(self._shell_id, command_id), 5)
            self._call(lambda: self._protocol.close_shell(self._shell_id), 5)
        except Exception as error:
            log.debug("cleanup of shell %s failed: %s", self._shell_id, error)
        finally:
            self._cutoff.close()

    def abandon(self) -> None:
        self._cutoff.close()


def open_winrm_shell(url: str, config: WinrmConfig, password: str, cut_at: float) -> Shell:
    """A shell opened with pywinrm on the host at ``url`` (the production ``ShellFactory``)."""
    shell = _WinrmShell(url, config, password, cut_at)
    try:
        shell.open()
    except BaseException:
        shell.abandon()  # no shell on the server to delete
        raise
    return shell


def _classify(error: BaseException) -> tuple[str, str]:
    text = str(error) or type(error).__name__
    if isinstance(error, ProbeFailed):
        return error.reason, error.detail
    if isinstance(error, winrm_errors.InvalidCredentialsError | winrm_errors.AuthenticationError):
        return "auth", text
    if isinstance(error, winrm_errors.WSManFaultError):
        code = str(getattr(error, "wsman_fault_code", ""))
        if code == "5" or "access is denied" in text.lower():
            return "access_denied", text
        return "probe_error", f"WS-Management fault: {text}"
    if isinstance(error, winrm_errors.WinRMTransportError):
        if getattr(error, "code", None) in (401,):
            return "auth", text
        if getattr(error, "code", None) in (403,):
            return "access_denied", text
        return "connect", text
    if isinstance(error, requests.exceptions.SSLError | ssl.SSLError):
        return "tls", text
    if isinstance(error, requests.exceptions.ChunkedEncodingError):
        return "connect", f"connection broken mid-answer: {text}"
    if isinstance(error, requests.exceptions.Timeout | socket.timeout | TimeoutError):
        return "timeout", text
    if isinstance(error, requests.exceptions.ConnectionError | ConnectionError):
        lowered = text.lower()
        if any(s in lowered for s in ("name or service not known", "nodename nor servname",
                                      "failed to resolve", "getaddrinfo", "name resolution")):
            return "dns", text
        if "timed out" in lowered:
            return "timeout", text
        return "connect", text
    if isinstance(error, winrm_errors.WinRMError):
        return "probe_error", text
    return "probe_error", f"{type(error).__name__}: {text}"


def _encoded_command(script: str) -> str:
    return "powershell -NoProfile -NonInteractive -EncodedCommand " + base64.b64encode(
        script.encode("utf-16-le")).decode("ascii")


# Reads the whole of standard input (the probe) and runs it as a script block (Ansible's
# bootstrap does the same). It prints nothing itself: the assignment has no output, so what
# reaches stdout is the probe's, its one JSON line. A constant: nothing is ever spliced in.
STDIN_BOOTSTRAP = "$stdinScript = $input | Out-String\n& ([scriptblock]::Create($stdinScript))\n"
STDIN_COMMAND = _encoded_command(STDIN_BOOTSTRAP)


def run_probe_once(url: str, config: WinrmConfig, password: str, script: str, deadline: float,
                   open_shell: ShellFactory = open_winrm_shell) -> tuple[bytes, bytes, int]:
    """Open a shell, start the stdin bootstrap, send it the probe, gather the probe's output
    until done or the deadline.

    The shell's exchanges are cut at ``until``, a little before the deadline, to leave time for
    closing the shell on the server; that is then cut at the deadline itself.
    """
    if not script.isascii():  # stdin is read in the console's code page: ASCII reads the same in all
        raise ProbeFailed("probe_error", "the probe script is not ASCII: it would reach the "
                          "server garbled (collectors/probe.ps1 must be ASCII)")
    if deadline - time.monotonic() <= 0:
        raise ProbeFailed("timeout", "deadline reached before connecting")
    until = deadline - min(CLEANUP_SECONDS, config.deadline_seconds / 4)
    shell: Shell | None = None
    command_id: str | None = None
    finished = False
    try:
        shell = open_shell(url, config, password, until)
        command_id = shell.run(STDIN_COMMAND)
        shell.send(command_id, script.encode("ascii"))
        out, err = bytearray(), bytearray()
        while True:
            if time.monotonic() >= until:
                raise ProbeFailed("timeout", f"no complete answer within "
                                  f"{config.deadline_seconds:.0f} s (the probe is still running)")
            chunk_out, chunk_err, code, done = shell.receive(command_id)
            out += chunk_out
            err += chunk_err
            if done:
                finished = True
                return bytes(out), bytes(err), code
    except Exception as error:
        if time.monotonic() >= until and not isinstance(error, ProbeFailed):
            raise ProbeFailed("timeout", f"no complete answer within "
                              f"{config.deadline_seconds:.0f} s: cut at the per-host "
                              "deadline") from error
        raise
    finally:
        if shell is not None:
            # A finished command needs no Signal: deleting the shell frees everything.
            shell.close(None if finished else command_id, deadline)


def probe_host(target: Target, config: WinrmConfig, password: str, script: str | None = None,
               now: Callable[[], datetime] = lambda: datetime.now(UTC),
               open_shell: ShellFactory = open_winrm_shell) -> Observation:
    """One host's observation; never raises."""
    script = script or compact(probe_script())
    host, url = target.host, target.url
    deadline = time.monotonic() + config.deadline_seconds
    try:
        check_config(config, url)
    except ConfigError as error:
        return Observation(host, now(), SOURCE, failure=Failure("connect", str(error),
                                                                HINTS["connect"]))
    attempt = 0
    while True:
        try:
            out, err, code = run_probe_once(url, config, password, script, deadline, open_shell)
            break
        except BaseException as error:  # every failure becomes data
            if isinstance(error, KeyboardInterrupt | SystemExit):
                raise
            reason, detail = _classify(error)
            detail = detail.replace(password, "***") if password else detail
            retry = (reason in TRANSIENT and attempt < config.retries
                     and time.monotonic() + config.backoff_seconds * 2 ** attempt < deadline
                     and "deadline" not in detail and "still running" not in detail)
            if not retry:
                return Observation(host, now(), SOURCE, failure=Failure(
                    reason, f"{url}: {detail}"[:500], HINTS[reason]))
            time.sleep(config.backoff_seconds * 2 ** attempt)
            attempt += 1
    if code != 0 and not out.strip():
        message = err.decode("utf-8", "replace").strip()[:300] or f"exit code {code}"
        return Observation(host, now(), SOURCE, failure=Failure(
            "probe_error", f"{url}: probe exited with {code}: {message}", HINTS["probe_error"]))
    return parse_document(out, host, SOURCE, now())


# Called once per finished host with whether it failed.
ProgressCallback = Callable[[bool], None]


def probe_all(targets: Sequence[Target], config: WinrmConfig, password: str,
              progress: ProgressCallback | None = None, stop: threading.Event | None = None,
              open_shell: ShellFactory = open_winrm_shell) -> list[Observation]:
    """Probe every target, ``config.concurrency`` at a time; results in the targets' order.

    One daemon thread per host, in this process: a probe costs about 10 ms of CPU and waits
    seconds to a minute on its server, so bounded threads keep up with thousands of servers
    (bench/collection.py). A host whose thread is still busy ``ABANDON_AFTER_SECONDS`` past its
    deadline is recorded as ``timeout`` and the run goes on; its thread is left behind (a
    daemon: it cannot keep the process alive, unlike ThreadPoolExecutor's workers, which are
    joined at exit). ``stop`` set ends the run with ``InterruptedError``.
    """
    script = compact(probe_script())
    finished: queue.SimpleQueue[tuple[int, Observation | BaseException]] = queue.SimpleQueue()
    results: dict[int, Observation] = {}
    give_up: dict[int, float] = {}  # running host -> when to go on without it
    waiting = iter(enumerate(targets))

    def work(index: int, target: Target) -> None:
        try:
            finished.put((index, probe_host(target, config, password, script,
                                            open_shell=open_shell)))
        except BaseException as error:  # handed to the caller, as a pool's future would
            finished.put((index, error))

    def start_next() -> None:
        if stop is not None and stop.is_set():
            return
        index, target = next(waiting, (-1, None))
        if target is None:
            return
        give_up[index] = time.monotonic() + config.deadline_seconds + ABANDON_AFTER_SECONDS
        threading.Thread(target=work, args=(index, target), name=f"probe-{index}",
                         daemon=True).start()

    def record(index: int, observation: Observation) -> None:
        results[index] = observation
        if progress:
            progress(observation.failure is not None)
        start_next()

    for _ in range(max(1, config.concurrency)):
        start_next()
    while give_up and not (stop is not None and stop.is_set()):
        wait = min(0.5, max(0.0, min(give_up.values()) - time.monotonic()))
        with contextlib.suppress(queue.Empty):
            index, outcome = finished.get(timeout=wait)
            if give_up.pop(index, None) is not None:  # else it was given up on: too late
                if isinstance(outcome, BaseException):
                    raise outcome
                record(index, outcome)
        now = time.monotonic()
        for index, when in list(give_up.items()):
            if now >= when:
                del give_up[index]
                target = targets[index]
                record(index, Observation(target.host, datetime.now(UTC), SOURCE,
                                          failure=Failure("timeout", f"{target.url}: no answer "
                                                          "within the deadline", HINTS["timeout"])))
    if stop is not None and stop.is_set():
        raise InterruptedError("collection stopped before every host was probed")
    return [results[i] for i in range(len(targets))]


def targets_for(hosts: Iterable[Host], config: WinrmConfig,
                overrides: dict[str, str] | None = None) -> list[Target]:
    overrides = {k.lower(): v for k, v in (overrides or {}).items()}
    return [Target(h, endpoint(h, config, overrides.get(h.name.lower()))) for h in hosts]
