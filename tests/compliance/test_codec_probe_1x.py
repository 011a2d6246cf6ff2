"""The stored form of an observation and the probe's minor version 1.2 fields (issue 19):
``mitigations.rewrite_rule_details`` and ``dotnet_release`` are written only when read, so every
observation without them encodes to the very text stored before they existed (stored digests
cover that text); with them it round-trips; a forged stored value is not taken for one."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from collectors.probe import parse_document
from compliance.codec import observation_from_dict, observation_to_dict
from compliance.evaluate import assess
from compliance.models import (
    AppPoolState,
    Host,
    InstalledUpdate,
    MitigationState,
    Observation,
    RewriteCondition,
    RewriteRule,
    ServiceState,
    server_roles,
)

DOCUMENTS = Path(__file__).resolve().parents[1] / "collectors" / "probe_documents"
SEEN = datetime(2026, 11, 25, 11, 0, tzinfo=UTC)

EOMTV2 = RewriteRule(
    name="PowerShell - inbound", site="Default Web Site", match_url=".*", action="AbortRequest",
    conditions=(RewriteCondition("{UrlDecode:{REQUEST_URI}}", "(?=.*autodiscover)(?=.*powershell)", False),),
    logical_grouping="MatchAll", enabled=True)
BACK_END = RewriteRule(
    name="Block EWS\u202e from outside", site="Exchange Back End", match_url="^EWS/", action="CustomResponse",
    conditions=(RewriteCondition("{REMOTE_ADDR}", "^10\\.", True), RewriteCondition("{HTTPS}", "^ON$", False)),
    logical_grouping="MatchAny", enabled=False)


# As the probe of contract 1.2 reads it now: every field IIS's rule has that the matcher needs.
FULL = replace(EOMTV2, conditions=(RewriteCondition("{UrlDecode:{REQUEST_URI}}",
                                                    "(?=.*autodiscover)(?=.*powershell)", False, True),),
               match_negate=False, pattern_syntax="ECMAScript", stop_processing=True, truncated=False)
ODD = replace(BACK_END, conditions=(RewriteCondition("{REMOTE_ADDR}", "^10\\.", True, False),
                                    RewriteCondition("{HTTPS}", "^ON$", False)),
              match_negate=True, pattern_syntax="Wildcard", stop_processing=False, truncated=True)


def _dumps(data: object) -> str:
    # As store/snapshots.py writes an observation: sorted keys, no spaces, not ASCII-escaped.
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def observe(*, details: tuple[RewriteRule, ...] | None = None, release: int | None = None) -> Observation:
    return Observation(
        host=Host("EX1", fqdn="ex1.corp.example", roles=server_roles(["Mailbox"])), observed_at=SEEN,
        source="winrm", exsetup_version="15.2.1118.15",
        installed_updates=(InstalledUpdate("KB5019077", "Security Update (KB5019077)", "2022-10-12"),),
        mitigations=MitigationState(
            rewrite_rules=("PowerShell - inbound",),
            services={"MSExchangeHM": ServiceState("Running", "Auto")},
            app_pools={"MSExchangeECPAppPool": AppPoolState("Started", True)},
            url_rewrite_module="7.2.1993", eomt=None, defender_signature_version="1.421.1512.0",
            rewrite_rule_details=details),
        probe_errors=("dotnet: Requested registry access is not allowed.",),
        log_window_days=30.2, dotnet_release=release)


# The stored text of observe() as the store wrote it before minor version 1.2 existed, by hand.
STORED_BEFORE = (
    '{"admin_display_version":null,"exsetup_version":"15.2.1118.15","failure":null,'
    '"host":{"ad_build":null,"dag":null,"dn":null,"fqdn":"ex1.corp.example","name":"EX1",'
    '"problems":[],"roles":["Mailbox"],"site":null},'
    '"indicators":[],"indicators_truncated":false,'
    '"installed_updates":[{"installed_on":"2022-10-12","kb":"KB5019077","name":"Security Update (KB5019077)"}],'
    '"log_window_days":30.2,'
    '"mitigations":{"app_pools":{"MSExchangeECPAppPool":{"auto_start":true,"state":"Started"}},'
    '"defender_signature_version":"1.421.1512.0","eomt":null,"rewrite_rules":["PowerShell - inbound"],'
    '"services":{"MSExchangeHM":{"start_mode":"Auto","status":"Running"}},"url_rewrite_module":"7.2.1993"},'
    '"observed_at":"2026-11-25T11:00:00+00:00",'
    '"probe_errors":["dotnet: Requested registry access is not allowed."],'
    '"source":"winrm","suspicious_files":[]}'
)


def test_an_observation_without_the_fields_encodes_exactly_as_before() -> None:
    assert _dumps(observation_to_dict(observe())) == STORED_BEFORE


def test_an_observation_stored_before_reads_as_not_read_and_encodes_the_same() -> None:
    observation = observation_from_dict(json.loads(STORED_BEFORE))
    assert observation == observe()
    assert observation.mitigations is not None and observation.mitigations.rewrite_rule_details is None
    assert observation.dotnet_release is None
    assert _dumps(observation_to_dict(observation)) == STORED_BEFORE


def test_a_failed_probe_without_mitigations_encodes_as_before() -> None:
    failed = Observation(Host("EX2"), SEEN, "winrm", mitigations=None)
    assert set(observation_to_dict(failed)) == {
        "host", "observed_at", "source", "exsetup_version", "admin_display_version", "installed_updates",
        "mitigations", "indicators", "suspicious_files", "probe_errors", "log_window_days",
        "indicators_truncated", "failure"}


@pytest.mark.parametrize("name", sorted(path.name for path in DOCUMENTS.glob("*.json")))
def test_every_fixture_document_without_the_fields_stores_none_of_them(name: str) -> None:
    text = (DOCUMENTS / name).read_text(encoding="utf-8")
    document = json.loads(text)
    observation = parse_document(text, Host(document["host"]), "import", SEEN)
    stored = observation_to_dict(observation)
    assert ("dotnet_release" in stored) is (document.get("dotnet_release") is not None)
    assert ("rewrite_rule_details" in stored["mitigations"]) is (
        document["mitigations"].get("rewrite_rule_details") is not None)
    assert observation_from_dict(json.loads(_dumps(stored))) == observation


def test_the_stored_form_of_the_fields() -> None:
    stored = observation_to_dict(observe(details=(EOMTV2, BACK_END), release=528049))
    assert stored["dotnet_release"] == 528049
    assert stored["mitigations"]["rewrite_rule_details"] == [
        {"name": "PowerShell - inbound", "site": "Default Web Site", "match_url": ".*", "action": "AbortRequest",
         "conditions": [{"input": "{UrlDecode:{REQUEST_URI}}", "pattern": "(?=.*autodiscover)(?=.*powershell)",
                         "negate": False}],
         "logical_grouping": "MatchAll", "enabled": True},
        {"name": "Block EWS\u202e from outside", "site": "Exchange Back End", "match_url": "^EWS/",
         "action": "CustomResponse",
         "conditions": [{"input": "{REMOTE_ADDR}", "pattern": "^10\\.", "negate": True},
                        {"input": "{HTTPS}", "pattern": "^ON$", "negate": False}],
         "logical_grouping": "MatchAny", "enabled": False},
    ]
    # Everything else is what it was: the fields are additions only.
    before = json.loads(STORED_BEFORE)
    stored.pop("dotnet_release")
    stored["mitigations"].pop("rewrite_rule_details")
    assert json.loads(_dumps(stored)) == before


@pytest.mark.parametrize("details", [
    pytest.param(None, id="not-read"),
    pytest.param((), id="read-no-rule"),
    pytest.param((EOMTV2,), id="eomtv2"),
    pytest.param((EOMTV2, replace(EOMTV2, name="EEMS M1.1 PowerShell - inbound"), BACK_END), id="several"),
])
@pytest.mark.parametrize("release", [None, 0, 528049])
def test_observations_round_trip(details: tuple[RewriteRule, ...] | None, release: int | None) -> None:
    observation = observe(details=details, release=release)
    stored = json.loads(_dumps(observation_to_dict(observation)))
    assert ("rewrite_rule_details" in stored["mitigations"]) is (details is not None)
    assert ("dotnet_release" in stored) is (release is not None)
    assert observation_from_dict(stored) == observation


def test_the_newer_rule_fields_are_stored_only_when_read() -> None:
    stored = observation_to_dict(observe(details=(FULL, ODD, EOMTV2)))["mitigations"]["rewrite_rule_details"]
    assert stored[0]["match_negate"] is False and stored[0]["pattern_syntax"] == "ECMAScript"
    assert stored[0]["stop_processing"] is True and stored[0]["truncated"] is False
    assert stored[0]["conditions"][0]["ignore_case"] is True
    assert (stored[1]["match_negate"], stored[1]["pattern_syntax"], stored[1]["truncated"]) == (True, "Wildcard", True)
    assert stored[1]["conditions"][0]["ignore_case"] is False and "ignore_case" not in stored[1]["conditions"][1]
    # A rule without them (stored before they were read) keeps its former form exactly.
    assert set(stored[2]) == {"name", "site", "match_url", "action", "conditions", "logical_grouping", "enabled"}
    assert set(stored[2]["conditions"][0]) == {"input", "pattern", "negate"}
    observation = observe(details=(FULL, ODD, EOMTV2))
    assert observation_from_dict(json.loads(_dumps(observation_to_dict(observation)))) == observation


@pytest.mark.parametrize(("key", "value"), [
    ("match_negate", "false"), ("stop_processing", 0), ("truncated", "no"), ("pattern_syntax", 1)])
def test_a_forged_newer_rule_field_leaves_the_rule_out(key: str, value: Any) -> None:
    good = observation_to_dict(observe(details=(FULL,)))["mitigations"]["rewrite_rule_details"][0]
    observation = _forged(details=[good, {**good, key: value}])
    assert observation.mitigations is not None
    assert observation.mitigations.rewrite_rule_details == (FULL,)
    condition = {**good["conditions"][0], "ignore_case": "true"}
    assert _forged(details=[{**good, "conditions": [condition]}]).mitigations.rewrite_rule_details == ()  # type: ignore[union-attr]


def _forged(details: Any = None, release: Any = None) -> Observation:
    stored = json.loads(STORED_BEFORE)
    if details is not None:
        stored["mitigations"]["rewrite_rule_details"] = details
    if release is not None:
        stored["dotnet_release"] = release
    return observation_from_dict(stored)


GOOD = observation_to_dict(observe(details=(EOMTV2,)))["mitigations"]["rewrite_rule_details"][0]


@pytest.mark.parametrize("entry", [
    pytest.param("PowerShell - inbound", id="a-name"),
    pytest.param({**GOOD, "enabled": "true"}, id="enabled-text"),
    pytest.param({**GOOD, "name": None}, id="name-null"),
    pytest.param({key: value for key, value in GOOD.items() if key != "site"}, id="site-missing"),
    pytest.param({**GOOD, "conditions": "x"}, id="conditions-text"),
    pytest.param({**GOOD, "conditions": [["x"]]}, id="condition-list"),
    pytest.param({**GOOD, "conditions": [{"input": "a", "pattern": "b", "negate": "no"}]}, id="negate-text"),
])
def test_a_forged_stored_rule_is_left_out(entry: Any) -> None:
    observation = _forged(details=[GOOD, entry])
    assert observation.mitigations is not None
    assert observation.mitigations.rewrite_rule_details == (EOMTV2,)


@pytest.mark.parametrize(("value", "expected"), [
    pytest.param("528049", None, id="text"),
    pytest.param({"x": 1}, None, id="object"),
    pytest.param(True, None, id="boolean"),
    pytest.param(528049.0, None, id="float"),
    pytest.param(528049, 528049, id="whole-number"),
])
def test_a_stored_release_is_a_whole_number_or_none(value: Any, expected: int | None) -> None:
    assert _forged(release=value).dotnet_release == expected


@pytest.mark.parametrize("value", ["forged", {"PowerShell - inbound": GOOD}, 7])
def test_stored_rules_that_are_not_a_list_are_not_read(value: Any) -> None:
    observation = _forged(details=value)
    assert observation.mitigations is not None and observation.mitigations.rewrite_rule_details is None


def test_a_1_2_observation_is_saved_read_back_and_verified(empty_store, shipped_catalog) -> None:
    # Through a real store: what the digests cover is this encoding, so the snapshot verifies.
    observations = [observe(details=(EOMTV2, BACK_END), release=528049),
                    replace(observe(), host=Host("EX2", roles=server_roles(["Mailbox"])))]
    snapshot = assess(observations, shipped_catalog, SEEN, source="test", tool_version="0.test")
    snapshot_id = empty_store.save(snapshot, shipped_catalog)
    loaded = {a.observation.host.name: a.observation for a in empty_store.assessments(snapshot_id)}
    assert loaded == {"EX1": observations[0], "EX2": observations[1]}
    assert empty_store.verify(workers=1).ok
