"""Kerberos for the collectors: the service account's ticket, and what a failure means.

A collection with ``auth = "kerberos"`` (LDAP) or ``transport = "kerberos"`` (WinRM) needs a
ticket-granting ticket for the service account's principal. ``acquire`` gets one from the
account's keytab into a credential cache private to this process (``MEMORY:``), or checks the
one the running user already has (``kinit``, or the logon on a domain-joined machine).
``activate`` points the process's Kerberos library at that cache while a collection runs:
pywinrm's Kerberos transport (pykerberos) reads only the default cache and krb5.conf.

Every failure is a ``KerberosError`` with a ``reason`` (one of ``REASONS``), the principal, and
a fix: ``classify`` reads MIT Kerberos's and GSSAPI's message texts (krb5 1.20's error table,
``krb5_err.et``; the same texts the Windows KDC's errors are shown with on Linux clients).

Needs the ``gssapi`` package (requirements-kerberos.txt); without it the reason is
``unavailable``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# Kerberos allows this much difference between two clocks by default (MIT's and Windows'
# "Maximum tolerance for computer clock synchronization": 5 minutes).
CLOCK_SKEW_SECONDS = 300

REASONS = ("keytab_unreadable", "wrong_key", "principal_unknown", "no_ticket", "ticket_expired",
           "clock_skew", "spn_not_found", "service_key", "kdc_unreachable", "refused",
           "unavailable")

INSTALL_HINT = ("install the Kerberos packages: apt-get install libkrb5-dev gcc, then "
                ".venv/bin/pip install -r requirements-kerberos.txt")


@dataclass(frozen=True)
class KerberosConfig:
    """Whose ticket, from where.

    ``principal``: the service account, ``svc-exprobe@CORP.EXAMPLE`` (the realm in capitals).
    ``keytab``: an absolute path to its keytab (``ktpass`` output); ``None``: the running
    user's credential cache, which must hold a ticket for ``principal``.
    ``canonicalize``: let the Kerberos library canonicalise a service's host name through DNS
    and reverse DNS (krb5.conf's ``dns_canonicalize_hostname``/``rdns``); off, the SPN is
    ``<service>/<the name as configured>``, so a spoofed reverse record cannot pick it.
    """

    principal: str
    keytab: str | None = None
    canonicalize: bool = False


@dataclass(frozen=True)
class Ticket:
    """A usable TGT: ``ccache`` is a credential cache name (``MEMORY:exprobe-...`` or the
    user's), ``lifetime_seconds`` what is left of it when acquired."""

    principal: str
    ccache: str
    lifetime_seconds: int
    from_keytab: bool


class KerberosError(Exception):
    """A Kerberos step failed: ``reason`` (one of ``REASONS``), ``detail``, ``fix``."""

    def __init__(self, reason: str, detail: str, fix: str, principal: str):
        self.reason, self.detail, self.fix, self.principal = reason, detail, fix, principal
        super().__init__(f"{detail}. Fix: {fix}")


def available() -> bool:
    """Whether the ``gssapi`` package (and so MIT Kerberos's library) can be imported."""
    try:
        import gssapi  # noqa: F401
    except ImportError:
        return False
    return True


# (texts found in the library's message, lower case) -> reason. The first match wins: the
# order puts the specific before the general ("... while getting initial credentials").
_PATTERNS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("clock skew too great", "ticket not yet valid", "krb_ap_err_skew"), "clock_skew"),
    # The server could not use the ticket with its own key (remote.py's KRB-ERROR reading):
    # before wrong_key, which is the collector's keytab.
    (("service key mismatch",), "service_key"),
    (("ticket expired", "credentials have expired", "the referenced credential has expired",
      "krb_ap_err_tkt_expired"), "ticket_expired"),
    (("key table file", "keytab", "permission denied", "no key table entry",
      "key table entry not found"), "keytab_unreadable"),
    (("preauthentication failed", "password incorrect", "decrypt integrity check failed",
      "integrity check on decrypted field failed", "cannot find key of appropriate type",
      "key version number for principal in key table is incorrect", "wrong key",
      "bad encryption type"), "wrong_key"),
    # MIT puts the principal inside: "Server ldap/dc1@R not found in Kerberos database",
    # "Client 'svc@R' not found in Kerberos database" (_NOT_FOUND below reads those).
    (("server not found in kerberos database", "server_unknown", "s_principal_unknown"),
     "spn_not_found"),
    (("client not found in kerberos database", "client_unknown", "c_principal_unknown"),
     "principal_unknown"),
    (("cannot contact any kdc", "cannot find kdc", "unable to reach any kdc", "kdc unreachable",
      "cannot resolve network address for kdc"), "kdc_unreachable"),
    (("no kerberos credentials available", "no credentials cache found",
      "no credentials were supplied", "matching credential not found",
      "can't find client principal", "no ccache"), "no_ticket"),
)


_NOT_FOUND = re.compile(r"\b(server|client)\b[^()]*not found in kerberos database")


def _fix(reason: str, principal: str, service: str | None, server: str | None,
         keytab: str | None) -> str:
    where = f" on {server}" if server else ""
    spn = service or "the service principal"
    return {
        "clock_skew": (f"bring the clocks of this machine, the domain controllers and {server or 'the server'} "
                       f"within {CLOCK_SKEW_SECONDS // 60} minutes of each other (w32tm /resync on "
                       "Windows, chrony or systemd-timesyncd here)"),
        "ticket_expired": (f"get a new ticket for {principal} (kinit {principal}, or use a keytab: "
                           "[kerberos] keytab, which is renewed every run)"),
        "keytab_unreadable": (f"check that the keytab {keytab or '(KRB5_CLIENT_KTNAME)'} exists, "
                              f"is readable by this user only, and holds keys for {principal} "
                              f"(klist -k -t {keytab or '<keytab>'})"),
        "wrong_key": (f"the keytab's key for {principal} no longer matches the account's: create "
                      "it again with ktpass (the account's password was changed or reset), "
                      "or check the keytab's encryption types against the account's"),
        "spn_not_found": (f"connect by the server's FQDN (an IP address or a CNAME has no "
                          f"SPN); if that is what {spn} names, register it for the server's "
                          "account (setspn -L <account>; setspn -S)"),
        "service_key": (f"the server's own key for {spn} does not match the KDC's (this "
                        "collector's keytab is fine): check for a duplicate SPN (setspn -Q "
                        f"{spn}; setspn -X), repair the computer account{where} "
                        "(Test-ComputerSecureChannel -Repair), or renew the service's keytab"),
        "principal_unknown": (f"check [kerberos] principal = \"{principal}\": the account must "
                              "exist in that realm (the realm in capitals)"),
        "kdc_unreachable": ("check that this machine reaches a domain controller on TCP/UDP 88 "
                            "and that krb5.conf (or DNS SRV records _kerberos._tcp) name the "
                            "realm's KDCs"),
        "no_ticket": (f"give {principal} a ticket: set [kerberos] keytab to its keytab, or run "
                      f"kinit {principal} as the user that runs the collector"),
        "refused": (f"a ticket for {principal} was obtained, but {server or 'the server'} "
                    f"refused it: check the clocks (within {CLOCK_SKEW_SECONDS // 60} minutes), "
                    f"that {spn}'s key{where} matches the server's keytab, and that the account "
                    "is allowed to log on there"),
        "unavailable": INSTALL_HINT,
    }[reason]


def classify(error: BaseException | str, principal: str, service: str | None = None,
             server: str | None = None, keytab: str | None = None) -> KerberosError:
    """The ``KerberosError`` a library failure means. ``error``: a GSSAPI, pykerberos or
    ldap3 exception, or its text. ``service``: the SPN asked for (``ldap/dc1.corp.example``),
    ``server``: the host name or URL it was for; both only appear in the message and fix.
    An unrecognised text is ``refused`` (the server said no), its text kept."""
    if isinstance(error, KerberosError):
        return error
    text = error if isinstance(error, str) else _text(error)
    lowered = text.lower()
    if isinstance(error, ImportError) or ("gssapi" in lowered and (
            "missing" in lowered or ("not" in lowered and (
                "install" in lowered or "available" in lowered)))):
        reason = "unavailable"
    elif found := _NOT_FOUND.search(lowered):
        reason = "spn_not_found" if found[1] == "server" else "principal_unknown"
    else:
        reason = next((reason for needles, reason in _PATTERNS
                       if any(needle in lowered for needle in needles)), "refused")
    target = f" for {service}" if service else ""
    at = f" at {server}" if server else ""
    detail = f"Kerberos as {principal}{target}{at}: {reason.replace('_', ' ')} ({text})"
    return KerberosError(reason, detail, _fix(reason, principal, service, server, keytab),
                         principal)


def _text(error: BaseException) -> str:
    """One line of what the library said: GSSError's ``gen_message()``, pykerberos's
    ``(('major', code), ('minor', code))`` tuples, or ``str()``."""
    message = getattr(error, "gen_message", None)
    if callable(message):
        with contextlib.suppress(Exception):
            return " ".join(str(message()).split())
    if error.args and all(isinstance(arg, tuple) for arg in error.args):
        parts = [str(part[0]) for part in error.args if part and isinstance(part[0], str)]
        if parts:
            return "; ".join(parts)
    return " ".join(str(error).split()) or type(error).__name__


def acquire(config: KerberosConfig) -> Ticket:
    """A ticket-granting ticket for ``config.principal``; ``KerberosError`` when none.

    With a keytab: obtained from it into a new ``MEMORY:`` cache of this process (nothing is
    written to disk, and the user's own cache is left alone). Without: the default cache
    (``KRB5CCNAME``) must hold an unexpired ticket for exactly that principal.
    """
    try:
        import gssapi
    except ImportError as error:
        raise classify(error, config.principal) from None
    principal = config.principal
    try:
        name = gssapi.Name(principal, gssapi.NameType.kerberos_principal)
        if config.keytab:
            keytab = Path(config.keytab)
            if not keytab.is_file() or not os.access(keytab, os.R_OK):
                state = ("cannot be read" if keytab.is_file() else "is not a file"
                         if keytab.exists() else "does not exist")
                raise KerberosError(
                    "keytab_unreadable", f"Kerberos as {principal}: the keytab {keytab} {state}",
                    _fix("keytab_unreadable", principal, None, None, str(keytab)), principal)
            # One cache per (principal, keytab) in this process: a dashboard that collects
            # every hour reuses it (the library renews the TGT from the keytab) rather than
            # leaving a new one in memory each run.
            digest = hashlib.sha256(f"{principal}\0{keytab.resolve()}".encode()).hexdigest()
            ccache = f"MEMORY:exprobe-{digest[:16]}"
            credentials = gssapi.Credentials(name=name, usage="initiate", store={
                "client_keytab": str(keytab), "ccache": ccache})
            lifetime = credentials.lifetime  # reading it makes the library get the TGT now
        else:
            ccache = os.environ.get("KRB5CCNAME") or _default_ccache()
            credentials = gssapi.Credentials(usage="initiate", store={"ccache": ccache})
            holder = str(credentials.name)
            if holder.lower() != principal.lower():
                raise KerberosError(
                    "no_ticket", f"Kerberos as {principal}: the credential cache {ccache} "
                    f"holds a ticket for {holder}, not {principal}",
                    _fix("no_ticket", principal, None, None, None), principal)
            lifetime = credentials.lifetime
    except KerberosError:
        raise
    except Exception as error:  # gssapi.exceptions.GSSError and its many subclasses
        found = classify(error, principal, keytab=config.keytab)
        if config.keytab and found.reason == "no_ticket":
            # MIT's answer when the keytab holds no key for the principal.
            found = KerberosError("keytab_unreadable", f"Kerberos as {principal}: the keytab "
                                  f"{config.keytab} holds no key for {principal} ({found.detail})",
                                  _fix("keytab_unreadable", principal, None, None, config.keytab),
                                  principal)
        raise found from None
    if not lifetime or lifetime <= 0:
        raise KerberosError("ticket_expired", f"Kerberos as {principal}: the ticket in {ccache} "
                            "has expired", _fix("ticket_expired", principal, None, None, None),
                            principal)
    return Ticket(principal=principal, ccache=ccache, lifetime_seconds=int(lifetime),
                  from_keytab=bool(config.keytab))


def _default_ccache() -> str:
    try:
        import gssapi.raw as raw

        return str(raw.ccache_name().decode()) if hasattr(raw, "ccache_name") else ""
    except Exception:
        return f"FILE:/tmp/krb5cc_{os.getuid()}" if hasattr(os, "getuid") else ""


_NO_CANONICALIZATION = """\
# Written by the collector (collectors/kerberos.py): the SPN is <service>/<the name configured>,
# never a name found through DNS or reverse DNS ([kerberos] canonicalize = true allows it).
[libdefaults]
    rdns = false
    dns_canonicalize_hostname = false
"""


@contextlib.contextmanager
def activate(ticket: Ticket, canonicalize: bool = False) -> Iterator[None]:
    """Within the block, the process's Kerberos library uses ``ticket``'s cache by default and,
    unless ``canonicalize``, never canonicalises host names (a krb5.conf fragment put first in
    ``KRB5_CONFIG``: MIT reads the files in order, the first value of a relation wins). The
    environment is restored after. Process-wide: one collection at a time per process.
    """
    saved = {key: os.environ.get(key) for key in ("KRB5CCNAME", "KRB5_CONFIG")}
    # KRB5_CONFIG is a ':'-separated list: a fragment in a folder whose path holds one would be
    # skipped silently (and canonicalisation left on). The system's temporary folder is tried
    # after TMPDIR's.
    base = next((d for d in (tempfile.gettempdir(), "/tmp") if ":" not in d), None)
    if base is None and not canonicalize:
        raise KerberosError("unavailable", f"Kerberos as {ticket.principal}: no temporary "
                            "folder without ':' in its path for the krb5.conf fragment",
                            "set TMPDIR to a folder whose path has no ':'", ticket.principal)
    with tempfile.TemporaryDirectory(prefix="exprobe-krb5-", dir=base) as folder:
        try:
            os.environ["KRB5CCNAME"] = ticket.ccache
            if not canonicalize:
                fragment = Path(folder) / "krb5.conf"
                fragment.write_text(_NO_CANONICALIZATION, encoding="utf-8")
                rest = saved["KRB5_CONFIG"] or "/etc/krb5.conf"
                os.environ["KRB5_CONFIG"] = f"{fragment}:{rest}"
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def describe(ticket: Ticket) -> str:
    """One line for logs and preflight: whose ticket, from where, how long it lasts."""
    hours, rest = divmod(ticket.lifetime_seconds, 3600)
    source = "from the keytab" if ticket.from_keytab else f"in {ticket.ccache}"
    return f"ticket for {ticket.principal} {source}, valid {hours} h {rest // 60} min more"
