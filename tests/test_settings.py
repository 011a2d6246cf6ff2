"""Settings: environment over secrets over defaults; bad values named."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

import settings
from settings import DEFAULT_DATA_DIR, SettingsError, load_settings


def test_defaults_use_sqlite_in_the_data_dir_with_demo_on():
    config = load_settings({}, {})
    assert config.store_url == f"sqlite:///{DEFAULT_DATA_DIR / 'compliance.db'}"
    assert config.demo is True
    assert config.max_age == timedelta(days=7)
    assert config.lock_timeout == 30


def test_secrets_sections_then_environment_override():
    secrets = {"store": {"url": "sqlite:////srv/a.db"}, "dashboard": {"demo": False,
                                                                      "max_age_days": 3}}
    config = load_settings(secrets, {})
    assert (config.store_url, config.demo, config.max_age) == (
        "sqlite:////srv/a.db", False, timedelta(days=3))
    config = load_settings(secrets, {"PROXYLOGON_STORE_URL": "sqlite:////srv/b.db",
                                     "PROXYLOGON_DEMO": "yes"})
    assert (config.store_url, config.demo) == ("sqlite:////srv/b.db", True)


def test_data_dir_setting_moves_the_sqlite_file():
    config = load_settings({}, {"PROXYLOGON_DATA_DIR": "/var/lib/plc"})
    assert config.store_url == "sqlite:////var/lib/plc/compliance.db"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        pytest.param({"PROXYLOGON_DEMO": "maybe"}, "demo", id="demo-not-boolean"),
        pytest.param({"PROXYLOGON_MAX_AGE_DAYS": "soon"}, "max_age_days", id="age-not-number"),
        pytest.param({"PROXYLOGON_MAX_AGE_DAYS": "0"}, "max_age_days", id="age-zero"),
        pytest.param({"PROXYLOGON_LOCK_TIMEOUT": "-1"}, "lock_timeout", id="lock-negative"),
        pytest.param({"PROXYLOGON_LOCK_TIMEOUT": "inf"}, "lock_timeout", id="lock-infinite"),
        pytest.param({"PROXYLOGON_MAX_AGE_DAYS": "nan"}, "max_age_days", id="age-nan"),
    ],
)
def test_bad_values_name_the_setting(env, named):
    with pytest.raises(SettingsError, match=named):
        load_settings({}, env)


@pytest.mark.parametrize(("secrets", "says"), [
    # issue 14: a typo fell back silently: [store] signing_ky meant no signing at all
    ({"store": {"signing_ky": "k"}}, "did you mean 'signing_key'"),
    ({"dashboard": {"max_age_day": 7}}, "did you mean 'max_age_days'"),
    ({"winrm": {"passwrd": "x"}}, "did you mean 'password'"),
    ({"access": {"admin": ["a@corp.example"]}}, "did you mean 'admins'"),
    ({"store": "oops"}, "must be a table"),
])
def test_an_unknown_key_in_our_secrets_sections_is_refused_with_a_suggestion(secrets, says):
    with pytest.raises(SettingsError, match=says):
        load_settings(secrets, {})


def test_sections_that_are_not_ours_are_left_alone():
    load_settings({"auth": {"client_id": "x", "anything": 1}, "connections": {"x": 1}}, {})


ROOT = Path(__file__).resolve().parents[1]
# issue 14: a typo fell back silently (cafile -> the system's CAs; [winrn] -> no WinRM).
FILE_REFUSALS = [
    pytest.param('[winrm]\nusername = "u"\ncafile = "corp.pem"', "did you mean 'ca_file'",
                 id="unknown-key"),
    pytest.param('[winrn]\nusername = "u"', "did you mean 'winrm'", id="unknown-section"),
    pytest.param('[winrm]\nusername = "u"\nconcurrency = "many"', "concurrency must be a positive "
                 "whole number up to 1024, not 'many'", id="wrong-type"),
    pytest.param('[winrm]\nusername = "u"\ndeadline_seconds = nan', "deadline_seconds must be a "
                 "positive number", id="nan"),
    pytest.param('[ldap]\nservers = ["ldaps://dc1"]\nbind_user = "u"\ntimeout = inf',
                 "timeout must be a positive number up to 86400, not inf", id="inf"),
    pytest.param('[winrm]\nusername = "u"\nport = 0', "port must be a positive whole number",
                 id="out-of-range"),
    pytest.param('[winrm]\nusername = "u"\nport = 70000', "up to 65535", id="port-range"),
    pytest.param('[winrm]\nusername = "u"\nport = nan', "port must be a positive whole number",
                 id="nan-port"),
    pytest.param('[winrm]\nusername = "u"\nPassword = "x"', "looks like a secret", id="password"),
    pytest.param('[ldap]\nservers = ["ldaps://dc1"]\nbind_user = "u"\nbind_passwd = "x"',
                 "looks like a secret", id="passwd"),
    pytest.param('ldap = "oops"', "must be a table", id="not-a-table"),
]


@pytest.mark.parametrize(("text", "says"), FILE_REFUSALS)
def test_a_refused_collection_file_is_one_line_with_exit_2(tmp_path, text, says):
    config = tmp_path / "collection.toml"
    config.write_text(text + "\n")
    done = subprocess.run([sys.executable, "-m", "collectors", "collect", "--config", str(config),
                           "--secrets", os.devnull], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], lines


@pytest.mark.parametrize(("secrets", "env", "says"), [
    pytest.param('[store]\nsigning_ky = "k"', {}, "did you mean 'signing_key'", id="unknown-key"),
    pytest.param('[dashboard]\ndemo = "maybe"', {}, "demo must be true or false", id="wrong-type"),
    pytest.param("", {"PROXYLOGON_LOCK_TIMEOUT": "nan"},
                 "lock_timeout (from PROXYLOGON_LOCK_TIMEOUT) must be a positive number",
                 id="nan-from-environment"),
    pytest.param("[dashboard]\nmax_age_days = inf", {}, "max_age_days must be a positive number",
                 id="inf"),
    pytest.param("[store]\nlock_timeout = 100000", {}, "up to 86400", id="out-of-range"),
    pytest.param('[winrm]\npassword = 5', {}, "[winrm] password must be a string",
                 id="secret-not-echoed"),
])
def test_refused_secrets_are_one_line_with_exit_2(tmp_path, secrets, env, says):
    path = tmp_path / "secrets.toml"
    path.write_text(secrets + "\n")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PROXYLOGON_")}
    done = subprocess.run([sys.executable, "-m", "store", "--secrets", str(path), "history"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**environ, **env, "PROXYLOGON_DATA_DIR": str(tmp_path)})
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], lines
    if "password" in secrets:
        assert lines[0].endswith("password must be a string"), lines  # its value never printed


def test_the_table_declares_each_environment_variable_once():
    declared = [(section, key, field.json_schema_extra["env"])
                for section, outer in settings.SecretSettings.model_fields.items()
                for key, field in outer.annotation.model_fields.items()
                if isinstance(field.json_schema_extra, dict)]
    names = [name for _section, _key, name in declared]
    assert len(names) == len(set(names)) and "PROXYLOGON_WINRM_PASSWORD" in names
    for section, key, name in declared:
        assert settings.env_name(section, key) == name
    with pytest.raises(KeyError):
        settings.env_name("access", "admins")


def test_worklist_owners_are_read_from_the_secrets_as_immutable_pairs():
    config = load_settings({"worklist": {"site_owners": {"Paris": "paris-team@corp.example"},
                                         "dag_owners": {"DAG-PAR": "Exchange team"}}}, {})
    assert config.site_owners == (("Paris", "paris-team@corp.example"),)
    assert config.dag_owners == (("DAG-PAR", "Exchange team"),)
    assert hash(config)  # still a frozen, hashable value
    assert hash(settings.resolve({}, {"worklist": {"site_owners": {"a": "b"}}}, {}))
    empty = load_settings({}, {})
    assert (empty.site_owners, empty.dag_owners) == ((), ())


@pytest.mark.parametrize(("worklist", "says"), [
    pytest.param({"site_owner": {"Paris": "x"}}, "[worklist] site_owner in the secrets is not a "
                 "setting: did you mean 'site_owners'?", id="unknown-key"),
    pytest.param({"dag_owners": {"DAG1": 5}}, "[worklist] dag_owners: the owner of 'DAG1' must "
                 "be a non-empty string of at most 200 characters, not int", id="not-a-string"),
    pytest.param({"site_owners": {"Paris": ["a", "b"]}}, "not list", id="a-list"),
    pytest.param({"site_owners": {"Paris": ""}}, "non-empty string", id="empty"),
    pytest.param({"site_owners": {"Paris": "  "}}, "non-empty string", id="blank"),
    pytest.param({"site_owners": {"Paris": "x" * 201}}, "not 201 characters", id="too-long"),
    pytest.param({"site_owners": "Paris"}, "site_owners must be a table of name = owner",
                 id="not-a-table"),
    pytest.param({"dag_owners": {"DAG1": "a", "dag1": "b"}}, "'DAG1' and 'dag1' are the same name",
                 id="same-name-twice"),
])
def test_a_bad_worklist_owner_is_refused_in_one_line(worklist, says):
    with pytest.raises(SettingsError) as refused:
        load_settings({"worklist": worklist}, {})
    assert says in str(refused.value) and "\n" not in str(refused.value)


def test_an_owner_of_200_characters_is_accepted_and_no_variable_sets_owners():
    config = load_settings({"worklist": {"site_owners": {"Paris": "x" * 200}}},
                           {"PROXYLOGON_WORKLIST_SITE_OWNERS": "ignored"})
    assert config.site_owners == (("Paris", "x" * 200),)
    with pytest.raises(KeyError):
        settings.env_name("worklist", "site_owners")


# Review of issues 14-16: ways the signing key vanished without a word.
@pytest.mark.parametrize(("secrets", "env", "says"), [
    pytest.param('[store]\nsigning_key = ""', {}, "signing_key is empty", id="empty-key"),
    pytest.param("", {"PROXYLOGON_SIGNING_KEY": ""}, "signing_key is empty", id="empty-key-env"),
    pytest.param('[Store]\nsigning_key = "k"', {}, "did you mean [store]?", id="section-case"),
    pytest.param('[stroe]\nsigning_key = "k"', {}, "did you mean [store]?", id="section-typo"),
    pytest.param("[store]\nlock_timeout = " + "9" * 5000, {}, "cannot be read",
                 id="5000-digit-number"),
])
def test_a_lost_signing_key_is_refused_not_ignored(tmp_path, secrets, env, says):
    test_refused_secrets_are_one_line_with_exit_2(tmp_path, secrets, env, says)


def test_a_secrets_file_given_on_purpose_must_exist(tmp_path):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PROXYLOGON_")}
    done = subprocess.run([sys.executable, "-m", "store", "--secrets",
                           str(tmp_path / "typo.toml"), "history"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60,
                          env={**environ, "PROXYLOGON_DATA_DIR": str(tmp_path)})
    assert done.returncode == 2 and "typo.toml not found" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(("secrets", "environ", "says"), [
    ({"store": {"lock_timeout": True}}, {}, "[store] lock_timeout must be a number, not true"),
    ({"dashboard": {"max_age_days": True}}, {}, "max_age_days must be a number, not true"),
    ({"store": {"data_dir": ""}}, {}, "[store] data_dir is empty"),
    ({}, {"PROXYLOGON_DATA_DIR": ""}, "[store] data_dir is empty"),
])
def test_a_boolean_for_a_number_or_an_empty_directory_is_refused(secrets, environ, says):
    with pytest.raises(SettingsError, match=re.escape(says)):
        load_settings(secrets, environ)


def test_a_refused_list_or_url_is_not_repeated():
    """Review: a store URL (with its password) given as a list, and a password inside an
    inline table of the collection file, were echoed in the error."""
    with pytest.raises(SettingsError) as refused:
        load_settings({"store": {"url": ["postgresql://u:hunter2@h/db"]}}, {})
    assert "hunter2" not in str(refused.value)
    with pytest.raises(SettingsError) as refused:
        settings.resolve({"ldap": {"servers": [{"url": "x", "password": "hunter2"}],
                                   "bind_user": "u"}}, {}, {})
    assert "hunter2" not in str(refused.value)


# Issue 18: [fingerprint] in the collection file.
def test_the_fingerprint_section_defaults_to_off_with_the_declared_limits():
    section = settings.resolve({}, {}, {}).file.fingerprint
    assert (section.enabled, section.namespaces, section.ca_file, section.record_invalid_certificate,
            section.concurrency, section.deadline_seconds, section.timeout_seconds, section.urls) == (
        False, (), None, False, 64, 30.0, 10.0, {})


def test_the_fingerprint_section_is_read_from_the_collection_file():
    section = settings.resolve({"fingerprint": {
        "enabled": True, "namespaces": "mail.corp.example", "record_invalid_certificate": True,
        "concurrency": 8, "deadline_seconds": 20, "timeout_seconds": 5.5,
        "urls": {"EX01": "https://10.0.0.1/", "autodiscover.corp.example": "https://[::1]:8443/x/"}}},
        {}, {}).file.fingerprint
    assert section.namespaces == ("mail.corp.example",)  # one name: a list of one
    assert (section.enabled, section.record_invalid_certificate, section.concurrency) == (True, True, 8)
    assert (section.deadline_seconds, section.timeout_seconds) == (20.0, 5.5)
    assert section.urls["autodiscover.corp.example"] == "https://[::1]:8443/x/"
    assert hash(settings.resolve({"fingerprint": {"urls": {"a": "https://a/"}}}, {}, {}).file)


@pytest.mark.parametrize(("section", "says"), [
    pytest.param({"record_invalid_certificates": True}, "[fingerprint] record_invalid_certificates in "
                 "the collection file is not a setting: did you mean 'record_invalid_certificate'?",
                 id="unknown-key"),
    pytest.param({"namespace": ["mail.corp.example"]}, "did you mean 'namespaces'?", id="singular"),
    pytest.param({"deadline_seconds": float("nan")}, "[fingerprint] deadline_seconds must be a "
                 "positive number up to 86400, not nan", id="nan"),
    pytest.param({"timeout_seconds": float("inf")}, "timeout_seconds must be a positive number",
                 id="inf"),
    pytest.param({"concurrency": 0}, "concurrency must be a positive whole number up to 1024",
                 id="no-concurrency"),
    pytest.param({"concurrency": 4.5}, "concurrency must be a positive whole number", id="fraction"),
    pytest.param({"enabled": "yes"}, "enabled must be true or false, not 'yes'", id="not-boolean"),
    pytest.param({"record_invalid_certificate": 1}, "record_invalid_certificate must be true or "
                 "false", id="one-is-not-true"),
    pytest.param({"timeout_seconds": 40}, "timeout_seconds (one request) must not exceed "
                 "deadline_seconds", id="timeout-over-deadline"),
    pytest.param({"namespaces": ["https://mail.corp.example"]}, "namespaces: 'https://mail.corp."
                 "example' is not a host name", id="namespace-with-scheme"),
    pytest.param({"namespaces": ["mail.corp.example:443"]}, "is not a host name", id="with-port"),
    pytest.param({"namespaces": ["mail corp"]}, "is not a host name", id="space"),
    pytest.param({"namespaces": ["x" * 300]}, "300 characters is not a host name", id="too-long"),
    pytest.param({"urls": {"EX01": "http://ex01/"}}, "the URL of 'EX01' must be a string starting "
                 "with https://", id="plain-http"),
    pytest.param({"urls": {"EX01": 443}}, "must be a string starting with https://, not int",
                 id="not-a-string"),
    pytest.param({"urls": "https://ex01/"}, "urls must be a table of name = URL, not str",
                 id="not-a-table"),
    pytest.param({"urls": {"EX01": "https://svc:pw@ex01/"}}, "must not hold a user name or password",
                 id="credentials-in-url"),
    pytest.param({"urls": {"EX01": "https://ex01/?x=1"}}, "no query or fragment", id="query"),
    pytest.param({"urls": {"EX01": "https://ex01:99999/"}}, "is not a URL", id="bad-port"),
    pytest.param({"urls": {"EX01": "https://ex01/\x1b[2J"}}, "control characters", id="escape"),
    pytest.param({"urls": {"EX01": "https://a/", "ex01": "https://b/"}}, "'EX01' and 'ex01' are the "
                 "same name", id="same-name-twice"),
])
def test_a_bad_fingerprint_setting_is_refused_in_one_line(section, says):
    with pytest.raises(SettingsError) as refused:
        settings.resolve({"fingerprint": section}, {}, {})
    assert says in str(refused.value) and "\n" not in str(refused.value), str(refused.value)


def test_a_misspelt_fingerprint_section_is_refused():
    with pytest.raises(SettingsError, match=r"\[fingerprnt\] is not a section of the collection "
                                            r"file: did you mean 'fingerprint'\?"):
        settings.resolve({"fingerprnt": {"enabled": True}}, {}, {})


@pytest.mark.parametrize(("directive", "message"), [
    ({"name": "x"}, "[deadlines] directives entry 1: due is missing"),
    ({"name": "x", "dew": "2021-03-05T12:00:00Z", "due": "2021-03-05T12:00:00Z"},
     "entry 1: dew is not a setting: did you mean 'due'?"),
    ({"name": "x", "due": "2021-03-05T12:00:00Z", "statuses": ["vulnerabel"]},
     "entry 1: statuses must be one of 'vulnerable', 'mitigated' or 'unknown'"),
    ({"name": "x", "due": "2021-03-05T12:00:00"}, "entry 1: due needs a time zone"),
    ({"name": "x", "due": "9999-12-31T23:59:59-01:00"}, "year 9999 is not a deadline"),
    ({"name": "x", "due": "0001-01-01T00:00:00+01:00"}, "is not a deadline"),
])
def test_a_directive_mistake_is_one_line_naming_its_entry_and_key(directive, message):
    with pytest.raises(SettingsError) as raised:
        load_settings({"deadlines": {"directives": [directive]}}, {})
    assert message in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.parametrize("url", ["http://hooks.example/x", "ftp://hooks.example/x",
                                 "https://hooks.example:99999/x", "https:///x"])
def test_a_webhook_url_that_is_not_https_is_refused_before_any_run(url):
    with pytest.raises(SettingsError, match="webhook_url") as raised:
        load_settings({"notifications": {"webhook_url": url}}, {})
    assert "hooks.example" not in str(raised.value)  # the URL may carry a token
