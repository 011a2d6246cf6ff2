"""exchange-probe/1 documents for tests, built the way probe.ps1 prints them.

Without the minor version 1.2 arguments (``rewrite_rule_details``, ``dotnet_release``) a document
is what a 1.1 probe printed: the fields are left out, not null, so every document built before
them stays the same."""

from __future__ import annotations

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


def probe_document(host: str, exsetup: str | None, *, roles: list[str] | None = None,
                   rewrite_rules: list[str] | None = None, kbs: list[str] | None = None,
                   um_disabled: bool = False, findings: dict[str, list[str]] | None = None,
                   errors: list[str] | None = None, collected_at: str = "2026-11-25T09:00:00Z",
                   fqdn: str | None = None,
                   rewrite_rule_details: list[Any] | None = None,
                   dotnet_release: int | None = None) -> dict[str, Any]:
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
    return document


def dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, separators=(",", ":"))
