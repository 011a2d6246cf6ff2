"""LDIF for a slapd peer shaped like Active Directory with Exchange server objects.

Pure functions, no I/O. The layout follows AD (see shared/reference/ad_exchange_objects.md):

    DC=test,DC=example                                           domainDNS
      CN=Configuration                                           container
        CN=Sites / CN=<site>                                     sitesContainer / site
        CN=Services / CN=Microsoft Exchange / CN=<org>           container / msExchConfigurationContainer /
                                                                 msExchOrganizationContainer
          CN=Administrative Groups / CN=<admin group>            msExchAdminGroupContainer / msExchAdminGroup
            CN=Servers / CN=<server>                             msExchServersContainer / msExchExchangeServer
              CN=Protocols                                       container (noise, like AD's)
                CN=HTTP / CN=<vdir> (<web site>)                 msExchProtocolCfgHTTPContainer /
                                                                 msExchOWA-, msExchECP-, msExchWebServices-
                                                                 VirtualDirectory (msExchInternalHostName,
                                                                 msExchExternalHostName: URLs)
              CN=Mailbox, CN=Frontend  (2013+)                   msExchExchangeTransportServer (carry serialNumber!)
            CN=Database Availability Groups / CN=<dag>           msExchMDBAvailabilityGroupContainer /
                                                                 msExchMDBAvailabilityGroup
      OU=Exchange Servers / CN=<server>                          organizationalUnit / computer
      OU=Service Accounts / CN=svc-exinventory                   organizationalUnit / user

DNs use AD-style upper-case attribute types and RFC 4514 escaping; LDIF values that are not
SAFE-STRINGs are base64-encoded (RFC 2849). Differences from AD are listed in ad.schema.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

DEFAULT_BASE_DN = "DC=test,DC=example"
DEFAULT_ORG = "Test Org"
MODERN_ADMIN_GROUP = "Exchange Administrative Group (FYDIBOHF23SPDLT)"
LEGACY_ADMIN_GROUP = "First Administrative Group"
DEFAULT_WHEN_CHANGED = "20261120093000.0Z"
DEFAULT_WHEN_CREATED = "20190304120000.0Z"

SERVICE_ACCOUNT_CN = "svc-exinventory"
SERVICE_PASSWORD = "Inventory-Read-0nly!"

# msExchVersion object-version stamps (not builds): see the reference note, section 3.
MSEXCH_VERSION_2007 = 4535486012416
MSEXCH_VERSION_2010 = 44220983382016
MSEXCH_VERSION_2013 = 88218628259840

# ServerRole flags (msExchCurrentServerRoles).
ROLE_EDGE = 64
ROLES_2010_MULTI = 38  # CAS + Hub + Mailbox
ROLES_2013_MULTI = 16439  # Mailbox role (54) + CAS (16385)
ROLES_2013_CAS = 16385  # Cafe + FrontendTransport
ROLES_2019_MAILBOX = 16423  # 16439 - UM

# The (versionNumber>=N) filter community scripts use to keep "Exchange 2010 or later".
VERSION_NUMBER_2010_OR_LATER = 1937801568

_VERSION_BASE = 0x70008000


def encode_version_number(major: int, minor: int, build: int) -> int:
    """Exchange's ServerVersion.ToInt(): the integer stored in versionNumber (no revision)."""
    return (build & 0x7FFF) | (minor & 63) << 16 | (major & 63) << 22 | _VERSION_BASE


def decode_version_number(value: int) -> tuple[int, int, int]:
    """Inverse of encode_version_number: (major, minor, build)."""
    return value >> 22 & 63, value >> 16 & 63, value & 0x7FFF


FRONT_END_SITE = "Default Web Site"
BACK_END_SITE = "Exchange Back End"  # 2013+: the back end the front end proxies to (port 444)
VDIR_CLASSES = {"owa": "msExchOWAVirtualDirectory", "ecp": "msExchECPVirtualDirectory",
                "ews": "msExchWebServicesVirtualDirectory"}


@dataclass(frozen=True)
class VirtualDirectorySpec:
    """One HTTP virtual directory below a server: ``CN=<kind> (<site>),CN=HTTP,CN=Protocols,...``.

    ``internal_url``/``external_url`` -> msExchInternalHostName/msExchExternalHostName (None:
    absent), written as given (hostile values included).
    """

    kind: str  # a key of VDIR_CLASSES
    internal_url: str | None = None
    external_url: str | None = None
    site: str = FRONT_END_SITE

    @property
    def cn(self) -> str:
        return f"{self.kind} ({self.site})"


@dataclass(frozen=True)
class ServerSpec:
    """One Exchange server object (plus optional computer object) and the facts it carries.

    ``None`` means "attribute absent" throughout.
    """

    name: str
    serial_number: str | None = None
    version_number: int | None = None
    roles: int | None = None  # msExchCurrentServerRoles
    site: str | None = None  # AD site name -> msExchServerSite DN
    dag: str | None = None  # DAG name -> msExchMDBAvailabilityGroupLink DN (in this admin group)
    network_addresses: tuple[str, ...] = ()
    admin_group: str = MODERN_ADMIN_GROUP
    computer_dns: str | None = None  # dNSHostName of CN=<name>,OU=Exchange Servers,<base>; None: no computer
    transport_subobjects: bool = True  # CN=Mailbox / CN=Frontend children (2013+)
    when_changed: str = DEFAULT_WHEN_CHANGED
    component_states: tuple[str, ...] = ()  # msExchComponentStates
    msexch_version: int | None = MSEXCH_VERSION_2013
    operating_system: str = "Windows Server 2016 Datacenter"  # on the computer object
    operating_system_version: str = "10.0 (14393)"
    trait: str = ""  # free text: what this server is in the fleet for (not written to LDAP)
    virtual_directories: tuple[VirtualDirectorySpec, ...] = ()  # below CN=HTTP,CN=Protocols


# --------------------------------------------------------------------------- DN building

_DN_SPECIALS = frozenset(',+"\\<>;=')


def escape_dn_value(value: str) -> str:
    """Escape an attribute value for use in a DN string (RFC 4514 section 2.4)."""
    if value and not any(char in value for char in _DN_SPECIALS) and "\x00" not in value \
            and value[0] not in " #" and value[-1] != " ":
        return value
    out: list[str] = []
    last = len(value) - 1
    for index, char in enumerate(value):
        if char in _DN_SPECIALS or (index == 0 and char in " #") or (index == last and char == " "):
            out.append("\\" + char)
        elif char == "\x00":
            out.append("\\00")
        else:
            out.append(char)
    return "".join(out)


def rdn(attribute: str, value: str) -> str:
    return f"{attribute}={escape_dn_value(value)}"


def _split_unescaped(text: str, separator: str) -> list[str]:
    parts, current, index = [], [], 0
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text):
            current.append(text[index:index + 2])
            index += 2
            continue
        if char == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        index += 1
    parts.append("".join(current))
    return parts


def _unescape_dn_value(value: str) -> str:
    out = bytearray()
    index = 0
    while index < len(value):
        char = value[index]
        if char == "\\" and index + 1 < len(value):
            pair = value[index + 1:index + 3]
            if len(pair) == 2 and all(c in "0123456789abcdefABCDEF" for c in pair):
                out.append(int(pair, 16))
                index += 3
                continue
            out += value[index + 1].encode("utf-8")
            index += 2
            continue
        out += char.encode("utf-8")
        index += 1
    return out.decode("utf-8", errors="replace")


def dn_key(dn: str) -> tuple[tuple[tuple[str, str], ...], ...]:
    """A comparison key for a DN string: case-insensitive types and values, escapes resolved.

    slapd returns ``cn=LAB(1)*\\5CEX,...,dc=test,dc=example`` for the entry loaded as
    ``CN=LAB(1)*\\\\EX,...,DC=test,DC=example``; both give the same key. (Test helper, not a full
    RFC 4514 parser: no hex-string ``#...`` values, no whitespace around separators.)
    """
    key = []
    for rdn_text in _split_unescaped(dn.strip(), ","):
        pairs = []
        for ava in _split_unescaped(rdn_text, "+"):
            attribute, _, value = ava.partition("=")
            pairs.append((attribute.strip().casefold(), _unescape_dn_value(value).casefold()))
        key.append(tuple(sorted(pairs)))
    return tuple(key)


def config_dn(base_dn: str = DEFAULT_BASE_DN) -> str:
    return f"CN=Configuration,{base_dn}"


def schema_dn(base_dn: str = DEFAULT_BASE_DN) -> str:
    return f"CN=Schema,{config_dn(base_dn)}"


def exchange_dn(base_dn: str = DEFAULT_BASE_DN) -> str:
    """CN=Microsoft Exchange,CN=Services,<configurationNamingContext>: the collector's search base."""
    return f"CN=Microsoft Exchange,CN=Services,{config_dn(base_dn)}"


def org_dn(org: str = DEFAULT_ORG, base_dn: str = DEFAULT_BASE_DN) -> str:
    return f"{rdn('CN', org)},{exchange_dn(base_dn)}"


def admin_group_dn(admin_group: str, org: str = DEFAULT_ORG, base_dn: str = DEFAULT_BASE_DN) -> str:
    return f"{rdn('CN', admin_group)},CN=Administrative Groups,{org_dn(org, base_dn)}"


def server_dn(spec: ServerSpec, org: str = DEFAULT_ORG, base_dn: str = DEFAULT_BASE_DN) -> str:
    return f"{rdn('CN', spec.name)},CN=Servers,{admin_group_dn(spec.admin_group, org, base_dn)}"


def dag_dn(dag: str, admin_group: str = MODERN_ADMIN_GROUP, org: str = DEFAULT_ORG,
           base_dn: str = DEFAULT_BASE_DN) -> str:
    return f"{rdn('CN', dag)},CN=Database Availability Groups,{admin_group_dn(admin_group, org, base_dn)}"


def site_dn(site: str, base_dn: str = DEFAULT_BASE_DN) -> str:
    return f"{rdn('CN', site)},CN=Sites,{config_dn(base_dn)}"


def computer_dn(name: str, base_dn: str = DEFAULT_BASE_DN) -> str:
    return f"{rdn('CN', name)},OU=Exchange Servers,{base_dn}"


def service_account_dn(base_dn: str = DEFAULT_BASE_DN) -> str:
    return f"{rdn('CN', SERVICE_ACCOUNT_CN)},OU=Service Accounts,{base_dn}"


def _category(class_cn: str, base_dn: str) -> str:
    return f"CN={class_cn},{schema_dn(base_dn)}"


def _first_rdn_value(dn: str) -> str:
    """The value of the first RDN of a simple, unescaped DN such as DC=test,DC=example."""
    first = dn.split(",", 1)[0]
    return first.split("=", 1)[1]


def _dns_domain(base_dn: str) -> str:
    return ".".join(part.split("=", 1)[1] for part in base_dn.split(",") if part.strip().upper().startswith("DC="))


# --------------------------------------------------------------------------- LDIF encoding

def _is_safe_string(value: str) -> bool:
    """RFC 2849 SAFE-STRING, and no trailing space (which would be lost by some parsers)."""
    if value == "":
        return True
    if value[0] in " :<" or value[-1] == " ":
        return False
    return value.isascii() and not any(char in value for char in "\x00\r\n")


def ldif_line(attribute: str, value: str | bytes) -> str:
    """One LDIF attribute line; base64 (``::``) when the value is bytes or not a SAFE-STRING."""
    if isinstance(value, str):
        if _is_safe_string(value):
            return f"{attribute}: {value}"
        value = value.encode("utf-8")
    return f"{attribute}:: {base64.b64encode(value).decode('ascii')}"


Value = str | bytes
Entry = tuple[str, list[tuple[str, Value]]]


def render_entries(entries: Iterable[Entry]) -> str:
    blocks = []
    for dn, attributes in entries:
        lines = [ldif_line("dn", dn)]
        lines.extend(ldif_line(attribute, value) for attribute, value in attributes)
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def ssha(password: str, salt: bytes = b"peer-slt") -> str:
    """An RFC 2307 {SSHA} userPassword value (fixed salt: deterministic LDIF)."""
    digest = hashlib.sha1(password.encode("utf-8") + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode("ascii")


# --------------------------------------------------------------------------- the tree

_GUID_NAMESPACE = uuid.UUID("5b1e6f3c-8d2a-4c7e-9f10-3a6b2c4d5e6f")


def object_guid(dn: str) -> uuid.UUID:
    """The (deterministic) objectGUID of the entry at ``dn``; stored little-endian as in AD."""
    return uuid.uuid5(_GUID_NAMESPACE, dn.casefold())


def _common(dn: str, cn: str, category: str, base_dn: str, when_changed: str = DEFAULT_WHEN_CHANGED,
            ) -> list[tuple[str, Value]]:
    return [
        ("cn", cn),
        ("name", cn),
        ("distinguishedName", dn),
        ("objectGUID", object_guid(dn).bytes_le),
        ("objectCategory", _category(category, base_dn)),
        ("whenCreated", DEFAULT_WHEN_CREATED),
        ("whenChanged", when_changed),
    ]


def _container(dn: str, cn: str, classes: Sequence[str], category: str, base_dn: str) -> Entry:
    return dn, [("objectClass", oc) for oc in ("top", *classes)] + _common(dn, cn, category, base_dn)


def _legacy_dn(org: str, admin_group: str, name: str) -> str:
    return f"/o={org}/ou={admin_group}/cn=Configuration/cn=Servers/cn={name}"


def _server_entries(spec: ServerSpec, org: str, base_dn: str) -> list[Entry]:
    dn = server_dn(spec, org, base_dn)
    attrs: list[tuple[str, Value]] = [("objectClass", "top"), ("objectClass", "msExchExchangeServer")]
    attrs += _common(dn, spec.name, "ms-Exch-Exchange-Server", base_dn, spec.when_changed)
    attrs.append(("adminDisplayName", spec.name))
    attrs.append(("legacyExchangeDN", _legacy_dn(org, spec.admin_group, spec.name)))
    if spec.serial_number is not None:
        attrs.append(("serialNumber", spec.serial_number))
    if spec.version_number is not None:
        attrs.append(("versionNumber", str(spec.version_number)))
    if spec.roles is not None:
        attrs.append(("msExchCurrentServerRoles", str(spec.roles)))
    attrs.extend(("networkAddress", address) for address in spec.network_addresses)
    if spec.site is not None:
        attrs.append(("msExchServerSite", site_dn(spec.site, base_dn)))
    if spec.dag is not None:
        attrs.append(("msExchMDBAvailabilityGroupLink", dag_dn(spec.dag, spec.admin_group, org, base_dn)))
    if spec.msexch_version is not None:
        attrs.append(("msExchVersion", str(spec.msexch_version)))
    attrs.extend(("msExchComponentStates", state) for state in spec.component_states)
    entries: list[Entry] = [(dn, attrs)]

    entries.append(_container(f"CN=Protocols,{dn}", "Protocols", ["container"], "Container", base_dn))
    if spec.virtual_directories:
        http = f"CN=HTTP,CN=Protocols,{dn}"
        entries.append(_container(http, "HTTP", ["container", "msExchProtocolCfgHTTPContainer"],
                                  "ms-Exch-Protocol-Cfg-HTTP-Container", base_dn))
        for vdir in spec.virtual_directories:
            entries.append(_virtual_directory_entry(vdir, http, base_dn))
    if spec.transport_subobjects:
        for child in ("Mailbox", "Frontend"):
            child_dn = f"CN={child},{dn}"
            child_attrs: list[tuple[str, Value]] = [
                ("objectClass", "top"),
                ("objectClass", "msExchExchangeServer"),
                ("objectClass", "msExchExchangeTransportServer"),
            ]
            # Category: assumed the same as the server's, so that an objectCategory filter alone
            # does not exclude them either (the conservative reading of the reference note).
            child_attrs += _common(child_dn, child, "ms-Exch-Exchange-Server", base_dn, spec.when_changed)
            if spec.serial_number is not None:
                child_attrs.append(("serialNumber", spec.serial_number))
            if spec.version_number is not None:
                child_attrs.append(("versionNumber", str(spec.version_number)))
            if spec.msexch_version is not None:
                child_attrs.append(("msExchVersion", str(spec.msexch_version)))
            entries.append((child_dn, child_attrs))
    return entries


def _virtual_directory_entry(vdir: VirtualDirectorySpec, parent: str, base_dn: str) -> Entry:
    dn = f"{rdn('CN', vdir.cn)},{parent}"
    attrs: list[tuple[str, Value]] = [("objectClass", "top"), ("objectClass", "msExchVirtualDirectory"),
                                      ("objectClass", VDIR_CLASSES[vdir.kind])]
    attrs += _common(dn, vdir.cn, VDIR_CLASSES[vdir.kind], base_dn)
    if vdir.internal_url is not None:
        attrs.append(("msExchInternalHostName", vdir.internal_url))
    if vdir.external_url is not None:
        attrs.append(("msExchExternalHostName", vdir.external_url))
    return dn, attrs


def _computer_entry(spec: ServerSpec, base_dn: str) -> Entry:
    assert spec.computer_dns is not None
    dn = computer_dn(spec.name, base_dn)
    attrs: list[tuple[str, Value]] = [("objectClass", oc) for oc in ("top", "user", "computer")]
    attrs += _common(dn, spec.name, "Computer", base_dn)
    attrs += [
        ("sAMAccountName", spec.name[:15] + "$"),
        ("dNSHostName", spec.computer_dns),
        ("operatingSystem", spec.operating_system),
        ("operatingSystemVersion", spec.operating_system_version),
    ]
    return dn, attrs


def _ordered_unique(values: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for value in values:
        seen.setdefault(value, None)
    return list(seen)


def ad_ldif(
    servers: Sequence[ServerSpec],
    *,
    org: str = DEFAULT_ORG,
    base_dn: str = DEFAULT_BASE_DN,
    sites: Iterable[str] | None = None,
    service_password: str = SERVICE_PASSWORD,
) -> str:
    """The whole directory as LDIF, parents before children (ready for ``slapadd``).

    ``sites``: extra site names to create besides those the servers use.
    """
    names = [spec.name.casefold() for spec in servers]
    if len(names) != len(set(names)):
        raise ValueError("server names must be unique (case-insensitively)")

    entries: list[Entry] = []
    entries.append((base_dn, [
        ("objectClass", "top"), ("objectClass", "domain"), ("objectClass", "domainDNS"),
        ("dc", _first_rdn_value(base_dn)),
        ("name", _first_rdn_value(base_dn)),
        ("distinguishedName", base_dn),
        ("objectGUID", object_guid(base_dn).bytes_le),
        ("objectCategory", _category("Domain-DNS", base_dn)),
        ("whenCreated", DEFAULT_WHEN_CREATED),
        ("whenChanged", DEFAULT_WHEN_CHANGED),
    ]))

    # Configuration partition: sites.
    cfg = config_dn(base_dn)
    entries.append(_container(cfg, "Configuration", ["container"], "Configuration", base_dn))
    entries.append(_container(f"CN=Sites,{cfg}", "Sites", ["sitesContainer"], "Sites-Container", base_dn))
    all_sites = _ordered_unique([*(s.site for s in servers if s.site is not None), *(sites or ())])
    for site in all_sites:
        entries.append(_container(site_dn(site, base_dn), site, ["site"], "Site", base_dn))

    # Configuration partition: Exchange organisation.
    entries.append(_container(f"CN=Services,{cfg}", "Services", ["container"], "Container", base_dn))
    entries.append(_container(exchange_dn(base_dn), "Microsoft Exchange",
                              ["container", "msExchConfigurationContainer"],
                              "ms-Exch-Configuration-Container", base_dn))
    odn = org_dn(org, base_dn)
    org_dn_entry = _container(odn, org, ["msExchOrganizationContainer"], "ms-Exch-Organization-Container",
                              base_dn)
    org_dn_entry[1].append(("msExchVersion", str(MSEXCH_VERSION_2013)))
    entries.append(org_dn_entry)
    entries.append(_container(f"CN=Administrative Groups,{odn}", "Administrative Groups",
                              ["container", "msExchAdminGroupContainer"], "ms-Exch-Admin-Group-Container",
                              base_dn))

    admin_groups = _ordered_unique(spec.admin_group for spec in servers)
    for admin_group in admin_groups:
        agdn = admin_group_dn(admin_group, org, base_dn)
        ag_entry = _container(agdn, admin_group, ["msExchAdminGroup"], "ms-Exch-Admin-Group", base_dn)
        ag_entry[1].append(("adminDisplayName", admin_group))
        ag_entry[1].append(("legacyExchangeDN", f"/o={org}/ou={admin_group}"))
        entries.append(ag_entry)
        members = [spec for spec in servers if spec.admin_group == admin_group]
        entries.append(_container(f"CN=Servers,{agdn}", "Servers", ["container", "msExchServersContainer"],
                                  "ms-Exch-Servers-Container", base_dn))
        dags = _ordered_unique(spec.dag for spec in members if spec.dag is not None)
        if dags or admin_group == MODERN_ADMIN_GROUP:
            entries.append(_container(f"CN=Database Availability Groups,{agdn}", "Database Availability Groups",
                                      ["container", "msExchMDBAvailabilityGroupContainer"],
                                      "ms-Exch-MDB-Availability-Group-Container", base_dn))
        for dag in dags:
            ddn = dag_dn(dag, admin_group, org, base_dn)
            dag_entry = _container(ddn, dag, ["msExchMDBAvailabilityGroup"], "ms-Exch-MDB-Availability-Group",
                                   base_dn)
            dag_entry[1].append(("msExchVersion", str(MSEXCH_VERSION_2013)))
            dag_entry[1].extend(("msExchMDBAvailabilityGroupBL", server_dn(spec, org, base_dn))
                                for spec in members if spec.dag == dag)
            entries.append(dag_entry)
        for spec in members:
            entries.extend(_server_entries(spec, org, base_dn))

    # Domain partition: computer objects and the service account.
    entries.append((f"OU=Exchange Servers,{base_dn}", [
        ("objectClass", "top"), ("objectClass", "organizationalUnit"), ("ou", "Exchange Servers"),
    ]))
    entries.extend(_computer_entry(spec, base_dn) for spec in servers if spec.computer_dns is not None)
    entries.append((f"OU=Service Accounts,{base_dn}", [
        ("objectClass", "top"), ("objectClass", "organizationalUnit"), ("ou", "Service Accounts"),
    ]))
    sdn = service_account_dn(base_dn)
    service_attrs: list[tuple[str, Value]] = [("objectClass", "top"), ("objectClass", "user")]
    service_attrs += _common(sdn, SERVICE_ACCOUNT_CN, "Person", base_dn)
    service_attrs += [
        ("sAMAccountName", SERVICE_ACCOUNT_CN),
        ("userPrincipalName", f"{SERVICE_ACCOUNT_CN}@{_dns_domain(base_dn)}"),
        ("description", "Read-only Exchange inventory (test peer)"),
        ("userPassword", ssha(service_password)),
    ]
    entries.append((sdn, service_attrs))
    return render_entries(entries)


# --------------------------------------------------------------------------- fleets

SITE_HQ = "HQ"
SITE_LAB = "Lab (Test*) Site"  # parentheses and an asterisk: must be filter-escaped
SITE_BRANCH = "Branch\\Office"  # a backslash: must be DN- and filter-escaped
WEIRD_SERVER_NAME = "LAB(1)*\\EX"  # ( ) * \ in a server name

MAINTENANCE_STATES = (
    "1:ServerWideOffline:Maintenance:0:638670000000000000",
    "1:HubTransport:Maintenance:0:638670000000000000",
)
ACTIVE_STATES = ("1:ServerWideOffline:Maintenance:1:638600000000000000",)

_V2010 = encode_version_number(14, 3, 123)
_V2013 = encode_version_number(15, 0, 1497)
_V2016_CU19 = encode_version_number(15, 1, 2176)  # 1942063232
_V2019_CU8 = encode_version_number(15, 2, 792)


# Published namespaces (OWA/ECP InternalUrl/ExternalUrl) of the standard fleet.
INTERNAL_NAMESPACE = "mail.test.example"
EXTERNAL_NAMESPACE = "mail.example.com"
LAB_NAMESPACE = "lab-mail.test.example"
WEIRD_EXTERNAL_NAMESPACE = "labex.example.com"
HOSTILE_URLS = ("https://owa\x1b[2J.lab.test.example/owa", "javascript:alert(1)")


def _published(internal: str | None, external: str | None = None) -> tuple[VirtualDirectorySpec, ...]:
    """OWA and ECP on the front end, each with its path appended to the given URL roots."""
    return tuple(VirtualDirectorySpec(kind, internal and f"{internal}/{kind}", external and f"{external}/{kind}")
                 for kind in ("owa", "ecp"))


def _addresses(name: str, domain: str = "test.example") -> tuple[str, ...]:
    return (f"ncacn_ip_tcp:{name.lower()}.{domain}", f"netbios:{name.upper()}")


def _fqdn(name: str) -> str:
    return f"{name.lower()}.test.example"


def standard_fleet() -> list[ServerSpec]:
    """A varied, realistic fleet of 20 servers; each spec's ``trait`` says what it is there for."""
    return [
        ServerSpec(
            "EX2003", "Version 6.5 (Build 7638.2: Service Pack 2)", encode_version_number(6, 5, 7638), None,
            SITE_HQ, None, _addresses("EX2003"), LEGACY_ADMIN_GROUP, _fqdn("EX2003"), False,
            msexch_version=None, operating_system="Windows Server 2003", operating_system_version="5.2 (3790)",
            trait="Exchange 2003 in the legacy admin group; ': description' serial suffix; no roles attribute",
        ),
        ServerSpec(
            "EX2007", "Version 8.3 (Build 30083.6)", encode_version_number(8, 3, 83), ROLES_2010_MULTI,
            SITE_HQ, None, _addresses("EX2007"), MODERN_ADMIN_GROUP, _fqdn("EX2007"), False,
            msexch_version=MSEXCH_VERSION_2007, operating_system="Windows Server 2008 R2 Enterprise",
            operating_system_version="6.1 (7601)",
            trait="Exchange 2007 SP3: below the (versionNumber>=1937801568) 2010+ filter",
        ),
        ServerSpec(
            "EX2010-MB1", "Version 14.3 (Build 30123.4)", _V2010, ROLES_2010_MULTI,
            SITE_HQ, "DAG2010", _addresses("EX2010-MB1"), MODERN_ADMIN_GROUP, _fqdn("EX2010-MB1"), False,
            msexch_version=MSEXCH_VERSION_2010, operating_system="Windows Server 2008 R2 Enterprise",
            operating_system_version="6.1 (7601)", trait="Exchange 2010 SP3 in a DAG",
        ),
        ServerSpec(
            "EX2010-MB2", "Version 14.3 (Build 30123.4)", _V2010, ROLES_2010_MULTI,
            SITE_BRANCH, "DAG2010", _addresses("EX2010-MB2"), MODERN_ADMIN_GROUP, _fqdn("EX2010-MB2"), False,
            msexch_version=MSEXCH_VERSION_2010, operating_system="Windows Server 2008 R2 Enterprise",
            operating_system_version="6.1 (7601)", trait="Exchange 2010 SP3 in a site whose name has a backslash",
        ),
        ServerSpec(
            "EX2013-MR1", "Version 15.0 (Build 31497.2)", _V2013, ROLES_2013_MULTI,
            SITE_HQ, "DAG2013", _addresses("EX2013-MR1"), MODERN_ADMIN_GROUP, _fqdn("EX2013-MR1"),
            operating_system="Windows Server 2012 R2 Standard", operating_system_version="6.3 (9600)",
            trait="Exchange 2013 CU23 multi-role (16439)",
        ),
        ServerSpec(
            "EX2013-CAS1", "Version 15.0 (Build 31497.2)", _V2013, ROLES_2013_CAS,
            SITE_HQ, None, _addresses("EX2013-CAS1"), MODERN_ADMIN_GROUP, _fqdn("EX2013-CAS1"),
            operating_system="Windows Server 2012 R2 Standard", operating_system_version="6.3 (9600)",
            trait="Exchange 2013 CU23 Client Access only (16385); publishes OWA/ECP inside and "
                  "outside (an upper-case external URL; an EWS external name the collector ignores)",
            virtual_directories=(
                *_published(f"https://{INTERNAL_NAMESPACE}", "https://MAIL.Example.COM"),
                VirtualDirectorySpec("ews", None, "https://ews-only.example.com/EWS/Exchange.asmx"),
            ),
        ),
        ServerSpec(
            "EX2016-01", "Version 15.1 (Build 32176.2)", _V2016_CU19, ROLES_2013_MULTI,
            SITE_HQ, "DAG-HQ", _addresses("EX2016-01"), MODERN_ADMIN_GROUP, _fqdn("EX2016-01"),
            trait="Exchange 2016 CU19 (the reference's worked example); OWA/ECP internal only, "
                  "plus back-end virtual directories (port 444) that are no namespace",
            virtual_directories=(
                *_published(f"https://{INTERNAL_NAMESPACE}"),
                *(VirtualDirectorySpec(kind, f"https://ex2016-01.test.example:444/{kind}", None, BACK_END_SITE)
                  for kind in ("owa", "ecp")),
            ),
        ),
        ServerSpec(
            "EX2016-02", "Version 15.1 (Build 32176.2)", _V2016_CU19, ROLES_2013_MULTI,
            SITE_HQ, "DAG-HQ", _addresses("EX2016-02"), MODERN_ADMIN_GROUP, _fqdn("EX2016-02"),
            trait="Exchange 2016 CU19, second DAG member",
        ),
        ServerSpec(
            "EX2016-03", "Version 15.1 (Build 32106.2)", encode_version_number(15, 1, 2106), ROLES_2013_MULTI,
            SITE_LAB, None, _addresses("EX2016-03"), MODERN_ADMIN_GROUP, _fqdn("EX2016-03"),
            trait="Exchange 2016 CU18 in the '(Test*)' site; hostile virtual-directory URLs "
                  "(an escape sequence in the host, a javascript: URL) beside one valid internal one",
            virtual_directories=(
                VirtualDirectorySpec("owa", HOSTILE_URLS[0], None),
                VirtualDirectorySpec("ecp", f"https://{LAB_NAMESPACE}/ecp", HOSTILE_URLS[1]),
            ),
        ),
        ServerSpec(
            "EX2016-04", "Version 15.1 (Build 32375.7: Security Update For Exchange Server 2016 CU22)",
            encode_version_number(15, 1, 2375), ROLES_2013_MULTI,
            SITE_LAB, None, _addresses("EX2016-04"), MODERN_ADMIN_GROUP, _fqdn("EX2016-04"),
            trait="Exchange 2016 CU22 with a ': description' serial suffix",
        ),
        ServerSpec(
            "EX2019-01", "Version 15.2 (Build 30792.3)", _V2019_CU8, ROLES_2019_MAILBOX,
            SITE_BRANCH, "DAG2019", _addresses("EX2019-01"), MODERN_ADMIN_GROUP, _fqdn("EX2019-01"),
            component_states=ACTIVE_STATES, operating_system="Windows Server 2019 Datacenter",
            operating_system_version="10.0 (17763)",
            trait="Exchange 2019 CU8 (16423); ServerWideOffline present but Active",
        ),
        ServerSpec(
            "EX2019-02", "Version 15.2 (Build 30792.003)", _V2019_CU8, ROLES_2019_MAILBOX,
            SITE_BRANCH, "DAG2019", _addresses("EX2019-02"), MODERN_ADMIN_GROUP, _fqdn("EX2019-02"),
            operating_system="Windows Server 2019 Datacenter", operating_system_version="10.0 (17763)",
            trait="Exchange 2019 CU8 with zero-padded revision in serialNumber",
        ),
        ServerSpec(
            "EX2019-03", "Version 15.2 (Build 30858.5)", encode_version_number(15, 2, 858), ROLES_2019_MAILBOX,
            SITE_HQ, "DAG2019", _addresses("EX2019-03"), MODERN_ADMIN_GROUP, _fqdn("EX2019-03"),
            component_states=MAINTENANCE_STATES, operating_system="Windows Server 2019 Datacenter",
            operating_system_version="10.0 (17763)",
            trait="Exchange 2019 CU9 in maintenance (ServerWideOffline Inactive)",
        ),
        ServerSpec(
            "EX2019-04", "Version 15.2 (Build 31118.007)", encode_version_number(15, 2, 1118), ROLES_2019_MAILBOX,
            SITE_HQ, None, _addresses("EX2019-04"), MODERN_ADMIN_GROUP, _fqdn("EX2019-04"),
            operating_system="Windows Server 2019 Datacenter", operating_system_version="10.0 (17763)",
            trait="Exchange 2019 CU12 in Microsoft's padded KB form",
        ),
        ServerSpec(
            "EDGE01", "Version 15.1 (Build 31913.5)", encode_version_number(15, 1, 1913), ROLE_EDGE,
            SITE_HQ, None, _addresses("EDGE01", "dmz.example"), MODERN_ADMIN_GROUP, None, False,
            when_changed="20191014080000.0Z",
            trait="Edge (64): no computer object, version stale since the Edge Subscription (CU14)",
        ),
        ServerSpec(
            "EX-BADSERIAL", "garbage", _V2016_CU19, ROLES_2013_MULTI,
            SITE_HQ, None, _addresses("EX-BADSERIAL"), MODERN_ADMIN_GROUP, _fqdn("EX-BADSERIAL"),
            trait="malformed serialNumber, valid versionNumber",
        ),
        ServerSpec(
            "EX-NOVERSION", None, None, ROLES_2013_MULTI,
            SITE_HQ, None, _addresses("EX-NOVERSION"), MODERN_ADMIN_GROUP, _fqdn("EX-NOVERSION"), False,
            trait="neither serialNumber nor versionNumber (and no transport sub-objects)",
        ),
        ServerSpec(
            "EX-NONETADDR", "Version 15.1 (Build 32176.2)", _V2016_CU19, ROLES_2013_MULTI,
            SITE_LAB, None, (), MODERN_ADMIN_GROUP, _fqdn("EX-NONETADDR"),
            trait="no networkAddress; FQDN only from the computer object's dNSHostName",
        ),
        ServerSpec(
            "EX-NOHOST", "Version 15.1 (Build 32176.2)", _V2016_CU19, ROLES_2013_MULTI,
            SITE_LAB, None, (), MODERN_ADMIN_GROUP, None,
            trait="neither networkAddress nor a computer object: no FQDN anywhere",
        ),
        ServerSpec(
            WEIRD_SERVER_NAME, "Version 15.2 (Build 30792.3)", _V2019_CU8, ROLES_2019_MAILBOX,
            SITE_LAB, None, ("ncacn_ip_tcp:labex.test.example", "netbios:LABEX"), MODERN_ADMIN_GROUP,
            "labex.test.example",
            operating_system="Windows Server 2019 Datacenter", operating_system_version="10.0 (17763)",
            trait="name contains ( ) * \\ (filter- and DN-escaping); OWA published outside only "
                  "(its virtual directory's DN holds the escaped server name)",
            virtual_directories=(VirtualDirectorySpec("owa", None, f"https://{WEIRD_EXTERNAL_NAMESPACE}/owa"),),
        ),
    ]


BULK_STANDARD_SIZE = 5000  # the slapd_bulk fixture: 15000 msExchExchangeServer-class entries
BULK_SITES = (SITE_HQ, SITE_LAB, SITE_BRANCH)
_BULK_BUILDS = (
    ("Version 15.1 (Build 32176.2)", _V2016_CU19, ROLES_2013_MULTI),
    ("Version 15.2 (Build 30792.3)", _V2019_CU8, ROLES_2019_MAILBOX),
    ("Version 15.0 (Build 31497.2)", _V2013, ROLES_2013_MULTI),
    ("Version 15.1 (Build 32375.7)", encode_version_number(15, 1, 2375), ROLES_2013_MULTI),
)


def bulk_fleet(n: int, *, dag_size: int = 16, virtual_directories: bool = True) -> list[ServerSpec]:
    """``n`` servers BULK00001..., spread over three sites and DAGs of ``dag_size``, all 2013+.

    Each has the two transport sub-objects, so ``3 * n`` entries match
    ``(objectClass=msExchExchangeServer)`` and exactly ``n`` match it with the transport exclusion.
    With ``virtual_directories`` each also has OWA and ECP on the front end (internal name
    mail.bulk.test.example; every fourth server also external, mail.bulk.example.com) and on
    the back end (its own FQDN, port 444): 4 virtual directories, 2 of them namespaces.
    """
    fleet = []
    for index in range(1, n + 1):
        name = f"BULK{index:05d}"
        serial, version, roles = _BULK_BUILDS[index % len(_BULK_BUILDS)]
        fleet.append(ServerSpec(
            name, serial, version, roles,
            site=BULK_SITES[index % len(BULK_SITES)],
            dag=f"BULKDAG{(index - 1) // dag_size + 1:04d}",
            network_addresses=_addresses(name),
            computer_dns=_fqdn(name),
            transport_subobjects=True,
            trait="bulk",
            virtual_directories=(
                *_published("https://mail.bulk.test.example",
                            "https://mail.bulk.example.com" if index % 4 == 0 else None),
                *(VirtualDirectorySpec(kind, f"https://{_fqdn(name)}:444/{kind}", None, BACK_END_SITE)
                  for kind in ("owa", "ecp")),
            ) if virtual_directories else (),
        ))
    return fleet
