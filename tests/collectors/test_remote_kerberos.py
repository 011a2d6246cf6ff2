"""WinRM collection with Kerberos, end to end: the real probe path (``probe_host``/``probe_all``),
pywinrm's Kerberos transport (pykerberos), the WS-Man peer accepting tickets from its keytab with NTLM
disabled, and a real MIT KDC (tests/peers/kdc.py).

The service account's ticket is had as a collection has it (``collectors.kerberos.acquire`` from its
keytab into a ``MEMORY:`` cache, ``activate`` for the run); the KDC's krb5.conf is set for the test
with ``monkeypatch.setenv``. Hosts are reached as ``localhost`` (the SPN is ``HTTP/localhost``) unless
a test is about the SPN.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from winrm import transport as winrm_transport

from collectors.kerberos import KerberosConfig, acquire, activate, classify
from collectors.remote import Target, WinrmConfig, probe_all, probe_host, refusal
from compliance.models import Host, Observation
from tests.collectors.documents import dumps, probe_document
from tests.peers.kdc import KdcPeer
from tests.peers.wsman import HostBehavior, WsmanPeer, start_wsman
from tests.peers.wsman_fixtures import ensure_principal, kerberos_peer_process

pytestmark = pytest.mark.integration

pytest.importorskip("gssapi", reason="gssapi not installed (pip install -r requirements-kerberos.txt)")
pytest.importorskip("kerberos", reason="pykerberos not installed (pip install -r requirements-kerberos.txt)")

BUILD = "15.1.2176.9"


def _stdout(name: str) -> str:
    return dumps(probe_document(name, BUILD, collected_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")))


def _config(principal: str, ca_file: Path | str, **overrides: Any) -> WinrmConfig:
    settings: dict[str, Any] = {"username": principal, "transport": "kerberos", "ca_file": str(ca_file),
                                "deadline_seconds": 10, "read_timeout_seconds": 4,
                                "operation_timeout_seconds": 2, "retries": 0}
    settings.update(overrides)
    return WinrmConfig(**settings)


def _probe(url: str, config: WinrmConfig, name: str, password: str = "") -> Observation:
    return probe_host(Target(Host(name), url), config, password)


@pytest.fixture
def krb5_env(kdc_peer: KdcPeer, monkeypatch: pytest.MonkeyPatch) -> KdcPeer:
    for key, value in kdc_peer.env().items():
        monkeypatch.setenv(key, value)
    return kdc_peer


@pytest.fixture
def principal(krb5_env: KdcPeer, tmp_path: Path) -> Iterator[str]:
    """The service account, its ticket acquired and activated as a collection run does."""
    name = ensure_principal(krb5_env, "t-collector-svc")
    keytab = krb5_env.keytab(name, tmp_path / "svc.keytab")
    with activate(acquire(KerberosConfig(principal=name, keytab=str(keytab)))):
        yield name


@pytest.fixture
def no_ticket(krb5_env: KdcPeer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A default credential cache that holds nothing (a collector nobody ran kinit for)."""
    monkeypatch.setenv("KRB5CCNAME", f"FILE:{tmp_path / 'empty.ccache'}")
    return krb5_env.principal("t-collector-svc")


# ---- collection works


@pytest.mark.parametrize(("scheme", "extra"), [
    pytest.param("http", {"allow_http": True}, id="http-message-encryption"),
    pytest.param("https", {}, id="https"),
])
def test_kerberos_runs_the_probe(wsman_kerberos_peer: WsmanPeer, principal: str, scheme: str,
                                 extra: dict[str, Any]) -> None:
    name = f"RK-{scheme}"
    wsman_kerberos_peer.set_host(name, HostBehavior(stdout=_stdout(name)))
    obs = _probe(wsman_kerberos_peer.url(name, scheme=scheme, hostname="localhost"),
                 _config(principal, wsman_kerberos_peer.ca_file, **extra), name)
    assert obs.failure is None, obs.failure
    assert obs.exsetup_version == BUILD
    assert wsman_kerberos_peer.requests(name) == ["Create", "Command", "Send", "Receive", "Delete"]


def test_kerberos_probes_several_hosts_at_once(wsman_kerberos_peer: WsmanPeer, principal: str) -> None:
    names = [f"RK-MANY-{i}" for i in range(4)]
    for name in names:
        wsman_kerberos_peer.set_host(name, HostBehavior(stdout=_stdout(name), runtime=0.3))
    targets = [Target(Host(name), wsman_kerberos_peer.url(name, scheme="http" if i % 2 else "https",
                                                          hostname="localhost"))
               for i, name in enumerate(names)]
    results = probe_all(targets, _config(principal, wsman_kerberos_peer.ca_file, allow_http=True, concurrency=4),
                        "")
    assert [obs.failure for obs in results] == [None] * 4
    assert [obs.host.name for obs in results] == names


def test_an_spn_hostname_override_finds_the_spn_for_an_ip_url(wsman_kerberos_peer: WsmanPeer,
                                                               principal: str) -> None:
    name = "RK-OVERRIDE"
    wsman_kerberos_peer.set_host(name, HostBehavior(stdout=_stdout(name)))
    obs = _probe(wsman_kerberos_peer.url(name), _config(principal, wsman_kerberos_peer.ca_file,
                                                        spn_hostname="localhost"), name)
    assert obs.failure is None, obs.failure


def test_a_host_120_s_behind_is_within_kerberos_tolerance(kdc_peer: KdcPeer, wsman_kerberos_peer: WsmanPeer,
                                                          principal: str, tmp_path: Path) -> None:
    assert wsman_kerberos_peer.keytab is not None
    with kerberos_peer_process(kdc_peer, wsman_kerberos_peer.keytab, tmp_path / "peer",
                               {"EX": {"stdout": _stdout("EX")}}, clock_offset=-120) as ready:
        obs = _probe(f"https://localhost:{ready['https_port']}/wsman/EX", _config(principal, ready["ca_file"]), "EX")
    assert obs.failure is None, obs.failure


# ---- each failure is auth, with its Kerberos reason and fix


def test_an_ip_url_asks_for_an_spn_the_kdc_does_not_have(wsman_kerberos_peer: WsmanPeer, principal: str) -> None:
    name = "RK-NO-SPN"
    wsman_kerberos_peer.set_host(name, HostBehavior(stdout=_stdout(name)))
    url = wsman_kerberos_peer.url(name)  # 127.0.0.1: the client asks for HTTP/127.0.0.1
    obs = _probe(url, _config(principal, wsman_kerberos_peer.ca_file), name)
    assert obs.failure is not None
    assert obs.failure.reason == "auth"
    assert obs.failure.detail.startswith(f"{url}: kerberos spn_not_found: ")
    assert "HTTP/127.0.0.1" in obs.failure.detail
    assert "setspn" in obs.failure.hint
    assert wsman_kerberos_peer.requests(name) == []  # nothing was sent


def test_an_empty_credential_cache_is_no_ticket(wsman_kerberos_peer: WsmanPeer, no_ticket: str) -> None:
    name = "RK-NO-TICKET"
    wsman_kerberos_peer.set_host(name, HostBehavior(stdout=_stdout(name)))
    obs = _probe(wsman_kerberos_peer.url(name, scheme="http", hostname="localhost"),
                 _config(no_ticket, wsman_kerberos_peer.ca_file, allow_http=True), name)
    assert obs.failure is not None and obs.failure.reason == "auth", obs.failure
    assert "kerberos no_ticket: " in obs.failure.detail
    assert "kinit" in obs.failure.hint
    assert wsman_kerberos_peer.requests(name) == []


def test_a_changed_service_key_is_the_servers_key_and_never_falls_back_to_ntlm(kdc_peer: KdcPeer, principal: str,
                                                                                tmp_path: Path) -> None:
    # The server's keytab predates a key change at the KDC. Its peer accepts NTLM too, and the
    # fallback is on: a ticket the server refused is still never retried with NTLM.
    service = ensure_principal(kdc_peer, "HTTP/t-rk-wrongkey.localhost")
    keytab = kdc_peer.keytab(service, tmp_path / "old.keytab")
    kdc_peer.change_key(service)
    with start_wsman(tmp_path / "peer", keytab=keytab) as peer:
        peer.set_host("EX", HostBehavior(stdout=_stdout("EX")))
        obs = _probe(peer.url("EX", hostname="localhost"),
                     _config(principal, peer.ca_file, spn_hostname="t-rk-wrongkey.localhost", ntlm_fallback=True),
                     "EX", password=peer.password)
        sent, refused = peer.requests("EX"), peer.auth_failures()
    assert obs.failure is not None and obs.failure.reason == "auth", obs.failure
    # The server's key, not the collector's keytab (review finding: the fix said "ktpass",
    # which would reset the service account's password for nothing).
    assert "kerberos service_key: " in obs.failure.detail
    assert "KRB_AP_ERR_BADKEYVER" in obs.failure.detail
    assert "ktpass" not in obs.failure.hint and "setspn -Q" in obs.failure.hint
    assert sent == []
    assert refused and all("kvno" in why for why in refused)


def test_a_host_3600_s_behind_is_clock_skew_naming_both_times(kdc_peer: KdcPeer, wsman_kerberos_peer: WsmanPeer,
                                                              principal: str, tmp_path: Path) -> None:
    assert wsman_kerberos_peer.keytab is not None
    with kerberos_peer_process(kdc_peer, wsman_kerberos_peer.keytab, tmp_path / "peer",
                               {"EX": {"stdout": _stdout("EX")}}, clock_offset=-3600) as ready:
        obs = _probe(f"http://localhost:{ready['http_port']}/wsman/EX",
                     _config(principal, ready["ca_file"], allow_http=True), "EX")
    assert obs.failure is not None and obs.failure.reason == "auth", obs.failure
    detail = obs.failure.detail
    assert "kerberos clock_skew: " in detail
    apart = re.search(r"(\d+) s behind", detail)
    assert apart is not None and abs(int(apart.group(1)) - 3600) <= 60, detail
    mine = re.search(r"this machine's (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC", detail)
    theirs = re.search(r"the server's clock says (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC", detail)
    assert mine and theirs, detail
    assert "w32tm" in obs.failure.hint


def test_ntlm_is_refused_by_a_host_that_disabled_it(wsman_kerberos_peer: WsmanPeer) -> None:
    name = "RK-NTLM"
    wsman_kerberos_peer.set_host(name, HostBehavior(stdout=_stdout(name)))
    obs = _probe(wsman_kerberos_peer.url(name), WinrmConfig(
        username=wsman_kerberos_peer.username, ca_file=str(wsman_kerberos_peer.ca_file), deadline_seconds=10,
        read_timeout_seconds=4, operation_timeout_seconds=2, retries=0), name, wsman_kerberos_peer.password)
    assert obs.failure is not None and obs.failure.reason == "auth", obs.failure
    assert "NTLM refused by the server" in obs.failure.detail
    assert wsman_kerberos_peer.requests(name) == []


# ---- no NTLM unless configured


def test_kerberos_without_a_ticket_never_tries_ntlm(wsman_peer: WsmanPeer, no_ticket: str) -> None:
    # The NTLM-only peer would let this account in with NTLM: nothing reaches it.
    name = "RK-NO-FALLBACK"
    wsman_peer.set_host(name, HostBehavior(stdout=_stdout(name)))
    obs = _probe(wsman_peer.url(name, hostname="localhost"),
                 _config(wsman_peer.username, wsman_peer.ca_file), name, password=wsman_peer.password)
    assert obs.failure is not None and obs.failure.reason == "auth", obs.failure
    assert "kerberos no_ticket" in obs.failure.detail
    assert wsman_peer.requests(name) == []


def test_ntlm_fallback_when_configured_and_there_is_no_ticket(wsman_peer: WsmanPeer, no_ticket: str,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    name = "RK-FALLBACK"
    wsman_peer.set_host(name, HostBehavior(stdout=_stdout(name)))
    with caplog.at_level(logging.WARNING, logger="collectors.remote"):
        obs = _probe(wsman_peer.url(name, hostname="localhost"),
                     _config(wsman_peer.username, wsman_peer.ca_file, ntlm_fallback=True), name,
                     password=wsman_peer.password)
    assert obs.failure is None, obs.failure
    assert wsman_peer.requests(name)[0] == "Create"
    assert any("no_ticket" in record.message and "trying NTLM" in record.message for record in caplog.records)


def test_without_pykerberos_kerberos_is_auth_naming_the_requirements(wsman_kerberos_peer: WsmanPeer,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(winrm_transport, "HAVE_KERBEROS", False)  # as pywinrm finds it without pykerberos
    name = "RK-NO-PYKERBEROS"
    wsman_kerberos_peer.set_host(name, HostBehavior(stdout=_stdout(name)))
    obs = _probe(wsman_kerberos_peer.url(name, hostname="localhost"),
                 _config("svc@PROBE.TEST", wsman_kerberos_peer.ca_file), name)
    assert obs.failure is not None and obs.failure.reason == "auth", obs.failure
    assert "requirements-kerberos.txt" in obs.failure.detail and "requirements-kerberos.txt" in obs.failure.hint
    assert wsman_kerberos_peer.requests(name) == []


# ---- reading a 401 (refusal): the clock's boundary


NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def _reason(text: str) -> str:
    return classify(text, "svc@PROBE.TEST").reason


def test_a_401_dated_300_s_behind_is_not_clock_skew() -> None:
    text = refusal(format_datetime(NOW - timedelta(seconds=300), usegmt=True), "Negotiate", NOW)
    assert _reason(text) == "refused", text


def test_a_401_dated_301_s_behind_is_clock_skew() -> None:
    text = refusal(format_datetime(NOW - timedelta(seconds=301), usegmt=True), "Negotiate", NOW)
    assert _reason(text) == "clock_skew", text
    assert "2026-11-25 11:54:59 UTC" in text and "2026-11-25 12:00:00 UTC" in text and "301 s behind" in text


def test_a_401_dated_301_s_ahead_is_clock_skew() -> None:
    text = refusal(format_datetime(NOW + timedelta(seconds=301), usegmt=True), None, NOW)
    assert _reason(text) == "clock_skew" and "301 s ahead" in text, text


def test_a_401_without_date_or_token_is_refused() -> None:
    assert _reason(refusal(None, None, NOW)) == "refused"
    assert _reason(refusal("not a date", "Negotiate bm90IGEgdG9rZW4=", NOW)) == "refused"


def test_the_collector_s_clock_is_what_is_compared() -> None:
    # The same Date is fine now and skewed an hour later: nothing but the two clocks decides.
    date = format_datetime(datetime.now(UTC), usegmt=True)
    assert _reason(refusal(date, None, datetime.now(UTC))) == "refused"
    assert _reason(refusal(date, None, datetime.now(UTC) + timedelta(hours=1))) == "clock_skew"
    assert time.time() > 0


def test_a_server_that_does_not_prove_its_identity_is_refused(kdc_peer: KdcPeer, principal: str,
                                                              tmp_path: Path) -> None:
    # Mutual authentication is required: an answer without the AP-REP is not trusted, even a 200.
    service = ensure_principal(kdc_peer, "HTTP/t-rk-nomutual.localhost")
    keytab = kdc_peer.keytab(service, tmp_path / "http.keytab")
    with start_wsman(tmp_path / "peer", keytab=keytab, allow_ntlm=False) as peer:
        peer.mutual_token = False
        peer.set_host("EX", HostBehavior(stdout=_stdout("EX")))
        obs = _probe(peer.url("EX", hostname="localhost"),
                     _config(principal, peer.ca_file, spn_hostname="t-rk-nomutual.localhost"), "EX")
    assert obs.failure is not None and obs.failure.reason == "auth", obs.failure
    assert "kerberos refused: " in obs.failure.detail
    assert "mutual-authentication" in obs.failure.detail
