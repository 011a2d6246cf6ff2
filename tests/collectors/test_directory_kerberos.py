"""LDAP discovery with Kerberos (SASL GSSAPI) against a real slapd and a real MIT KDC (tests/peers).

Every failure must name the domain controller, the principal, the reason
(``collectors.kerberos.REASONS``) and a fix. The session's realm is shared: each test makes
principals of its own (``t-dirk-...``) and never changes the service account's key.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from collectors.directory import DirectoryConfig, DirectoryError, discover, open_connection
from collectors.kerberos import KerberosConfig
from tests.peers.ad_tree import ad_ldif, standard_fleet
from tests.peers.fixtures import require_slapd
from tests.peers.kdc import KdcPeer
from tests.peers.slapd import SlapdPeer, closed_port, start_slapd

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def realm(kdc_peer: KdcPeer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> KdcPeer:
    """The test process is a client of the session's realm (gssapi reads the env at each
    call), with no credential cache of its own unless a test sets one."""
    for name, value in kdc_peer.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("KRB5CCNAME", f"FILE:{tmp_path / 'no-such-ccache'}")
    return kdc_peer


def _config(peer: SlapdPeer, url: str | None = None, *, principal: str | None = None,
            keytab: Path | str | None = "service", **overrides: object) -> DirectoryConfig:
    """Kerberos from the service account's keytab by default; ``keytab=None``: the cache."""
    principal = principal or peer.service_principal
    assert principal is not None
    kerberos = KerberosConfig(principal=principal,
                              keytab=str(peer.service_keytab if keytab == "service" else keytab)
                              if keytab is not None else None)
    settings: dict[str, object] = {
        "servers": (url or peer.kerberos_ldaps_url,), "bind_user": principal, "auth": "kerberos",
        "kerberos": kerberos, "ca_file": str(peer.ca_file), "connect_timeout": 3.0, "timeout": 10.0}
    settings.update(overrides)
    return DirectoryConfig(**settings)  # type: ignore[arg-type]


def _bind_fails(config: DirectoryConfig) -> DirectoryError:
    with pytest.raises(DirectoryError) as caught:
        open_connection(config, config.servers[0], "").unbind()
    return caught.value


def _names_the_dc_and_principal(error: DirectoryError, url: str, principal: str) -> None:
    assert error.operation == f"Kerberos bind as {principal}"
    assert str(error).startswith(f"{url}: Kerberos bind as {principal} failed: ")
    assert "Fix: " in str(error)


def _own_principal(kdc: KdcPeer, tmp_path: Path, name: str, **options: str) -> tuple[str, Path]:
    principal = kdc.add_principal(name, **options)
    return principal, kdc.keytab(principal, tmp_path / f"{name}.keytab")


# -- it works ------------------------------------------------------------------------------------


@pytest.mark.parametrize("over", ["ldaps", "starttls"])
def test_keytab_ticket_discovers_the_whole_fleet(slapd_kerberos: SlapdPeer, realm: KdcPeer, over: str) -> None:
    url = slapd_kerberos.kerberos_ldaps_url if over == "ldaps" else slapd_kerberos.kerberos_ldap_url
    found = discover(_config(slapd_kerberos, url), "")
    assert found.server == url
    assert sorted(s.name for s in found.servers) == sorted(spec.name for spec in standard_fleet())


def test_users_credential_cache_discovers_the_whole_fleet(slapd_kerberos: SlapdPeer, realm: KdcPeer,
                                                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert slapd_kerberos.service_principal and slapd_kerberos.service_keytab
    ccache = tmp_path / "user.cc"
    realm.kinit(slapd_kerberos.service_principal, slapd_kerberos.service_keytab, ccache)
    monkeypatch.setenv("KRB5CCNAME", f"FILE:{ccache}")
    found = discover(_config(slapd_kerberos, keytab=None), "")
    assert len(found.servers) == len(standard_fleet())


def test_connection_binds_as_the_mapped_service_account(slapd_kerberos: SlapdPeer, realm: KdcPeer) -> None:
    connection = open_connection(_config(slapd_kerberos), slapd_kerberos.kerberos_ldaps_url, "")
    try:
        assert connection.bound
        whoami = connection.extend.standard.who_am_i()
        assert whoami.lower() == f"dn:{slapd_kerberos.service_dn}".lower()
    finally:
        connection.unbind()


# -- refused before any ticket is asked for -------------------------------------------------------


def test_plain_ldap_is_refused_before_the_keytab_is_read(slapd_kerberos: SlapdPeer, realm: KdcPeer,
                                                         tmp_path: Path) -> None:
    """The keytab does not exist: had a ticket been asked for, that would be the error."""
    config = _config(slapd_kerberos, slapd_kerberos.kerberos_ldap_url, start_tls=False,
                     keytab=tmp_path / "absent.keytab")
    error = _bind_fails(config)
    assert error.operation == "connect" and "plain LDAP refused" in str(error)
    assert error.reason == ""


def test_plain_ldap_allowed_meets_a_dc_that_requires_signing(slapd_kerberos: SlapdPeer, realm: KdcPeer) -> None:
    url = slapd_kerberos.kerberos_ldap_url
    error = _bind_fails(_config(slapd_kerberos, url, start_tls=False, allow_plain=True))
    _names_the_dc_and_principal(error, url, slapd_kerberos.service_principal or "")
    assert error.reason == "refused" and error.another_server_may_answer
    assert "security layer" in error.detail and "ldaps://" in error.hint


def test_server_offering_no_security_layer_at_all_is_named(realm: KdcPeer, tmp_path: Path) -> None:
    """maxssf=0: the offer is "no layer" only, which ldap3 2.9.1 misreads (bytes against str)."""
    require_slapd()
    with start_slapd(tmp_path / "slapd", ad_ldif(standard_fleet()[:1]), kerberos=realm,
                     sasl_secprops="noanonymous,noplain,maxssf=0") as peer:
        error = _bind_fails(_config(peer))
    _names_the_dc_and_principal(error, peer.kerberos_ldaps_url, peer.service_principal or "")
    assert error.reason == "refused" and "no SASL security layer" in error.detail
    assert "maxssf=0" in error.hint


def test_kerberos_without_a_principal_is_a_configuration_error() -> None:
    config = DirectoryConfig(servers=("ldaps://localhost:1",), bind_user="x", auth="kerberos")
    with pytest.raises(DirectoryError, match=r"\[kerberos\]") as caught:
        open_connection(config, config.servers[0], "")
    assert caught.value.operation == "configuration"


def test_gssapi_package_missing_is_unavailable(slapd_kerberos: SlapdPeer, realm: KdcPeer) -> None:
    """In a child interpreter where ``import gssapi`` fails, as without requirements-kerberos.txt."""
    config = _config(slapd_kerberos)
    script = f"""
import json, sys
sys.modules["gssapi"] = None  # import gssapi -> ImportError
from collectors.directory import DirectoryConfig, DirectoryError, open_connection
from collectors.kerberos import KerberosConfig
config = DirectoryConfig(servers=({config.servers[0]!r},), bind_user="x", auth="kerberos",
                         ca_file={config.ca_file!r}, kerberos=KerberosConfig(**{vars(config.kerberos)!r}))
try:
    open_connection(config, config.servers[0], "")
except DirectoryError as error:
    print(json.dumps({{"reason": error.reason, "message": str(error)}}))
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=False, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["reason"] == "unavailable"
    assert "requirements-kerberos.txt" in answer["message"]
    assert answer["message"].startswith(f"{config.servers[0]}: Kerberos bind as ")


# -- the account's own ticket: every DC would fail alike, so discovery stops at the first ----------


def _stops_at_the_first_dc(peer: SlapdPeer, config: DirectoryConfig) -> DirectoryError:
    calls: list[str] = []

    def counting(config: DirectoryConfig, url: str, password: str):  # type: ignore[no-untyped-def]
        calls.append(url)
        return open_connection(config, url, password)

    two = DirectoryConfig(**{**vars(config), "servers": (peer.kerberos_ldaps_url, peer.kerberos_ldap_url)})
    with pytest.raises(DirectoryError) as caught:
        discover(two, "", connect=counting)
    assert calls == [peer.kerberos_ldaps_url]
    return caught.value


def test_key_changed_after_the_keytab_was_written_is_wrong_key(slapd_kerberos: SlapdPeer, realm: KdcPeer,
                                                               tmp_path: Path) -> None:
    principal, keytab = _own_principal(realm, tmp_path, "t-dirk-rekeyed")
    realm.change_key(principal)
    error = _stops_at_the_first_dc(slapd_kerberos, _config(slapd_kerberos, principal=principal, keytab=keytab))
    _names_the_dc_and_principal(error, slapd_kerberos.kerberos_ldaps_url, principal)
    assert error.reason == "wrong_key"


def test_missing_keytab_is_unreadable(slapd_kerberos: SlapdPeer, realm: KdcPeer, tmp_path: Path) -> None:
    keytab = tmp_path / "absent.keytab"
    error = _stops_at_the_first_dc(slapd_kerberos, _config(slapd_kerberos, keytab=keytab))
    _names_the_dc_and_principal(error, slapd_kerberos.kerberos_ldaps_url, slapd_kerberos.service_principal or "")
    assert error.reason == "keytab_unreadable" and str(keytab) in str(error)


def test_keytab_that_is_not_a_keytab_is_unreadable(slapd_kerberos: SlapdPeer, realm: KdcPeer, tmp_path: Path) -> None:
    """Running as root, a mode-000 file is still readable: garbage content stands in."""
    keytab = tmp_path / "garbage.keytab"
    keytab.write_bytes(b"\x05\x02 this is no keytab")
    error = _bind_fails(_config(slapd_kerberos, keytab=keytab))
    _names_the_dc_and_principal(error, slapd_kerberos.kerberos_ldaps_url, slapd_kerberos.service_principal or "")
    assert error.reason == "keytab_unreadable" and str(keytab) in str(error)


def test_principal_deleted_from_the_realm_is_unknown(slapd_kerberos: SlapdPeer, realm: KdcPeer,
                                                     tmp_path: Path) -> None:
    principal, keytab = _own_principal(realm, tmp_path, "t-dirk-deleted")
    realm.kadmin(f"delprinc -force {principal}")
    error = _bind_fails(_config(slapd_kerberos, principal=principal, keytab=keytab))
    _names_the_dc_and_principal(error, slapd_kerberos.kerberos_ldaps_url, principal)
    assert error.reason == "principal_unknown"


def test_empty_credential_cache_is_no_ticket(slapd_kerberos: SlapdPeer, realm: KdcPeer) -> None:
    error = _stops_at_the_first_dc(slapd_kerberos, _config(slapd_kerberos, keytab=None))
    _names_the_dc_and_principal(error, slapd_kerberos.kerberos_ldaps_url, slapd_kerberos.service_principal or "")
    assert error.reason == "no_ticket"


def test_credential_cache_of_another_principal_is_no_ticket(slapd_kerberos: SlapdPeer, realm: KdcPeer,
                                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other, keytab = _own_principal(realm, tmp_path, "t-dirk-someone-else")
    realm.kinit(other, keytab, tmp_path / "other.cc")
    monkeypatch.setenv("KRB5CCNAME", f"FILE:{tmp_path / 'other.cc'}")
    error = _bind_fails(_config(slapd_kerberos, keytab=None))
    _names_the_dc_and_principal(error, slapd_kerberos.kerberos_ldaps_url, slapd_kerberos.service_principal or "")
    assert error.reason == "no_ticket" and other in str(error)


def test_ticket_binds_while_valid_and_is_expired_a_moment_after_its_end(
        slapd_kerberos: SlapdPeer, realm: KdcPeer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The realm caps the principal's tickets at 3 s; the same cache, before and after."""
    principal, keytab = _own_principal(realm, tmp_path, "t-dirk-short-lived", max_life="3 seconds")
    realm.kinit(principal, keytab, tmp_path / "short.cc")
    monkeypatch.setenv("KRB5CCNAME", f"FILE:{tmp_path / 'short.cc'}")
    config = _config(slapd_kerberos, principal=principal, keytab=None)
    open_connection(config, config.servers[0], "").unbind()  # an unmapped, authenticated user
    time.sleep(3.5)
    error = _bind_fails(config)
    _names_the_dc_and_principal(error, slapd_kerberos.kerberos_ldaps_url, principal)
    assert error.reason == "ticket_expired" and not error.another_server_may_answer


def test_unreachable_kdc(slapd_kerberos: SlapdPeer, realm: KdcPeer, tmp_path: Path,
                         monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "krb5.conf"
    conf.write_text(re.sub(r"kdc = 127\.0\.0\.1:\d+", f"kdc = 127.0.0.1:{closed_port()}",
                           realm.krb5_conf.read_text()))
    # An account of its own: the service account's ticket, got by an earlier test, is reused
    # from this process's cache without asking the KDC (collectors/kerberos.py acquire).
    principal, keytab = _own_principal(realm, tmp_path, "t-unreachable-svc")
    monkeypatch.setenv("KRB5_CONFIG", str(conf))
    error = _stops_at_the_first_dc(slapd_kerberos, _config(slapd_kerberos, principal=principal,
                                                           keytab=keytab))
    _names_the_dc_and_principal(error, slapd_kerberos.kerberos_ldaps_url, principal)
    assert error.reason == "kdc_unreachable"


# -- one DC's own failure: the next DC may accept the same ticket ---------------------------------


def test_ip_address_as_dc_name_has_no_spn(slapd_kerberos: SlapdPeer, realm: KdcPeer) -> None:
    """The service ticket is asked for ldap/<the name in `servers`>: ldap/127.0.0.1 does not exist."""
    url = slapd_kerberos.ldaps_url
    assert "127.0.0.1" in url
    error = _bind_fails(_config(slapd_kerberos, url))
    _names_the_dc_and_principal(error, url, slapd_kerberos.service_principal or "")
    assert error.reason == "spn_not_found" and error.another_server_may_answer
    assert "ldap/127.0.0.1" in str(error)


def test_dc_without_spn_is_skipped_for_the_next_one(slapd_kerberos: SlapdPeer, realm: KdcPeer) -> None:
    servers = (slapd_kerberos.ldaps_url, slapd_kerberos.kerberos_ldaps_url)
    found = discover(_config(slapd_kerberos, servers=servers), "")
    assert found.server == slapd_kerberos.kerberos_ldaps_url
    assert len(found.servers) == len(standard_fleet())


def test_dc_with_a_skewed_clock_says_the_ticket_was_obtained_and_what_to_check(
        slapd_kerberos_skewed: SlapdPeer, realm: KdcPeer) -> None:
    """slapd an hour ahead refuses with invalidCredentials and no Kerberos reply: the client cannot
    tell skew from a stale service key, so the message lists both."""
    peer = slapd_kerberos_skewed
    error = _bind_fails(_config(peer))
    _names_the_dc_and_principal(error, peer.kerberos_ldaps_url, peer.service_principal or "")
    assert error.reason == "refused" and error.another_server_may_answer
    message = str(error)
    assert "was obtained" in message
    assert "clock" in message.lower() and "ldap/localhost" in message and "key" in message
    assert "LDAP result 49" in message  # the DC's own answer, not ldap3's abort (result 7)
    # and the cause really was the clock: the acceptor logged it
    assert "Clock skew too great" in peer.log_file.read_text(errors="replace")


# -- canonicalize: whether DNS may choose the SPN ------------------------------------------------


@pytest.mark.parametrize(("canonicalize", "binds"), [(False, False), (True, True)])
def test_canonicalize_decides_whether_reverse_dns_picks_the_spn(
        slapd_kerberos: SlapdPeer, realm: KdcPeer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        canonicalize: bool, binds: bool) -> None:
    """With a krb5.conf that allows DNS canonicalisation (MIT's defaults), 127.0.0.1 reverse-resolves
    to localhost, whose SPN exists. ``canonicalize = false`` keeps the name as configured anyway."""
    import socket

    assert socket.getnameinfo(("127.0.0.1", 0), socket.NI_NAMEREQD)[0] == "localhost", \
        "this test needs 127.0.0.1 to reverse-resolve to localhost (/etc/hosts)"
    conf = tmp_path / "krb5.conf"
    conf.write_text(realm.krb5_conf.read_text().replace("rdns = false", "rdns = true")
                    .replace("dns_canonicalize_hostname = false", "dns_canonicalize_hostname = true"))
    monkeypatch.setenv("KRB5_CONFIG", str(conf))
    config = _config(slapd_kerberos, slapd_kerberos.ldaps_url)
    config = DirectoryConfig(**{**vars(config), "kerberos": KerberosConfig(
        principal=config.bind_user, keytab=str(slapd_kerberos.service_keytab), canonicalize=canonicalize)})
    if binds:
        open_connection(config, config.servers[0], "").unbind()
    else:
        assert _bind_fails(config).reason == "spn_not_found"
