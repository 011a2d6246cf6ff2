"""Minor version 1.2 of the probe contract (issue 19): each URL Rewrite rule's content
(``mitigations.rewrite_rule_details``) and the .NET Framework release (``dotnet_release``).

Literal documents from probe_documents/, documents of earlier minor versions (which must read
exactly as before), and hostile ones: the reader trusts no length, type or count in these parts,
drops what is wrong with a probe error and keeps the rest of the document.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collectors.probe import (
    MAX_CONDITIONS,
    MAX_DOTNET_RELEASE,
    MAX_DROP_LINES,
    MAX_RULE_TEXT,
    MAX_RULES,
    load_document,
    observation_from_document,
    parse_document,
    read_document,
)
from collectors.remote import Target, WinrmConfig, probe_host
from compliance.codec import observation_from_dict, observation_to_dict
from compliance.models import Host, Observation, RewriteCondition, RewriteRule
from tests.collectors.documents import (
    PROXYNOTSHELL_INPUT,
    PROXYNOTSHELL_PATTERN,
    dumps,
    probe_document,
    rewrite_rule,
)
from tests.peers.wsman import HostBehavior

DOCUMENTS = Path(__file__).parent / "probe_documents"
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
NEW_FIELDS = ("rewrite_rule_details", "dotnet_release")

# As the probe prints it now (documents.rewrite_rule()), and as the literal documents written
# before the probe read match negate, ignoreCase, patternSyntax and whether it cut a text hold it
# (those fields not read: None; stop_processing, which they hold, is kept).
EOMTV2 = RewriteRule(
    name="PowerShell - inbound", site="Default Web Site", match_url=".*", action="AbortRequest",
    conditions=(RewriteCondition(PROXYNOTSHELL_INPUT, PROXYNOTSHELL_PATTERN, False, True),),
    logical_grouping="MatchAll", enabled=True, match_negate=False, pattern_syntax="ECMAScript",
    stop_processing=True, truncated=False)
EARLIER = replace(EOMTV2, conditions=(RewriteCondition(PROXYNOTSHELL_INPUT, PROXYNOTSHELL_PATTERN, False),),
                  match_negate=None, pattern_syntax=None, truncated=None)


def _fixture(name: str) -> Observation:
    path = DOCUMENTS / name
    obs = parse_document(path.read_bytes(), Host(json.loads(path.read_text())["host"]), "import", NOW)
    assert obs.failure is None, obs.failure
    return obs


def _rules(obs: Observation) -> tuple[RewriteRule, ...] | None:
    assert obs.mitigations is not None
    return obs.mitigations.rewrite_rule_details


# -- literal documents --------------------------------------------------------------------------


def test_eomtv2s_rule_is_read_with_its_content():
    obs = _fixture("exchange2019_cu12_proxynotshell_eomtv2_rule.json")
    assert _rules(obs) == (EARLIER,)
    assert obs.mitigations is not None and obs.mitigations.rewrite_rules == ("PowerShell - inbound",)
    assert obs.dotnet_release == 528049
    assert obs.exsetup_version == "15.2.1118.15" and obs.probe_errors == ()


def test_eems_and_an_admins_rule_by_other_names_and_the_other_rules_of_every_site():
    obs = _fixture("exchange2019_cu11_proxynotshell_eems_and_admin_rules.json")
    assert _rules(obs) == (
        replace(EARLIER, name="EEMS M1.1 PowerShell - inbound"),
        replace(EARLIER, name="RequestBlockingRule1"),
        RewriteRule(name="Redirect root to OWA", site="Default Web Site", match_url="^$",
                    action="Redirect", conditions=(), logical_grouping="MatchAll", enabled=False,
                    stop_processing=True),
        RewriteRule(name="Block EWS from outside", site="Exchange Back End", match_url="^EWS/",
                    action="CustomResponse",
                    conditions=(RewriteCondition("{REMOTE_ADDR}", "^10\\.", True),
                                RewriteCondition("{HTTPS}", "^ON$", False)),
                    logical_grouping="MatchAny", enabled=True, stop_processing=False),
    )
    # The names stay what they were: server level and Default Web Site only.
    assert obs.mitigations is not None and obs.mitigations.rewrite_rules == (
        "EEMS M1.1 PowerShell - inbound", "RequestBlockingRule1", "Redirect root to OWA")


def test_a_superseded_pattern_is_kept_as_written_and_an_unreadable_release_is_none():
    obs = _fixture("exchange2016_cu23_proxynotshell_superseded_pattern.json")
    (rule,) = _rules(obs) or ()
    assert rule.name == "PowerShell - inbound" and rule.site == "Default Web Site"
    assert rule.conditions == (RewriteCondition(PROXYNOTSHELL_INPUT, ".*autodiscover\\.json.*Powershell.*", False),)
    assert rule.conditions[0].pattern != PROXYNOTSHELL_PATTERN
    assert obs.dotnet_release is None
    assert obs.probe_errors == ("dotnet: Requested registry access is not allowed.",)


def test_the_release_and_rules_read_but_none_there():
    obs = _fixture("exchange2013_cu23_dotnet_release.json")
    assert obs.dotnet_release == 528049
    assert _rules(obs) == ()  # read, no rule: not None (not read)


OLDER = [path.name for path in sorted(DOCUMENTS.glob("*.json"))
         if not set(NEW_FIELDS) & (set(json.loads(path.read_text())) |
                                   set(json.loads(path.read_text())["mitigations"]))]


def test_there_are_documents_of_earlier_minor_versions():
    assert len(OLDER) >= 8 and "exchange2016_web_config_unresolved.json" in OLDER


@pytest.mark.parametrize("name", OLDER)
def test_a_document_of_an_earlier_minor_version_reads_as_before(name: str):
    document = json.loads((DOCUMENTS / name).read_text())
    obs = _fixture(name)
    assert _rules(obs) is None and obs.dotnet_release is None
    assert obs.probe_errors == tuple(document["errors"])  # no line added by the reader
    # The same document with the fields null reads the same: null and absent both mean not read.
    document["dotnet_release"] = None
    document["mitigations"]["rewrite_rule_details"] = None
    assert parse_document(json.dumps(document), obs.host, "import", NOW) == obs
    stored = observation_to_dict(obs)
    assert not set(NEW_FIELDS) & (set(stored) | set(stored["mitigations"]))


def test_the_import_path_reads_the_new_fields():
    # What `python -m collectors import` does (collectors/job.py import_documents).
    path = DOCUMENTS / "exchange2019_cu12_proxynotshell_eomtv2_rule.json"
    document = load_document(read_document(path))
    obs = observation_from_document(document, Host("EX19-02"), "import:x", NOW)
    assert _rules(obs) == (EARLIER,) and obs.dotnet_release == 528049


@pytest.mark.parametrize(("name", "field"), [
    ("dotnet_release_text.json", "dotnet_release"),
    ("rewrite_rule_details_object.json", "rewrite_rule_details"),
])
def test_a_field_of_the_wrong_json_type_refuses_the_document(name: str, field: str):
    obs = parse_document((DOCUMENTS / "invalid" / name).read_bytes(), Host("EX1"), "winrm", NOW)
    assert obs.failure is not None and obs.failure.reason == "bad_output"
    assert field in obs.failure.detail
    assert obs.exsetup_version is None


# -- built documents: absent, null, empty, boundaries --------------------------------------------


def _parse(rules: list[Any] | None = None, release: Any = None, *, raw: dict[str, Any] | None = None,
           **overrides: Any) -> Observation:
    document = probe_document("EX1", "15.2.1118.15", rewrite_rule_details=rules, dotnet_release=None,
                              errors=["eomt: key missing"])
    if release is not None:
        document["dotnet_release"] = release
    document.update(raw or {})
    document["mitigations"].update(overrides)
    obs = parse_document(dumps(document), Host("EX1"), "winrm", NOW)
    assert obs.failure is None, obs.failure
    assert obs.exsetup_version == "15.2.1118.15"  # the build evidence is never lost to these parts
    return obs


def _added_errors(obs: Observation) -> list[str]:
    assert obs.probe_errors[0] == "eomt: key missing"  # the probe's own lines come first
    return list(obs.probe_errors[1:])


@pytest.mark.parametrize(("rules", "expected"), [
    pytest.param(None, None, id="absent"),
    pytest.param([], (), id="empty"),
    pytest.param([rewrite_rule()], (EOMTV2,), id="eomtv2"),
])
def test_absent_empty_and_one_rule(rules: list[Any] | None, expected: tuple[RewriteRule, ...] | None):
    obs = _parse(rules)
    assert _rules(obs) == expected and _added_errors(obs) == []


def test_null_is_not_read():
    obs = _parse(raw={"dotnet_release": None}, rewrite_rule_details=None)
    assert _rules(obs) is None and obs.dotnet_release is None and _added_errors(obs) == []


@pytest.mark.parametrize("release", [0, 378389, 528049, 533320, MAX_DOTNET_RELEASE])
def test_a_release_in_range_is_kept(release: int):
    obs = _parse(release=release)
    assert obs.dotnet_release == release and _added_errors(obs) == []


@pytest.mark.parametrize(("release", "what"), [
    pytest.param(-1, "out of range", id="negative"),  # a DWORD past 2**31, as PowerShell reads it
    pytest.param(MAX_DOTNET_RELEASE + 1, "out of range", id="one-too-big"),
    pytest.param(2**40, "out of range", id="huge"),
    pytest.param(528049.5, "a number", id="fraction"),
    pytest.param(528049.0, "a number", id="float"),
])
def test_a_release_out_of_range_is_none_with_an_error(release: Any, what: str):
    obs = _parse(release=release)
    assert obs.dotnet_release is None
    (error,) = _added_errors(obs)
    assert error.startswith("dotnet_release: left out, ") and what in error
    assert str(release) not in error


@pytest.mark.parametrize("release", ["528049", True, [528049], {"Release": 528049}])
def test_a_release_of_another_json_type_refuses_the_document(release: Any):
    document = probe_document("EX1", "15.2.1118.15")
    document["dotnet_release"] = release
    obs = parse_document(dumps(document), Host("EX1"), "winrm", NOW)
    assert obs.failure is not None and "dotnet_release" in obs.failure.detail


@pytest.mark.parametrize("rules", ["PowerShell - inbound", 7, True, {"name": "x"}])
def test_rules_of_another_json_type_refuse_the_document(rules: Any):
    document = probe_document("EX1", "15.2.1118.15", rewrite_rule_details=rules)
    obs = parse_document(dumps(document), Host("EX1"), "winrm", NOW)
    assert obs.failure is not None and "rewrite_rule_details" in obs.failure.detail


# -- hostile and broken entries -------------------------------------------------------------------

LONG = "x" * (MAX_RULE_TEXT + 1)
GOOD_CONDITION = {"input": PROXYNOTSHELL_INPUT, "pattern": PROXYNOTSHELL_PATTERN, "negate": False}


def _with(**changes: Any) -> dict[str, Any]:
    return {**rewrite_rule(), **changes}


def _without(key: str) -> dict[str, Any]:
    entry = rewrite_rule()
    del entry[key]
    return entry


def _nested(depth: int) -> Any:
    value: Any = "deep"
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(("entry", "why"), [
    pytest.param("PowerShell - inbound", "a text, not an object", id="a-name"),
    pytest.param(None, "null, not an object", id="null"),
    pytest.param([rewrite_rule()], "a list, not an object", id="a-list"),
    pytest.param(_with(name=LONG), "name is longer than 1024 characters", id="name-too-long"),
    pytest.param(_with(pattern=LONG, conditions=[{**GOOD_CONDITION, "pattern": LONG}]),
                 "condition 1: pattern is longer than 1024", id="pattern-too-long"),
    pytest.param(_with(match_url=LONG), "match_url is longer", id="match-url-too-long"),
    pytest.param(_with(site=""), "site is empty", id="site-empty"),
    pytest.param(_with(name=""), "name is empty", id="name-empty"),
    pytest.param(_without("site"), "site is missing", id="site-missing"),
    pytest.param(_without("enabled"), "enabled is missing", id="enabled-missing"),
    pytest.param(_without("logical_grouping"), "logical_grouping is missing", id="grouping-missing"),
    pytest.param(_with(enabled="true"), "enabled is a text, not true or false", id="enabled-text"),
    pytest.param(_with(enabled=1), "enabled is an integer", id="enabled-number"),
    pytest.param(_with(action=None), "action is null, not a text", id="action-null"),
    pytest.param(_with(action=["AbortRequest"]), "action is a list", id="action-list"),
    pytest.param(_with(name={"$ne": ""}), "name is an object", id="name-object"),
    pytest.param(_with(conditions="{UrlDecode:{REQUEST_URI}}"), "conditions is a text", id="conditions-text"),
    pytest.param(_with(conditions=None), "conditions is null", id="conditions-null"),
    pytest.param(_without("conditions"), "conditions is missing", id="conditions-missing"),
    pytest.param(_with(conditions=[GOOD_CONDITION] * (MAX_CONDITIONS + 1)), "more than 20 conditions",
                 id="too-many-conditions"),
    pytest.param(_with(conditions=[PROXYNOTSHELL_PATTERN]), "condition 1 is a text", id="condition-text"),
    pytest.param(_with(conditions=[GOOD_CONDITION, {**GOOD_CONDITION, "negate": "false"}]),
                 "condition 2: negate is a text", id="negate-text"),
    pytest.param(_with(conditions=[{**GOOD_CONDITION, "negate": 0}]), "condition 1: negate is an integer",
                 id="negate-zero"),
    pytest.param(_with(conditions=[{**GOOD_CONDITION, "ignore_case": "true"}]),
                 "condition 1: ignore_case is a text", id="ignore-case-text"),
    pytest.param(_with(match_negate="false"), "match_negate is a text", id="match-negate-text"),
    pytest.param(_with(stop_processing="yes"), "stop_processing is a text", id="stop-processing-text"),
    pytest.param(_with(truncated=0), "truncated is an integer", id="truncated-number"),
    pytest.param(_with(pattern_syntax=1), "pattern_syntax is an integer", id="pattern-syntax-number"),
    pytest.param(_with(pattern_syntax=LONG), "pattern_syntax is longer", id="pattern-syntax-too-long"),
    pytest.param(_with(conditions=[{"input": PROXYNOTSHELL_INPUT, "negate": False}]),
                 "condition 1: pattern is missing", id="pattern-missing"),
    pytest.param(_with(conditions=_nested(200)), "condition 1 is a list", id="nested-garbage"),
    pytest.param(_with(name=_nested(200)), "name is a list", id="nested-name"),
    pytest.param(_with(name="Power\x00Shell - inbound"), "NUL", id="nul"),
    pytest.param(_with(name="PowerShell \ud800 inbound"), "lone surrogates", id="lone-surrogate"),
])
def test_a_malformed_entry_is_dropped_with_an_error_and_the_rest_kept(entry: Any, why: str):
    obs = _parse([rewrite_rule("Before"), entry, rewrite_rule("After")])
    assert _rules(obs) == (replace(EOMTV2, name="Before"), replace(EOMTV2, name="After"))
    (error,) = _added_errors(obs)
    assert error.startswith("rewrite_rule_details: entry 2 dropped: ") and why in error, error
    assert len(error) < 200 and "x" * 100 not in error and "\x00" not in error


@pytest.mark.parametrize("entry", [
    pytest.param(_with(name="x" * MAX_RULE_TEXT, site="s" * MAX_RULE_TEXT), id="texts-at-the-limit"),
    pytest.param(_with(conditions=[GOOD_CONDITION] * MAX_CONDITIONS), id="conditions-at-the-limit"),
    pytest.param(_with(conditions=[], match_url="", action="", logical_grouping=""), id="empty-texts"),
    pytest.param(_with(unknown={"nested": [[[]]]}), id="unknown-keys"),
])
def test_an_entry_within_the_bounds_is_kept(entry: dict[str, Any]):
    obs = _parse([entry])
    assert len(_rules(obs) or ()) == 1 and _added_errors(obs) == []


def test_the_rule_fields_the_matcher_needs_are_read():
    conditions = ((PROXYNOTSHELL_INPUT, PROXYNOTSHELL_PATTERN, False),)
    obs = _parse([rewrite_rule("Let through", action="None", stop_processing=True),
                  rewrite_rule(match_negate=True, pattern_syntax="Wildcard", truncated=True,
                               ignore_case=False, stop_processing=False, conditions=conditions)])
    first, second = _rules(obs) or ()
    assert first.stop_processing is True and first.match_negate is False
    assert first.pattern_syntax == "ECMAScript" and first.truncated is False
    assert first.conditions[0].ignore_case is True
    assert (second.match_negate, second.pattern_syntax, second.truncated, second.stop_processing) == (
        True, "Wildcard", True, False)
    assert second.conditions[0].ignore_case is False
    assert _added_errors(obs) == []


@pytest.mark.parametrize("key", ["match_negate", "pattern_syntax", "stop_processing", "truncated"])
def test_a_rule_field_not_written_reads_as_not_read(key: str):
    (rule,) = _rules(_parse([_without(key)])) or ()
    assert getattr(rule, key) is None
    condition = {**GOOD_CONDITION}
    (rule,) = _rules(_parse([_with(conditions=[condition])])) or ()
    assert rule.conditions[0].ignore_case is None


def test_a_text_at_the_cut_is_taken_as_cut():
    # The probe cuts texts at MAX_RULE_TEXT: a text of that length may be the head of a longer one.
    for entry in (_with(match_url="x" * MAX_RULE_TEXT),
                  _with(conditions=[{**GOOD_CONDITION, "pattern": PROXYNOTSHELL_PATTERN.ljust(MAX_RULE_TEXT)}])):
        (rule,) = _rules(_parse([entry])) or ()
        assert rule.truncated is True
    (rule,) = _rules(_parse([_with(match_url="x" * (MAX_RULE_TEXT - 1))])) or ()
    assert rule.truncated is False


def test_hostile_text_stays_data():
    # Terminal escapes, bidi overrides, markup and format strings: kept as the server sent them, to be
    # escaped where shown; nothing here reads them as anything but text.
    name = "PowerShell - inbound\u202e\x1b[31m<script>{0}%s\r\n"
    pattern = "(?=.*autodiscover)(?=.*powershell)\u2066\x7f"
    obs = _parse([rewrite_rule(name, conditions=((PROXYNOTSHELL_INPUT, pattern, False),))])
    (rule,) = _rules(obs) or ()
    assert rule.name == name and rule.conditions[0].pattern == pattern
    assert _added_errors(obs) == []


def test_ten_thousand_rules_are_cut_to_the_bound_not_refused():
    rules = [rewrite_rule(f"rule {n}") for n in range(10_000)]
    obs = _parse(rules)
    assert [rule.name for rule in _rules(obs) or ()] == [f"rule {n}" for n in range(MAX_RULES)]
    assert _added_errors(obs) == [f"rewrite_rule_details: {10_000 - MAX_RULES} entries past the first "
                                  f"{MAX_RULES} left out"]


def test_ten_thousand_broken_rules_give_a_bounded_number_of_error_lines():
    obs = _parse([{"name": n} for n in range(10_000)])
    assert _rules(obs) == ()
    errors = _added_errors(obs)
    assert len(errors) == 7
    assert errors[:5] == [f"rewrite_rule_details: entry {n} dropped: conditions is missing, not a list"
                          for n in range(1, 6)]
    assert errors[5:] == [f"rewrite_rule_details: {MAX_RULES - 5} more entries dropped",
                          f"rewrite_rule_details: {10_000 - MAX_RULES} entries past the first {MAX_RULES} left out"]


def test_garbage_deeper_than_the_document_allows_costs_only_the_entry():
    # 100 levels: a document refuses nesting deeper than 16 anywhere else.
    obs = _parse([rewrite_rule(), {"name": "x", "conditions": [_nested(100)]}])
    assert _rules(obs) == (EOMTV2,)
    (error,) = _added_errors(obs)
    assert error == "rewrite_rule_details: entry 2 dropped: condition 1 is a list, not an object"
    document = probe_document("EX1", "15.2.1118.15", errors=["eomt: key missing"])
    document["extra"] = _nested(100)
    assert parse_document(dumps(document), Host("EX1"), "winrm", NOW).failure is not None


def test_an_unvalidated_document_cannot_break_the_reader():
    # observation_from_document trusts nothing of these parts, even without load_document.
    document = probe_document("EX1", "15.2.1118.15", errors=["eomt: key missing"])
    document["dotnet_release"] = {"$gt": 0}
    document["mitigations"]["rewrite_rule_details"] = "PowerShell - inbound"
    obs = observation_from_document(document, Host("EX1"), "t", NOW)
    assert obs.dotnet_release is None and _rules(obs) is None
    assert _added_errors(obs) == [
        "rewrite_rule_details: left out, a text and not a list",
        "dotnet_release: left out, an object and not a .NET Framework release (a whole number from 0 to "
        f"{MAX_DOTNET_RELEASE})"]


def test_a_stored_observation_of_a_1_2_document_round_trips():
    for name in ("exchange2019_cu11_proxynotshell_eems_and_admin_rules.json",
                 "exchange2016_cu23_proxynotshell_superseded_pattern.json",
                 "exchange2013_cu23_dotnet_release.json"):
        obs = _fixture(name)
        assert observation_from_dict(json.loads(json.dumps(observation_to_dict(obs)))) == obs


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=30),
              st.sampled_from([PROXYNOTSHELL_INPUT, PROXYNOTSHELL_PATTERN, "Default Web Site", ""])),
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.text(max_size=8), children, max_size=4)),
    max_leaves=12)
rule_like = st.fixed_dictionaries(
    {}, optional={key: json_values for key in ("site", "name", "match_url", "conditions", "logical_grouping",
                                               "action", "enabled")})


@given(rules=st.lists(st.one_of(json_values, rule_like, st.just(rewrite_rule())), max_size=12),
       release=st.one_of(st.none(), st.integers(-(2**70), 2**70), st.floats()))
def test_whatever_the_content_it_costs_only_itself(rules: list[Any], release: Any) -> None:
    obs = _parse(rules, release)
    kept = _rules(obs) or ()
    assert len(kept) <= len(rules)
    assert all(isinstance(rule, RewriteRule) and rule.name and rule.site for rule in kept)
    assert kept.count(EOMTV2) >= rules.count(rewrite_rule())
    errors = _added_errors(obs)
    assert all(error.startswith(("rewrite_rule_details: ", "dotnet_release: ")) for error in errors)
    assert len(errors) <= MAX_DROP_LINES + 2
    assert (obs.dotnet_release is None) is not (
        isinstance(release, int) and not isinstance(release, bool) and 0 <= release <= MAX_DOTNET_RELEASE)


# -- end to end: the WS-Management peer serves a 1.2 document -------------------------------------


@pytest.mark.integration
def test_a_1_2_document_flows_through_winrm(wsman_peer):
    name = "R-PROBE-1-2"
    document = json.loads((DOCUMENTS / "exchange2019_cu12_proxynotshell_eomtv2_rule.json").read_text())
    document["collected_at"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    wsman_peer.set_host(name, HostBehavior(stdout=dumps(document), chunks=3))
    config = WinrmConfig(username=wsman_peer.username, ca_file=str(wsman_peer.ca_file), deadline_seconds=10,
                         read_timeout_seconds=4, operation_timeout_seconds=2, retries=0)
    obs = probe_host(Target(Host(name), wsman_peer.url(name)), config, wsman_peer.password)
    assert obs.failure is None, obs.failure
    assert _rules(obs) == (EARLIER,) and obs.dotnet_release == 528049
    assert observation_from_dict(json.loads(json.dumps(observation_to_dict(obs)))) == obs
