"""exchange-probe/1 documents for tests, built the way probe.ps1 prints them.

Without the minor version 1.2 arguments (``rewrite_rule_details``, ``dotnet_release``) a document
is what a 1.1 probe printed: the fields are left out, not null, so every document built before
them stays the same. Likewise without ``investigation`` (1.3): build one with ``investigation()``
(and ``msert_tail()``, ``defender_detection()``, ``candidate()``)."""

from __future__ import annotations

import copy
import json
from typing import Any

REWRITE_RULES = ["X-AnonResource-Backend Abort - inbound", "X-BEResource Abort - inbound"]

# ProxyNotShell's interim mitigation as EOMTv2 and EEMS write it (../shared/reference/later_advisories.md).
PROXYNOTSHELL_INPUT = "{UrlDecode:{REQUEST_URI}}"
PROXYNOTSHELL_PATTERN = "(?=.*autodiscover)(?=.*powershell)"


def rewrite_rule(name: str = "PowerShell - inbound", *, site: str = "Default Web Site",
                 match_url: str = ".*",
                 conditions: tuple[tuple[str, str, bool], ...] = (
                     (PROXYNOTSHELL_INPUT, PROXYNOTSHELL_PATTERN, False),),
                 logical_grouping: str = "MatchAll", action: str = "AbortRequest",
                 enabled: bool = True, stop_processing: bool = True, match_negate: bool = False,
                 pattern_syntax: str = "ECMAScript", truncated: bool = False,
                 ignore_case: bool = True) -> dict[str, Any]:
    """One ``mitigations.rewrite_rule_details`` entry as probe.ps1 prints it (by default
    EOMTv2's ProxyNotShell rule; ``ignore_case`` for every condition)."""
    return {"site": site, "name": name, "match_url": match_url, "match_negate": match_negate,
            "conditions": [{"input": i, "pattern": p, "negate": n, "ignore_case": ignore_case}
                           for i, p, n in conditions],
            "logical_grouping": logical_grouping, "action": action, "enabled": enabled,
            "stop_processing": stop_processing, "pattern_syntax": pattern_syntax,
            "truncated": truncated}


# A clean full Microsoft Safety Scanner run, as msert.log holds it (the layout of the public log in
# tests/collectors/test_traces.py, QUICK_WITH_DETECTION; "No infection found" and "Return code: 0
# (0x0)" as reported for clean runs there).
CLEAN_FULL_SCAN = [
    "---------------------------------------------------------------------------------------",
    "Microsoft Safety Scanner v1.333, (build 1.333.1102.0)",
    "Started On Wed Mar 10 11:55:13 2021",
    "",
    "Engine: 1.1.17900.7",
    "Signatures: 1.333.1102.0",
    "MpGear: 1.1.16330.1",
    "Run Mode: Scan Run in Quiet Mode",
    "",
    "Full Scan Results:",
    "-------------------",
    "",
    "Results Summary:",
    "----------------",
    "No infection found.",
    "Successfully Submitted Heartbeat Report",
    "Microsoft Safety Scanner Finished On Wed Mar 10 17:02:41 2021",
    "",
    "",
    "Return code: 0 (0x0)",
]


def msert_tail(lines: list[str], *, written_at: str = "2021-03-10T16:02:41Z", utc_offset_minutes: int = 60,
               cut: bool = False) -> dict[str, Any]:
    """``investigation.msert_log`` (or ``msert_old_log``) as probe.ps1 prints it."""
    return {"written_at": written_at, "utc_offset_minutes": utc_offset_minutes, "cut": cut, "lines": list(lines)}


def defender_detection(threat: str | None = "Backdoor:MSIL/Chopper.F!dha", *, threat_id: str | None = "2147776854",
                       detected_at: str | None = "2021-04-05T22:01:21Z",
                       resources: list[str] | None = None, action_success: bool | None = True) -> dict[str, Any]:
    """One ``investigation.defender.detections`` entry (Get-MpThreatDetection with Get-MpThreat's name). By
    default the detection of a China Chopper web shell's compiled page that a public incident write-up shows
    (ACSC IR challenge 2021: Backdoor:MSIL/Chopper.F!dha, threatid=2147776854, 2021-04-05 22:01:21)."""
    return {"threat_id": threat_id, "threat": threat, "detected_at": detected_at,
            "resources": resources if resources is not None else [
                "file:_C:\\Windows\\Microsoft.NET\\Framework64\\v4.0.30319\\Temporary ASP.NET Files\\root"
                "\\a056c683\\f67bca3c\\App_Web_euav215z.dll"],
            "action_success": action_success}


def candidate(path: str = "C:\\inetpub\\wwwroot\\aspnet_client\\system_web\\errorEE.aspx", *,
              size: int | None = 1203, created: str | None = "2021-03-02T03:14:15Z",
              modified: str | None = "2021-03-02T03:14:15Z") -> dict[str, Any]:
    """One ``investigation.candidates`` entry."""
    return {"path": path, "size": size, "created": created, "modified": modified}


CLEAN_TAIL = msert_tail(CLEAN_FULL_SCAN)

EX = "C:\\Program Files\\Microsoft\\Exchange Server\\V15\\"
# HttpProxy's protocol folders whose log age Test-ProxyLogon reports (CSS-Exchange Test-ProxyLogon.ps1,
# Get-LogAge): the folders the shipped advisory's triage data name for CVE-2021-26855.
PROTOCOL_FOLDERS = ("Autodiscover", "Eas", "Ecp", "Ews", "Mapi", "Oab", "Owa", "OwaCalendar", "PowerShell",
                    "RpcHttp")


def protocol_folders(oldest: str | None = "2021-01-04T00:00:07Z", *, folders: tuple[str, ...] = PROTOCOL_FOLDERS,
                     **changed: str | None) -> list[dict[str, Any]]:
    """``investigation.log_reach`` as probe.ps1 prints it from contract 1.4: one entry per HttpProxy protocol
    folder (``folders``, each reaching back to ``oldest`` unless ``changed`` names it: ``Ecp=None`` is an
    emptied folder), then the ECP server log's and the OAB generator log's folders and the Application
    event log, all reaching back to before the window."""
    reach: list[dict[str, Any]] = [
        {"log": "HttpProxy", "folder": f"{EX}Logging\\HttpProxy\\{name}", "oldest": changed.get(name, oldest)}
        for name in folders]
    return [
        *reach,
        {"log": "ECP\\Server", "folder": f"{EX}Logging\\ECP\\Server", "oldest": "2021-01-04T00:00:09Z"},
        {"log": "OABGeneratorLog", "folder": f"{EX}Logging\\OABGeneratorLog", "oldest": "2021-01-04T01:00:00Z"},
        {"log": "Application", "oldest": "2020-12-01T08:00:00Z"}]


def investigation(*, msert_log: dict[str, Any] | None = CLEAN_TAIL, msert_old_log: dict[str, Any] | None = None,
                  detections: list[dict[str, Any]] | None = None, defender_available: bool = True,
                  defender_truncated: bool = False,
                  log_reach: dict[str, str | None] | None = None, candidates: list[dict[str, Any]] | None = None,
                  candidates_truncated: bool = False, exsetup_written_at: str | None = "2021-03-03T21:14:09Z",
                  utc_offset_minutes: int | None = 60,
                  log_reach_entries: list[dict[str, Any]] | None = None,
                  candidate_folders: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """``investigation`` (contract 1.3) as probe.ps1 prints it. By default: a clean full MSERT run after
    the fix, Defender available with no detection, logs reaching back to January 2021 (one entry per log,
    as a 1.3 probe printed it), no candidate. ``msert_log=None``: the server has no msert.log.
    ``log_reach_entries``: the ``log_reach`` list as given (e.g. ``protocol_folders()``, contract 1.4).
    ``candidate_folders``: the folders the candidate search looked in (contract 1.5, e.g.
    ``candidate_folders()``); None: the key is left out, as a probe before 1.5 printed it."""
    reach = log_reach if log_reach is not None else {
        "HttpProxy": "2021-01-04T00:00:07Z", "ECP\\Server": "2021-01-04T00:00:09Z",
        "OABGeneratorLog": "2021-01-04T01:00:00Z", "Application": "2020-12-01T08:00:00Z"}
    value: dict[str, Any] = {
        "utc_offset_minutes": utc_offset_minutes,
        "exsetup_written_at": exsetup_written_at,
        "msert_log": copy.deepcopy(msert_log),
        "msert_old_log": copy.deepcopy(msert_old_log),
        "defender": {"available": defender_available,
                     "detections": (detections or []) if defender_available else None,
                     "truncated": defender_truncated},
        "log_reach": copy.deepcopy(log_reach_entries) if log_reach_entries is not None else [
            {"log": log, "oldest": oldest} for log, oldest in reach.items()],
        "candidates": candidates or [],
        "candidates_truncated": candidates_truncated,
    }
    if candidate_folders is not None:
        value["candidate_folders"] = copy.deepcopy(candidate_folders)
    return value


def candidate_folders(root: str = "C:\\inetpub\\wwwroot", *, present: bool = True, aspnet_client: bool = True,
                      auth: bool = True) -> list[dict[str, Any]]:
    """``investigation.candidate_folders`` as probe.ps1 prints it from contract 1.5: the IIS root (the Default
    Web Site's folder, ``present`` or not), its aspnet_client, and OWA's and ECP's auth folders."""
    return [{"path": root, "present": present, "iis_root": True},
            {"path": root + "\\aspnet_client", "present": present and aspnet_client, "iis_root": False},
            {"path": EX + "FrontEnd\\HttpProxy\\owa\\auth", "present": auth, "iis_root": False},
            {"path": EX + "FrontEnd\\HttpProxy\\ecp\\auth", "present": auth, "iis_root": False}]


def probe_document(host: str, exsetup: str | None, *, roles: list[str] | None = None,
                   rewrite_rules: list[str] | None = None, kbs: list[str] | None = None,
                   um_disabled: bool = False, findings: dict[str, list[str]] | None = None,
                   errors: list[str] | None = None, collected_at: str = "2026-11-25T09:00:00Z",
                   fqdn: str | None = None,
                   rewrite_rule_details: list[Any] | None = None,
                   dotnet_release: int | None = None,
                   investigation: dict[str, Any] | None = None) -> dict[str, Any]:
    indicators: dict[str, Any] = {cve: [] for cve in ("CVE-2021-26855", "CVE-2021-26857",
                                                       "CVE-2021-26858", "CVE-2021-27065")}
    for cve, details in (findings or {}).items():
        indicators[cve] = [{"detail": d, "path": None, "time": None} for d in details]
    indicators.update({"suspicious_files": [], "log_window_days": 30, "truncated": False})
    services = {}
    if roles and "UnifiedMessaging" in roles:
        state = {"status": "Stopped", "start_mode": "Disabled"} if um_disabled else {
            "status": "Running", "start_mode": "Auto"}
        services = {"MSExchangeUM": dict(state), "MSExchangeUMCR": dict(state)}
    document: dict[str, Any] = {
        "schema": "exchange-probe/1",
        "host": host,
        "fqdn": fqdn or f"{host.lower()}.test.example",
        "collected_at": collected_at,
        "exsetup_version": exsetup,
        "admin_display_version": None,
        "install_path": "C:\\Program Files\\Microsoft\\Exchange Server\\V15\\" if exsetup else None,
        "product_line": "v15" if exsetup and exsetup.startswith("15.") else (
            "v14" if exsetup else None),
        "installed_updates": [{"kb": kb, "name": f"Security Update for Exchange Server ({kb})",
                               "installed_on": "2021-03-03"} for kb in kbs or []],
        "roles": roles if roles is not None else ["Mailbox", "ClientAccess"],
        "mitigations": {
            "rewrite_rules": rewrite_rules or [],
            "url_rewrite_module": "7.2.1993" if rewrite_rules else None,
            "services": services,
            "app_pools": {"MSExchangeECPAppPool": {"state": "Started", "auto_start": True},
                          "MSExchangeOABAppPool": {"state": "Started", "auto_start": True}},
            "eomt": None,
            "defender_signature_version": "1.401.100.0",
        },
        "indicators": indicators,
        "errors": errors or [],
    }
    if rewrite_rule_details is not None:
        document["mitigations"]["rewrite_rule_details"] = rewrite_rule_details
    if dotnet_release is not None:
        document["dotnet_release"] = dotnet_release
    if investigation is not None:
        document["investigation"] = investigation
    return document


def dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, separators=(",", ":"))
