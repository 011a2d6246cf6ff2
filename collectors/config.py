"""The collection config file (TOML) and the secrets it needs, resolved in one place.

Secrets never live in the config file (it is meant to be shared and versioned): they come
from the environment or from ``.streamlit/secrets.toml`` sections.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import settings
from collectors.directory import MAX_PAGE_SIZE, DirectoryConfig
from collectors.remote import WinrmConfig

SECRET_KEYS = ("password", "bind_password", "secret")
LDAP_PASSWORD_ENV = "PROXYLOGON_LDAP_PASSWORD"
WINRM_PASSWORD_ENV = "PROXYLOGON_WINRM_PASSWORD"


class ConfigError(ValueError):
    """The config file or a secret is missing or wrong; the message names the key and the fix."""


@dataclass(frozen=True)
class CollectionConfig:
    path: Path
    directory: DirectoryConfig | None
    winrm: WinrmConfig | None = None


def _strings(section: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = section.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}.{key} must be a list of strings")
    return tuple(value)


def _number(section: Mapping[str, Any], key: str, default: float, where: str,
            at_most: float = 86_400) -> float:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
            math.isfinite(value) and 0 < value <= at_most):
        raise ConfigError(f"{where}.{key} must be a positive number up to {at_most:g}, not "
                          f"{value!r}")
    return float(value)


# Every key the collection file may hold, per section: anything else is a typo (it would
# otherwise fall back silently, e.g. ``cafile`` to the system's CAs) or a secret.
KEYS = {
    "ldap": ("servers", "bind_user", "auth", "ca_file", "start_tls", "allow_plain", "base",
             "domain_base", "page_size", "connect_timeout", "timeout"),
    "scope": ("include_sites", "exclude_sites", "include_names", "exclude_names", "only"),
    "winrm": ("username", "transport", "scheme", "allow_http", "ca_file", "port",
              "deadline_seconds", "read_timeout_seconds", "operation_timeout_seconds",
              "concurrency", "retries", "backoff_seconds", "processes"),
}
_SECRET_LIKE = ("pass", "pwd", "secret", "token", "credential")


def _check_keys(data: Mapping[str, Any]) -> None:
    """Unknown sections and keys refused with the closest known one; password-like keys
    refused whatever their spelling (secrets never live in this file)."""
    for name, section in data.items():
        if name not in KEYS:
            raise ConfigError(f"[{name}] is not a section of the collection file{settings.suggest(name, KEYS)}")
        if not isinstance(section, Mapping):
            raise ConfigError(f"[{name}] must be a table of settings, not {type(section).__name__}")
        for key in section:
            if any(part in str(key).lower() for part in _SECRET_LIKE):
                env = LDAP_PASSWORD_ENV if name == "ldap" else WINRM_PASSWORD_ENV
                raise ConfigError(f"[{name}] {key} looks like a secret, which does not belong in "
                                  f"the config file: put it in .streamlit/secrets.toml ([{name}] "
                                  f"password) or {env}")
            if key not in KEYS[name]:
                raise ConfigError(f"[{name}] {key} is not a setting{settings.suggest(key, KEYS[name])}")


def _flag(section: Mapping[str, Any], key: str, default: bool, where: str) -> bool:
    value = section.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}.{key} must be true or false, not {value!r}")
    return value


def _text(section: Mapping[str, Any], key: str, where: str) -> str | None:
    value = section.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{where}.{key} must be a string")
    return value


def _refuse_secrets(section: Mapping[str, Any], name: str, env: str) -> None:
    for key in SECRET_KEYS:
        if key in section:
            raise ConfigError(f"[{name}] {key} does not belong in the config file: put it in "
                              f".streamlit/secrets.toml ([{name}] password) or {env}")


def _ca_file(section: Mapping[str, Any], name: str, here: Path) -> str | None:
    """An existing CA bundle, relative to the config file's folder; None for the system's."""
    ca_file = _text(section, "ca_file", f"[{name}]")
    if not ca_file:
        return None
    ca_path = Path(ca_file) if Path(ca_file).is_absolute() else (here / ca_file).resolve()
    if not ca_path.is_file():
        raise ConfigError(f"[{name}] ca_file {ca_path} does not exist")
    return str(ca_path)


def _password(secrets: Mapping[str, Any], environ: Mapping[str, str], name: str, env: str) -> str:
    password = environ.get(env)
    if password is None:
        section = secrets.get(name, {})
        password = section.get("password") if isinstance(section, Mapping) else None
    if not password:
        label = "LDAP" if name == "ldap" else "WinRM"
        raise ConfigError(f"no {label} password: set [{name}] password in "
                          f".streamlit/secrets.toml or the environment variable {env}")
    return str(password)


def parse_directory(section: Mapping[str, Any], scope: Mapping[str, Any], here: Path) -> DirectoryConfig:
    _refuse_secrets(section, "ldap", LDAP_PASSWORD_ENV)
    servers = _strings(section, "servers", "[ldap]")
    if not servers:
        raise ConfigError("[ldap] servers is empty: list domain controllers, e.g. "
                          '["ldaps://dc1.corp.example"]')
    bind_user = _text(section, "bind_user", "[ldap]")
    if not bind_user:
        raise ConfigError("[ldap] bind_user is missing (a DN, a UPN, or DOMAIN\\\\user for NTLM)")
    auth = (_text(section, "auth", "[ldap]") or "simple").lower()
    if auth not in ("simple", "ntlm"):
        raise ConfigError(f"[ldap] auth must be 'simple' or 'ntlm', not {auth!r}")
    ca_file = _ca_file(section, "ldap", here)
    page_size = int(_number(section, "page_size", MAX_PAGE_SIZE, "[ldap]"))
    if page_size > MAX_PAGE_SIZE:
        raise ConfigError(f"[ldap] page_size must be at most {MAX_PAGE_SIZE} (AD's MaxPageSize)")
    return DirectoryConfig(
        servers=servers, bind_user=bind_user, auth=auth, ca_file=ca_file,
        start_tls=_flag(section, "start_tls", True, "[ldap]"),
        allow_plain=_flag(section, "allow_plain", False, "[ldap]"),
        base=_text(section, "base", "[ldap]"), domain_base=_text(section, "domain_base", "[ldap]"),
        page_size=page_size,
        connect_timeout=_number(section, "connect_timeout", 10, "[ldap]"),
        timeout=_number(section, "timeout", 30, "[ldap]"),
        include_sites=_strings(scope, "include_sites", "[scope]"),
        exclude_sites=_strings(scope, "exclude_sites", "[scope]"),
        include_names=_strings(scope, "include_names", "[scope]"),
        exclude_names=_strings(scope, "exclude_names", "[scope]"),
        only=_strings(scope, "only", "[scope]"),
    )


def parse_winrm(section: Mapping[str, Any], here: Path) -> WinrmConfig:
    _refuse_secrets(section, "winrm", WINRM_PASSWORD_ENV)
    username = _text(section, "username", "[winrm]")
    if not username:
        raise ConfigError("[winrm] username is missing (e.g. CORP\\svc-exprobe or svc@corp.example)")
    transport = (_text(section, "transport", "[winrm]") or "ntlm").lower()
    if transport not in ("ntlm", "kerberos", "basic"):
        raise ConfigError(f"[winrm] transport must be ntlm, kerberos or basic, not {transport!r}")
    scheme = (_text(section, "scheme", "[winrm]") or "https").lower()
    allow_http = _flag(section, "allow_http", False, "[winrm]")
    if scheme not in ("https", "http"):
        raise ConfigError(f"[winrm] scheme must be https or http, not {scheme!r}")
    if scheme == "http" and not allow_http:
        raise ConfigError("[winrm] scheme = \"http\" needs allow_http = true (and then only NTLM "
                          "or Kerberos with message encryption is used)")
    if transport == "basic" and (scheme == "http" or allow_http):
        raise ConfigError("[winrm] Basic authentication is allowed over HTTPS only")
    ca_file = _ca_file(section, "winrm", here)
    read_timeout = int(_number(section, "read_timeout_seconds", 30, "[winrm]"))
    operation_timeout = int(_number(section, "operation_timeout_seconds", 20, "[winrm]"))
    if operation_timeout >= read_timeout:
        raise ConfigError("[winrm] operation_timeout_seconds must be below read_timeout_seconds")
    if "processes" in section:
        raise ConfigError("[winrm] processes was removed: every host is now probed on a thread "
                          "of one process, which keeps up with thousands of servers "
                          "(bench/collection.py); delete the line (concurrency still applies)")
    retries = section.get("retries", 2)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ConfigError(f"[winrm] retries must be a whole number >= 0, not {retries!r}")
    return WinrmConfig(
        username=username, transport=transport, scheme=scheme,
        port=int(_number(section, "port", 5986 if scheme == "https" else 5985, "[winrm]",
                         at_most=65_535)),
        allow_http=allow_http, ca_file=ca_file,
        deadline_seconds=_number(section, "deadline_seconds", 120, "[winrm]"),
        read_timeout_seconds=read_timeout, operation_timeout_seconds=operation_timeout,
        concurrency=int(_number(section, "concurrency", 32, "[winrm]", at_most=1024)),
        retries=retries,
        backoff_seconds=_number(section, "backoff_seconds", 1.0, "[winrm]"),
    )


def winrm_password(secrets: Mapping[str, Any], environ: Mapping[str, str]) -> str:
    return _password(secrets, environ, "winrm", WINRM_PASSWORD_ENV)


def load_config(path: Path) -> CollectionConfig:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"config file {path} cannot be read: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {path} is not valid TOML: {error}") from None
    _check_keys(data)
    ldap = data.get("ldap")
    directory = parse_directory(ldap, data.get("scope", {}), path.parent) if ldap else None
    winrm = data.get("winrm")
    return CollectionConfig(path=path, directory=directory,
                            winrm=parse_winrm(winrm, path.parent) if winrm else None)


def load_secrets(path: Path | None) -> dict[str, Any]:
    """The secrets file's sections (``settings.load_secrets``), errors as ``ConfigError``."""
    try:
        return settings.load_secrets(path)
    except settings.SettingsError as error:
        raise ConfigError(str(error)) from None


def ldap_password(secrets: Mapping[str, Any], environ: Mapping[str, str]) -> str:
    return _password(secrets, environ, "ldap", LDAP_PASSWORD_ENV)
