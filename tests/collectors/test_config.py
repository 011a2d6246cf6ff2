"""The collection config file: [ldap], [winrm], [scope]; secrets never in the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from collectors.config import ldap_password, load_config, winrm_password
from settings import SettingsError as ConfigError


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "collection.toml"
    path.write_text(text)
    return path


def test_example_config_parses(tmp_path):
    example = Path(__file__).resolve().parents[2] / "collection.example.toml"
    text = example.read_text().replace('ca_file = "corp-root-ca.pem"', "")
    config = load_config(_write(tmp_path, text))
    assert config.directory is not None and config.directory.servers[0].startswith("ldaps://")
    assert config.winrm is not None
    assert (config.winrm.transport, config.winrm.scheme, config.winrm.port) == ("ntlm", "https", 5986)
    assert config.winrm.concurrency == 32


@pytest.mark.parametrize(
    ("winrm", "message"),
    [
        pytest.param('username = "u"\npassword = "p"', "does not belong", id="password-in-file"),
        pytest.param('transport = "ntlm"', "username is missing", id="no-user"),
        pytest.param('username = "u"\nscheme = "http"', "allow_http", id="http-not-allowed"),
        pytest.param('username = "u"\nscheme = "http"\nallow_http = true\ntransport = "basic"',
                     "Basic", id="basic-over-http"),
        pytest.param('username = "u"\ntransport = "credssp"', "transport", id="bad-transport"),
        pytest.param('username = "u"\nread_timeout_seconds = 10\noperation_timeout_seconds = 20',
                     "below read_timeout", id="timeouts-inverted"),
        pytest.param('username = "u"\nconcurrency = 0', "positive", id="zero-concurrency"),
        pytest.param('username = "u"\nca_file = "missing.pem"', "does not exist", id="no-ca"),
        pytest.param('username = "u"\nprocesses = 1', r"^\[winrm\] processes was removed: [^\n]*"
                     r"one process[^\n]*delete the line", id="processes-removed"),
    ],
)
def test_bad_winrm_settings_are_named(tmp_path, winrm, message):
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path, f"[winrm]\n{winrm}\n"))


@pytest.mark.parametrize(
    ("ldap", "message"),
    [
        pytest.param('servers = []\nbind_user = "u"', "servers is empty", id="no-servers"),
        pytest.param('servers = ["ldaps://dc"]', "bind_user", id="no-user"),
        pytest.param('servers = ["ldaps://dc"]\nbind_user = "u"\npage_size = 5000', "up to 1000",
                     id="page-size"),
        pytest.param('servers = ["ldaps://dc"]\nbind_user = "u"\nbind_password = "x"',
                     "does not belong", id="password-in-file"),
    ],
)
def test_bad_ldap_settings_are_named(tmp_path, ldap, message):
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path, f"[ldap]\n{ldap}\n"))


def test_passwords_come_from_environment_before_secrets():
    secrets = {"ldap": {"password": "from-secrets"}, "winrm": {"password": "w-secrets"}}
    assert ldap_password(secrets, {}) == "from-secrets"
    assert ldap_password(secrets, {"PROXYLOGON_LDAP_PASSWORD": "env"}) == "env"
    assert winrm_password(secrets, {}) == "w-secrets"
    with pytest.raises(ConfigError, match="PROXYLOGON_WINRM_PASSWORD"):
        winrm_password({}, {})


def test_invalid_toml_is_named(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(_write(tmp_path, "[ldap\n"))
