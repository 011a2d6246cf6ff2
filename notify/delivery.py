"""Sending a report: one e-mail (SMTP) and/or one webhook POST per run, each channel's outcome
returned as a ``Delivery``. ``deliver`` never raises: a failed notification must not fail the
collection that made the snapshot.

Errors are translated once, here:

- refused before connecting (``attempts == 0``): an http:// or unreadable webhook URL, the SMTP
  password without TLS, no sender, no recipient, no password, an unreadable CA file;
- permanent, tried once: a TLS certificate not trusted (or any TLS failure), SMTP
  authentication refused, an SMTP 5xx answer, an HTTP 3xx (redirects are never followed: the
  message and its signature go to the configured address only) or a 4xx other than 429;
- transient, tried up to ``attempts`` times with exponential backoff (``backoff_seconds``,
  doubled each time, each wait at most ``max(backoff_seconds, 60)`` s): connection refused or
  reset, timeouts, SMTP 4xx answers and disconnections, HTTP 5xx and 429.

Error texts are one line and never hold the SMTP password, the webhook secret or the webhook
URL beyond ``https://host[:port]/…`` (incoming-webhook URLs carry their token in the path).

Webhook signature (when ``webhook_secret`` is set), recomputed for each attempt::

    X-ProxyLogon-Timestamp: <Unix time in whole seconds>
    X-ProxyLogon-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>

where ``body`` is the exact bytes of the request body (docs/notifications.md shows a check).
"""

from __future__ import annotations

import hashlib
import hmac
import smtplib
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from pathlib import Path
from typing import Literal
from urllib.parse import SplitResult, urlsplit

import requests

from notify.changes import Report
from notify.message import encoded, payload, subject, text
from settings import NotificationSettings
from store.export import inert

Channel = Literal["email", "webhook"]
BACKOFF_CAP = 60.0  # seconds: the longest single wait, unless backoff_seconds asks for more
ERROR_CHARS = 300
SIGNATURE_HEADER = "X-ProxyLogon-Signature"
TIMESTAMP_HEADER = "X-ProxyLogon-Timestamp"
USER_AGENT = "proxylogon-compliance-notify/1"


@dataclass(frozen=True)
class Delivery:
    """How one channel went. ``target``: ``host:port`` for e-mail, ``https://host[:port]/…``
    for a webhook; ``attempts``: tries made (0: refused before connecting, or an unexpected
    error); ``error``: one line, "" when ``ok``, never a secret."""

    channel: Channel
    target: str
    ok: bool
    attempts: int
    error: str = ""


class _Failed(Exception):
    """One try's failure, already in words; ``permanent``: trying again cannot help."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.message, self.permanent = message, permanent


def deliver(report: Report, settings: NotificationSettings, *,
            sleep: Callable[[float], None] = time.sleep,
            clock: Callable[[], float] = time.time) -> tuple[Delivery, ...]:
    """Send ``report`` on every configured channel (e-mail when ``smtp_host`` is set, webhook
    when ``webhook_url`` is): one ``Delivery`` each, e-mail first; ``()`` when nothing is
    configured or the report is empty (nothing is sent). Waits between tries go through
    ``sleep``; ``clock`` gives the signature's timestamp."""
    if report.empty:
        return ()
    secrets = _secrets(settings)
    deliveries = []
    if settings.smtp_host.strip():
        deliveries.append(_guarded("email", _smtp_target(settings), secrets,
                                   lambda: _email(report, settings, sleep, clock)))
    if settings.webhook_url.strip():
        deliveries.append(_guarded("webhook", _url_target(settings.webhook_url), secrets,
                                   lambda: _webhook(report, settings, sleep, clock)))
    return tuple(deliveries)


def _guarded(channel: Channel, target: str, secrets: tuple[str, ...],
             send: Callable[[], Delivery]) -> Delivery:
    try:
        delivery = send()
    except Exception as error:  # the promise: a notification never fails the collection
        delivery = Delivery(channel, target, False, 0, f"unexpected {type(error).__name__}")
    return Delivery(delivery.channel, delivery.target, delivery.ok, delivery.attempts,
                    _one_line(delivery.error, secrets))


def _retried(channel: Channel, target: str, settings: NotificationSettings,
             sleep: Callable[[float], None], send: Callable[[], None]) -> Delivery:
    """``send`` until it returns, raises a permanent ``_Failed``, or ``attempts`` are spent."""
    for attempt in range(1, settings.attempts + 1):
        try:
            send()
            return Delivery(channel, target, True, attempt)
        except _Failed as failed:
            if failed.permanent or attempt == settings.attempts:
                return Delivery(channel, target, False, attempt, failed.message)
        sleep(min(settings.backoff_seconds * 2 ** (attempt - 1),
                  max(settings.backoff_seconds, BACKOFF_CAP)))
    raise AssertionError("unreachable: attempts is at least 1")  # pragma: no cover


# --- e-mail -----------------------------------------------------------------------------------

def _email(report: Report, settings: NotificationSettings, sleep: Callable[[float], None],
           clock: Callable[[], float]) -> Delivery:
    target = _smtp_target(settings)
    refused = _email_refusal(settings)
    if refused:
        return Delivery("email", target, False, 0, refused)
    try:
        context = ssl.create_default_context(cafile=settings.smtp_ca_file)
    except (OSError, ValueError) as error:
        return Delivery("email", target, False, 0,
                        f"cannot read smtp_ca_file {settings.smtp_ca_file}: {_reason(error)}")
    try:
        message = _email_message(report, settings, clock)
    except (ValueError, TypeError) as error:  # e.g. an address the e-mail package refuses
        return Delivery("email", target, False, 0, f"cannot write the e-mail: {error}")
    password = (settings.smtp_password.get_secret_value()
                if settings.smtp_password is not None else "")

    def send() -> None:
        try:
            _smtp_send(message, settings, context, password)
        except Exception as error:
            raise _smtp_failure(error, settings) from None

    return _retried("email", target, settings, sleep, send)


def _email_refusal(settings: NotificationSettings) -> str:
    """Why the e-mail settings cannot be used as they are ("" if they can)."""
    if not settings.mail_from.strip():
        return "mail_from is empty: set [notifications] mail_from"
    if not [address for address in settings.mail_to if address.strip()]:
        return "mail_to is empty: set [notifications] mail_to"
    if settings.smtp_username and not (settings.smtp_starttls or settings.smtp_tls):
        return ("refusing to send the SMTP password without TLS: set smtp_starttls = true "
                "(port 587) or smtp_tls = true (port 465)")
    if settings.smtp_username and (settings.smtp_password is None
                                   or not settings.smtp_password.get_secret_value()):
        return ("no SMTP password: set [notifications] smtp_password or the environment "
                "variable PROXYLOGON_SMTP_PASSWORD")
    return ""


def _email_message(report: Report, settings: NotificationSettings,
                   clock: Callable[[], float]) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = subject(report)  # counts only: no untrusted text in a header
    message["From"] = settings.mail_from
    message["To"] = ", ".join(address for address in settings.mail_to if address.strip())
    message["Date"] = formatdate(clock(), usegmt=True)
    domain = parseaddr(settings.mail_from)[1].rpartition("@")[2] or "localhost"
    # A domain given, because make_msgid would otherwise ask DNS for this machine's name.
    message["Message-ID"] = make_msgid(f"snapshot-{report.snapshot_id}", domain=domain)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no out-of-office replies
    message.set_content(text(report))
    return message


def _smtp_send(message: EmailMessage, settings: NotificationSettings, context: ssl.SSLContext,
               password: str) -> None:
    timeout = settings.timeout_seconds
    client = (smtplib.SMTP_SSL(settings.smtp_host, settings.smtp_port, timeout=timeout,
                               context=context) if settings.smtp_tls
              else smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=timeout))
    with client:
        if settings.smtp_starttls and not settings.smtp_tls:
            client.starttls(context=context)  # raises if the server does not offer it
        if settings.smtp_username:
            client.login(settings.smtp_username, password)
        client.send_message(message, from_addr=settings.mail_from,
                            to_addrs=[a for a in settings.mail_to if a.strip()])


def _smtp_failure(error: Exception, settings: NotificationSettings) -> _Failed:
    # smtplib's exceptions are OSErrors: the specific ones first.
    if isinstance(error, smtplib.SMTPAuthenticationError):
        # The server's words help (Exchange Online says when SMTP AUTH is off for the tenant);
        # _one_line takes out the password should a server repeat it.
        return _Failed(f"SMTP authentication refused ({error.smtp_code} {_said(error)}): check "
                       "smtp_username and smtp_password", permanent=True)
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        codes = {address: code for address, (code, _) in error.recipients.items()}
        listed = ", ".join(f"{address} ({code})" for address, code in codes.items())
        return _Failed(f"recipients refused: {listed}",
                       permanent=all(code >= 500 for code in codes.values()))
    if isinstance(error, smtplib.SMTPResponseException):
        return _Failed(f"SMTP {error.smtp_code}: {_said(error)}",
                       permanent=error.smtp_code >= 500)
    if isinstance(error, smtplib.SMTPNotSupportedError):
        return _Failed(f"{error} (smtp_starttls and smtp_username need it)", permanent=True)
    if isinstance(error, smtplib.SMTPServerDisconnected):
        return _Failed("the SMTP server closed the connection", permanent=False)
    if isinstance(error, ssl.SSLCertVerificationError):
        return _Failed(f"TLS certificate not trusted ({error.verify_message}): check "
                       "smtp_host and smtp_ca_file", permanent=True)
    if isinstance(error, ssl.SSLError):
        return _Failed(f"TLS failed: {error.reason or error}", permanent=True)
    if isinstance(error, smtplib.SMTPException):
        return _Failed(f"SMTP: {error}", permanent=True)
    return _network_failure(error, settings.timeout_seconds)


def _said(error: smtplib.SMTPResponseException) -> str:
    said = error.smtp_error
    return said.decode("utf-8", "replace") if isinstance(said, bytes) else str(said)


def _smtp_target(settings: NotificationSettings) -> str:
    host = settings.smtp_host.strip()
    return f"[{host}]:{settings.smtp_port}" if ":" in host else f"{host}:{settings.smtp_port}"


# --- webhook ----------------------------------------------------------------------------------

def _webhook(report: Report, settings: NotificationSettings, sleep: Callable[[float], None],
             clock: Callable[[], float]) -> Delivery:
    url = settings.webhook_url.strip()
    target = _url_target(url)
    parts = _split(url)
    if parts is None or not parts.hostname:
        return Delivery("webhook", target, False, 0, "webhook_url is not a URL")
    if parts.scheme.lower() != "https":
        return Delivery("webhook", target, False, 0,
                        f"webhook_url must be https:// (not {inert(parts.scheme) or 'no scheme'}"
                        "://): the message and its signature would travel in the clear")
    ca_file = settings.webhook_ca_file
    if ca_file is not None and not Path(ca_file).is_file():
        return Delivery("webhook", target, False, 0, f"webhook_ca_file {ca_file} is not a file")
    body = encoded(payload(report))
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else ""

    with requests.Session() as session:
        def send() -> None:
            headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
            if secret:
                headers.update(signed(body, secret.encode(), int(clock())))
            try:
                response = session.post(url, data=body, headers=headers,
                                        timeout=settings.timeout_seconds, allow_redirects=False,
                                        verify=ca_file or True, stream=True)
            except Exception as error:
                raise _http_failure(error, settings.timeout_seconds) from None
            with response:  # the answer's body is not read: only its status counts
                status = response.status_code
            if not 200 <= status < 300:
                raise _status_failure(status)

        return _retried("webhook", target, settings, sleep, send)


def signed(body: bytes, secret: bytes, timestamp: int) -> dict[str, str]:
    """The signature headers of ``body`` sent at ``timestamp`` (Unix seconds)."""
    stamp = str(timestamp)
    digest = hmac.new(secret, stamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()
    return {TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: f"sha256={digest}"}


def _status_failure(status: int) -> _Failed:
    if 300 <= status < 400:
        return _Failed(f"HTTP {status}: redirects are not followed; set webhook_url to the "
                       "final address", permanent=True)
    if status == 429 or status >= 500:
        return _Failed(f"HTTP {status} from the receiver", permanent=False)
    return _Failed(f"HTTP {status}: the receiver refused the message", permanent=True)


def _http_failure(error: Exception, timeout: float) -> _Failed:
    # requests' messages repeat the URL (and with it the webhook's token): never shown.
    if isinstance(error, requests.exceptions.SSLError):
        verify = _cause(error, ssl.SSLCertVerificationError)
        why = (f"TLS certificate not trusted ({verify.verify_message})"
               if isinstance(verify, ssl.SSLCertVerificationError) else "TLS failed")
        return _Failed(f"{why}: check webhook_url and webhook_ca_file", permanent=True)
    if isinstance(error, requests.exceptions.Timeout):
        return _Failed(f"no answer within {timeout:g} s", permanent=False)
    if isinstance(error, requests.exceptions.ConnectionError):
        return _network_failure(_cause(error, OSError) or error, timeout)
    if isinstance(error, OSError):  # requests could not read the CA bundle
        return _Failed(f"cannot read webhook_ca_file: {_reason(error)}", permanent=True)
    return _Failed(f"request failed: {type(error).__name__}", permanent=True)


def _split(url: str) -> SplitResult | None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  # raises ValueError for a port out of range
    except ValueError:
        return None
    return parts


def _url_target(url: str) -> str:
    """``scheme://host[:port]/…``: never the path, query or credentials."""
    parts = _split(url.strip())
    if parts is None or not parts.hostname:
        return "(webhook_url unreadable)"
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    netloc = f"{host}:{parts.port}" if parts.port is not None else host
    rest = "/…" if parts.path.strip("/") or parts.query or parts.fragment else "/"
    return inert(f"{parts.scheme.lower()}://{netloc}{rest}")


# --- both -------------------------------------------------------------------------------------

def _network_failure(error: BaseException, timeout: float) -> _Failed:
    """A connection-level failure: worth trying again (the peer may be back)."""
    if isinstance(error, TimeoutError):
        return _Failed(f"no answer within {timeout:g} s", permanent=False)
    if isinstance(error, ConnectionRefusedError):
        return _Failed("connection refused", permanent=False)
    if isinstance(error, socket.gaierror):
        return _Failed(f"name not resolved: {_reason(error)}", permanent=False)
    if isinstance(error, OSError):
        return _Failed(f"network error: {_reason(error)}", permanent=False)
    return _Failed(f"failed: {type(error).__name__}", permanent=True)


def _cause(error: BaseException, kind: type[BaseException]) -> BaseException | None:
    """The first exception of ``kind`` in ``error``'s chain (causes, contexts, and the
    ``reason``/``args`` urllib3 and requests wrap their causes in)."""
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop(0)
        if id(current) in seen or len(seen) > 20:
            continue
        seen.add(id(current))
        if isinstance(current, kind) and current is not error:
            return current
        linked = [current.__cause__, current.__context__, getattr(current, "reason", None),
                  *current.args]
        pending += [item for item in linked if isinstance(item, BaseException)]
    return None


def _reason(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return type(error).__name__


def _secrets(settings: NotificationSettings) -> tuple[str, ...]:
    """Every text an error must not show, longest first (so a part never hides a whole)."""
    values = [settings.webhook_url.strip()]
    for secret in (settings.smtp_password, settings.webhook_secret):
        if secret is not None:
            values.append(secret.get_secret_value())
    parts = _split(settings.webhook_url.strip())
    if parts is not None:
        values += [parts.path if parts.path.strip("/") else "", parts.query, parts.fragment,
                   parts.username or "", parts.password or ""]
    return tuple(sorted({v for v in values if v}, key=len, reverse=True))


def _one_line(error: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        error = error.replace(secret, "***")
    shown = inert(error)
    return shown if len(shown) <= ERROR_CHARS else shown[: ERROR_CHARS - 1] + "…"
