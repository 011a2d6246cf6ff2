"""Run the read-only probe on each server over WinRM (pywinrm): bounded and concurrent.

Every host yields an ``Observation``. A failure becomes one too, classified as ``dns``,
``connect``, ``tls``, ``auth``, ``access_denied``, ``timeout``, ``probe_error`` or
``bad_output``, with a one-line fix hint. pywinrm's own loop retries OperationTimeout faults
forever, and its read timeout bounds one HTTP read only. So the shell, command and receive
steps are driven here, with an overall deadline per host.
"""

from __future__ import annotations

import base64
import logging
import math
import os
import signal
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import requests
from winrm import exceptions as winrm_errors
from winrm.protocol import Protocol

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


def _protocol(url: str, config: WinrmConfig, password: str, read_timeout: int) -> Protocol:
    operation_timeout = max(1, min(config.operation_timeout_seconds, read_timeout - 1))
    return Protocol(
        endpoint=url,
        transport=config.transport,  # type: ignore[arg-type]  # one of the allowed names: see config
        username=config.username, password=password,
        server_cert_validation="validate", ca_trust_path=_ca_path(config),
        read_timeout_sec=max(read_timeout, operation_timeout + 1),
        operation_timeout_sec=operation_timeout,
        message_encryption="always" if url.lower().startswith("http:") else "auto",
        proxy=None,
    )


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
    """Open a shell, run the probe, gather its output until done or the deadline."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise ProbeFailed("timeout", "deadline reached before connecting")
    read_timeout = max(2, min(config.read_timeout_seconds, math.ceil(remaining)))
    protocol = _protocol(url, config, password, read_timeout)
    _bound(protocol, deadline, config)
    shell_id = protocol.open_shell()
    command_id = None
    try:
        _bound(protocol, deadline, config)
        command_id = protocol.run_command(shell_id, _encoded_command(script))
        out, err = bytearray(), bytearray()
        finished = False
        while True:
            if time.monotonic() >= deadline:
                raise ProbeFailed("timeout", f"no complete answer within "
                                  f"{config.deadline_seconds:.0f} s (the probe is still running)")
            _bound(protocol, deadline, config)
            try:
                chunk_out, chunk_err, code, done = protocol.get_command_output_raw(shell_id,
                                                                                   command_id)
            except winrm_errors.WinRMOperationTimeoutError:
                continue  # the server's way of saying "still running": ask again
            out += chunk_out
            err += chunk_err
            if done:
                finished = True
                return bytes(out), bytes(err), code
    finally:
        # A finished command needs no Signal: deleting the shell frees everything.
        _cleanup(protocol, shell_id, None if finished else command_id)


def _bound(protocol: Protocol, deadline: float, config: WinrmConfig) -> None:
    """Let no single HTTP exchange outlive the host's deadline."""
    remaining = deadline - time.monotonic()
    protocol.transport.read_timeout_sec = max(1, min(config.read_timeout_seconds,
                                                     math.ceil(remaining)))


def _cleanup(protocol: Protocol, shell_id: str, command_id: str | None) -> None:
    # Best effort and brief: a server that stalled or dropped the connection cannot be cleaned up.
    protocol.transport.read_timeout_sec = 5
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
    """Probe every target with ``config.concurrency`` threads; results in the targets' order.

    A host whose worker is still busy past its deadline (plus a grace period) is recorded
    as ``timeout`` and the run goes on; its thread is abandoned.
    """
    script = compact(probe_script())
    results: dict[int, Observation] = {}
    grace = config.read_timeout_seconds + 5
    executor = ThreadPoolExecutor(max_workers=max(1, config.concurrency),
                                  thread_name_prefix="probe")
    pending: dict[Future[Observation], int] = {}
    started: dict[int, float] = {}
    queue = iter(enumerate(targets))

    def submit_next() -> bool:
        if stop is not None and stop.is_set():
            return False
        try:
            index, target = next(queue)
        except StopIteration:
            return False
        started[index] = time.monotonic()
        pending[executor.submit(probe_host, target, config, password, script)] = index
        return True

    try:
        for _ in range(max(1, config.concurrency)):
            if not submit_next():
                break
        while pending:
            done, _ = wait(list(pending), timeout=1.0, return_when=FIRST_COMPLETED)
            for future in done:
                index = pending.pop(future)
                results[index] = future.result()
                if progress:
                    progress(results[index].failure is not None)
                submit_next()
            now = time.monotonic()
            for future, index in list(pending.items()):
                if now - started[index] > config.deadline_seconds + grace:
                    pending.pop(future)
                    target = targets[index]
                    results[index] = Observation(target.host, datetime.now(UTC), SOURCE,
                                                 failure=Failure("timeout", f"{target.url}: no "
                                                                 "answer within the deadline",
                                                                 HINTS["timeout"]))
                    if progress:
                        progress(True)
                    submit_next()
            if stop is not None and stop.is_set():
                break
    finally:
        executor.shutdown(wait=False, cancel_futures=True)
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
