"""A minimal OpenID Connect provider on loopback, for signing in through Streamlit's ``st.login``.

``start_oidc(redirect_uris=[...])`` starts it on a free port of 127.0.0.1 (a thread of this
process) and returns an ``OidcPeer``; ``peer.stop()`` closes it. Endpoints:

* ``/.well-known/openid-configuration`` - discovery metadata (``peer.metadata_url``).
* ``/jwks``      - the public half of an RSA key made at start (never written to disk).
* ``/authorize`` - no login form: redirects straight back to ``redirect_uri`` with ``code`` and
  the same ``state``, signing in whoever the test chose with ``peer.sign_in_next({...})``. That
  choice is used once: an authorize request with nobody chosen goes back with
  ``error=login_required``, so a test that forgot to choose never inherits the previous user.
  An unknown ``client_id`` or unregistered ``redirect_uri`` is answered 400 on the page itself,
  never redirected (RFC 6749 4.1.2.1).
* ``/token``     - ``grant_type=authorization_code``: checks the client (``client_secret_basic``,
  Authlib's default, or ``client_secret_post``), that the code is known, unexpired, unused and
  was issued to this client and ``redirect_uri``, and the PKCE S256 ``code_verifier`` when the
  authorize request carried a challenge (Streamlit always sends one when the metadata offers
  S256). Answers an RS256 ``id_token`` (iss, aud, sub, email, name, nonce, iat, exp, at_hash and
  every other claim of the chosen user, e.g. ``groups``) and an opaque ``access_token``.

Plain HTTP, on purpose: Authlib's client treats http on a loopback address as secure transport
(``authlib.common.security.is_secure_transport``, RFC 8252 7.3) and Streamlit asks for nothing
more, so no CA has to be slipped into the Streamlit process. ``peer.authorize_requests`` and
``peer.token_requests`` keep what the client sent, so tests can check what Streamlit asked for.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.peers.loopback import HOST

CLIENT_ID = "proxylogon-dashboard"
CLIENT_SECRET = "oidc-peer-client-secret"  # test-only
CODE_LIFETIME = 60.0
TOKEN_LIFETIME = 300
FORM = "application/x-www-form-urlencoded"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _int_b64url(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def s256(verifier: str) -> str:
    """The PKCE S256 challenge of ``verifier`` (RFC 7636 4.2)."""
    return b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def at_hash(access_token: str) -> str:
    """OIDC Core 3.1.3.6: left half of the SHA-256 of the access token (RS256), base64url."""
    digest = hashlib.sha256(access_token.encode("ascii")).digest()
    return b64url(digest[: len(digest) // 2])


@dataclass
class _Grant:
    """An issued authorization code: what the token request must match."""

    client_id: str
    redirect_uri: str
    nonce: str | None
    challenge: str | None
    user: dict[str, Any]
    expires: float


class TokenError(Exception):
    """An OAuth error answer from the token endpoint (RFC 6749 5.2)."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description


@dataclass
class OidcPeer:
    """A running provider (see the module docstring). Thread-safe."""

    client_id: str
    client_secret: str
    redirect_uris: set[str]
    authorize_requests: list[dict[str, str]] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        # 2048 bits: what real providers use; generating it takes ~50 ms.
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = uuid.uuid4().hex
        self._lock = threading.Lock()
        self._next_user: dict[str, Any] | None = None
        self._codes: dict[str, _Grant] = {}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- what tests use

    @property
    def issuer(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def metadata_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    def sign_in_next(self, user: Mapping[str, Any]) -> None:
        """The next authorize request signs in this user: claims such as ``email``, ``name``,
        ``groups`` (``sub`` defaults to a stable id derived from the e-mail address)."""
        with self._lock:
            self._next_user = dict(user)

    def metadata(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email", "profile"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": ["iss", "aud", "sub", "iat", "exp", "nonce", "at_hash",
                                 "email", "name", "groups"],
        }

    def jwks(self) -> dict[str, Any]:
        numbers = self._key.public_key().public_numbers()
        return {"keys": [{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid,
                          "n": _int_b64url(numbers.n), "e": _int_b64url(numbers.e)}]}

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # ---- protocol

    def sign(self, claims: Mapping[str, Any]) -> str:
        """A compact RS256 JWS of ``claims`` (RFC 7515), with this provider's ``kid``."""
        header = {"alg": "RS256", "typ": "JWT", "kid": self.kid}
        signing_input = ".".join(b64url(json.dumps(part, separators=(",", ":")).encode())
                                 for part in (header, dict(claims)))
        signature = self._key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{b64url(signature)}"

    def authorize(self, params: Mapping[str, str]) -> tuple[int, str]:
        """``(status, location or error text)`` for an authorize request."""
        with self._lock:
            self.authorize_requests.append(dict(params))
            client_id, redirect_uri = params.get("client_id", ""), params.get("redirect_uri", "")
            if client_id != self.client_id:
                return 400, "unknown client_id"
            if redirect_uri not in self.redirect_uris:
                return 400, "redirect_uri is not registered for this client"
            reply = {"state": params["state"]} if "state" in params else {}
            challenge = params.get("code_challenge")
            user, self._next_user = self._next_user, None
            if params.get("response_type") != "code":
                reply["error"] = "unsupported_response_type"
            elif "openid" not in params.get("scope", "").split():
                reply["error"] = "invalid_scope"
            elif challenge is not None and params.get("code_challenge_method") != "S256":
                reply.update(error="invalid_request", error_description="only S256 PKCE is supported")
            elif user is None:
                reply.update(error="login_required", error_description="the test chose no user")
            else:
                code = secrets.token_urlsafe(24)
                self._codes[code] = _Grant(client_id, redirect_uri, params.get("nonce"), challenge, user,
                                           time.monotonic() + CODE_LIFETIME)
                reply["code"] = code
            return 302, _with_query(redirect_uri, reply)

    def token(self, form: Mapping[str, str], authorization: str | None) -> dict[str, Any]:
        """The token answer for a token request; raises ``TokenError``."""
        with self._lock:
            self.token_requests.append(dict(form))
            client_id, client_secret = _client_credentials(form, authorization)
            if client_id != self.client_id or not hmac.compare_digest(client_secret.encode(),
                                                                       self.client_secret.encode()):
                raise TokenError(401, "invalid_client", "unknown client or wrong secret")
            if form.get("grant_type") != "authorization_code":
                raise TokenError(400, "unsupported_grant_type", "only authorization_code")
            # Single use: the code is gone whatever the outcome of this request.
            grant = self._codes.pop(form.get("code", ""), None)
            if grant is None or grant.expires < time.monotonic():
                raise TokenError(400, "invalid_grant", "unknown, used or expired code")
            if grant.client_id != client_id or grant.redirect_uri != form.get("redirect_uri"):
                raise TokenError(400, "invalid_grant", "code issued to another client or redirect_uri")
            if grant.challenge is not None:
                verifier = form.get("code_verifier", "")
                if not verifier or not hmac.compare_digest(s256(verifier), grant.challenge):
                    raise TokenError(400, "invalid_grant", "PKCE code_verifier does not match")
        access_token = secrets.token_urlsafe(32)
        now = int(time.time())
        email = str(grant.user.get("email", ""))
        claims: dict[str, Any] = {
            "sub": str(uuid.uuid5(uuid.NAMESPACE_URL, f"mailto:{email.lower()}")),
            "name": email.partition("@")[0],
            **grant.user,
            "iss": self.issuer, "aud": client_id, "iat": now, "auth_time": now,
            "exp": now + TOKEN_LIFETIME, "at_hash": at_hash(access_token),
        }
        if grant.nonce is not None:
            claims["nonce"] = grant.nonce
        return {"access_token": access_token, "token_type": "Bearer", "expires_in": TOKEN_LIFETIME,
                "scope": "openid email profile", "id_token": self.sign(claims)}


def _with_query(uri: str, params: Mapping[str, str]) -> str:
    parts = urlsplit(uri)
    query = "&".join(q for q in (parts.query, urlencode(params)) if q)
    return urlunsplit(parts._replace(query=query))


def _client_credentials(form: Mapping[str, str], authorization: str | None) -> tuple[str, str]:
    """client_secret_basic (id and secret form-urlencoded inside Basic, RFC 6749 2.3.1) or
    client_secret_post."""
    if authorization and authorization.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return "", ""
        client_id, _, secret = decoded.partition(":")
        return unquote(client_id.replace("+", " ")), unquote(secret.replace("+", " "))
    return form.get("client_id", ""), form.get("client_secret", "")


class _Handler(BaseHTTPRequestHandler):
    server_version = "oidc-test-peer"
    peer: OidcPeer  # set on the subclass made per server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes: without this, Nagle plus delayed ACKs cost
        # ~40 ms per answer.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: tests assert on peer.authorize_requests / token_requests instead

    def _send(self, status: int, body: bytes, content_type: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, document: Mapping[str, Any], headers: Iterable[tuple[str, str]] = ()) -> None:
        self._send(status, json.dumps(document).encode(), "application/json", headers)

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path == "/.well-known/openid-configuration":
            self._json(200, self.peer.metadata())
        elif parts.path == "/jwks":
            self._json(200, self.peer.jwks())
        elif parts.path == "/authorize":
            status, where = self.peer.authorize(dict(parse_qsl(parts.query)))
            if status == 302:
                self._send(302, b"", "text/plain", [("Location", where)])
            else:
                self._send(status, where.encode(), "text/plain; charset=utf-8")
        else:
            self._send(404, b"not found", "text/plain")

    def do_POST(self) -> None:
        if urlsplit(self.path).path != "/token":
            self._send(404, b"not found", "text/plain")
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace")
        if (self.headers.get("Content-Type") or "").split(";")[0].strip() != FORM:
            self._json(400, {"error": "invalid_request", "error_description": f"expected {FORM}"})
            return
        try:
            answer = self.peer.token(dict(parse_qsl(body)), self.headers.get("Authorization"))
        except TokenError as error:
            extra = [("WWW-Authenticate", 'Basic realm="oidc-test-peer"')] if error.status == 401 else []
            self._json(error.status, {"error": error.error, "error_description": error.description}, extra)
            return
        self._json(200, answer, [("Pragma", "no-cache")])


def start_oidc(redirect_uris: Iterable[str] = (), *, client_id: str = CLIENT_ID,
               client_secret: str = CLIENT_SECRET) -> OidcPeer:
    """Start a provider on a free port of 127.0.0.1 for one confidential client. More redirect
    URIs can be added to ``peer.redirect_uris`` later (e.g. once the app's port is known)."""
    peer = OidcPeer(client_id, client_secret, set(redirect_uris))
    handler = type("Handler", (_Handler,), {"peer": peer})
    server = ThreadingHTTPServer((HOST, 0), handler)  # daemon threads: stop() never waits on a browser
    peer.port = int(server.server_address[1])
    peer._server = server
    peer._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                    name="oidc-peer", daemon=True)
    peer._thread.start()
    return peer
