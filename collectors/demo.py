"""A clearly fictional demo fleet, "collected" weekly over the weeks before today.

It stands in for LDAP + WinRM: it produces observations, and the same ``assess`` and
``SnapshotStore.save`` as real collections turn them into snapshots. Host names use the
reserved ``.example`` domain; nothing here describes a real organisation.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from compliance import __version__
from compliance.builds import encode_version_number, parse_dotted
from compliance.catalog import Catalog
from compliance.evaluate import Policy, assess
from compliance.failures import HINTS, FailureReason
from compliance.fleet import DEMO
from compliance.models import (
    AppPoolState,
    Build,
    Failure,
    Host,
    InstalledUpdate,
    MitigationState,
    Observation,
    RewriteCondition,
    RewriteRule,
    ServerRole,
    ServiceState,
    server_roles,
)
from compliance.traces import Candidate, CandidateFolder, Detection, LogReach, Scan, Traces
from compliance.verdicts import other_catalogs
from store import SnapshotStore

SOURCE = "demo"
DOMAIN = "corp.demo.example"
WEEKS = 8  # snapshots: one a week, the last one a few hours before seeding
REWRITE_RULES = ("X-AnonResource-Backend Abort - inbound", "X-BEResource Abort - inbound")
MAILBOX_2013 = server_roles(["Mailbox", "ClientAccess", "UnifiedMessaging", "HubTransport",
                          "FrontendTransport", "Cafe"])
MAILBOX_2019 = server_roles(["Mailbox", "ClientAccess", "HubTransport", "FrontendTransport", "Cafe"])
CAS_2013 = server_roles(["ClientAccess", "Cafe", "FrontendTransport"])
EDGE = server_roles(["Edge"])
# What probe contract 1.2 reads of every rule beside its match, conditions and action.
_READ: dict[str, Any] = {"match_negate": False, "pattern_syntax": "ECMAScript",
                         "stop_processing": False, "truncated": False}
# EOMT's two rules against the March 2021 SSRF (shared/reference/mitigations.md, EOMT.ps1).
EOMT_RULES = {
    name: RewriteRule(name, "Default Web Site", ".*", "AbortRequest",
                      (RewriteCondition("{HTTP_COOKIE}", pattern, ignore_case=True),), **_READ)
    for name, pattern in zip(REWRITE_RULES, ("(.*)X-AnonResource-Backend(.*)",
                                             "(.*)X-BEResource=(.+)/(.+)~(.+)"), strict=True)}
# EOMTv2's ProxyNotShell request-blocking rule, as the probe reads it
# (shared/reference/later_advisories.md: CSS-Exchange EOMTv2.ps1).
NOTSHELL_RULE = RewriteRule(
    "PowerShell - inbound", "Default Web Site", ".*", "AbortRequest",
    (RewriteCondition("{UrlDecode:{REQUEST_URI}}", "(?=.*autodiscover)(?=.*powershell)",
                      ignore_case=True),), **_READ)


@dataclass(frozen=True)
class DemoHost:
    """One fictional server and its story over the eight weeks."""

    name: str
    product: str
    cu: str
    roles: frozenset[ServerRole]
    site: str
    dag: str | None
    patch_week: int | None = None      # week the March 2021 fix (or a newer CU) lands
    upgrade_to: str | None = None      # for CUs with no SU: the CU installed at patch_week
    mitigate_week: int | None = None   # week the interim mitigation is applied
    partial_mitigation: bool = False   # EOMT stopped halfway: one rewrite rule only
    regress_week: int | None = None    # restored from an old image that week
    failure: str | None = None         # collection fails from week 5 on
    indicators: tuple[str, ...] = ()
    stale_days: int | None = None      # only an old offline probe file is available
    no_exsetup: bool = False           # probe could not read ExSetup.exe
    # Later advisories (issue 19): from week ``later[0]`` on, ExSetup reads ``later[1]`` (a
    # newer Security Update of the same CU, e.g. May 2021 for ProxyShell).
    later: tuple[int, str] | None = None
    build: str | None = None           # a server installed at this build before the story
    notshell_rule: bool = False        # EOMTv2's ProxyNotShell URL Rewrite rule is in place
    dotnet_release: int | None = None  # .NET Framework 4.x Release value the probe reads
    # The investigation after the fix (issue 21): what the probe reads of it once patched
    # (``TRACES``); "" reads the traces with no scan recorded (not investigated).
    investigation: str = ""


FAILURES = {  # the same classes and hints as a real collection (compliance/failures.py)
    "connect": Failure(FailureReason.CONNECT, "connection refused on port 5986",
                       HINTS[FailureReason.CONNECT]),
    "auth": Failure(FailureReason.AUTH, "the server rejected the credentials (HTTP 401)",
                    HINTS[FailureReason.AUTH]),
    "timeout": Failure(FailureReason.TIMEOUT, "no answer within the 120 s per-host deadline",
                       HINTS[FailureReason.TIMEOUT]),
}


# The investigation's traces (issue 21) a patched demo host shows, by ``DemoHost.investigation``:
# every state appears on the demo dashboard. Fictional: names, paths and times are made up.
TRACES = ("clean", "short_logs", "quick_scan", "detection", "web_shell")
WINDOW_START = datetime(2021, 1, 5, 10, 0, tzinfo=UTC)  # the advisory's start, 2021-01-06 UTC+14
LOGS = ("ecp_server", "oab_generator", "application_event_log")  # and HttpProxy's folders
# The folders the web-shell search looked in, each there, as a probe from contract 1.5 lists them (a
# reading without them, from an older probe, is never clean).
_FRONT_END = "C:\\Program Files\\Microsoft\\Exchange Server\\V15\\FrontEnd\\HttpProxy\\"
CANDIDATE_FOLDERS = (CandidateFolder("C:\\inetpub\\wwwroot", True, iis_root=True),
                     CandidateFolder("C:\\inetpub\\wwwroot\\aspnet_client", True),
                     CandidateFolder(_FRONT_END + "owa\\auth", True),
                     CandidateFolder(_FRONT_END + "ecp\\auth", True))


def _protocol_folders(catalog: Catalog) -> tuple[str, ...]:
    """HttpProxy's protocol folders the advisory's checks need (each one listed, as probe
    contract 1.4 lists them), in their order, each once."""
    triage = catalog.advisory.triage
    needs = triage.logs if triage else ()
    return tuple(dict.fromkeys(folder for need in needs for folder in need.folders))


def _traces(kind: str, fixed: datetime, at: datetime, folders: tuple[str, ...]) -> Traces:
    """What the probe of a patched demo host reads for the investigation, at ``at``, the fix
    having reached it at ``fixed``; HttpProxy per protocol folder (``folders``)."""
    old = WINDOW_START - timedelta(days=30)
    reach = (*(LogReach("httpproxy", old, folder) for folder in folders),
             *(LogReach(log, old) for log in LOGS))
    if kind == "short_logs":  # rotated: the HttpProxy\Ecp logs begin after the window's start
        reach = tuple(LogReach("httpproxy", fixed - timedelta(days=20), "Ecp")
                      if entry.folder == "Ecp" else entry for entry in reach)
    scans: list[Scan] = []
    if kind in ("clean", "short_logs", "detection", "web_shell"):
        first = fixed + timedelta(days=1)
        weekly = [first + timedelta(weeks=n) for n in range(5)]
        scans = [Scan(moment, "full", "1.333.1234.0", True,
                      raw=("Microsoft Safety Scanner v1.333, (build 1.333.1234.0) (fictional)",
                           f"Started On {moment:%a %b %d %H:%M:%S %Y}", "No infection found."),
                      outcome="clean")
                 for moment in weekly if moment < at]
    elif kind == "quick_scan":
        moment = fixed + timedelta(days=2)
        if moment < at:
            scans = [Scan(moment, "quick", "1.333.1234.0", True, outcome="clean")]
    detections: tuple[Detection, ...] = ()
    if kind == "detection":
        detections = (Detection("Backdoor:ASP/Chopper.F!dha", fixed + timedelta(hours=30),
                                ("C:\\inetpub\\wwwroot\\aspnet_client\\demo-fictional.aspx",),
                                True, "fictional Defender record"),)
    candidates: tuple[Candidate, ...] = ()
    if kind == "web_shell":
        planted = datetime(2021, 3, 3, 4, 12, tzinfo=UTC)
        candidates = (Candidate("C:\\inetpub\\wwwroot\\aspnet_client\\system_web\\"
                                "demo-x7k3q.aspx", 1843, planted, planted),)
    return Traces(scans=tuple(scans), detections=detections, defender_available=True,
                  log_reach=reach, candidates=candidates, fixed_at=fixed,
                  candidate_folders=CANDIDATE_FOLDERS)


def _fleet() -> list[DemoHost]:
    hosts: list[DemoHost] = []

    def add(prefix: str, count: int, make: Callable[[int, str], DemoHost]) -> None:
        for i in range(1, count + 1):
            hosts.append(make(i, f"{prefix}{i:02d}"))

    # Exchange 2010 SP3: only the UM servers are affected.
    add("DEMO-EX10UM", 2, lambda i, n: DemoHost(
        n, "2010", "SP3", server_roles(["UnifiedMessaging"]), "EU-West", None,
        patch_week=3 if i == 1 else None, mitigate_week=2 if i == 2 else None))
    add("DEMO-EX10MB", 4, lambda i, n: DemoHost(
        n, "2010", "SP3", server_roles(["Mailbox", "ClientAccess", "HubTransport"]),
        "EU-West", "DAG-EU-W-2010" if i <= 2 else None))
    # Exchange 2013: CU23 patched steadily; older CUs lag.
    add("DEMO-EX13-", 8, lambda i, n: DemoHost(
        n, "2013", "CU23", MAILBOX_2013, "US-East", f"DAG-US-E-{1 + (i - 1) // 4}",
        patch_week=[0, 1, 2, 3, 4, 5, None, None][i - 1],
        mitigate_week=0 if i == 8 else (1 if i == 7 else None),
        failure="timeout" if i == 7 else None))
    add("DEMO-EX13CAS", 3, lambda i, n: DemoHost(
        n, "2013", ["CU21", "CU22", "CU19"][i - 1], CAS_2013, "US-East", None,
        patch_week=[4, None, None][i - 1], upgrade_to=None,
        mitigate_week=[None, 3, None][i - 1]))
    # Exchange 2016: the bulk of the fleet.
    add("DEMO-EX16-", 16, lambda i, n: DemoHost(
        n, "2016", "CU19", MAILBOX_2013, ["EU-North", "EU-West"][i % 2],
        f"DAG-EU-{['N', 'W'][i % 2]}-{1 + (i - 1) // 8}",
        patch_week=None if i in (15, 16) else (i - 1) % 7,
        mitigate_week=0 if i == 15 else None, partial_mitigation=i == 16,
        indicators=(("CVE-2021-27065: ECP server log shows Set-OabVirtualDirectory with "
                     "script markup in ExternalUrl (possible web shell), 2021-03-03",)
                    if i == 5 else ()),
        regress_week=6 if i == 3 else None,
        failure="connect" if i == 12 else None,
        later=(3 + i % 3, "15.1.2176.14") if i in (1, 2, 8, 9) else None,
        dotnet_release=528040 if i % 4 else 461808,
        investigation={1: "clean", 2: "short_logs", 4: "quick_scan", 6: "clean", 7: "detection",
                       8: "web_shell", 9: "clean"}.get(i, "")))
    add("DEMO-EX16B-", 8, lambda i, n: DemoHost(
        n, "2016", "CU18", MAILBOX_2013, "APAC", f"DAG-APAC-{1 + (i - 1) // 4}",
        patch_week=None if i >= 7 else 2 + i % 5, mitigate_week=1 if i == 7 else None,
        failure="auth" if i == 8 else None))
    add("DEMO-EX16OLD", 6, lambda i, n: DemoHost(
        n, "2016", ["CU17", "CU12", "CU14", "CU5", "CU8", "CU5"][i - 1], MAILBOX_2013,
        "EU-North", None,
        patch_week=[3, 5, None, 6, None, None][i - 1],
        upgrade_to="CU20" if i == 4 else None,
        mitigate_week=[None, None, 2, None, 4, None][i - 1],
        stale_days=12 if i == 3 else None))
    # Exchange 2019.
    add("DEMO-EX19-", 12, lambda i, n: DemoHost(
        n, "2019", ["CU8", "CU7"][i % 2], MAILBOX_2019, ["US-East", "APAC", "EU-North"][i % 3],
        f"DAG-19-{['US', 'AP', 'EU'][i % 3]}",
        patch_week=None if i in (11, 12) else i % 6,
        mitigate_week=0 if i == 11 else None, no_exsetup=i == 12))
    add("DEMO-EX19OLD", 4, lambda i, n: DemoHost(
        n, "2019", ["CU6", "CU4", "CU9", "RTM"][i - 1], MAILBOX_2019, "US-East", None,
        patch_week=[4, None, 0, None][i - 1], mitigate_week=[None, 5, None, None][i - 1]))
    # Exchange 2019 servers built after 2021 (issue 19: later advisories): CU12 with the
    # October 2022 SU and EOMTv2's ProxyNotShell rule, CU12 with the November 2022 SU (patched
    # for every advisory, Security Updates behind), CU15 at its newest SU.
    add("DEMO-EX19NEW", 3, lambda i, n: DemoHost(
        n, "2019", ["CU12", "CU12", "CU15"][i - 1], MAILBOX_2019, "EU-North", "DAG-19-NEW",
        build=["15.2.1118.15", "15.2.1118.20", "15.2.1748.49"][i - 1], notshell_rule=i == 1,
        dotnet_release=[528040, 528040, 533320][i - 1]))
    add("DEMO-EDGE", 2, lambda i, n: DemoHost(
        n, "2019", "CU8", EDGE, "DMZ", None, patch_week=2 if i == 1 else None,
        mitigate_week=None))
    return hosts


def fleet_size() -> int:
    return len(_fleet())


class _Builds:
    """Build numbers the demo needs, read from the catalogue (the demo never grades)."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog

    def before_march(self, product: str, cu: str) -> Build:
        rows = [r for r in self.catalog.releases
                if r.product == product and r.cu == cu and not r.disputed
                and r.released and r.released < "2021-03"]
        return max(r.build for r in rows) if rows else self.base(product, cu)

    def base(self, product: str, cu: str) -> Build:
        base = self.catalog.cu_base(product, cu)
        assert base is not None, (product, cu)
        return base

    def fixed(self, product: str, cu: str) -> tuple[Build, str | None]:
        """The March 2021 update's build, or the CU itself when it already has the fixes."""
        rule = self.catalog.advisory.rule(product)
        fix = rule.fix_for(cu) if rule else None
        return (fix.build, fix.kb) if fix else (self.base(product, cu), None)


def _serial(build: Build) -> str:
    return f"Version {build.major}.{build.minor} (Build {build.build + 30000}.{build.revision})"


def _observe(host: DemoHost, week: int, at: datetime, builds: _Builds,
             rng: random.Random) -> Observation:
    patched = host.patch_week is not None and week >= host.patch_week and not (
        host.regress_week is not None and week >= host.regress_week)
    cu = host.upgrade_to if (patched and host.upgrade_to) else host.cu
    updates: tuple[InstalledUpdate, ...] = ()
    if patched and not host.upgrade_to:
        build, kb = builds.fixed(host.product, cu)
        installed = (at - timedelta(weeks=week - (host.patch_week or 0))).date().isoformat()
        if kb:
            updates = (InstalledUpdate(kb, f"Security Update for Exchange Server ({kb})",
                                       installed),)
    elif patched:
        build = builds.base(host.product, cu)
    else:
        build = builds.before_march(host.product, host.cu)
    if host.build is not None:
        build = parse_dotted(host.build)
    if patched and host.later is not None and week >= host.later[0]:
        build = parse_dotted(host.later[1])
    base = builds.base(host.product, cu)
    ad_build = (str(encode_version_number(base)) if host.product == "2019" and
                host.roles == EDGE else _serial(base))
    entity = Host(
        name=host.name, fqdn=f"{host.name.lower()}.{DOMAIN}", site=host.site, dag=host.dag,
        roles=host.roles, ad_build=ad_build,
        dn=f"CN={host.name},CN=Servers,CN=Exchange Administrative Group (FYDIBOHF23SPDLT),"
           f"CN=Administrative Groups,CN=Demo Org,CN=Microsoft Exchange,CN=Services,"
           f"CN=Configuration,DC=corp,DC=demo,DC=example",
    )
    observed = at - timedelta(minutes=rng.randint(1, 40))
    if (host.failure and week >= 5) or (week < WEEKS - 1 and rng.random() < 0.02):
        failure = FAILURES[host.failure or rng.choice(sorted(FAILURES))]
        return Observation(entity, observed, "demo-winrm", failure=failure)
    offline = host.stale_days is not None and week >= WEEKS - 2
    if offline:
        # One hand-run probe file, imported in the last two weeks: fresh in the first of them,
        # stale in the last (no run sees anything newer of this server).
        assert host.stale_days is not None
        observed = at + timedelta(weeks=WEEKS - 1 - week) - timedelta(days=host.stale_days)
    mitigated = host.mitigate_week is not None and week >= host.mitigate_week
    rules = (REWRITE_RULES[1:] if host.partial_mitigation else
             REWRITE_RULES if mitigated and host.product != "2010" else ())
    um_disabled = mitigated and host.product == "2010"
    services = {
        name: ServiceState("Stopped" if um_disabled else "Running",
                           "Disabled" if um_disabled else "Automatic")
        for name in (("MSExchangeUM",) if host.product == "2010" else
                     ("MSExchangeUM", "MSExchangeUMCR"))
        if "UnifiedMessaging" in host.roles
    }
    pools = {} if host.product == "2010" else {
        "MSExchangeECPAppPool": AppPoolState("Stopped" if mitigated else "Started",
                                             not mitigated),
        "MSExchangeOABAppPool": AppPoolState("Started", True),
    }
    details = (NOTSHELL_RULE,) if host.notshell_rule else ()
    investigated = patched and host.patch_week is not None and not offline
    return Observation(
        host=entity, observed_at=observed,
        source="demo-import" if offline else "demo-winrm",
        exsetup_version=None if host.no_exsetup else
        f"{build.major}.{build.minor:02d}.{build.build:04d}.{build.revision or 0:03d}",
        admin_display_version=f"Version {base.major}.{base.minor} (Build {base.build}."
                              f"{base.revision})",
        installed_updates=updates,
        mitigations=MitigationState(
            rewrite_rules=(*rules, *(rule.name for rule in details)), services=services,
            app_pools=pools,
            rewrite_rule_details=(*(EOMT_RULES[name] for name in rules), *details)),
        indicators=host.indicators if week >= 1 else (),
        dotnet_release=host.dotnet_release,
        # The fix time is bounded by the update's install day (its end in any time zone):
        # the demo's scans start two days after that day, so they count as after the fix.
        traces=_traces(host.investigation, at - timedelta(weeks=week - (host.patch_week or 0))
                       + timedelta(days=2), observed, _protocol_folders(builds.catalog))
        if investigated else None,
        # The indicator checks' logs reach back past the window's start on investigated hosts.
        log_window_days=float((observed - WINDOW_START).days + 30) if investigated else None,
    )


def snapshot_times(now: datetime) -> list[datetime]:
    """Weekly collection times, the last one a few hours before ``now``."""
    last = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    return [last - timedelta(weeks=WEEKS - 1 - week) for week in range(WEEKS)]


def demo_observations(catalog: Catalog, week: int, at: datetime,
                      seed: int = 2021) -> list[Observation]:
    rng = random.Random(seed * 100 + week)
    builds = _Builds(catalog)
    return [_observe(host, week, at, builds, rng) for host in _fleet()]


def seed_demo(store: SnapshotStore, catalog: Catalog, now: datetime,
              policy: Policy | None = None) -> list[int]:
    """Write the demo history into ``store``, each snapshot recorded in the audit log like any
    import (actor "demo", at its own time); returns the snapshot ids, oldest first."""
    ids = []
    for week, at in enumerate(snapshot_times(now)):
        observations = demo_observations(catalog, week, at)
        snapshot = assess(observations, catalog, at, source=SOURCE, tool_version=__version__,
                          policy=policy, label=f"Demo fleet, week {week + 1} of {WEEKS}",
                          discovered=[obs.host for obs in observations],
                          scope=f"demo: ldaps://dc1.{DOMAIN} (fictional)",
                          scopes=lambda _host: (DEMO,), complete_scopes=(DEMO,))
        ids.append(store.save(snapshot, catalog, policy, others=other_catalogs(catalog)))
        store.record(SOURCE, "import", ids[-1],
                     f"seeded demo snapshot: {snapshot.label} ({len(observations)} fictional "
                     "hosts)", at=at)
    return ids


