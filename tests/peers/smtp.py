"""A real SMTP server on loopback for the e-mail notifications: aiosmtpd with STARTTLS (or
implicit TLS) from the test CA, AUTH PLAIN/LOGIN against one account, and a record of every
message and every AUTH attempt.

``SmtpPeer(files, username, password)`` listens on a free 127.0.0.1 port and requires
STARTTLS before anything but EHLO/NOOP/QUIT, TLS before AUTH, and AUTH before MAIL, as a
relay for an Exchange fleet would. ``implicit_tls=True`` serves SMTPS instead (aiosmtpd only
advertises AUTH there when its "AUTH needs STARTTLS" rule is off: TESTING.md).
``echo_refused=True`` makes it refuse a login the way a careless server does, repeating the
password it was given in its 535 answer. ``close()`` stops it.
"""

from __future__ import annotations

import email
import email.policy
import ssl
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.peers.loopback import HOST, free_port
from tests.peers.tls import TlsFiles


@dataclass(frozen=True)
class Received:
    """One message as the server took it."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage
    raw: bytes
    tls: bool
    authenticated: bool


class SmtpPeer:
    def __init__(self, files: TlsFiles, *, username: str, password: str,
                 implicit_tls: bool = False, echo_refused: bool = False) -> None:
        self.messages: list[Received] = []
        self.logins: list[tuple[str, bool]] = []  # (mechanism, accepted)
        self._lock = threading.Lock()
        self._account = (username.encode(), password.encode())
        self._echo_refused = echo_refused
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(files.cert_file, files.key_file)
        self.port = free_port()
        tls: dict[str, Any] = (
            {"ssl_context": context, "auth_require_tls": False} if implicit_tls
            else {"tls_context": context, "require_starttls": True, "auth_require_tls": True})
        self._controller = Controller(
            self, hostname=HOST, port=self.port, server_hostname="localhost",
            authenticator=self._authenticate, auth_required=True, **tls)
        self._controller.start()

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope,
                      mechanism: str, auth_data: Any) -> AuthResult:
        accepted = (isinstance(auth_data, LoginPassword)
                    and (auth_data.login, auth_data.password) == self._account)
        with self._lock:
            self.logins.append((mechanism, accepted))
        echoed = None
        if self._echo_refused and not accepted and isinstance(auth_data, LoginPassword):
            echoed = f"535 5.7.8 bad password {auth_data.password.decode(errors='replace')}"
        # handled=False: aiosmtpd answers itself (True would mean "already answered")
        return AuthResult(success=accepted, handled=False, message=echoed)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        with self._lock:
            self.messages.append(Received(
                mail_from=str(envelope.mail_from), rcpt_tos=tuple(envelope.rcpt_tos),
                message=parsed, raw=raw, tls=session.ssl is not None,
                authenticated=bool(session.authenticated)))
        return "250 OK"

    def close(self) -> None:
        self._controller.stop()
