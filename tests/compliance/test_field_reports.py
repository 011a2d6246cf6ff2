"""Issue 13: verdicts that survive the field. Each case is a kind of report Exchange admins
published (HealthChecker, Test-ProxyLogon and EOMT threads, the Exchange team's update FAQ),
written as a literal document or build with the right answer and its source.

Every probe-document case goes through the import path (``observation_from_document``, what
``python -m collectors import`` does) and, where the input is an ExSetup build, through
``python -m compliance classify`` too: both must reach the same verdict.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from collectors.probe import observation_from_document
from compliance.__main__ import classify
from compliance.catalog import Catalog
from compliance.codec import observation_from_dict, observation_to_dict
from compliance.evaluate import evaluate
from compliance.models import Flag, Host, Reason, Status, Verdict
from tests.collectors.documents import REWRITE_RULES, probe_document

AS_OF = datetime(2021, 6, 1, 12, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _judge(document: dict[str, Any], catalog: Catalog, at: datetime = AS_OF) -> Verdict:
    observation = observation_from_document(document, Host(document["host"]), "import:test",
                                            at - timedelta(hours=1))
    return evaluate(observation, catalog, at)


def _document(exsetup: str | None, **changes: Any) -> dict[str, Any]:
    mitigations = changes.pop("mitigations", {})
    document = probe_document("EX1", exsetup, **changes)
    document["mitigations"].update(mitigations)
    return document


def _evidence(verdict: Verdict, kind: str) -> list[str]:
    return [e.value for e in verdict.evidence if e.kind == kind]


# -- 1. a later cumulative Security Update proves the March fixes --------------------------

@pytest.mark.parametrize(("cu_level", "kb", "proof_build"), [
    # msdocs build table: KB5001779 is 2016 CU19's April 2021 SU, 15.1.2176.12
    ("Version 15.1 (Build 2176.2)", "KB5001779", "15.1.2176.12"),
    # msdocs: KB5003435 is 2013 CU23's May 2021 SU, 15.0.1497.18
    ("Version 15.0 (Build 1497.2)", "KB5003435", "15.0.1497.18"),
    # msdocs: KB5001779 is also 2019 CU8's April 2021 SU, 15.2.792.13
    ("Version 15.2 (Build 792.3)", "KB5001779", "15.2.792.13"),
])
def test_a_later_su_of_the_servers_cu_proves_the_march_fixes(catalog, cu_level, kb,
                                                             proof_build):
    document = _document(None, kbs=[kb])
    document["admin_display_version"] = cu_level
    verdict = _judge(document, catalog)
    assert verdict.status is Status.PATCHED, verdict.reason
    assert verdict.build == proof_build
    proof = " ".join(_evidence(verdict, "installed_update_proof"))
    assert kb in proof and "supersedes KB5000871" in proof, proof


@pytest.mark.parametrize(("cu_level", "kb"), [
    # KB5001779 exists for 2016 CU19 and CU20, not CU18 (msdocs): another CU's KB proves nothing
    ("Version 15.1 (Build 2106.2)", "KB5001779"),
    # KB4602269 is 2016 CU19's February 2021 SU (15.1.2176.4), before the March fix
    ("Version 15.1 (Build 2176.2)", "KB4602269"),
    # KB5000978 is Exchange 2010's Update Rollup 32: nothing for 2013 CU23
    ("Version 15.0 (Build 1497.2)", "KB5000978"),
])
def test_an_update_of_another_cu_or_an_earlier_one_proves_nothing(catalog, cu_level, kb):
    document = _document(None, kbs=[kb])
    document["admin_display_version"] = cu_level
    verdict = _judge(document, catalog)
    assert verdict.status is Status.UNKNOWN and verdict.unknown_reason is Reason.AD_ONLY


# -- 2. an unreadable part is not an absence ------------------------------------------------

@pytest.mark.parametrize(("exsetup", "error"), [
    # CSS-Exchange issues: WebAdministration not loaded over remoting (2016 CU19, unpatched)
    ("15.1.2176.2", "iis: Could not load file or assembly 'Microsoft.Web.Administration'"),
    # redirection.config not readable by a non-administrator (2019 CU8, unpatched)
    ("15.2.792.3", "rewrite_rules: Access to the path 'C:\\Windows\\system32\\inetsrv\\config"
                   "\\redirection.config' is denied."),
])
def test_unreadable_rewrite_rules_are_unknown_not_missing(catalog, exsetup, error):
    verdict = _judge(_document(exsetup, errors=[error]), catalog)
    assert verdict.status is Status.VULNERABLE  # below the fix: exposed either way
    assert Flag.MITIGATION_UNREADABLE in verdict.flags
    assert any("could not be read" in v for v in _evidence(verdict, "mitigation"))
    assert not any("missing" in v for v in _evidence(verdict, "mitigation")
                   if v.startswith("backend_cookie_rewrite"))
    assert "apply the interim mitigation now" not in verdict.action
    assert "check by hand" in verdict.action and "applicationHost.config" in verdict.action
    assert "unknown" in verdict.reason


def test_unreadable_services_on_exchange_2010_are_unknown_not_missing(catalog):
    # 2010 SP3 below Update Rollup 32 (14.3.513.0, KB5000978), UM role, services unreadable
    document = _document("14.3.509.0", roles=["Mailbox", "UnifiedMessaging"],
                         errors=["services: Access denied"])
    document["mitigations"]["services"] = {}
    verdict = _judge(document, catalog)
    assert verdict.status is Status.VULNERABLE
    assert Flag.MITIGATION_UNREADABLE in verdict.flags
    assert "Win32_Service" in verdict.action


def test_missing_rules_read_without_error_still_say_apply_now(catalog):
    verdict = _judge(_document("15.1.2176.2"), catalog)
    assert verdict.status is Status.VULNERABLE
    assert Flag.MITIGATION_UNREADABLE not in verdict.flags
    assert "apply the interim mitigation now" in verdict.action


def test_an_unreadable_part_the_mitigation_does_not_need_changes_nothing(catalog):
    # Rules in place (the mitigation 2016 needs), the app pools unreadable: still mitigated.
    verdict = _judge(_document("15.1.2176.2", rewrite_rules=REWRITE_RULES,
                               errors=["app_pool MSExchangeECPAppPool: access denied"]), catalog)
    assert verdict.status is Status.MITIGATED
    assert Flag.MITIGATION_UNREADABLE not in verdict.flags


# -- 3. suspicious files alone are not a compromise verdict ---------------------------------

def _with_files(document: dict[str, Any], *paths: str) -> dict[str, Any]:
    document["indicators"]["suspicious_files"] = [
        {"detail": "archive", "path": path, "time": None} for path in paths]
    return document


@pytest.mark.parametrize("exsetup", ["15.1.2176.9", "15.0.1497.12"])
def test_suspicious_files_alone_are_for_review_not_investigate_first(catalog, exsetup):
    # Test-ProxyLogon stopped reporting ProgramData archives on their own (an antivirus agent's
    # own .zip files were false positives): patched 2016 CU19 and 2013 CU23
    document = _with_files(_document(exsetup), "C:\\ProgramData\\Vendor\\Agent\\logs.zip")
    verdict = _judge(document, catalog)
    assert verdict.status is Status.PATCHED
    assert Flag.INDICATORS_FOUND not in verdict.flags
    assert Flag.SUSPICIOUS_FILES in verdict.flags
    assert not verdict.action.startswith("Investigate")
    assert "Review the 1 file(s)" in verdict.action
    assert _evidence(verdict, "suspicious_file")


def test_a_cve_check_hit_is_still_investigate_first(catalog):
    document = _with_files(_document("15.1.2176.9", findings={
        "CVE-2021-26855": ["ServerInfo~a]@ex1/ecp/y.js from 203.0.113.9"]}),
        "C:\\ProgramData\\x.7z")
    verdict = _judge(document, catalog)
    assert Flag.INDICATORS_FOUND in verdict.flags
    assert verdict.action.startswith("Investigate for compromise first")


def test_an_observation_stored_before_keeps_its_files_apart_when_read_back(catalog):
    stored = observation_to_dict(observation_from_document(_document("15.1.2176.9"), Host("EX1"),
                                                           "t", AS_OF))
    stored["indicators"] = ["suspicious file: archive (C:\\ProgramData\\a.zip)"]
    stored.pop("suspicious_files")
    observation = observation_from_dict(stored)
    assert observation.indicators == ()
    assert observation.suspicious_files == ("archive (C:\\ProgramData\\a.zip)",)


# -- 4. what the probe reads is kept ---------------------------------------------------------

EOMT = {"Timestamp": "03/09/2021 02:41:17", "EOMTStart": "1 started",
        "MSERTProcess": "0 failed to download"}


@pytest.mark.parametrize(("defender", "in_place"), [
    ("1.333.747.0", True),   # the first build with the automatic mitigation (MS, 2021-03-18)
    ("1.333.746.9", False),  # just below it
])
def test_eomt_url_rewrite_and_defender_are_kept_and_shown(catalog, defender, in_place):
    document = _document("15.1.2176.2", rewrite_rules=REWRITE_RULES,
                         mitigations={"eomt": EOMT, "defender_signature_version": defender})
    observation = observation_from_document(document, Host("EX1"), "t", AS_OF)
    assert observation.mitigations is not None
    assert observation.mitigations.eomt == EOMT
    assert observation.mitigations.url_rewrite_module == "7.2.1993"
    assert observation_from_dict(observation_to_dict(observation)) == observation
    verdict = evaluate(observation, catalog, AS_OF + timedelta(hours=1))
    assert verdict.status is Status.MITIGATED
    eomt = " ".join(_evidence(verdict, "eomt"))
    assert "03/09/2021 02:41:17" in eomt and "MSERTProcess failed" in eomt
    assert _evidence(verdict, "url_rewrite_module") == ["7.2.1993"]
    (shown,) = _evidence(verdict, "defender")
    assert ("was in place" in shown) is in_place and "CVE-2021-26855" in shown


# -- 5. builds the catalogue does not hold ---------------------------------------------------

@pytest.mark.parametrize(("build", "status", "flags"), [
    ("15.2.9999.0", Status.UNKNOWN, {Flag.NOT_IN_CATALOG}),   # no such 2019/SE release
    ("15.1.2300.0", Status.UNKNOWN, {Flag.NOT_IN_CATALOG}),   # between 2016 CU20 and CU21
    # A newer SU on a known CU above its fix: SUs keep their CU's build number (msdocs)
    ("15.1.2176.99", Status.PATCHED, {Flag.NOT_IN_CATALOG}),
    ("15.2.1748.99", Status.PATCHED, {Flag.NOT_IN_CATALOG}),   # 2019 CU15, updates go on
    ("15.2.792.3", Status.VULNERABLE, set()),                  # a known build, for contrast
])
def test_a_build_on_no_known_cu_is_never_patched(catalog, build, status, flags):
    imported = _judge(_document(build), catalog, NOW)
    assert imported.status is status, imported.reason
    assert set(imported.flags) - {Flag.OUT_OF_SUPPORT, Flag.UNSUPPORTED_CU} == flags
    if status is Status.UNKNOWN:
        assert imported.unknown_reason is Reason.UNPLACEABLE_BUILD
    command_line = classify(build, catalog, NOW)
    assert command_line["status"] == imported.status.value


# -- 6. end of support is a fact beside the status ------------------------------------------

@pytest.mark.parametrize(("build", "ended"), [
    ("15.1.2176.9", date(2025, 10, 14)),   # 2016 (Microsoft Lifecycle)
    ("15.2.792.10", date(2025, 10, 14)),   # 2019
    ("15.0.1497.12", date(2023, 4, 11)),   # 2013
])
def test_out_of_support_flags_from_the_day_after_and_never_changes_the_status(
        catalog, build, ended):
    last = datetime.combine(ended, datetime.min.time(), UTC) + timedelta(hours=12)
    on_the_day = _judge(_document(build), catalog, last)
    after = _judge(_document(build), catalog, last + timedelta(days=1))
    assert Flag.OUT_OF_SUPPORT not in on_the_day.flags
    assert Flag.OUT_OF_SUPPORT in after.flags
    assert after.status is on_the_day.status is Status.PATCHED
    assert "plan the move to Exchange SE" in after.action
    assert ended.isoformat() in " ".join(_evidence(after, "support"))


def test_exchange_se_is_never_out_of_support(catalog):
    verdict = _judge(_document("15.2.2562.17"), catalog, NOW)
    assert verdict.product == "SE" and Flag.OUT_OF_SUPPORT not in verdict.flags


# -- review findings (a field admin replaying reports against the first version) ----------

@pytest.mark.parametrize(("cu_level", "kb", "name"), [
    # KB5000871 is the March fix of every CU (msdocs): a record naming CU18 proves nothing
    # for the CU19 AD shows (a record left from before a CU upgrade)
    ("Version 15.1 (Build 2176.2)", "KB5000871",
     "Security Update for Exchange Server 2016 Cumulative Update 18 (KB5000871)"),
    # KB5001779 exists for 2019 CU8 and CU9 alike: a record naming CU9 proves nothing for CU8
    ("Version 15.2 (Build 792.3)", "KB5001779",
     "Security Update for Exchange Server 2019 Cumulative Update 9 (KB5001779)"),
    # ... nor one naming another product line
    ("Version 15.0 (Build 1497.2)", "KB5001779",
     "Security Update for Exchange Server 2016 Cumulative Update 19 (KB5001779)"),
])
def test_an_update_record_naming_another_cu_proves_nothing(catalog, cu_level, kb, name):
    document = _document(None)
    document["admin_display_version"] = cu_level
    document["installed_updates"] = [{"kb": kb, "name": name, "installed_on": "2021-04-14"}]
    verdict = _judge(document, catalog)
    assert verdict.status is Status.UNKNOWN and verdict.unknown_reason is Reason.AD_ONLY
    assert _evidence(verdict, "installed_update_ignored")


def test_an_update_record_naming_the_same_cu_still_proves_it(catalog):
    document = _document(None)
    document["admin_display_version"] = "Version 15.1 (Build 2176.2)"
    document["installed_updates"] = [{"kb": "KB5001779", "installed_on": "2021-04-14",
                                      "name": "Security Update for Exchange Server 2016 CU19 "
                                              "(KB5001779)"}]
    assert _judge(document, catalog).status is Status.PATCHED


@pytest.mark.parametrize("build", [
    "14.3.513.1", "14.3.514.0", "14.3.9999.0",   # above Update Rollup 32, 2010's last update
    "15.0.1497.49",                               # above Mar23SU, 2013's last update
])
def test_a_build_above_a_lines_last_update_is_no_release(catalog, build):
    verdict = _judge(_document(build, roles=["Mailbox", "UnifiedMessaging"]), catalog, NOW)
    assert verdict.status is Status.UNKNOWN and verdict.unknown_reason is Reason.UNPLACEABLE_BUILD
    assert classify(build, catalog, NOW)["status"] == "unknown"


def test_compromise_checks_that_could_not_read_are_not_clean(catalog):
    denied = "Access to the path 'C:\\Program Files\\Microsoft\\Exchange Server\\V15\\Logging" \
             "\\HttpProxy' is denied."
    document = _document("15.1.2176.9", errors=[f"CVE-2021-26855: {denied}",
                                                f"CVE-2021-26858: {denied}"])
    document["indicators"]["log_window_days"] = None
    verdict = _judge(document, catalog)
    assert verdict.status is Status.PATCHED
    assert Flag.INDICATORS_UNREADABLE in verdict.flags
    assert "2 compromise check(s) could not read their logs" in verdict.action
    assert "Logging folders" in verdict.action


def test_rules_unread_because_the_module_could_not_be_read_are_unknown(catalog):
    # probe.ps1 reports a failed rules read only when it read the URL Rewrite module, which it
    # reads in the installed_updates part: that part failed, so the empty list means unknown
    document = _document("15.1.2176.2", errors=[
        "installed_updates: Requested registry access is not allowed."])
    document["mitigations"]["url_rewrite_module"] = None
    verdict = _judge(document, catalog)
    assert Flag.MITIGATION_UNREADABLE in verdict.flags
    assert "apply the interim mitigation now" not in verdict.action


@pytest.mark.parametrize(("version", "shown"), [
    ("4.18.2102.4", "unreadable version"),  # the platform's version, not security intelligence
    ("", "unreadable version"),
])
def test_a_defender_version_that_is_not_security_intelligence_is_not_read_as_one(
        catalog, version, shown):
    verdict = _judge(_document("15.1.2176.2", mitigations={
        "defender_signature_version": version}), catalog)
    (defender,) = _evidence(verdict, "defender")
    assert shown in defender and "was in place" not in defender


def test_a_cu_level_value_is_never_labelled_with_an_update(catalog):
    document = _document(None)
    document["admin_display_version"] = "Version 15.1 (Build 2176.9)"
    verdict = _judge(document, catalog)
    assert verdict.status is Status.UNKNOWN
    assert "Mar21SU" not in (verdict.release_name or "")
