"""A host's published names (issue 18, part 2) in the stored form: they round-trip, and a host
stored before they existed still decodes to the very same text, so stored digests hold."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from compliance.codec import (
    host_from_dict,
    host_to_dict,
    observation_from_dict,
    observation_to_dict,
)
from compliance.evaluate import assess
from compliance.models import Host, Observation, server_roles

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

# An observation exactly as the store held it before hosts had names (store/snapshots.py
# _dumps: sorted keys, no spaces). Digests cover this text.
STORED_BEFORE = (
    '{"admin_display_version":null,"exsetup_version":"15.1.2176.2","failure":null,'
    '"host":{"ad_build":"Version 15.1 (Build 32176.2)","dag":"DAG1",'
    '"dn":"CN=EX1,CN=Servers,CN=Configuration,DC=corp,DC=example","fqdn":"ex1.corp.example",'
    '"name":"EX1","problems":[],"roles":["Cafe","Mailbox"],"site":"HQ"},'
    '"indicators":[],"indicators_truncated":false,"installed_updates":[],'
    '"log_window_days":null,"mitigations":null,"observed_at":"2026-11-25T12:00:00+00:00",'
    '"probe_errors":[],"source":"winrm","suspicious_files":[]}'
)


def _dumps(data: object) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def test_an_observation_stored_before_names_decodes_without_any_and_encodes_to_the_same_text():
    observation = observation_from_dict(json.loads(STORED_BEFORE))
    assert observation.host.internal_names == observation.host.external_names == ()
    assert _dumps(observation_to_dict(observation)) == STORED_BEFORE


def test_names_round_trip_and_are_written_only_when_known():
    host = Host("EX1", fqdn="ex1.corp.example", roles=server_roles(["Mailbox"]),
                internal_names=("mail.corp.example",), external_names=("mail.example.com",))
    stored = host_to_dict(host)
    assert stored["internal_names"] == ["mail.corp.example"]
    assert stored["external_names"] == ["mail.example.com"]
    assert host_from_dict(json.loads(_dumps(stored))) == host
    internal_only = Host("EX2", internal_names=("mail.corp.example",))
    assert "external_names" not in host_to_dict(internal_only)
    assert host_from_dict(host_to_dict(internal_only)) == internal_only
    assert set(host_to_dict(Host("EX3"))) == {"name", "fqdn", "site", "dag", "roles",
                                             "ad_build", "dn", "problems"}


@pytest.mark.parametrize("forged", ["mail.corp.example", 7, {"a": 1}, None])
def test_a_forged_value_is_no_name(forged):
    host = host_from_dict({"name": "EX1", "internal_names": forged, "external_names": forged})
    assert host.internal_names == host.external_names == ()


def test_a_store_holding_snapshots_from_before_and_after_verifies(empty_store, shipped_catalog):
    """Snapshots without names and one with them, in one chain: every digest verifies and the
    names come back from the observation and from the discovered inventory."""
    plain = [Observation(Host(f"EX{i}", site="S"), NOW, "test", exsetup_version="15.1.2176.2")
             for i in range(3)]
    named_host = Host("EX0", site="S", internal_names=("mail.corp.example",),
                      external_names=("mail.example.com",))
    named = [Observation(named_host, NOW, "test", exsetup_version="15.1.2176.2"), *plain[1:]]
    ids = [empty_store.save(assess(observations, shipped_catalog, NOW, source="test",
                                   tool_version="t", discovered=[o.host for o in observations],
                                   scope="test"), shipped_catalog)
           for observations in (plain, named)]
    report = empty_store.verify()
    assert report.ok and report.checked == 2, report
    first = {a.observation.host.name: a.observation.host for a in empty_store.assessments(ids[0])}
    assert first["EX0"].external_names == ()
    after = {a.observation.host.name: a.observation.host for a in empty_store.assessments(ids[1])}
    assert after["EX0"] == named_host
    assert named_host in empty_store.discovered(ids[1])
