"""The collection config file (TOML) turned into the collectors' configs.

Every key is declared and checked once, in ``settings`` (the one table of settings); this
module reads the file, resolves CA bundle paths against the file's folder and builds the
``DirectoryConfig`` and ``WinrmConfig`` the collectors take. Secrets never live in the file
(it is meant to be shared and versioned): they come from the environment or the secrets.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import settings
from collectors.directory import DirectoryConfig
from collectors.kerberos import KerberosConfig
from collectors.remote import WinrmConfig
from settings import KerberosSettings, LdapSettings, ScopeSettings, SettingsError, WinrmSettings


@dataclass(frozen=True)
class CollectionConfig:
    path: Path
    directory: DirectoryConfig | None
    winrm: WinrmConfig | None = None
    kerberos: KerberosConfig | None = None  # [kerberos]: whose ticket, from which keytab

    @property
    def uses_kerberos(self) -> bool:
        return (self.directory is not None and self.directory.auth == "kerberos") or (
            self.winrm is not None and self.winrm.transport == "kerberos")

    def needs_password(self, section: str) -> bool:
        """Whether ``[section] password`` (``"ldap"`` or ``"winrm"``) is needed: not for a
        section that is absent or authenticates with Kerberos."""
        if section == "ldap":
            return self.directory is not None and self.directory.auth != "kerberos"
        return self.winrm is not None and (self.winrm.transport != "kerberos"
                                           or self.winrm.ntlm_fallback)


def _ca_file(value: str | None, name: str, here: Path) -> str | None:
    """An existing CA bundle, relative to the config file's folder; None for the system's."""
    if not value:
        return None
    ca_path = Path(value) if Path(value).is_absolute() else (here / value).resolve()
    if not ca_path.is_file():
        raise SettingsError(f"[{name}] ca_file {ca_path} does not exist")
    return str(ca_path)


def directory_config(ldap: LdapSettings, scope: ScopeSettings, here: Path,
                     kerberos: KerberosConfig | None = None) -> DirectoryConfig:
    kerberos = kerberos if ldap.auth == "kerberos" else None
    return DirectoryConfig(
        servers=ldap.servers, bind_user=kerberos.principal if kerberos else str(ldap.bind_user),
        auth=ldap.auth, kerberos=kerberos,
        ca_file=_ca_file(ldap.ca_file, "ldap", here), start_tls=ldap.start_tls,
        allow_plain=ldap.allow_plain, base=ldap.base, domain_base=ldap.domain_base,
        page_size=ldap.page_size, connect_timeout=ldap.connect_timeout, timeout=ldap.timeout,
        include_sites=scope.include_sites, exclude_sites=scope.exclude_sites,
        include_names=scope.include_names, exclude_names=scope.exclude_names, only=scope.only)


def winrm_config(winrm: WinrmSettings, here: Path,
                 kerberos: KerberosConfig | None = None) -> WinrmConfig:
    kerberos = kerberos if winrm.transport == "kerberos" else None
    return WinrmConfig(
        # With Kerberos the username is the principal: pykerberos picks its ticket by it.
        username=kerberos.principal if kerberos else str(winrm.username),
        transport=winrm.transport, scheme=winrm.scheme, spn_service=winrm.spn_service,
        spn_hostname=winrm.spn_hostname, ntlm_fallback=winrm.ntlm_fallback,
        port=winrm.port_or_default, allow_http=winrm.allow_http,
        ca_file=_ca_file(winrm.ca_file, "winrm", here), deadline_seconds=winrm.deadline_seconds,
        read_timeout_seconds=winrm.read_timeout_seconds,
        operation_timeout_seconds=winrm.operation_timeout_seconds,
        concurrency=winrm.concurrency, retries=winrm.retries,
        backoff_seconds=winrm.backoff_seconds)


def read_file(path: Path) -> dict[str, Any]:
    """The file's TOML tables; ``SettingsError`` (one line naming the file) when unreadable."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingsError(f"config file {path} not found") from None
    except tomllib.TOMLDecodeError as error:
        raise SettingsError(f"config file {path} is not valid TOML: {error}") from None
    except (OSError, ValueError) as error:  # bad UTF-8, a number of 5,000 digits
        raise SettingsError(f"config file {path} cannot be read: "
                            f"{str(error).splitlines()[0][:200]}") from None


def kerberos_config(kerberos: KerberosSettings, here: Path) -> KerberosConfig:
    keytab = None
    if kerberos.keytab:
        keytab = str(Path(kerberos.keytab) if Path(kerberos.keytab).is_absolute()
                     else (here / kerberos.keytab).resolve())
    return KerberosConfig(principal=kerberos.principal, keytab=keytab,
                          canonicalize=kerberos.canonicalize)


def load_config(path: Path) -> CollectionConfig:
    """Read and check a collection file; ``SettingsError`` names the first bad key."""
    resolved = settings.resolve(read_file(path), {}, {}).file
    here = path.parent
    kerberos = kerberos_config(resolved.kerberos, here) if resolved.kerberos else None
    return CollectionConfig(
        path=path,
        directory=(directory_config(resolved.ldap, resolved.scope, here, kerberos)
                   if resolved.ldap else None),
        winrm=winrm_config(resolved.winrm, here, kerberos) if resolved.winrm else None,
        kerberos=kerberos)


def load_secrets(path: Path | None) -> dict[str, Any]:
    """The secrets file's sections (``settings.load_secrets``)."""
    return settings.load_secrets(path)


def passwords(config: CollectionConfig, secrets: Mapping[str, Any],
              environ: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The (LDAP, WinRM) passwords ``config`` needs, ``None`` for a section that needs none
    (absent, or Kerberos); ``SettingsError`` naming where to put a missing one."""
    return (ldap_password(secrets, environ) if config.needs_password("ldap") else None,
            winrm_password(secrets, environ) if config.needs_password("winrm") else None)


def ldap_password(secrets: Mapping[str, Any], environ: Mapping[str, str]) -> str:
    return settings.resolve({}, secrets, environ).password("ldap")


def winrm_password(secrets: Mapping[str, Any], environ: Mapping[str, str]) -> str:
    return settings.resolve({}, secrets, environ).password("winrm")
