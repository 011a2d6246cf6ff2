"""The records that flow from collectors through evaluation into the store.

Everything here is frozen: an observation is what was seen, a verdict is what
was concluded from it at one moment, and neither changes afterwards.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import total_ordering

from compliance.traces import Traces


class Status(StrEnum):
    """One verdict per host; only PATCHED and NOT_APPLICABLE count as compliant."""

    PATCHED = "patched"
    MITIGATED = "mitigated"
    VULNERABLE = "vulnerable"
    NOT_APPLICABLE = "not_applicable"
    UNKNOWN = "unknown"

    @property
    def compliant(self) -> bool:
        return self in (Status.PATCHED, Status.NOT_APPLICABLE)

    @property
    def severity(self) -> int:
        """Rank for "the worst status" across advisories (higher is worse). Fail closed: a
        status that is not known ranks above every compliant one and above mitigated."""
        return _SEVERITY[self]


_SEVERITY = {Status.NOT_APPLICABLE: 0, Status.PATCHED: 1, Status.MITIGATED: 2,
             Status.UNKNOWN: 3, Status.VULNERABLE: 4}


def worst_status(statuses: Iterable[Status]) -> Status:
    """The worst of ``statuses`` (``Status.severity``); ``ValueError`` when there is none."""
    return max(statuses, key=lambda status: status.severity)


class Flag(StrEnum):
    UNSUPPORTED_CU = "unsupported_cu"
    CU_UPDATE_REQUIRED = "cu_update_required"
    INDICATORS_FOUND = "indicators_found"
    NOT_IN_CATALOG = "not_in_catalog"
    DISPUTED_BUILD = "disputed_build"
    # Files Test-ProxyLogon lists for review (archives, lsass dumps) with no CVE check hit:
    # evidence for a person, not a compromise verdict.
    SUSPICIOUS_FILES = "suspicious_files"
    # A part of the probe that shows a mitigation could not be read: whether it is in place
    # is unknown (not "missing").
    MITIGATION_UNREADABLE = "mitigation_unreadable"
    # The product line receives no more security updates (support lifecycle data).
    OUT_OF_SUPPORT = "out_of_support"
    # A compromise-indicator check could not read its logs: empty is not clean.
    INDICATORS_UNREADABLE = "indicators_unreadable"
    # OWA/ECP disclose, without credentials, an older build than the server reports (ExSetup,
    # else AD's CU level): what attackers reach is older than the inside view says
    # (compliance/outside.py).
    OUTSIDE_OLDER_THAN_INSIDE = "outside_older_than_inside"
    # An OWA/ECP web.config holds the literal %ExchangeInstallDir% (an update run without
    # elevation): OWA/ECP fail to load. About availability, not the CVE fix.
    WEB_CONFIG_BROKEN = "web_config_broken"


class BuildSource(StrEnum):
    """Where a build number was read; only EXSETUP shows the Security Update level."""

    EXSETUP = "exsetup"
    INSTALLED_UPDATE = "installed_update"
    AD_SERIAL_NUMBER = "ad_serial_number"
    AD_VERSION_NUMBER = "ad_version_number"
    ADMIN_DISPLAY_VERSION = "admin_display_version"

    @property
    def cu_level_only(self) -> bool:
        return self in (
            BuildSource.AD_SERIAL_NUMBER,
            BuildSource.AD_VERSION_NUMBER,
            BuildSource.ADMIN_DISPLAY_VERSION,
        )


class Reason(StrEnum):
    """Why a host is not simply graded by its build."""

    NO_OBSERVATION = "no_observation"
    UNREACHABLE = "unreachable"  # the network never answered (dns, connect, tls, timeout)
    ACCESS_REFUSED = "access_refused"  # it answered and refused the account (auth, access)
    PROBE_FAILED = "probe_failed"  # the probe ran and failed, or said nothing readable
    STALE = "stale"
    FUTURE = "observed_in_future"
    NO_BUILD = "no_build"
    UNPARSEABLE_BUILD = "unparseable_build"
    UNPLACEABLE_BUILD = "unplaceable_build"
    AD_ONLY = "ad_build_only"
    DISPUTED = "disputed_build"
    ROLES_UNKNOWN = "roles_unknown"


@total_ordering
@dataclass(frozen=True)
class Build:
    """An Exchange build. ``revision`` is None when the source only knows the CU level."""

    major: int
    minor: int
    build: int
    revision: int | None = None

    def __str__(self) -> str:
        base = f"{self.major}.{self.minor}.{self.build}"
        return base if self.revision is None else f"{base}.{self.revision}"

    @property
    def key(self) -> tuple[int, int, int, int]:
        """Numeric ordering key; an unknown revision sorts as the lowest one."""
        return (self.major, self.minor, self.build, -1 if self.revision is None else self.revision)

    @property
    def line(self) -> tuple[int, int]:
        return (self.major, self.minor)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Build):
            return NotImplemented
        return self.key < other.key


@dataclass(frozen=True)
class Release:
    """One row of the build catalogue."""

    build: Build
    product: str
    cu: str
    kind: str
    name: str
    kb: str | None
    released: str
    cu_base: Build
    source: str
    disputed: bool = False
    notes: str = ""


@dataclass(frozen=True)
class InstalledUpdate:
    kb: str
    name: str = ""
    installed_on: str | None = None


@dataclass(frozen=True)
class Failure:
    """A collection that did not produce data, classified so a person knows what to fix."""

    reason: str
    detail: str
    hint: str = ""


@dataclass(frozen=True)
class ServiceState:
    status: str | None = None
    start_mode: str | None = None


@dataclass(frozen=True)
class AppPoolState:
    state: str | None = None
    auto_start: bool | None = None


@dataclass(frozen=True)
class RewriteCondition:
    """One condition of a URL Rewrite rule: ``input`` (e.g. ``{UrlDecode:{REQUEST_URI}}``)
    matched against ``pattern``; ``negate`` and ``ignore_case`` as IIS's ``negate`` and
    ``ignoreCase`` attributes. ``ignore_case`` None: not read (a document or stored observation
    from before the probe read it), which the matcher treats as not known to ignore case."""

    input: str
    pattern: str
    negate: bool = False
    ignore_case: bool | None = None


@dataclass(frozen=True)
class RewriteRule:
    """One URL Rewrite rule as the probe read it (docs/probe.md ``rewrite_rule_details``):
    where it is configured (``site``, e.g. ``Default Web Site``), its ``match url`` pattern,
    its conditions, how they combine (``MatchAll``/``MatchAny``), its action type
    (``AbortRequest``, ``CustomResponse``, ``Rewrite``, ...) and whether it is enabled.
    Values as the server reported them. ``match_negate`` (``<match negate>``),
    ``pattern_syntax`` (``patternSyntax``: ``ECMAScript``, ``Wildcard``, ``ExactMatch``),
    ``stop_processing`` (``stopProcessing``) and ``truncated`` (the probe cut a text of the
    rule, or left out conditions past its cap) are None when not read (a document or stored
    observation from before the probe read them): the matcher then treats the rule fail-closed
    (it does not count, and as an earlier rule it may stop processing)."""

    name: str
    site: str
    match_url: str
    action: str
    conditions: tuple[RewriteCondition, ...] = ()
    logical_grouping: str = "MatchAll"
    enabled: bool = True
    match_negate: bool | None = None
    pattern_syntax: str | None = None
    stop_processing: bool | None = None
    truncated: bool | None = None


@dataclass(frozen=True)
class MitigationState:
    """What the probe saw of the interim mitigations; names as the server reported them."""

    rewrite_rules: tuple[str, ...] = ()
    services: dict[str, ServiceState] = field(default_factory=dict)
    app_pools: dict[str, AppPoolState] = field(default_factory=dict)
    # Beside the rules, as evidence: the URL Rewrite module's version, EOMT's PatchState
    # record (value name -> text; None: EOMT never ran), Defender's security intelligence
    # version (None: not installed or not answering).
    url_rewrite_module: str | None = None
    eomt: dict[str, str] | None = None
    defender_signature_version: str | None = None
    # Each rule's content (probe contract 1.x, docs/probe.md): None when the probe did not
    # read it (an older probe, or a stored observation from before), so rules are known by
    # name only.
    rewrite_rule_details: tuple[RewriteRule, ...] | None = None

    def __hash__(self) -> int:
        return hash((self.rewrite_rules, tuple(sorted(self.services)), tuple(sorted(self.app_pools))))


class WebConfigState(StrEnum):
    """What the probe found in one OWA/ECP web.config (docs/probe.md ``web_config``)."""

    FINE = "fine"  # read; no literal %ExchangeInstallDir%
    UNRESOLVED = "unresolved"  # the literal %ExchangeInstallDir% is in it
    MISSING = "missing"  # not found
    UNREADABLE = "unreadable"  # could not be read: not known to be fine


@dataclass(frozen=True)
class WebConfigFile:
    path: str
    state: WebConfigState


class ServerRole(StrEnum):
    """An Exchange server role, as Exchange's ServerRole enum names it: the bits of AD's
    msExchCurrentServerRoles and the probe's ``<Role>Role`` Setup registry keys
    (shared/reference/ad_exchange_objects.md). A name outside it is refused where it is read,
    so a misspelt role can never make a rule look inapplicable."""

    CAFE = "Cafe"
    MAILBOX = "Mailbox"
    CLIENT_ACCESS = "ClientAccess"
    UNIFIED_MESSAGING = "UnifiedMessaging"
    HUB_TRANSPORT = "HubTransport"
    EDGE = "Edge"
    MONITORING = "Monitoring"
    CENTRAL_ADMIN = "CentralAdmin"
    CENTRAL_ADMIN_DATABASE = "CentralAdminDatabase"
    DOMAIN_CONTROLLER = "DomainController"
    WINDOWS_DEPLOYMENT_SERVER = "WindowsDeploymentServer"
    PROVISIONED_SERVER = "ProvisionedServer"
    LANGUAGE_PACKS = "LanguagePacks"
    FRONTEND_TRANSPORT = "FrontendTransport"
    CAFE_ARRAY = "CafeArray"
    FFO_WEB_SERVICE = "FfoWebService"
    OSP = "OSP"
    ARR = "ARR"
    MANAGEMENT_FRONT_END = "ManagementFrontEnd"
    MANAGEMENT_BACK_END = "ManagementBackEnd"
    SCOM = "SCOM"
    CENTRAL_ADMIN_FRONT_END = "CentralAdminFrontEnd"
    NAT = "NAT"
    DHCP = "DHCP"


def server_roles(names: Iterable[object]) -> frozenset[ServerRole]:
    """Role names as ``ServerRole``s; ``ValueError`` naming the first unknown one."""
    roles = set()
    for name in names:
        try:
            roles.add(ServerRole(str(name)))
        except ValueError:
            raise ValueError(f"unknown Exchange server role {str(name)!r}") from None
    return frozenset(roles)


@dataclass(frozen=True)
class Host:
    """A server as the inventory knows it."""

    name: str
    fqdn: str | None = None
    site: str | None = None
    dag: str | None = None
    roles: frozenset[ServerRole] | None = None
    ad_build: str | None = None
    dn: str | None = None
    problems: tuple[str, ...] = ()  # what the inventory found missing or malformed
    # The namespaces Exchange's own configuration says the server publishes: host names
    # (lower-case) of its OWA/ECP virtual directories' InternalUrl and ExternalUrl, read from
    # AD (msExchInternalHostName, msExchExternalHostName; collectors/directory.py). Both empty:
    # nothing known (not read, none set, or a snapshot stored before they were read).
    internal_names: tuple[str, ...] = ()
    external_names: tuple[str, ...] = ()


# How far back, in days, the CVE checks' logs can credibly reach (``Observation.log_window_days``):
# a hundred years, more than any Exchange log is kept. Past it (or below 0) the value is no
# reading: the probe reader leaves it out, and the judge takes none as covering anything.
MAX_LOG_WINDOW_DAYS = 36_500


@dataclass(frozen=True)
class Observation:
    """What one collection saw of one host; raw strings stay raw until evaluation."""

    host: Host
    observed_at: datetime | None
    source: str
    exsetup_version: str | None = None
    admin_display_version: str | None = None
    installed_updates: tuple[InstalledUpdate, ...] = ()
    mitigations: MitigationState | None = None
    indicators: tuple[str, ...] = ()  # hits of the four CVE checks
    failure: Failure | None = None
    # Probe details kept as evidence: parts of the probe that failed, how far back the
    # compromise-indicator search could see, and whether a cap or deadline cut it short.
    probe_errors: tuple[str, ...] = ()
    log_window_days: float | None = None
    indicators_truncated: bool = False
    # Files listed for review (Test-ProxyLogon's "suspicious files"), apart from the CVE hits.
    suspicious_files: tuple[str, ...] = ()
    # The OWA/ECP web.config files the probe looked at; None: not checked (a probe or a
    # stored observation from before the check, or no install path).
    web_configs: tuple[WebConfigFile, ...] | None = None
    # The .NET Framework 4.x ``Release`` value (HKLM\SOFTWARE\Microsoft\NET Framework
    # Setup\NDP\v4\Full): None when not read. Prerequisite of a CU upgrade (plan.py).
    dotnet_release: int | None = None
    # What the investigation after the fix can build on (probe contract 1.3, compliance/traces.py):
    # MSERT's runs, Defender's detections, how far back the logs reach, web-shell candidates.
    # None: not read (an older probe, or a stored observation from before).
    traces: Traces | None = None
    # Exchange's install path as the probe read it (the Setup key's MsiInstallPath, e.g.
    # C:\Program Files\Microsoft\Exchange Server\V15\), as printed: the server's text,
    # judged by compliance/investigation.py ``install_path``. None: not read, or an observation
    # stored before it was kept.
    install_path: str | None = None


class EvidenceKind(StrEnum):
    """What one line of a verdict's evidence is about (stored as its text)."""

    EXSETUP_BUILD = "exsetup_build"
    AD_BUILD = "ad_build"
    CATALOGUE = "catalogue"
    DRIFT = "drift"
    UNPARSEABLE_BUILD = "unparseable_build"
    INSTALLED_UPDATE = "installed_update"
    INSTALLED_UPDATE_PROOF = "installed_update_proof"
    INSTALLED_UPDATE_IGNORED = "installed_update_ignored"
    INVENTORY = "inventory"
    INDICATOR = "indicator"
    SUSPICIOUS_FILE = "suspicious_file"
    LOG_WINDOW = "log_window"
    PROBE_ERROR = "probe_error"
    FAILURE = "failure"
    ROLES = "roles"
    MITIGATION = "mitigation"
    URL_REWRITE_MODULE = "url_rewrite_module"
    EOMT = "eomt"
    DEFENDER = "defender"
    SUPPORT = "support"
    CARRIED = "carried"
    COLLECTION_FAILED = "collection_failed"
    OUTSIDE_VIEW = "outside_view"  # what OWA/ECP disclosed without credentials (outside.py)
    WEB_CONFIG = "web_config"  # the OWA/ECP web.config files and %ExchangeInstallDir%


def probe_error_part(error: str) -> str:
    """The part of the probe an ``Observation.probe_errors`` line names (``"<part>: <message>"``,
    docs/probe.md), e.g. ``iis`` or ``CVE-2021-26855``."""
    return error.split(":", 1)[0].strip()


@dataclass(frozen=True)
class Evidence:
    """One fact a verdict rests on: what, from where, when."""

    kind: str  # an EvidenceKind (text, so verdicts stored by any version read back)
    value: str
    source: str
    observed_at: datetime | None = None


@dataclass(frozen=True)
class Verdict:
    host: str
    status: Status
    reason: str
    action: str
    as_of: datetime
    product: str | None = None
    cu: str | None = None
    build: str | None = None
    build_source: BuildSource | None = None
    release_name: str | None = None
    known: bool = False
    cves_open: tuple[str, ...] = ()
    mitigations: tuple[str, ...] = ()
    flags: tuple[Flag, ...] = ()
    evidence: tuple[Evidence, ...] = ()
    unknown_reason: Reason | None = None
    advisory: str = ""  # "<id>/<version>" of the advisory that judged it

    @property
    def advisory_id(self) -> str:
        """The judging advisory's id (``2021-05-proxyshell``), without its version."""
        return self.advisory.split("/", 1)[0]


@dataclass(frozen=True)
class Assessment:
    """One fleet member in a snapshot: its latest observation and the verdict at the snapshot's
    time. ``observed_in`` is the id of the snapshot whose run made the observation (None: this
    snapshot's own run); ``scopes`` say why the host is in the fleet (compliance/fleet.py)."""

    observation: Observation
    verdict: Verdict
    observed_in: int | None = None
    scopes: tuple[str, ...] = ()
    # While composing only (never stored): this run's failed attempt on a carried host.
    attempt: Observation | None = None
    # The verdicts for the other advisories the snapshot was judged by (each names its
    # ``advisory``); ``verdict`` stays the snapshot's own advisory (March 2021). Empty for a
    # snapshot stored before per-advisory verdicts.
    others: tuple[Verdict, ...] = ()

    @property
    def carried(self) -> bool:
        return self.observed_in is not None


@dataclass(frozen=True)
class Snapshot:
    """The whole fleet as known at ``taken_at``, what judged it, and which run made it.

    Before saving, ``assessments`` are only the run's fresh observations; the store composes
    the saved snapshot with the rest of the fleet carried forward (compliance/fleet.py).
    ``complete_scopes`` are the directory scopes the run listed completely; ``retired`` names
    hosts a person took out of the fleet by hand (``python -m store retire``).
    """

    taken_at: datetime
    source: str
    tool_version: str
    catalog_version: str
    advisory_id: str
    advisory_version: str
    assessments: tuple[Assessment, ...]
    label: str = ""
    # The inventory the run started from (e.g. every Exchange server in AD), for coverage.
    discovered: tuple[Host, ...] = ()
    scope: str = ""
    complete_scopes: tuple[str, ...] = ()
    retired: tuple[str, ...] = ()

