"""``python -m collectors fingerprint``: servers from the inventory file and/or AD, namespaces from
``[fingerprint]``, one inert line per endpoint, exit 0/1/2 (issue 18 part 1).

The servers and namespaces are pointed at the OWA-like peer on loopback with ``[fingerprint] urls``
(no DNS: their names never resolve); AD is the slapd test directory.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from collectors.__main__ import main
from tests.peers.loopback import free_port
from tests.peers.owa import OwaNode, OwaPeer, start_owa
from tests.peers.slapd import SlapdPeer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwaPeer]:
    started = start_owa(tmp_path_factory.mktemp("owa-cli"))
    yield started
    started.stop()


def _config(tmp_path: Path, fingerprint: str, extra: str = "") -> Path:
    path = tmp_path / "collection.toml"
    path.write_text(extra + "[fingerprint]\n" + fingerprint)
    return path


def _run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["fingerprint", *args, "--secrets", os.devnull], stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def _fleet(peer: OwaPeer, tmp_path: Path) -> tuple[Path, Path]:
    peer.set_endpoint("cli-ex01", OwaNode(header="15.1.2375.17", logon_version="15.1.2375",
                                          manifest_version="15.1.2375.17"))
    peer.set_endpoint("cli-ex02", OwaNode(status=500))
    peer.set_endpoint("cli-mail", OwaNode(header="15.1.2375.17", manifest_version="15.1.2375.17"),
                      OwaNode(header="15.1.2308.8", manifest_version="15.1.2308.8"))
    inventory = tmp_path / "hosts.csv"
    inventory.write_text("name,fqdn\nEX01,ex01.corp.example\nEX02,ex02.corp.example\n")
    shutil.copy(peer.ca_file, tmp_path / "owa-ca.pem")
    config = _config(tmp_path, f"""namespaces = ["mail.corp.example"]
ca_file = "owa-ca.pem"
concurrency = 2
deadline_seconds = 10
timeout_seconds = 5
[fingerprint.urls]
EX01 = "{peer.url('cli-ex01')}"
"ex02.corp.example" = "{peer.url('cli-ex02')}"
"mail.corp.example" = "{peer.url('cli-mail')}"
""")
    return config, inventory


def test_servers_and_namespaces_one_line_each(peer, tmp_path):
    config, inventory = _fleet(peer, tmp_path)
    code, out, err = _run("--config", str(config), "--inventory", str(inventory))
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 3
    ex01, ex02, mail = lines
    assert ex01.startswith(f"EX01 (server) {peer.url('cli-ex01')} | ")
    assert ("x_owa_version 15.1.2375.17 full_build; logon_path 15.1.2375 cu_level; "
            "exporttool_manifest 15.1.2375.17 full_build") in ex01
    assert "owa 200 in " in ex01 and "ecp 200 in " in ex01 and "verified" in ex01
    assert ex02.startswith("EX02 (server)") and "no build disclosed | owa 500 in" in ex02
    assert "ecp 500 in" in ex02
    assert mail.startswith("mail.corp.example (namespace)")
    assert "x_owa_version 15.1.2375.17" in mail and "15.1.2308.8" in mail  # two nodes behind it
    assert err.strip().splitlines()[-1] == ("3 endpoints: 3 answered, 0 failed, 0 with a "
                                            "certificate that did not validate")


def test_the_command_runs_as_a_module(peer, tmp_path):
    config, inventory = _fleet(peer, tmp_path)
    done = subprocess.run([sys.executable, "-m", "collectors", "fingerprint", "--config", str(config),
                           "--inventory", str(inventory), "--secrets", os.devnull],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 3 and "3 answered" in done.stderr


def test_hostile_names_and_disclosures_are_inert(peer, tmp_path):
    peer.set_endpoint("cli-hostile", OwaNode(header="\x1b[2J15.1.2375.17\x9b", manifest_version=None))
    inventory = tmp_path / "hosts.csv"
    inventory.write_text("name,fqdn\n\"EX\x1b]0;owned\x07\",hostile.corp.example\n")
    config = _config(tmp_path, f'ca_file = "{peer.ca_file}"\n[fingerprint.urls]\n'
                               f'"hostile.corp.example" = "{peer.url("cli-hostile")}"\n')
    code, out, err = _run("--config", str(config), "--inventory", str(inventory))
    assert code == 0, err
    # A header arrives as Latin-1: \x9b is the one-byte CSI of 8-bit terminals.
    assert "\x1b" not in out and "\x07" not in out and "\x9b" not in out
    assert out.count("\n") == 1
    assert out.startswith("EX\\x1b]0;owned\\x07 (server)")
    assert "x_owa_version ? (not a build number: '\\x1b[2J15.1.2375.17\\x9b')" in out


def test_an_unusable_fqdn_from_the_inventory_sends_nothing(peer, tmp_path):
    inventory = tmp_path / "hosts.csv"
    inventory.write_text("name,fqdn\nEX01,ex01.corp.example/owa?x=\n")
    config = _config(tmp_path, f'ca_file = "{peer.ca_file}"\n')
    code, out, err = _run("--config", str(config), "--inventory", str(inventory))
    assert code == 1  # nothing answered
    assert "EX01 (server) - | no build disclosed | failed (dns): " in out
    assert "is not a host name: nothing was sent" in out
    assert "hint (dns): " in err


def test_tls_refused_by_default_and_recorded_when_asked(peer, tmp_path):
    peer.set_endpoint("cli-tls", OwaNode())
    inventory = tmp_path / "hosts.csv"
    inventory.write_text("name,fqdn\nEX01,ex01.corp.example\n")
    urls = f'[fingerprint.urls]\nEX01 = "{peer.url("cli-tls")}"\n'
    config = _config(tmp_path, f'ca_file = "{peer.other_ca_file}"\n' + urls)
    code, out, err = _run("--config", str(config), "--inventory", str(inventory))
    assert code == 1
    assert "failed (tls): " in out and "certificate not trusted" in out
    assert "hint (tls): " in err and "record_invalid_certificate" in err
    config = _config(tmp_path, f'ca_file = "{peer.other_ca_file}"\nrecord_invalid_certificate = '
                               "true\n" + urls)
    code, out, err = _run("--config", str(config), "--inventory", str(inventory))
    assert code == 0, err
    assert "CERTIFICATE NOT VALIDATED (unable to get local issuer certificate): recorded, proves " \
           "nothing" in out
    assert "1 with a certificate that did not validate" in err


def test_nothing_answering_is_exit_1_with_one_hint(tmp_path):
    port = free_port()
    config = _config(tmp_path, 'namespaces = ["mail.corp.example", "owa.corp.example"]\n'
                               "timeout_seconds = 2\n[fingerprint.urls]\n"
                               f'"mail.corp.example" = "https://127.0.0.1:{port}/"\n'
                               f'"owa.corp.example" = "https://127.0.0.1:{port}/owa2/"\n')
    code, out, err = _run("--config", str(config))
    assert code == 1
    assert out.count("failed (connect): ") == 2
    assert err.count("hint (connect): ") == 1
    assert "2 endpoints: 0 answered, 2 failed" in err


@pytest.mark.parametrize(("text", "says"), [
    pytest.param("record_invalid_certificates = true\n", "[fingerprint] record_invalid_certificates "
                 "in the collection file is not a setting: did you mean 'record_invalid_certificate'?",
                 id="unknown-key"),
    pytest.param("deadline_seconds = nan\n", "deadline_seconds must be a positive number",
                 id="nan"),
    pytest.param('namespaces = ["https://mail.corp.example/"]\n', "is not a host name",
                 id="namespace-url"),
    pytest.param('ca_file = "missing.pem"\n', "[fingerprint] ca_file", id="missing-ca"),
    pytest.param('ca_file = "bad.pem"\n', "cannot be used", id="ca-not-a-certificate"),
    pytest.param("", "nothing to fingerprint", id="nothing-configured"),
])
def test_configuration_errors_are_one_line_with_exit_2(tmp_path, text, says):
    (tmp_path / "bad.pem").write_text("not a certificate\n")
    code, out, err = _run("--config", str(_config(tmp_path, text)))
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("configuration error: ") and says in lines[0], lines


def test_servers_from_active_directory(peer, tmp_path, slapd_standard: SlapdPeer):
    peer.set_endpoint("cli-ad-mr1", OwaNode(header="15.0.1497.12", logon_version="15.0.1497",
                                            manifest_version="15.0.1497.12"))
    peer.set_endpoint("cli-ad-cas1", OwaNode(header=None, manifest_version=None,
                                             logon_version="15.0.1497"))
    ldap = (f'[ldap]\nservers = ["{slapd_standard.ldaps_url}"]\n'
            f'bind_user = "{slapd_standard.service_dn}"\nca_file = "{slapd_standard.ca_file}"\n'
            '[scope]\nonly = ["EX2013-MR1", "EX2013-CAS1"]\n')
    config = _config(tmp_path, f'ca_file = "{peer.ca_file}"\n[fingerprint.urls]\n'
                               f'"ex2013-mr1.test.example" = "{peer.url("cli-ad-mr1")}"\n'
                               f'"ex2013-cas1.test.example" = "{peer.url("cli-ad-cas1")}"\n', ldap)
    out, err = io.StringIO(), io.StringIO()
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(f'[ldap]\npassword = "{slapd_standard.service_password}"\n')
    code = main(["fingerprint", "--config", str(config), "--secrets", str(secrets)], stdout=out,
                stderr=err)
    assert code == 0, err.getvalue()
    lines = sorted(out.getvalue().splitlines())
    assert len(lines) == 2
    assert lines[0].startswith("EX2013-CAS1 (server)") and "logon_path 15.0.1497 cu_level" in lines[0]
    assert lines[1].startswith("EX2013-MR1 (server)") and "exporttool_manifest 15.0.1497.12" in lines[1]


def test_a_missing_ldap_password_is_a_configuration_error(tmp_path):
    ldap = '[ldap]\nservers = ["ldaps://127.0.0.1:1"]\nbind_user = "u"\n'
    environ = {k: v for k, v in os.environ.items() if k != "PROXYLOGON_LDAP_PASSWORD"}
    done = subprocess.run([sys.executable, "-m", "collectors", "fingerprint", "--config",
                           str(_config(tmp_path, "", ldap)), "--secrets", os.devnull],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, env=environ)
    assert done.returncode == 2
    assert done.stderr.startswith("configuration error: no LDAP password")
