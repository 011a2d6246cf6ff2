"""Every setting, declared once in one table, and the one pure function that resolves it.

The table is the pydantic models below: one per section, each field with its type, range,
default and (where it has one) environment variable. ``resolve(file, secrets, environ)``
checks and merges the three sources; nothing else parses a setting.

Sources:
- the collection file (TOML, shared and versioned): ``[ldap]``, ``[scope]``, ``[winrm]``,
  ``[fingerprint]``; never a secret.
- the secrets (``st.secrets`` for the dashboard, ``.streamlit/secrets.toml`` for the command
  lines): ``[store]``, ``[dashboard]``, ``[collection]``, ``[ldap] password``,
  ``[winrm] password``, ``[access]``, ``[worklist]``, ``[acceptances]``, ``[deadlines]``,
  ``[notifications]``. Other sections
  (Streamlit's ``[auth]``, ``[connections]``) are left alone.
- the environment, over the secrets, for each field that names a variable.

Refused, each as one ``SettingsError`` line naming the section and key: an unknown section or
key (with the closest known name), a wrong type, NaN or infinity, a value out of range, and
any password-like key in the collection file.
"""

from __future__ import annotations

import difflib
import getpass
import os
import re
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from compliance.deadline import INDICATORS, Basis, DeadlinePolicy, Directive
from compliance.models import Status

PROJECT_ROOT = Path(__file__).resolve().parent
DEFAULT_DATA_DIR = PROJECT_ROOT / "data"
# The command lines' secrets file (the dashboard sees what ``st.secrets`` sees instead).
SECRETS_FILE = PROJECT_ROOT / ".streamlit" / "secrets.toml"
AD_MAX_PAGE_SIZE = 1000  # AD's MaxPageSize: a larger page is cut to this by the server
LDAP_PASSWORD_ENV = "PROXYLOGON_LDAP_PASSWORD"
WINRM_PASSWORD_ENV = "PROXYLOGON_WINRM_PASSWORD"
DAY = 86_400.0  # seconds: the longest wait any setting may ask for


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names it and the fix."""


class Role(StrEnum):
    """What a signed-in person may do; ``[access]`` grants them (views/access.py)."""

    VIEWER = "viewer"
    ADMIN = "admin"
    AUDITOR = "auditor"


def _listed(value: Any) -> Any:
    """One string where a list is expected means a list of one (TOML lists arrive as lists)."""
    if isinstance(value, str):
        return (value,)
    return tuple(value) if isinstance(value, list) else value


def _blank_is_none(value: Any) -> Any:
    return None if value == "" else value


def _lowered(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _no_bool(value: Any) -> Any:
    """A number from the secrets, never ``true`` (which pydantic's lax mode reads as 1)."""
    if isinstance(value, bool):
        raise ValueError(f"must be a number, not {str(value).lower()}")
    return value


def _no_blank_path(value: Any) -> Any:
    """An empty path would mean the current directory, silently."""
    if isinstance(value, str) and not value.strip():
        raise ValueError("is empty: give a directory, or remove the setting")
    return value


Strings = Annotated[tuple[str, ...], BeforeValidator(_listed)]
Text = Annotated[str | None, BeforeValidator(_blank_is_none)]


def _env(name: str) -> dict[str, Any]:
    return {"env": name}


class _Section(BaseModel):
    """A table of settings: unknown keys, NaN and infinity refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class _FileSection(_Section):
    # TOML values are typed: ``start_tls = "no"`` or ``port = 5986.5`` is a mistake.
    model_config = ConfigDict(strict=True)


# --- the collection file --------------------------------------------------------------------

# A Kerberos principal: user@REALM (the realm is upper case by convention; MIT compares exactly).
_PRINCIPAL = re.compile(r"^[^@\s/]+(?:/[^@\s/]+)?@[^@\s]+$")


class KerberosSettings(_FileSection):
    """[kerberos]: the service account's ticket, for ``auth = "kerberos"`` (LDAP) and
    ``transport = "kerberos"`` (WinRM). No password: a keytab, or the running user's ticket."""

    principal: str = Field(description='the service account, e.g. "svc-exprobe@CORP.EXAMPLE"')
    keytab: Text = Field(None, description="its keytab (ktpass), relative to the config file's "
                         "folder; none: the running user's credential cache (kinit)")
    canonicalize: bool = Field(False, description="let DNS and reverse DNS pick a service's "
                               "host name for its SPN (off: the name as configured)")

    @field_validator("principal")
    @classmethod
    def _principal(cls, value: str) -> str:
        if not _PRINCIPAL.match(value):
            raise ValueError("expected user@REALM, e.g. svc-exprobe@CORP.EXAMPLE")
        return value


class LdapSettings(_FileSection):
    servers: Strings = Field(min_length=1, description='domain controllers, e.g. '
                             '["ldaps://dc1.corp.example"]')
    bind_user: Text = Field(None, description="a DN, a UPN, or DOMAIN\\user for NTLM; not "
                            "with Kerberos ([kerberos] principal)")
    auth: Annotated[Literal["simple", "ntlm", "kerberos"], BeforeValidator(_lowered)] = "simple"
    ca_file: Text = Field(None, description="CA bundle, relative to the config file's folder")
    start_tls: bool = True
    allow_plain: bool = False
    base: Text = None
    domain_base: Text = None
    page_size: int = Field(AD_MAX_PAGE_SIZE, gt=0, le=AD_MAX_PAGE_SIZE)
    connect_timeout: float = Field(10.0, gt=0, le=DAY)
    timeout: float = Field(30.0, gt=0, le=DAY)

    @model_validator(mode="after")
    def _user(self) -> LdapSettings:
        if self.auth != "kerberos" and not self.bind_user:
            raise ValueError(f'bind_user is missing (auth = "{self.auth}"; only Kerberos needs '
                             "none)")
        return self


class ScopeSettings(_FileSection):
    include_sites: Strings = ()
    exclude_sites: Strings = ()
    include_names: Strings = ()
    exclude_names: Strings = ()
    only: Strings = ()


class WinrmSettings(_FileSection):
    username: Text = Field(None, description="e.g. CORP\\svc-exprobe or svc@corp.example; not "
                           "with Kerberos ([kerberos] principal)")
    transport: Annotated[Literal["ntlm", "kerberos", "basic"], BeforeValidator(_lowered)] = "ntlm"
    scheme: Annotated[Literal["https", "http"], BeforeValidator(_lowered)] = "https"
    allow_http: bool = False
    ca_file: Text = Field(None, description="CA bundle, relative to the config file's folder")
    port: int | None = Field(None, gt=0, le=65_535, description="5986 for https, 5985 for http")
    deadline_seconds: float = Field(120.0, gt=0, le=DAY)
    read_timeout_seconds: int = Field(30, gt=0, le=int(DAY))
    operation_timeout_seconds: int = Field(20, gt=0, le=int(DAY))
    concurrency: int = Field(32, gt=0, le=1024)
    retries: int = Field(2, ge=0, le=100)
    backoff_seconds: float = Field(1.0, gt=0, le=DAY)
    spn_service: str = Field("HTTP", pattern=r"^[A-Za-z][A-Za-z0-9-]{0,31}$",
                             description="Kerberos: the SPN's service class (HTTP/<fqdn>)")
    spn_hostname: Text = Field(None, description="Kerberos: the SPN's host for every server, "
                               "instead of the name connected to (tests, a load balancer)")
    ntlm_fallback: bool = Field(False, description="Kerberos: try NTLM (with [winrm] password) "
                                "on a host no service ticket could be had for")

    @model_validator(mode="before")
    @classmethod
    def _removed(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "processes" in data:
            raise ValueError("processes was removed: every host is now probed on a thread of one "
                             "process, which keeps up with thousands of servers "
                             "(bench/collection.py); delete the line (concurrency still applies)")
        return data

    @model_validator(mode="after")
    def _consistent(self) -> WinrmSettings:
        if self.scheme == "http" and not self.allow_http:
            raise ValueError('scheme = "http" needs allow_http = true (and then only NTLM or '
                             "Kerberos with message encryption is used)")
        if self.transport == "basic" and (self.scheme == "http" or self.allow_http):
            raise ValueError("Basic authentication is allowed over HTTPS only")
        if self.operation_timeout_seconds >= self.read_timeout_seconds:
            raise ValueError("operation_timeout_seconds must be below read_timeout_seconds")
        if self.spn_hostname is not None and not is_host_name(self.spn_hostname):
            raise ValueError("spn_hostname must be a DNS host name, e.g. ex01.corp.example")
        if self.ntlm_fallback and self.transport != "kerberos":
            raise ValueError('ntlm_fallback applies to transport = "kerberos" only (NTLM as '
                             "the principal, with [winrm] password)")
        if self.transport != "kerberos" and not self.username:
            raise ValueError(f'username is missing (transport = "{self.transport}"; only Kerberos '
                             "needs none)")
        return self

    @property
    def port_or_default(self) -> int:
        return self.port or (5986 if self.scheme == "https" else 5985)


# An ASCII DNS name (letters, digits, hyphens; labels of 1 to 63): a namespace is put into a URL
# as it is, so nothing that could carry a scheme, a port, a path or a user part may pass.
_HOST_NAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                        r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$", re.ASCII)
URLS_MAX = 10_000  # entries of [fingerprint] urls: more than any fleet has endpoints


def is_host_name(text: str) -> bool:
    """Whether ``text`` is a DNS host name (``mail.corp.example``), nothing more."""
    return bool(_HOST_NAME.match(text))


def _base_url_problem(url: str) -> str:
    """Why ``url`` cannot be an endpoint's base URL (empty: it can): an https URL with a host and
    at most a path; a user part would put a credential in the shared file."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  # raises ValueError for a port out of range or not a number
    except ValueError as error:
        return f"is not a URL ({error})"
    if not url.isprintable() or " " in url:
        return "holds spaces or control characters"
    if parts.username is not None or parts.password is not None:
        return "must not hold a user name or password"
    if parts.query or parts.fragment or not parts.hostname:
        return "must be https://host[:port][/path/] (no query or fragment)"
    return ""


class FingerprintSettings(_FileSection):
    """The unauthenticated HTTPS look at OWA/ECP (collectors/fingerprint.py, docs/fingerprint.md).

    ``enabled`` makes it part of ``collect``; ``python -m collectors fingerprint`` runs it on
    request either way. ``urls`` maps an endpoint's name (a server's name or FQDN, or a
    namespace; case-insensitive) to the https base URL to use instead of ``https://<name>/``."""

    enabled: bool = False
    namespaces: Strings = Field((), description='published host names, e.g. ["mail.corp.example"]')
    ca_file: Text = Field(None, description="CA bundle, relative to the config file's folder")
    # Off by default: an endpoint whose certificate does not validate is then a ``tls`` failure.
    # On, it is read anyway and marked untrusted; nothing it disclosed is ever proof.
    record_invalid_certificate: bool = False
    concurrency: int = Field(64, gt=0, le=1024)
    deadline_seconds: float = Field(30.0, gt=0, le=DAY)  # all of one endpoint's requests
    timeout_seconds: float = Field(10.0, gt=0, le=DAY)   # one connection or read
    urls: dict[str, str] = Field(default_factory=dict, description="endpoint name = https URL")

    @field_validator("namespaces", mode="after")
    @classmethod
    def _host_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not is_host_name(name):
                shown = repr(name) if len(name) <= 80 else f"{len(name)} characters"
                raise ValueError(f"namespaces: {shown} is not a host name (give the name alone, "
                                 'e.g. "mail.corp.example", with no scheme, port or path)')
        return value

    @field_validator("urls", mode="before")
    @classmethod
    def _urls(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            raise ValueError(f"urls must be a table of name = URL, not {type(value).__name__}")
        if len(value) > URLS_MAX:
            raise ValueError(f"urls has {len(value)} entries, more than {URLS_MAX}")
        seen: dict[str, str] = {}
        for name, url in value.items():
            if not isinstance(url, str) or not url.lower().startswith("https://"):
                shown = "" if isinstance(url, str) else f", not {type(url).__name__}"
                raise ValueError(f"urls: the URL of {str(name)[:80]!r} must be a string starting "
                                 f"with https://{shown}")
            problem = _base_url_problem(url)
            if problem:
                raise ValueError(f"urls: the URL of {str(name)[:80]!r} {problem}")
            if name.casefold() in seen:
                raise ValueError(f"urls: {seen[name.casefold()]!r} and {name!r} are the same name "
                                 "(names match case-insensitively): keep one")
            seen[name.casefold()] = name
        return value

    @model_validator(mode="after")
    def _consistent(self) -> FingerprintSettings:
        if self.timeout_seconds > self.deadline_seconds:
            raise ValueError("timeout_seconds (one request) must not exceed deadline_seconds (all "
                             "of an endpoint's requests)")
        return self

    def __hash__(self) -> int:  # as every section's: the table as (name, URL) pairs
        return hash((self.enabled, self.namespaces, self.ca_file, self.record_invalid_certificate,
                     self.concurrency, self.deadline_seconds, self.timeout_seconds,
                     tuple(self.urls.items())))


class FileSettings(_FileSection):
    """The collection file: every section optional, nothing else allowed."""

    ldap: LdapSettings | None = None
    scope: ScopeSettings = ScopeSettings()
    winrm: WinrmSettings | None = None
    fingerprint: FingerprintSettings = FingerprintSettings()
    kerberos: KerberosSettings | None = None

    @model_validator(mode="after")
    def _kerberos(self) -> FileSettings:
        users = [name for name, used in (
            ("[ldap] auth", self.ldap is not None and self.ldap.auth == "kerberos"),
            ("[winrm] transport", self.winrm is not None and self.winrm.transport == "kerberos"))
            if used]
        if users and self.kerberos is None:
            raise ValueError(f'{" and ".join(users)} = "kerberos" needs a [kerberos] section '
                             'with principal = "svc-exprobe@CORP.EXAMPLE" (and keytab, or a '
                             "ticket from kinit)")
        return self


# --- the secrets, with the environment over them ----------------------------------------------

class StoreSettings(_Section):
    data_dir: Annotated[Path, BeforeValidator(_no_blank_path)] = Field(
        DEFAULT_DATA_DIR, description="directory of the embedded SQLite store",
                           json_schema_extra=_env("PROXYLOGON_DATA_DIR"))
    url: str = Field("", description="SQLAlchemy URL of the store; empty means SQLite in data_dir",
                     json_schema_extra=_env("PROXYLOGON_STORE_URL"))
    signing_key: SecretStr | None = Field(
        None, description="secret for the HMAC of every snapshot digest (keep it off the "
        "database host)", json_schema_extra=_env("PROXYLOGON_SIGNING_KEY"))

    @field_validator("signing_key", mode="after")
    @classmethod
    def _not_blank(cls, value: SecretStr | None) -> SecretStr | None:
        # An empty key would mean "no key" silently, and then unsigned writes.
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("signing_key is empty: set the key, or remove the setting")
        return value
    lock_timeout: Annotated[float, BeforeValidator(_no_bool)] = Field(
        30.0, gt=0, le=DAY, description="seconds a save waits for "
                                "another writer's lock", json_schema_extra=_env("PROXYLOGON_LOCK_TIMEOUT"))


class DashboardSettings(_Section):
    demo: bool = Field(True, description="seed the demo fleet into an empty store",
                       json_schema_extra=_env("PROXYLOGON_DEMO"))
    max_age_days: Annotated[float, BeforeValidator(_no_bool)] = Field(
        7.0, gt=0, le=36_500, description="observations older than this "
                                "are stale", json_schema_extra=_env("PROXYLOGON_MAX_AGE_DAYS"))


class CollectionSettings(_Section):
    config: Path | None = Field(None, description="collection config file (copy of "
                                "collection.example.toml); enables 'Collect now'",
                                json_schema_extra=_env("PROXYLOGON_COLLECTION_CONFIG"))
    inventory: Path | None = Field(None, description="CSV/TOML host list merged with AD",
                                   json_schema_extra=_env("PROXYLOGON_COLLECTION_INVENTORY"))

    @model_validator(mode="before")
    @classmethod
    def _blank_paths(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            return {key: _blank_is_none(value) for key, value in data.items()}
        return data


class LdapSecrets(_Section):
    password: SecretStr | None = Field(None, json_schema_extra=_env(LDAP_PASSWORD_ENV))


class WinrmSecrets(_Section):
    password: SecretStr | None = Field(None, json_schema_extra=_env(WINRM_PASSWORD_ENV))


class AccessSettings(_Section):
    viewers: Strings = ()
    admins: Strings = ()
    auditors: Strings = ()
    viewer_groups: Strings = ()
    admin_groups: Strings = ()
    auditor_groups: Strings = ()

    def members(self, role: Role) -> tuple[str, ...]:
        return {Role.VIEWER: self.viewers, Role.ADMIN: self.admins,
                Role.AUDITOR: self.auditors}[role]

    def groups(self, role: Role) -> tuple[str, ...]:
        return {Role.VIEWER: self.viewer_groups, Role.ADMIN: self.admin_groups,
                Role.AUDITOR: self.auditor_groups}[role]


OWNER_MAX = 200  # characters of one owner: a name, a team or an address


class WorklistSettings(_Section):
    """Who takes each host's work on the worklist (its ``owner`` column): a DAG's owner, else
    its AD site's (store/export.py ``Owners``). Names match case-insensitively."""

    site_owners: dict[str, str] = Field(default_factory=dict, description="AD site = owner")
    dag_owners: dict[str, str] = Field(default_factory=dict, description="DAG = owner")

    @field_validator("site_owners", "dag_owners", mode="before")
    @classmethod
    def _owners(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, Mapping):
            raise ValueError(f"{info.field_name} must be a table of name = owner, "
                             f"not {type(value).__name__}")
        seen: dict[str, str] = {}
        for name, owner in value.items():
            if not isinstance(name, str) or not name.strip():
                raise ValueError(f"{info.field_name}: a name must be a non-empty string")
            if not isinstance(owner, str) or not owner.strip() or len(owner) > OWNER_MAX:
                shown = (f"{len(owner)} characters" if isinstance(owner, str) and owner.strip()
                         else repr(owner) if isinstance(owner, str) else type(owner).__name__)
                raise ValueError(f"{info.field_name}: the owner of {name!r} must be a non-empty "
                                 f"string of at most {OWNER_MAX} characters, not {shown}")
            if name.casefold() in seen:
                raise ValueError(f"{info.field_name}: {seen[name.casefold()]!r} and {name!r} are "
                                 "the same name (names match case-insensitively): keep one")
            seen[name.casefold()] = name
        return value

    def __hash__(self) -> int:  # as every section's: the tables as (name, owner) pairs
        return hash((tuple(self.site_owners.items()), tuple(self.dag_owners.items())))


class AcceptanceSettings(_Section):
    """Risk acceptances (compliance/acceptance.py)."""

    max_days: Annotated[int, BeforeValidator(_no_bool)] = Field(
        90, ge=1, le=365, description="longest risk acceptance, in days",
        json_schema_extra=_env("PROXYLOGON_ACCEPTANCE_MAX_DAYS"))


def _aware_time(value: datetime) -> datetime:
    """A directive's date must say its time zone (a bare one would be read in local time)
    and lie between 2000 and 2199 (a typo such as 0001 or 9999 is not a deadline)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("needs a time zone, e.g. 2021-03-05T12:00:00Z")
    if not 2000 <= value.year <= 2199:
        raise ValueError(f"year {value.year} is not a deadline: give a date from 2000 to 2199")
    return value


class DirectiveSettings(_Section):
    """A fixed date by which hosts of the listed statuses must be fixed (e.g. CISA ED 21-02's
    "patch or disconnect by 2021-03-05 12:00 UTC")."""

    name: str = Field(min_length=1, max_length=200)
    due: Annotated[datetime, AfterValidator(_aware_time)]
    statuses: Annotated[tuple[Literal["vulnerable", "mitigated", "unknown"], ...],
                        BeforeValidator(_listed)] = Field(("vulnerable", "unknown"), min_length=1)


class DeadlineSettings(_Section):
    """The deadline policy (compliance/deadline.py): days allowed per status, counted from the
    day a host was first seen needing work or from the advisory's publication."""

    basis: Annotated[Literal["first_seen", "published"], BeforeValidator(_lowered)] = Field(
        "first_seen", description="count from the day a host was first seen needing work, or "
        "from the advisory's publication", json_schema_extra=_env("PROXYLOGON_DEADLINE_BASIS"))
    vulnerable_days: Annotated[float, BeforeValidator(_no_bool)] = Field(2.0, ge=0, le=3650)
    mitigated_days: Annotated[float, BeforeValidator(_no_bool)] = Field(14.0, ge=0, le=3650)
    # A host that could not be read may be vulnerable: as urgent as one that is (fail closed).
    unknown_days: Annotated[float, BeforeValidator(_no_bool)] = Field(2.0, ge=0, le=3650)
    # Compromise indicators: investigate at once (CISA ED 21-02 asked for forensic triage).
    indicators_days: Annotated[float, BeforeValidator(_no_bool)] = Field(0.0, ge=0, le=3650)
    directives: tuple[DirectiveSettings, ...] = Field((), max_length=20)

    def policy(self) -> DeadlinePolicy:
        """As the pure core takes it (compliance/deadline.py)."""
        return DeadlinePolicy(
            basis=Basis(self.basis),
            days={"vulnerable": self.vulnerable_days, "mitigated": self.mitigated_days,
                  "unknown": self.unknown_days, INDICATORS: self.indicators_days},
            directives=tuple(Directive(d.name, d.due, frozenset(Status(s) for s in d.statuses))
                             for d in self.directives))


class NotificationSettings(_Section):
    """After each collection, one message of what changed (notify/): e-mail and/or webhook."""

    smtp_host: str = Field("", description="SMTP server; empty: no e-mail")
    smtp_port: Annotated[int, BeforeValidator(_no_bool)] = Field(587, gt=0, le=65_535)
    smtp_starttls: bool = True
    # Implicit TLS (port 465) instead of STARTTLS.
    smtp_tls: bool = False
    smtp_ca_file: Text = None
    smtp_username: str = ""
    smtp_password: SecretStr | None = Field(
        None, json_schema_extra=_env("PROXYLOGON_SMTP_PASSWORD"))
    mail_from: str = ""
    mail_to: Strings = ()
    webhook_url: str = Field("", description="https URL of an incoming webhook; empty: none")

    @field_validator("webhook_url", mode="after")
    @classmethod
    def _https(cls, value: str) -> str:
        # Checked before any run: the message and its signature only ever go over TLS. The
        # URL itself is never repeated (incoming-webhook URLs carry their token).
        if value.strip():
            try:
                parts = urlsplit(value.strip())
                port = parts.port
            except ValueError:
                raise ValueError("webhook_url is not a URL this tool can use") from None
            if parts.scheme != "https" or not parts.hostname:
                raise ValueError("webhook_url must be an https:// URL (the message is sent "
                                 "over TLS only)")
            if port == 0:
                raise ValueError("webhook_url has port 0")
        return value
    webhook_secret: SecretStr | None = Field(
        None, description="key of the X-ProxyLogon-Signature HMAC-SHA256 header",
        json_schema_extra=_env("PROXYLOGON_WEBHOOK_SECRET"))
    webhook_ca_file: Text = None
    timeout_seconds: Annotated[float, BeforeValidator(_no_bool)] = Field(10.0, gt=0, le=600)
    attempts: Annotated[int, BeforeValidator(_no_bool)] = Field(3, ge=1, le=10)
    backoff_seconds: Annotated[float, BeforeValidator(_no_bool)] = Field(2.0, ge=0, le=600)
    expiring_days: Annotated[float, BeforeValidator(_no_bool)] = Field(7.0, gt=0, le=365)


class SecretSettings(_Section):
    # Other sections belong to Streamlit ([auth], [connections]) or to the user.
    model_config = ConfigDict(extra="ignore")

    store: StoreSettings = StoreSettings()
    dashboard: DashboardSettings = DashboardSettings()
    collection: CollectionSettings = CollectionSettings()
    ldap: LdapSecrets = LdapSecrets()
    winrm: WinrmSecrets = WinrmSecrets()
    access: AccessSettings = AccessSettings()
    worklist: WorklistSettings = WorklistSettings()
    acceptances: AcceptanceSettings = AcceptanceSettings()
    deadlines: DeadlineSettings = DeadlineSettings()
    notifications: NotificationSettings = NotificationSettings()


# --- resolution -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Settings:
    """The dashboard's and the store's settings, ready to use."""

    data_dir: Path
    store_url: str
    signing_key: bytes | None
    lock_timeout: float
    collection_config: Path | None
    collection_inventory: Path | None
    demo: bool
    max_age: timedelta
    # [worklist]: (name, owner) pairs, for store.export.Owners (immutable, so hashable).
    site_owners: tuple[tuple[str, str], ...] = ()
    dag_owners: tuple[tuple[str, str], ...] = ()
    acceptance_max_days: int = 90  # [acceptances] max_days
    deadlines: DeadlineSettings = field(default_factory=DeadlineSettings)


@dataclass(frozen=True)
class Resolved:
    """Every setting from one resolution: the collection file's and the secrets'."""

    file: FileSettings
    secrets: SecretSettings

    @property
    def settings(self) -> Settings:
        store, dashboard, collection = (self.secrets.store, self.secrets.dashboard,
                                        self.secrets.collection)
        data_dir = store.data_dir.expanduser()
        key = store.signing_key.get_secret_value() if store.signing_key else ""
        return Settings(
            data_dir=data_dir,
            store_url=store.url or f"sqlite:///{data_dir / 'compliance.db'}",
            signing_key=key.encode() if key else None,
            lock_timeout=store.lock_timeout,
            collection_config=collection.config, collection_inventory=collection.inventory,
            demo=dashboard.demo, max_age=timedelta(days=dashboard.max_age_days),
            site_owners=tuple(self.secrets.worklist.site_owners.items()),
            dag_owners=tuple(self.secrets.worklist.dag_owners.items()),
            acceptance_max_days=self.secrets.acceptances.max_days,
            deadlines=self.secrets.deadlines)

    def password(self, section: Literal["ldap", "winrm"]) -> str:
        """The LDAP or WinRM password; ``SettingsError`` naming both places to put it."""
        value = getattr(self.secrets, section).password
        if value is None or not value.get_secret_value():
            label = "LDAP" if section == "ldap" else "WinRM"
            raise SettingsError(f"no {label} password: set [{section}] password in "
                                f".streamlit/secrets.toml or the environment variable "
                                f"{env_name(section, 'password')}")
        return str(value.get_secret_value())


# Streamlit's own sections of the secrets (st.login's [auth], st.connection's [connections]).
STREAMLIT_SECTIONS = ("auth", "connections")
_SECRET_LIKE = ("pass", "pwd", "secret", "token", "credential")


def resolve(file: Mapping[str, Any], secrets: Mapping[str, Any],
            environ: Mapping[str, str]) -> Resolved:
    """Check and merge every setting from the collection file's mapping, the secrets' mapping
    and the environment (over the secrets). Pure: reads no file and no variable itself.

    Raises ``SettingsError`` (one line: section, key, what is expected) for the first problem.
    """
    _refuse_secrets_in_file(file)
    try:
        file_settings = FileSettings.model_validate(dict(file))
    except ValidationError as error:
        raise SettingsError(_message(error, FileSettings, "in the collection file",
                                     environ={})) from None
    ours = list(SecretSettings.model_fields)
    for name in secrets:
        if name in ours or name in STREAMLIT_SECTIONS:
            continue
        close = [n for n in ours if n == str(name).lower()] or difflib.get_close_matches(
            str(name).lower(), ours, n=1, cutoff=0.8)
        if close:  # [Store], [stroe]: a typo that would be ignored
            raise SettingsError(f"[{name}] in the secrets is not a section: did you mean "
                                f"[{close[0]}]?")
    merged = _with_environment(secrets, environ)
    try:
        secret_settings = SecretSettings.model_validate(merged)
    except ValidationError as error:
        raise SettingsError(_message(error, SecretSettings, "in the secrets",
                                     environ=environ)) from None
    return Resolved(file_settings, secret_settings)


def load_settings(secrets: Mapping[str, Any], environ: Mapping[str, str]) -> Settings:
    """The dashboard's and store's settings (``resolve`` without a collection file)."""
    return resolve({}, secrets, environ).settings


def _refuse_secrets_in_file(file: Mapping[str, Any]) -> None:
    for name, section in file.items():
        if not isinstance(section, Mapping):
            continue  # the model refuses it, with its type
        for key in section:
            if any(part in str(key).lower() for part in _SECRET_LIKE):
                env = LDAP_PASSWORD_ENV if name == "ldap" else WINRM_PASSWORD_ENV
                raise SettingsError(
                    f"[{name}] {key} looks like a secret, which does not belong in the config "
                    f"file: put it in .streamlit/secrets.toml ([{name}] password) or {env}")


def _with_environment(secrets: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """The secrets with every set environment variable of the table laid over them."""
    merged: dict[str, Any] = dict(secrets)
    for name in SecretSettings.model_fields:
        model = _section_model(SecretSettings, name)
        assert model is not None
        section = merged.get(name, {})
        if not isinstance(section, Mapping):
            continue  # the model refuses it, with its type
        overlay = dict(section)
        for key, inner in model.model_fields.items():
            env = _env_of(inner)
            if env and env in environ:
                overlay[key] = environ[env]
        if overlay or name in merged:
            merged[name] = overlay
    return merged


def env_name(section: str, key: str) -> str:
    """The environment variable the table gives a secrets-side setting, e.g.
    ``env_name("collection", "config")``; ``KeyError`` for a setting that has none."""
    model = _section_model(SecretSettings, section)
    name = _env_of(model.model_fields[key]) if model else None
    if name is None:
        raise KeyError(f"[{section}] {key} has no environment variable")
    return name


def _env_of(field: FieldInfo) -> str | None:
    extra = field.json_schema_extra
    return str(extra["env"]) if isinstance(extra, dict) and "env" in extra else None


def _message(error: ValidationError, model: type[BaseModel], where: str,
             environ: Mapping[str, str]) -> str:
    """One line for the first problem pydantic found, in this tool's words."""
    problem = error.errors(include_url=False)[0]
    loc = [str(part) for part in problem["loc"]]
    kind = problem["type"]
    if len(loc) == 1 and kind == "extra_forbidden":
        return (f"[{loc[0]}] is not a section of the collection file"
                f"{suggest(loc[0], model.model_fields)}")
    section = loc[0] if loc else ""
    section_model = _section_model(model, section)
    if len(loc) == 1 and kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"[{section}] {where} must be a table of settings, not {type(problem['input']).__name__}"
    if len(loc) > 3 and loc[2].isdigit():  # an entry of a list of tables ([[a.b]])
        return _entry_message(problem, loc, section_model)
    if kind == "value_error" or len(loc) == 1 or section_model is None:
        text = str(problem.get("ctx", {}).get("error", problem["msg"]))
        named = len(loc) < 2 or text.startswith(loc[1])  # a field's own check names no key
        return f"[{section}] {text}" if named else f"[{section}] {loc[1]} {text}"
    key = loc[1]
    if kind == "extra_forbidden":
        return f"[{section}] {key} {where} is not a setting{suggest(key, section_model.model_fields)}"
    field = section_model.model_fields[key]
    env = _env_of(field)
    source = f" (from {env})" if env and env in environ else ""
    if kind == "missing":
        return f"[{section}] {key} is missing ({field.description})"
    if kind == "too_short" and field.description:
        return f"[{section}] {key} is empty: list {field.description}"
    # Only a scalar is repeated, and never a secret's or a store URL's (it may hold a
    # password): a list or table may carry one anywhere inside it.
    value = problem["input"]
    scalar = isinstance(value, str | int | float | bool) or value is None
    quiet = _is_secret(field) or key == "url" or not scalar
    shown = "" if quiet else f", not {value!r}"
    return f"[{section}] {key}{source} must be {expected(field)}{shown}"


def _entry_message(problem: Any, loc: list[str], section_model: type[BaseModel] | None) -> str:
    """One line for a problem inside an entry of a list of tables, e.g.
    "[deadlines] directives entry 1: dew is not a setting: did you mean 'due'?"."""
    section, key, number, inner = loc[0], loc[1], int(loc[2]), loc[3]
    where = f"[{section}] {key} entry {number + 1}: {inner}"
    entry = None
    if section_model is not None and key in section_model.model_fields:
        entry = next((a for a in get_args(section_model.model_fields[key].annotation)
                      if isinstance(a, type) and issubclass(a, BaseModel)), None)
    kind = problem["type"]
    if kind == "extra_forbidden":
        return f"{where} is not a setting{suggest(inner, entry.model_fields if entry else ())}"
    if kind == "missing":
        return f"{where} is missing"
    text = str(problem.get("ctx", {}).get("error", problem["msg"]))
    value = problem["input"]
    shown = f", not {value!r}" if isinstance(value, str | int | float | bool) else ""
    if kind in ("literal_error", "enum"):
        return f"{where} must be one of {problem.get('ctx', {}).get('expected', '')}{shown}"
    return f"{where} {text[:1].lower()}{text[1:]}{shown if kind != 'value_error' else ''}"


def _section_model(model: type[BaseModel], section: str) -> type[BaseModel] | None:
    field = model.model_fields.get(section)
    for candidate in (field.annotation, *get_args(field.annotation)) if field else ():
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _is_secret(field: FieldInfo) -> bool:
    return SecretStr in (field.annotation, *get_args(field.annotation))


def expected(field: FieldInfo) -> str:
    """What a field takes, in words, from its declaration: "a whole number from 1 to 65535"."""
    annotation = field.annotation
    optional = get_origin(annotation) in (Union, UnionType)
    kinds = [a for a in get_args(annotation) if a is not type(None)] if optional else [annotation]
    low = high = None
    for rule in field.metadata:
        low = getattr(rule, "gt", None) if getattr(rule, "gt", None) is not None else (
            getattr(rule, "ge", None) if getattr(rule, "ge", None) is not None else low)
        high = getattr(rule, "le", None) if getattr(rule, "le", None) is not None else high
    strict_low = any(getattr(rule, "gt", None) is not None for rule in field.metadata)
    kind = kinds[0] if kinds else annotation
    if get_origin(kind) is Literal:
        return "one of " + ", ".join(repr(value) for value in get_args(kind))
    if kind is bool:
        return "true or false"
    if kind is tuple or get_origin(kind) is tuple:
        return "a list of strings"
    if kind in (int, float):
        noun = "a whole number" if kind is int else "a number"
        if strict_low and low == 0:
            noun = "a positive whole number" if kind is int else "a positive number"
        elif low is not None:
            noun = f"{noun} from {low:g}"
        return f"{noun} up to {high:g}" if high is not None else noun
    if kind is Path:
        return "a path"
    return "a string"


def access_settings(secrets: Mapping[str, Any]) -> AccessSettings:
    """``[access]`` alone, checked by the table: the frame reads it before sign-in is complete,
    before anything else of the settings is needed. ``SettingsError`` as ``resolve``."""
    try:
        return SecretSettings.model_validate({"access": secrets.get("access", {})}).access
    except ValidationError as error:
        raise SettingsError(_message(error, SecretSettings, "in the secrets", environ={})) from None


def suggest(word: object, known: Iterable[str]) -> str:
    """": did you mean 'x'?" for the closest known name, else the list of known names: the
    tail of a message refusing ``word``."""
    names = list(known)
    close = difflib.get_close_matches(str(word), names, n=1, cutoff=0.6)
    return f": did you mean {close[0]!r}?" if close else f" (known: {', '.join(names)})"


def default_actor() -> str:
    """Who runs this process, for the audit log: the OS user at this host."""
    try:
        user = getpass.getuser()
    except Exception:  # no login name in some service environments
        user = f"uid {os.getuid()}" if hasattr(os, "getuid") else "unknown user"
    return f"{user}@{socket.gethostname()}"


def load_secrets(path: Path | None) -> dict[str, Any]:
    """The sections of a secrets file; nothing when ``path`` is None or the default file
    (``SECRETS_FILE``) does not exist. ``SettingsError`` (one line naming the file) when it
    cannot be read, and when a file given on purpose is not there: ignoring it would run
    without its signing key."""
    import tomllib

    if path is None or str(path) == os.devnull or (path == SECRETS_FILE and not path.exists()):
        return {}  # --secrets /dev/null: none, on purpose
    if not path.is_file():
        raise SettingsError(f"secrets file {path} not found (give an existing file, or leave "
                            "--secrets out to use .streamlit/secrets.toml when there is one)")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:  # TOMLDecodeError, bad UTF-8, a 5,000-digit number
        raise SettingsError(f"secrets file {path} cannot be read: "
                            f"{str(error).splitlines()[0][:200]}") from None
