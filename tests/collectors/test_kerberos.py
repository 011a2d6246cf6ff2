"""collectors/kerberos.py: the service account's ticket from a real MIT KDC (tests/peers/kdc.py),
each failure with its own reason, and the settings that ask for it.

Boundaries: a keytab whose key was changed after it was written; one that is missing; one that
holds no key for the principal; a credential cache with no ticket, an expired one, another
principal's; a KDC that does not answer.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from collectors import kerberos
from collectors.config import load_config, passwords
from collectors.kerberos import KerberosConfig, KerberosError, acquire, activate, classify
from settings import SettingsError


@pytest.fixture
def realm(kdc_peer, monkeypatch):
    for key, value in kdc_peer.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("KRB5CCNAME", raising=False)
    return kdc_peer


def _fails(config: KerberosConfig) -> KerberosError:
    with pytest.raises(KerberosError) as caught:
        acquire(config)
    assert config.principal in str(caught.value)
    return caught.value


def test_a_ticket_from_the_keytab_lives_in_a_private_memory_cache(realm, tmp_path):
    principal = realm.add_principal("t-acquire-svc")
    keytab = realm.keytab(principal, tmp_path / "svc.keytab")
    ticket = acquire(KerberosConfig(principal, str(keytab)))
    assert ticket.principal == principal and ticket.from_keytab
    assert ticket.ccache.startswith("MEMORY:exprobe-")
    assert 9 * 3600 < ticket.lifetime_seconds <= 10 * 3600  # the realm's ticket_lifetime
    assert "KRB5CCNAME" not in os.environ  # the user's own cache is left alone
    assert "valid 9 h" in kerberos.describe(ticket) or "valid 10 h" in kerberos.describe(ticket)


def test_a_keytab_written_before_the_key_changed_is_a_wrong_key(realm, tmp_path):
    principal = realm.add_principal("t-wrongkey-svc")
    keytab = realm.keytab(principal, tmp_path / "old.keytab")
    realm.change_key(principal)
    error = _fails(KerberosConfig(principal, str(keytab)))
    assert error.reason == "wrong_key" and "ktpass" in error.fix


def test_a_missing_keytab_is_named_with_its_path(realm, tmp_path):
    error = _fails(KerberosConfig(realm.principal("t-missing-svc"), str(tmp_path / "no.keytab")))
    assert error.reason == "keytab_unreadable" and "no.keytab" in str(error)


def test_a_keytab_without_the_principal_key_says_so(realm, tmp_path):
    other = realm.add_principal("t-other-svc")
    keytab = realm.keytab(other, tmp_path / "other.keytab")
    error = _fails(KerberosConfig(realm.principal("t-absent-svc"), str(keytab)))
    assert error.reason == "keytab_unreadable" and "holds no key" in error.detail


def test_an_empty_credential_cache_is_no_ticket(realm, tmp_path, monkeypatch):
    monkeypatch.setenv("KRB5CCNAME", f"FILE:{tmp_path / 'empty'}")
    error = _fails(KerberosConfig(realm.principal("t-nocache-svc")))
    assert error.reason == "no_ticket" and "kinit" in error.fix


def test_a_ticket_of_the_user_cache_for_another_principal_is_refused(realm, tmp_path,
                                                                     monkeypatch):
    someone = realm.add_principal("t-someone")
    realm.kinit(someone, realm.keytab(someone, tmp_path / "someone.keytab"), tmp_path / "cc")
    monkeypatch.setenv("KRB5CCNAME", f"FILE:{tmp_path / 'cc'}")
    assert acquire(KerberosConfig(someone)).ccache == f"FILE:{tmp_path / 'cc'}"
    error = _fails(KerberosConfig(realm.principal("t-wanted-svc")))
    assert error.reason == "no_ticket" and someone in error.detail


def test_an_expired_ticket_in_the_user_cache_is_ticket_expired(realm, tmp_path, monkeypatch):
    short = realm.add_principal("t-expired-svc", max_life="3 seconds")
    realm.kinit(short, realm.keytab(short, tmp_path / "short.keytab"), tmp_path / "cc")
    monkeypatch.setenv("KRB5CCNAME", f"FILE:{tmp_path / 'cc'}")
    assert acquire(KerberosConfig(short)).lifetime_seconds <= 3
    time.sleep(4)
    error = _fails(KerberosConfig(short))
    assert error.reason == "ticket_expired" and f"kinit {short}" in error.fix


def test_an_unreachable_kdc_is_kdc_unreachable(tmp_path, monkeypatch):
    from tests.peers.kdc import start_kdc

    with start_kdc(tmp_path / "gone") as gone:
        principal = gone.add_principal("t-gone-svc")
        keytab = gone.keytab(principal, tmp_path / "gone.keytab")
        for key, value in gone.env().items():
            monkeypatch.setenv(key, value)
    error = _fails(KerberosConfig(principal, str(keytab)))  # the KDC has stopped
    assert error.reason == "kdc_unreachable" and "88" in error.fix


def test_activate_points_the_library_at_the_ticket_and_restores_the_environment(
        realm, tmp_path, monkeypatch):
    monkeypatch.setenv("KRB5CCNAME", "FILE:/nonexistent/user-cache")
    principal = realm.add_principal("t-activate-svc")
    ticket = acquire(KerberosConfig(principal, str(realm.keytab(principal,
                                                                tmp_path / "a.keytab"))))
    before = os.environ["KRB5_CONFIG"]
    with activate(ticket):
        assert os.environ["KRB5CCNAME"] == ticket.ccache
        first, rest = os.environ["KRB5_CONFIG"].split(":", 1)
        assert rest == before and "dns_canonicalize_hostname = false" in Path(first).read_text()
        import gssapi

        assert str(gssapi.Credentials(usage="initiate").name) == principal
    assert os.environ["KRB5CCNAME"] == "FILE:/nonexistent/user-cache"
    assert os.environ["KRB5_CONFIG"] == before
    with activate(ticket, canonicalize=True):
        assert os.environ["KRB5_CONFIG"] == before


@pytest.mark.parametrize(("text", "reason"), [
    # MIT krb5 1.20's texts (lib/krb5/error_tables/krb5_err.et), as GSSAPI shows them.
    ("Minor (2529637928): Clock skew too great", "clock_skew"),
    ("Minor (2529638945): Ticket not yet valid", "clock_skew"),
    ("Minor (2529638944): Ticket expired", "ticket_expired"),
    ("Minor (2529638919): Server not found in Kerberos database", "spn_not_found"),
    ("Minor (2529638918): Client not found in Kerberos database", "principal_unknown"),
    ("Minor (2529638943): Decrypt integrity check failed", "wrong_key"),
    ("Preauthentication failed while getting initial credentials", "wrong_key"),
    ("Key table file '/etc/x.keytab' not found", "keytab_unreadable"),
    ("Cannot contact any KDC for realm 'CORP.EXAMPLE'", "kdc_unreachable"),
    ("No Kerberos credentials available (default cache: FILE:/tmp/krb5cc_0)", "no_ticket"),
    ("SASL(-13): authentication failure: GSSAPI Failure: gss_accept_sec_context", "refused"),
])
def test_classify_reads_the_library_texts(text, reason):
    error = classify(text, "svc@CORP.EXAMPLE", service="ldap/dc1.corp.example", server="dc1")
    assert error.reason == reason
    assert "svc@CORP.EXAMPLE" in error.detail and "ldap/dc1.corp.example" in error.detail
    assert str(error).endswith(error.fix) and error.fix


def test_classify_of_a_missing_package_names_the_install():
    error = classify(ImportError("No module named 'gssapi'"), "svc@CORP.EXAMPLE")
    assert error.reason == "unavailable" and "requirements-kerberos.txt" in error.fix


# -- the settings --------------------------------------------------------------------------

def _config(tmp_path: Path, text: str):
    path = tmp_path / "collection.toml"
    path.write_text(text)
    return load_config(path)


def test_kerberos_for_both_needs_no_password_and_resolves_the_keytab(tmp_path):
    config = _config(tmp_path, '[kerberos]\nprincipal = "svc@CORP.EXAMPLE"\nkeytab = "svc.keytab"\n'
                     '[ldap]\nservers = ["ldaps://dc1.corp.example"]\nauth = "kerberos"\n'
                     '[winrm]\ntransport = "kerberos"\n')
    assert config.kerberos == KerberosConfig("svc@CORP.EXAMPLE", str(tmp_path / "svc.keytab"))
    assert config.directory is not None and config.directory.bind_user == "svc@CORP.EXAMPLE"
    assert config.winrm is not None and config.winrm.username == "svc@CORP.EXAMPLE"
    assert passwords(config, {}, {}) == (None, None)


def test_kerberos_for_ldap_only_still_needs_the_winrm_password(tmp_path):
    config = _config(tmp_path, '[kerberos]\nprincipal = "svc@CORP.EXAMPLE"\n'
                     '[ldap]\nservers = ["ldaps://dc1"]\nauth = "kerberos"\n'
                     '[winrm]\nusername = "CORP\\\\svc"\n')
    with pytest.raises(SettingsError, match="no WinRM password"):
        passwords(config, {}, {})
    assert passwords(config, {"winrm": {"password": "dummy"}}, {}) == (None, "dummy")


@pytest.mark.parametrize(("text", "says"), [
    ('[ldap]\nservers = ["ldaps://dc1"]\nauth = "kerberos"\n', "needs a [kerberos] section"),
    ('[winrm]\ntransport = "kerberos"\n', "needs a [kerberos] section"),
    ('[kerberos]\nprincipal = "svc"\n', "expected user@REALM"),
    ('[kerberos]\nprincipal = "svc@CORP.EXAMPLE"\npassword = "x"\n', "looks like a secret"),
    ('[ldap]\nservers = ["ldaps://dc1"]\n', 'bind_user is missing (auth = "simple"'),
    ('[winrm]\ntransport = "ntlm"\n', 'username is missing (transport = "ntlm"'),
])
def test_a_kerberos_setting_that_cannot_work_is_refused_in_one_line(tmp_path, text, says):
    with pytest.raises(SettingsError, match=re.escape(says)):
        _config(tmp_path, text)


@pytest.mark.parametrize(("text", "reason"), [
    # MIT 1.20 names the principal inside the message (seen from the KDC of tests/peers/kdc.py).
    ("Server HTTP/127.0.0.1@PROBE.TEST not found in Kerberos database", "spn_not_found"),
    ("Server ldap/127.0.0.1@PROBE.TEST not found in Kerberos database", "spn_not_found"),
    ("Client 't-x@PROBE.TEST' not found in Kerberos database while getting initial credentials",
     "principal_unknown"),
    # ldap3 2.9.1 without the package.
    ("package gssapi (or winkerberos) missing", "unavailable"),
])
def test_classify_reads_the_texts_that_name_a_principal(text, reason):
    assert classify(text, "svc@PROBE.TEST").reason == reason


def test_a_directory_given_as_keytab_is_not_a_file(realm, tmp_path):
    error = _fails(KerberosConfig(realm.principal("t-dir-svc"), str(tmp_path)))
    assert error.reason == "keytab_unreadable" and "is not a file" in error.detail


def test_the_same_keytab_reuses_one_memory_cache(realm, tmp_path):
    principal = realm.add_principal("t-reuse-svc")
    keytab = realm.keytab(principal, tmp_path / "r.keytab")
    first, second = (acquire(KerberosConfig(principal, str(keytab))) for _ in range(2))
    assert first.ccache == second.ccache
    other = realm.add_principal("t-reuse-other")
    assert acquire(KerberosConfig(other, str(realm.keytab(other, tmp_path / "o.keytab")))
                   ).ccache != first.ccache


def test_the_winrm_kerberos_settings_reach_the_collector(tmp_path):
    config = _config(tmp_path, '[kerberos]\nprincipal = "svc@CORP.EXAMPLE"\n'
                     '[winrm]\ntransport = "kerberos"\nspn_service = "WSMAN"\n'
                     'spn_hostname = "ex-lb.corp.example"\nntlm_fallback = true\n')
    assert config.winrm is not None
    assert (config.winrm.spn_service, config.winrm.spn_hostname, config.winrm.ntlm_fallback) == (
        "WSMAN", "ex-lb.corp.example", True)
    # NTLM as a fallback needs the password Kerberos alone does not.
    with pytest.raises(SettingsError, match="no WinRM password"):
        passwords(config, {}, {})


@pytest.mark.parametrize(("winrm", "says"), [
    ('transport = "ntlm"\nusername = "C\\\\u"\nntlm_fallback = true\n', "kerberos\" only"),
    ('transport = "kerberos"\nspn_hostname = "ex01/evil@OTHER"\n', "spn_hostname must be"),
    ('transport = "kerberos"\nspn_service = "HTTP/x"\n', "spn_service"),
])
def test_a_bad_winrm_kerberos_setting_is_refused(tmp_path, winrm, says):
    with pytest.raises(SettingsError, match=re.escape(says)):
        _config(tmp_path, f'[kerberos]\nprincipal = "svc@CORP.EXAMPLE"\n[winrm]\n{winrm}')
