"""The slapd peer with SASL GSSAPI (tests/peers/slapd.py, ``kerberos=``) and the MIT KDC peer:
what a Kerberos client sees, with ldap3 and with OpenLDAP's own ldapwhoami, no collector code."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import ldap3
import pytest
from ldap3.core.exceptions import LDAPCommunicationError

from tests.peers.ad_tree import dn_key, standard_fleet
from tests.peers.fixtures import SKEW_SECONDS
from tests.peers.kdc import KdcPeer
from tests.peers.slapd import SlapdPeer

pytestmark = pytest.mark.integration
# requirements-kerberos.txt (./test.sh installs it; in CI a skip fails the run)
GSSError = pytest.importorskip("gssapi.raw.misc").GSSError


@pytest.fixture
def krb_env(kdc_peer: KdcPeer, monkeypatch: pytest.MonkeyPatch) -> None:
    """This test process is a client of the session's realm (gssapi reads the env each call)."""
    for name, value in kdc_peer.env().items():
        monkeypatch.setenv(name, value)


def _ticket(kdc: KdcPeer, principal: str, keytab: Path, ccache: Path) -> str:
    kdc.kinit(principal, keytab, ccache)
    return f"FILE:{ccache}"


@contextlib.contextmanager
def _gssapi_connection(peer: SlapdPeer, url: str, principal: str, ccache: str,
                       *, start_tls: bool = False) -> Iterator[ldap3.Connection]:
    """Opened (and StartTLS'd), not bound; closed after the block. (Not ldap3's own ``with``:
    it binds on entry, and reopens on exit a connection that was open before.)"""
    host, port = url.split("://")[1].rsplit(":", 1)
    tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, version=ssl.PROTOCOL_TLS_CLIENT,
                    ca_certs_file=str(peer.ca_file))
    server = ldap3.Server(host, port=int(port), use_ssl=url.startswith("ldaps"), tls=tls,
                          get_info=ldap3.NONE, connect_timeout=3)
    connection = ldap3.Connection(server, user=principal, authentication=ldap3.SASL,
                                  sasl_mechanism=ldap3.KERBEROS, cred_store={"ccache": ccache},
                                  raise_exceptions=False, receive_timeout=10)
    connection.open()
    try:
        if start_tls:
            assert connection.start_tls()
        yield connection
    finally:
        with contextlib.suppress(Exception):
            connection.unbind()


def _exchange_servers(connection: ldap3.Connection, peer: SlapdPeer) -> set[str]:
    connection.search(peer.exchange_base, "(objectClass=msExchExchangeServer)", attributes=["cn"],
                      paged_size=1000)
    return {str(e["attributes"]["cn"][0]) for e in connection.response or []
            if e.get("type") == "searchResEntry"}


@pytest.mark.parametrize("over", ["ldaps", "starttls"])
def test_service_principal_binds_as_the_service_account(slapd_kerberos: SlapdPeer, kdc_peer: KdcPeer,
                                                         krb_env: None, tmp_path: Path, over: str) -> None:
    assert slapd_kerberos.service_principal == f"svc-exinventory@{kdc_peer.realm}"
    assert slapd_kerberos.service_keytab is not None
    ccache = _ticket(kdc_peer, slapd_kerberos.service_principal, slapd_kerberos.service_keytab,
                     tmp_path / "cc")
    url = slapd_kerberos.kerberos_ldaps_url if over == "ldaps" else slapd_kerberos.kerberos_ldap_url
    with _gssapi_connection(slapd_kerberos, url, slapd_kerberos.service_principal, ccache,
                            start_tls=over == "starttls") as connection:
        assert connection.bind(), connection.result
        whoami = connection.extend.standard.who_am_i()
        assert dn_key(whoami.removeprefix("dn:")) == dn_key(slapd_kerberos.service_dn)
        # the same read rights as the simple-bound account: every server object
        names = _exchange_servers(connection, slapd_kerberos)
        assert {spec.name for spec in standard_fleet()} <= names


def test_simple_bind_still_works_beside_kerberos(slapd_kerberos: SlapdPeer) -> None:
    tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, version=ssl.PROTOCOL_TLS_CLIENT,
                    ca_certs_file=str(slapd_kerberos.ca_file))
    server = ldap3.Server(slapd_kerberos.host, port=slapd_kerberos.ldaps_port, use_ssl=True, tls=tls)
    with ldap3.Connection(server, user=slapd_kerberos.service_dn,
                          password=slapd_kerberos.service_password) as connection:
        assert connection.bound


def test_other_principal_is_an_unmapped_authenticated_user(slapd_kerberos: SlapdPeer, kdc_peer: KdcPeer,
                                                           krb_env: None, tmp_path: Path) -> None:
    principal = kdc_peer.add_principal("t-peer-unmapped")
    ccache = _ticket(kdc_peer, principal, kdc_peer.keytab(principal, tmp_path / "kt"), tmp_path / "cc")
    with _gssapi_connection(slapd_kerberos, slapd_kerberos.kerberos_ldaps_url, principal,
                            ccache) as connection:
        assert connection.bind(), connection.result
        assert connection.extend.standard.who_am_i() == (
            f"dn:uid=t-peer-unmapped,cn={kdc_peer.realm.lower()},cn=gssapi,cn=auth")


def test_plain_ldap_gssapi_needs_a_security_layer_ldap3_lacks(slapd_kerberos: SlapdPeer, kdc_peer: KdcPeer,
                                                              krb_env: None, tmp_path: Path) -> None:
    """minssf=1: without TLS slapd asks for a SASL layer (like a DC requiring LDAP signing)."""
    assert slapd_kerberos.service_principal and slapd_kerberos.service_keytab
    ccache = _ticket(kdc_peer, slapd_kerberos.service_principal, slapd_kerberos.service_keytab,
                     tmp_path / "cc")
    with (_gssapi_connection(slapd_kerberos, slapd_kerberos.kerberos_ldap_url,
                             slapd_kerberos.service_principal, ccache) as connection,
          pytest.raises(LDAPCommunicationError, match="security layer")):
        connection.bind()


def test_ldapwhoami_negotiates_a_layer_over_plain_ldap(slapd_kerberos: SlapdPeer, kdc_peer: KdcPeer,
                                                       tmp_path: Path) -> None:
    """OpenLDAP's own client does sign: the peer is not tuned to ldap3. ``-N``: libldap would
    otherwise ask for ldap/<reverse DNS of 127.0.0.1> ("vm" here)."""
    if shutil.which("ldapwhoami") is None:
        pytest.skip("ldapwhoami not installed (Debian package ldap-utils)")
    assert slapd_kerberos.service_principal and slapd_kerberos.service_keytab
    ccache = _ticket(kdc_peer, slapd_kerberos.service_principal, slapd_kerberos.service_keytab,
                     tmp_path / "cc")
    done = subprocess.run(["ldapwhoami", "-N", "-Q", "-Y", "GSSAPI", "-H", slapd_kerberos.kerberos_ldap_url],
                          env={**os.environ, **kdc_peer.env(), "KRB5CCNAME": ccache},
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert dn_key(done.stdout.strip().removeprefix("dn:")) == dn_key(slapd_kerberos.service_dn)


def test_ip_address_asks_for_an_spn_nobody_has(slapd_kerberos: SlapdPeer, kdc_peer: KdcPeer,
                                               krb_env: None, tmp_path: Path) -> None:
    """The service name follows the host name connected to: ldap/127.0.0.1 is not in the realm."""
    assert slapd_kerberos.service_principal and slapd_kerberos.service_keytab
    ccache = _ticket(kdc_peer, slapd_kerberos.service_principal, slapd_kerberos.service_keytab,
                     tmp_path / "cc")
    with (_gssapi_connection(slapd_kerberos, slapd_kerberos.ldaps_url,
                             slapd_kerberos.service_principal, ccache) as connection,
          pytest.raises(GSSError, match=re.escape("ldap/127.0.0.1@PROBE.TEST not found"))):
        connection.bind()


def test_skewed_dc_refuses_every_ticket(slapd_kerberos_skewed: SlapdPeer, kdc_peer: KdcPeer,
                                        krb_env: None, tmp_path: Path) -> None:
    """slapd an hour ahead: its acceptor says "Clock skew too great" in its log; the client gets
    invalidCredentials and no Kerberos reply, so ldap3 fails on an empty token."""
    peer = slapd_kerberos_skewed
    assert peer.clock_offset == SKEW_SECONDS and peer.service_principal and peer.service_keytab
    ccache = _ticket(kdc_peer, peer.service_principal, peer.service_keytab, tmp_path / "cc")
    with _gssapi_connection(peer, peer.kerberos_ldaps_url, peer.service_principal, ccache) as connection:
        with pytest.raises(GSSError, match="Invalid token"):
            connection.bind()
        assert not connection.bound
    assert "Clock skew too great" in peer.log_file.read_text(errors="replace")
