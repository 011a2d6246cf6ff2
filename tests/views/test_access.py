"""Sign-in and roles: pages a role may not use are not offered; local mode only on loopback,
and only to requests that name a loopback Host (no DNS rebinding)."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from settings import AccessSettings
from views.access import Access, local_mode_allowed, local_request_allowed, loopback_host, roles_for

ROOT = Path(__file__).resolve().parents[2]
ACCESS = {"viewers": ["Viewer@Example.test"], "admins": ["admin@example.test"],
          "auditors": ["audit@example.test"], "auditor_groups": ["SG-Audit"]}


@pytest.mark.parametrize(
    ("user", "roles"),
    [
        pytest.param({"email": "viewer@example.test"}, {"viewer"}, id="viewer-any-case"),
        pytest.param({"email": "admin@example.test"}, {"admin"}, id="admin"),
        pytest.param({"email": "x@example.test", "groups": ["sg-audit"]}, {"auditor"},
                     id="auditor-by-group"),
        pytest.param({"email": "stranger@example.test"}, set(), id="nobody"),
        pytest.param({}, set(), id="no-claims"),
    ],
)
def test_roles_from_addresses_and_groups(user, roles):
    assert roles_for(user, AccessSettings.model_validate(ACCESS)) == roles


def test_pages_per_role():
    viewer = Access(False, frozenset({"viewer"}), "v").pages()
    assert viewer == ("overview", "hosts", "catalog")
    admin = Access(False, frozenset({"admin"}), "a").pages()
    assert "collection" in admin and "worklist" in admin and "snapshots" not in admin
    auditor = Access(False, frozenset({"auditor"}), "a").pages()
    assert "snapshots" in auditor and "collection" not in auditor and "worklist" not in auditor
    assert len(Access(True, frozenset(), "local").pages()) == 6


@pytest.mark.parametrize(("address", "allowed"), [
    ("127.0.0.1", True), ("localhost", True), ("::1", True), ("[::1]", True),
    ("0.0.0.0", False), ("", False), (None, False), ("10.1.2.3", False)])
def test_local_mode_only_on_loopback(address, allowed):
    assert local_mode_allowed(address) is allowed


@pytest.mark.parametrize("host", [
    "localhost", "127.0.0.1", "[::1]", "localhost:8501", "127.0.0.1:8501", "[::1]:8501",
    "LOCALHOST", "LocalHost:8501", "localhost:1", "localhost:65535"])
def test_loopback_hosts_are_answered(host):
    assert loopback_host(host) is True


@pytest.mark.parametrize("host", [
    pytest.param(None, id="missing"), pytest.param("", id="empty"),
    # DNS rebinding: any other name, however it starts or ends
    "rebind.attacker.example", "rebind.attacker.example:8501",
    "127.0.0.1.attacker.example", "localhost.attacker.example:8501", "attacker.localhost",
    "evil-localhost", "localhost-evil", "xlocalhost", "127.0.0.10", "127.0.0.1x",
    # tricks with the port, userinfo and separators
    "localhost:8501@evil.example", "evil.example@localhost", "localhost:", "localhost:0",
    "localhost:65536", "localhost:99999", "localhost:8501:8501", "localhost:+85", "localhost:-1",
    "localhost:85 01", "localhost:８５０１", "localhost/", "localhost/evil", "localhost#x",
    "localhost?x", "localhost\\evil", "localhost,evil.example", "localhost evil.example",
    # absolute names (browsers send the canonical form for addresses) and whitespace
    "localhost.", "LOCALHOST.", "localhost.:8501", "127.0.0.1.", " localhost", "localhost ",
    "localhost\n", "localhost\t", "localhost\x00",
    # IPv6: only the bracketed ::1
    "::1", "[::1", "::1]", "[::1]:", "[0:0:0:0:0:0:0:1]", "[::ffff:127.0.0.1]", "[::1%25lo]",
    "[::1]x", "[::2]",
    # other spellings of 127.0.0.1 a browser would canonicalise, other loopback addresses
    "2130706433", "0x7f.0.0.1", "127.1", "0177.0.0.1", "127.000.000.001", "127.0.0.2",
    "0.0.0.0", "10.0.0.1",
    # look-alikes: only ASCII case folding counts (long s, fullwidth letters, zero-width space)
    "localhoſt", "ｌｏｃａｌｈｏｓｔ", "locaLhost\u200b",
])
def test_other_hosts_are_refused(host):
    assert loopback_host(host) is False


@pytest.mark.parametrize(("hosts", "allowed"), [
    pytest.param(None, True, id="no-request-behind-the-run"),
    pytest.param(["127.0.0.1:8501"], True, id="loopback"),
    pytest.param([], False, id="request-without-host"),
    pytest.param(["rebind.attacker.example:8501"], False, id="rebound"),
    pytest.param(["localhost", "localhost"], False, id="two-host-headers"),
    pytest.param(["localhost", "rebind.attacker.example"], False, id="two-host-headers-mixed"),
])
def test_local_requests_must_name_one_loopback_host(hosts, allowed):
    assert local_request_allowed(hosts) is allowed


AUTH = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "test-only",
        "client_id": "dummy", "client_secret": "dummy-secret",
        "server_metadata_url": "https://login.example.test/.well-known/openid-configuration"}


def _app(monkeypatch, tmp_path, user: dict | None) -> AppTest:
    monkeypatch.setenv("PROXYLOGON_DATA_DIR", str(tmp_path))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.secrets["auth"] = AUTH
    at.secrets["access"] = ACCESS
    if user is not None:
        at.user = user
    at.run()
    return at


def test_signed_out_users_see_only_the_sign_in(monkeypatch, tmp_path):
    at = _app(monkeypatch, tmp_path, {"is_logged_in": False})
    assert not at.exception
    assert [b.label for b in at.button] == ["Sign in"]
    assert not at.metric and not at.dataframe


def test_signed_out_users_see_no_configuration_or_store_error(monkeypatch, tmp_path):
    """Those name the store's host and user: only signed-in users may read them."""
    monkeypatch.setenv("PROXYLOGON_STORE_URL",
                       "postgresql+psycopg://svc-store:Dummy-Store-Pass-1@127.0.0.1:1/proxylogon")
    at = _app(monkeypatch, tmp_path, {"is_logged_in": False})
    assert [b.label for b in at.button] == ["Sign in"] and not at.error
    shown = " ".join(m.value for m in at.markdown)
    assert "svc-store" not in shown and "127.0.0.1" not in shown
    signed_in = _app(monkeypatch, tmp_path, {"is_logged_in": True, "email": "viewer@example.test"})
    (error,) = signed_in.error  # the control: the same store, once signed in, is named
    assert "cannot be opened" in error.value and "Dummy-Store-Pass-1" not in error.value


@pytest.mark.parametrize(("email", "allowed", "refused"), [
    ("viewer@example.test", "views/hosts.py", "views/collection.py"),
    ("viewer@example.test", "views/catalog.py", "views/snapshots.py"),
    ("admin@example.test", "views/collection.py", "views/snapshots.py"),
    ("audit@example.test", "views/snapshots.py", "views/worklist.py"),
])
def test_each_role_gets_its_pages_and_no_others(monkeypatch, tmp_path, email, allowed, refused):
    at = _app(monkeypatch, tmp_path, {"is_logged_in": True, "email": email})
    assert not at.exception
    assert at.metric  # the overview rendered
    at.switch_page(allowed)
    at.run()
    assert not at.exception
    with pytest.raises(Exception, match=r"(?i)page|not found|registered"):
        at.switch_page(refused)
        at.run()


def test_a_signed_in_user_without_a_role_is_told_so(monkeypatch, tmp_path):
    at = _app(monkeypatch, tmp_path, {"is_logged_in": True, "email": "stranger@example.test"})
    assert any("has no role" in e.value for e in at.error)
    assert not at.metric
