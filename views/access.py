"""Who may see which page: roles from the [access] secrets section, and local mode.

Roles: ``viewer`` (Overview, Hosts, Catalogue), ``admin`` (plus Worklist and Collection:
collecting and importing), ``auditor`` (plus Snapshots: bundles and verification; read-only).
A person may hold several roles. Without ``[auth]`` (Streamlit's OIDC sign-in) the dashboard
runs in local mode: every page, but only bound to a loopback address.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

ROLES = ("viewer", "admin", "auditor")
PAGES_BY_ROLE = {
    "viewer": ("overview", "hosts", "catalog"),
    "admin": ("overview", "hosts", "catalog", "worklist", "collection"),
    "auditor": ("overview", "hosts", "catalog", "snapshots"),
}
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class Access:
    local: bool
    roles: frozenset[str]
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


def _strings(value: Any) -> set[str]:
    if isinstance(value, str):
        return {value.strip().lower()}
    if isinstance(value, Iterable):
        return {str(v).strip().lower() for v in value}
    return set()


def roles_for(user: Mapping[str, Any], access: Mapping[str, Any]) -> frozenset[str]:
    """Roles of a signed-in user, by e-mail address or group claim (case-insensitive)."""
    email = str(user.get("email") or "").strip().lower()
    groups = _strings(user.get("groups") or [])
    roles = set()
    for role in ROLES:
        if email and email in _strings(access.get(f"{role}s", [])):
            roles.add(role)
        if groups & _strings(access.get(f"{role}_groups", [])):
            roles.add(role)
    return frozenset(roles)
