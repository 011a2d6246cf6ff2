"""``collectors preflight``: what a collection needs, checked before one runs.

For the configured accounts and a sample of the servers, one ``Check`` per step a collection
takes, in its order, each with what was found and, when it failed, the fix:

1. ``kerberos``: the service account's ticket can be obtained (when a section uses Kerberos).
2. ``secrets``: the passwords the other sections need are set.
3. ``ldap``: each domain controller answers over TLS with a trusted certificate and the account
   binds; its clock (AD's rootDSE ``currentTime``) is within Kerberos's 5 minutes of ours; the
   account can read the Exchange servers (one discovery).
4. ``winrm``, per sampled server: the listener answers (TCP), its certificate is trusted (HTTPS),
   its clock (the HTTP ``Date`` of an unauthenticated request) is within 5 minutes, and the
   account may run the probe (the read-only probe itself runs there, as ``collect`` would).

Read-only, as every collector: nothing is saved, no server is changed. A failed step does not
stop the others (a DC that refuses the bind does not hide a WinRM listener with an untrusted
certificate), but a step that needs an earlier one's result says so instead of failing again.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import requests

from collectors.config import CollectionConfig, ldap_password, winrm_password
from collectors.directory import DirectoryError, discover, open_connection, root_dse
from collectors.inventory import InventoryEntry, merge
from collectors.kerberos import CLOCK_SKEW_SECONDS, KerberosError, acquire, activate, describe
from collectors.remote import Target, ca_path, check_config, probe_all, targets_for
from compliance.models import Host
from settings import SettingsError
from store.export import inert

DEFAULT_SAMPLE = 3
CONNECT_TIMEOUT = 10.0


@dataclass(frozen=True)
class Check:
    """One step's outcome: ``area`` (kerberos, secrets, ldap, winrm), ``target`` (a principal,
    a DC's URL, a server), ``ok``, ``detail`` (what was found), ``fix`` (when not ok)."""

    area: str
    target: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        """One terminal line, inert: targets and details carry AD- and server-held text."""
        mark = "ok  " if self.ok else "FAIL"
        fix = f" -> fix: {self.fix}" if self.fix and not self.ok else ""
        return inert(f"{mark} {self.area:<8} {self.target}: {self.detail}{fix}")


def _skew(area: str, target: str, theirs: datetime | None, now: datetime,
          source: str) -> Check:
    if theirs is None:
        return Check(area, target, True, f"clock not reported ({source}); not compared")
    seconds = (theirs - now).total_seconds()
    way = "ahead of" if seconds > 0 else "behind"
    detail = (f"clock {abs(seconds):.0f} s {way} this machine's ({source})" if abs(seconds) >= 1
              else f"clock in step with this machine's ({source})")
    if abs(seconds) <= CLOCK_SKEW_SECONDS:
        return Check(area, target, True, detail)
    return Check(area, target, False, f"{detail}, more than Kerberos allows "
                 f"({CLOCK_SKEW_SECONDS} s)", "synchronise the clocks (w32tm /resync on "
                 "Windows; chrony or systemd-timesyncd here) before collecting")


def _generalized_time(value: Any) -> datetime | None:
    """AD's ``currentTime`` (``20261202031500.0Z``), as ldap3 gives it: a datetime or text."""
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str | bytes):
        text = value.decode() if isinstance(value, bytes) else value
        with contextlib.suppress(ValueError):
            return datetime.strptime(text[:14], "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    return None


def _ldap_checks(config: CollectionConfig, password: str, now: Callable[[], datetime],
                 hosts: list[Host]) -> Iterator[Check]:
    directory = config.directory
    assert directory is not None
    bound = 0
    for url in directory.servers:
        try:
            connection = open_connection(directory, url, password)
        except DirectoryError as error:
            yield Check("ldap", url, False, f"{error.operation}: {error.detail}",
                        error.hint or "see the message")
            continue
        bound += 1
        try:
            version = getattr(connection.socket, "version", lambda: None)() or "no TLS"
            yield Check("ldap", url, True, f"bound as {directory.bind_user} ({directory.auth}, "
                        f"{version}, certificate trusted)")
            try:
                value: str | None = root_dse(connection, url, ("currentTime",)).get("currentTime")
            except DirectoryError:
                value = None
            yield _skew("ldap", url, _generalized_time(value), now(), "rootDSE currentTime")
        finally:
            with contextlib.suppress(Exception):
                connection.unbind()
    if not bound:
        yield Check("ldap", ", ".join(directory.servers), False, "Exchange servers not read: "
                    "no domain controller accepted the bind (see above)", "fix the lines above")
        return
    try:
        found_servers = discover(directory, password)
    except DirectoryError as error:
        yield Check("ldap", error.server, False, f"reading the Exchange servers: {error.detail}",
                    error.hint or "check the account's read access to the configuration "
                    "partition")
        return
    hosts.extend(server.to_host() for server in found_servers.servers)
    detail = f"{len(found_servers.servers)} Exchange servers readable under {found_servers.base}"
    if found_servers.servers:
        yield Check("ldap", found_servers.server, True, detail)
    else:
        yield Check("ldap", found_servers.server, False, detail, "; ".join(
            found_servers.warnings) or "check the base and the account's read access")


def _listener(target: Target, ca_file: str) -> Iterator[Check]:
    """TCP, then TLS with the configured CA (HTTPS only); stops at the first failure."""
    parts = urlsplit(target.url)
    host, port = parts.hostname or "", parts.port or (5986 if parts.scheme == "https" else 5985)
    name = target.host.name
    try:
        raw = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT)
    except OSError as error:
        yield Check("winrm", name, False, f"no answer on {host}:{port} ({error})",
                    "start the WinRM listener (winrm quickconfig -transport:https) and open "
                    f"TCP {port} from this machine")
        return
    with raw:
        if parts.scheme != "https":
            yield Check("winrm", name, True, f"{host}:{port} answers (plain HTTP: message "
                        "encryption required)")
            return
        context = ssl.create_default_context(cafile=ca_file)
        try:
            with context.wrap_socket(raw, server_hostname=host) as tls:
                yield Check("winrm", name, True, f"{host}:{port} answers, {tls.version()}, "
                            "certificate trusted")
        except (ssl.SSLError, OSError) as error:
            yield Check("winrm", name, False, f"TLS to {host}:{port} failed ({error})",
                        "give the listener a certificate for this name from a CA in [winrm] "
                        "ca_file (or the system's), or fix ca_file")


def _listener_clock(target: Target, ca_file: str, now: Callable[[], datetime]) -> Check:
    """The clock in the HTTP ``Date`` of an unauthenticated request (answered 401)."""
    try:
        answer = requests.post(target.url, data=b"", timeout=CONNECT_TIMEOUT, verify=ca_file,
                               allow_redirects=False,
                               headers={"Content-Type": "application/soap+xml;charset=UTF-8"})
        stamp = answer.headers.get("Date")
        theirs = parsedate_to_datetime(stamp) if stamp else None
    except (requests.RequestException, ValueError, TypeError):
        theirs = None
    return _skew("winrm", target.host.name, theirs, now(), "HTTP Date")


def _winrm_checks(config: CollectionConfig, password: str, hosts: Sequence[Host],
                  overrides: dict[str, str], sample: int,
                  now: Callable[[], datetime]) -> Iterator[Check]:
    winrm = config.winrm
    assert winrm is not None
    chosen = targets_for(sorted(hosts, key=lambda h: h.name.lower())[:sample], winrm, overrides)
    if not chosen:
        yield Check("winrm", "(no server)", False, "no server to sample: the directory listed "
                    "none and no inventory was given", "fix [ldap] or give --inventory")
        return
    ca_file = ca_path(winrm)
    for target in chosen:
        try:
            check_config(winrm, target.url)
        except ValueError as error:
            yield Check("winrm", target.host.name, False, str(error), "fix [winrm]")
            continue
        steps = list(_listener(target, ca_file))
        yield from steps
        if not all(step.ok for step in steps):
            continue
        yield _listener_clock(target, ca_file, now)
        started = time.monotonic()
        observation = probe_all([target], winrm, password)[0]
        if observation.failure is None:
            yield Check("winrm", target.host.name, True, f"the probe ran as {winrm.username} "
                        f"({winrm.transport}) in {time.monotonic() - started:.1f} s: ExSetup "
                        f"{observation.exsetup_version or '?'}")
        else:
            failure = observation.failure
            yield Check("winrm", target.host.name, False,
                        f"the probe as {winrm.username} ({winrm.transport}): {failure.reason}: "
                        f"{failure.detail}", failure.hint or "see the message")


def preflight(config: CollectionConfig, secrets: Mapping[str, Any], environ: Mapping[str, str],
              inventory: Sequence[InventoryEntry] = (), sample: int = DEFAULT_SAMPLE,
              now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> Iterator[Check]:
    """Every check, in a collection's order, as it completes (``Check``s; never raises for
    what it checks)."""
    with contextlib.ExitStack() as stack:
        ticket_ok = True
        if config.kerberos is not None and config.uses_kerberos:
            try:
                ticket = acquire(config.kerberos)
            except KerberosError as error:
                ticket_ok = False
                yield Check("kerberos", config.kerberos.principal, False, error.detail, error.fix)
            else:
                stack.enter_context(activate(ticket, config.kerberos.canonicalize))
                yield Check("kerberos", ticket.principal, True, describe(ticket))
            keytab = config.kerberos.keytab
            if keytab and os.name == "posix":
                with contextlib.suppress(OSError):
                    mode = os.stat(keytab).st_mode & 0o777
                    if mode & 0o077:
                        yield Check("kerberos", keytab, False, f"the keytab is readable by "
                                    f"other users (mode {mode:o}): it is a credential",
                                    f"chmod 600 {keytab} (owned by the collector's user)")
        secrets_of: dict[str, str | None] = {}
        for section, read in (("ldap", ldap_password), ("winrm", winrm_password)):
            if not config.needs_password(section):
                secrets_of[section] = "" if ticket_ok else None
                continue
            try:
                secrets_of[section] = read(secrets, environ)
                yield Check("secrets", f"[{section}] password", True, "set")
            except SettingsError as error:
                secrets_of[section] = None
                yield Check("secrets", f"[{section}] password", False, "missing", str(error))
        hosts: list[Host] = []
        if config.directory is not None:
            if secrets_of["ldap"] is None:
                yield Check("ldap", ", ".join(config.directory.servers), False,
                            "not checked: no credential (see above)", "fix the line above")
            else:
                yield from _ldap_checks(config, secrets_of["ldap"] or "", now, hosts)
        merged, overrides = merge(hosts, list(inventory))
        if config.winrm is None:
            return
        if secrets_of["winrm"] is None:
            yield Check("winrm", "(servers)", False, "not checked: no credential (see above)",
                        "fix the line above")
            return
        yield from _winrm_checks(config, secrets_of["winrm"] or "", merged, overrides,
                                 sample, now)
