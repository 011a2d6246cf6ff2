"""Kerberos only, end to end: ``python -m collectors collect`` and ``preflight`` as the operator runs
them, against a real MIT KDC (tests/peers/kdc.py), the AD-shaped slapd accepting SASL GSSAPI and
the WS-Man peer accepting Kerberos with NTLM disabled.

No password anywhere: no secrets file, no ``PROXYLOGON_*_PASSWORD``; the command's environment
carries the realm's krb5.conf and replay cache and no ``KRB5CCNAME`` (the ticket comes from the
keytab into the process's own ``MEMORY:`` cache), except where a test is about the user's cache.
One principal, the slapd peer's service account (``svc-exinventory@PROBE.TEST``, its keytab),
binds to LDAP and runs the probe over WinRM: the WinRM peer lets in any principal the KDC vouches
for. Tests that need a broken key make a principal of their own; the shared account's key is
never changed.

Only loopback traffic: the AD servers the inventory does not point at the WinRM peer get
``fqdn = localhost`` (their WinRM URL is still built from [winrm], on a closed port), so no name
is looked up in DNS; they fail as ``connect``, after their service ticket (``HTTP/localhost``)
was had, which shows an unreachable host is not reported as a Kerberos problem.

Boundaries: the right key / a key changed after the keytab was written; a ticket within its life
/ past it; a host's clock within 5 minutes (every graded host) / an hour off; a DC's clock in
step / an hour ahead.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from store import SnapshotStore
from tests.collectors.documents import REWRITE_RULES, dumps, probe_document
from tests.peers.ad_tree import standard_fleet
from tests.peers.kdc import KdcPeer
from tests.peers.slapd import SlapdPeer, closed_port
from tests.peers.wsman import HostBehavior, WsmanPeer
from tests.peers.wsman_fixtures import ensure_principal, kerberos_peer_process

pytestmark = pytest.mark.integration

pytest.importorskip("gssapi", reason="gssapi not installed (pip install -r requirements-kerberos.txt)")
pytest.importorskip("kerberos", reason="pykerberos not installed (pip install -r requirements-kerberos.txt)")

ROOT = Path(__file__).resolve().parents[2]
# The AD fleet's names in the order preflight samples them (the first N by name).
AD_NAMES = sorted((spec.name for spec in standard_fleet()), key=str.lower)
# Expected status -> (ExSetup build, the document's other facts).
DOCUMENTS: dict[str, tuple[str, dict[str, Any]]] = {
    "patched": ("15.1.2176.9", {"kbs": ["KB5000871"]}),
    "vulnerable": ("15.2.792.3", {}),
    "mitigated": ("15.1.2176.2", {"rewrite_rules": REWRITE_RULES}),
}
SKEW_SECONDS = 3600
PROBE_STEPS = ["Create", "Command", "Send", "Receive", "Delete"]


def _document(name: str, status: str) -> HostBehavior:
    build, facts = DOCUMENTS[status]
    return HostBehavior(stdout=dumps(probe_document(
        name, build, collected_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), **facts)))


def _env(kdc: KdcPeer, tmp_path: Path, **extra: str) -> dict[str, str]:
    """This process's environment without any credential (no Kerberos cache, no password, no
    keytab variable), with the realm's krb5.conf and replay cache, and a data directory."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("KRB5", "PROXYLOGON_"))}
    return {**env, **kdc.env(), "PROXYLOGON_DATA_DIR": str(tmp_path / "data"), **extra}


def _config(tmp_path: Path, principal: str, keytab: Path | None, *, ca_file: Path | str,
            ldap: SlapdPeer | None = None) -> Path:
    """[kerberos], [ldap] auth = "kerberos" (when ``ldap``) and [winrm] transport = "kerberos":
    no bind_user, no username, no password. Default WinRM URLs go to a closed loopback port."""
    text = f'[kerberos]\nprincipal = "{principal}"\n'
    if keytab is not None:
        text += f'keytab = "{keytab}"\n'
    if ldap is not None:
        text += (f'[ldap]\nauth = "kerberos"\nservers = ["{ldap.kerberos_ldaps_url}"]\n'
                 f'ca_file = "{ldap.ca_file}"\nconnect_timeout = 3.0\ntimeout = 5.0\n')
    text += (f'[winrm]\ntransport = "kerberos"\nca_file = "{ca_file}"\nport = {closed_port()}\n'
             "deadline_seconds = 8\nread_timeout_seconds = 4\noperation_timeout_seconds = 2\n"
             "retries = 0\nconcurrency = 20\n")
    path = tmp_path / "collection.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _inventory(tmp_path: Path, urls: dict[str, str], localhost: Sequence[str] = ()) -> Path:
    """``urls``: name -> WinRM URL (the peer's); ``localhost``: names whose fqdn becomes
    localhost (their URL stays the default one, from [winrm])."""
    lines = ["name,fqdn,winrm_url"]
    lines += [f"{name},,{url}" for name, url in urls.items()]
    lines += [f"{name},localhost," for name in localhost]
    path = tmp_path / "hosts.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _command(args: list[str], kdc: KdcPeer, tmp_path: Path,
             **extra_env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "collectors", *args, "--secrets", os.devnull],
                          cwd=ROOT, env=_env(kdc, tmp_path, **extra_env), capture_output=True,
                          text=True, timeout=90, check=False)


def _collect(config: Path, inventory: Path | None, kdc: KdcPeer, tmp_path: Path,
             **extra_env: str) -> tuple[subprocess.CompletedProcess[str], str]:
    db = f"sqlite:///{tmp_path / 'store.db'}"
    args = ["collect", "--config", str(config), "--db", db]
    if inventory is not None:
        args += ["--inventory", str(inventory)]
    return _command(args, kdc, tmp_path, **extra_env), db


def _preflight(config: Path, inventory: Path | None, kdc: KdcPeer, tmp_path: Path,
               sample: int) -> tuple[int, list[str], str]:
    args = ["preflight", "--config", str(config), "--sample", str(sample)]
    if inventory is not None:
        args += ["--inventory", str(inventory)]
    done = _command(args, kdc, tmp_path)
    return done.returncode, done.stdout.splitlines(), done.stderr


def _stored(db: str) -> dict[str, Any]:
    """The latest snapshot's assessments by host name ({} when nothing was saved)."""
    store = SnapshotStore.open(db)
    try:
        latest = store.latest()
        return {} if latest is None else {a.observation.host.name: a
                                          for a in store.assessments(latest.id)}
    finally:
        store.dispose()


def _error_line(err: str) -> str:
    """The one ``error:`` line, last on stderr (before it, at most the logged warning of the
    DC that refused: discover logs each DC's failure before raising the last one)."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), err
    assert sum(line.startswith("error: ") for line in lines) == 1, err
    return lines[-1]


def _said_once(err: str) -> None:
    """A refused ticket is the host's failure, said in its row or line: no library's own log
    of it (requests-kerberos logs each failed step at ERROR, with a traceback)."""
    assert "Traceback" not in err and "ERROR" not in err, err


@pytest.fixture
def account(slapd_kerberos: SlapdPeer) -> tuple[str, Path]:
    """The service account, as [kerberos] names it: its principal and keytab (ktpass's output)."""
    assert slapd_kerberos.service_principal and slapd_kerberos.service_keytab
    return slapd_kerberos.service_principal, slapd_kerberos.service_keytab


@pytest.fixture(scope="module")
def rekeyed(kdc_peer: KdcPeer, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A principal of this module whose key was changed after its keytab was written (the account's
    password reset since ktpass)."""
    principal = ensure_principal(kdc_peer, "t-ck-rekeyed")
    keytab = kdc_peer.keytab(principal, tmp_path_factory.mktemp("ck-rekeyed") / "rekeyed.keytab")
    kdc_peer.change_key(principal)
    return principal, keytab


@pytest.fixture(scope="module")
def skewed_winrm(kdc_peer: KdcPeer, wsman_kerberos_peer: WsmanPeer,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A WinRM host an hour behind (its own peer process, the same HTTP/localhost key as the
    session's Kerberos peer, NTLM off); its ready line, and ``ca_bundle``: both peers' CAs."""
    assert wsman_kerberos_peer.keytab is not None
    workdir = tmp_path_factory.mktemp("ck-skewed-winrm")
    fleet = {"T-CK-SKEWED": {"stdout": _document("T-CK-SKEWED", "patched").stdout}}
    with kerberos_peer_process(kdc_peer, wsman_kerberos_peer.keytab, workdir / "peer", fleet,
                               clock_offset=-SKEW_SECONDS) as ready:
        bundle = workdir / "ca-bundle.pem"
        bundle.write_text(Path(wsman_kerberos_peer.ca_file).read_text()
                          + Path(ready["ca_file"]).read_text())
        yield {**ready, "ca_bundle": bundle}


def _skewed_url(ready: dict[str, Any]) -> str:
    return f"https://localhost:{ready['https_port']}/wsman/T-CK-SKEWED"


# -- 1. it works: AD discovery and every probe with the service account's ticket, no password --


def test_collect_kerberos_only_grades_every_peer_host_and_unreachable_ones_fail_connect_not_auth(
        kdc_peer: KdcPeer, slapd_kerberos: SlapdPeer, wsman_kerberos_peer: WsmanPeer,
        account: tuple[str, Path], tmp_path: Path) -> None:
    peer = wsman_kerberos_peer
    assert not peer.allow_ntlm  # whatever gets in, gets in with Kerberos
    statuses = ["patched", "vulnerable", "mitigated"] * 2
    expected = dict(zip(AD_NAMES[:len(statuses)], statuses, strict=True))
    urls = {}
    for name, status in expected.items():
        path = f"T-CK-E2E-{name}"
        peer.set_host(path, _document(name, status))
        urls[name] = peer.url(path, hostname="localhost")
    unreachable = AD_NAMES[len(statuses):]
    principal, keytab = account
    config = _config(tmp_path, principal, keytab, ca_file=peer.ca_file, ldap=slapd_kerberos)

    started = time.monotonic()
    done, db = _collect(config, _inventory(tmp_path, urls, unreachable), kdc_peer, tmp_path)
    elapsed = time.monotonic() - started

    assert done.returncode == 0, done.stderr
    _said_once(done.stderr)
    assert "snapshot #1 saved: 20 hosts observed" in done.stderr, done.stderr
    stored = _stored(db)
    assert sorted(stored, key=str.lower) == AD_NAMES  # the directory's whole fleet, via GSSAPI
    for name, status in expected.items():
        assessment = stored[name]
        assert assessment.observation.failure is None, (name, assessment.observation.failure)
        assert assessment.verdict.status.value == status, (name, assessment.verdict.reason)
        assert peer.requests(f"T-CK-E2E-{name}") == PROBE_STEPS, name
    for name in unreachable:
        failure = stored[name].observation.failure
        assert failure is not None and failure.reason == "connect", (name, failure)
        assert "kerberos" not in failure.detail.lower(), (name, failure.detail)
        assert stored[name].verdict.status.value == "unknown"
    assert elapsed < 20, elapsed


# -- 2. each misconfiguration: its own message, through collect --------------------------------


def test_collect_with_a_keytab_whose_key_changed_stops_before_any_host_with_wrong_key(
        kdc_peer: KdcPeer, slapd_kerberos: SlapdPeer, wsman_kerberos_peer: WsmanPeer,
        rekeyed: tuple[str, Path], tmp_path: Path) -> None:
    principal, keytab = rekeyed
    peer = wsman_kerberos_peer
    peer.set_host("T-CK-REKEYED", _document("T-CK-REKEYED", "patched"))
    config = _config(tmp_path, principal, keytab, ca_file=peer.ca_file, ldap=slapd_kerberos)
    inventory = _inventory(tmp_path, {AD_NAMES[0]: peer.url("T-CK-REKEYED", hostname="localhost")})

    done, db = _collect(config, inventory, kdc_peer, tmp_path)

    assert done.returncode == 1, done.stderr
    line = _error_line(done.stderr)
    assert done.stderr.count("\n") == 1, done.stderr  # said once, before any DC or host
    assert line.startswith(f"error: Kerberos as {principal}: wrong key ("), line
    assert "Fix: the keytab's key for " + principal in line and "ktpass" in line, line
    assert _stored(db) == {}  # nothing saved
    assert peer.requests("T-CK-REKEYED") == []  # no host was asked


def test_collect_with_the_users_ticket_past_its_end_is_ticket_expired_naming_kinit(
        kdc_peer: KdcPeer, slapd_kerberos: SlapdPeer, wsman_kerberos_peer: WsmanPeer,
        tmp_path: Path) -> None:
    # No keytab: the user's cache (kinit), whose ticket the realm caps at 2 s.
    principal = ensure_principal(kdc_peer, "t-ck-short-lived")
    kdc_peer.kadmin(f'modprinc -maxlife "2 seconds" {principal}')
    ccache = tmp_path / "user.ccache"
    kdc_peer.kinit(principal, kdc_peer.keytab(principal, tmp_path / "short.keytab"), ccache)
    got = time.monotonic()
    peer = wsman_kerberos_peer
    peer.set_host("T-CK-EXPIRED", _document("T-CK-EXPIRED", "patched"))
    config = _config(tmp_path, principal, None, ca_file=peer.ca_file, ldap=slapd_kerberos)
    inventory = _inventory(tmp_path, {AD_NAMES[0]: peer.url("T-CK-EXPIRED", hostname="localhost")})
    time.sleep(max(0.0, got + 2.5 - time.monotonic()))

    done, db = _collect(config, inventory, kdc_peer, tmp_path, KRB5CCNAME=f"FILE:{ccache}")

    assert done.returncode == 1, done.stderr
    line = _error_line(done.stderr)
    assert done.stderr.count("\n") == 1, done.stderr
    # Said by the KDC's library ("ticket expired (...)") or found by acquire (no lifetime left).
    assert re.match(rf"error: Kerberos as {re.escape(principal)}: (ticket expired \(|the ticket "
                    rf"in FILE:{re.escape(str(ccache))} has expired\.)", line), line
    assert f"Fix: get a new ticket for {principal} (kinit {principal}" in line, line
    assert _stored(db) == {}
    assert peer.requests("T-CK-EXPIRED") == []


def test_collect_grades_the_others_and_names_clock_skew_for_a_winrm_host_an_hour_behind(
        kdc_peer: KdcPeer, wsman_kerberos_peer: WsmanPeer, skewed_winrm: dict[str, Any],
        account: tuple[str, Path], tmp_path: Path) -> None:
    peer = wsman_kerberos_peer
    urls = {"CK-SKEWED": _skewed_url(skewed_winrm)}
    for name in ("T-CK-INSTEP-1", "T-CK-INSTEP-2"):
        peer.set_host(name, _document(name, "patched"))
        urls[name] = peer.url(name, hostname="localhost")
    principal, keytab = account
    config = _config(tmp_path, principal, keytab, ca_file=skewed_winrm["ca_bundle"])

    done, db = _collect(config, _inventory(tmp_path, urls), kdc_peer, tmp_path)

    assert done.returncode == 0, done.stderr
    _said_once(done.stderr)
    stored = _stored(db)
    for name in ("T-CK-INSTEP-1", "T-CK-INSTEP-2"):
        assert stored[name].verdict.status.value == "patched", stored[name].observation.failure
    failure = stored["CK-SKEWED"].observation.failure
    assert failure is not None and failure.reason == "auth", failure
    assert "kerberos clock_skew: " in failure.detail and principal in failure.detail, failure.detail
    apart = re.search(r"(\d+) s behind", failure.detail)
    assert apart is not None and abs(int(apart.group(1)) - SKEW_SECONDS) <= 60, failure.detail
    assert "w32tm /resync" in failure.hint, failure.hint
    assert stored["CK-SKEWED"].verdict.status.value == "unknown"


def test_collect_against_a_dc_an_hour_ahead_fails_naming_the_dc_the_principal_and_the_clocks(
        kdc_peer: KdcPeer, slapd_kerberos_skewed: SlapdPeer, wsman_kerberos_peer: WsmanPeer,
        tmp_path: Path) -> None:
    dc = slapd_kerberos_skewed
    assert dc.service_principal and dc.service_keytab
    principal = dc.service_principal
    config = _config(tmp_path, principal, dc.service_keytab, ca_file=wsman_kerberos_peer.ca_file,
                     ldap=dc)

    done, db = _collect(config, None, kdc_peer, tmp_path)

    assert done.returncode == 1, done.stderr
    line = _error_line(done.stderr)
    assert line.startswith(f"error: {dc.kerberos_ldaps_url}: Kerberos bind as {principal} "
                           "failed: "), line
    assert "refused" in line and "was obtained" in line, line
    fix = line.split(". Fix: ", 1)[1]
    assert "check the clocks (within 5 minutes)" in fix and "ldap/localhost" in fix, fix
    assert _stored(db) == {}


# -- 3. preflight: every line ok on the good setup; each misconfiguration its line and fix ------


def test_preflight_kerberos_only_passes_every_check_on_the_sampled_peer_hosts(
        kdc_peer: KdcPeer, slapd_kerberos: SlapdPeer, wsman_kerberos_peer: WsmanPeer,
        account: tuple[str, Path], tmp_path: Path) -> None:
    peer = wsman_kerberos_peer
    sampled = AD_NAMES[:2]  # the first by name: what --sample 2 tries
    urls = {}
    for name in sampled:
        peer.set_host(f"T-CK-PF-{name}", _document(name, "patched"))
        urls[name] = peer.url(f"T-CK-PF-{name}", hostname="localhost")
    principal, keytab = account
    config = _config(tmp_path, principal, keytab, ca_file=peer.ca_file, ldap=slapd_kerberos)

    code, lines, err = _preflight(config, _inventory(tmp_path, urls), kdc_peer, tmp_path, sample=2)

    assert code == 0, lines
    assert all(line.startswith("ok ") for line in lines), lines
    assert lines[0].startswith(f"ok   kerberos {principal}: "), lines
    url = slapd_kerberos.kerberos_ldaps_url
    assert f"ok   ldap     {url}: bound as {principal} (kerberos, TLSv1." in lines[1], lines
    assert lines[2] == f"ok   ldap     {url}: clock not reported (rootDSE currentTime); not compared"
    assert f"{len(AD_NAMES)} Exchange servers readable" in lines[3], lines
    for name in sampled:
        mine = [line for line in lines if line.startswith(f"ok   winrm    {name}: ")]
        assert len(mine) == 3, lines
        assert "localhost:" in mine[0] and "certificate trusted" in mine[0], mine
        assert "(HTTP Date)" in mine[1], mine
        assert f"the probe ran as {principal} (kerberos)" in mine[2], mine
        assert "ExSetup 15.1.2176.9" in mine[2], mine
    assert len(lines) == 4 + 3 * len(sampled), lines
    assert "0 failed" in err, err


def test_preflight_with_a_keytab_whose_key_changed_fails_the_ticket_line_with_ktpass_and_checks_nothing_else(
        kdc_peer: KdcPeer, slapd_kerberos: SlapdPeer, wsman_kerberos_peer: WsmanPeer,
        rekeyed: tuple[str, Path], tmp_path: Path) -> None:
    principal, keytab = rekeyed
    peer = wsman_kerberos_peer
    peer.set_host("T-CK-PF-REKEYED", _document("T-CK-PF-REKEYED", "patched"))
    config = _config(tmp_path, principal, keytab, ca_file=peer.ca_file, ldap=slapd_kerberos)
    inventory = _inventory(tmp_path, {AD_NAMES[0]: peer.url("T-CK-PF-REKEYED", hostname="localhost")})

    code, lines, err = _preflight(config, inventory, kdc_peer, tmp_path, sample=1)

    assert code == 1, lines
    assert len(lines) == 3, lines
    assert lines[0].startswith(f"FAIL kerberos {principal}: Kerberos as {principal}: wrong key ("), lines
    assert "-> fix: the keytab's key for " in lines[0] and "ktpass" in lines[0], lines[0]
    assert lines[1].startswith(f"FAIL ldap     {slapd_kerberos.kerberos_ldaps_url}: not checked"), lines
    assert lines[2].startswith("FAIL winrm    (servers): not checked"), lines
    assert all("-> fix: fix the line above" in line for line in lines[1:]), lines
    assert "3 failed" in err, err
    assert peer.requests("T-CK-PF-REKEYED") == []


def test_preflight_fails_the_clock_of_a_winrm_host_an_hour_behind_with_w32tm(
        kdc_peer: KdcPeer, wsman_kerberos_peer: WsmanPeer, skewed_winrm: dict[str, Any],
        account: tuple[str, Path], tmp_path: Path) -> None:
    peer = wsman_kerberos_peer
    peer.set_host("T-CK-PF-INSTEP", _document("T-CK-PF-INSTEP", "patched"))
    urls = {"A-SKEWED": _skewed_url(skewed_winrm),
            "B-INSTEP": peer.url("T-CK-PF-INSTEP", hostname="localhost")}
    principal, keytab = account
    config = _config(tmp_path, principal, keytab, ca_file=skewed_winrm["ca_bundle"])

    code, lines, err = _preflight(config, _inventory(tmp_path, urls), kdc_peer, tmp_path, sample=2)

    assert code == 1, lines
    assert lines[0].startswith(f"ok   kerberos {principal}: "), lines
    skewed = [line for line in lines if " A-SKEWED: " in line]
    assert len(skewed) == 3, lines
    assert skewed[0].startswith("ok ") and "certificate trusted" in skewed[0], skewed
    clock = skewed[1]
    assert clock.startswith("FAIL winrm    A-SKEWED: clock "), clock
    apart = re.search(r"clock (\d+) s behind this machine's \(HTTP Date\), more than Kerberos "
                      r"allows \(300 s\)", clock)
    assert apart is not None and abs(int(apart.group(1)) - SKEW_SECONDS) <= 60, clock
    assert "-> fix: synchronise the clocks (w32tm /resync on Windows" in clock, clock
    probe = skewed[2]
    assert probe.startswith(f"FAIL winrm    A-SKEWED: the probe as {principal} (kerberos): auth: "
                            f"{urls['A-SKEWED']}: kerberos clock_skew: "), probe
    assert "w32tm /resync" in probe.split("-> fix: ", 1)[1], probe
    instep = [line for line in lines if " B-INSTEP: " in line]
    assert len(instep) == 3 and all(line.startswith("ok ") for line in instep), lines
    assert "2 failed" in err, err
    _said_once(err)


def test_discover_with_kerberos_needs_no_password_and_a_bad_keytab_names_the_dc(
        kdc_peer: KdcPeer, slapd_kerberos: SlapdPeer, account: tuple[str, Path],
        rekeyed: tuple[str, Path], tmp_path: Path) -> None:
    """`discover` binds with the ticket open_connection gets for each DC (no wrapper of its own
    around it): the 20 servers, and a rekeyed keytab as the DC's Kerberos bind failure."""
    principal, keytab = account
    config = _config(tmp_path, principal, keytab, ca_file=slapd_kerberos.ca_file,
                     ldap=slapd_kerberos)
    done = _command(["discover", "--config", str(config), "--secrets", "/dev/null"], kdc_peer,
                    tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted((s["name"] for s in json.loads(done.stdout)), key=str.lower) == AD_NAMES
    bad_principal, bad_keytab = rekeyed
    config = _config(tmp_path, bad_principal, bad_keytab, ca_file=slapd_kerberos.ca_file,
                     ldap=slapd_kerberos)
    done = _command(["discover", "--config", str(config), "--secrets", "/dev/null"], kdc_peer,
                    tmp_path)
    assert done.returncode == 1
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: {slapd_kerberos.kerberos_ldaps_url}: Kerberos bind as "
                           f"{bad_principal} failed: ") and "ktpass" in line, line
    _said_once(done.stderr)
