"""ProxyNotShell's interim mitigation from literal probe documents (issue 19): each document
under tests/collectors/probe_documents parsed as a collection parses it, then judged by the
shipped ProxyNotShell advisory. The *_1.2 documents carry every field probe contract 1.2 reads
of a rule; their earlier twins lack the fields that decide whether a rule fires (match negate,
pattern syntax, ignoreCase, cut texts), so no rule of theirs can count."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from collectors.probe import load_document, observation_from_document
from compliance.catalog import load_catalog
from compliance.evaluate import evaluate
from compliance.models import Flag, Host, Status

DOCUMENTS = Path(__file__).resolve().parents[1] / "collectors" / "probe_documents"
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def _judged(name: str):  # type: ignore[no-untyped-def]
    document = load_document((DOCUMENTS / name).read_text(encoding="utf-8"))
    obs = observation_from_document(document, Host("EX19-01", "ex19-01.corp.example"), "test",
                                    NOW - timedelta(minutes=5))
    return evaluate(obs, load_catalog("2022-11-proxynotshell"), NOW)


@pytest.mark.parametrize(("name", "status"), [
    ("exchange2019_cu12_proxynotshell_eomtv2_rule_1.2.json", Status.MITIGATED),  # Oct22SU + rule
    ("exchange2019_cu11_proxynotshell_eems_and_admin_rules_1.2.json", Status.MITIGATED),
    ("exchange2016_cu23_proxynotshell_superseded_pattern_1.2.json", Status.VULNERABLE),
])
def test_the_rule_is_recognised_by_its_content(name, status):
    verdict = _judged(name)
    assert verdict.status is status, (verdict.reason, verdict.evidence)
    if status is Status.MITIGATED:
        assert verdict.cves_open == ("CVE-2022-41082",)  # the rule covers the SSRF only
    else:
        assert any("superseded" in e.value for e in verdict.evidence)


@pytest.mark.parametrize("name", [
    "exchange2019_cu12_proxynotshell_eomtv2_rule.json",
    "exchange2019_cu11_proxynotshell_eems_and_admin_rules.json",
])
def test_a_rule_read_without_what_decides_whether_it_fires_never_mitigates(name):
    verdict = _judged(name)
    assert verdict.status is Status.VULNERABLE, verdict.reason
    assert any("not read" in e.value for e in verdict.evidence), verdict.evidence


def test_the_march_2021_rules_do_not_mitigate_proxynotshell():
    verdict = _judged("exchange2016_cu19_unpatched_rewrite_mitigated.json")
    assert verdict.status is Status.VULNERABLE
    assert Flag.CU_UPDATE_REQUIRED in verdict.flags  # 2016 CU19 got no Nov 2022 SU


@pytest.mark.parametrize("broken", [
    {"name": "Catch all\u0000"},  # a NUL: the reader drops the entry
    {"enabled": "true"},  # a text where a flag belongs
], ids=["nul-in-name", "flag-as-text"])
def test_an_entry_the_reader_drops_before_the_rule_leaves_it_unproven(broken):
    """Re-check review (issue 19): a malformed earlier rule that stops processing was dropped
    by the reader and the good rule after it counted; the order is not known whole now."""
    import json

    from compliance.models import Flag as _Flag

    text = (DOCUMENTS / "exchange2019_cu12_proxynotshell_eomtv2_rule_1.2.json").read_text()
    document = json.loads(text)
    rules = document["mitigations"]["rewrite_rule_details"]
    stopper = {**rules[0], "name": "Catch all", "action": "None", "stop_processing": True,
               "conditions": [], **broken}
    document["mitigations"]["rewrite_rule_details"] = [stopper, *rules]
    obs = observation_from_document(load_document(json.dumps(document)),
                                    Host("EX19-01", "ex19-01.corp.example"), "test",
                                    NOW - timedelta(minutes=5))
    assert any("dropped" in e for e in obs.probe_errors)
    verdict = evaluate(obs, load_catalog("2022-11-proxynotshell"), NOW)
    assert verdict.status is Status.VULNERABLE and _Flag.MITIGATION_UNREADABLE in verdict.flags
