"""evaluate(observation, catalog, as_of, policy): the verdict boundaries, evidence, purity."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import compliance.evaluate as evaluate_module
from compliance.catalog import Catalog
from compliance.codec import (
    observation_from_dict,
    observation_to_dict,
    verdict_from_dict,
    verdict_to_dict,
)
from compliance.evaluate import Policy, assess, evaluate
from compliance.models import (
    AppPoolState,
    BuildSource,
    Failure,
    Flag,
    Host,
    InstalledUpdate,
    MitigationState,
    Observation,
    Reason,
    ServiceState,
    Status,
    Verdict,
)

AS_OF = datetime(2021, 3, 20, 12, 0, tzinfo=UTC)
SEEN = AS_OF - timedelta(hours=1)
POLICY = Policy(max_age=timedelta(days=7), clock_skew=timedelta(minutes=5))

UM = frozenset({"Mailbox", "UnifiedMessaging"})
NO_UM = frozenset({"Mailbox", "ClientAccess", "HubTransport"})
RULE_A = "X-AnonResource-Backend Abort - inbound"
RULE_B = "X-BEResource Abort - inbound"
SSRF, UM_CVE, OAB_CVE, ECP_CVE = (
    "CVE-2021-26855", "CVE-2021-26857", "CVE-2021-26858", "CVE-2021-27065"
)
ALL_CVES = (SSRF, UM_CVE, OAB_CVE, ECP_CVE)
KB_SU = "KB5000871"
KB_UR32 = "KB5000978"
MAR21 = InstalledUpdate(KB_SU, "Security Update for Exchange Server 2016 CU19 (KB5000871)",
                        "2021-03-03")
UNREACHABLE = Failure("winrm_unreachable", "connection refused on 5986",
                      "open WinRM over HTTPS to the collector")


def version_number(major: int, minor: int, build: int) -> str:
    """AD versionNumber as documented in ad_exchange_objects.md, written out here."""
    return str(0x70008000 | (major << 22) | (minor << 16) | build)


def services(um: str, umcr: str) -> dict[str, ServiceState]:
    def state(text: str) -> ServiceState:
        status, mode = text.split("/")
        return ServiceState(status, mode)

    return {"MSExchangeUM": state(um), "MSExchangeUMCR": state(umcr)}


def observe(
    exsetup: str | None = None,
    *,
    ad: str | None = None,
    adv: str | None = None,
    roles: frozenset[str] | None = None,
    updates: tuple[InstalledUpdate, ...] = (),
    mitigations: MitigationState | None = None,
    indicators: tuple[str, ...] = (),
    failure: Failure | None = None,
    at: datetime | None = SEEN,
    name: str = "EX01",
) -> Observation:
    return Observation(
        host=Host(name=name, fqdn=f"{name.lower()}.corp.example", roles=roles, ad_build=ad),
        observed_at=at, source="test", exsetup_version=exsetup, admin_display_version=adv,
        installed_updates=updates, mitigations=mitigations, indicators=indicators,
        failure=failure,
    )


@dataclass(frozen=True)
class Case:
    obs: Observation
    status: Status
    flags: frozenset[Flag] = frozenset()
    reason: Reason | None = None
    action: tuple[str, ...] = ()
    cves_open: tuple[str, ...] | None = None
    mitigations: frozenset[str] | None = None
    source: BuildSource | None = None
    extra: dict[str, Any] = field(default_factory=dict)


F = Flag
S = Status
R = Reason

CASES = [
    # -- the fixing Security Update ----------------------------------------------------------
    pytest.param(Case(observe("15.1.2176.8"), S.VULNERABLE, frozenset({F.NOT_IN_CATALOG}),
                      action=(KB_SU, "15.1.2176.9"), cves_open=ALL_CVES,
                      source=BuildSource.EXSETUP),
                 id="one-revision-below-fixing-su"),
    pytest.param(Case(observe("15.1.2176.2"), S.VULNERABLE, action=(KB_SU, "15.1.2176.9"),
                      cves_open=ALL_CVES),
                 id="cu19-base-below-fixing-su"),
    pytest.param(Case(observe("15.1.2176.4"), S.VULNERABLE, action=(KB_SU, "15.1.2176.9")),
                 id="cu19-feb21su-below-fixing-su"),
    pytest.param(Case(observe("15.1.2176.9"), S.PATCHED, cves_open=(),
                      source=BuildSource.EXSETUP),
                 id="exactly-fixing-su"),
    pytest.param(Case(observe("15.01.2176.009"), S.PATCHED), id="exactly-fixing-su-padded"),
    pytest.param(Case(observe("15.1.2176.12"), S.PATCHED), id="later-known-su"),
    pytest.param(Case(observe("15.1.2176.10"), S.PATCHED, frozenset({F.NOT_IN_CATALOG})),
                 id="unknown-su-above-fix-in-known-cu"),
    pytest.param(Case(observe("15.2.792.10"), S.PATCHED), id="2019-cu8-fixing-su"),
    pytest.param(Case(observe("15.2.792.5"), S.VULNERABLE, action=(KB_SU, "15.2.792.10")),
                 id="2019-cu8-below-fixing-su"),
    pytest.param(Case(observe("15.0.1497.12"), S.PATCHED), id="2013-cu23-fixing-su"),
    # -- CUs that contain the fixes ----------------------------------------------------------
    pytest.param(Case(observe("15.1.2242.4"), S.PATCHED, cves_open=()), id="2016-cu20"),
    pytest.param(Case(observe("15.2.858.5"), S.PATCHED), id="2019-cu9"),
    pytest.param(Case(observe("15.1.2242.12"), S.PATCHED), id="2016-cu20-later-su"),
    pytest.param(Case(observe("15.1.2507.6"), S.PATCHED), id="2016-cu23"),
    pytest.param(Case(observe("15.2.2562.17"), S.PATCHED), id="exchange-se-rtm"),
    pytest.param(Case(observe("15.2.2562.99"), S.PATCHED, frozenset({F.NOT_IN_CATALOG})),
                 id="exchange-se-unknown-su"),
    pytest.param(Case(observe("15.1.2242.3"), S.UNKNOWN, frozenset({F.NOT_IN_CATALOG}),
                      R.UNPLACEABLE_BUILD),
                 id="one-revision-below-cu20-base"),
    pytest.param(Case(observe("15.2.858.4"), S.UNKNOWN, frozenset({F.NOT_IN_CATALOG}),
                      R.UNPLACEABLE_BUILD),
                 id="one-revision-below-2019-cu9-base"),
    # -- out-of-support CUs and CUs without a fix -------------------------------------------------
    pytest.param(Case(observe("15.1.1415.10"), S.PATCHED, frozenset({F.UNSUPPORTED_CU}),
                      action=("CU23",), cves_open=()),
                 id="2016-cu8-special-su"),
    pytest.param(Case(observe("15.2.330.11"), S.PATCHED, frozenset({F.UNSUPPORTED_CU}),
                      action=("CU15",)),
                 id="2019-cu1-special-su"),
    pytest.param(Case(observe("15.0.847.64"), S.PATCHED, frozenset({F.UNSUPPORTED_CU}),
                      action=("CU23",)),
                 id="2013-sp1-special-su"),
    pytest.param(Case(observe("15.1.1415.7"), S.VULNERABLE, frozenset({F.UNSUPPORTED_CU}),
                      action=(KB_SU, "15.1.1415.10", "CU23"), cves_open=ALL_CVES),
                 id="2016-cu8-below-special-su"),
    pytest.param(Case(observe("15.1.1261.39"), S.VULNERABLE, frozenset({F.CU_UPDATE_REQUIRED}),
                      action=("CU23",), cves_open=ALL_CVES),
                 id="2016-cu7-no-su"),
    pytest.param(Case(observe("15.0.1367.9"), S.VULNERABLE, frozenset({F.CU_UPDATE_REQUIRED}),
                      action=("CU23", KB_SU, "15.0.1497.12")),
                 id="2013-cu20-no-su"),
    pytest.param(Case(observe("15.2.196.0"), S.VULNERABLE, frozenset({F.CU_UPDATE_REQUIRED}),
                      action=("CU15",)),
                 id="2019-preview-no-su"),
    # -- Exchange 2010 ----------------------------------------------------------------------------
    pytest.param(Case(observe("14.3.509.0", roles=UM), S.VULNERABLE,
                      action=(KB_UR32, "14.3.513.0"), cves_open=(UM_CVE,)),
                 id="2010-um-below-ur32"),
    pytest.param(Case(observe("14.3.513.0", roles=UM), S.PATCHED, cves_open=()),
                 id="2010-um-at-ur32"),
    # Update Rollup 32 (14.3.513.0) is the last update 2010 will ever get (lifecycle.csv,
    # msdocs): a build above it is no release (issue 13).
    pytest.param(Case(observe("14.3.600.0", roles=UM), S.UNKNOWN, frozenset({F.NOT_IN_CATALOG}),
                      R.UNPLACEABLE_BUILD),
                 id="2010-um-unknown-rollup-above-ur32"),
    pytest.param(Case(observe("14.3.509.0", roles=NO_UM), S.NOT_APPLICABLE, cves_open=()),
                 id="2010-without-um-below-ur32"),
    pytest.param(Case(observe("14.3.509.0", roles=frozenset()), S.NOT_APPLICABLE),
                 id="2010-no-roles-below-ur32"),
    pytest.param(Case(observe("14.3.509.0", roles=None), S.UNKNOWN, reason=R.ROLES_UNKNOWN,
                      action=(KB_UR32, "UnifiedMessaging")),
                 id="2010-unknown-roles-below-ur32"),
    pytest.param(Case(observe("14.3.513.0", roles=None), S.PATCHED),
                 id="2010-unknown-roles-at-ur32"),
    # -- AD (CU level only) -------------------------------------------------------------------
    pytest.param(Case(observe(ad="Version 15.1 (Build 32176.2)"), S.UNKNOWN, reason=R.AD_ONLY,
                      source=BuildSource.AD_SERIAL_NUMBER),
                 id="ad-serial-number-only-below-fix"),
    pytest.param(Case(observe(adv="Version 15.1 (Build 2176.2)"), S.UNKNOWN, reason=R.AD_ONLY,
                      source=BuildSource.ADMIN_DISPLAY_VERSION),
                 id="admin-display-version-only-below-fix"),
    pytest.param(Case(observe(ad=version_number(15, 1, 2176)), S.UNKNOWN, reason=R.AD_ONLY,
                      source=BuildSource.AD_VERSION_NUMBER),
                 id="ad-version-number-only-below-fix"),
    pytest.param(Case(observe(ad="Version 15.1 (Build 31261.35)"), S.UNKNOWN,
                      frozenset({F.CU_UPDATE_REQUIRED}), R.AD_ONLY, action=("CU update",)),
                 id="ad-only-cu-without-su"),
    pytest.param(Case(observe(ad="Version 15.1 (Build 32242.4)"), S.PATCHED,
                      source=BuildSource.AD_SERIAL_NUMBER),
                 id="ad-serial-number-only-cu20"),
    pytest.param(Case(observe(adv="Version 15.2 (Build 858.5)"), S.PATCHED,
                      source=BuildSource.ADMIN_DISPLAY_VERSION),
                 id="admin-display-version-only-2019-cu9"),
    pytest.param(Case(observe(ad=version_number(15, 1, 2242)), S.PATCHED,
                      source=BuildSource.AD_VERSION_NUMBER),
                 id="ad-version-number-only-cu20"),
    pytest.param(Case(observe(ad="Version 15.1 (Build 32176.2)", updates=(MAR21,)), S.PATCHED,
                      source=BuildSource.INSTALLED_UPDATE, cves_open=()),
                 id="ad-only-with-installed-kb5000871"),
    pytest.param(Case(observe(ad=version_number(15, 1, 2176),
                              updates=(InstalledUpdate("kb5000871 "),)),
                      S.PATCHED, source=BuildSource.INSTALLED_UPDATE),
                 id="ad-version-number-with-installed-kb-lower-case"),
    pytest.param(Case(observe(ad="Version 15.1 (Build 31261.35)", updates=(MAR21,)), S.UNKNOWN,
                      frozenset({F.CU_UPDATE_REQUIRED}), R.AD_ONLY),
                 id="ad-only-kb5000871-on-cu-without-su-proves-nothing"),
    # KB5001779 is 2016 CU19's April 2021 SU (15.1.2176.12, msdocs): cumulative for CU19, so it
    # supersedes the March fix (issue 13; tests/compliance/test_field_reports.py).
    pytest.param(Case(observe(ad="Version 15.1 (Build 32176.2)",
                              updates=(InstalledUpdate("KB5001779"),)),
                      S.PATCHED, source=BuildSource.INSTALLED_UPDATE),
                 id="ad-only-with-a-later-su-of-its-cu"),
    # KB4602269 is CU19's February 2021 SU (15.1.2176.4): before the fix, so it proves nothing.
    pytest.param(Case(observe(ad="Version 15.1 (Build 32176.2)",
                              updates=(InstalledUpdate("KB4602269"),)),
                      S.UNKNOWN, reason=R.AD_ONLY),
                 id="ad-only-with-an-earlier-su-of-its-cu"),
    pytest.param(Case(observe(ad="Version 14.3 (Build 30123.4)", roles=UM,
                              updates=(InstalledUpdate(KB_UR32),)),
                      S.PATCHED, source=BuildSource.INSTALLED_UPDATE),
                 id="2010-ad-only-with-installed-ur32"),
    pytest.param(Case(observe("15.1.2176.2", updates=(MAR21,)), S.VULNERABLE,
                      action=(KB_SU, "15.1.2176.9"), source=BuildSource.EXSETUP),
                 id="exsetup-below-fix-wins-over-installed-kb"),
    pytest.param(Case(observe("15.1.2176.2", ad="Version 15.1 (Build 32242.4)"), S.VULNERABLE,
                      source=BuildSource.EXSETUP),
                 id="exsetup-below-fix-wins-over-ad-cu20"),
    pytest.param(Case(observe("15.1.2176.9", ad="Version 15.1 (Build 32176.2)"), S.PATCHED,
                      source=BuildSource.EXSETUP),
                 id="exsetup-fix-with-ad-cu-level"),
    # -- builds that cannot be graded -----------------------------------------------------------
    pytest.param(Case(observe("not a build"), S.UNKNOWN, reason=R.UNPARSEABLE_BUILD,
                      action=("EX01",), cves_open=ALL_CVES),
                 id="unparseable-build"),
    pytest.param(Case(observe("15.1.2176"), S.UNKNOWN, reason=R.UNPARSEABLE_BUILD),
                 id="three-part-build"),
    pytest.param(Case(observe("16.0.1.1"), S.UNKNOWN, reason=R.UNPLACEABLE_BUILD),
                 id="unknown-product-line"),
    pytest.param(Case(observe(None), S.UNKNOWN, reason=R.NO_BUILD, action=("EX01",)),
                 id="no-build-at-all"),
    # -- collection state -------------------------------------------------------------------------
    pytest.param(Case(observe("15.1.2176.9", failure=UNREACHABLE), S.UNKNOWN,
                      reason=R.UNREACHABLE, action=("WinRM",)),
                 id="unreachable-even-if-exsetup-says-patched"),
    pytest.param(Case(observe(failure=UNREACHABLE), S.UNKNOWN, reason=R.UNREACHABLE),
                 id="unreachable-without-data"),
    # The class decides the verdict's reason: the network never answered, the account was
    # refused, or the probe ran and failed (issue 14: auth is not "unreachable").
    pytest.param(Case(observe(failure=Failure("auth", "HTTP 401", "check the password")),
                      S.UNKNOWN, reason=R.ACCESS_REFUSED), id="auth-failure-is-access-refused"),
    pytest.param(Case(observe(failure=Failure("access_denied", "not in the group", "add it")),
                      S.UNKNOWN, reason=R.ACCESS_REFUSED), id="access-denied-is-access-refused"),
    pytest.param(Case(observe(failure=Failure("bad_output", "not JSON", "run it by hand")),
                      S.UNKNOWN, reason=R.PROBE_FAILED), id="bad-output-is-probe-failed"),
    pytest.param(Case(observe(failure=Failure("from-a-newer-collector", "x", "y")),
                      S.UNKNOWN, reason=R.UNREACHABLE), id="an-unknown-class-is-unreachable"),
    pytest.param(Case(observe("15.1.2176.9", at=AS_OF - timedelta(days=7, seconds=1)),
                      S.UNKNOWN, reason=R.STALE, action=("EX01",)),
                 id="stale-patched-build"),
    pytest.param(Case(observe("15.1.2176.9", at=AS_OF - timedelta(days=7)), S.PATCHED),
                 id="exactly-max-age-is-not-stale"),
    pytest.param(Case(observe("15.1.2176.9", at=AS_OF + timedelta(minutes=5, seconds=1)),
                      S.UNKNOWN, reason=R.FUTURE, action=("clock",)),
                 id="future-beyond-clock-skew"),
    pytest.param(Case(observe("15.1.2176.9", at=AS_OF + timedelta(minutes=5)), S.PATCHED),
                 id="future-within-clock-skew"),
    pytest.param(Case(observe("15.1.2176.9", at=None), S.UNKNOWN, reason=R.NO_OBSERVATION),
                 id="never-observed"),
    # -- interim mitigations ----------------------------------------------------------------------
    pytest.param(Case(observe("15.1.2176.2", mitigations=MitigationState((RULE_A, RULE_B))),
                      S.MITIGATED, action=(KB_SU, "15.1.2176.9"),
                      cves_open=(UM_CVE, OAB_CVE, ECP_CVE),
                      mitigations=frozenset({"backend_cookie_rewrite"})),
                 id="mitigations-complete"),
    pytest.param(Case(observe("15.1.2176.2", mitigations=MitigationState((RULE_B,))),
                      S.VULNERABLE, cves_open=ALL_CVES, mitigations=frozenset()),
                 id="mitigations-partial-one-rule"),
    pytest.param(Case(observe("15.1.2176.2", mitigations=MitigationState(
                          (RULE_A, "X-BEResource Abort"))),
                      S.VULNERABLE, cves_open=ALL_CVES),
                 id="mitigations-rule-name-must-match"),
    pytest.param(Case(observe("15.1.2176.2", mitigations=MitigationState(
                          (RULE_A.upper(), f"  {RULE_B.lower()} "))),
                      S.MITIGATED, mitigations=frozenset({"backend_cookie_rewrite"})),
                 id="rewrite-rule-names-case-insensitive"),
    pytest.param(Case(observe("15.1.2176.2", mitigations=MitigationState(app_pools={
                          "MSExchangeECPAppPool": AppPoolState("Stopped", False),
                          "MSExchangeOABAppPool": AppPoolState("Stopped", False)})),
                      S.VULNERABLE, cves_open=(SSRF, UM_CVE),
                      mitigations=frozenset({"ecp_app_pool_stopped", "oab_app_pool_stopped"})),
                 id="ecp-oab-pools-stopped-without-rewrite-rules"),
    pytest.param(Case(observe("15.1.2176.2", mitigations=MitigationState(app_pools={
                          "MSExchangeECPAppPool": AppPoolState("Started", True),
                          "MSExchangeOABAppPool": AppPoolState("Stopped", False)})),
                      S.VULNERABLE, cves_open=(SSRF, UM_CVE, ECP_CVE),
                      mitigations=frozenset({"oab_app_pool_stopped"})),
                 id="only-oab-pool-stopped"),
    pytest.param(Case(observe("15.1.2176.2", mitigations=MitigationState(
                          services=services("Stopped/Disabled", "Stopped/Disabled"))),
                      S.VULNERABLE, cves_open=(SSRF, OAB_CVE, ECP_CVE),
                      mitigations=frozenset({"um_services_disabled"})),
                 id="2016-um-services-disabled-only"),
    pytest.param(Case(observe("15.1.2176.9", mitigations=MitigationState((RULE_A, RULE_B))),
                      S.PATCHED, cves_open=(), mitigations=frozenset()),
                 id="patched-with-mitigations-is-patched"),
    pytest.param(Case(observe("14.3.509.0", roles=UM, mitigations=MitigationState(
                          services=services("Stopped/Disabled", "stopped/disabled"))),
                      S.MITIGATED, cves_open=(), action=(KB_UR32,),
                      mitigations=frozenset({"um_service_disabled_2010"})),
                 id="2010-um-services-stopped-and-disabled"),
    pytest.param(Case(observe("14.3.509.0", roles=UM, mitigations=MitigationState(
                          services={"MSExchangeUM": ServiceState("Stopped", "Disabled")})),
                      S.MITIGATED, cves_open=(), action=(KB_UR32,),
                      mitigations=frozenset({"um_service_disabled_2010"})),
                 id="2010-has-no-um-call-router-service"),
    pytest.param(Case(observe("14.3.509.0", roles=UM, mitigations=MitigationState(
                          services=services("Running/Automatic", "Stopped/Disabled"))),
                      S.VULNERABLE, cves_open=(UM_CVE,), mitigations=frozenset()),
                 id="2010-um-service-still-running"),
    pytest.param(Case(observe("14.3.509.0", roles=UM, mitigations=MitigationState(
                          services=services("Stopped/Manual", "Stopped/Manual"))),
                      S.VULNERABLE, cves_open=(UM_CVE,)),
                 id="2010-um-services-stopped-not-disabled"),
    pytest.param(Case(observe("14.3.509.0", roles=UM, mitigations=MitigationState(
                          (RULE_A, RULE_B))),
                      S.VULNERABLE, cves_open=(UM_CVE,), mitigations=frozenset()),
                 id="2010-rewrite-rules-do-not-mitigate"),
    pytest.param(Case(observe("15.2.792.3", mitigations=MitigationState(
                          services=services("Stopped/Disabled", "Stopped/Disabled"))),
                      S.VULNERABLE, cves_open=ALL_CVES, mitigations=frozenset()),
                 id="2019-um-mitigation-not-considered"),
    pytest.param(Case(observe("15.2.792.3", mitigations=MitigationState((RULE_A, RULE_B))),
                      S.MITIGATED, cves_open=(UM_CVE, OAB_CVE, ECP_CVE)),
                 id="2019-rewrite-rules-mitigate"),
    # -- disputed builds, indicators ------------------------------------------------------------
    pytest.param(Case(observe("15.1.1415.8"), S.UNKNOWN,
                      frozenset({F.DISPUTED_BUILD, F.UNSUPPORTED_CU}), R.DISPUTED,
                      action=(KB_SU,)),
                 id="disputed-2016-cu8-mar21su-build"),
    pytest.param(Case(observe("15.1.1466.13"), S.UNKNOWN,
                      frozenset({F.DISPUTED_BUILD, F.UNSUPPORTED_CU}), R.DISPUTED),
                 id="disputed-2016-cu9-mar21su-build"),
    pytest.param(Case(observe("15.2.858.2"), S.UNKNOWN, frozenset({F.DISPUTED_BUILD}),
                      R.DISPUTED),
                 id="disputed-2019-cu9-build"),
    pytest.param(Case(observe("15.1.2176.2", indicators=("web shell in aspnet_client",)),
                      S.VULNERABLE, frozenset({F.INDICATORS_FOUND}),
                      action=("Investigate for compromise", KB_SU),
                      extra={"action_starts": "Investigate for compromise"}),
                 id="indicators-on-vulnerable"),
    pytest.param(Case(observe("15.1.2176.9", indicators=("CVE-2021-26855 ServerInfo~ hit",)),
                      S.PATCHED, frozenset({F.INDICATORS_FOUND}),
                      extra={"action_starts": "Investigate for compromise"}),
                 id="indicators-on-patched"),
    pytest.param(Case(observe(ad="Version 15.1 (Build 32176.2)", indicators=("lsass dump",)),
                      S.UNKNOWN, frozenset({F.INDICATORS_FOUND}), R.AD_ONLY,
                      extra={"action_starts": "Investigate for compromise"}),
                 id="indicators-on-unknown"),
]


def _judge(case: Case, catalog: Catalog) -> Verdict:
    return evaluate(case.obs, catalog, AS_OF, POLICY)


def _is_sentence(text: str) -> bool:
    return bool(text.strip()) and text[0].isupper() and len(text.split()) >= 3


@pytest.mark.parametrize("case", CASES)
def test_boundaries(case: Case, catalog: Catalog) -> None:
    verdict = _judge(case, catalog)
    assert verdict.status is case.status, verdict.reason
    # As of 2021-03-20 only Exchange 2010 was out of support (ended 2020-10-13, Microsoft
    # Lifecycle); tests/compliance/test_lifecycle.py covers the flag itself.
    assert (Flag.OUT_OF_SUPPORT in verdict.flags) == (verdict.product == "2010")
    assert set(verdict.flags) - {Flag.OUT_OF_SUPPORT} == set(case.flags)
    assert len(verdict.flags) == len(set(verdict.flags))
    assert verdict.unknown_reason is case.reason
    assert _is_sentence(verdict.action), verdict.action
    assert verdict.reason.strip()
    for part in case.action:
        assert part in verdict.action
    if "action_starts" in case.extra:
        assert verdict.action.startswith(case.extra["action_starts"])
    if case.cves_open is not None:
        assert verdict.cves_open == case.cves_open
    if case.status in (S.PATCHED, S.NOT_APPLICABLE):
        assert verdict.cves_open == ()
        assert verdict.status.compliant
    else:
        assert not verdict.status.compliant
        # only a mitigation can close a CVE without the fix (2010's one CVE, fully covered)
        assert verdict.cves_open or case.status is S.MITIGATED
    if case.mitigations is not None:
        assert set(verdict.mitigations) == case.mitigations
    if case.source is not None:
        assert verdict.build_source is case.source
    if case.status is not S.UNKNOWN:
        assert verdict.unknown_reason is None
    assert verdict.host == case.obs.host.name
    assert verdict.as_of == AS_OF
    assert verdict.advisory == "2021-03-proxylogon/1"


# Cases where nothing was seen at all: there is no fact to put in the evidence.
NOTHING_SEEN = {"no-build-at-all", "never-observed"}
EVIDENCE_CASES = [pytest.param(*p.values, id=p.id) for p in CASES if p.id not in NOTHING_SEEN]


@pytest.mark.parametrize("case", EVIDENCE_CASES)
def test_every_verdict_carries_evidence(case: Case, catalog: Catalog) -> None:
    verdict = _judge(case, catalog)
    evidence = verdict.evidence
    assert evidence
    assert all(item.observed_at == case.obs.observed_at for item in evidence)
    assert all(item.kind and item.value and item.source for item in evidence)
    kinds = {item.kind for item in evidence}
    if verdict.build_source is BuildSource.EXSETUP:
        assert any(e.kind == "exsetup_build" and e.value == verdict.build for e in evidence)
    elif verdict.build_source is BuildSource.INSTALLED_UPDATE:
        assert {"installed_update", "installed_update_proof"} <= kinds
    elif verdict.build_source is not None:
        assert any(
            e.source == verdict.build_source.value and verdict.build in e.value for e in evidence
        )
    if case.obs.failure is not None:
        assert "failure" in kinds
    for indicator in case.obs.indicators:
        assert any(e.kind == "indicator" and e.value == indicator for e in evidence)
    if verdict.known and verdict.build_source is not BuildSource.INSTALLED_UPDATE:
        assert "catalogue" in kinds
    if case.obs.mitigations is not None and verdict.status in (S.VULNERABLE, S.MITIGATED):
        assert "mitigation" in kinds


def test_drift_between_ad_and_exsetup_is_recorded(catalog: Catalog) -> None:
    verdict = evaluate(observe("15.1.2176.2", ad="Version 15.1 (Build 32242.4)"), catalog, AS_OF)
    drift = [e for e in verdict.evidence if e.kind == "drift"]
    assert len(drift) == 1
    assert "CU20" in drift[0].value and "CU19" in drift[0].value


# -- regressions found by review -----------------------------------------------------------------


def test_dotted_ad_build_is_refused_not_graded_at_su_level(catalog: Catalog) -> None:
    """AD never knows the SU level: a dotted value there must not pass for an ExSetup version."""
    verdict = evaluate(observe(ad="15.1.2176.9"), catalog, AS_OF)
    assert verdict.build_source is not BuildSource.EXSETUP
    assert verdict.status is S.UNKNOWN
    assert verdict.unknown_reason is R.UNPARSEABLE_BUILD
    assert any(e.kind == "unparseable_build" and e.value == "15.1.2176.9" for e in verdict.evidence)


def test_indicators_lead_the_action_even_when_not_applicable(catalog: Catalog) -> None:
    verdict = evaluate(observe("14.3.509.0", roles=NO_UM, indicators=("web shell",)),
                       catalog, AS_OF)
    assert Flag.INDICATORS_FOUND in verdict.flags
    assert verdict.action.startswith("Investigate for compromise")


# -- properties over the whole catalogue, expectations from the raw data files --------------------


def _key(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def test_never_patched_below_fix_in_an_unfixed_cu(
    catalog: Catalog, csv_rows: list[dict[str, str]], advisory_data: dict[str, Any]
) -> None:
    products = {p["product"]: p for p in advisory_data["products"]}
    fixes = {(p["product"], f["cu"]): _key(f["build"]) for p in products.values()
             for f in p["fixes"]}
    bases = {(r["product"], r["cu"]): _key(r["cu_base_build"]) for r in csv_rows}
    checked, wrong = 0, []
    for row in csv_rows:
        product, cu, build = row["product"], row["cu"], _key(row["build"])
        fix = fixes.get((product, cu))
        fixed_from = products[product]["fixed_from"]
        first = bases[(product, fixed_from)] if fixed_from else None
        below_fix = fix is None or build < fix
        cu_unfixed = first is None or _key(row["cu_base_build"]) < first
        if not (below_fix and cu_unfixed):
            continue
        checked += 1
        for roles in (UM, None):
            verdict = evaluate(observe(row["build"], roles=roles), catalog, AS_OF)
            if verdict.status in (S.PATCHED, S.NOT_APPLICABLE, S.MITIGATED):
                wrong.append((row["build"], roles, verdict.status))
    assert checked > 150
    assert wrong == []


def test_patched_at_fix_or_in_a_fixed_cu(
    catalog: Catalog, csv_rows: list[dict[str, str]], oracle: Any
) -> None:
    wrong = []
    for row in csv_rows:
        verdict = evaluate(observe(row["build"], roles=UM), catalog, AS_OF)
        expected = oracle.expected_status(row)
        if verdict.status.value != expected:
            wrong.append((row["build"], expected, verdict.status.value))
    assert wrong == []


# -- the clock ----------------------------------------------------------------------------------


class _NoClock(datetime):
    @classmethod
    def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
        raise AssertionError("evaluate read the clock")

    @classmethod
    def utcnow(cls) -> datetime:  # type: ignore[override]
        raise AssertionError("evaluate read the clock")

    @classmethod
    def today(cls) -> datetime:  # type: ignore[override]
        raise AssertionError("evaluate read the clock")


@pytest.mark.parametrize(
    ("as_of", "status", "reason"),
    [
        pytest.param(datetime(2021, 3, 10, tzinfo=UTC), S.PATCHED, None, id="as-of-next-day"),
        pytest.param(datetime(2021, 3, 16, 0, 0, tzinfo=UTC), S.PATCHED, None,
                     id="as-of-exactly-7-days"),
        pytest.param(datetime(2035, 1, 1, tzinfo=UTC), S.UNKNOWN, R.STALE, id="as-of-far-future"),
        pytest.param(datetime(1999, 1, 1, tzinfo=UTC), S.UNKNOWN, R.FUTURE, id="as-of-far-past"),
    ],
)
def test_evaluate_judges_at_as_of_not_the_clock(
    catalog: Catalog, monkeypatch: pytest.MonkeyPatch, as_of: datetime, status: Status,
    reason: Reason | None,
) -> None:
    monkeypatch.setattr(evaluate_module, "datetime", _NoClock)
    obs = observe("15.1.2176.9", at=datetime(2021, 3, 9, 0, 0, tzinfo=UTC))
    verdict = evaluate(obs, catalog, as_of)
    assert (verdict.status, verdict.unknown_reason) == (status, reason)
    assert verdict.as_of == as_of


def test_policy_max_age_is_a_parameter(catalog: Catalog) -> None:
    obs = observe("15.1.2176.9", at=AS_OF - timedelta(days=3))
    assert evaluate(obs, catalog, AS_OF, Policy(max_age=timedelta(days=7))).status is S.PATCHED
    strict = evaluate(obs, catalog, AS_OF, Policy(max_age=timedelta(days=2)))
    assert (strict.status, strict.unknown_reason) == (S.UNKNOWN, R.STALE)


def test_evaluate_is_deterministic(catalog: Catalog) -> None:
    obs = observe("15.1.2176.2", mitigations=MitigationState((RULE_A, RULE_B)))
    assert evaluate(obs, catalog, AS_OF) == evaluate(obs, catalog, AS_OF)


def test_assess_grades_each_observation_like_evaluate(catalog: Catalog) -> None:
    observations = [observe("15.1.2176.9", name="A"), observe("15.1.2176.2", name="B"),
                    observe(failure=UNREACHABLE, name="C")]
    snapshot = assess(observations, catalog, AS_OF, source="test", tool_version="0.1.0")
    assert [a.observation for a in snapshot.assessments] == observations
    assert [a.verdict for a in snapshot.assessments] == [
        evaluate(obs, catalog, AS_OF) for obs in observations
    ]
    assert [a.verdict.status for a in snapshot.assessments] == [
        S.PATCHED, S.VULNERABLE, S.UNKNOWN
    ]
    assert (snapshot.taken_at, snapshot.catalog_version, snapshot.advisory_id) == (
        AS_OF, catalog.version, "2021-03-proxylogon"
    )


# -- codec round trips ----------------------------------------------------------------------


RICH = Observation(
    host=Host(name="EX02", fqdn="ex02.corp.example", site="HQ", dag="DAG1",
              roles=frozenset({"Mailbox", "ClientAccess"}), ad_build="Version 15.1 (Build 32176.2)",
              dn="CN=EX02,CN=Servers,DC=corp,DC=example"),
    observed_at=SEEN, source="winrm", exsetup_version="15.01.2176.002",
    admin_display_version="Version 15.1 (Build 2176.2)",
    installed_updates=(MAR21, InstalledUpdate("KB4602269")),
    mitigations=MitigationState(
        rewrite_rules=(RULE_A,),
        services=services("Running/Automatic", "Stopped/Disabled"),
        app_pools={"MSExchangeECPAppPool": AppPoolState("Stopped", False),
                   "MSExchangeOABAppPool": AppPoolState(None, None)},
    ),
    indicators=("a", "b"),
    failure=None,
)


@pytest.mark.parametrize(
    "obs",
    [pytest.param(RICH, id="rich"), pytest.param(observe(failure=UNREACHABLE, at=None),
                                                 id="failure-never-observed")]
    + [pytest.param(p.values[0].obs, id=p.id) for p in CASES],
)
def test_observation_round_trip(obs: Observation) -> None:
    data = json.loads(json.dumps(observation_to_dict(obs)))
    assert observation_from_dict(data) == obs


@pytest.mark.parametrize(
    "obs",
    [pytest.param(RICH, id="rich")] + [pytest.param(p.values[0].obs, id=p.id) for p in CASES],
)
def test_verdict_round_trip(obs: Observation, catalog: Catalog) -> None:
    verdict = evaluate(obs, catalog, AS_OF)
    data = json.loads(json.dumps(verdict_to_dict(verdict)))
    back = verdict_from_dict(data)
    assert back == verdict
    assert all(isinstance(flag, Flag) for flag in back.flags)
    assert back.status is verdict.status
