"""Who may see which page: roles from the [access] secrets section, and local mode.

Roles: ``viewer`` (Overview, Hosts, Catalogue), ``admin`` (plus Worklist and Collection:
collecting and importing), ``auditor`` (plus Snapshots: bundles and verification; read-only).
A person may hold several roles. Without ``[auth]`` (Streamlit's OIDC sign-in) the dashboard
runs in local mode: every page, but only bound to a loopback address and only to requests
that name this machine by a loopback name (no DNS rebinding).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from settings import AccessSettings, Role

PAGES_BY_ROLE = {
    Role.VIEWER: ("overview", "hosts", "catalog"),
    Role.ADMIN: ("overview", "hosts", "catalog", "worklist", "collection"),
    Role.AUDITOR: ("overview", "hosts", "catalog", "snapshots"),
}
LOOPBACK = ("127.0.0.1", "localhost", "::1")
# The Host header of a request to a loopback name: the name exactly (ASCII case folding only,
# so no look-alike letter folds into it), then an optional port of digits.
_LOOPBACK_HOST = re.compile(r"(?:localhost|127\.0\.0\.1|\[::1\])(?::(?P<port>[0-9]{1,5}))?",
                            re.ASCII | re.IGNORECASE)


@dataclass(frozen=True)
class Access:
    local: bool
    roles: frozenset[Role]
    who: str

    def pages(self) -> tuple[str, ...]:
        if self.local:
            return ("overview", "hosts", "worklist", "collection", "snapshots", "catalog")
        allowed = {page for role in self.roles for page in PAGES_BY_ROLE[role]}
        order = ("overview", "hosts", "worklist", "collection", "snapshots", "catalog")
        return tuple(page for page in order if page in allowed)


def auth_configured(secrets: Mapping[str, Any]) -> bool:
    section = secrets.get("auth")
    return isinstance(section, Mapping) and bool(section)


def local_mode_allowed(address: str | None) -> bool:
    """Without sign-in the dashboard may only listen on loopback."""
    return (address or "").strip().strip("[]").lower() in LOOPBACK


def loopback_host(host_header: str | None) -> bool:
    """Whether a request's Host header names this machine by a loopback name: ``localhost``,
    ``127.0.0.1`` or ``[::1]``, in any case, with or without a port.

    Everything else is refused, a missing header too. Above all a name that merely resolves
    to 127.0.0.1: an attacker's site can point its own name at this machine (DNS rebinding)
    and its pages may then read ours as their own. Also names that start or end like a
    loopback name (``localhost.attacker.example``, ``localhost:8501@evil``), other spellings of
    the address (browsers send the canonical one) and the absolute ``localhost.``, which a
    resolver may ask DNS about instead of answering from the hosts file.
    """
    match = _LOOPBACK_HOST.fullmatch(host_header or "")
    return match is not None and (match["port"] is None or 0 < int(match["port"]) <= 65535)


def local_request_allowed(hosts: Sequence[str] | None) -> bool:
    """Whether local mode may answer a session, given every Host header of its request.

    ``None``: no request is behind the run (AppTest; a session whose browser has gone, which
    Streamlit stops at its next element). A browser's request has headers, so it must carry
    exactly one Host header, naming a loopback name.
    """
    return hosts is None or (len(hosts) == 1 and loopback_host(hosts[0]))


def _folded(value: Any) -> set[str]:
    if isinstance(value, str):
        return {value.strip().lower()}
    if isinstance(value, Iterable):
        return {str(v).strip().lower() for v in value}
    return set()


def roles_for(user: Mapping[str, Any], access: AccessSettings) -> frozenset[Role]:
    """Roles of a signed-in user, by e-mail address or group claim (case-insensitive)."""
    email = str(user.get("email") or "").strip().lower()
    groups = _folded(user.get("groups") or [])
    roles = set()
    for role in Role:
        if email and email in _folded(access.members(role)):
            roles.add(role)
        if groups & _folded(access.groups(role)):
            roles.add(role)
    return frozenset(roles)
