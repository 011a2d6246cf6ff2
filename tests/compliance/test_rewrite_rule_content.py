"""ProxyNotShell's interim mitigation, recognised by the URL Rewrite rule's content (mitigation
kind ``rewrite_rule_content``), from literal rule data: whatever the rule's name, never by a
name alone, and every rule that looks meant as it but does not count is named with the reason.
"""

from __future__ import annotations

import copy
import tomllib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from compliance.advisory import AdvisoryError, parse_advisory
from compliance.catalog import Catalog, load_catalog
from compliance.evaluate import evaluate
from compliance.models import (
    Flag,
    Host,
    MitigationState,
    Observation,
    RewriteCondition,
    RewriteRule,
    Status,
    Verdict,
)

from .conftest import DATA

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
OCT22SU = "15.2.1118.15"  # 2019 CU12 Oct22SU: below the November 2022 fix
SITE = "Default Web Site"
DECODED = "{UrlDecode:{REQUEST_URI}}"
LOOKAHEAD = "(?=.*autodiscover)(?=.*powershell)"
MITIGATION = "autodiscover_powershell_block"
SSRF, RCE = "CVE-2022-41040", "CVE-2022-41082"


def rule(name: str = "PowerShell - inbound", *, site: str = SITE, match_url: str = ".*",
         action: str = "AbortRequest", input_: str = DECODED, pattern: str = LOOKAHEAD,
         negate: bool = False, enabled: bool = True, extra: tuple[RewriteCondition, ...] = (),
         grouping: str = "MatchAll", ignore_case: bool | None = True,
         match_negate: bool | None = False, syntax: str | None = "ECMAScript",
         stop: bool | None = False, truncated: bool | None = False) -> RewriteRule:
    return RewriteRule(name, site, match_url, action,
                       (RewriteCondition(input_, pattern, negate, ignore_case), *extra),
                       grouping, enabled, match_negate=match_negate, pattern_syntax=syntax,
                       stop_processing=stop, truncated=truncated)


# What the HealthChecker test data shows (DefaultWebSite_web1.config) and EOMT writes for the
# March 2021 advisory: rules beside the one that matters.
EOMT_MARCH = RewriteRule("X-BEResource Abort - inbound", SITE, ".*", "AbortRequest",
                         (RewriteCondition("{HTTP_COOKIE}", "(.*)X-BEResource=(.+)/(.+)~(.+)",
                                           ignore_case=True),),
                         match_negate=False, pattern_syntax="ECMAScript", stop_processing=False,
                         truncated=False)


@pytest.fixture(scope="module")
def notshell() -> Catalog:
    return load_catalog("2022-11-proxynotshell")


def judge(catalog: Catalog, *rules: RewriteRule, build: str = OCT22SU,
          names: tuple[str, ...] | None = None, errors: tuple[str, ...] = (),
          details: bool = True, module: str | None = "7.2.1993") -> Verdict:
    seen = MitigationState(
        rewrite_rules=tuple(r.name for r in rules) if names is None else names,
        url_rewrite_module=module, rewrite_rule_details=tuple(rules) if details else None)
    obs = Observation(Host("EX01", "ex01.corp.example"), NOW - timedelta(hours=1), "test",
                      exsetup_version=build, mitigations=seen, probe_errors=errors)
    return evaluate(obs, catalog, NOW)


def evidence(verdict: Verdict) -> str:
    (line,) = [e.value for e in verdict.evidence if e.kind == "mitigation"]
    return line


MITIGATED = [
    pytest.param(rule(), "the name EOMTv2 gives it", id="eomtv2-rule"),
    pytest.param(rule("EEMS M1.1 PowerShell - inbound"),
                 "the name the Emergency Mitigation Service (M1) gives it", id="eems-rule"),
    pytest.param(rule("RequestBlockingRule1"), "'RequestBlockingRule1' on 'Default Web Site' "
                 "blocks by content", id="admins-own-name-same-content"),
    pytest.param(rule("RequestBlockingRule1", action="CustomResponse"), "CustomResponse",
                 id="custom-response-as-healthchecker-accepts"),
    pytest.param(rule(pattern="(?=.*AutoDiscover)(?=.*PowerShell)", site="default web site",
                      input_="{URLDECODE:{REQUEST_URI}}", grouping="MATCHALL",
                      syntax="ecmascript", action="abortrequest"), "blocks by content",
                 id="case-as-iis-ignores-it"),
    pytest.param(rule(extra=(RewriteCondition("{HTTP_HOST}", "mail"),), grouping="matchany"),
                 "blocks by content", id="matchany-in-any-case"),
    pytest.param(rule(stop=True), "blocks by content", id="stops-processing-itself"),
    pytest.param(rule(extra=(RewriteCondition("{HTTP_HOST}", "mail"),), grouping="MatchAny"),
                 "blocks by content", id="extra-condition-under-matchany"),
]


@pytest.mark.parametrize(("found", "said"), MITIGATED)
def test_rules_that_block_by_content_mitigate(notshell: Catalog, found: RewriteRule,
                                              said: str) -> None:
    verdict = judge(notshell, EOMT_MARCH, found)
    assert verdict.status is Status.MITIGATED, evidence(verdict)
    assert verdict.mitigations == (MITIGATION,)
    assert verdict.cves_open == (RCE,)  # the rule covers the SSRF; 41082 stays open behind it
    assert Flag.MITIGATION_UNREADABLE not in verdict.flags
    assert said in evidence(verdict)
    assert "the interim mitigation only holds until then" in verdict.action


NOT_MITIGATED = [
    pytest.param(rule(pattern=r".*autodiscover\.json.*Powershell.*"),
                 r"uses the superseded pattern '.*autodiscover\\.json.*Powershell.*'",
                 id="superseded-oct-5-pattern"),
    pytest.param(rule(input_="{REQUEST_URI}", pattern=r".*autodiscover\.json.*\@.*Powershell.*"),
                 "uses the superseded pattern", id="superseded-first-pattern"),
    pytest.param(rule(pattern=r"(?=.*autodiscover\.json)(?=.*powershell)"),
                 "uses the superseded pattern", id="msrc-blog-json-lookahead"),
    pytest.param(rule(enabled=False), "'PowerShell - inbound' (the name EOMTv2 gives it) on "
                 "'Default Web Site' does not count: it is disabled", id="disabled"),
    pytest.param(rule("RequestBlockingRule1", negate=True), "negates its condition",
                 id="negated-condition"),
    pytest.param(rule(site="Exchange Back End"),
                 "is on the site 'Exchange Back End', not 'Default Web Site'", id="other-site"),
    pytest.param(rule(action="Rewrite"), "has the action 'Rewrite', not AbortRequest or "
                 "CustomResponse", id="wrong-action"),
    pytest.param(rule(action="None"), "has the action 'None'", id="action-none"),
    pytest.param(rule(input_="{REQUEST_URI}"), "reads '{REQUEST_URI}', not "
                 "{UrlDecode:{REQUEST_URI}} (encoded requests get through)", id="not-url-decoded"),
    pytest.param(rule(match_url="^autodiscover"), "matches the URL '^autodiscover', not '.*'",
                 id="narrower-match-url"),
    pytest.param(rule(extra=(RewriteCondition("{HTTP_HOST}", "mail"),)),
                 "adds 1 other condition(s) under 'MatchAll'", id="extra-condition-under-matchall"),
    pytest.param(rule(pattern="autodiscover"), "has no condition with the pattern",
                 id="known-name-other-pattern"),
    # IIS takes a regular expression's whitespace literally: these patterns match other texts.
    pytest.param(rule(pattern=f" {LOOKAHEAD} "), "has no condition with the pattern",
                 id="pattern-with-spaces"),
    pytest.param(rule(pattern=f"\t{LOOKAHEAD}"), "has no condition with the pattern",
                 id="pattern-with-leading-tab"),
    pytest.param(rule(pattern=f"{LOOKAHEAD}\n"), "has no condition with the pattern",
                 id="pattern-with-trailing-newline"),
    pytest.param(rule(match_url=" .*"), "matches the URL ' .*', not '.*'",
                 id="match-url-leading-space"),
    pytest.param(rule(match_url=".* "), "matches the URL '.* ', not '.*'",
                 id="match-url-trailing-space"),
    pytest.param(rule(site="Default Web Site "), "is on the site 'Default Web Site ', not",
                 id="site-with-trailing-space"),
    pytest.param(rule(extra=(RewriteCondition("{HTTP_HOST}", "mail", ignore_case=True),),
                      grouping="matchany "), "other condition(s) under 'matchany '",
                 id="grouping-with-trailing-space"),
    pytest.param(rule(pattern=LOOKAHEAD + " " * 10, truncated=True),
                 "was cut by the probe", id="long-pattern-cut-to-the-accepted-one"),
    pytest.param(rule(truncated=True), "was cut by the probe", id="truncated"),
    pytest.param(rule(match_negate=True), "negates its match", id="negated-match"),
    pytest.param(rule(ignore_case=False), "compares case-sensitively",
                 id="condition-case-sensitive"),
    pytest.param(rule(syntax="Wildcard"), "uses the pattern syntax 'Wildcard'", id="wildcard"),
    pytest.param(rule(syntax="ExactMatch"), "uses the pattern syntax 'ExactMatch'",
                 id="exact-match"),
    pytest.param(rule(syntax="ECMAScript "), "uses the pattern syntax", id="syntax-spaced"),
    # Not read (a document or stored observation without the field): fail closed.
    pytest.param(rule(match_negate=None), "match negate was not read", id="negate-unread"),
    pytest.param(rule(ignore_case=None), "condition's ignoreCase was not read",
                 id="ignore-case-unread"),
    pytest.param(rule(syntax=None), "patternSyntax was not read", id="syntax-unread"),
    pytest.param(rule(truncated=None), "whether the probe cut it was not read",
                 id="truncated-unread"),
]


@pytest.mark.parametrize(("found", "said"), NOT_MITIGATED)
def test_rules_that_do_not_block_by_content_do_not_mitigate(
        notshell: Catalog, found: RewriteRule, said: str) -> None:
    verdict = judge(notshell, EOMT_MARCH, found)
    assert verdict.status is Status.VULNERABLE
    assert verdict.mitigations == () and verdict.cves_open == (SSRF, RCE)
    assert Flag.MITIGATION_UNREADABLE not in verdict.flags
    line = evidence(verdict)
    assert f"'{found.name}'" in line and "does not count" in line and said in line, line
    assert "apply the interim mitigation now: URL Rewrite request-blocking rule" in \
        verdict.action


def test_a_counting_rule_beside_a_broken_one_mitigates(notshell: Catalog) -> None:
    verdict = judge(notshell, rule(enabled=False), rule("RequestBlockingRule1"))
    assert verdict.status is Status.MITIGATED
    assert "'RequestBlockingRule1'" in evidence(verdict)


STOPPER = rule("Let through", action="None", pattern=".*", stop=True)


@pytest.mark.parametrize("earlier", [
    pytest.param(STOPPER, id="action-none-match-all"),
    pytest.param(rule("Narrow", action="Rewrite", match_url="^owa", pattern="x", stop=True),
                 id="any-stopping-rule"),
    pytest.param(rule("Unread", action="None", pattern=".*", stop=None), id="stop-unread"),
    pytest.param(rule("Mine", stop=True, truncated=True), id="a-cut-rule-stopping"),
])
def test_an_earlier_rule_that_stops_processing_keeps_the_rule_from_counting(
        notshell: Catalog, earlier: RewriteRule) -> None:
    verdict = judge(notshell, EOMT_MARCH, earlier, rule())
    assert verdict.status is Status.VULNERABLE, evidence(verdict)
    assert "may never be reached" in evidence(verdict)
    assert repr(earlier.name) in evidence(verdict)


def test_a_stopping_rule_elsewhere_or_later_or_disabled_does_not_matter(notshell: Catalog) -> None:
    later = judge(notshell, rule(), STOPPER)
    other_site = judge(notshell, rule("X", site="Exchange Back End", stop=True), rule())
    disabled = judge(notshell, rule("Y", action="None", enabled=False, stop=True), rule())
    server_case = judge(notshell, rule("Z", site="DEFAULT WEB SITE", action="None", pattern=".*",
                                      stop=True), rule())
    assert later.status is other_site.status is disabled.status is Status.MITIGATED
    assert server_case.status is Status.VULNERABLE


def test_no_such_rule_says_what_was_read(notshell: Catalog) -> None:
    verdict = judge(notshell, EOMT_MARCH)
    assert verdict.status is Status.VULNERABLE
    assert evidence(verdict) == (f"{MITIGATION}: no rule on 'Default Web Site' blocks "
                                 f"'{LOOKAHEAD}' in {DECODED} (1 rule(s) read)")
    assert judge(notshell).status is Status.VULNERABLE  # read, and no rule at all


def test_a_name_alone_never_mitigates_content_not_read_is_unreadable(notshell: Catalog) -> None:
    """An older probe reads names only: the rule's name is there, its content unknown."""
    verdict = judge(notshell, rule(), details=False)
    assert verdict.status is Status.VULNERABLE
    assert Flag.MITIGATION_UNREADABLE in verdict.flags
    assert verdict.mitigations == ()
    line = evidence(verdict)
    assert "the probe did not read the URL Rewrite rules' content" in line
    assert "rules known by name only: PowerShell - inbound" in line
    assert "run the probe of contract 1.2 or later" in verdict.action
    assert "check by hand whether the interim mitigation is in place" in verdict.action
    # Patched hosts need no mitigation: nothing is flagged there.
    patched = judge(notshell, rule(), details=False, build="15.2.1118.20")
    assert patched.status is Status.PATCHED and Flag.MITIGATION_UNREADABLE not in patched.flags


def test_a_failed_read_is_unreadable_unless_a_counting_rule_was_read(notshell: Catalog) -> None:
    iis = ("iis: the WebAdministration module could not be loaded",)
    unread = judge(notshell, errors=iis)
    assert unread.status is Status.VULNERABLE and Flag.MITIGATION_UNREADABLE in unread.flags
    assert "let the probe account read IIS's configuration" in unread.action
    partial = ("rewrite_rule_details: 3 rules left out (over 200 rules or 20 conditions)",)
    incomplete = judge(notshell, EOMT_MARCH, errors=partial)
    assert Flag.MITIGATION_UNREADABLE in incomplete.flags
    found = judge(notshell, rule(), errors=partial)
    assert found.status is Status.MITIGATED and Flag.MITIGATION_UNREADABLE not in found.flags
    # Without the module's version the rules' read may have failed unseen (as for names).
    no_module = judge(notshell, errors=("installed_updates: access denied",), module=None)
    assert Flag.MITIGATION_UNREADABLE in no_module.flags


def test_exchange_2013_is_mitigated_by_the_same_rule(notshell: Catalog) -> None:
    verdict = judge(notshell, rule("RequestBlockingRule1"), build="15.0.1497.42")
    assert verdict.status is Status.MITIGATED


def test_the_rule_is_no_mitigation_of_another_advisory() -> None:
    shell = load_catalog("2021-05-proxyshell")
    verdict = judge(shell, rule(), build="15.1.2176.9")
    assert verdict.status is Status.VULNERABLE and verdict.mitigations == ()
    assert Flag.MITIGATION_UNREADABLE not in judge(shell, rule(), build="15.1.2176.9",
                                                   details=False).flags


def test_names_still_mitigate_march_2021_without_rule_content() -> None:
    """The March 2021 rules are of kind rewrite_rules (names), unchanged: an older probe's
    names still count there."""
    logon = load_catalog()
    names = ("X-AnonResource-Backend Abort - inbound", "X-BEResource Abort - inbound")
    verdict = judge(logon, build="15.1.2176.2", names=names, details=False)
    assert verdict.status is Status.MITIGATED


# -- the advisory format for content rules --------------------------------------------------------


@pytest.fixture(scope="module")
def notshell_data() -> dict[str, Any]:
    with (DATA / "advisories" / "2022-11-proxynotshell.toml").open("rb") as handle:
        return tomllib.load(handle)


def _mitigation(data: dict[str, Any]) -> dict[str, Any]:
    return next(m for m in data["mitigations"] if m["id"] == MITIGATION)


def _product(data: dict[str, Any], name: str) -> dict[str, Any]:
    return next(p for p in data["products"] if p["product"] == name)


MALFORMED = [
    pytest.param(lambda d: _mitigation(d).pop("site"), id="no-site"),
    pytest.param(lambda d: _mitigation(d).update(patterns=[]), id="no-accepted-pattern"),
    pytest.param(lambda d: _mitigation(d).update(actions="AbortRequest"), id="actions-not-a-list"),
    pytest.param(lambda d: _mitigation(d)["superseded_patterns"].append(
        "(?=.*AUTODISCOVER)(?=.*powershell)"), id="pattern-accepted-and-superseded"),
    pytest.param(lambda d: _mitigation(d).update(name_hints=["PowerShell - inbound"]),
                 id="hint-not-a-table"),
    pytest.param(lambda d: _product(d, "2010").update(mitigated_when=[MITIGATION]),
                 id="not-affected-with-a-mitigation"),
    pytest.param(lambda d: _product(d, "2010")["fixes"].append(
        {"cu": "SP3", "build": "14.3.513.0", "kb": "KB5000978", "supported_cu": False,
         "source": "x"}), id="not-affected-with-a-fix"),
    pytest.param(lambda d: _product(d, "2010").update(upgrade_to="SP3"),
                 id="not-affected-with-a-cu-to-move-to"),
    pytest.param(lambda d: d.pop("update_name"), id="no-update-name"),
    pytest.param(lambda d: d.update(short=""), id="empty-short"),
]


@pytest.mark.parametrize("change", MALFORMED)
def test_malformed_content_rules_are_refused(notshell_data: dict[str, Any], change: Any) -> None:
    data = copy.deepcopy(notshell_data)
    change(data)
    with pytest.raises(AdvisoryError):
        parse_advisory(data)


def test_the_shipped_file_parses(notshell_data: dict[str, Any]) -> None:
    advisory = parse_advisory(copy.deepcopy(notshell_data))
    mitigation = advisory.mitigation(MITIGATION)
    assert mitigation.names == ("PowerShell - inbound", "EEMS M1.1 PowerShell - inbound")
    assert mitigation.content is not None and mitigation.content.site == SITE


# Re-check review (issue 19): Unicode case folding maps 'ſ' (U+017F) to 's' and the Kelvin sign
# to 'k'; IIS compares case-insensitively in ASCII, so these are other texts and never match.
@pytest.mark.parametrize("changed", [
    {"pattern": "(?=.*autodiscover)(?=.*powerſhell)"},
    {"pattern": "(?=.*autodiſcover)(?=.*powershell)"},
    {"input_": "{UrlDecode:{REQUEſT_URI}}"},
    {"site": "Default Web ſite"},
    {"action": "AbortRequeſt"},
], ids=["pattern-long-s", "pattern-long-s-2", "input-long-s", "site-long-s", "action-long-s"])
def test_only_ascii_case_is_ignored(notshell, changed):
    verdict = judge(notshell, rule(**changed))
    assert verdict.status is Status.VULNERABLE, evidence(verdict)


def test_a_dropped_entry_keeps_the_rule_from_counting(notshell):
    """An entry the probe's reader dropped (malformed) may be an earlier rule that stops
    processing: the rules' order is then not known whole, so nothing is proven."""
    verdict = judge(notshell, rule(), errors=(
        "rewrite_rule_details: entry 1 dropped: a text holds a NUL character",))
    assert verdict.status is Status.VULNERABLE
    assert Flag.MITIGATION_UNREADABLE in verdict.flags
    assert judge(notshell, rule()).status is Status.MITIGATED
