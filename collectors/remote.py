"""Run the read-only probe on each server over WinRM (pywinrm): bounded and concurrent.

Every host yields an ``Observation``. A failure becomes one too, classified as ``dns``,
``connect``, ``tls``, ``auth``, ``access_denied``, ``timeout``, ``probe_error`` or
``bad_output``, with a one-line fix hint. pywinrm's own loop retries OperationTimeout faults
forever, and its read timeout bounds one HTTP read only. So the shell, command and receive
steps are driven here, with an overall deadline per host.

The deadline holds at the socket level: every connection a host's probe opens is shut down
when its time is up (``_Cutoff``), so a read blocked on a server that answers a byte at a time
returns at once. The probe threads are daemons, and a host whose thread is still busy shortly
after its deadline anyway (a name lookup that hangs) is recorded as ``timeout`` and left
behind: nothing keeps the run, or the process, past the deadline.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import math
import os
import queue
import signal
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import DEFAULT_POOLBLOCK, HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from winrm import exceptions as winrm_errors
from winrm.protocol import Protocol
from winrm.transport import Transport

from collectors.probe import BAD_OUTPUT_HINT, compact, parse_document, probe_script
from compliance.models import Failure, Host, Observation

log = logging.getLogger(__name__)

SOURCE = "winrm"
HINTS = {
    "dns": "The name does not resolve: check the FQDN in AD or give winrm_url in the inventory",
    "connect": "WinRM HTTPS listener missing or blocked: run `winrm quickconfig -transport:https` "
               "on the server and open TCP 5986 from the collector",
    "tls": "The server's certificate is not trusted: set [winrm] ca_file to the issuing CA, "
           "or fix the listener's certificate (name must match the FQDN)",
    "auth": "The credentials were rejected: check [winrm] username and the password in secrets "
            "([winrm] password or PROXYLOGON_WINRM_PASSWORD)",
    "access_denied": "The account may not use WinRM here: add it to the server's Remote "
                     "Management Users group (read-only; see README, least privilege)",
    "timeout": "No complete answer before the per-host deadline: check the server's load, "
               "or raise [winrm] deadline_seconds",
    "probe_error": "The probe failed on the server: run collectors/probe.ps1 by hand there and "
                   "read its error output",
    "bad_output": BAD_OUTPUT_HINT,
}
TRANSIENT = ("connect", "timeout")
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
    processes: int = 1  # >1 splits big fleets over processes; 0 = one per CPU (see probe_all)
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


class WorkerDied(RuntimeError):
    """A probe worker process ended without its results; the whole run is void."""

    def __init__(self, number: int, exitcode: int | None):
        if exitcode is not None and exitcode < 0:
            try:
                how = f"killed by {signal.Signals(-exitcode).name}"
            except ValueError:
                how = f"killed by signal {-exitcode}"
        elif exitcode is None:
            how = "its output closed while it still ran"
        else:
            how = f"exit code {exitcode}"
        super().__init__(f"probe worker process {number} ended without its results ({how}); "
                         "run the collection again, or set [winrm] processes = 1 to probe in "
                         "one process")


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
    opened on this thread while it is active is shut down, so a read blocked on it returns at
    once, however the server trickles its answer; one opened later is shut down as it is made.

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

    def move(self, at: float) -> None:
        """Cut at ``at`` from now on; connections already cut stay cut."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._round += 1
            self.fired = False
            self._timer = threading.Timer(max(0.0, at - time.monotonic()), self._fire,
                                          args=(self._round,))
            self._timer.daemon = True
            self._timer.start()

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

    def __enter__(self) -> _Cutoff:
        self._active.cutoff = self
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._active.cutoff = None
        with self._lock:
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


def _protocol(url: str, config: WinrmConfig, password: str, read_timeout: int) -> Protocol:
    operation_timeout = max(1, min(config.operation_timeout_seconds, read_timeout - 1))
    common: dict[str, Any] = {
        "endpoint": url, "username": config.username, "password": password,
        "server_cert_validation": "validate", "ca_trust_path": _ca_path(config),
        "message_encryption": "always" if url.lower().startswith("http:") else "auto",
        "proxy": None, "service": "HTTP"}
    protocol = Protocol(transport=config.transport,  # type: ignore[arg-type]  # see check_config
                        read_timeout_sec=max(read_timeout, operation_timeout + 1),
                        operation_timeout_sec=operation_timeout, **common)
    # The same transport, its connections cut at the deadline (Protocol builds its own).
    protocol.transport = _CutTransport(auth_method=config.transport,  # type: ignore[arg-type]
                                       read_timeout_sec=protocol.read_timeout_sec, **common)
    return protocol


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


def run_probe_once(url: str, config: WinrmConfig, password: str, script: str,
                   deadline: float) -> tuple[bytes, bytes, int]:
    """Open a shell, run the probe, gather its output until done or the deadline.

    Every connection is cut at the deadline (``_Cutoff``); the probe itself is cut a little
    earlier, at ``until``, to leave time for closing its shell on the server.
    """
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise ProbeFailed("timeout", "deadline reached before connecting")
    until = deadline - min(CLEANUP_SECONDS, config.deadline_seconds / 4)
    read_timeout = max(2, min(config.read_timeout_seconds, math.ceil(remaining)))
    protocol = _protocol(url, config, password, read_timeout)
    shell_id = command_id = None
    finished = broken = False
    with _Cutoff(until) as cutoff:
        try:
            _bound(protocol, until, config)
            shell_id = protocol.open_shell()
            _bound(protocol, until, config)
            command_id = protocol.run_command(shell_id, _encoded_command(script))
            out, err = bytearray(), bytearray()
            while True:
                if time.monotonic() >= until:
                    raise ProbeFailed("timeout", f"no complete answer within "
                                      f"{config.deadline_seconds:.0f} s (the probe is still "
                                      "running)")
                _bound(protocol, until, config)
                try:
                    chunk_out, chunk_err, code, done = protocol.get_command_output_raw(
                        shell_id, command_id)
                except winrm_errors.WinRMOperationTimeoutError:
                    continue  # the server's way of saying "still running": ask again
                out += chunk_out
                err += chunk_err
                if done:
                    finished = True
                    return bytes(out), bytes(err), code
        except Exception as error:
            broken = cutoff.fired or isinstance(error, requests.exceptions.RequestException)
            if cutoff.fired and not isinstance(error, ProbeFailed):
                raise ProbeFailed("timeout", f"no complete answer within "
                                  f"{config.deadline_seconds:.0f} s: cut at the per-host "
                                  "deadline") from error
            raise
        finally:
            if shell_id is not None:
                cutoff.move(deadline)
                if broken:  # its connection is gone, and with it any NTLM message encryption
                    protocol = _protocol(url, config, password, read_timeout)
                # A finished command needs no Signal: deleting the shell frees everything.
                _cleanup(protocol, shell_id, None if finished else command_id, deadline)


def _bound(protocol: Protocol, deadline: float, config: WinrmConfig) -> None:
    """Let no single HTTP read wait past the deadline (``_Cutoff`` ends trickled ones)."""
    remaining = deadline - time.monotonic()
    protocol.transport.read_timeout_sec = max(1, min(config.read_timeout_seconds,
                                                     math.ceil(remaining)))


def _cleanup(protocol: Protocol, shell_id: str, command_id: str | None, deadline: float) -> None:
    # Best effort and brief: a server that stalled or dropped the connection cannot be cleaned up.
    protocol.transport.read_timeout_sec = max(1, min(5, math.ceil(deadline - time.monotonic())))
    try:
        if command_id:
            protocol.cleanup_command(shell_id, command_id)
        protocol.close_shell(shell_id)
    except Exception as error:
        log.debug("cleanup of shell %s failed: %s", shell_id, error)


def probe_host(target: Target, config: WinrmConfig, password: str, script: str | None = None,
               now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> Observation:
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
            out, err, code = run_probe_once(url, config, password, script, deadline)
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


def probe_in_threads(targets: Sequence[Target], config: WinrmConfig, password: str,
                   progress: ProgressCallback | None = None,
                   stop: threading.Event | None = None) -> list[Observation]:
    """Probe every target, ``config.concurrency`` threads at a time; results in the targets' order.

    One daemon thread per host. A host whose thread is still busy ``ABANDON_AFTER_SECONDS``
    past its deadline is recorded as ``timeout`` and the run goes on; its thread is left behind
    (a daemon: it cannot keep the process alive, unlike ThreadPoolExecutor's workers, which
    are joined at exit).
    """
    script = compact(probe_script())
    finished: queue.SimpleQueue[tuple[int, Observation | BaseException]] = queue.SimpleQueue()
    results: dict[int, Observation] = {}
    give_up: dict[int, float] = {}  # running host -> when to go on without it
    waiting = iter(enumerate(targets))

    def work(index: int, target: Target) -> None:
        try:
            finished.put((index, probe_host(target, config, password, script)))
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


def probe_all(targets: Sequence[Target], config: WinrmConfig, password: str,
              progress: ProgressCallback | None = None,
              stop: threading.Event | None = None) -> list[Observation]:
    """Probe every target, ``config.concurrency`` at a time; results in the targets' order.

    pywinrm costs about 10 ms of CPU per host (TLS, NTLM, XML), so one Python process tops out
    near 100 hosts a second. With ``config.processes`` other than 1, a fleet larger than the
    concurrency is split over that many worker processes (0: one per CPU), which share the
    concurrency (``collectors/shards.py``).
    """
    wanted = config.processes if config.processes > 0 else (os.cpu_count() or 1)
    processes = max(1, min(wanted, len(targets) // max(1, config.concurrency)))
    if processes == 1:
        return probe_in_threads(targets, config, password, progress, stop)
    from collectors.shards import probe_in_processes  # it runs this module's threads

    return probe_in_processes(targets, config, password, processes, progress, stop)


def targets_for(hosts: Iterable[Host], config: WinrmConfig,
                overrides: dict[str, str] | None = None) -> list[Target]:
    overrides = {k.lower(): v for k, v in (overrides or {}).items()}
    return [Target(h, endpoint(h, config, overrides.get(h.name.lower()))) for h in hosts]
