"""Settings: environment over secrets over defaults; bad values named."""

from __future__ import annotations

from datetime import timedelta

import pytest

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
