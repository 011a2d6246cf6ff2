"""Property tests of the pure AD parsers in collectors.directory.

Whatever a directory holds (or a misbehaving DC or proxy returns), the parsers turn it into
a record with problems, never an exception: one odd object must not stop the inventory.
"""

from __future__ import annotations

import json
import sys

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from collectors.directory import (
    ATTRIBUTES,
    ROLE_BITS,
    DirectoryServer,
    parse_build_attributes,
    parse_first_rdn,
    parse_network_address,
    parse_roles,
    parse_server,
)
from compliance.builds import encode_version_number
from compliance.models import Build, Host

ROLE_NAMES = {name for _bit, name in ROLE_BITS}
ALL_ROLE_BITS = sum(bit for bit, _name in ROLE_BITS)

digits_text = st.text(alphabet=st.sampled_from("0123456789٠١٢٣ \t-+_"), min_size=1, max_size=12)
role_values = st.one_of(
    st.none(),
    st.integers(-(2**70), 2**70),
    st.integers(0, ALL_ROLE_BITS * 2),
    st.integers(0, ALL_ROLE_BITS * 2).map(str),
    digits_text,
    st.text(max_size=20),
)

# DN-shaped text: RDNs with escapes, odd separators and spaces; plus arbitrary text.
rdn_value = st.text(alphabet=st.sampled_from("abcEX01 ,=+<>#;\\\"\x00é字"), max_size=10)
dn_like = st.builds(
    lambda rdns: ",".join(f"{t}={v}" for t, v in rdns),
    st.lists(st.tuples(st.sampled_from(["CN", "cn", "OU", "DC", "", " CN ", "1.2.3"]), rdn_value),
             min_size=1, max_size=4),
)
dn_text = st.one_of(dn_like, st.text(max_size=40), st.sampled_from([
    "CN=Default-First-Site-Name,CN=Sites,CN=Configuration,DC=x", "CN=EX\\2C01,CN=Servers",
    "CN=a\\", "CN=\\ZZ", "=", ",", "CN=#0403", "CN=EX1+OU=x,DC=y", "CN=\\00",
]))

serial_text = st.one_of(
    st.none(),
    st.text(max_size=40),
    st.builds(lambda ma, mi, b, r: f"Version {ma}.{mi} (Build {b}.{r})",
              st.integers(0, 999), st.integers(0, 999), st.integers(0, 999_999), st.integers(0, 9999)),
)
version_number_text = st.one_of(
    st.none(),
    st.text(max_size=20),
    digits_text,
    st.builds(lambda ma, mi, b: str(encode_version_number(Build(ma, mi, b))),
              st.integers(0, 63), st.integers(0, 63), st.integers(0, 0x7FFF)),
)

# Attribute values in every shape ldap3 (or something pretending to be it) could hand over.
scalar = st.one_of(
    st.none(), st.text(max_size=30), st.binary(max_size=30), st.integers(-(2**64), 2**64),
    st.booleans(), st.floats(allow_nan=True), serial_text, version_number_text, dn_text,
)
attribute_value = st.one_of(
    scalar,
    st.lists(scalar, max_size=3),
    st.lists(scalar, max_size=3).map(tuple),
    st.lists(st.lists(scalar, max_size=2), max_size=2),
    st.dictionaries(st.text(max_size=5), scalar, max_size=2),
)
attribute_name = st.one_of(st.sampled_from((*ATTRIBUTES, "dNSHostName", "objectClass")), st.text(max_size=10))
attributes = st.dictionaries(attribute_name, attribute_value, max_size=12)
network_values = st.lists(
    st.one_of(
        st.text(max_size=30),
        st.builds(lambda p, rest: f"{p}:{rest}",
                  st.sampled_from(["ncacn_ip_tcp", "NCACN_IP_TCP", "netbios", "ncalrpc", "", " netbios "]),
                  st.text(alphabet=st.sampled_from("ab.EX1 :\t"), max_size=20)),
    ),
    max_size=5,
)


@given(role_values)
@example("١٦")
@example("1_6")
@example("9" * 5000)  # over Python's int-from-text digit limit
@example(-1)
@example(2**62)
def test_parse_roles_returns_names_or_problems(value: str | int | None) -> None:
    roles, problems = parse_roles(value)
    assert isinstance(problems, list) and all(isinstance(p, str) and p for p in problems)
    if roles is None:
        assert problems, "unknown roles must say why"
    else:
        assert isinstance(roles, tuple) and set(roles) <= ROLE_NAMES
        assert len(set(roles)) == len(roles)


@given(st.integers(0, ALL_ROLE_BITS * 4))
def test_known_role_bits_read_back_exactly(mask: int) -> None:
    roles, problems = parse_roles(str(mask))
    assert roles is not None
    assert sum(bit for bit, name in ROLE_BITS if name in roles) == mask & ALL_ROLE_BITS
    assert (problems == []) == (mask & ~ALL_ROLE_BITS == 0)  # bit 8 and 2**25.. are no role


@given(network_values)
@example(["ncacn_ip_tcp:", "netbios:", ":", "ncacn_ip_tcp:nodot", "ncacn_ip_tcp: EX1.Example.COM "])
def test_parse_network_address_never_raises(values: list[str]) -> None:
    fqdn, netbios = parse_network_address(values)
    if fqdn is not None:
        assert "." in fqdn and fqdn == fqdn.lower() and fqdn == fqdn.strip() and fqdn
    if netbios is not None:
        assert netbios and netbios == netbios.strip()


@given(st.one_of(st.none(), dn_text))
def test_parse_first_rdn_never_raises(dn: str | None) -> None:
    value = parse_first_rdn(dn)
    assert value is None or isinstance(value, str)
    if not dn:
        assert value is None


@given(serial_text, version_number_text)
@example(None, None)
@example("Version 15.1 (Build 32176.2)", "1942063232")
@example("Version 15.1 (Build 32176.2)", "1942063233")
@example("Version 15.1 (Build 2176.2)", None)
@example("", "9" * 5000)
def test_parse_build_attributes_never_raises(serial: str | None, number: str | None) -> None:
    build, raw, problems = parse_build_attributes(serial, number)
    assert all(isinstance(p, str) and p for p in problems)
    if build is None:
        assert raw is None
    else:
        assert isinstance(build, Build)
        assert raw is not None and raw in (serial, number)
    if not serial:
        assert "serialNumber missing" in problems


@given(st.one_of(dn_like, st.text(min_size=1, max_size=40)), attributes,
       st.one_of(st.none(), st.dictionaries(st.text(max_size=8), st.text(max_size=20), max_size=3)))
@example("CN=BARE,CN=Servers,DC=x", {}, None)
@example("x", {"cn": [b"\xff\xfe"], "msExchCurrentServerRoles": [b"16439"], "networkAddress": b"netbios:X"}, None)
@example("CN=EX1", {"cn": [], "name": [None], "networkAddress": [None, 7, b"ncacn_ip_tcp:ex1.x"]}, {})
@example("CN=EX1", {"serialNumber": [["Version 15.1 (Build 32176.2)"]], "versionNumber": [1942063232]}, None)
@example("CN=EX1", {"msExchComponentStates": ["1:ServerWideOffline:0:x", 5, None]}, None)
def test_parse_server_always_yields_a_named_record(dn: str, attrs: dict[str, object],
                                                   computer_dns: dict[str, str] | None) -> None:
    server = parse_server(dn, attrs, computer_dns)
    assert isinstance(server, DirectoryServer)
    assert isinstance(server.name, str) and server.name, server
    assert server.dn == dn
    assert all(isinstance(p, str) and p for p in server.problems)
    assert server.roles is None or set(server.roles) <= ROLE_NAMES
    host = server.to_host()
    assert isinstance(host, Host) and host.name == server.name
    if server.edge:
        assert host.ad_build is None
    json.dumps(server.as_json())  # the inventory is written out as JSON


@pytest.mark.parametrize("call", ["parse_roles", "parse_server"])
def test_a_huge_int_attribute_is_a_problem_not_a_crash(call: str) -> None:
    huge = 10 ** (sys.get_int_max_str_digits() + 10)
    if call == "parse_roles":
        roles, problems = parse_roles(huge)
        assert roles is None and problems
    else:
        server = parse_server("CN=EX1,DC=x", {"cn": ["EX1"], "msExchCurrentServerRoles": [huge]})
        assert server.roles is None and server.problems
