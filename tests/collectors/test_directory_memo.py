"""One discovery parses each distinct site and DAG DN once (issue 15), with the same answers.

``first_rdn_memo()`` must be invisible but for speed: for every DN, however hostile, it gives
what ``parse_first_rdn`` gives, and it never mixes up two DNs that differ only in spelling.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import collectors.directory as directory
from collectors.directory import (
    DirectoryConfig,
    discover,
    first_rdn_memo,
    parse_first_rdn,
    parse_server,
)
from tests.peers.ad_tree import SITE_BRANCH, SITE_LAB, ServerSpec, ad_ldif, standard_fleet
from tests.peers.fixtures import require_slapd
from tests.peers.slapd import start_slapd

CONFIG_NC = "CN=Configuration,DC=test,DC=example"

# Each is a DN a directory (or a proxy in front of one) could hand back as msExchServerSite or
# msExchMDBAvailabilityGroupLink; the answer for each is whatever the unmemoised parse gives.
TRICKY_DNS = [
    pytest.param("CN=Site1,CN=Sites,CN=Configuration,DC=x", id="plain"),
    pytest.param("cn=site1,cn=sites,cn=configuration,dc=x", id="lowercase"),
    pytest.param(r"CN=A\,B,CN=Sites,DC=x", id="escaped-comma"),
    pytest.param(r"CN=A\2CB,CN=Sites,DC=x", id="hex-escaped-comma"),
    pytest.param(r"CN=Lab \28Test*\29 Site,CN=Sites,DC=x", id="hex-parentheses"),
    pytest.param(r"CN=Branch\\Office,CN=Sites,DC=x", id="escaped-backslash"),
    pytest.param(r"CN=Branch\5COffice,CN=Sites,DC=x", id="hex-backslash"),
    pytest.param("CN=Zürich,CN=Sites,DC=x", id="utf8-literal"),
    pytest.param(r"CN=Z\C3\BCrich,CN=Sites,DC=x", id="utf8-hex-escaped"),
    pytest.param("CN=Z\ufffdrich,CN=Sites,DC=x", id="replacement-char"),
    pytest.param("CN=Z\udcfcrich,CN=Sites,DC=x", id="lone-surrogate"),
    pytest.param("CN=字,CN=Sites,DC=x", id="cjk"),
    pytest.param(r"CN=\ lead and trail\ ,CN=Sites,DC=x", id="escaped-spaces"),
    pytest.param("  CN = spaced  ,  CN=Sites , DC=x", id="spaces-around"),
    pytest.param(r"CN=\#hash,CN=Sites,DC=x", id="escaped-hash"),
    pytest.param("CN=#04024869,CN=Sites,DC=x", id="ber-hex-value"),
    pytest.param("CN=DAG1+OU=x,CN=Database Availability Groups,DC=x", id="multi-valued-rdn"),
    pytest.param("CN=semi;CN=Sites;DC=x", id="semicolon-separators"),
    pytest.param('CN="quoted, value",CN=Sites,DC=x', id="quotes"),
    pytest.param("CN=a\\", id="dangling-escape"),
    pytest.param(r"CN=\ZZ,DC=x", id="bad-hex-escape"),
    pytest.param(r"CN=\00,DC=x", id="escaped-nul"),
    pytest.param("CN=x\x00y,DC=x", id="raw-nul"),
    pytest.param("CN=", id="empty-value"),
    pytest.param("=x", id="empty-type"),
    pytest.param("1.2.840.113556.1.4.1=x,DC=y", id="oid-type"),
    pytest.param("not a dn", id="malformed"),
    pytest.param("", id="empty"),
    pytest.param(None, id="none"),
    pytest.param("CN=" + "x" * 5000 + ",CN=Sites,DC=x", id="long"),
]
ALL_TRICKY = [param.values[0] for param in TRICKY_DNS]


@pytest.mark.parametrize("dn", TRICKY_DNS)
def test_the_memo_answers_what_the_unmemoised_parse_answers(dn):
    memo = first_rdn_memo()
    expected = parse_first_rdn(dn)
    assert memo(dn) == expected
    assert memo(dn) == expected  # the remembered answer, second time


def test_one_memo_never_confuses_dns_that_differ_only_in_spelling():
    """Case, escaping and spacing variants of one name are separate keys, each with its own
    answer (``CN=Site1`` gives ``Site1``, ``cn=site1`` gives ``site1``)."""
    memo = first_rdn_memo()
    for dn in ALL_TRICKY + list(reversed(ALL_TRICKY)):
        assert memo(dn) == parse_first_rdn(dn), dn


@pytest.mark.parametrize("dn", TRICKY_DNS)
def test_a_server_parsed_with_the_memo_equals_one_parsed_without(dn):
    attributes = {"cn": ["EX01"], "networkAddress": ["ncacn_ip_tcp:ex01.test.example"],
                  "serialNumber": ["Version 15.1 (Build 32176.2)"],
                  "msExchServerSite": [dn] if dn is not None else [],
                  "msExchMDBAvailabilityGroupLink": [dn] if dn is not None else []}
    memo = first_rdn_memo()
    unmemoised = parse_server("CN=EX01,CN=Servers,DC=x", attributes)
    assert parse_server("CN=EX01,CN=Servers,DC=x", attributes, first_rdn=memo) == unmemoised
    assert parse_server("CN=EX01,CN=Servers,DC=x", attributes, first_rdn=memo) == unmemoised


rdn_value = st.text(alphabet=st.sampled_from("abcEX01 ,=+<>#;\\\"\x00é字2C"), max_size=10)
dn_text = st.one_of(
    st.builds(lambda rdns: ",".join(f"{t}={v}" for t, v in rdns),
              st.lists(st.tuples(st.sampled_from(["CN", "cn", "OU", "DC", "", " CN "]), rdn_value),
                       min_size=1, max_size=4)),
    st.text(max_size=40), st.none())


@given(st.lists(dn_text, max_size=30))
def test_any_sequence_of_dns_through_one_memo_answers_as_unmemoised(dns):
    memo = first_rdn_memo()
    assert [memo(dn) for dn in dns] == [parse_first_rdn(dn) for dn in dns]


# -- one discovery, counted -------------------------------------------------------------------


class _Directory:
    """A connection as ``discover`` uses it (the ``connect`` seam): the RootDSE, then the server
    entries in one page, attribute values as ldap3 returns them with get_info=NONE."""

    def __init__(self, entries: Sequence[tuple[str, dict[str, Any]]]):
        self.entries = entries
        self.result: dict[str, Any] = {}
        self.response: list[dict[str, Any]] = []

    def search(self, search_base: str, search_filter: str, search_scope: str = "",
               attributes: Sequence[str] = (), paged_size: int | None = None,
               paged_cookie: bytes | None = None) -> bool:
        if search_base == "":
            found = [("", {"configurationNamingContext": [CONFIG_NC],
                           "defaultNamingContext": ["DC=test,DC=example"]})]
        else:
            found = list(self.entries)
        self.response = [{"type": "searchResEntry", "dn": dn, "attributes": attributes}
                         for dn, attributes in found]
        self.result = {"result": 0, "controls": {}}
        return True

    def unbind(self) -> None:
        pass


SITE_DNS = (fr"CN=Lab \28Test*\29 Site,CN=Sites,{CONFIG_NC}",
            fr"CN=Branch\5COffice,CN=Sites,{CONFIG_NC}")


def _fleet(n: int, dags: int) -> list[tuple[str, dict[str, Any]]]:
    servers = f"CN=Servers,CN=AG,CN=Administrative Groups,CN=Org,CN=Microsoft Exchange,CN=Services,{CONFIG_NC}"
    return [(f"CN=EX{i:04d},{servers}", {
        "cn": [f"EX{i:04d}"], "networkAddress": [f"ncacn_ip_tcp:ex{i:04d}.test.example"],
        "serialNumber": ["Version 15.1 (Build 32176.2)"], "msExchCurrentServerRoles": ["16439"],
        "msExchServerSite": [SITE_DNS[i % 2]],
        "msExchMDBAvailabilityGroupLink": [f"CN=DAG\\2C{i % dags},CN=Database Availability Groups,"
                                           f"CN=AG,{CONFIG_NC}"],
    }) for i in range(n)]


@pytest.fixture
def parsed_dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    """Every DN handed to ldap3's parse_dn while the test runs, counted."""
    calls: Counter[str] = Counter()
    real = directory.parse_dn

    def counting(dn: str, *args: Any, **kwargs: Any) -> Any:
        calls[dn] += 1
        return real(dn, *args, **kwargs)

    monkeypatch.setattr(directory, "parse_dn", counting)
    yield calls


@pytest.mark.parametrize("n", [3, 50, 1000])
def test_a_fleet_over_two_sites_parses_each_site_dn_once(parsed_dns, n):
    dags = 3
    fleet = _fleet(n, dags)
    config = DirectoryConfig(servers=("ldaps://dc1.test.example",), bind_user="svc")
    found = discover(config, "pw", connect=lambda *_: _Directory(fleet))
    assert len(found.servers) == n
    assert {s.site for s in found.servers} == {"Lab (Test*) Site", "Branch\\Office"}
    assert {s.dag for s in found.servers} == {f"DAG,{i}" for i in range(min(n, dags))}
    site_calls = {dn: count for dn, count in parsed_dns.items() if ",CN=Sites," in dn}
    assert site_calls == dict.fromkeys(SITE_DNS, 1)
    assert set(parsed_dns.values()) == {1}  # DAG DNs too
    assert sum(parsed_dns.values()) == 2 + min(n, dags)


def test_each_discovery_starts_a_fresh_memo(parsed_dns):
    """Nothing is remembered from one discovery to the next (a run's AD text dies with it)."""
    fleet = _fleet(10, 1)
    config = DirectoryConfig(servers=("ldaps://dc1.test.example",), bind_user="svc")
    for _ in range(2):
        discover(config, "pw", connect=lambda *_: _Directory(fleet))
    assert set(parsed_dns.values()) == {2}


@pytest.mark.integration
def test_against_slapd_sites_and_dags_are_parsed_once_and_as_before(parsed_dns, monkeypatch,
                                                                     tmp_path):
    """A real slapd and real ldap3 values: 40 servers over two hostile site names and 4 DAGs
    (plus the standard fleet's odd ones); the memoised discovery equals an unmemoised one."""
    require_slapd()
    extra = [ServerSpec(f"MEMO{i:02d}", "Version 15.1 (Build 32176.2)", roles=16439,
                        site=(SITE_LAB, SITE_BRANCH)[i % 2], dag=f"MEMO,DAG {i % 4}",
                        network_addresses=(f"ncacn_ip_tcp:memo{i:02d}.test.example",))
             for i in range(40)]
    peer = start_slapd(tmp_path / "dc-memo", ad_ldif(standard_fleet() + extra))
    try:
        config = DirectoryConfig(servers=(peer.ldaps_url,), bind_user=peer.service_dn,
                                 ca_file=str(peer.ca_file))
        memoised = discover(config, peer.service_password)
        counted = Counter(parsed_dns)
        monkeypatch.setattr(directory, "first_rdn_memo", lambda: parse_first_rdn)
        unmemoised = discover(config, peer.service_password)
    finally:
        peer.stop()
    assert memoised == unmemoised
    memo_servers = [s for s in memoised.servers if s.name.startswith("MEMO")]
    assert {s.site for s in memo_servers} == {SITE_LAB, SITE_BRANCH}
    assert {s.dag for s in memo_servers} == {f"MEMO,DAG {i}" for i in range(4)}
    assert set(counted.values()) == {1}, counted
    sites = {dn for dn in counted if ",cn=sites," in dn.lower()}
    assert len(sites) == len({s.site for s in memoised.servers if s.site})


def test_a_dc_answering_attribute_names_in_another_case_is_read_alike():
    # Attribute descriptions are case-insensitive (RFC 4512 2.5); ldap3 is set to plain dicts
    # for speed, so discover maps each returned name to the one it asked for.
    fleet = _fleet(2, 1)
    shouted = [(dn, {name.upper(): values for name, values in attributes.items()})
               for dn, attributes in fleet]
    config = DirectoryConfig(servers=("ldaps://dc1.test.example",), bind_user="svc")
    expected = discover(config, "pw", connect=lambda *_: _Directory(fleet))
    found = discover(config, "pw", connect=lambda *_: _Directory(shouted))
    assert found.servers == expected.servers
    assert [s.cu_level for s in found.servers] == ["15.1.2176.2"] * 2
    assert all(s.site and s.dag and s.fqdn and s.roles for s in found.servers)
