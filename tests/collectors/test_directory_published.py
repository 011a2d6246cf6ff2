"""Published namespaces from Exchange's own configuration (issue 18, part 2): the OWA/ECP
virtual directories' InternalUrl/ExternalUrl, read in one paged search and matched to servers
by DN. Literal fixtures for the pure parsers, the ``connect`` seam for the search's failures,
and the real slapd peer (tests/peers) for the whole path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collectors.directory import (
    VIRTUAL_DIRECTORY_FILTER,
    DirectoryConfig,
    DirectoryError,
    Published,
    discover,
    dn_key,
    open_connection,
    parse_published,
    parse_server,
    parse_url_host,
    with_published,
)
from tests.peers.ad_tree import (
    EXTERNAL_NAMESPACE,
    HOSTILE_URLS,
    INTERNAL_NAMESPACE,
    LAB_NAMESPACE,
    WEIRD_EXTERNAL_NAMESPACE,
    WEIRD_SERVER_NAME,
    standard_fleet,
)
from tests.peers.slapd import SlapdPeer

ROOT = Path(__file__).resolve().parents[2]
CONFIG_NC = "CN=Configuration,DC=corp,DC=example"
SERVERS = ("CN=Servers,CN=Exchange Administrative Group (FYDIBOHF23SPDLT),"
           f"CN=Administrative Groups,CN=Corp,CN=Microsoft Exchange,CN=Services,{CONFIG_NC}")
EX1 = f"CN=EX1,{SERVERS}"
EX2 = f"CN=EX2,{SERVERS}"
ODD = f"CN=LAB(1)*\\\\EX,{SERVERS}"  # a backslash in the name, escaped as loaded


def _vdir(name: str, server: str) -> str:
    return f"CN={name},CN=HTTP,CN=Protocols,{server}"


# -- parse_url_host ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "host"),
    [
        pytest.param("https://mail.corp.example/owa", "mail.corp.example", id="plain"),
        pytest.param("https://Mail.Corp.EXAMPLE/OWA", "mail.corp.example", id="lower-cased"),
        pytest.param("https://mail.corp.example:444/ecp", "mail.corp.example", id="port-dropped"),
        pytest.param("http://mail/owa", "mail", id="single-label-http"),
        pytest.param("https://mail.corp.example./owa", "mail.corp.example", id="trailing-dot"),
        pytest.param("  https://mail.corp.example/owa  ", "mail.corp.example", id="spaces-around"),
        pytest.param("https://203.0.113.7/owa", "203.0.113.7", id="ipv4-literal"),
        pytest.param("https://xn--mil-8cd.corp.example/owa", "xn--mil-8cd.corp.example",
                     id="punycode"),
        pytest.param("https://mail.corp.example/owa?x=\u202e", "mail.corp.example",
                     id="odd-path-host-kept"),
    ],
)
def test_url_host_of_usable_urls(value, host):
    assert parse_url_host(value) == (host, None)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        pytest.param("https://owa\x1b[2J.corp.example/owa", "control characters", id="escape-seq"),
        pytest.param("https://mail.corp.example\r\nX-Injected: 1/owa", "control characters",
                     id="crlf"),
        pytest.param("https://mail\x00.corp.example/owa", "control characters", id="nul"),
        pytest.param("javascript:alert(1)", "not an http(s) URL", id="javascript"),
        pytest.param("mail.corp.example/owa", "not an http(s) URL", id="no-scheme"),
        pytest.param("ftp://mail.corp.example/owa", "not an http(s) URL", id="ftp"),
        pytest.param("https://admin:secret@mail.corp.example/owa", "credentials", id="userinfo"),
        pytest.param("https:///owa", "no host name", id="no-host"),
        pytest.param("https://mail_1.corp.example/owa", "not a valid host name", id="underscore"),
        pytest.param("https://-mail.corp.example/owa", "not a valid host name", id="hyphen"),
        pytest.param("https://mail .corp.example/owa", "not a valid host name", id="space"),
        pytest.param("https://m\u0430il.corp.example/owa", "not a valid host name",
                     id="cyrillic-a"),
        pytest.param(f"https://{'a' * 64}.example/owa", "not a valid host name",
                     id="label-over-63"),
        pytest.param(f"https://{'a.' * 127}example/owa", "not a valid host name",
                     id="name-over-253"),
        pytest.param("https://[2001:db8::1]/owa", "not a valid host name", id="ipv6-literal"),
        pytest.param("https://[2001:db8::1/owa", "not a URL", id="broken-bracket"),
        pytest.param("https://mail.corp.example:99999/owa", "not a URL", id="port-out-of-range"),
        pytest.param("https://mail.corp.example:abc/owa", "not a URL", id="port-not-a-number"),
        pytest.param("https://mail.corp.example:0/owa", "port 0", id="port-zero"),
        pytest.param("https://mail.corp.example/" + "x" * 3000, "longer than 2048",
                     id="too-long"),
        pytest.param("", "not an http(s) URL", id="empty"),
    ],
)
def test_url_host_refuses_what_is_no_usable_url(value, why):
    host, reason = parse_url_host(value)
    assert host is None
    assert reason is not None and why in reason


_URLISH = st.one_of(
    st.text(),
    st.builds(lambda scheme, host, rest: f"{scheme}://{host}{rest}",
              st.sampled_from(["https", "HTTP", "ftp", ""]), st.text(max_size=80), st.text(max_size=20)),
)


@given(_URLISH)
def test_any_text_gives_a_valid_host_name_or_a_reason_and_never_raises(value):
    host, why = parse_url_host(value)
    assert (host is None) != (why is None)
    if host is not None:
        assert host == host.lower() and host.isascii() and len(host) <= 253
        assert all(label and not label.startswith("-") and not label.endswith("-")
                   and all(c.isalnum() or c == "-" for c in label) for label in host.split("."))


@given(st.lists(st.tuples(st.text(max_size=60), st.one_of(_URLISH, st.binary(max_size=40),
                                                          st.none())), max_size=8))
def test_any_entries_give_published_names_and_never_raise(entries):
    servers = [EX1, ODD]
    rows = [(dn, {"msExchInternalHostName": value, "msExchExternalHostName": [value]})
            for dn, value in entries]
    rows += [(_vdir(f"owa{i}", EX1), {"msExchInternalHostName": value})
             for i, (_dn, value) in enumerate(entries)]
    for published in parse_published(servers, rows).values():
        # Each published name is a host name that reads back as itself (a name is not a
        # URL: the property once compared the bare name, which only held while Hypothesis
        # never drew a valid URL; it drew "HTTP://0").
        assert all(parse_url_host(f"https://{name}") == (name, None)
                   for name in published.internal + published.external)
        assert not any("\x1b" in problem or "\n" in problem for problem in published.problems)


# -- dn_key ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("one", "other"),
    [
        pytest.param(EX1, EX1.lower(), id="case"),
        pytest.param(EX1, EX1.replace("CN=", "cn="), id="attribute-type-case"),
        pytest.param(ODD, ODD.replace("\\\\", "\\5C").lower(), id="escape-forms"),  # slapd's form
        pytest.param("CN=a\\,b,DC=x", "cn=A\\2cB,dc=X", id="escaped-comma"),
        pytest.param("CN=a=b,DC=x", "CN=a\\=b,DC=x", id="equals-sign"),
        pytest.param("CN=EX1, CN=Servers,DC=x", "cn=ex1,cn=servers,dc=x", id="spaces"),
        pytest.param("CN=a+OU=b,DC=x", "ou=B+cn=A,dc=x", id="multi-valued-rdn-order"),
    ],
)
def test_dn_key_equal(one, other):
    assert dn_key(one) == dn_key(other)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        pytest.param("CN=a\\,b,DC=x", "CN=a,CN=b,DC=x", id="escaped-comma-is-no-separator"),
        pytest.param("CN=a+OU=b,DC=x", "CN=a,OU=b,DC=x", id="multi-valued-rdn"),
        pytest.param("CN=a+OU=b,DC=x", "CN=a\\+OU=b,DC=x", id="escaped-plus-is-a-value"),
        pytest.param("CN=a\\\\,DC=x", "CN=a\\,DC=x", id="escaped-backslash"),
        pytest.param(EX1, EX2, id="other-server"),
    ],
)
def test_dn_key_different(one, other):
    assert dn_key(one) != dn_key(other)


# -- parse_published ---------------------------------------------------------------------------


def test_virtual_directories_are_matched_to_their_servers_by_dn():
    entries: list[tuple[str, dict[str, Any]]] = [
        # slapd's own form of the DN: lower-case types, so never compared as text
        (_vdir("owa (Default Web Site)", EX1).replace("CN=", "cn="), {
            "msExchInternalHostName": ["https://Mail.Corp.Example/owa"],
            "msExchExternalHostName": ["https://mail.example.com/owa"]}),
        (_vdir("ecp (Default Web Site)", EX1), {
            "msExchInternalHostName": ["https://mail.corp.example/ecp"],
            "msExchExternalHostName": []}),
        (_vdir("owa (Default Web Site)", EX2), {
            "msExchInternalHostName": "https://ex2-web.corp.example/owa"}),  # a bare value
        (_vdir("owa (Default Web Site)", ODD.replace("\\\\", "\\5C").lower()), {
            "msExchExternalHostName": [b"https://labex.example.com/owa"]}),  # bytes
        (_vdir("owa (Default Web Site)", f"CN=OUT-OF-SCOPE,{SERVERS}"), {
            "msExchExternalHostName": ["https://elsewhere.example.com/owa"]}),
    ]
    found = parse_published([EX1, EX2, ODD, f"CN=NOVDIR,{SERVERS}"], entries)
    assert found == {
        EX1: Published(internal=("mail.corp.example",), external=("mail.example.com",)),
        EX2: Published(internal=("ex2-web.corp.example",)),
        ODD: Published(external=("labex.example.com",)),
    }


def test_hostile_values_are_dropped_each_with_a_problem_and_nothing_raises():
    entries: list[tuple[str, dict[str, Any]]] = [
        (_vdir("owa (Default Web Site)", EX1), {
            "msExchInternalHostName": ["https://owa\x1b[2J.corp.example/owa"],
            "msExchExternalHostName": ["javascript:alert(1)"]}),
        (_vdir("ecp (Default Web Site)", EX1), {
            "msExchInternalHostName": ["https://mail.corp.example/ecp"],
            "msExchExternalHostName": [b"https://\xff\xfe.example.com/ecp", "   "]}),
    ]
    published = parse_published([EX1], entries)[EX1]
    assert published.internal == ("mail.corp.example",) and published.external == ()
    assert len(published.problems) == 3, published.problems
    first = published.problems[0]
    assert first.startswith("virtual directory 'owa (Default Web Site)': msExchInternalHostName ")
    assert "'https://owa\\x1b[2J.corp.example/owa'" in first and "\x1b" not in first
    assert "(control characters)" in first
    assert "'javascript:alert(1)' ignored (not an http(s) URL)" in published.problems[1]
    assert "msExchExternalHostName" in published.problems[2]


def test_a_long_hostile_value_is_quoted_and_cut():
    entries = [(_vdir("owa (Default Web Site)", EX1),
                {"msExchExternalHostName": ["https://" + "\x07" * 500]})]
    [problem] = parse_published([EX1], entries)[EX1].problems
    assert "\x07" not in problem and len(problem) < 500


def test_no_virtual_directory_means_nothing_known():
    assert parse_published([EX1], []) == {}


SERVER_ATTRIBUTES = {"cn": ["EX1"], "serialNumber": ["Version 15.1 (Build 32176.2)"],
                     "msExchCurrentServerRoles": ["16439"],
                     "networkAddress": ["ncacn_ip_tcp:ex1.corp.example"],
                     "msExchServerSite": [f"CN=HQ,CN=Sites,{CONFIG_NC}"]}


def test_the_host_carries_the_names_and_the_problems():
    server = parse_server(EX1, SERVER_ATTRIBUTES)
    published = Published(("mail.corp.example",), ("mail.example.com",), ("a problem",))
    host = with_published(server, published).to_host()
    assert host.internal_names == ("mail.corp.example",)
    assert host.external_names == ("mail.example.com",)
    assert host.problems[-1] == "a problem"
    assert with_published(server, None) == server
    assert server.to_host().internal_names == server.to_host().external_names == ()
    shown = with_published(server, published).as_json()
    assert shown["internal_names"] == ["mail.corp.example"]
    assert shown["external_names"] == ["mail.example.com"]


# -- the search, through the connect seam ------------------------------------------------------


class _Directory:
    """A connection as ``discover`` uses it: the RootDSE, one server, and for the
    virtual-directory search whatever ``answer`` says (entries, a result code, or an error)."""

    def __init__(self, answer: Any, servers: Sequence[tuple[str, dict[str, Any]]] = (
            (EX1, SERVER_ATTRIBUTES),)):
        self.answer, self.servers = answer, servers
        self.searches: list[tuple[str, str, Sequence[str]]] = []
        self.result: dict[str, Any] = {}
        self.response: list[dict[str, Any]] = []

    def search(self, search_base: str, search_filter: str, search_scope: str = "",
               attributes: Sequence[str] = (), paged_size: int | None = None,
               paged_cookie: bytes | None = None) -> bool:
        self.searches.append((search_base, search_filter, tuple(attributes)))
        found: list[tuple[str, dict[str, Any]]] = []
        code = 0
        if search_base == "":
            found = [("", {"configurationNamingContext": [CONFIG_NC]})]
        elif search_filter == VIRTUAL_DIRECTORY_FILTER:
            if isinstance(self.answer, Exception):
                raise self.answer
            if isinstance(self.answer, int):
                code = self.answer
            else:
                found = self.answer
        else:
            found = list(self.servers)
        self.response = [{"type": "searchResEntry", "dn": dn, "attributes": attributes}
                         for dn, attributes in found]
        self.result = {"result": code, "controls": {}, "message": ""}
        return True

    def unbind(self) -> None:
        pass


CONFIG = DirectoryConfig(servers=("ldaps://dc1.corp.example",), bind_user="svc")


def test_one_fixed_search_below_the_exchange_container_reads_both_classes():
    connection = _Directory([(_vdir("owa (Default Web Site)", EX1),
                              {"msExchExternalHostName": ["https://mail.example.com/owa"]})])
    found = discover(CONFIG, "pw", connect=lambda *_: connection)
    [server] = found.servers
    assert server.external_names == ("mail.example.com",)
    assert found.warnings == ()
    vdir_searches = [s for s in connection.searches if s[1] == VIRTUAL_DIRECTORY_FILTER]
    assert vdir_searches == [(f"CN=Microsoft Exchange,CN=Services,{CONFIG_NC}",
                              VIRTUAL_DIRECTORY_FILTER,
                              ("msExchInternalHostName", "msExchExternalHostName"))]
    assert VIRTUAL_DIRECTORY_FILTER == (
        "(&(|(objectClass=msExchOWAVirtualDirectory)(objectClass=msExchECPVirtualDirectory))"
        "(|(msExchInternalHostName=*)(msExchExternalHostName=*))"
        "(!(cn=*\\28Exchange Back End\\29)))")


def test_no_server_no_virtual_directory_search():
    connection = _Directory([], servers=())
    found = discover(CONFIG, "pw", connect=lambda *_: connection)
    assert found.servers == ()
    assert [s[1] for s in connection.searches if s[1] == VIRTUAL_DIRECTORY_FILTER] == []


@pytest.mark.parametrize("code", [50, 3, 4])  # insufficient access, time limit, size limit
def test_a_refused_search_is_a_warning_and_the_servers_stay(code):
    found = discover(CONFIG, "pw", connect=lambda *_: _Directory(code))
    [server] = found.servers
    assert server.internal_names == server.external_names == ()
    [warning] = found.warnings
    assert warning.startswith("OWA/ECP virtual directories not read")
    assert "guessed from their roles" in warning and f"LDAP result {code}" in warning


def test_a_connection_lost_during_the_search_asks_the_next_domain_controller():
    config = DirectoryConfig(servers=("ldaps://dc1.corp.example", "ldaps://dc2.corp.example"),
                             bind_user="svc")
    answers = {"ldaps://dc1.corp.example": _Directory(OSError("connection reset")),
               "ldaps://dc2.corp.example": _Directory([])}
    found = discover(config, "pw", connect=lambda _config, url, _password: answers[url])
    assert found.server == "ldaps://dc2.corp.example" and len(found.servers) == 1
    with pytest.raises(DirectoryError, match="connection reset"):
        discover(CONFIG, "pw", connect=lambda *_: _Directory(OSError("connection reset")))


# -- the real slapd peer ------------------------------------------------------------------------


def _config(peer: SlapdPeer) -> DirectoryConfig:
    return DirectoryConfig(servers=(peer.ldaps_url,), bind_user=peer.service_dn,
                           ca_file=str(peer.ca_file), connect_timeout=3.0, timeout=10.0)


@pytest.mark.integration
def test_discovery_finds_each_servers_published_namespaces(slapd_standard):
    found = discover(_config(slapd_standard), slapd_standard.service_password)
    published = {s.name: (s.internal_names, s.external_names) for s in found.servers
                 if s.internal_names or s.external_names}
    assert published == {
        # OWA/ECP inside and out; its EWS external name is not read
        "EX2013-CAS1": ((INTERNAL_NAMESPACE,), (EXTERNAL_NAMESPACE,)),
        # internal only; its back-end directories (its own name, port 444) are no namespace
        "EX2016-01": ((INTERNAL_NAMESPACE,), ()),
        # two hostile values dropped, the valid one kept
        "EX2016-03": ((LAB_NAMESPACE,), ()),
        # the server's DN needs escaping: matched all the same
        WEIRD_SERVER_NAME: ((), (WEIRD_EXTERNAL_NAMESPACE,)),
    }
    assert found.warnings == ()
    hostile = next(s for s in found.servers if s.name == "EX2016-03")
    dropped = [p for p in hostile.problems if p.startswith("virtual directory ")]
    assert len(dropped) == 2
    assert repr(HOSTILE_URLS[0]) in dropped[0] and "\x1b" not in dropped[0]
    assert repr(HOSTILE_URLS[1]) in dropped[1]
    host = next(s for s in found.servers if s.name == "EX2013-CAS1").to_host()
    assert host.external_names == (EXTERNAL_NAMESPACE,)
    assert len(found.servers) == len(standard_fleet())


@pytest.mark.integration
def test_one_paged_search_reads_every_namespace_past_the_size_limit(slapd_bulk, monkeypatch):
    """5,000 servers, 10,000 front-end virtual directories (the size limit is 1,000): one
    search, paged; no server's own back-end name is taken for a namespace."""
    started: list[str] = []

    def counting(config: DirectoryConfig, url: str, password: str) -> Any:
        connection = open_connection(config, url, password)
        search = connection.search

        def wrapped(search_base: str, search_filter: str, *args: Any, **kwargs: Any) -> Any:
            if kwargs.get("paged_cookie") is None:
                started.append(search_filter)
            return search(search_base, search_filter, *args, **kwargs)

        monkeypatch.setattr(connection, "search", wrapped)
        return connection

    found = discover(_config(slapd_bulk), slapd_bulk.service_password, connect=counting)
    assert started.count(VIRTUAL_DIRECTORY_FILTER) == 1
    assert len(found.servers) == 5000
    assert {s.internal_names for s in found.servers} == {("mail.bulk.test.example",)}
    external = [s for s in found.servers if s.external_names]
    assert {s.external_names for s in external} == {("mail.bulk.example.com",)}
    assert len(external) == 5000 // 4
    assert found.warnings == ()


@pytest.mark.integration
def test_the_command_shows_the_names(slapd_standard, tmp_path):
    config = tmp_path / "collection.toml"
    config.write_text(f'[ldap]\nservers = ["{slapd_standard.ldaps_url}"]\n'
                      f'bind_user = "{slapd_standard.service_dn}"\n'
                      f'ca_file = "{slapd_standard.ca_file}"\nconnect_timeout = 3\n')
    env = {**os.environ, "PROXYLOGON_LDAP_PASSWORD": slapd_standard.service_password}
    done = subprocess.run([sys.executable, "-m", "collectors", "discover", "--config",
                           str(config), "--secrets", os.devnull], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    by_name = {s["name"]: s for s in json.loads(done.stdout)}
    assert by_name["EX2013-CAS1"]["external_names"] == [EXTERNAL_NAMESPACE]
    assert by_name["EX2016-01"]["internal_names"] == [INTERNAL_NAMESPACE]
    assert by_name["EX2019-01"]["internal_names"] == []
    assert "\x1b" not in done.stdout + done.stderr
