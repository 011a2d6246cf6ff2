"""Self-tests: the AD-shaped slapd peer is what tests/peers/ claims it is.

Uses ldap3 directly (get_info=NONE: values come back as lists of strings) and the ldapsearch CLI.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ldap3
import pytest
from ldap3.core.exceptions import LDAPSocketOpenError, LDAPStartTLSError
from ldap3.utils.conv import escape_filter_chars

from tests.peers.ad_tree import (
    BULK_STANDARD_SIZE,
    DEFAULT_BASE_DN,
    LEGACY_ADMIN_GROUP,
    MODERN_ADMIN_GROUP,
    SITE_BRANCH,
    SITE_LAB,
    VERSION_NUMBER_2010_OR_LATER,
    WEIRD_SERVER_NAME,
    ServerSpec,
    ad_ldif,
    computer_dn,
    dag_dn,
    decode_version_number,
    dn_key,
    encode_version_number,
    escape_dn_value,
    ldif_line,
    object_guid,
    server_dn,
    site_dn,
    standard_fleet,
)
from tests.peers.slapd import SlapdError, SlapdPeer, closed_port, slapd_available, start_slapd

SERVERS_ONLY = "(&(objectClass=msExchExchangeServer)(!(objectClass=msExchExchangeTransportServer)))"
ALL_SERVER_CLASS = "(objectClass=msExchExchangeServer)"
PAGED_RESULTS = "1.2.840.113556.1.4.319"
SERVER_ATTRIBUTES = [
    "name", "distinguishedName", "serialNumber", "versionNumber", "msExchCurrentServerRoles", "networkAddress",
    "msExchServerSite", "msExchMDBAvailabilityGroupLink", "msExchVersion", "msExchComponentStates",
    "whenChanged", "whenCreated", "adminDisplayName", "objectGUID",
]


def connect(peer: SlapdPeer, *, ca_file: Path | None = None, bind: bool = True, ldaps: bool = True,
            user: str | None = None, password: str | None = None) -> ldap3.Connection:
    """A connection as the service account (not the rootdn: it is exempt from the size limit)."""
    tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(ca_file or peer.ca_file))
    server = ldap3.Server(peer.host, port=peer.ldaps_port if ldaps else peer.ldap_port, use_ssl=ldaps, tls=tls,
                          get_info=ldap3.NONE, connect_timeout=5)
    if not bind:
        return ldap3.Connection(server, auto_bind=True, receive_timeout=10)
    return ldap3.Connection(server, user or peer.service_dn, password or peer.service_password,
                            auto_bind=True, raise_exceptions=False, receive_timeout=10)


def entries(conn: ldap3.Connection) -> list[dict[str, Any]]:
    return [item for item in conn.response if item["type"] == "searchResEntry"]


def paged(conn: ldap3.Connection, base: str, search_filter: str, attributes: list[str],
          page_size: int = 1000) -> Iterator[dict[str, Any]]:
    cookie: bytes | None = None
    while True:
        conn.search(base, search_filter, attributes=attributes, paged_size=page_size, paged_cookie=cookie)
        assert conn.result["result"] == 0, conn.result
        yield from entries(conn)
        cookie = conn.result["controls"][PAGED_RESULTS]["value"]["cookie"]
        if not cookie:
            return


@pytest.fixture(scope="module")
def service(slapd_standard: SlapdPeer) -> Iterator[ldap3.Connection]:
    conn = connect(slapd_standard)
    yield conn
    conn.unbind()


def by_name(conn: ldap3.Connection, base: str) -> dict[str, dict[str, list[str]]]:
    conn.search(base, SERVERS_ONLY, attributes=SERVER_ATTRIBUTES)
    assert conn.result["result"] == 0, conn.result
    return {item["attributes"]["name"][0]: item["attributes"] for item in entries(conn)}


# ----------------------------------------------------------------------------- pure helpers

def test_dn_escaping_follows_rfc4514() -> None:
    assert escape_dn_value("EX01") == "EX01"
    assert escape_dn_value('a,b+c"d\\e<f>g;h=i') == 'a\\,b\\+c\\"d\\\\e\\<f\\>g\\;h\\=i'
    assert escape_dn_value("#lead") == "\\#lead"
    assert escape_dn_value(" both ") == "\\ both\\ "
    assert escape_dn_value("mid # and space") == "mid # and space"
    assert escape_dn_value(WEIRD_SERVER_NAME) == "LAB(1)*\\\\EX"


def test_ldif_base64_only_where_rfc2849_requires() -> None:
    assert ldif_line("cn", "EX01") == "cn: EX01"
    assert ldif_line("cn", "a: b") == "cn: a: b"
    for unsafe in (" lead", ":colon", "<angle", "trail ", "Zürich", "two\nlines"):
        line = ldif_line("cn", unsafe)
        assert line.startswith("cn:: "), line
    assert ldif_line("objectGUID", b"\x00\x01").startswith("objectGUID:: ")


def test_version_number_encoding_matches_reference() -> None:
    assert encode_version_number(15, 1, 2176) == 1942063232
    assert decode_version_number(VERSION_NUMBER_2010_OR_LATER) == (14, 0, 352)
    assert decode_version_number(encode_version_number(15, 2, 1118)) == (15, 2, 1118)


def test_dn_key_ignores_case_and_escape_form() -> None:
    assert dn_key("cn=LAB(1)*\\5CEX,dc=test,dc=example") == dn_key("CN=LAB(1)*\\\\EX,DC=Test,DC=Example")
    assert dn_key("CN=a\\,b,DC=x") != dn_key("CN=a,CN=b,DC=x")


def test_standard_fleet_covers_the_cases() -> None:
    fleet = standard_fleet()
    assert 18 <= len(fleet) <= 22
    assert len({spec.name.casefold() for spec in fleet}) == len(fleet)
    assert {spec.admin_group for spec in fleet} == {MODERN_ADMIN_GROUP, LEGACY_ADMIN_GROUP}
    assert len({spec.site for spec in fleet if spec.site}) == 3
    assert any(spec.roles == 64 and spec.computer_dns is None for spec in fleet)
    assert any(spec.serial_number == "garbage" for spec in fleet)
    assert any(spec.serial_number is None and spec.version_number is None for spec in fleet)
    assert any(not spec.network_addresses and spec.computer_dns for spec in fleet)
    assert any(not spec.network_addresses and not spec.computer_dns for spec in fleet)
    assert all(spec.trait for spec in fleet)


# ----------------------------------------------------------------------------- the peer

@pytest.mark.integration
def test_rootdse_names_the_naming_contexts(slapd_standard: SlapdPeer) -> None:
    conn = connect(slapd_standard, bind=False)  # anonymous, as AD allows for the rootDSE
    conn.search("", "(objectClass=*)", search_scope=ldap3.BASE,
                attributes=["configurationNamingContext", "defaultNamingContext"])
    assert conn.result["result"] == 0, conn.result
    [root] = entries(conn)
    assert root["attributes"]["configurationNamingContext"] == [slapd_standard.config_nc]
    assert root["attributes"]["defaultNamingContext"] == [slapd_standard.base_dn]
    assert slapd_standard.exchange_base == f"CN=Microsoft Exchange,CN=Services,CN=Configuration,{DEFAULT_BASE_DN}"


@pytest.mark.integration
def test_ldaps_bind_with_the_right_ca(slapd_standard: SlapdPeer) -> None:
    conn = connect(slapd_standard)
    assert conn.bound
    assert dn_key(conn.extend.standard.who_am_i().removeprefix("dn:")) == dn_key(slapd_standard.service_dn)
    conn.unbind()


@pytest.mark.integration
def test_ldaps_with_another_ca_is_refused(slapd_standard: SlapdPeer) -> None:
    with pytest.raises(LDAPSocketOpenError, match="CERTIFICATE_VERIFY_FAILED"):
        connect(slapd_standard, ca_file=slapd_standard.other_ca_file)


@pytest.mark.integration
def test_starttls_on_the_plain_port(slapd_standard: SlapdPeer) -> None:
    tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(slapd_standard.ca_file))
    server = ldap3.Server(slapd_standard.host, port=slapd_standard.ldap_port, tls=tls, get_info=ldap3.NONE)
    conn = ldap3.Connection(server, slapd_standard.service_dn, slapd_standard.service_password)
    conn.open()
    assert conn.start_tls()
    assert conn.bind(), conn.result
    conn.unbind()

    wrong = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(slapd_standard.other_ca_file))
    server = ldap3.Server(slapd_standard.host, port=slapd_standard.ldap_port, tls=wrong, get_info=ldap3.NONE)
    conn = ldap3.Connection(server)
    conn.open()
    with pytest.raises(LDAPStartTLSError, match="CERTIFICATE_VERIFY_FAILED"):  # not LDAPSocketOpenError
        conn.start_tls()
    # ldap3 has closed the socket by now: unbind() would raise LDAPSocketSendError.


@pytest.mark.integration
def test_wrong_password_and_closed_port(slapd_standard: SlapdPeer) -> None:
    server = ldap3.Server(slapd_standard.host, port=slapd_standard.ldap_port, get_info=ldap3.NONE)
    conn = ldap3.Connection(server, slapd_standard.service_dn, "not-the-password")
    assert not conn.bind()
    assert conn.result["description"] == "invalidCredentials"
    with pytest.raises(LDAPSocketOpenError):
        ldap3.Connection(ldap3.Server("127.0.0.1", port=closed_port(), get_info=ldap3.NONE, connect_timeout=2),
                         auto_bind=True)


@pytest.mark.integration
def test_anonymous_search_sees_nothing(slapd_standard: SlapdPeer) -> None:
    conn = connect(slapd_standard, bind=False)
    conn.search(slapd_standard.exchange_base, "(objectClass=*)", attributes=["*"])
    assert entries(conn) == []
    assert conn.result["result"] == 32  # noSuchObject: the base is not disclosed (AD: operationsError 1)
    conn.unbind()


@pytest.mark.integration
def test_service_account_reads_all_but_passwords(slapd_standard: SlapdPeer, service: ldap3.Connection) -> None:
    service.search(slapd_standard.service_dn, "(objectClass=*)", search_scope=ldap3.BASE, attributes=["*"])
    [me] = entries(service)
    assert "userPassword" not in me["attributes"]
    assert me["attributes"]["sAMAccountName"] == ["svc-exinventory"]


@pytest.mark.integration
def test_exclusion_filter_returns_exactly_the_servers(slapd_standard: SlapdPeer,
                                                      service: ldap3.Connection) -> None:
    fleet = standard_fleet()
    service.search(slapd_standard.exchange_base, ALL_SERVER_CLASS, attributes=["name", "serialNumber"])
    everything = entries(service)
    sub_objects = [item for item in everything if item["attributes"]["name"][0] in ("Mailbox", "Frontend")]
    with_transport = [spec for spec in fleet if spec.transport_subobjects]
    assert len(sub_objects) == 2 * len(with_transport)
    assert len(everything) == len(fleet) + len(sub_objects)
    assert all(item["attributes"]["serialNumber"] for item in sub_objects), "the trap must be armed"

    servers = by_name(service, slapd_standard.exchange_base)
    assert set(servers) == {spec.name for spec in fleet}


@pytest.mark.integration
def test_server_objects_carry_the_spec_facts(slapd_standard: SlapdPeer, service: ldap3.Connection) -> None:
    servers = by_name(service, slapd_standard.exchange_base)
    for spec in standard_fleet():
        attrs = servers[spec.name]
        assert dn_key(attrs["distinguishedName"][0]) == dn_key(server_dn(spec))
        assert attrs["serialNumber"] == ([spec.serial_number] if spec.serial_number else [])
        assert attrs["versionNumber"] == ([str(spec.version_number)] if spec.version_number else [])
        assert attrs["msExchCurrentServerRoles"] == ([str(spec.roles)] if spec.roles is not None else [])
        assert sorted(attrs["networkAddress"]) == sorted(spec.network_addresses)
        assert [dn_key(v) for v in attrs["msExchServerSite"]] == ([dn_key(site_dn(spec.site))] if spec.site else [])
        expected_dag = [dn_key(dag_dn(spec.dag, spec.admin_group))] if spec.dag else []
        assert [dn_key(v) for v in attrs["msExchMDBAvailabilityGroupLink"]] == expected_dag
        assert sorted(attrs["msExchComponentStates"]) == sorted(spec.component_states)
        assert attrs["whenChanged"] == [spec.when_changed]
        assert attrs["objectGUID"], spec.name  # raw bytes decoded by ldap3: present, not compared

    service.search(slapd_standard.base_dn, "(objectClass=computer)", attributes=["name", "dNSHostName"])
    computers = {item["attributes"]["name"][0]: item for item in entries(service)}
    assert computers.keys() == {spec.name for spec in standard_fleet() if spec.computer_dns}
    for spec in standard_fleet():
        if spec.computer_dns:
            assert computers[spec.name]["attributes"]["dNSHostName"] == [spec.computer_dns]
            assert dn_key(computers[spec.name]["dn"]) == dn_key(computer_dn(spec.name))


@pytest.mark.integration
def test_version_number_is_an_ordering_match(slapd_standard: SlapdPeer, service: ldap3.Connection) -> None:
    service.search(slapd_standard.exchange_base,
                   f"(&{SERVERS_ONLY}(versionNumber>={VERSION_NUMBER_2010_OR_LATER}))", attributes=["name"])
    assert service.result["result"] == 0, service.result
    found = {item["attributes"]["name"][0] for item in entries(service)}
    expected = {spec.name for spec in standard_fleet()
                if spec.version_number is not None and spec.version_number >= VERSION_NUMBER_2010_OR_LATER}
    assert found == expected
    assert "EX2007" not in found and "EX2003" not in found and "EX2010-MB1" in found


@pytest.mark.integration
def test_special_characters_need_filter_escaping(slapd_standard: SlapdPeer, service: ldap3.Connection) -> None:
    service.search(slapd_standard.exchange_base, f"(&{SERVERS_ONLY}(name={escape_filter_chars(WEIRD_SERVER_NAME)}))",
                   attributes=["name"])
    [weird] = entries(service)
    assert weird["attributes"]["name"] == [WEIRD_SERVER_NAME]
    assert dn_key(weird["dn"]) == dn_key(server_dn(next(s for s in standard_fleet() if s.name == WEIRD_SERVER_NAME)))

    for site in (SITE_LAB, SITE_BRANCH):
        service.search(slapd_standard.exchange_base,
                       f"(&{SERVERS_ONLY}(msExchServerSite={escape_filter_chars(site_dn(site))}))", attributes=["name"])
        assert service.result["result"] == 0, service.result
        assert {item["attributes"]["name"][0] for item in entries(service)} == {
            spec.name for spec in standard_fleet() if spec.site == site}

    service.search(slapd_standard.base_dn, f"(&(objectClass=computer)(cn={escape_filter_chars(WEIRD_SERVER_NAME)}))",
                   attributes=["dNSHostName"])
    assert [item["attributes"]["dNSHostName"] for item in entries(service)] == [["labex.test.example"]]


@pytest.mark.integration
def test_maintenance_state_is_searchable(slapd_standard: SlapdPeer, service: ldap3.Connection) -> None:
    service.search(slapd_standard.exchange_base, "(msExchComponentStates=*:ServerWideOffline:*:0:*)",
                   attributes=["name"])
    assert [item["attributes"]["name"] for item in entries(service)] == [["EX2019-03"]]


@pytest.mark.integration
def test_ldapsearch_cli_over_ldaps(slapd_standard: SlapdPeer) -> None:
    ldapsearch = shutil.which("ldapsearch")
    if ldapsearch is None:
        pytest.skip("ldapsearch not installed (Debian package ldap-utils; ./test.sh installs it)")
    env = {**os.environ, "LDAPTLS_CACERT": str(slapd_standard.ca_file), "LDAPTLS_REQCERT": "demand"}
    result = subprocess.run(
        [ldapsearch, "-LLL", "-x", "-o", "ldif-wrap=no", "-H", slapd_standard.ldaps_url,
         "-D", slapd_standard.service_dn, "-w", slapd_standard.service_password,
         "-E", "pr=1000/noprompt", "-b", slapd_standard.exchange_base, SERVERS_ONLY, "name"],
        capture_output=True, text=True, env=env, timeout=30, check=False,
    )
    assert result.returncode == 0, result.stderr
    names = [line.split(":", 1)[1].strip() for line in result.stdout.splitlines() if line.startswith("name:")]
    assert len(names) == len(standard_fleet())


@pytest.mark.integration
def test_awkward_values_round_trip(tmp_path: Path) -> None:
    """DN escaping and LDIF base64 in ad_tree survive slapadd and come back intact."""
    if not slapd_available():
        pytest.skip("slapd/slapadd not installed (Debian packages slapd and ldap-utils; ./test.sh installs them)")
    names = ["#Hash", " Lead", "Trail ", 'Quo"te', "Com,ma+Plus;Semi<Lt>Gt=Eq", "Zürich-EX", "Back\\slash"]
    fleet = [ServerSpec(name, "Version 15.1 (Build 32176.2)", 1942063232, 16439, site="Zürich (Süd)",
                        network_addresses=(f"netbios:EX{i}",), computer_dns=f"ex{i}.test.example")
             for i, name in enumerate(names)]
    with start_slapd(tmp_path / "awkward", ad_ldif(fleet, org="Org, Inc. <Test>")) as peer:
        conn = connect(peer)
        found = by_name(conn, peer.exchange_base)
        assert set(found) == set(names)
        for spec in fleet:
            attrs = found[spec.name]
            assert dn_key(attrs["distinguishedName"][0]) == dn_key(server_dn(spec, org="Org, Inc. <Test>"))
            assert [dn_key(v) for v in attrs["msExchServerSite"]] == [dn_key(site_dn("Zürich (Süd)"))]
            conn.search(peer.exchange_base, f"(name={escape_filter_chars(spec.name)})", attributes=["objectGUID"])
            [entry] = entries(conn)
            assert entry["raw_attributes"]["objectGUID"] == [object_guid(server_dn(spec, org="Org, Inc. <Test>"))
                                                             .bytes_le]
        conn.unbind()


# ----------------------------------------------------------------------------- bulk and limits

@pytest.mark.integration
def test_bulk_startup_time(slapd_bulk: SlapdPeer) -> None:
    print(f"\nbulk peer ({BULK_STANDARD_SIZE} servers): slapadd {slapd_bulk.slapadd_seconds:.2f} s, "
          f"slapd start {slapd_bulk.start_seconds:.2f} s")
    assert slapd_bulk.slapadd_seconds < 30
    assert slapd_bulk.start_seconds < 10


@pytest.mark.integration
def test_service_account_is_subject_to_the_size_limit(slapd_bulk: SlapdPeer) -> None:
    conn = connect(slapd_bulk)
    # raise_exceptions=True would not help: ldap3 does not raise on sizeLimitExceeded.
    conn.search(slapd_bulk.exchange_base, ALL_SERVER_CLASS, attributes=["name"])
    assert conn.result["result"] == 4, conn.result
    assert conn.result["description"] == "sizeLimitExceeded"
    assert 0 < len(entries(conn)) <= 1000

    conn.search(slapd_bulk.exchange_base, ALL_SERVER_CLASS, attributes=["name"], paged_size=1001)
    assert conn.result["result"] == 11, conn.result  # adminLimitExceeded: page size above size.pr
    conn.unbind()


@pytest.mark.integration
def test_paged_search_collects_everything(slapd_bulk: SlapdPeer) -> None:
    conn = connect(slapd_bulk)
    started = time.monotonic()
    found = list(paged(conn, slapd_bulk.exchange_base, ALL_SERVER_CLASS,
                       ["name", "serialNumber", "versionNumber", "networkAddress", "msExchServerSite"]))
    seconds = time.monotonic() - started
    print(f"\npaged search, {len(found)} entries, page size 1000: {seconds:.2f} s")
    assert len(found) == 3 * BULK_STANDARD_SIZE
    assert len({dn_key(item["dn"]) for item in found}) == len(found)

    servers = list(paged(conn, slapd_bulk.exchange_base, SERVERS_ONLY, ["name"]))
    assert len(servers) == BULK_STANDARD_SIZE
    conn.unbind()


@pytest.mark.integration
def test_start_survives_a_port_taken_meanwhile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not slapd_available():
        pytest.skip("slapd/slapadd not installed (Debian packages slapd and ldap-utils; ./test.sh installs them)")
    import tests.peers.slapd as slapd_module

    real_free_port = slapd_module.free_port
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        ports = iter([taken, real_free_port()])
        monkeypatch.setattr(slapd_module, "free_port", lambda: next(ports, None) or real_free_port())
        with start_slapd(tmp_path / "retry", ad_ldif(standard_fleet()[:1])) as peer:
            assert taken not in (peer.ldap_port, peer.ldaps_port)
            assert connect(peer).bound

        calls = itertools.count()  # every ldap:// port handed out is the taken one
        monkeypatch.setattr(slapd_module, "free_port", lambda: taken if next(calls) % 2 == 0 else real_free_port())
        with pytest.raises(SlapdError, match="Address already in use"):
            start_slapd(tmp_path / "taken", ad_ldif(standard_fleet()[:1]))
