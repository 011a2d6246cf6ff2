"""End to end (issue 18): `python -m collectors collect` with `[fingerprint] enabled`, against a
real slapd shaped like AD (servers with OWA/ECP virtual-directory names), the WS-Man peer (the
inside view) and the OWA-like HTTPS peer (the outside view), saving into a real store.

The fleet, 2016 CU19 throughout (the March 2021 SU is 15.1.2176.9, the CU's base 15.1.2176.2):

    server      ExSetup (WinRM)   OWA/ECP disclose                    publishes
    OUT18-SU    15.1.2176.9       15.1.2176.2 (the SU run non-elevated)  mail.outside18.example
    OUT18-OK    15.1.2176.9       15.1.2176.9                          mail.outside18.example
    OUT18-VUL   15.1.2176.2       15.1.2176.9 (newer: never "patched")
    OUT18-BROKE 15.1.2176.9       500 on OWA and ECP (broken after its update)
    OUT18-DOWN  15.1.2176.9       nothing listens (a connect failure: data)

    mail.outside18.example   a load balancer alternating 15.1.2176.9 and 15.1.2176.2
    owa.outside18.example    15.1.2375.7, which no known server runs

Names never resolve: `[fingerprint] urls` points every endpoint at the OWA peer on loopback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from compliance.models import EvidenceKind, Flag, Status
from compliance.outside import FindingKind, ViewKind
from store import SnapshotStore
from tests.collectors.documents import dumps, probe_document
from tests.peers.ad_tree import (
    ROLES_2013_MULTI,
    ServerSpec,
    VirtualDirectorySpec,
    ad_ldif,
    encode_version_number,
)
from tests.peers.fixtures import require_slapd
from tests.peers.owa import OwaNode, OwaPeer, start_owa
from tests.peers.slapd import SlapdPeer, closed_port, start_slapd
from tests.peers.wsman import HostBehavior, WsmanPeer

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
PATCHED, VULNERABLE, CU22 = "15.1.2176.9", "15.1.2176.2", "15.1.2375.7"
NAMESPACE, STRAY = "mail.outside18.example", "owa.outside18.example"
SERVERS = {  # name -> (ExSetup over WinRM, what OWA/ECP answer, publishes the namespace)
    "OUT18-SU": (PATCHED, OwaNode(header=VULNERABLE, manifest_version=VULNERABLE), True),
    "OUT18-OK": (PATCHED, OwaNode(), True),
    "OUT18-VUL": (VULNERABLE, OwaNode(), False),
    "OUT18-BROKE": (PATCHED, OwaNode(status=500), False),
    "OUT18-DOWN": (PATCHED, None, False),
}
EXPECTED = {"OUT18-SU": Status.PATCHED, "OUT18-OK": Status.PATCHED,
            "OUT18-VUL": Status.VULNERABLE, "OUT18-BROKE": Status.PATCHED,
            "OUT18-DOWN": Status.PATCHED}


def _fqdn(name: str) -> str:
    return f"{name.lower()}.test.example"


def _spec(name: str, publishes: bool) -> ServerSpec:
    published = tuple(VirtualDirectorySpec(kind, f"https://{NAMESPACE}/{kind}")
                      for kind in ("owa", "ecp")) if publishes else ()
    return ServerSpec(name, "Version 15.1 (Build 32176.2)", encode_version_number(15, 1, 2176),
                      ROLES_2013_MULTI, "HQ", None, (f"ncacn_ip_tcp:{_fqdn(name)}",),
                      computer_dns=_fqdn(name), virtual_directories=published)


@dataclass(frozen=True)
class Fleet:
    slapd: SlapdPeer
    owa: OwaPeer
    urls: str  # the [fingerprint.urls] table's lines
    endpoint_names: tuple[str, ...]  # the OWA peer's names for them


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    require_slapd()
    slapd = start_slapd(tmp_path_factory.mktemp("dc-outside"),
                        ad_ldif([_spec(n, publishes) for n, (_b, _o, publishes) in SERVERS.items()]))
    owa = start_owa(tmp_path_factory.mktemp("owa-outside"))
    try:
        lines, names = [], []
        for name, (_build, node, _publishes) in SERVERS.items():
            peer_name = f"c18-{name.lower()}"
            url = (owa.set_endpoint(peer_name, node) if node is not None
                   else f"https://127.0.0.1:{closed_port()}/")
            lines.append(f'"{_fqdn(name)}" = "{url}"')
            names.append(peer_name)
        lines.append(f'"{NAMESPACE}" = "{owa.set_endpoint("c18-mail", OwaNode(), OwaNode(header=VULNERABLE, manifest_version=VULNERABLE))}"')  # noqa: E501
        lines.append(f'"{STRAY}" = "{owa.set_endpoint("c18-stray", OwaNode(header=CU22, logon_version="15.1.2375", manifest_version=CU22))}"')  # noqa: E501
        yield Fleet(slapd, owa, "\n".join(lines) + "\n", (*names, "c18-mail", "c18-stray"))
    finally:
        owa.stop()
        slapd.stop()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _collect(fleet: Fleet, wsman: WsmanPeer, tmp_path: Path, enabled: bool) -> tuple[str, str]:
    """Run `collect` once; (store URL, stderr)."""
    lines = ["name,winrm_url"]
    for name, (build, _node, _publishes) in SERVERS.items():
        wsman.set_host(name, HostBehavior(stdout=dumps(probe_document(
            name, build, kbs=["KB5000871"] if build == PATCHED else [], collected_at=_now()))))
        lines.append(f"{name},{wsman.url(name)}")
    inventory = tmp_path / "endpoints.csv"
    inventory.write_text("\n".join(lines) + "\n")
    slapd = fleet.slapd
    config = tmp_path / "collection.toml"
    config.write_text(
        f'[ldap]\nservers = ["{slapd.ldaps_url}"]\nbind_user = "{slapd.service_dn}"\n'
        f'ca_file = "{slapd.ca_file}"\nconnect_timeout = 3\ntimeout = 10\n'
        f'[winrm]\nusername = "{wsman.username.replace(chr(92), chr(92) * 2)}"\n'
        f'ca_file = "{wsman.ca_file}"\nconcurrency = 8\ndeadline_seconds = 20\n'
        f"[fingerprint]\nenabled = {'true' if enabled else 'false'}\n"
        f'namespaces = ["{NAMESPACE}", "{STRAY}"]\nca_file = "{fleet.owa.ca_file}"\n'
        "concurrency = 4\ndeadline_seconds = 10\ntimeout_seconds = 5\n"
        f"[fingerprint.urls]\n{fleet.urls}")
    db = f"sqlite:///{tmp_path / 'store.db'}"
    env = {**os.environ, "PROXYLOGON_WINRM_PASSWORD": wsman.password,
           "PROXYLOGON_LDAP_PASSWORD": slapd.service_password,
           "PROXYLOGON_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run([sys.executable, "-m", "collectors", "collect", "--config", str(config),
                           "--inventory", str(inventory), "--db", db, "--secrets", os.devnull],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return db, done.stderr


def test_collect_with_the_outside_view_flags_and_stores_what_it_saw(fleet, wsman_peer, tmp_path):
    db, err = _collect(fleet, wsman_peer, tmp_path, enabled=True)
    assert "fingerprinted 7/7 endpoints, 1 failed" in err
    assert ("outside view: 7 endpoints read (6 answered, 1 failed), 1 host flagged "
            "outside_older_than_inside, 2 namespace findings") in err
    # Only GETs, nothing else, and every endpoint was asked.
    seen = [s for name in fleet.endpoint_names for s in fleet.owa.seen(name)]
    assert {s.method for s in seen} == {"GET"}
    assert {s.endpoint for s in seen} == set(fleet.endpoint_names) - {"c18-out18-down"}
    store = SnapshotStore.open(db)
    try:
        latest = store.latest()
        assert latest is not None and store.verify().ok
        by_name = {a.observation.host.name: a for a in store.assessments(latest.id)}
        stored = store.outside(latest.id)
    finally:
        store.dispose()

    # Nothing seen from outside changed a status; it only added flags, evidence and actions.
    assert {name: a.verdict.status for name, a in by_name.items()} == EXPECTED
    su = by_name["OUT18-SU"].verdict
    assert su.flags.count(Flag.OUTSIDE_OLDER_THAN_INSIDE) == 1
    assert su.action.startswith(f"OWA/ECP on OUT18-SU serve {VULNERABLE}, older than ExSetup's "
                                f"{PATCHED}: the Security Update was probably installed without "
                                "elevation; rerun it from an elevated command prompt")
    assert "but OWA/ECP disclose 15.1.2176.2, older than 15.1.2176.9 (outside view)" in su.reason
    outside = [e for e in su.evidence if e.kind == EvidenceKind.OUTSIDE_VIEW]
    assert any(e.value == f"OUT18-SU: {VULNERABLE} (full build): older than ExSetup's {PATCHED}"
               for e in outside), outside
    assert all("x_owa_version" in e.source or "exporttool_manifest" in e.source
               or "logon_path" in e.source for e in outside)
    for name in ("OUT18-OK", "OUT18-VUL", "OUT18-BROKE", "OUT18-DOWN"):
        assert Flag.OUTSIDE_OLDER_THAN_INSIDE not in by_name[name].verdict.flags, name
    vul = by_name["OUT18-VUL"].verdict
    assert any("newer than ExSetup's 15.1.2176.2" in e.value for e in vul.evidence)
    assert any("disclosed no build" in e.value for e in by_name["OUT18-BROKE"].verdict.evidence)
    assert any("connect" in e.value for e in by_name["OUT18-DOWN"].verdict.evidence)

    # What was seen, stored with the snapshot for an auditor (and the dashboard) to follow.
    assert stored is not None
    endpoints = {r.name: r for r in stored.endpoints}
    assert set(endpoints) == {*SERVERS, NAMESPACE, STRAY}
    assert endpoints[NAMESPACE].kind is ViewKind.NAMESPACE
    assert {(s.source, str(s.build), s.certainty) for s in endpoints["OUT18-SU"].disclosures} == {
        ("x_owa_version", VULNERABLE, "full_build"), ("logon_path", "15.1.2176", "cu_level"),
        ("exporttool_manifest", VULNERABLE, "full_build")}
    assert endpoints["OUT18-SU"].tls is not None and endpoints["OUT18-SU"].tls.verified
    broke = endpoints["OUT18-BROKE"]
    assert broke.owa is not None and broke.ecp is not None
    assert (broke.owa.status, broke.ecp.status) == (500, 500) and broke.owa.seconds >= 0
    down = endpoints["OUT18-DOWN"]
    assert down.failure is not None and down.failure.reason == "connect" and down.tls is None
    assert {str(b) for s in endpoints[NAMESPACE].disclosures if (b := s.build)} >= {
        PATCHED, VULNERABLE}
    findings = {f.kind: f for f in stored.namespaces}
    assert set(findings) == {FindingKind.NAMESPACE_SERVES_UNPATCHED, FindingKind.NOT_IN_INVENTORY}
    unpatched = findings[FindingKind.NAMESPACE_SERVES_UNPATCHED]
    assert unpatched.namespace == NAMESPACE and [str(b) for b in unpatched.builds] == [VULNERABLE]
    assert unpatched.hosts == ("OUT18-OK", "OUT18-SU")  # from AD's virtual directories
    assert unpatched.action.startswith(f"A node behind {NAMESPACE} is unpatched")
    stray = findings[FindingKind.NOT_IN_INVENTORY]
    assert stray.namespace == STRAY and [str(b) for b in stray.builds] == [CU22, "15.1.2375"]


def test_fingerprinting_disabled_sends_nothing_and_changes_nothing(fleet, wsman_peer, tmp_path):
    asked = {name: len(fleet.owa.seen(name)) for name in fleet.endpoint_names}
    db, err = _collect(fleet, wsman_peer, tmp_path, enabled=False)
    assert {name: len(fleet.owa.seen(name)) for name in fleet.endpoint_names} == asked
    assert "fingerprinted" not in err and "outside view" not in err
    store = SnapshotStore.open(db)
    try:
        latest = store.latest()
        assert latest is not None and store.verify().ok
        assert store.outside(latest.id) is None
        verdicts = {v.host: v for v in store.verdicts(latest.id)}
    finally:
        store.dispose()
    assert {name: v.status for name, v in verdicts.items()} == EXPECTED
    assert not any(Flag.OUTSIDE_OLDER_THAN_INSIDE in v.flags for v in verdicts.values())
    assert not any(e.kind == EvidenceKind.OUTSIDE_VIEW for v in verdicts.values()
                   for e in v.evidence)


def test_an_unusable_fingerprint_ca_is_a_configuration_error_before_anything_runs(tmp_path):
    (tmp_path / "bad.pem").write_text("not a certificate\n")
    (tmp_path / "hosts.csv").write_text("name,winrm_url\nOUT18-CFG,https://127.0.0.1:1/wsman\n")
    config = tmp_path / "collection.toml"
    config.write_text('[winrm]\nusername = "svc"\n[fingerprint]\nenabled = true\n'
                      'ca_file = "bad.pem"\n')
    env = {**os.environ, "PROXYLOGON_WINRM_PASSWORD": "x",
           "PROXYLOGON_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run([sys.executable, "-m", "collectors", "collect", "--config", str(config),
                           "--inventory", str(tmp_path / "hosts.csv"),
                           "--db", f"sqlite:///{tmp_path / 'store.db'}", "--secrets", os.devnull],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("configuration error: [fingerprint] ca_file ")
    assert "cannot be used" in done.stderr and done.stderr.count("\n") == 1
