"""The probe document parser: literal documents, wrong types, missing fields, encodings."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from collectors.probe import (
    MAX_DOCUMENT_BYTES,
    ProbeDocumentError,
    compact,
    load_document,
    parse_document,
    probe_script,
)
from compliance.models import Host
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


def test_compacted_probe_fits_a_windows_command_line():
    # That compaction keeps the script's meaning is checked token by token in
    # test_probe_script.py.
    small = compact(probe_script())
    encoded = len("powershell -NoProfile -NonInteractive -EncodedCommand ") + \
        (len(small.encode("utf-16-le")) + 2) // 3 * 4
    assert encoded < 32_767
