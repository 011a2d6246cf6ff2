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

    KerberosFailed (transport "kerberos": no ticket, unknown SPN, a 401 to the ticket)    -> auth
    winrm InvalidCredentialsError, AuthenticationError, WinRMTransportError 401  -> auth
    requests-ntlm's PermissionError (no NTLM challenge: NTLM disabled there)     -> auth
    winrm WSManFaultError code 5 / "Access is denied", WinRMTransportError 403   -> access_denied
    other WSManFaultError, WinRMError                                            -> probe_error
    other WinRMTransportError, requests ConnectionError, ChunkedEncodingError    -> connect
    requests ConnectionError naming a failed name lookup                         -> dns
    requests SSLError, ssl.SSLError                                              -> tls
    requests Timeout, TimeoutError; any error once the host's cut has passed     -> timeout
    anything else                                                                -> probe_error

Kerberos (``transport = "kerberos"``, pywinrm's transport over pykerberos, requirements-kerberos.txt):
the ticket comes from the default credential cache (``collectors.kerberos.activate``), the SPN is
``<spn_service>/<the URL's host or spn_hostname>``, message encryption over plain HTTP as with
NTLM, no delegation, and never NTLM unless ``ntlm_fallback``. Its failures are ``auth`` whose
detail starts ``kerberos <reason>:`` (``collectors.kerberos.REASONS``) and whose hint is
Kerberos's fix. A 401 to the ticket is read by ``refusal``: the server's ``Date`` more than 300 s
from this machine's clock is ``clock_skew`` (both times named), else the KRB-ERROR the server put
in ``WWW-Authenticate`` says why (a key that no longer matches is ``wrong_key``).

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
import email.utils
import logging
import math
import queue
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import requests
from requests.adapters import DEFAULT_POOLBLOCK, HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from winrm import exceptions as winrm_errors
from winrm import transport as winrm_transport
from winrm.protocol import Protocol as WsmanProtocol
from winrm.transport import Transport

from collectors.kerberos import CLOCK_SKEW_SECONDS, KerberosError
from collectors.kerberos import classify as classify_kerberos
from collectors.probe import compact, parse_document, probe_script
from compliance.failures import HINTS, TRANSIENT
from compliance.models import Failure, Host, Observation
from store.export import inert

log = logging.getLogger(__name__)

# requests-kerberos's failures (pywinrm vendors it; importing it needs pykerberos): no ticket or
# no SPN before anything is sent, or an answer that did not authenticate the server.
_KERBEROS_EXCHANGE_ERRORS: tuple[type[BaseException], ...] = ()
with contextlib.suppress(ImportError):
    from winrm.vendor.requests_kerberos.exceptions import (
        KerberosExchangeError,
        MutualAuthenticationError,
    )

    _KERBEROS_EXCHANGE_ERRORS = (KerberosExchangeError, MutualAuthenticationError)
# ... and pywinrm's answer to a 401: what the transport turns into KerberosFailed.
_KERBEROS_AUTH_ERRORS: tuple[type[BaseException], ...] = (
    winrm_errors.InvalidCredentialsError, *_KERBEROS_EXCHANGE_ERRORS)
# requests-kerberos also logs each of those failures itself, at ERROR and with a traceback (a
# refused ticket, an unknown SPN): on the terminal of `collect` and `preflight`, once per host.
# Each is the host's auth failure here, said once with its reason and fix (KerberosFailed).
logging.getLogger("winrm.vendor.requests_kerberos").setLevel(logging.CRITICAL)

SOURCE = "winrm"
# The last seconds of each host's deadline (this, or a quarter of it if less) are kept for
# closing the probe's shell on the server: the probe itself is cut before them.
CLEANUP_SECONDS = 5.0
# How long past its deadline a host's thread may stay busy before the run goes on without it:
# the socket cut ends every exchange at the deadline, so only what no socket holds is left.
ABANDON_AFTER_SECONDS = 2.0


@dataclass(frozen=True)
class WinrmConfig:
    """How to reach every host. With ``transport = "kerberos"``, ``username`` is the Kerberos
    principal whose ticket is used (``svc-exprobe@CORP.EXAMPLE``: it picks that ticket from the
    default credential cache, which ``collectors.kerberos.activate`` sets), and no password is
    needed; ``spn_service``/``spn_hostname`` make the SPN asked for, ``<spn_service>/<host>``
    (``HTTP/ex01.corp.example``), ``<host>`` being the URL's host name unless ``spn_hostname``
    replaces it for every host (a run through one alias). Kerberos never falls back to NTLM
    unless ``ntlm_fallback``: then a host for which no service ticket could be had (``no_ticket``,
    ``spn_not_found``) is tried once more with NTLM, as ``username`` with the password."""

    username: str
    transport: str = "ntlm"  # ntlm (default), kerberos, basic (HTTPS only)
    scheme: str = "https"
    port: int = 5986
    allow_http: bool = False  # plain HTTP, only with NTLM or Kerberos message encryption
    spn_service: str = "HTTP"  # Kerberos: the SPN's service class (WinRM registers HTTP/<fqdn>)
    spn_hostname: str | None = None  # Kerberos: the SPN's host instead of the URL's
    ntlm_fallback: bool = False  # Kerberos: NTLM for a host with no service ticket (see above)
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
    """The WinRM settings cannot be used as given; ``reason``: the failure class a host gets."""

    def __init__(self, message: str, reason: str = "connect", hint: str | None = None) -> None:
        super().__init__(message)
        self.reason, self.hint = reason, hint


# pywinrm's Kerberos transport needs pykerberos (pywinrm[kerberos]), an optional requirement.
KERBEROS_INSTALL = ("pywinrm's Kerberos transport needs pykerberos: apt-get install libkrb5-dev "
                    "gcc, then .venv/bin/pip install -r requirements-kerberos.txt")


def kerberos_available() -> bool:
    """Whether pywinrm can use Kerberos here (pykerberos imports)."""
    return bool(winrm_transport.HAVE_KERBEROS)


class UnsealedAnswer(Exception):
    """Over plain HTTP, an answer after authentication that is not sealed with the session key:
    anyone on the path could have written it, so it is never read."""


class KerberosFailed(Exception):
    """WinRM with Kerberos failed to authenticate: ``kerberos`` says why (its ``reason`` is one of
    ``collectors.kerberos.REASONS``) and how to fix it. Raised by the transport for a failure
    before sending (no ticket, an SPN the KDC does not know: requests-kerberos's
    ``KerberosExchangeError``), a 401 to the ticket (read with ``refusal``), or an answer that did
    not authenticate the server (``MutualAuthenticationError``)."""

    def __init__(self, kerberos: KerberosError, before_sending: bool = False) -> None:
        super().__init__(str(kerberos))
        self.kerberos = kerberos
        # No ticket could be had, so nothing reached the server: the one case ntlm_fallback
        # covers. A 401 or an unproven answer is the server's word, which never lowers the
        # protocol.
        self.before_sending = before_sending

    @property
    def detail(self) -> str:
        return f"kerberos {self.kerberos.reason}: {self.kerberos.detail}"


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
    """``ConfigError`` when ``config`` cannot reach ``url`` as asked (its ``reason`` is the class
    the host's failure gets)."""
    if config.transport == "kerberos" and not kerberos_available():
        raise ConfigError(f"{url}: {KERBEROS_INSTALL}", reason="auth", hint=KERBEROS_INSTALL)
    scheme = urlsplit(url).scheme.lower()
    if scheme == "http":
        if not config.allow_http:
            raise ConfigError(f"{url}: plain HTTP refused; use HTTPS or set allow_http = true "
                              "(then only NTLM or Kerberos with message encryption is used)")
        if config.transport not in ("ntlm", "kerberos"):
            raise ConfigError(f"{url}: over plain HTTP only NTLM or Kerberos (with message "
                              "encryption) is allowed, not Basic")
    elif scheme != "https":
        raise ConfigError(f"{url}: not an http(s) URL")


def ca_path(config: WinrmConfig) -> str:
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
    """pywinrm's transport, with ``_CutAdapter`` mounted before the session's first request.

    With Kerberos, an authentication failure leaves as ``KerberosFailed``: pywinrm turns a 401
    into an InvalidCredentialsError that drops the answer, so the last 401's ``Date`` and
    ``WWW-Authenticate`` are kept on the way (a session response hook, run after
    requests-kerberos's own) and read by ``refusal``.
    """

    _refused: tuple[str | None, str | None] | None = None  # the last 401: (Date, WWW-Authenticate)

    def build_session(self) -> requests.Session:
        return self._prepare(super().build_session())

    def setup_encryption(self, session: requests.Session) -> None:
        # Called by build_session with the new session, which it uses for the first exchange.
        super().setup_encryption(self._prepare(session))

    def send_message(self, message: str | bytes) -> bytes:
        if self.auth_method != "kerberos":
            return super().send_message(message)
        self._refused = None
        try:
            return super().send_message(message)
        except _KERBEROS_AUTH_ERRORS as error:
            before = not isinstance(error, winrm_errors.InvalidCredentialsError) and (
                type(error).__name__ == "KerberosExchangeError")
            failed = KerberosFailed(self._kerberos_error(error), before_sending=before)
            host = urlsplit(self.endpoint).hostname or ""
            if before and failed.kerberos.reason == "spn_not_found" and not _resolves(host):
                # The service ticket is asked for before connecting: a server whose name no
                # longer resolves (decommissioned, a typo) is a DNS failure, not a missing SPN.
                raise requests.exceptions.ConnectionError(
                    f"{host}: name or service not known (no SPN either)") from error
            raise failed from error

    def _get_message_response_text(self, response: requests.Response) -> bytes:
        # pywinrm decrypts only an answer whose Content-Type names its own protocol and passes
        # any other through as it is (a bare "multipart/encrypted" too): over plain HTTP a man
        # in the middle could then replace the probe's output after authentication. So the
        # condition pywinrm decrypts on is required, exactly as it tests it.
        sealed = self.encryption is None or (
            f'protocol="{self.encryption.protocol_string.decode()}"'
            in response.headers.get("Content-Type", ""))
        if not sealed:
            raise UnsealedAnswer(f"the server answered in clear over HTTP (Content-Type "
                                 f"{response.headers.get('Content-Type', 'none')!r}): refused, "
                                 "anyone on the path could have written it")
        return bytes(super()._get_message_response_text(response))

    def _prepare(self, session: requests.Session) -> requests.Session:
        _mount(session)
        hooks = session.hooks["response"]
        if self.auth_method == "kerberos" and self._note_401 not in hooks:
            hooks.append(self._note_401)
        return session

    def _note_401(self, response: requests.Response, *_args: Any, **_kwargs: Any) -> None:
        if response.status_code == 401:
            self._refused = (response.headers.get("Date"), response.headers.get("WWW-Authenticate"))

    def _kerberos_error(self, error: BaseException) -> KerberosError:
        host = urlsplit(self.endpoint).hostname or self.endpoint
        spn = f"{self.service or 'HTTP'}/{self.kerberos_hostname_override or host}"
        principal = self.username or "the default principal"
        if isinstance(error, winrm_errors.InvalidCredentialsError):
            date, challenge = self._refused or (None, None)
            text = refusal(date, challenge, datetime.now(UTC))
        elif type(error).__name__ == "MutualAuthenticationError":
            text = ("the server's answer did not prove it holds the key of the SPN (no valid "
                    "Kerberos mutual-authentication token): refused")
        else:  # KerberosExchangeError: the library's own message (no ticket, unknown SPN, ...)
            text = str(error)
        return classify_kerberos(text, principal, service=spn, server=host)


def _resolves(host: str) -> bool:
    try:
        socket.getaddrinfo(host, None)
    except (OSError, UnicodeError):
        return False
    return True


def _mount(session: requests.Session) -> requests.Session:
    if not isinstance(session.get_adapter("https://"), _CutAdapter):
        adapter = _CutAdapter()
        session.mount("https://", adapter)
        session.mount("http://", adapter)
    return session


def _protocol(url: str, config: WinrmConfig, password: str, read_timeout: int) -> WsmanProtocol:
    operation_timeout = max(1, min(config.operation_timeout_seconds, read_timeout - 1))
    common: dict[str, Any] = {
        "endpoint": url, "username": config.username or None, "password": password,
        "server_cert_validation": "validate", "ca_trust_path": ca_path(config),
        "message_encryption": "always" if url.lower().startswith("http:") else "auto",
        "proxy": None,
        # Kerberos: the SPN <spn_service>/<spn_hostname or the URL's host>; the TGT is never
        # forwarded to the server (no delegation: the probe needs no second hop).
        "service": config.spn_service, "kerberos_hostname_override": config.spn_hostname or None,
        "kerberos_delegation": False}
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
    if isinstance(error, KerberosFailed):
        return "auth", error.detail
    if isinstance(error, UnsealedAnswer):
        return "bad_output", text
    if isinstance(error, winrm_errors.InvalidCredentialsError | winrm_errors.AuthenticationError):
        return "auth", text
    if isinstance(error, PermissionError) and "ntlm" in text.lower():
        # requests-ntlm, when the server answers NTLM's first message without a challenge.
        return "auth", (f"NTLM refused by the server (NTLM may be disabled there: use "
                        f"transport = \"kerberos\"): {text}")
    if isinstance(error, winrm_errors.WinRMError) and "pykerberos" in text:
        return "auth", KERBEROS_INSTALL
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


def _hint(error: BaseException, reason: str) -> str:
    """The fix a failure's row shows: Kerberos's own for a Kerberos failure, else the class's."""
    if isinstance(error, KerberosFailed):
        return error.kerberos.fix
    return HINTS[reason]


# Errors a Kerberos acceptor answers with (RFC 4120 7.5.9), in MIT's words, which
# collectors.kerberos.classify reads. Windows answers a ticket it cannot decrypt (the SPN's key
# is not the one the KDC used: a reset account, a duplicate SPN) with KRB_AP_ERR_MODIFIED.
# What the server says about the ticket, as collectors.kerberos.classify reads it. The errors
# of the server's own key (31, 41, 44, 45) are the *service's* key, never the collector's
# keytab ("service key mismatch": the fix is on the server's account, not a new ktpass).
_KRB_ERRORS = {
    31: ("KRB_AP_ERR_BAD_INTEGRITY", "service key mismatch: the server could not decrypt the "
                                     "ticket"),
    32: ("KRB_AP_ERR_TKT_EXPIRED", "Ticket expired"),
    33: ("KRB_AP_ERR_TKT_NYV", "Ticket not yet valid"),
    34: ("KRB_AP_ERR_REPEAT", "Request is a replay"),
    35: ("KRB_AP_ERR_NOT_US", "service key mismatch: the ticket isn't for this server"),
    37: ("KRB_AP_ERR_SKEW", "Clock skew too great"),
    41: ("KRB_AP_ERR_MODIFIED", "service key mismatch: the server could not decrypt the ticket "
                                "(its key for the SPN differs, or the SPN is on another account)"),
    44: ("KRB_AP_ERR_BADKEYVER", "service key mismatch: the server holds another key version "
                                 "for its SPN"),
    45: ("KRB_AP_ERR_NOKEY", "service key mismatch: the server has no key for its SPN"),
    60: ("KRB_ERR_GENERIC", "Generic error"),
}


@dataclass(frozen=True)
class KrbError:
    """The fields of a KRB-ERROR that say why: ``code`` (``_KRB_ERRORS``), the acceptor's clock
    (``stime``) and its optional text."""

    code: int
    stime: datetime | None
    text: str | None


def _der(data: bytes, at: int) -> tuple[int, bytes, int]:
    """(tag, value, offset after it) of the DER element at ``at``; ValueError/IndexError when
    it is not one."""
    tag, length = data[at], data[at + 1]
    at += 2
    if length & 0x80:
        size = length & 0x7F
        if not 0 < size <= 4:
            raise ValueError("DER length")
        length, at = int.from_bytes(data[at:at + size], "big"), at + size
    value = data[at:at + length]
    if len(value) != length:
        raise ValueError("DER element runs past its token")
    return tag, value, at + length


def _find_krb_error(data: bytes, depth: int = 0) -> bytes | None:
    """The SEQUENCE inside the first KRB-ERROR (``[APPLICATION 30]``) in ``data``: bare, in GSS
    framing (``[APPLICATION 0]``: the krb5 OID, the token id 03 00, then the KRB-ERROR), or
    inside SPNEGO's NegTokenResp (its responseToken is an OCTET STRING holding the GSS token)."""
    if depth > 8:
        return None
    at = 0
    with contextlib.suppress(ValueError, IndexError):
        while at < len(data):
            tag, value, at = _der(data, at)
            if tag == 0x7E:
                return value
            if tag == 0x60:
                _, _, inner = _der(value, 0)  # the mechanism's OID
                rest = value[inner:]
                return _find_krb_error(rest[2:] if rest[:2] == b"\x03\x00" else rest, depth + 1)
            if tag & 0x20 or tag == 0x04:  # constructed, or an OCTET STRING holding a token
                found = _find_krb_error(value, depth + 1)
                if found is not None:
                    return found
    return None


def krb_error(token: bytes) -> KrbError | None:
    """The KRB-ERROR a Kerberos acceptor put in its answer token, or None when there is none."""
    body = _find_krb_error(token)
    if body is None:
        return None
    code, stime, text = None, None, None
    with contextlib.suppress(ValueError, IndexError):
        _, fields, _ = _der(body, 0)  # SEQUENCE
        at = 0
        while at < len(fields):
            tag, value, at = _der(fields, at)
            _, inner, _ = _der(value, 0)
            if tag == 0xA4:  # stime, GeneralizedTime YYYYMMDDHHMMSSZ
                stime = datetime.strptime(inner.decode("ascii")[:14], "%Y%m%d%H%M%S").replace(
                    tzinfo=UTC)
            elif tag == 0xA6:  # error-code
                code = int.from_bytes(inner, "big", signed=True)
            elif tag == 0xAB:  # e-text
                text = inner.decode("utf-8", "replace")
    return None if code is None else KrbError(code, stime, text)


def _negotiate_token(challenge: str | None) -> bytes:
    """The token of a ``WWW-Authenticate: Negotiate <base64>`` value (b"" when none)."""
    for offer in (challenge or "").split(","):
        scheme, _, token = offer.strip().partition(" ")
        if scheme.lower() in ("negotiate", "kerberos") and token.strip():
            with contextlib.suppress(ValueError):
                return base64.b64decode(token.strip(), validate=True)
    return b""


def refusal(date: str | None, challenge: str | None, now: datetime) -> str:
    """What a 401 answered to a Kerberos ticket means, as text ``collectors.kerberos.classify``
    reads: a clock skew when the server's clock (its ``Date`` header, else the KRB-ERROR's
    ``stime``) is more than ``CLOCK_SKEW_SECONDS`` from ``now``, naming both times (the server
    cannot say so itself: MIT and Windows answer "ticket not yet valid" or "expired" as well);
    else the KRB-ERROR in ``challenge`` (the ``WWW-Authenticate`` value); else a bare refusal."""
    error = krb_error(_negotiate_token(challenge))
    theirs, source = None, "its HTTP Date header"
    with contextlib.suppress(TypeError, ValueError, IndexError):
        theirs = email.utils.parsedate_to_datetime(date) if date else None
    if theirs is None and error is not None and error.stime is not None:
        theirs, source = error.stime, "the Kerberos error's server time"
    if theirs is not None:
        theirs = theirs if theirs.tzinfo else theirs.replace(tzinfo=UTC)
        apart = (theirs - now).total_seconds()
        if abs(apart) > CLOCK_SKEW_SECONDS:
            return (f"Clock skew too great: the server's clock says {theirs:%Y-%m-%d %H:%M:%S} UTC "
                    f"({source}), this machine's {now:%Y-%m-%d %H:%M:%S} UTC: {abs(apart):.0f} s "
                    f"{'ahead' if apart > 0 else 'behind'}, more than the {CLOCK_SKEW_SECONDS} s "
                    "Kerberos allows")
    if error is not None:
        # Only the code is read: the error's free text (e-text) is the server's to write, and
        # words in it ("Server not found in Kerberos database") must not choose the reason (a
        # reason that allows ntlm_fallback, say).
        name, meaning = _KRB_ERRORS.get(error.code, (f"error {error.code}", "refused"))
        return f"the server refused the ticket: KRB-ERROR {error.code} {name}, {meaning}"
    return "the server refused the ticket (HTTP 401 without a Kerberos error)"


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
        return Observation(host, now(), SOURCE, failure=Failure(
            error.reason, str(error), error.hint or HINTS[error.reason]))
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
            if _falls_back(error, config, password):
                # Configured (ntlm_fallback), and said: never silently.
                log.warning("%s", inert(f"{url}: {detail}; trying NTLM instead "
                                        "(ntlm_fallback = true)"))
                config = replace(config, transport="ntlm")
                continue
            retry = (reason in TRANSIENT and attempt < config.retries
                     and time.monotonic() + config.backoff_seconds * 2 ** attempt < deadline
                     and "deadline" not in detail and "still running" not in detail)
            if not retry:
                return Observation(host, now(), SOURCE, failure=Failure(
                    reason, f"{url}: {detail}"[:500], _hint(error, reason)))
            time.sleep(config.backoff_seconds * 2 ** attempt)
            attempt += 1
    if code != 0 and not out.strip():
        message = err.decode("utf-8", "replace").strip()[:300] or f"exit code {code}"
        return Observation(host, now(), SOURCE, failure=Failure(
            "probe_error", f"{url}: probe exited with {code}: {message}", HINTS["probe_error"]))
    return parse_document(out, host, SOURCE, now())


# Kerberos failures where the host got no ticket at all, so NTLM may stand in (ntlm_fallback); a
# ticket the host refused (clock, key) is never retried with a weaker protocol.
FALLBACK_REASONS = frozenset({"no_ticket", "spn_not_found"})


def _falls_back(error: BaseException, config: WinrmConfig, password: str) -> bool:
    return (isinstance(error, KerberosFailed) and config.transport == "kerberos"
            and config.ntlm_fallback and bool(password) and error.before_sending
            and error.kerberos.reason in FALLBACK_REASONS)


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
    joined at exit). A host whose thread raises (``probe_host`` makes every failure of the
    exchange data, so this is a fault reading that server's answer) is recorded as
    ``bad_output`` and the run goes on. ``stop`` set ends the run with ``InterruptedError``.
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
                if isinstance(outcome, Exception):
                    outcome = _unread(targets[index], outcome)
                elif isinstance(outcome, BaseException):
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


def _unread(target: Target, error: Exception) -> Observation:
    """The failure of a host whose answer the collector could not read: one server's document
    must never stop the fleet's run. Only the error's type is said (its text may be the
    server's, or the document's)."""
    kind = type(error).__name__
    log.warning("%s", inert(f"{target.url}: reading the answer failed ({kind})"))
    return Observation(target.host, datetime.now(UTC), SOURCE, failure=Failure(
        "bad_output", f"{target.url}: the collector could not read this host's answer ({kind})",
        HINTS["bad_output"]))


def targets_for(hosts: Iterable[Host], config: WinrmConfig,
                overrides: dict[str, str] | None = None) -> list[Target]:
    overrides = {k.lower(): v for k, v in (overrides or {}).items()}
    return [Target(h, endpoint(h, config, overrides.get(h.name.lower()))) for h in hosts]
