"""LDAP discovery against a real slapd shaped like AD (tests/peers): the whole path."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import ldap3
import pytest

from collectors.directory import (
    DirectoryConfig,
    DirectoryError,
    _search,
    discover,
    open_connection,
)
from tests.peers.ad_tree import (
    SITE_BRANCH,
    SITE_LAB,
    WEIRD_SERVER_NAME,
    ServerSpec,
    ad_ldif,
    standard_fleet,
)
from tests.peers.fixtures import require_slapd
from tests.peers.slapd import SlapdPeer, closed_port, start_slapd

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _config(peer: SlapdPeer, url: str | None = None, **overrides) -> DirectoryConfig:
    settings = {"servers": (url or peer.ldaps_url,), "bind_user": peer.service_dn,
                "ca_file": str(peer.ca_file), "connect_timeout": 3.0, "timeout": 10.0}
    settings.update(overrides)
    return DirectoryConfig(**settings)


def _expected_fqdn(spec: ServerSpec) -> str | None:
    for address in spec.network_addresses:
        prefix, _, rest = address.partition(":")
        if prefix == "ncacn_ip_tcp":
            return rest.lower()
    return spec.computer_dns.lower() if spec.computer_dns else None


def _expected_build(spec: ServerSpec) -> str | None:
    """The CU level, computed from the spec's serialNumber text by hand (not by our parser)."""
    if spec.serial_number and spec.serial_number.startswith("Version 1"):
        version, _, rest = spec.serial_number[len("Version "):].partition(" (Build ")
        number, _, revision = rest.rstrip(")").split(":")[0].partition(".")
        return f"{version}.{int(number) - 30000}.{int(revision)}"
    if spec.serial_number and spec.serial_number.startswith("Version 8"):
        return "8.3.83.6"
    if spec.version_number:
        v = spec.version_number
        return f"{v >> 22 & 63}.{v >> 16 & 63}.{v & 0x7FFF}"
    return None


def test_discovers_every_server_of_every_admin_group_and_nothing_else(slapd_standard):
    found = discover(_config(slapd_standard), slapd_standard.service_password)
    specs = {spec.name: spec for spec in standard_fleet()}
    assert sorted(s.name for s in found.servers) == sorted(specs)  # no Mailbox/Frontend objects
    assert found.base.startswith("CN=Microsoft Exchange,CN=Services,")
    for server in found.servers:
        spec = specs[server.name]
        assert server.fqdn == _expected_fqdn(spec), server.name
        assert server.site == spec.site, server.name
        assert server.dag == spec.dag, server.name
        assert server.dn.lower().startswith(f"cn={server.name.lower()[:3]}"), server.dn
        if spec.serial_number != "Version 6.5 (Build 7638.2: Service Pack 2)":
            assert server.cu_level == _expected_build(spec), server.name


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        pytest.param("EX-BADSERIAL", "serialNumber unreadable", id="malformed-serial"),
        pytest.param("EX-NOVERSION", "serialNumber missing", id="no-version"),
        pytest.param("EX-NONETADDR", "dNSHostName", id="no-network-address"),
        pytest.param("EX-NOHOST", "no FQDN", id="no-fqdn-anywhere"),
        pytest.param("EDGE01", "Edge Transport", id="edge"),
        pytest.param("EX2003", "roles unknown", id="no-roles"),
    ],
)
def test_broken_objects_yield_records_with_problems(slapd_standard, name, problem):
    found = discover(_config(slapd_standard), slapd_standard.service_password)
    server = next(s for s in found.servers if s.name == name)
    assert any(problem in p for p in server.problems), server.problems


def test_roles_maintenance_and_versions(slapd_standard):
    servers = {s.name: s for s in discover(_config(slapd_standard),
                                           slapd_standard.service_password).servers}
    assert servers["EX2013-CAS1"].roles == ("Cafe", "FrontendTransport")  # 16385
    assert "UnifiedMessaging" not in (servers["EX2019-01"].roles or ())
    assert servers["EDGE01"].edge and servers["EDGE01"].to_host().ad_build is None
    assert servers["EX2019-03"].maintenance and not servers["EX2019-01"].maintenance
    assert servers["EX2019-02"].cu_level == "15.2.792.3"  # zero-padded revision
    assert servers["EX-BADSERIAL"].cu_level == "15.1.2176"  # from versionNumber


def test_starttls_on_the_plain_port(slapd_standard):
    found = discover(_config(slapd_standard, slapd_standard.ldap_url),
                     slapd_standard.service_password)
    assert len(found.servers) == len(standard_fleet())


def test_plain_ldap_is_refused_unless_allowed_and_then_warns(slapd_standard, caplog):
    plain = _config(slapd_standard, slapd_standard.ldap_url, start_tls=False)
    with pytest.raises(DirectoryError, match="plain LDAP refused"):
        discover(plain, slapd_standard.service_password)
    allowed = _config(slapd_standard, slapd_standard.ldap_url, start_tls=False, allow_plain=True)
    with caplog.at_level(logging.WARNING):
        found = discover(allowed, slapd_standard.service_password)
    assert len(found.servers) == len(standard_fleet())
    assert any("plain LDAP" in r.message for r in caplog.records)


def test_wrong_ca_is_refused_with_a_hint(slapd_standard):
    config = _config(slapd_standard, ca_file=str(slapd_standard.other_ca_file))
    with pytest.raises(DirectoryError) as caught:
        discover(config, slapd_standard.service_password)
    assert caught.value.operation == "TLS handshake"
    assert "ca_file" in str(caught.value)
    assert slapd_standard.ldaps_url in str(caught.value)


def test_wrong_password_stops_at_the_first_server(slapd_standard):
    calls = []

    def counting(config, url, password):
        calls.append(url)
        return open_connection(config, url, password)

    config = _config(slapd_standard, servers=(slapd_standard.ldaps_url, slapd_standard.ldap_url))
    with pytest.raises(DirectoryError, match="invalid credentials") as caught:
        discover(config, "wrong-password", connect=counting)
    assert calls == [slapd_standard.ldaps_url]  # no second try: it would lock the account
    assert "wrong-password" not in str(caught.value)


def test_unreachable_server_is_skipped_for_the_next_one(slapd_standard, caplog):
    dead = f"ldaps://127.0.0.1:{closed_port()}"
    config = _config(slapd_standard, servers=(dead, slapd_standard.ldaps_url))
    with caplog.at_level(logging.WARNING):
        found = discover(config, slapd_standard.service_password)
    assert found.server == slapd_standard.ldaps_url
    assert any(dead in r.getMessage() for r in caplog.records)


def test_only_unreachable_servers_give_a_connect_error(slapd_standard):
    dead = f"ldaps://127.0.0.1:{closed_port()}"
    with pytest.raises(DirectoryError) as caught:
        discover(_config(slapd_standard, servers=(dead,)), slapd_standard.service_password)
    assert caught.value.operation == "connect"
    assert dead in str(caught.value)


def test_missing_base_dn_is_named(slapd_standard):
    config = _config(slapd_standard, base="CN=Configuration,DC=nowhere,DC=example")
    with pytest.raises(DirectoryError, match="base DN not found") as caught:
        discover(config, slapd_standard.service_password)
    assert "DC=nowhere" in str(caught.value)


def test_scope_by_hostile_site_and_name_values(slapd_standard):
    password = slapd_standard.service_password
    lab = discover(_config(slapd_standard, include_sites=(SITE_LAB,)), password)
    expected_lab = {s.name for s in standard_fleet() if s.site == SITE_LAB}
    assert {s.name for s in lab.servers} == expected_lab
    branch = discover(_config(slapd_standard, exclude_sites=(SITE_BRANCH,)), password)
    assert all(s.site != SITE_BRANCH for s in branch.servers)
    assert len(branch.servers) == len(standard_fleet()) - sum(
        1 for s in standard_fleet() if s.site == SITE_BRANCH)
    weird = discover(_config(slapd_standard, only=(WEIRD_SERVER_NAME,)), password)
    assert [s.name for s in weird.servers] == [WEIRD_SERVER_NAME]
    injected = discover(_config(slapd_standard, only=("*)(cn=*",)), password)
    assert injected.servers == ()  # the value is data, not filter syntax
    names = discover(_config(slapd_standard, include_names=("EX2016-*",),
                             exclude_names=("*-04",)), password)
    assert [s.name for s in names.servers] == ["EX2016-01", "EX2016-02", "EX2016-03"]


def test_paging_returns_all_5000_servers_past_the_size_limit(slapd_bulk):
    found = discover(_config(slapd_bulk), slapd_bulk.service_password)
    assert len(found.servers) == 5000
    assert len({s.name for s in found.servers}) == 5000


def test_a_search_that_hits_the_size_limit_is_an_error(slapd_bulk):
    connection = open_connection(_config(slapd_bulk), slapd_bulk.ldaps_url,
                                 slapd_bulk.service_password)
    try:
        with pytest.raises(DirectoryError, match="size limit exceeded"):
            list(_search(connection, slapd_bulk.ldaps_url, slapd_bulk.exchange_base,
                         "(objectClass=msExchExchangeServer)", ldap3.SUBTREE, ["cn"], None))
    finally:
        connection.unbind()


def _write_config(tmp_path: Path, peer: SlapdPeer, **extra: str) -> Path:
    lines = ["[ldap]", f'servers = ["{peer.ldaps_url}"]', f'bind_user = "{peer.service_dn}"',
             f'ca_file = "{peer.ca_file}"', "connect_timeout = 3"]
    lines += [f"{key} = {value}" for key, value in extra.items()]
    path = tmp_path / "collection.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _cli(args: list[str], password: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PROXYLOGON_LDAP_PASSWORD"}
    if password is not None:
        env["PROXYLOGON_LDAP_PASSWORD"] = password
    return subprocess.run([sys.executable, "-m", "collectors", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_command_prints_the_servers_as_json_and_table(slapd_standard, tmp_path):
    config = _write_config(tmp_path, slapd_standard)
    done = _cli(["discover", "--config", str(config), "--secrets", os.devnull],
                slapd_standard.service_password)
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr  # the control for test_command_warns_when_it_finds_nothing
    assert done.stderr.splitlines()[-1].endswith(" with problems)")
    servers = json.loads(done.stdout)
    assert len(servers) == len(standard_fleet())
    for key in ("name", "fqdn", "ad_build", "roles", "site", "dag", "dn", "problems"):
        assert all(key in s for s in servers), key
    by_name = {s["name"]: s for s in servers}
    assert by_name["EX2016-01"]["ad_build"] == "15.1.2176.2"
    assert by_name["EX2016-01"]["site"] == "HQ"

    table = _cli(["discover", "--config", str(config), "--format", "table", "--secrets",
                  os.devnull], slapd_standard.service_password)
    assert table.returncode == 0
    assert "warning" not in table.stderr + table.stdout
    assert table.stdout.splitlines()[0].split()[:3] == ["name", "fqdn", "ad_build"]
    assert "ex2016-01.test.example" in table.stdout


def test_command_reads_the_password_from_a_secrets_file(slapd_standard, tmp_path):
    config = _write_config(tmp_path, slapd_standard)
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(f'[ldap]\npassword = "{slapd_standard.service_password}"\n')
    done = _cli(["discover", "--config", str(config), "--secrets", str(secrets)], None)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("setup", "code", "message"),
    [
        pytest.param("wrong-password", 1, "invalid credentials", id="bad-credentials"),
        pytest.param("no-password", 2, "PROXYLOGON_LDAP_PASSWORD", id="no-password"),
        pytest.param("password-in-config", 2, "does not belong in the config file",
                     id="password-in-config"),
        pytest.param("missing-config", 2, "not found", id="missing-config"),
    ],
)
def test_command_errors_are_one_clear_line_without_traceback(slapd_standard, tmp_path, setup,
                                                             code, message):
    extra = {"password": '"hunter2"'} if setup == "password-in-config" else {}
    config = _write_config(tmp_path, slapd_standard, **extra)
    if setup == "missing-config":
        config = tmp_path / "absent.toml"
    password = {"wrong-password": "wrong-password", "no-password": None}.get(
        setup, slapd_standard.service_password)
    done = _cli(["discover", "--config", str(config), "--secrets", os.devnull],
                password)
    assert done.returncode == code, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert "wrong-password" not in done.stderr + done.stdout
    assert "hunter2" not in done.stderr + done.stdout


def test_wrong_ca_on_starttls_is_refused_with_a_hint(slapd_standard):
    config = _config(slapd_standard, slapd_standard.ldap_url,
                     ca_file=str(slapd_standard.other_ca_file))
    with pytest.raises(DirectoryError) as caught:
        discover(config, slapd_standard.service_password)
    assert caught.value.operation in ("TLS handshake", "StartTLS")
    assert "ca_file" in str(caught.value) or "certificate" in str(caught.value)


# -- a discovery that finds nothing says where it looked (issue 13, item 7) --------------------

NO_SUCH_SITE = "No Such Site"


def test_a_complete_discovery_has_no_warning(slapd_standard):
    found = discover(_config(slapd_standard), slapd_standard.service_password)
    assert found.servers and found.warnings == ()


def test_an_empty_scope_warns_naming_the_base_and_the_filter(slapd_standard):
    found = discover(_config(slapd_standard, include_sites=(NO_SUCH_SITE,)),
                     slapd_standard.service_password)
    assert found.servers == ()
    assert found.search_filter.startswith("(&(&(objectClass=msExchExchangeServer)")
    assert NO_SUCH_SITE in found.search_filter
    [warning] = found.warnings
    assert found.server in warning
    assert f"under {found.base} " in warning
    assert f"filter {found.search_filter}" in warning
    # the causes, each with its fix
    assert "from the RootDSE" in warning and "[ldap] base" not in warning  # base not configured
    for cause in ("may not read the Exchange objects in the Configuration partition",
                  "[scope] only/include_sites/exclude_sites", "a forest without Exchange",
                  "not of class msExchExchangeServer"):
        assert cause in warning, cause


def test_name_patterns_that_drop_every_server_are_named(slapd_standard):
    found = discover(_config(slapd_standard, include_names=("NOPE-*",)),
                     slapd_standard.service_password)
    assert found.servers == ()
    [warning] = found.warnings
    assert f"filter {found.search_filter}" in warning
    assert f"matched {len(standard_fleet())}" in warning
    assert 'include_names = ["NOPE-*"]' in warning


def test_a_configured_base_is_named_as_a_likely_cause(slapd_standard):
    base = slapd_standard.exchange_base.split(",CN=Services,", 1)[1]  # the configuration NC
    found = discover(_config(slapd_standard, base=base, only=("NO-SUCH-SERVER",)),
                     slapd_standard.service_password)
    [warning] = found.warnings
    assert "(configuration naming context from [ldap] base)" in warning
    assert "(1) a wrong [ldap] base" in warning


def _with_scope(config: Path, scope: str) -> Path:
    config.write_text(config.read_text() + "[scope]\n" + scope + "\n")
    return config


@pytest.mark.parametrize("output", ["json", "table"])
def test_command_warns_when_it_finds_nothing(slapd_standard, tmp_path, output):
    # A site name with an escape sequence: the filter the warning prints must stay inert.
    config = _with_scope(_write_config(tmp_path, slapd_standard),
                         f'include_sites = ["{NO_SUCH_SITE}\\u001b[2J"]')
    done = _cli(["discover", "--config", str(config), "--format", output,
                 "--secrets", os.devnull], slapd_standard.service_password)
    assert done.returncode == 0, done.stderr  # the directory answered: an empty answer
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1, done.stderr
    warning = warnings[0]
    assert f"under {slapd_standard.exchange_base} " in warning
    assert "filter (&(&(objectClass=msExchExchangeServer)" in warning
    assert f"{NO_SUCH_SITE}\\x1b[2J" in warning
    assert "\x1b" not in done.stderr + done.stdout
    summary = done.stderr.splitlines()[-1]
    assert summary.startswith("0 Exchange servers from ") and "1 warning" in summary
    if output == "json":
        assert json.loads(done.stdout) == []  # still a bare list: unchanged for scripts
    else:
        assert done.stdout.splitlines()[0].split()[:3] == ["name", "fqdn", "ad_build"]
        assert warning in done.stdout.splitlines()[1:]


def test_an_organisation_without_servers_warns_with_the_rights_and_forest_causes(tmp_path):
    require_slapd()
    peer = start_slapd(tmp_path / "dc-empty", ad_ldif([]))  # Exchange uninstalled, say
    try:
        found = discover(_config(peer), peer.service_password)
    finally:
        peer.stop()
    assert found.servers == ()
    [warning] = found.warnings
    assert f"under {found.base} (configuration naming context from the RootDSE) with filter " \
        f"{found.search_filter}. Likely causes: (1) a bind account" in warning
    assert "[scope]" not in warning and "[ldap] base" not in warning
    assert "(2) a forest without Exchange" in warning


@pytest.mark.parametrize(("name", "problem"), [("EX-NOVERSION", "serialNumber missing"),
                                              ("EX-NOHOST", "no FQDN")])
def test_what_ad_showed_wrong_reaches_the_verdict(slapd_standard, shipped_catalog, name,
                                                  problem):
    """Issue 14: to_host() carries the record's problems, so they reach a snapshot and the
    Hosts page (as evidence of every verdict)."""
    from datetime import UTC, datetime

    from compliance.evaluate import evaluate
    from compliance.models import Observation

    servers = {s.name: s for s in discover(_config(slapd_standard),
                                           slapd_standard.service_password).servers}
    host = servers[name].to_host()
    assert any(problem in p for p in host.problems), host.problems
    now = datetime.now(UTC)
    verdict = evaluate(Observation(host, now, "test"), shipped_catalog, now)
    assert any(e.kind == "inventory" and problem in e.value for e in verdict.evidence)
