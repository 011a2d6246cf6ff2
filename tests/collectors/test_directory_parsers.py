"""Pure parsers of AD attribute values: serialNumber forms, role bits, networkAddress, DNs."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from collectors.directory import (
    DirectoryConfig,
    in_name_scope,
    parse_build_attributes,
    parse_first_rdn,
    parse_network_address,
    parse_roles,
    parse_server,
    scope_filter,
)


@pytest.mark.parametrize(
    ("serial", "number", "build", "raw", "problem"),
    [
        pytest.param("Version 15.1 (Build 32176.2)", "1942063232", "15.1.2176.2",
                     "Version 15.1 (Build 32176.2)", None, id="serial-and-number-agree"),
        pytest.param("Version 15.2 (Build 31118.007)", None, "15.2.1118.7",
                     "Version 15.2 (Build 31118.007)", None, id="padded-revision"),
        pytest.param("Version 15.1 (Build 32176.2: Security Update)", None, "15.1.2176.2",
                     "Version 15.1 (Build 32176.2: Security Update)", None, id="description"),
        pytest.param(None, "1942063232", "15.1.2176", "1942063232", "serialNumber missing",
                     id="number-only"),
        pytest.param("garbage", "1942063232", "15.1.2176", "1942063232",
                     "serialNumber unreadable", id="malformed-serial-falls-back"),
        pytest.param("garbage", None, None, None, "serialNumber unreadable", id="malformed-only"),
        pytest.param(None, None, None, None, "serialNumber missing", id="neither"),
        pytest.param("Version 15.1 (Build 32176.2)", "1942063298", "15.1.2176.2",
                     "Version 15.1 (Build 32176.2)", "disagree", id="serial-and-number-disagree"),
        pytest.param("Version 15.1 (Build 32176.2)", "12", "15.1.2176.2",
                     "Version 15.1 (Build 32176.2)", "versionNumber unreadable", id="bad-number"),
    ],
)
def test_build_attributes(serial, number, build, raw, problem):
    found, found_raw, problems = parse_build_attributes(serial, number)
    assert (str(found) if found else None) == build
    assert found_raw == raw
    if problem is None:
        assert problems == []
    else:
        assert any(problem in p for p in problems), problems


@pytest.mark.parametrize(
    ("value", "roles", "problem"),
    [
        pytest.param("54", ("Mailbox", "ClientAccess", "UnifiedMessaging", "HubTransport"), None,
                     id="2013-mailbox"),
        pytest.param("16385", ("Cafe", "FrontendTransport"), None, id="2013-cas"),
        pytest.param("16439", ("Cafe", "Mailbox", "ClientAccess", "UnifiedMessaging",
                               "HubTransport", "FrontendTransport"), None, id="multi-role"),
        pytest.param("16423", ("Cafe", "Mailbox", "ClientAccess", "HubTransport",
                               "FrontendTransport"), None, id="2019-mailbox-no-um"),
        pytest.param("64", ("Edge",), None, id="edge"),
        pytest.param("38", ("Mailbox", "ClientAccess", "HubTransport"), None, id="2010-multi"),
        pytest.param(16, ("UnifiedMessaging",), None, id="int-value"),
        pytest.param("0", (), None, id="none"),
        pytest.param(None, None, "missing", id="missing"),
        pytest.param("", None, "missing", id="empty"),
        pytest.param("lots", None, "not a number", id="not-number"),
        pytest.param("-1", None, "negative", id="negative"),
        pytest.param(str(2**30 + 2), ("Mailbox",), "unknown bits", id="unknown-bit"),
    ],
)
def test_roles(value, roles, problem):
    found, problems = parse_roles(value)
    assert found == roles
    assert (problem is None) == (not problems)
    if problem:
        assert problem in problems[0]


@pytest.mark.parametrize(
    ("values", "fqdn", "netbios"),
    [
        pytest.param(["ncacn_ip_tcp:EX01.corp.example", "netbios:EX01"], "ex01.corp.example",
                     "EX01", id="usual"),
        pytest.param(["netbios:EX01", "ncalrpc:EX01", "ncacn_ip_tcp:ex01.corp.example",
                      "ncacn_spx:EX01"], "ex01.corp.example", "EX01", id="other-prefixes"),
        pytest.param(["NCACN_IP_TCP: ex02.corp.example "], "ex02.corp.example", None,
                     id="case-and-spaces"),
        pytest.param(["ncacn_ip_tcp:EX03"], None, None, id="short-name-is-no-fqdn"),
        pytest.param(["ncacn_ip_tcp:"], None, None, id="empty-value"),
        pytest.param([], None, None, id="missing"),
        pytest.param(["garbage"], None, None, id="no-prefix"),
    ],
)
def test_network_address(values, fqdn, netbios):
    assert parse_network_address(values) == (fqdn, netbios)


@pytest.mark.parametrize(
    ("dn", "value"),
    [
        pytest.param("CN=Site1,CN=Sites,CN=Configuration,DC=x", "Site1", id="plain"),
        pytest.param("cn=site1,cn=sites,cn=configuration,dc=x", "site1", id="lowercase-types"),
        pytest.param(r"CN=Lab \28Test*\29,CN=Sites,DC=x", "Lab (Test*)", id="hex-escapes"),
        pytest.param(r"CN=A\,B,CN=Sites,DC=x", "A,B", id="escaped-comma"),
        pytest.param(r"CN=Back\5Cslash,DC=x", "Back\\slash", id="backslash"),
        pytest.param(None, None, id="none"),
        pytest.param("", None, id="empty"),
        pytest.param("not a dn", None, id="malformed"),
    ],
)
def test_first_rdn(dn, value):
    assert parse_first_rdn(dn) == value


def test_server_entry_with_everything():
    server = parse_server(
        "CN=EX01,CN=Servers,CN=AG,DC=x",
        {"cn": ["EX01"], "serialNumber": ["Version 15.1 (Build 32176.2)"],
         "versionNumber": ["1942063232"], "msExchCurrentServerRoles": ["16439"],
         "networkAddress": ["ncacn_ip_tcp:ex01.test.example", "netbios:EX01"],
         "msExchServerSite": ["CN=Site1,CN=Sites,CN=Configuration,DC=x"],
         "msExchMDBAvailabilityGroupLink": ["CN=DAG1,CN=Database Availability Groups,DC=x"],
         "whenChanged": ["20261120093000.0Z"],
         "msExchComponentStates": ["1:ServerWideOffline:0:Maintenance:0"]},
    )
    assert (server.name, server.fqdn, server.cu_level, server.site, server.dag) == (
        "EX01", "ex01.test.example", "15.1.2176.2", "Site1", "DAG1")
    assert server.problems == ()
    assert server.maintenance
    host = server.to_host()
    assert host.ad_build == "Version 15.1 (Build 32176.2)"
    assert host.roles is not None and "UnifiedMessaging" in host.roles


def test_server_entry_with_nothing_still_yields_a_record_with_problems():
    server = parse_server("CN=BARE,CN=Servers,DC=x", {})
    assert server.name == "BARE"
    assert server.fqdn is None and server.cu_level is None and server.roles is None
    joined = " | ".join(server.problems)
    for expected in ("serialNumber missing", "roles unknown", "no FQDN", "site unknown"):
        assert expected in joined


def test_computer_object_supplies_a_missing_fqdn():
    server = parse_server("CN=EX09,DC=x", {"cn": ["EX09"]}, {"ex09": "EX09.Test.Example"})
    assert server.fqdn == "ex09.test.example"
    assert any("dNSHostName" in p for p in server.problems)


def test_edge_server_withholds_its_ad_build_from_grading():
    server = parse_server("CN=EDGE,DC=x", {"cn": ["EDGE"], "msExchCurrentServerRoles": ["64"],
                                           "serialNumber": ["Version 15.2 (Build 30858.5)"]})
    assert server.edge and server.cu_level == "15.2.858.5"
    assert server.to_host().ad_build is None
    assert any("Edge" in p for p in server.problems)


def _config(**scope) -> DirectoryConfig:
    return DirectoryConfig(servers=("ldaps://dc",), bind_user="u", **scope)


def test_scope_filter_escapes_every_configured_value():
    flt = scope_filter(_config(only=("EX(1)*", "a\\b"), include_sites=("Lab (Test*)",),
                               exclude_sites=("Old)(objectClass=*",)), "CN=Configuration,DC=x")
    assert "(cn=EX\\281\\29\\2a)" in flt
    assert "(cn=a\\5cb)" in flt
    assert "Lab \\5c28Test\\2a\\5c29" not in flt  # not double-escaped
    assert "(msExchServerSite=CN=Lab \\28Test\\2a\\29,CN=Sites,CN=Configuration,DC=x)" in flt
    assert "Old\\29\\28objectClass\\5c=\\2a" in flt  # escape_rdn writes \\= first
    assert flt.count("(") == flt.count(")")


def test_scope_filter_without_scope_is_the_server_filter():
    flt = scope_filter(_config(), "CN=Configuration,DC=x")
    assert flt == ("(&(&(objectClass=msExchExchangeServer)"
                   "(!(objectClass=msExchExchangeTransportServer))))")


@pytest.mark.parametrize(
    ("name", "include", "exclude", "kept"),
    [
        pytest.param("EX16-01", (), (), True, id="no-patterns"),
        pytest.param("EX16-01", ("ex16-*",), (), True, id="include-case-insensitive"),
        pytest.param("EX19-01", ("EX16-*",), (), False, id="not-included"),
        pytest.param("EX16-01", ("EX*",), ("*-01",), False, id="excluded-wins"),
        pytest.param("EX[1]", ("EX[[]1]",), (), True, id="brackets"),
    ],
)
def test_name_scope(name, include, exclude, kept):
    assert in_name_scope(name, _config(include_names=include, exclude_names=exclude)) is kept


class _Result:
    """Stands in for an ldap3 connection's ``result`` only (narrow unit test of the check)."""

    def __init__(self, code: int, message: str = ""):
        self.result = {"result": code, "description": "x", "message": message}


@pytest.mark.parametrize(
    ("code", "label"),
    [
        pytest.param(3, "time limit exceeded", id="time-limit"),
        pytest.param(4, "size limit exceeded", id="size-limit"),
        pytest.param(9, "partial results", id="partial"),
        pytest.param(10, "referral not followed", id="referral"),
        pytest.param(32, "base DN not found", id="no-such-object"),
        pytest.param(50, "insufficient access", id="access"),
        pytest.param(80, "x", id="other"),
    ],
)
def test_every_non_success_result_is_an_error_naming_server_and_operation(code, label):
    from collectors.directory import DirectoryError, _check

    with pytest.raises(DirectoryError) as caught:
        _check("ldaps://dc1", "search of CN=x", _Result(code))
    text = str(caught.value)
    assert label in text and "ldaps://dc1" in text and "search of CN=x" in text
    assert f"LDAP result {code}" in text


def test_success_result_passes():
    from collectors.directory import _check

    _check("ldaps://dc1", "search", _Result(0))


def test_ntlm_bind_is_requested_from_ldap3(monkeypatch):
    """OpenLDAP has no NTLM, so this narrow test checks what is handed to ldap3."""
    import collectors.directory as directory

    seen = {}

    class FakeConnection:
        def __init__(self, server, **kwargs):
            seen.update(kwargs, server=server)
            self.result = {"result": 0}
            self.socket = SimpleNamespace(version=lambda: "TLSv1.3")  # as after an LDAPS handshake

        def open(self):
            return True

        def bind(self):
            return True

    monkeypatch.setattr(directory.ldap3, "Connection", FakeConnection)
    config = DirectoryConfig(servers=("ldaps://dc1.test.example",), bind_user="TEST\\svc",
                             auth="ntlm", timeout=2.5)
    directory.open_connection(config, "ldaps://dc1.test.example", "pw")
    assert seen["authentication"] == directory.ldap3.NTLM
    assert seen["user"] == "TEST\\svc"
    assert seen["read_only"] is True and seen["auto_referrals"] is False
    assert seen["receive_timeout"] == 3
    assert seen["server"].ssl is True
    assert seen["server"].tls.validate == directory.ssl.CERT_REQUIRED
