"""`python -m collectors preflight` against the real peers: one line per check, each failure
with its fix, exit 1 when one failed. (The Kerberos-only run: tests/collectors/
test_collect_kerberos.py.)

Boundaries: a DC that refuses the bind next to one that accepts it; a listener that refuses
the connection, one whose certificate is not trusted, one that refuses the account; a missing
password (the steps needing it say "not checked" instead of failing again).
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from collectors.__main__ import main
from collectors.preflight import Check, _skew
from collectors.probe import compact, probe_script
from tests.collectors.documents import dumps, probe_document
from tests.peers.slapd import closed_port
from tests.peers.wsman import HostBehavior

pytestmark = pytest.mark.integration


def _toml_path(path: object) -> str:
    return str(path).replace("\\", "\\\\")


def _run(tmp_path: Path, config: str, secrets: str, inventory: str | None = None,
         sample: int = 3) -> tuple[int, list[str], str]:
    (tmp_path / "collection.toml").write_text(config)
    (tmp_path / "secrets.toml").write_text(secrets)
    args = ["preflight", "--config", str(tmp_path / "collection.toml"), "--secrets",
            str(tmp_path / "secrets.toml"), "--sample", str(sample)]
    if inventory is not None:
        (tmp_path / "hosts.csv").write_text(inventory)
        args += ["--inventory", str(tmp_path / "hosts.csv")]
    out, err = io.StringIO(), io.StringIO()
    code = main(args, stdout=out, stderr=err)
    return code, out.getvalue().splitlines(), err.getvalue()


def _winrm(peer) -> str:
    return (f'[winrm]\nusername = "{_toml_path(peer.username)}"\nca_file = "{peer.ca_file}"\n'
            "deadline_seconds = 8\nread_timeout_seconds = 4\noperation_timeout_seconds = 2\n"
            "retries = 0\n")


def test_a_healthy_setup_passes_every_check_and_runs_the_probe(wsman_peer, tmp_path):
    wsman_peer.expected_script = compact(probe_script())
    for name in ("T-PF-OK1", "T-PF-OK2"):
        wsman_peer.set_host(name, HostBehavior(stdout=dumps(probe_document(
            name, "15.1.2176.9", collected_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")))))
    inventory = "name,winrm_url\n" + "".join(
        f"{n},{wsman_peer.url(n)}\n" for n in ("T-PF-OK1", "T-PF-OK2"))
    code, lines, err = _run(tmp_path, _winrm(wsman_peer),
                            f'[winrm]\npassword = "{wsman_peer.password}"\n', inventory)
    assert code == 0, lines
    assert all(line.startswith("ok") for line in lines), lines
    probes = [line for line in lines if "the probe ran" in line]
    assert len(probes) == 2 and all("ExSetup 15.1.2176.9" in line for line in probes)
    assert sum("certificate trusted" in line for line in lines) == 2
    assert sum("HTTP Date" in line for line in lines) == 2
    assert "checks: " in err and "0 failed" in err


def test_each_broken_part_fails_with_its_own_fix_and_the_others_still_run(
        wsman_peer, slapd_standard, tmp_path):
    wsman_peer.expected_script = compact(probe_script())
    wsman_peer.set_host("T-PF-A-REFUSED", HostBehavior(http_status=401))
    inventory = ("name,winrm_url\n"
                 f"T-PF-A-REFUSED,{wsman_peer.url('T-PF-A-REFUSED')}\n"
                 f"T-PF-B-BADTLS,{wsman_peer.url('T-PF-B-BADTLS', bad_tls=True)}\n"
                 f"T-PF-C-CLOSED,https://127.0.0.1:{closed_port()}/wsman\n")
    config = (f'[ldap]\nservers = ["{slapd_standard.ldaps_url}"]\n'
              f'bind_user = "{slapd_standard.service_dn}"\nca_file = "{slapd_standard.ca_file}"\n'
              "connect_timeout = 3.0\ntimeout = 10.0\n" + _winrm(wsman_peer))
    code, lines, _ = _run(tmp_path, config, '[ldap]\npassword = "wrong-password"\n'
                          f'[winrm]\npassword = "{wsman_peer.password}"\n', inventory, sample=50)
    assert code == 1
    ldap = [line for line in lines if " ldap " in line]
    assert ldap and all(line.startswith("FAIL") and "fix:" in line for line in ldap), ldap
    assert "bind as" in ldap[0]
    # The bind's failure is said once; reading the servers says it was not tried (review).
    assert len(ldap) == 2 and "not read: no domain controller accepted the bind" in ldap[1]
    refused = next(line for line in lines if "T-PF-A-REFUSED" in line and "probe" in line)
    assert refused.startswith("FAIL") and ": auth:" in refused
    badtls = next(line for line in lines if "T-PF-B-BADTLS" in line)
    assert badtls.startswith("FAIL") and "TLS" in badtls and "ca_file" in badtls
    closed = next(line for line in lines if "T-PF-C-CLOSED" in line)
    assert closed.startswith("FAIL") and "no answer" in closed and "winrm quickconfig" in closed
    # AD's 20 servers have names no listener answers: sampled too, failing alike.
    assert sum(1 for line in lines if "no answer" in line) >= 1


def test_a_missing_password_is_one_failure_not_a_cascade(wsman_peer, tmp_path):
    inventory = f"name,winrm_url\nT-PF-NOPW,{wsman_peer.url('T-PF-NOPW')}\n"
    code, lines, _ = _run(tmp_path, _winrm(wsman_peer), "", inventory)
    assert code == 1
    assert lines[0].startswith("FAIL secrets") and "PROXYLOGON_WINRM_PASSWORD" in lines[0]
    assert lines[1].startswith("FAIL winrm") and "not checked" in lines[1]
    assert len(lines) == 2


def test_a_config_with_nothing_to_check_is_a_configuration_error(tmp_path):
    code, lines, err = _run(tmp_path, "[scope]\n", "")
    assert code == 2 and not lines and "nothing to check" in err


@pytest.mark.parametrize(("offset", "ok"), [(0, True), (300, True), (-300, True), (301, False),
                                            (-3600, False)])
def test_a_clock_more_than_five_minutes_off_fails(offset, ok):
    now = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
    check = _skew("winrm", "EX01", now + timedelta(seconds=offset), now, "HTTP Date")
    assert check.ok is ok
    assert ("in step" if offset == 0 else "behind" if offset < 0 else "ahead of") in check.detail
    assert ok or "w32tm" in check.fix


def test_a_check_line_is_inert():
    line = Check("winrm", "EX\x1b[2J01\nFAKE ok", False, "d", "f").line()
    assert "\x1b" not in line and "\n" not in line


def test_a_keytab_other_users_can_read_fails_with_chmod(kdc_peer, monkeypatch, tmp_path):
    for key, value in kdc_peer.env().items():
        monkeypatch.setenv(key, value)
    principal = kdc_peer.add_principal("t-pf-mode-svc")
    keytab = kdc_peer.keytab(principal, tmp_path / "svc.keytab")
    keytab.chmod(0o644)
    config = (f'[kerberos]\nprincipal = "{principal}"\nkeytab = "{keytab}"\n'
              '[winrm]\ntransport = "kerberos"\n')
    code, lines, _ = _run(tmp_path, config, "", "name\n")
    assert code == 1
    assert lines[0].startswith("ok   kerberos")
    assert lines[1].startswith("FAIL kerberos") and "mode 644" in lines[1]
    assert f"chmod 600 {keytab}" in lines[1]
    keytab.chmod(0o600)
    code, lines, _ = _run(tmp_path, config, "", "name\n")
    assert not any("readable by other users" in line for line in lines), lines
