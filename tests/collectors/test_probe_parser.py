"""The probe document parser: literal documents, wrong types, missing fields, encodings."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from collectors.probe import (
    MAX_DOCUMENT_BYTES,
    ProbeDocumentError,
    load_document,
    parse_document,
)
from compliance.models import Host, WebConfigFile, WebConfigState
from tests.collectors.documents import REWRITE_RULES, probe_document

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def _text(**overrides) -> str:
    document = probe_document("EX1", "15.1.2176.9", kbs=["KB5000871"],
                              rewrite_rules=REWRITE_RULES, roles=["Mailbox", "UnifiedMessaging"],
                              findings={"CVE-2021-26855": ["ServerInfo~a]@x:444/ecp/y.js"]},
                              errors=["eomt: key missing"])
    document.update(overrides)
    return json.dumps(document)


def test_a_full_document_becomes_an_observation():
    obs = parse_document(_text(), Host("EX1"), "winrm", NOW)
    assert obs.failure is None
    assert obs.observed_at == NOW  # the collector's clock, not the server's
    assert obs.exsetup_version == "15.1.2176.9"
    assert [u.kb for u in obs.installed_updates] == ["KB5000871"]
    assert obs.mitigations is not None and set(obs.mitigations.rewrite_rules) == set(REWRITE_RULES)
    assert obs.mitigations.services["MSExchangeUM"].status == "Running"
    assert obs.mitigations.app_pools["MSExchangeECPAppPool"].state == "Started"
    assert obs.indicators == ("CVE-2021-26855: ServerInfo~a]@x:444/ecp/y.js",)
    assert obs.probe_errors == ("eomt: key missing",)
    assert obs.log_window_days == 30 and obs.indicators_truncated is False
    assert obs.host.roles == frozenset({"Mailbox", "UnifiedMessaging"})  # AD had none
    assert obs.host.fqdn == "ex1.test.example"


def test_roles_known_from_ad_are_kept():
    obs = parse_document(_text(), Host("EX1", roles=frozenset({"Mailbox"})), "winrm", NOW)
    assert obs.host.roles == frozenset({"Mailbox"})


def test_unknown_extra_fields_are_ignored():
    obs = parse_document(_text(future_field={"x": 1}), Host("EX1"), "winrm", NOW)
    assert obs.failure is None


ROOT = "C:\\Program Files\\Microsoft\\Exchange Server\\V15\\"
OWA = ROOT + "ClientAccess\\Owa\\web.config"
ECP = ROOT + "FrontEnd\\HttpProxy\\ecp\\web.config"


# Literal text, as probe.ps1 prints the field (JSON escapes each backslash).
WEB_CONFIG = (
    r'"web_config":['
    r'{"path":"C:\\Program Files\\Microsoft\\Exchange Server\\V15\\ClientAccess\\Owa\\web.config",'
    r'"state":"fine"},'
    r'{"path":"C:\\Program Files\\Microsoft\\Exchange Server\\V15\\FrontEnd\\HttpProxy\\ecp\\web.config",'
    r'"state":"unresolved"},'
    r'{"path":"C:\\x\\ecp\\web.config","state":"unreadable"},'
    r'{"path":"C:\\x\\owa\\web.config","state":"missing"}]'
)


def test_web_config_files_fine_broken_unreadable_and_missing():
    text = _text(errors=["web_config: Access to the path is denied."])
    obs = parse_document(text[:-1] + ", " + WEB_CONFIG + "}", Host("EX1"), "winrm", NOW)
    assert obs.failure is None
    assert obs.web_configs == (
        WebConfigFile(OWA, WebConfigState.FINE),
        WebConfigFile(ECP, WebConfigState.UNRESOLVED),
        WebConfigFile("C:\\x\\ecp\\web.config", WebConfigState.UNREADABLE),
        WebConfigFile("C:\\x\\owa\\web.config", WebConfigState.MISSING),
    )
    assert obs.probe_errors == ("web_config: Access to the path is denied.",)


@pytest.mark.parametrize("document", [
    pytest.param({}, id="field-absent"),  # a probe from before the check
    pytest.param({"web_config": None}, id="null"),  # no install path
])
def test_web_config_not_checked(document):
    obs = parse_document(_text(**document), Host("EX1"), "winrm", NOW)
    assert obs.failure is None and obs.web_configs is None


def test_web_config_checked_but_no_file_is_not_none():
    obs = parse_document(_text(web_config=[]), Host("EX1"), "winrm", NOW)
    assert obs.web_configs == ()


@pytest.mark.parametrize("entry", [
    pytest.param({"path": OWA, "state": "broken"}, id="unknown-state"),
    pytest.param({"path": OWA}, id="no-state"),
    pytest.param({"state": "fine"}, id="no-path"),
    pytest.param({"path": "", "state": "fine"}, id="empty-path"),
])
def test_a_malformed_web_config_entry_is_bad_output(entry):
    obs = parse_document(_text(web_config=[entry]), Host("EX1"), "winrm", NOW)
    assert obs.failure is not None and obs.failure.reason == "bad_output"
    assert "web_config" in obs.failure.detail


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(_text(schema="exchange-probe/2"), "expected 'exchange-probe/1'",
                     id="wrong-schema"),
        pytest.param(json.dumps({"schema": "exchange-probe/1", "host": "EX1"}), "required",
                     id="missing-fields"),
        pytest.param(_text(exsetup_version=15.1), "exsetup_version", id="build-is-a-number"),
        pytest.param(_text(exsetup_version="15.1.2176"), "exsetup_version", id="three-parts"),
        pytest.param(_text(roles="Mailbox"), "roles", id="roles-not-a-list"),
        pytest.param(_text(installed_updates={"kb": "KB1"}), "installed_updates",
                     id="updates-not-a-list"),
        pytest.param("[1, 2]", "not a JSON object", id="array"),
        pytest.param("", "empty output", id="empty"),
        pytest.param("{\"schema\": ", "not JSON", id="truncated"),
        pytest.param("[" * 100_000 + "]" * 100_000, "not JSON", id="deep-nesting"),
        pytest.param("x" * (MAX_DOCUMENT_BYTES + 1), "limit", id="oversized"),
    ],
)
def test_bad_documents_become_bad_output_never_a_verdict(text, message):
    obs = parse_document(text, Host("EX1"), "winrm", NOW)
    assert obs.failure is not None and obs.failure.reason == "bad_output"
    assert message in obs.failure.detail
    assert obs.exsetup_version is None and obs.failure.hint


def test_encodings():
    assert load_document(_text().encode("utf-8"))["host"] == "EX1"
    assert load_document(b"\xef\xbb\xbf" + _text().encode("utf-8"))["host"] == "EX1"
    assert load_document(_text().encode("utf-16"))["host"] == "EX1"  # PowerShell's `>`
    with pytest.raises(ProbeDocumentError, match="UTF-8"):
        load_document(b"\xc3\x28 not utf8")


def test_the_fixture_of_an_update_left_half_done():
    path = Path(__file__).parent / "probe_documents" / "exchange2016_web_config_unresolved.json"
    obs = parse_document(path.read_bytes(), Host("EX16-02"), "import", NOW)
    assert obs.failure is None
    assert [(f.path.rsplit("V15\\", 1)[1], f.state) for f in obs.web_configs or ()] == [
        ("ClientAccess\\Owa\\web.config", WebConfigState.FINE),
        ("ClientAccess\\ecp\\web.config", WebConfigState.UNREADABLE),
        ("FrontEnd\\HttpProxy\\owa\\web.config", WebConfigState.FINE),
        ("FrontEnd\\HttpProxy\\ecp\\web.config", WebConfigState.UNRESOLVED),
    ]
    assert [e.split(":", 1)[0] for e in obs.probe_errors] == ["web_config"]
