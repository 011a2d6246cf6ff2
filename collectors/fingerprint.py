"""The outside view: the build an Exchange server's OWA and ECP disclose over HTTPS, unauthenticated.

For each endpoint (a server's FQDN, or a published namespace), what the field's scanners read
(shared/reference/outside_view.md, F1-F5), with GET requests only, in this order:

    GET <base>owa/                  X-OWA-Version header: the full build (F2); a 302 to the logon page
    GET <Location>                  only on the same scheme, host and port, at most MAX_REDIRECTS
                                    hops: the logon page, whose resource paths /owa/auth/<b.b.b>/
                                    give the CU level only (F3), /owa/<b.b.b.b>/ (2010) the build (F5)
    GET <base>ecp/Current/exporttool/microsoft.exchange.ediscovery.exporttool.application
                                    the ClickOnce manifest's assemblyIdentity version: the full
                                    build (F4; 2013 and later)

No credentials, no cookies (nothing keeps them), no request body, no redirect to another host,
no payload of any exploit; bodies are read up to ``BODY_LIMIT`` bytes. Each endpoint has a
deadline for all its requests (``deadline_seconds``) and a timeout per connection or read
(``timeout_seconds``); at the deadline its sockets are shut down, so a server that trickles its
answer cannot hold it longer. The certificate is validated against ``ca_file`` (or the system's
CAs); with ``record_invalid_certificate`` an endpoint that fails validation is read anyway and
marked untrusted (``TlsState.verified`` false), and ``Fingerprint.builds`` then gives nothing.

The ``parse_*`` functions are pure and take the raw header values or body. Failures are data:
every endpoint yields a ``Fingerprint``; one that could not be read carries a ``Failure``
classified once, by ``classify``, with compliance/failures.py's reasons:

    socket.gaierror                                             -> dns
    ssl.SSLCertVerificationError, ssl.SSLError                  -> tls
    TimeoutError; any error once the endpoint's deadline passed -> timeout
    http.client.RemoteDisconnected, other OSError               -> connect
    other http.client.HTTPException (not an HTTP answer)        -> bad_output
    anything else                                               -> probe_error

An HTTP error status (OWA answering 500 after a Security Update installed without elevation,
F6) is not a failure: it is recorded in the endpoint's answers, with the time each one took.

The client is the standard library's ``http.client`` with a connection opened here: it keeps no
cookies, follows no redirect and uses no proxy from the environment (requests would honour
``HTTPS_PROXY`` and ``REQUESTS_CA_BUNDLE``); the deadline watches each socket from its first
byte, TLS handshake included, without patching a library. TLS 1.2 or later; without ``ca_file``
the CAs are OpenSSL's default paths (the system's).
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import http.client
import itertools
import queue
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from urllib.parse import SplitResult, urljoin, urlsplit
from xml.etree.ElementTree import Element

# defusedxml ships no type information; it refuses DTDs, entity expansion and external
# references, which a hostile endpoint's "manifest" could use against the parser.
import defusedxml  # type: ignore[import-untyped]
import defusedxml.ElementTree  # type: ignore[import-untyped]

import settings
from collectors.config import _ca_file, read_file
from compliance import __version__
from compliance.builds import BuildParseError, parse_dotted
from compliance.failures import FailureReason
from compliance.models import Build, Failure, Host
from compliance.outside import OutsideView, ViewKind
from compliance.outside_record import (
    AnswerRecord,
    EndpointRecord,
    Seen,
    TlsRecord,
    view_of,
)

BODY_LIMIT = 256 * 1024  # bytes of a body read; the logon page is ~28 KB, the manifest ~16 KB
MAX_REDIRECTS = 3  # /owa/ -> logon.aspx is one; a few more for a front page in between
RAW_MAX = 100  # characters of a disclosed value or a Location kept as evidence
OWA_PATH = "owa/"
MANIFEST_PATH = "ecp/Current/exporttool/microsoft.exchange.ediscovery.exporttool.application"
MANIFEST_NAME = "microsoft.exchange.ediscovery.exporttool"  # and its ".application" deployment
USER_AGENT = f"proxylogon-compliance/{__version__} (read-only build fingerprint)"
# Sent with every request; http.client adds Host and "Accept-Encoding: identity" (so a body is
# never a compressed bomb), and nothing else.
REQUEST_HEADERS: Mapping[str, str] = {"User-Agent": USER_AGENT, "Accept": "*/*"}
# How long past its deadline an endpoint's thread may stay busy before the run goes on without
# it: the socket cut ends every exchange at the deadline; only a name lookup is left.
ABANDON_AFTER_SECONDS = 2.0

# The hints of compliance/failures.py speak of WinRM (port 5986, [winrm] settings): these are the
# same reasons, said for HTTPS.
HINTS: Mapping[str, str] = {
    FailureReason.DNS: "The name does not resolve from the collector: check the FQDN, or give the "
                       "endpoint's URL in [fingerprint] urls",
    FailureReason.CONNECT: "Nothing answers HTTPS (TCP 443) from the collector: check the firewall "
                           "and that IIS's Default Web Site listens",
    FailureReason.TLS: "The certificate is not trusted: set [fingerprint] ca_file to the issuing CA, "
                       "or fix the certificate (its name must match); record_invalid_certificate = "
                       "true records such an endpoint without trusting it",
    FailureReason.TIMEOUT: "No complete answer before the per-endpoint deadline: check the server's "
                           "load, or raise [fingerprint] deadline_seconds",
    FailureReason.BAD_OUTPUT: "The endpoint answered something that is not HTTP: check that the URL "
                              "is an Exchange server's HTTPS site",
    FailureReason.PROBE_ERROR: "The fingerprint failed unexpectedly: run `python -m collectors "
                               "fingerprint` and read the error",
}


class Source(StrEnum):
    """Where a build was disclosed."""

    HEADER = "x_owa_version"
    LOGON_PATH = "logon_path"
    MANIFEST = "exporttool_manifest"


class Certainty(StrEnum):
    """How much of the build a disclosure shows."""

    FULL_BUILD = "full_build"  # four parts: the Security Update level
    CU_LEVEL = "cu_level"  # three parts: the CU only; never proof of a Security Update


class EndpointKind(StrEnum):
    SERVER = "server"
    NAMESPACE = "namespace"


@dataclass(frozen=True)
class Endpoint:
    """What to look at: a server (``name`` is its inventory name) or a namespace (the host name).
    ``url`` is the base URL, ending in "/"; empty when the name is no host name."""

    name: str
    url: str
    kind: EndpointKind = EndpointKind.SERVER


@dataclass(frozen=True)
class Disclosure:
    """One build an endpoint disclosed: ``raw`` as sent (at most ``RAW_MAX`` characters), at the
    request path ``where``; ``build`` None (and ``problem`` saying why) when unreadable."""

    source: Source
    raw: str
    where: str
    build: Build | None = None
    certainty: Certainty | None = None
    problem: str = ""


@dataclass(frozen=True)
class Answer:
    """One request and its answer: ``path`` as sent, ``seconds`` from sending to the end of the
    body read, ``size`` the body bytes read (at most ``BODY_LIMIT``; ``truncated`` when more was
    sent); ``location`` a redirect's target, ``note`` what was not followed and why."""

    path: str
    status: int
    seconds: float
    size: int = 0
    truncated: bool = False
    location: str = ""
    note: str = ""


@dataclass(frozen=True)
class TlsState:
    """The endpoint's first TLS connection: protocol version, whether the certificate validated
    (chain and name), why not, and the SHA-256 of the leaf certificate (hex)."""

    version: str
    verified: bool
    problem: str = ""
    certificate_sha256: str = ""


@dataclass(frozen=True)
class Fingerprint:
    """What one endpoint disclosed. ``owa`` is the last answer of the OWA chain (the logon page
    when all went well), ``ecp`` the manifest's; ``answers`` every request in order. A failure
    keeps what was read before it."""

    endpoint: Endpoint
    observed_at: datetime
    tls: TlsState | None = None
    owa: Answer | None = None
    ecp: Answer | None = None
    answers: tuple[Answer, ...] = ()
    disclosures: tuple[Disclosure, ...] = ()
    failure: Failure | None = None

    @property
    def trusted(self) -> bool:
        """Whether every answer came over a connection whose certificate validated."""
        return self.tls is not None and self.tls.verified

    def builds(self, certainty: Certainty) -> tuple[Build, ...]:
        """The distinct builds disclosed with ``certainty``, lowest first; none at all when the
        certificate did not validate: an answer from an unauthenticated peer proves nothing."""
        if not self.trusted:
            return ()
        found = {d.build for d in self.disclosures if d.build is not None and d.certainty is certainty}
        return tuple(sorted(found))


@dataclass(frozen=True)
class FingerprintConfig:
    """The ``[fingerprint]`` section, ready to use (settings.FingerprintSettings); ``ca_file``
    resolved, ``urls`` as (name, URL) pairs. Seconds for both time limits."""

    enabled: bool = False
    namespaces: tuple[str, ...] = ()
    ca_file: str | None = None
    record_invalid_certificate: bool = False
    concurrency: int = 64
    deadline_seconds: float = 30.0
    timeout_seconds: float = 10.0
    urls: tuple[tuple[str, str], ...] = ()


def fingerprint_config(section: settings.FingerprintSettings, here: Path) -> FingerprintConfig:
    """``ca_file`` relative to ``here`` (the config file's folder); ``SettingsError`` when absent."""
    return FingerprintConfig(
        enabled=section.enabled, namespaces=section.namespaces,
        ca_file=_ca_file(section.ca_file, "fingerprint", here),
        record_invalid_certificate=section.record_invalid_certificate,
        concurrency=section.concurrency, deadline_seconds=section.deadline_seconds,
        timeout_seconds=section.timeout_seconds, urls=tuple(section.urls.items()))


def load_fingerprint_config(path: Path) -> FingerprintConfig:
    """The collection file's ``[fingerprint]`` (defaults when absent); ``SettingsError`` naming
    the first bad key, as for every section."""
    section = settings.resolve(read_file(path), {}, {}).file.fingerprint
    return fingerprint_config(section, path.parent)


def default_url(name: str) -> str:
    """``https://<name>/``; empty when ``name`` is no host name (an AD value could be anything)."""
    return f"https://{name}/" if settings.is_host_name(name) else ""


def endpoints_for(hosts: Iterable[Host], config: FingerprintConfig) -> list[Endpoint]:
    """The servers (by FQDN, else name) then the namespaces, each at its ``urls`` override when
    one names it (server name, FQDN or namespace, case-insensitive). Two servers (or two
    namespaces) at the same URL are one endpoint, the first named; a server and a namespace at
    the same URL are both kept (``fingerprint_all`` reads that URL once for both)."""
    overrides = {name.casefold(): url for name, url in config.urls}

    def url(*names: str) -> str:
        given = next((overrides[n.casefold()] for n in names if n.casefold() in overrides), None)
        base = given or default_url(names[-1])
        return base if not base or base.endswith("/") else base + "/"

    candidates = [Endpoint(h.name, url(h.name, h.fqdn or h.name)) for h in hosts]
    candidates += [Endpoint(n, url(n), EndpointKind.NAMESPACE) for n in config.namespaces]
    endpoints: list[Endpoint] = []
    seen: set[tuple[EndpointKind, str]] = set()
    for endpoint in candidates:
        key = (endpoint.kind, endpoint.url.casefold())
        if endpoint.url and key in seen:
            continue
        seen.add(key)
        endpoints.append(endpoint)
    return endpoints


# --- parsing (pure) ----------------------------------------------------------------------------

# Resource paths of the logon page: /owa/auth/15.1.2176/themes/... (2013 and later, three parts),
# /owa/14.3.513.0/themes/... (2010, four parts). Bounded digit runs: nothing to backtrack on.
_LOGON_PATH = re.compile(rb"/owa/(?:auth/)?(\d{1,5}\.\d{1,5}\.\d{1,5}(?:\.\d{1,5})?)/", re.I | re.A)


def _build(text: str) -> tuple[Build, Certainty]:
    """Four parts: the full build; three: the CU level. ``BuildParseError`` otherwise."""
    if text.count(".") == 2:
        # compliance.builds reads four-part builds only: a zero revision borrows its checks
        # (digits only, 16-bit parts), and is dropped again, as it was never disclosed.
        return replace(parse_dotted(text + ".0"), revision=None), Certainty.CU_LEVEL
    return parse_dotted(text), Certainty.FULL_BUILD


def _disclosure(source: Source, raw: str, where: str, *, four_parts: bool = False) -> Disclosure:
    shown = raw[:RAW_MAX]
    try:
        if four_parts:
            build, certainty = parse_dotted(raw), Certainty.FULL_BUILD
        else:
            build, certainty = _build(raw.strip())
    except BuildParseError:
        return Disclosure(source, shown, where, problem=f"not a build number: {shown!r}")
    return Disclosure(source, shown, where, build, certainty)


def parse_owa_version(values: Sequence[str], where: str = "/owa/") -> tuple[Disclosure, ...]:
    """The ``X-OWA-Version`` header's values of one answer (none when absent): one disclosure
    per distinct value. Sent as the full build (F2), so four parts are expected."""
    distinct = dict.fromkeys(value.strip() for value in values)
    return tuple(_disclosure(Source.HEADER, value, where) for value in distinct)


def parse_logon_page(body: bytes, where: str = "/owa/auth/logon.aspx") -> Disclosure | None:
    """The build in the logon page's resource paths: three parts (CU level) on 2013 and later,
    four on 2010 (F3, F5); None when the page names none. A page naming two builds is refused:
    it contradicts itself. Only the first ``BODY_LIMIT`` bytes are read."""
    found = dict.fromkeys(m.group(1).decode("ascii") for m in _LOGON_PATH.finditer(body[:BODY_LIMIT]))
    if not found:
        return None
    if len(found) > 1:
        names = ", ".join(list(found)[:5])
        return Disclosure(Source.LOGON_PATH, names[:RAW_MAX], where,
                          problem=f"the page names {len(found)} different builds: {names}"[:300])
    return _disclosure(Source.LOGON_PATH, next(iter(found)), where)


def _local_name(tag: object) -> str:
    text = str(tag)
    return text.rsplit("}", 1)[-1]  # "{urn:schemas-microsoft-com:asm.v1}assemblyIdentity"


def parse_manifest(body: bytes, where: str = "/" + MANIFEST_PATH) -> Disclosure:
    """The export tool's ClickOnce manifest (F4): the ``version`` of its ``assemblyIdentity``
    elements (the deployment's, the application's, the signature's: they must agree), four parts.
    An unreadable body is a disclosure with a ``problem``: a DTD, entities or external references
    are refused, as is a body over ``BODY_LIMIT`` bytes."""

    def refused(problem: str, raw: str = "") -> Disclosure:
        return Disclosure(Source.MANIFEST, raw[:RAW_MAX], where, problem=problem[:300])

    if len(body) > BODY_LIMIT:
        return refused(f"larger than {BODY_LIMIT // 1024} KB: not read")
    try:
        root: Element = defusedxml.ElementTree.fromstring(body, forbid_dtd=True)
    except defusedxml.DefusedXmlException as error:
        return refused(f"refused XML ({type(error).__name__}): not a manifest Exchange sends")
    except defusedxml.ElementTree.ParseError as error:
        return refused(f"not XML: {error}")
    if _local_name(root.tag) != "assembly":
        return refused(f"not a ClickOnce manifest (root element {_local_name(root.tag)[:40]!r})")
    versions = [str(element.get("version", "")) for element in root.iter()
                if _local_name(element.tag) == "assemblyIdentity"
                and str(element.get("name", "")).lower().startswith(MANIFEST_NAME)]
    if not versions:
        return refused("the manifest names no export tool assembly")
    distinct = list(dict.fromkeys(versions))
    if len(distinct) > 1:
        return refused(f"its assemblyIdentity versions differ: {', '.join(distinct[:3])}"[:300],
                       distinct[0])
    return _disclosure(Source.MANIFEST, distinct[0], where, four_parts=True)


# --- the wire --------------------------------------------------------------------------------

class _Cut(TimeoutError):
    """The endpoint's deadline passed before a request could start."""


class _Watchdog:
    """One thread that cuts each endpoint at its deadline, for a whole run (``close`` ends it): a
    timer thread per endpoint cost about a millisecond of CPU each (bench/fingerprint.py)."""

    def __init__(self) -> None:
        self._wake = threading.Condition()
        self._due: list[tuple[float, int, _Deadline]] = []  # a heap, soonest first
        self._order = itertools.count()  # ties never compare two deadlines
        self._closed = False
        threading.Thread(target=self._run, name="fingerprint-deadlines", daemon=True).start()

    def add(self, deadline: _Deadline) -> None:
        with self._wake:
            heapq.heappush(self._due, (deadline.at, next(self._order), deadline))
            if self._due[0][2] is deadline:  # sooner than what the thread waits for
                self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._closed and (not self._due or self._due[0][0] > time.monotonic()):
                    self._wake.wait(self._due[0][0] - time.monotonic() if self._due else None)
                if self._closed:
                    return
                deadline = heapq.heappop(self._due)[2]
            deadline.cut()  # a no-op for an endpoint already done

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()


class _Deadline:
    """One endpoint's deadline: per-request timeouts shrink to what is left, and at the deadline
    (``cut``, by the run's watchdog) every socket it watches is shut down, so a read blocked on a
    trickling server returns at once. It keeps a duplicate of each socket, as wrapping in TLS
    detaches the original."""

    def __init__(self, seconds: float, watchdog: _Watchdog) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self.passed = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        watchdog.add(self)

    def timeout(self, longest: float) -> float:
        """The timeout of the next connection or read; ``_Cut`` when no time is left."""
        left = self.at - time.monotonic()
        if left <= 0 or self.passed:
            raise _Cut(f"deadline of {self.seconds:g} s reached")
        return min(longest, left)

    def watch(self, sock: socket.socket) -> socket.socket:
        """Cut ``sock`` at the deadline; the duplicate kept, for ``forget``."""
        copy = sock.dup()
        with self._lock:
            self._sockets.append(copy)
            if self.passed:
                _shut(copy)
        return copy

    def forget(self, copy: socket.socket) -> None:
        """Close a duplicate once its connection is closed: else it would hold it open."""
        with self._lock:
            if copy in self._sockets:
                self._sockets.remove(copy)
        copy.close()

    def cut(self) -> None:
        with self._lock:
            self.passed = True
            for sock in self._sockets:
                _shut(sock)

    def close(self) -> None:
        with self._lock:
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed by the other side
        sock.shutdown(socket.SHUT_RDWR)


class _Connection(http.client.HTTPConnection):
    """One HTTPS connection: opened here so the endpoint's deadline watches its socket from the
    first byte of the TLS handshake."""

    def __init__(self, host: str, port: int, *, context: ssl.SSLContext, server_name: str,
                 deadline: _Deadline, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._context, self._server_name, self._deadline = context, server_name, deadline
        self._watched: socket.socket | None = None

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self._watched = self._deadline.watch(sock)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = self._context.wrap_socket(sock, server_hostname=self._server_name)

    def close(self) -> None:
        super().close()
        if self._watched is not None:
            self._deadline.forget(self._watched)
            self._watched = None


@dataclass(frozen=True)
class TlsContexts:
    """The two TLS configurations of a run; built once (loading CAs takes time) and shared by the
    threads: ``verified`` checks the chain and the name, ``recording`` checks nothing and is used
    only for endpoints that failed ``verified`` when ``record_invalid_certificate`` is on."""

    verified: ssl.SSLContext
    recording: ssl.SSLContext

    @classmethod
    def build(cls, ca_file: str | None) -> TlsContexts:
        """``SettingsError`` when ``ca_file`` holds no certificate ssl can load."""
        try:
            verified = ssl.create_default_context(cafile=ca_file)
        except (ssl.SSLError, OSError) as error:
            raise settings.SettingsError(f"[fingerprint] ca_file {ca_file} cannot be used: "
                                         f"{error}") from None
        recording = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        recording.check_hostname = False
        recording.verify_mode = ssl.CERT_NONE
        for context in (verified, recording):
            context.minimum_version = ssl.TLSVersion.TLSv1_2
        return cls(verified, recording)


_Response = tuple[Answer, http.client.HTTPMessage, bytes]


class _Client:
    """One endpoint's requests, in order, over one connection while the server keeps it open."""

    def __init__(self, base: SplitResult, config: FingerprintConfig, contexts: TlsContexts,
                 deadline: _Deadline) -> None:
        self._host = base.hostname or ""
        self._port = base.port or 443
        self._config, self._contexts, self._deadline = config, contexts, deadline
        self._connection: _Connection | None = None
        self._verified = True
        self._problem = ""
        self.tls: TlsState | None = None

    def _open(self, timeout: float) -> _Connection:
        context = self._contexts.verified if self._verified else self._contexts.recording
        connection = _Connection(self._host, self._port, context=context, server_name=self._host,
                                 deadline=self._deadline, timeout=timeout)
        try:
            connection.connect()
        except ssl.SSLCertVerificationError as error:
            connection.close()
            if not self._verified or not self._config.record_invalid_certificate:
                raise
            # Read anyway, marked: nothing this endpoint says will count as proof.
            self._verified, self._problem = False, _verify_problem(error)
            return self._open(self._deadline.timeout(self._config.timeout_seconds))
        except BaseException:
            connection.close()
            raise
        sock = connection.sock
        if self.tls is None and isinstance(sock, ssl.SSLSocket):
            certificate = sock.getpeercert(binary_form=True) or b""
            self.tls = TlsState(sock.version() or "", self._verified, self._problem,
                                hashlib.sha256(certificate).hexdigest() if certificate else "")
        elif self.tls is not None and self.tls.verified and not self._verified:
            # A later connection's certificate failed (another node, or someone on the path,
            # after a first one that validated): nothing this endpoint said counts as proof.
            self.tls = replace(self.tls, verified=False,
                               problem=f"a later connection: {self._problem}")
        return connection

    def get(self, path: str) -> _Response:
        """GET ``path`` (with its query): the answer, its headers and its body, read up to one
        byte past ``BODY_LIMIT`` (so a parser can tell a cut body)."""
        timeout = self._deadline.timeout(self._config.timeout_seconds)
        reused = self._connection is not None and self._connection.sock is not None
        if self._connection is None or self._connection.sock is None:
            self.close()
            self._connection = self._open(timeout)
        else:
            self._connection.sock.settimeout(timeout)
        started = time.monotonic()
        try:
            response = self._send(self._connection, path)
        except (http.client.RemoteDisconnected, ConnectionError):
            self.close()
            if not reused or self._deadline.passed:
                raise
            # A kept-alive connection the server had closed meanwhile: once more, on a new one
            # (a GET is safe to repeat).
            self._connection = self._open(self._deadline.timeout(self._config.timeout_seconds))
            started = time.monotonic()
            response = self._send(self._connection, path)
        body = response.read(BODY_LIMIT + 1)
        truncated = len(body) > BODY_LIMIT
        if truncated or response.will_close:
            self.close()
        location = response.getheader("Location") or ""
        answer = Answer(path, response.status, round(time.monotonic() - started, 4),
                        min(len(body), BODY_LIMIT), truncated, location[:RAW_MAX * 2])
        return answer, response.msg, body

    @staticmethod
    def _send(connection: _Connection, path: str) -> http.client.HTTPResponse:
        connection.request("GET", path, headers=dict(REQUEST_HEADERS))
        return connection.getresponse()

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _verify_problem(error: ssl.SSLCertVerificationError) -> str:
    # Set by the ssl module on a failed handshake; absent on one made by hand.
    return str(getattr(error, "verify_message", None) or error)[:200]


def _same_origin(target: str, base: SplitResult) -> bool:
    try:
        parts = urlsplit(target)
        return (parts.scheme.lower() == "https" and (parts.hostname or "") == (base.hostname or "")
                and (parts.port or 443) == (base.port or 443) and target.isascii()
                and target.isprintable() and " " not in target)
    except ValueError:  # a port that is no number
        return False


def _request_path(url: str) -> str:
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def classify(error: BaseException, cut: bool = False) -> tuple[FailureReason, str]:
    """The failure class of an error raised while reading an endpoint, and a one-line detail;
    ``cut``: the endpoint's deadline had passed (then anything is a timeout)."""
    text = " ".join(str(error).split())[:300] or type(error).__name__
    if cut or isinstance(error, _Cut):
        return FailureReason.TIMEOUT, f"cut at the per-endpoint deadline ({text})"
    if isinstance(error, socket.gaierror):
        return FailureReason.DNS, f"name lookup failed: {text}"
    if isinstance(error, ssl.SSLCertVerificationError):
        return FailureReason.TLS, f"certificate not trusted: {_verify_problem(error)}"
    if isinstance(error, ssl.SSLError):
        return FailureReason.TLS, f"TLS failed: {text}"
    if isinstance(error, TimeoutError):
        return FailureReason.TIMEOUT, f"no answer within the timeout: {text}"
    if isinstance(error, http.client.RemoteDisconnected):
        return FailureReason.CONNECT, f"closed the connection without answering: {text}"
    if isinstance(error, http.client.HTTPException):
        return FailureReason.BAD_OUTPUT, f"not an HTTP answer ({type(error).__name__}): {text}"
    if isinstance(error, OSError):
        return FailureReason.CONNECT, text
    return FailureReason.PROBE_ERROR, f"{type(error).__name__}: {text}"


class _Reading:
    """What one endpoint said so far; a failure keeps it."""

    def __init__(self, client: _Client, base: SplitResult) -> None:
        self.client, self.base = client, base
        self.answers: list[Answer] = []
        self.disclosures: list[Disclosure] = []
        self.owa: Answer | None = None
        self.ecp: Answer | None = None

    def _get(self, path: str) -> _Response:
        answer, headers, body = self.client.get(path)
        self.disclosures += parse_owa_version(headers.get_all("X-OWA-Version") or [], path)
        return answer, headers, body

    def read_owa(self) -> None:
        url = urljoin(self.base.geturl(), OWA_PATH)
        for hop in range(MAX_REDIRECTS + 1):
            answer, headers, body = self._get(_request_path(url))
            location = headers.get("Location") or ""  # whole: the answer keeps a bounded copy
            if 300 <= answer.status < 400 and location:
                target = urljoin(url, location)
                if not _same_origin(target, self.base):
                    answer = replace(answer, note="redirect to another origin: not followed")
                elif hop == MAX_REDIRECTS:
                    answer = replace(answer, note=f"more than {MAX_REDIRECTS} redirects: not followed")
                else:
                    self.answers.append(answer)
                    url = target
                    continue
            self.answers.append(answer)
            self.owa = answer
            if answer.status == 200:
                logon = parse_logon_page(body, answer.path)
                if logon is not None:
                    self.disclosures.append(logon)
            return

    def read_ecp(self) -> None:
        path = _request_path(urljoin(self.base.geturl(), MANIFEST_PATH))
        answer, _headers, body = self._get(path)
        if 300 <= answer.status < 400:
            answer = replace(answer, note="redirect: not followed (the manifest is served directly)")
        self.answers.append(answer)
        self.ecp = answer
        if answer.status == 200:
            self.disclosures.append(parse_manifest(body, path))


def _base(url: str) -> SplitResult | None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  # raises ValueError for a port that is no number
    except ValueError:
        return None
    if parts.scheme.lower() != "https" or not parts.hostname or parts.username or parts.password:
        return None
    return parts


def fingerprint(endpoint: Endpoint, config: FingerprintConfig, *,
                contexts: TlsContexts | None = None,
                now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> Fingerprint:
    """One endpoint's fingerprint; never raises (every failure becomes data)."""
    watchdog = _Watchdog()
    try:
        return _fingerprint(endpoint, config, contexts or TlsContexts.build(config.ca_file),
                            watchdog, now)
    finally:
        watchdog.close()


def _fingerprint(endpoint: Endpoint, config: FingerprintConfig, contexts: TlsContexts,
                 watchdog: _Watchdog, now: Callable[[], datetime]) -> Fingerprint:
    observed_at = now()
    base = _base(endpoint.url)
    if base is None:
        reason = FailureReason.DNS if not endpoint.url else FailureReason.CONNECT
        detail = (f"{endpoint.name[:RAW_MAX]!r} is not a host name: nothing was sent"
                  if not endpoint.url else f"{endpoint.url[:RAW_MAX]!r} is not an https URL")
        return Fingerprint(endpoint, observed_at, failure=Failure(reason, detail, HINTS[reason]))
    deadline = _Deadline(config.deadline_seconds, watchdog)
    client = _Client(base, config, contexts, deadline)
    reading = _Reading(client, base)
    failure = None
    try:
        reading.read_owa()
        reading.read_ecp()
    except Exception as error:  # every failure becomes data
        reason, detail = classify(error, cut=deadline.passed)
        failure = Failure(reason, f"{endpoint.url}: {detail}"[:500], HINTS[reason])
    finally:
        client.close()
        deadline.close()
    # One disclosure per source and value: the redirect and the logon page send the same header.
    disclosures: dict[tuple[Source, str], Disclosure] = {}
    for disclosure in reading.disclosures:
        disclosures.setdefault((disclosure.source, disclosure.raw), disclosure)
    return Fingerprint(endpoint, observed_at, client.tls, reading.owa, reading.ecp,
                       tuple(reading.answers), tuple(disclosures.values()), failure)


def fingerprint_all(endpoints: Sequence[Endpoint], config: FingerprintConfig, *,
                    progress: Callable[[bool], None] | None = None,
                    stop: threading.Event | None = None, contexts: TlsContexts | None = None,
                    now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> list[Fingerprint]:
    """Every endpoint, ``config.concurrency`` at a time; results in the endpoints' order.
    Endpoints at the same URL (a namespace that is also a server's name, or ``urls`` pointing
    two names at one place) are read once, and each gets that reading under its own name and
    kind: a namespace is never dropped for sharing a server's URL. ``progress`` counts reads
    (``reads(endpoints)`` of them).
    """
    slots, distinct = _distinct(endpoints)
    read = _read_all(distinct, config, progress=progress, stop=stop, contexts=contexts, now=now)
    return [read[slot] if read[slot].endpoint == endpoint else replace(read[slot], endpoint=endpoint)
            for slot, endpoint in zip(slots, endpoints, strict=True)]


def reads(endpoints: Sequence[Endpoint]) -> int:
    """How many reads ``fingerprint_all`` makes of ``endpoints``: one per distinct URL."""
    return len(_distinct(endpoints)[1])


def _distinct(endpoints: Sequence[Endpoint]) -> tuple[list[int], list[Endpoint]]:
    """(for each endpoint, the index of its read; the endpoints read: the first at each URL,
    case aside; an endpoint without a URL is its own)."""
    slots: list[int] = []
    distinct: list[Endpoint] = []
    by_url: dict[str, int] = {}
    for endpoint in endpoints:
        key = endpoint.url.casefold()
        if endpoint.url and key in by_url:
            slots.append(by_url[key])
            continue
        if endpoint.url:
            by_url[key] = len(distinct)
        slots.append(len(distinct))
        distinct.append(endpoint)
    return slots, distinct


def _read_all(endpoints: Sequence[Endpoint], config: FingerprintConfig, *,
              progress: Callable[[bool], None] | None, stop: threading.Event | None,
              contexts: TlsContexts | None, now: Callable[[], datetime]) -> list[Fingerprint]:
    """``fingerprint_all`` of endpoints at distinct URLs.

    One daemon thread per endpoint at work (as collectors/remote.py's ``probe_all``): an endpoint
    whose thread is still busy ``ABANDON_AFTER_SECONDS`` past its deadline (a name lookup that
    hangs: nothing else outlives the socket cut) is recorded as ``timeout`` and left behind.
    ``progress`` is called once per endpoint with whether it failed; ``stop`` set ends the run
    with ``InterruptedError``.
    """
    tls = contexts or TlsContexts.build(config.ca_file)
    watchdog = _Watchdog()
    finished: queue.SimpleQueue[tuple[int, Fingerprint | BaseException]] = queue.SimpleQueue()
    results: dict[int, Fingerprint] = {}
    give_up: dict[int, float] = {}  # running endpoint -> when to go on without it
    waiting = iter(enumerate(endpoints))

    def work(index: int, endpoint: Endpoint) -> None:
        try:
            finished.put((index, _fingerprint(endpoint, config, tls, watchdog, now)))
        except BaseException as error:  # handed to the caller, as a pool's future would
            finished.put((index, error))

    def start_next() -> None:
        index, endpoint = next(waiting, (-1, None))
        if endpoint is None or (stop is not None and stop.is_set()):
            return
        give_up[index] = time.monotonic() + config.deadline_seconds + ABANDON_AFTER_SECONDS
        threading.Thread(target=work, args=(index, endpoint), name=f"fingerprint-{index}",
                         daemon=True).start()

    def record(index: int, result: Fingerprint) -> None:
        results[index] = result
        if progress:
            progress(result.failure is not None)
        start_next()

    try:
        for _ in range(max(1, config.concurrency)):
            start_next()
        _wait(give_up, finished, record, endpoints, stop, now)
    finally:
        watchdog.close()
    if stop is not None and stop.is_set():
        raise InterruptedError("fingerprinting stopped before every endpoint was read")
    return [results[i] for i in range(len(endpoints))]


def _wait(give_up: dict[int, float],
          finished: queue.SimpleQueue[tuple[int, Fingerprint | BaseException]],
          record: Callable[[int, Fingerprint], None], endpoints: Sequence[Endpoint],
          stop: threading.Event | None, now: Callable[[], datetime]) -> None:
    """Record each endpoint as it finishes, or as ``timeout`` once given up on."""
    while give_up and not (stop is not None and stop.is_set()):
        wait = min(0.5, max(0.0, min(give_up.values()) - time.monotonic()))
        with contextlib.suppress(queue.Empty):
            index, outcome = finished.get(timeout=wait)
            if give_up.pop(index, None) is not None:  # else it was given up on: too late
                if isinstance(outcome, BaseException):
                    raise outcome
                record(index, outcome)
        for index, when in list(give_up.items()):
            if time.monotonic() >= when:
                del give_up[index]
                endpoint = endpoints[index]
                record(index, Fingerprint(endpoint, now(), failure=Failure(
                    FailureReason.TIMEOUT, f"{endpoint.url}: no answer within the deadline "
                    "(the name lookup may hang)", HINTS[FailureReason.TIMEOUT])))


def endpoint_record(fp: Fingerprint) -> EndpointRecord:
    """``fp`` as a snapshot keeps it (compliance/outside_record.py): the endpoint, each
    disclosure with its source and certainty, TLS, the OWA and ECP answers and the failure."""
    def answer(a: Answer | None) -> AnswerRecord | None:
        return None if a is None else AnswerRecord(a.path, a.status, a.seconds, a.note)

    tls = fp.tls
    return EndpointRecord(
        name=fp.endpoint.name, kind=ViewKind(fp.endpoint.kind.value), url=fp.endpoint.url,
        observed_at=fp.observed_at,
        disclosures=tuple(Seen(d.source.value, d.raw, d.where, d.build,
                               d.certainty.value if d.certainty else "", d.problem)
                          for d in fp.disclosures),
        tls=None if tls is None else TlsRecord(tls.version, tls.verified, tls.problem,
                                               tls.certificate_sha256),
        owa=answer(fp.owa), ecp=answer(fp.ecp), failure=fp.failure)


def outside_view(fp: Fingerprint) -> OutsideView:
    """``fp`` as the core's ``OutsideView`` (``compliance.outside_record.view_of`` of its record):
    its full and CU-level builds (none when the certificate did not validate), where each build
    was disclosed, and why the view is incomplete or untrusted (the failure, else the
    certificate's problem)."""
    return view_of(endpoint_record(fp))
