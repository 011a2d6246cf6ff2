"""Discover Exchange servers in Active Directory over LDAP (ldap3), read-only.

``discover()`` connects to the first domain controller that answers, reads the
configuration naming context from the RootDSE, and pages through every
``msExchExchangeServer`` object below ``CN=Microsoft Exchange,CN=Services,<config NC>``
(transport sub-objects excluded). Every object yields a ``DirectoryServer``; what is missing
or malformed goes into its ``problems`` (failures are data). An answer with no server is not
an error, but its ``Discovery.warnings`` say where it looked and why it may be empty
(``empty_warning``). The ``parse_*`` functions are pure and hold all interpretation of
attribute values.

A second paged search under the same base reads every OWA and ECP virtual directory with a URL
(``VIRTUAL_DIRECTORY_FILTER``), once for the whole organisation rather than once per server;
each is matched to its server by DN (it sits below ``CN=HTTP,CN=Protocols,CN=<server>``), and
the host names of its InternalUrl and ExternalUrl become the server's published namespaces
(``internal_names``, ``external_names``). A URL that is no http(s) URL with a valid host name
is dropped, with a problem on the server. If the directory refuses that search (rights, limits),
discovery goes on without namespaces and says so in a warning.

Authentication: a simple bind, NTLM, or Kerberos (``auth = "kerberos"``): a SASL GSSAPI bind
with the ticket ``collectors.kerberos.acquire`` gets for ``DirectoryConfig.kerberos`` (from its
keytab, or the running user's credential cache), for the service ``ldap/<the DC's name as
configured>``. ldap3 negotiates no SASL security layer, so Kerberos too is refused over plain
LDAP unless ``allow_plain``.

Errors: ``DirectoryError`` (connection, TLS, bind, base not found, size/time limit,
referral, partial result), always naming the server, the operation and the likely fix; a
Kerberos failure also carries ``reason`` (``collectors.kerberos.REASONS``).
ldap3 and gssapi exceptions never escape this module.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import logging
import math
import re
import ssl
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

import ldap3
from ldap3.core import exceptions as ldap_errors
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import parse_dn

from collectors.kerberos import KerberosConfig, KerberosError, Ticket, acquire, activate, classify
from compliance.builds import BuildParseError, parse_serial_number, parse_version_number
from compliance.models import Build, Host, ServerRole
from gcpause import gc_paused
from settings import AD_MAX_PAGE_SIZE

# ldap3 keeps each entry's attributes (raw and decoded) in case-insensitive dicts, two per
# entry, which took a fifth of discovery's CPU time at 5,000 servers (bench/discovery.py).
# Plain dicts instead: _search maps each name a DC returns to the name asked for, compared
# case-insensitively (attribute descriptions are, RFC 4512 2.5), so a lookup by the asked
# name holds whatever case the DC answers in. ldap3's settings are process-wide; this module
# is the process's only LDAP client (preflight reads its one value the same way).
ldap3.set_config_parameter("CASE_INSENSITIVE_ATTRIBUTE_NAMES", False)

log = logging.getLogger(__name__)

SERVER_FILTER = "(&(objectClass=msExchExchangeServer)(!(objectClass=msExchExchangeTransportServer)))"
PAGED_RESULTS_OID = "1.2.840.113556.1.4.319"
MAX_PAGE_SIZE = AD_MAX_PAGE_SIZE  # AD's MaxPageSize (declared with the settings)
ATTRIBUTES = (
    "cn", "name", "serialNumber", "versionNumber", "msExchCurrentServerRoles", "networkAddress",
    "msExchServerSite", "msExchMDBAvailabilityGroupLink", "whenChanged", "msExchComponentStates",
)
# msExchCurrentServerRoles bits (Exchange's ServerRole enum; shared/reference/ad_exchange_objects.md).
ROLE_BITS = tuple(
    (bit, ServerRole(name)) for bit, name in (
        (1, "Cafe"), (2, "Mailbox"), (4, "ClientAccess"), (16, "UnifiedMessaging"),
        (32, "HubTransport"), (64, "Edge"), (128, "Monitoring"), (256, "CentralAdmin"),
        (512, "CentralAdminDatabase"), (1024, "DomainController"),
        (2048, "WindowsDeploymentServer"), (4096, "ProvisionedServer"), (8192, "LanguagePacks"),
        (16384, "FrontendTransport"), (32768, "CafeArray"), (65536, "FfoWebService"),
        (131072, "OSP"), (262144, "ARR"), (524288, "ManagementFrontEnd"),
        (1048576, "ManagementBackEnd"), (2097152, "SCOM"), (4194304, "CentralAdminFrontEnd"),
        (8388608, "NAT"), (16777216, "DHCP"),
    )
)
_KNOWN_ROLE_MASK = sum(bit for bit, _ in ROLE_BITS)
# OWA and ECP virtual directories, ``CN=<name> (<web site>),CN=HTTP,CN=Protocols,CN=<server>,...``:
# their InternalUrl and ExternalUrl are held in msExchInternalHostName and msExchExternalHostName
# (CSS-Exchange Diagnostics/.../Get-VirtualDirectoriesLdap.ps1 reads them so, below the org).
# Only those with a URL, and not the 2013+ back-end ones (web site "Exchange Back End", port
# 444, reached only by the front end's proxy: the server's own name, never a namespace). A
# fixed filter: nothing configured or read from AD is spliced into it.
VIRTUAL_DIRECTORY_FILTER = (
    "(&(|(objectClass=msExchOWAVirtualDirectory)(objectClass=msExchECPVirtualDirectory))"
    "(|(msExchInternalHostName=*)(msExchExternalHostName=*))"
    "(!(cn=*\\28Exchange Back End\\29)))"
)
INTERNAL_URL, EXTERNAL_URL = "msExchInternalHostName", "msExchExternalHostName"
VIRTUAL_DIRECTORY_ATTRIBUTES = (INTERNAL_URL, EXTERNAL_URL)
MAX_URL_LENGTH = 2048
_HOST_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# A DN holding none of these is split on its commas as it is (no escape, quote, multi-valued
# RDN or space around a separator): nearly every DN a directory returns.
_DN_NOT_PLAIN = ("\\", '"', "+", " ,", ", ", " =", "= ")
# LDAP result codes worth naming (RFC 4511).
_RESULT_HINTS = {
    3: ("time limit exceeded", "the directory stopped the search early; raise the server's time "
        "limit for this account or narrow the scope"),
    4: ("size limit exceeded", "the directory returned a truncated list; this should not happen "
        "with paging: check the account's MaxPageSize / size limits"),
    8: ("stronger authentication required", "the domain controller requires LDAP signing or "
        "TLS: use ldaps:// or StartTLS (start_tls = true)"),
    9: ("partial results", "the directory returned part of the answer; search a domain "
        "controller of the forest root"),
    10: ("referral not followed", "the base is not held by this server: point `servers` at a "
         "domain controller of the forest that holds the configuration partition"),
    32: ("base DN not found", "check `base` in the [ldap] config (it must be the configuration "
         "naming context, CN=Configuration,DC=...) and that Exchange is installed in this forest"),
    49: ("invalid credentials", "check `bind_user` and the password in secrets ([ldap] password "
          "or PROXYLOGON_LDAP_PASSWORD)"),
    50: ("insufficient access rights", "the account may not read the configuration partition; "
         "any authenticated domain user normally can"),
}


class DirectoryError(RuntimeError):
    """LDAP discovery failed; says on which server, during what, and what to do."""

    def __init__(self, server: str, operation: str, detail: str, hint: str = "",
                 *, another_server_may_answer: bool = False, reason: str = ""):
        self.server, self.operation, self.detail, self.hint = server, operation, detail, hint
        # True for transport failures (the connection died mid-search) and Kerberos failures
        # of one DC (its SPN, its clock); False for answers every DC would give alike (access
        # rights, limits, referrals, configuration, the account's own key or ticket).
        self.another_server_may_answer = another_server_may_answer
        self.reason = reason  # a Kerberos failure: one of collectors.kerberos.REASONS
        message = f"{server}: {operation} failed: {detail}"
        super().__init__(f"{message}. Fix: {hint}" if hint else message)


@dataclass(frozen=True)
class DirectoryConfig:
    """How to reach and read the directory; the password is handed in separately."""

    servers: tuple[str, ...]
    bind_user: str
    auth: str = "simple"  # or "ntlm" (AD only: DOMAIN\\user), or "kerberos" (needs ``kerberos``)
    ca_file: str | None = None
    start_tls: bool = True
    allow_plain: bool = False
    base: str | None = None
    domain_base: str | None = None
    page_size: int = MAX_PAGE_SIZE
    connect_timeout: float = 10.0
    timeout: float = 30.0
    include_sites: tuple[str, ...] = ()
    exclude_sites: tuple[str, ...] = ()
    include_names: tuple[str, ...] = ()
    exclude_names: tuple[str, ...] = ()
    only: tuple[str, ...] = ()
    kerberos: KerberosConfig | None = None  # whose ticket, for auth = "kerberos"


@dataclass(frozen=True)
class DirectoryServer:
    """One Exchange server object as AD describes it."""

    name: str
    dn: str
    fqdn: str | None
    # The CU level AD shows, parsed ("15.1.2176.2"); ``Host.ad_build`` carries the attribute as
    # AD holds it (``ad_raw``), parsed again by the evaluator with its source.
    cu_level: str | None
    ad_raw: str | None  # the attribute value cu_level was read from, as AD holds it
    serial_number: str | None
    version_number: str | None
    roles: tuple[ServerRole, ...] | None
    site: str | None
    dag: str | None
    when_changed: str | None
    maintenance: bool
    problems: tuple[str, ...] = ()
    # Host names of the OWA/ECP InternalUrl and ExternalUrl (``parse_published``).
    internal_names: tuple[str, ...] = ()
    external_names: tuple[str, ...] = ()

    @property
    def edge(self) -> bool:
        return self.roles is not None and ServerRole.EDGE in self.roles

    def to_host(self) -> Host:
        """The inventory record; an Edge server's AD build is withheld (not trustworthy). What
        AD's record showed wrong, and a server in maintenance mode, travel with it as
        ``problems`` (shown as evidence on every verdict)."""
        findings = list(self.problems)
        if self.maintenance:
            findings.append("in maintenance mode (ServerWideOffline inactive in AD's component "
                            "states): expect it unreachable or failing over")
        return Host(name=self.name, fqdn=self.fqdn, site=self.site, dag=self.dag,
                    roles=frozenset(self.roles) if self.roles is not None else None,
                    ad_build=None if self.edge else self.ad_raw, dn=self.dn,
                    problems=tuple(findings), internal_names=self.internal_names,
                    external_names=self.external_names)

    def as_json(self) -> dict[str, Any]:
        return {
            # "ad_build": the key scripts read since the first version
            "name": self.name, "fqdn": self.fqdn, "ad_build": self.cu_level,
            "roles": list(self.roles) if self.roles is not None else None, "site": self.site,
            "dag": self.dag, "dn": self.dn, "when_changed": self.when_changed,
            "serial_number": self.serial_number, "version_number": self.version_number,
            "maintenance": self.maintenance, "edge": self.edge, "problems": list(self.problems),
            "internal_names": list(self.internal_names),
            "external_names": list(self.external_names),
        }


@dataclass(frozen=True)
class Discovery:
    """What one domain controller listed; ``base`` and ``search_filter`` are the search as sent."""

    server: str
    base: str
    servers: tuple[DirectoryServer, ...]
    warnings: tuple[str, ...] = field(default=())
    search_filter: str = ""


# -- pure parsers ------------------------------------------------------------------------------


def parse_roles(value: str | int | None) -> tuple[tuple[ServerRole, ...] | None, list[str]]:
    """Role names from ``msExchCurrentServerRoles``; None with a problem when unusable."""
    if value is None or (not isinstance(value, int) and str(value).strip() == ""):
        return None, ["msExchCurrentServerRoles missing: roles unknown"]
    try:
        mask = value if isinstance(value, int) else int(str(value).strip())
    except ValueError:  # also Python's limit on very long digit strings
        return None, [f"msExchCurrentServerRoles is not a number: {str(value)[:40]!r}"
                      if not isinstance(value, int) else "msExchCurrentServerRoles is huge"]
    if mask.bit_length() > 64:
        return None, ["msExchCurrentServerRoles is out of range"]
    if mask < 0:
        return None, [f"msExchCurrentServerRoles is negative: {mask}"]
    problems = []
    if mask & ~_KNOWN_ROLE_MASK:
        problems.append(f"msExchCurrentServerRoles has unknown bits: {mask & ~_KNOWN_ROLE_MASK}")
    return tuple(name for bit, name in ROLE_BITS if mask & bit), problems


def parse_network_address(values: Iterable[str]) -> tuple[str | None, str | None]:
    """(FQDN from ``ncacn_ip_tcp:``, NetBIOS name from ``netbios:``) of ``networkAddress``."""
    fqdn = netbios = None
    for value in values:
        prefix, _, rest = value.strip().partition(":")
        rest = rest.strip()
        if not rest:
            continue
        if prefix.lower() == "ncacn_ip_tcp" and fqdn is None and "." in rest:
            fqdn = rest.lower()
        elif prefix.lower() == "netbios" and netbios is None:
            netbios = rest
    return fqdn, netbios


def parse_first_rdn(dn: str | None) -> str | None:
    """The value of a DN's first RDN (``CN=Site1,CN=Sites,...`` -> ``Site1``), unescaped."""
    if not dn:
        return None
    try:
        parsed = parse_dn(dn, escape=False, strip=True)
    except Exception:
        return None
    return _unescape_dn_value(parsed[0][1]) if parsed else None


def first_rdn_memo() -> Callable[[str | None], str | None]:
    """``parse_first_rdn`` remembering its answers, for one discovery: thousands of servers
    name a few site and DAG DNs, each parsed once (the answer is a pure function of the DN)."""
    # A dict per discovery rather than functools.lru_cache: it lives and dies with one run
    # (AD text is not kept in a process-wide cache of the long-running dashboard), needs no
    # size to guess, never evicts, however many DAGs a fleet has, and shares nothing
    # between concurrent runs.
    answers: dict[str | None, str | None] = {}

    def first_rdn(dn: str | None) -> str | None:
        if dn not in answers:
            answers[dn] = parse_first_rdn(dn)
        return answers[dn]

    return first_rdn


def _unescape_dn_value(value: str) -> str:
    out, i = [], 0
    while i < len(value):
        char = value[i]
        if char == "\\" and i + 1 < len(value):
            pair = value[i + 1:i + 3]
            if len(pair) == 2 and all(c in "0123456789abcdefABCDEF" for c in pair):
                out.append(chr(int(pair, 16)))
                i += 3
                continue
            out.append(value[i + 1])
            i += 2
            continue
        out.append(char)
        i += 1
    return "".join(out)


def parse_build_attributes(serial: str | None, version_number: str | None
                           ) -> tuple[Build | None, str | None, list[str]]:
    """The CU-level build from ``serialNumber`` (else ``versionNumber``), the raw value it came
    from, and the problems seen; the two attributes are cross-checked."""
    problems: list[str] = []
    from_serial = from_number = None
    if serial:
        try:
            from_serial = parse_serial_number(serial)
        except BuildParseError as error:
            problems.append(f"serialNumber unreadable: {error}")
    else:
        problems.append("serialNumber missing")
    if version_number:
        try:
            from_number = parse_version_number(version_number)
        except BuildParseError as error:
            problems.append(f"versionNumber unreadable: {error}")
    if from_serial and from_number and (from_serial.major, from_serial.minor, from_serial.build) != (
        from_number.major, from_number.minor, from_number.build
    ):
        problems.append(f"serialNumber ({from_serial}) and versionNumber ({from_number}) disagree")
    if from_serial:
        return from_serial, serial, problems
    return from_number, version_number if from_number else None, problems


def parse_server(dn: str, attributes: Mapping[str, Any],
                 computer_dns: Mapping[str, str] | None = None, *,
                 first_rdn: Callable[[str | None], str | None] | None = None) -> DirectoryServer:
    """One server entry (attribute values as ldap3 returns them with get_info=NONE).

    ``first_rdn`` reads the site and DAG names from their DNs: ``parse_first_rdn`` unless the
    caller hands in a ``first_rdn_memo()`` shared by every server of one discovery.
    """
    rdn_of = first_rdn or parse_first_rdn

    def first(name: str) -> str | None:
        value = attributes.get(name)
        if isinstance(value, list | tuple):
            value = value[0] if value else None
        if value is None:
            return None
        if isinstance(value, int) and value.bit_length() > 64:
            return "(out of range)"  # str() of a huge int raises; no real attribute is this big
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        return text if text.strip() else None

    def many(name: str) -> list[str]:
        value = attributes.get(name) or []
        values = value if isinstance(value, list | tuple) else [value]
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else
                ("(out of range)" if isinstance(v, int) and v.bit_length() > 64 else str(v))
                for v in values]

    name = first("cn") or first("name") or parse_first_rdn(dn) or dn
    problems: list[str] = []
    serial, number = first("serialNumber"), first("versionNumber")
    build, raw, build_problems = parse_build_attributes(serial, number)
    problems += build_problems
    roles, role_problems = parse_roles(first("msExchCurrentServerRoles"))
    problems += role_problems
    fqdn, _netbios = parse_network_address(many("networkAddress"))
    if fqdn is None:
        fallback = (computer_dns or {}).get(name.lower())
        if fallback:
            fqdn = fallback.lower()
            problems.append("networkAddress has no ncacn_ip_tcp FQDN: used the computer "
                            "object's dNSHostName")
        else:
            problems.append("no FQDN: networkAddress has no ncacn_ip_tcp value and no computer "
                            "object with a dNSHostName was found")
    site_dn = first("msExchServerSite")
    site = rdn_of(site_dn)
    if site is None:
        problems.append("msExchServerSite missing: AD site unknown")
    if roles is not None and ServerRole.EDGE in roles:
        problems.append("Edge Transport server: AD holds the version recorded at Edge "
                        "subscription, not necessarily the installed one")
    states = many("msExchComponentStates")
    return DirectoryServer(
        name=name, dn=dn, fqdn=fqdn, cu_level=str(build) if build else None, ad_raw=raw,
        serial_number=serial, version_number=number, roles=roles, site=site,
        dag=rdn_of(first("msExchMDBAvailabilityGroupLink")),
        when_changed=first("whenChanged"),
        maintenance=any(":ServerWideOffline:" in s and ":0:" in s for s in states),
        problems=tuple(problems),
    )


@dataclass(frozen=True)
class Published:
    """What one server's OWA/ECP virtual directories publish: host names (lower-case, unique,
    sorted) and the values dropped, each as a problem line."""

    internal: tuple[str, ...] = ()
    external: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()


def parse_url_host(value: str) -> tuple[str | None, str | None]:
    """The host name of an http(s) URL as Exchange stores InternalUrl/ExternalUrl
    (``https://Mail.Corp.Example/owa`` -> ``mail.corp.example``, port and path dropped), as
    ``(host, None)``; ``(None, why)`` for anything else: control characters, credentials, no
    host, another scheme, a host that is not a DNS name (RFC 1123 labels, at most 253
    characters; an IPv6 literal is refused too). Never raises."""
    if len(value) > MAX_URL_LENGTH:
        return None, f"longer than {MAX_URL_LENGTH} characters"
    if _CONTROL.search(value):
        return None, "control characters"
    try:
        parts = urlsplit(value.strip())
        if parts.port == 0:  # reading it raises ValueError for a port no number or out of range
            return None, "port 0"
    except ValueError:
        return None, "not a URL"
    if parts.scheme.lower() not in ("http", "https"):
        return None, "not an http(s) URL"
    if "@" in parts.netloc:
        return None, "credentials in the URL"
    host = (parts.hostname or "").removesuffix(".")
    if not host:
        return None, "no host name"
    if len(host) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in host.split(".")):
        return None, "not a valid host name"
    return host, None


def dn_key(dn: str) -> tuple[str, ...]:
    """A DN as a comparison key: one ``type=value`` text per RDN, case-folded, escapes resolved,
    so ``cn=LAB(1)*\\5CEX,dc=x`` (slapd's form) and ``CN=LAB(1)*\\\\EX,DC=X`` compare equal.
    A plain DN (``_DN_NOT_PLAIN``: nearly every one) is split on its commas as it is, the rest
    go through ldap3's parser, their values written back with ``\\``, ``,`` and ``+``
    escaped (so no two DNs share a key); a DN that parser refuses is its own case-folded text.
    """
    folded = dn.casefold()
    if not any(mark in folded for mark in _DN_NOT_PLAIN):
        return tuple(folded.split(","))
    try:
        parsed = parse_dn(dn, escape=False, strip=True)
    except Exception:
        return ("\\" + folded,)  # no RDN text of a parsed DN starts with a backslash
    key: list[str] = []
    current: list[str] = []
    for kind, value, separator in parsed:
        text = _unescape_dn_value(value).casefold()
        for char in "\\,+":
            text = text.replace(char, "\\" + char)
        current.append(f"{kind.strip().casefold()}={text}")
        if separator != "+":
            key.append("+".join(sorted(current)))
            current = []
    return tuple(key)


def parse_published(server_dns: Iterable[str], entries: Iterable[tuple[str, Mapping[str, Any]]]
                    ) -> dict[str, Published]:
    """The namespaces each server publishes, keyed by its DN as given in ``server_dns``, from
    virtual-directory entries (DN and attributes as ldap3 returns them with get_info=NONE).

    An entry belongs to the server whose DN its own ends with (it sits below
    ``CN=HTTP,CN=Protocols,CN=<server>``); one below no listed server (out of scope) is
    skipped. An unusable URL (``parse_url_host``) is dropped with a problem naming the virtual
    directory, the attribute and the value (quoted, cut at 80 characters). A server with no
    such entry is absent from the answer."""
    servers = {dn_key(dn): dn for dn in server_dns}
    found: dict[str, tuple[set[str], set[str], list[str]]] = {}
    # A fleet publishes a few names on thousands of directories: each URL text is read once.
    hosts: dict[str, tuple[str | None, str | None]] = {}
    for dn, attributes in entries:
        key = dn_key(dn)
        server = None
        for start in range(1, len(key)):
            server = servers.get(key[start:])
            if server is not None:
                break
        if server is None:
            continue
        internal, external, problems = found.setdefault(server, (set(), set(), []))
        for attribute, names in ((INTERNAL_URL, internal), (EXTERNAL_URL, external)):
            for value in _texts(attributes.get(attribute)):
                if not value.strip():
                    continue
                if value not in hosts:
                    hosts[value] = parse_url_host(value)
                host, why = hosts[value]
                if host is not None:
                    names.add(host)
                else:
                    name = parse_first_rdn(dn) or dn
                    problems.append(f"virtual directory {name[:80]!r}: {attribute} "
                                    f"{value[:80]!r} ignored ({why})")
    return {server: Published(tuple(sorted(internal)), tuple(sorted(external)), tuple(problems))
            for server, (internal, external, problems) in found.items()}


def _texts(value: Any) -> list[str]:
    values = value if isinstance(value, list | tuple) else [] if value is None else [value]
    return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values]


def with_published(server: DirectoryServer, published: Published | None) -> DirectoryServer:
    """``server`` with what its virtual directories publish (unchanged for None)."""
    if published is None:
        return server
    return replace(server, internal_names=published.internal, external_names=published.external,
                   problems=server.problems + published.problems)


def scope_filter(config: DirectoryConfig, config_nc: str) -> str:
    """The LDAP filter for the configured scope; every configured value is escaped."""
    parts = [SERVER_FILTER]
    if config.only:
        parts.append("(|" + "".join(f"(cn={escape_filter_chars(n)})" for n in config.only) + ")")
    if config.include_sites:
        parts.append("(|" + "".join(f"(msExchServerSite={escape_filter_chars(_site_dn(s, config_nc))})"
                                    for s in config.include_sites) + ")")
    for site in config.exclude_sites:
        parts.append(f"(!(msExchServerSite={escape_filter_chars(_site_dn(site, config_nc))}))")
    return "(&" + "".join(parts) + ")"


def empty_warning(config: DirectoryConfig, server: str, base: str, search_filter: str,
                  matched: int = 0) -> str:
    """Why a discovery that listed no server probably did, with the fix for each cause.

    AD answers an account that may not read the Exchange objects with an empty list, not an
    error, so an empty answer is the one sign of a wrong base, a lost right or a foreign schema.
    ``matched``: the entries the filter found before the name patterns dropped them all.
    """
    origin = "[ldap] base" if config.base else "the RootDSE"
    where = (f"{server} listed no Exchange server under {base} (configuration naming context "
             f"from {origin}) with filter {search_filter}")
    if matched:
        patterns = ", ".join(f"{key} = {json.dumps(list(values))}" for key, values in (
            ("include_names", config.include_names), ("exclude_names", config.exclude_names))
            if values)
        return (f"{where}: the filter matched {matched}, but the [scope] name patterns "
                f"({patterns}) dropped every one. Fix: correct those patterns")
    causes = []
    if config.base:
        causes.append("a wrong [ldap] base: it must be the configuration naming context "
                      "(CN=Configuration,DC=...), or leave it out to read it from the RootDSE")
    if config.only or config.include_sites or config.exclude_sites:
        causes.append("[scope] only/include_sites/exclude_sites that match no server: use the "
                      "server and site names as AD spells them")
    causes += ["a bind account that may not read the Exchange objects in the Configuration "
               "partition (AD then lists nothing instead of refusing): restore its read access, "
               "which authenticated users have by default",
               "a forest without Exchange, or a schema this tool does not expect (server "
               "objects not of class msExchExchangeServer): point [ldap] servers at a domain "
               "controller of the forest that runs Exchange"]
    return f"{where}. Likely causes: " + " ".join(
        f"({number}) {cause}{';' if number < len(causes) else ''}"
        for number, cause in enumerate(causes, 1))


def _site_dn(site: str, config_nc: str) -> str:
    return f"CN={ldap3.utils.dn.escape_rdn(site)},CN=Sites,{config_nc}"


def in_name_scope(name: str, config: DirectoryConfig) -> bool:
    """Name patterns (shell-style, case-insensitive) are applied after the search."""
    lowered = name.lower()
    if config.include_names and not any(fnmatch.fnmatchcase(lowered, p.lower())
                                        for p in config.include_names):
        return False
    return not any(fnmatch.fnmatchcase(lowered, p.lower()) for p in config.exclude_names)


# -- I/O ---------------------------------------------------------------------------------------


ConnectionFactory = Callable[[DirectoryConfig, str, str], ldap3.Connection]


MODERN_TLS = ("TLSv1.2", "TLSv1.3")


def _tls(config: DirectoryConfig) -> ldap3.Tls:
    # ldap3 builds an SSLContext(PROTOCOL_TLS_CLIENT): Python's defaults, TLS 1.2 or later
    # and forward-secret AEAD ciphers (no ``ciphers`` here: OpenSSL's DEFAULT list is weaker).
    # ldap3 has no setting for the minimum version, so _require_modern_tls checks it again,
    # and it checks the host name itself after the handshake.
    return ldap3.Tls(validate=ssl.CERT_REQUIRED, version=ssl.PROTOCOL_TLS_CLIENT,
                     ca_certs_file=config.ca_file)


def _require_modern_tls(connection: ldap3.Connection, url: str) -> None:
    """Refuse, before any credential is sent, a session that negotiated TLS older than 1.2."""
    version = getattr(connection.socket, "version", lambda: None)()
    if version not in MODERN_TLS:
        raise DirectoryError(url, "TLS handshake", f"negotiated {version or 'no TLS'}, "
                             "below the minimum TLS 1.2",
                             "enable TLS 1.2 or later on the domain controller")


def open_connection(config: DirectoryConfig, url: str, password: str) -> ldap3.Connection:
    """Connect, secure and bind to one domain controller; raises ``DirectoryError``.
    ``password`` is not used with ``auth = "kerberos"``."""
    parts = urlsplit(url if "://" in url else f"ldaps://{url}")
    scheme = parts.scheme.lower()
    if scheme not in ("ldap", "ldaps") or not parts.hostname:
        raise DirectoryError(url, "connect", "not an ldap:// or ldaps:// URL",
                             "write servers as ldaps://dc1.example.com or ldap://dc1:389")
    secure = scheme == "ldaps" or config.start_tls
    if not secure and not config.allow_plain:
        raise DirectoryError(url, "connect", "plain LDAP refused",
                             "use ldaps://, keep start_tls = true, or set allow_plain = true "
                             "if you really mean to send credentials unencrypted")
    if config.auth == "kerberos" and config.kerberos is None:
        raise DirectoryError(url, "configuration", 'auth = "kerberos" without a principal',
                             "add a [kerberos] section with the service account's principal")
    # The ticket first: a missing keytab or a wrong key is the same for every DC.
    ticket = _ticket(url, config.kerberos) if config.auth == "kerberos" and config.kerberos else None
    server = ldap3.Server(parts.hostname, port=parts.port or (636 if scheme == "ldaps" else 389),
                          use_ssl=scheme == "ldaps", tls=_tls(config), get_info=ldap3.NONE,
                          connect_timeout=config.connect_timeout)
    # ldap3 packs receive_timeout into SO_RCVTIMEO: whole seconds only.
    options: dict[str, Any] = {"auto_bind": ldap3.AUTO_BIND_NONE, "read_only": True,
                               "receive_timeout": max(1, math.ceil(config.timeout)),
                               "auto_referrals": False, "raise_exceptions": False,
                               "auto_escape": False}
    if ticket is not None:
        # The service ticket is asked for ldap/<parts.hostname>, as written in `servers`.
        connection = ldap3.Connection(server, user=ticket.principal, authentication=ldap3.SASL,
                                      sasl_mechanism=ldap3.KERBEROS,
                                      cred_store={"ccache": ticket.ccache}, **options)
    else:
        connection = ldap3.Connection(server, user=config.bind_user, password=password,
                                      authentication=ldap3.NTLM if config.auth == "ntlm" else ldap3.SIMPLE,
                                      **options)
    try:
        connection.open()
        if scheme == "ldap" and config.start_tls and not connection.start_tls():
            raise DirectoryError(url, "StartTLS", _describe(connection.result),
                                 "enable LDAP over TLS on the domain controller or use ldaps://")
        if secure:
            _require_modern_tls(connection, url)
        elif scheme == "ldap":
            log.warning("plain LDAP to %s: the bind and the inventory cross the network "
                        "unencrypted (allow_plain = true)", url)
        if ticket is not None and config.kerberos is not None:
            _kerberos_bind(connection, url, parts.hostname, config.kerberos, ticket)
        elif not connection.bind():
            code = int((connection.result or {}).get("result", -1))
            hint = _RESULT_HINTS[code][1] if code in _RESULT_HINTS else "check bind_user and the password"
            raise DirectoryError(url, f"bind as {config.bind_user}", _describe(connection.result), hint)
    except DirectoryError:
        _close(connection)
        raise
    except ldap_errors.LDAPException as error:
        _close(connection)
        raise _classify(url, error, config) from None
    except Exception as error:  # ldap3 lets socket and struct errors through unwrapped
        _close(connection)
        raise _classify(url, error, config) from None
    return connection


# Kerberos failures of one domain controller (its SPN, its clock, its keytab): the next DC may
# accept the ticket, and a refused AP-REQ never counts towards the account's lockout.
_KERBEROS_PER_SERVER = frozenset({"spn_not_found", "clock_skew", "refused"})
_STRONGER_AUTH_REQUIRED, _SASL_BIND_IN_PROGRESS = 8, 14


def _kerberos_failure(url: str, error: KerberosError) -> DirectoryError:
    return DirectoryError(url, f"Kerberos bind as {error.principal}", error.detail, error.fix,
                          another_server_may_answer=error.reason in _KERBEROS_PER_SERVER,
                          reason=error.reason)


def _ticket(url: str, kerberos: KerberosConfig) -> Ticket:
    try:
        return acquire(kerberos)
    except KerberosError as error:
        raise _kerberos_failure(url, error) from None


def _kerberos_bind(connection: ldap3.Connection, url: str, host: str, kerberos: KerberosConfig,
                   ticket: Ticket) -> None:
    """SASL GSSAPI bind with ``ticket`` for ``ldap/<host>``; ``DirectoryError`` with the reason
    (``collectors.kerberos.classify``) otherwise. ``activate`` keeps the library from
    canonicalising ``host`` unless ``kerberos.canonicalize``."""
    service, principal = f"ldap/{host}", kerberos.principal
    answers: list[dict[str, Any]] = []
    failure: BaseException | str
    layer: str | None = None  # what ldap3 or the DC said about a SASL security layer
    try:
        with _bind_answers(connection, answers), activate(ticket, kerberos.canonicalize):
            if connection.bind():
                return
        if (connection.result or {}).get("result") == _STRONGER_AUTH_REQUIRED:  # AD: signing
            layer = "requires a security layer"
        failure = _describe(connection.result)
    except ldap_errors.LDAPPackageUnavailableError as error:  # ldap3 found no gssapi package
        failure = ImportError(str(error))
    except ldap_errors.LDAPCommunicationError as error:
        if "security layer" not in str(error):
            raise  # a transport failure: _classify's
        layer = failure = str(error)
    except Exception as error:
        if type(error).__module__.split(".")[0] != "gssapi":
            raise
        failure = error
        # ldap3 answers a GSSAPI error with an abort bind; its answer is not the DC's.
        answers = answers[:-1]
    if layer is not None:
        raise _security_layer(url, principal, host, layer)
    found = classify(failure, principal, service, host, kerberos.keytab)
    refusal = next((a for a in answers if a.get("type") == "bindResponse"
                    and a.get("result") not in (0, _SASL_BIND_IN_PROGRESS)), None)
    if found.reason == "refused" and refusal is not None and not isinstance(failure, str):
        # The DC said no without a Kerberos reply (slapd, and AD on some errors): the client
        # saw only "Invalid token"; the DC's own answer says more.
        found = classify(_describe(refusal), principal, service, host, kerberos.keytab)
    raise _kerberos_failure(url, found)


def _security_layer(url: str, principal: str, host: str, text: str) -> DirectoryError:
    """ldap3 2.9.1 negotiates no SASL security layer: a DC that requires one (LDAP signing
    without TLS) refuses it, and a server that offers only "no layer" trips ldap3's own check
    ("Server max buffer size must be 0 if no security layer", a bytes/str comparison)."""
    if "requires a security layer" in text:
        detail = (f"{host} requires LDAP signing (a SASL security layer) on this unencrypted "
                  "connection, which ldap3 cannot provide")
        hint = "use ldaps:// or StartTLS (start_tls = true): over TLS no signing is needed"
    else:
        detail = f"ldap3 cannot read {host}'s offer of no SASL security layer ({text})"
        hint = ("let the server offer a security layer (OpenLDAP: no maxssf=0 in sasl-secprops), "
                "or bind with auth = \"simple\" over LDAPS")
    return DirectoryError(url, f"Kerberos bind as {principal}", detail, hint,
                          another_server_may_answer=True, reason="refused")


@contextlib.contextmanager
def _bind_answers(connection: ldap3.Connection, answers: list[dict[str, Any]]) -> Iterator[None]:
    """Within the block, every answer the DC sends to ``connection`` is appended to ``answers``,
    in order: when GSSAPI fails, ldap3 sends an abort bind and ``connection.result`` then holds
    the answer to that, not the DC's refusal."""
    post = connection.post_send_single_response

    def keeping(message_id: Any) -> Any:
        responses = post(message_id)
        if isinstance(connection.result, dict):
            answers.append(dict(connection.result))
        return responses

    connection.post_send_single_response = keeping
    try:
        yield
    finally:
        connection.post_send_single_response = post


def _close(connection: ldap3.Connection) -> None:
    # Closing a half-open socket can fail; there is nothing left to report then.
    with contextlib.suppress(Exception):
        connection.unbind()


def _classify(url: str, error: Exception, config: DirectoryConfig) -> DirectoryError:
    text = str(error)
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text.lower():
        return DirectoryError(url, "TLS handshake", "the server certificate is not trusted",
                              f"set ca_file to the CA that issued the domain controller's "
                              f"certificate (now: {config.ca_file or 'system default'})")
    if "PROTOCOL_VERSION" in text or "UNSUPPORTED_PROTOCOL" in text:
        return DirectoryError(url, "TLS handshake", "the server offers no TLS version this tool "
                              "accepts (TLS 1.2 or later)",
                              "enable TLS 1.2 or later on the domain controller")
    if isinstance(error, ldap_errors.LDAPStartTLSError) or "ssl" in text.lower():
        return DirectoryError(url, "TLS handshake", text,
                              "check that the domain controller has a certificate for LDAPS")
    if isinstance(error, ldap_errors.LDAPSocketOpenError):
        return DirectoryError(url, "connect", text,
                              "check the server name, that port is open from here, and the "
                              "firewall")
    if isinstance(error, ldap_errors.LDAPResponseTimeoutError | ldap_errors.LDAPSocketReceiveError):
        return DirectoryError(url, "read", f"no answer in time ({text})",
                              "the domain controller is slow or unreachable; raise `timeout` "
                              "or try another server")
    return DirectoryError(url, "LDAP operation", text, "see the directory server's logs")


def _describe(result: Mapping[str, Any] | None) -> str:
    if not result:
        return "no result"
    code = int(result.get("result", -1))
    label = _RESULT_HINTS[code][0] if code in _RESULT_HINTS else str(result.get("description") or "error")
    message = (result.get("message") or "").strip()
    return f"{label} (LDAP result {code}{': ' + message if message else ''})"


def _check(url: str, operation: str, connection: ldap3.Connection) -> None:
    """Raise unless the last operation fully succeeded; ldap3 does not raise on limits."""
    result = connection.result or {}
    code = int(result.get("result", -1))
    if code == 0:
        return
    hint = _RESULT_HINTS[code][1] if code in _RESULT_HINTS else "see the directory server's logs"
    raise DirectoryError(url, operation, _describe(result), hint)


def _search(connection: ldap3.Connection, url: str, base: str, flt: str, scope: str,
            attributes: Sequence[str], page_size: int | None = None) -> Iterator[tuple[str, Any]]:
    cookie: bytes | None = None
    operation = f"search of {base}"
    asked = {name.lower(): name for name in attributes}
    while True:
        try:
            connection.search(base, flt, search_scope=scope, attributes=list(attributes),
                              paged_size=page_size, paged_cookie=cookie)
        except (ldap_errors.LDAPException, OSError) as error:
            raise DirectoryError(url, operation, str(error) or type(error).__name__,
                                 "the connection failed mid-search; try again or another "
                                 "server", another_server_may_answer=True) from None
        _check(url, operation, connection)
        for item in connection.response or []:
            if item.get("type") == "searchResRef":
                raise DirectoryError(url, operation, f"referral to {item.get('uri')}",
                                     _RESULT_HINTS[10][1])
            if item.get("type") == "searchResEntry":
                # The last of two names differing only in case wins, as in ldap3's own dict.
                yield item["dn"], {asked.get(name.lower(), name): values
                                   for name, values in item["attributes"].items()}
        if not page_size:
            return
        controls = (connection.result or {}).get("controls") or {}
        cookie = controls.get(PAGED_RESULTS_OID, {}).get("value", {}).get("cookie")
        if not cookie:
            return


def root_dse(connection: ldap3.Connection, url: str,
             names: Sequence[str] = ("configurationNamingContext", "defaultNamingContext")
             ) -> dict[str, str]:
    """The first value of each of ``names`` the DC's RootDSE holds, as text (names it lacks
    are absent); raises ``DirectoryError`` when the read fails."""
    for _dn, attributes in _search(connection, url, "", "(objectClass=*)", ldap3.BASE, names):
        found = {}
        for name in names:
            value = attributes.get(name)
            if isinstance(value, list):
                value = value[0] if value else None
            if value:
                found[name] = str(value)
        return found
    return {}


def discover(config: DirectoryConfig, password: str,
             connect: ConnectionFactory = open_connection) -> Discovery:
    """Every Exchange server in scope, from the first domain controller that answers."""
    if not config.servers:
        raise DirectoryError("(no server)", "configuration", "no LDAP server configured",
                             "list domain controllers in [ldap] servers")
    failures: list[DirectoryError] = []
    for position, url in enumerate(config.servers):
        # A warning says "trying the next DC"; the last one's failure is the error itself.
        last = position == len(config.servers) - 1
        try:
            connection = connect(config, url, password)
        except DirectoryError as error:
            failures.append(error)
            if error.operation.startswith("bind") or (error.reason and not error.another_server_may_answer):
                raise  # other DCs would reject the same credentials (and lock the account)
            if not last:
                log.warning("%s", error)
            continue
        try:
            with gc_paused():  # bulk parsing, no cycles (gcpause.py)
                return _discover_on(connection, url, config)
        except DirectoryError as error:
            # Nothing partial is kept: a DC whose connection fails mid-search is skipped like
            # one that never answered, and the next one is asked for the whole inventory.
            if not error.another_server_may_answer:
                raise
            failures.append(error)
            if not last:
                log.warning("%s", error)
        finally:
            _close(connection)
    if len(failures) == 1:
        raise failures[0]
    raise DirectoryError(", ".join(config.servers), "connect",
                         "no domain controller answered: " + "; ".join(str(f) for f in failures),
                         "check the server list, the network and the CA bundle")


def _discover_on(connection: ldap3.Connection, url: str, config: DirectoryConfig) -> Discovery:
    root = root_dse(connection, url)
    config_nc = config.base or root.get("configurationNamingContext")
    if not config_nc:
        raise DirectoryError(url, "RootDSE read", "no configurationNamingContext",
                             "set `base` (CN=Configuration,DC=...) in the [ldap] config")
    base = f"CN=Microsoft Exchange,CN=Services,{config_nc}"
    page_size = max(1, min(config.page_size, MAX_PAGE_SIZE))
    search_filter = scope_filter(config, config_nc)
    entries = list(_search(connection, url, base, search_filter, ldap3.SUBTREE, ATTRIBUTES,
                           page_size))
    missing = [_first_value(a, "cn") or parse_first_rdn(dn) or "" for dn, a in entries
               if parse_network_address(_values(a, "networkAddress"))[0] is None]
    domain_base = config.domain_base or root.get("defaultNamingContext")
    computer_dns = _computer_dns(connection, url, domain_base, missing) if missing else {}
    servers = []
    first_rdn = first_rdn_memo()
    for dn, attributes in entries:
        server = parse_server(dn, attributes, computer_dns, first_rdn=first_rdn)
        if in_name_scope(server.name, config):
            servers.append(server)
    published, unread = _read_published(connection, url, base, page_size, servers)
    servers = [with_published(server, published.get(server.dn)) for server in servers]
    servers.sort(key=lambda s: s.name.lower())
    warnings = [unread] if unread else []
    if missing and not domain_base:
        warnings.append("no defaultNamingContext: FQDNs could not be looked up on computer objects")
    if not servers:
        warnings.append(empty_warning(config, url, base, search_filter, len(entries)))
    return Discovery(server=url, base=base, servers=tuple(servers), warnings=tuple(warnings),
                     search_filter=search_filter)


def _read_published(connection: ldap3.Connection, url: str, base: str, page_size: int,
                    servers: Sequence[DirectoryServer]) -> tuple[dict[str, Published], str | None]:
    """The servers' published namespaces (one paged search for all), or none and a warning when
    the directory refuses that search; a failed connection raises (the next DC is asked)."""
    if not servers:
        return {}, None
    try:
        entries = _search(connection, url, base, VIRTUAL_DIRECTORY_FILTER, ldap3.SUBTREE,
                          VIRTUAL_DIRECTORY_ATTRIBUTES, page_size)
        return parse_published((server.dn for server in servers), entries), None
    except DirectoryError as error:
        if error.another_server_may_answer:
            raise
        return {}, (f"OWA/ECP virtual directories not read, so no published namespace is known "
                    f"and internet-facing hosts are guessed from their roles: {error}")


def _values(attributes: Mapping[str, Any], name: str) -> list[str]:
    value = attributes.get(name) or []
    return [str(v) for v in (value if isinstance(value, list | tuple) else [value])]


def _first_value(attributes: Mapping[str, Any], name: str) -> str | None:
    values = _values(attributes, name)
    return values[0] if values else None


def _computer_dns(connection: ldap3.Connection, url: str, domain_base: str | None,
                  names: Sequence[str]) -> dict[str, str]:
    """dNSHostName of the computer objects named like servers that lack a networkAddress FQDN."""
    if not domain_base:
        return {}
    found: dict[str, str] = {}
    for start in range(0, len(names), 100):
        batch = [n for n in names[start:start + 100] if n]
        if not batch:
            continue
        flt = ("(&(objectClass=computer)(|" +
               "".join(f"(cn={escape_filter_chars(n)})" for n in batch) + "))")
        for _dn, attributes in _search(connection, url, domain_base, flt, ldap3.SUBTREE,
                                       ("cn", "dNSHostName"), MAX_PAGE_SIZE):
            cn, dns = _first_value(attributes, "cn"), _first_value(attributes, "dNSHostName")
            if cn and dns:
                found[cn.lower()] = dns
    return found
