"""One fleet from many runs, with the real parts: `python -m collectors collect` discovering in a
real slapd shaped like AD and probing the WS-Man peer, `collect --inventory` of two hosts,
`import` of hand-run documents, and two collectors at once on one real PostgreSQL store."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from compliance.catalog import load_catalog
from store import SnapshotStore
from store.history import diff
from tests.collectors.documents import dumps, probe_document
from tests.peers.ad_tree import ROLES_2013_MULTI, ServerSpec, ad_ldif, encode_version_number
from tests.peers.fixtures import require_slapd
from tests.peers.slapd import SlapdPeer, start_slapd
from tests.peers.wsman import HostBehavior, WsmanPeer

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
PATCHED, VULNERABLE = "15.1.2176.9", "15.1.2176.2"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _spec(name: str) -> ServerSpec:
    return ServerSpec(name, "Version 15.1 (Build 32176.2)", encode_version_number(15, 1, 2176),
                      ROLES_2013_MULTI, "HQ", None, (f"ncacn_ip_tcp:{name.lower()}.test.example",),
                      computer_dns=f"{name.lower()}.test.example")


def _serve(peer: WsmanPeer, hosts: dict[str, str], latency: float = 0.0) -> None:
    for name, build in hosts.items():
        peer.set_host(name, HostBehavior(stdout=dumps(probe_document(
            name, build, collected_at=_now())), latency=latency))


def _inventory(path: Path, peer: WsmanPeer, names) -> Path:
    path.write_text("name,winrm_url\n" + "".join(f"{n},{peer.url(n)}\n" for n in names))
    return path


def _config(path: Path, peer: WsmanPeer, slapd: SlapdPeer | None = None) -> Path:
    text = ""
    if slapd is not None:
        text += (f'[ldap]\nservers = ["{slapd.ldaps_url}"]\nbind_user = "{slapd.service_dn}"\n'
                 f'ca_file = "{slapd.ca_file}"\nconnect_timeout = 3\ntimeout = 10\n')
    text += ("[winrm]\n" f'username = "{peer.username.replace(chr(92), chr(92) * 2)}"\n'
             f'ca_file = "{peer.ca_file}"\nconcurrency = 4\ndeadline_seconds = 20\n')
    path.write_text(text)
    return path


def _collect(peer: WsmanPeer, tmp_path: Path, db: str, config: Path, inventory: Path | None,
             data_dir: str = "data", slapd: SlapdPeer | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, "PROXYLOGON_WINRM_PASSWORD": peer.password,
           "PROXYLOGON_DATA_DIR": str(tmp_path / data_dir)}
    if slapd is not None:
        env["PROXYLOGON_LDAP_PASSWORD"] = slapd.service_password
    args = ["collect", "--config", str(config), "--db", db, "--secrets",
            os.devnull]
    if inventory is not None:
        args += ["--inventory", str(inventory)]
    return subprocess.Popen([sys.executable, "-m", "collectors", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen[str]) -> str:
    out, err = process.communicate(timeout=180)
    assert process.returncode == 0, err
    return out + err


def _fleet(db: str) -> list[tuple[int, dict[str, tuple[str, int | None]]]]:
    """Per snapshot, oldest first: host -> (status, observed_in)."""
    store = SnapshotStore.open(db)
    try:
        assert store.verify().ok
        return [(info.id, {a.observation.host.name: (a.verdict.status.value, a.observed_in)
                           for a in store.assessments(info.id)})
                for info in store.history()]
    finally:
        store.dispose()


@pytest.fixture
def directory(tmp_path):
    """Two slapd peers of the same forest: all four servers, then EX-04 decommissioned."""
    require_slapd()
    names = ["EX-01", "EX-02", "EX-03", "EX-04"]
    peers = [start_slapd(tmp_path / "dc-before", ad_ldif([_spec(n) for n in names])),
             start_slapd(tmp_path / "dc-after", ad_ldif([_spec(n) for n in names[:3]]))]
    try:
        yield names, peers
    finally:
        for peer in peers:
            peer.stop()


def test_partial_runs_never_shrink_the_fleet_and_a_full_discovery_removes(wsman_peer, tmp_path,
                                                                          directory):
    names, (before, after) = directory
    db = f"sqlite:///{tmp_path / 'store.db'}"
    _serve(wsman_peer, {"EX-01": PATCHED, "EX-02": VULNERABLE, "EX-03": VULNERABLE,
                        "EX-04": VULNERABLE, "EDGE-01": PATCHED, "EDGE-02": VULNERABLE})
    # 1. A full collection: AD lists four servers; the file only gives their WinRM endpoints.
    endpoints = _inventory(tmp_path / "endpoints.csv", wsman_peer, names)
    _finish(_collect(wsman_peer, tmp_path, db, _config(tmp_path / "full.toml", wsman_peer,
                                                       before), endpoints, slapd=before))
    # 2. `collect --inventory` of the two Edge servers (no AD): the four stay, with their
    # observation from run 1.
    edges = _inventory(tmp_path / "edges.csv", wsman_peer, ["EDGE-01", "EDGE-02"])
    summary = _finish(_collect(wsman_peer, tmp_path, db,
                               _config(tmp_path / "edge.toml", wsman_peer), edges))
    assert "2 hosts observed by this run, 4 carried forward; fleet 6 hosts" in summary
    # 3. A full discovery of the same forest no longer finds EX-04: it leaves the fleet; the Edge
    # servers, members through the inventory file, stay. (A file that still listed EX-04 would
    # keep it: a server only the file lists is a member through the file.)
    endpoints = _inventory(tmp_path / "endpoints.csv", wsman_peer, names[:3])
    _finish(_collect(wsman_peer, tmp_path, db, _config(tmp_path / "after.toml", wsman_peer,
                                                       after), endpoints, slapd=after))
    (first, one), (second, two), (third, three) = _fleet(db)
    assert set(one) == set(names)
    assert set(two) == {*names, "EDGE-01", "EDGE-02"}
    assert two["EX-02"] == ("vulnerable", first) and two["EDGE-02"] == ("vulnerable", None)
    assert set(three) == {"EX-01", "EX-02", "EX-03", "EDGE-01", "EDGE-02"}
    assert three["EDGE-01"] == ("patched", second) and three["EX-03"] == ("vulnerable", None)
    store = SnapshotStore.open(db)
    try:
        catalog = load_catalog()
        changes = diff([a.verdict for a in store.fleet(second, catalog)],
                       [a.verdict for a in store.fleet(third, catalog)])
        assert [c.host for c in changes.removed_hosts] == ["EX-04"]
        scopes = {a.observation.host.name: a.scopes for a in store.assessments(third)}
        assert scopes["EDGE-01"] == ("inventory",)
        assert scopes["EX-01"] == (f"ad:{before.exchange_base.lower()}",)
    finally:
        store.dispose()


def test_an_import_into_an_empty_store_then_a_collection(wsman_peer, tmp_path):
    db = f"sqlite:///{tmp_path / 'store.db'}"
    document = tmp_path / "probe-EXHAND01.json"
    document.write_text(dumps(probe_document("EXHAND01", VULNERABLE, collected_at=_now())))
    env = {**os.environ, "PROXYLOGON_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run([sys.executable, "-m", "collectors", "import", str(document), "--db", db,
                           "--secrets", os.devnull], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    _serve(wsman_peer, {"FL-01": PATCHED})
    hosts = _inventory(tmp_path / "hosts.csv", wsman_peer, ["FL-01"])
    _finish(_collect(wsman_peer, tmp_path, db, _config(tmp_path / "c.toml", wsman_peer), hosts))
    (imported, one), (_collected, two) = _fleet(db)
    assert one == {"EXHAND01": ("vulnerable", None)}
    assert two == {"EXHAND01": ("vulnerable", imported), "FL-01": ("patched", None)}


def test_two_collectors_at_once_on_one_postgresql_store(wsman_peer, tmp_path, postgres_url):
    """Two sites, each behind its own firewall with its own collector (own data directory and
    lock), writing to the shared store at the same time."""
    site_a = {f"SA-{i:02d}": PATCHED if i % 2 else VULNERABLE for i in range(8)}
    site_b = {f"SB-{i:02d}": VULNERABLE if i % 3 else PATCHED for i in range(8)}
    _serve(wsman_peer, {**site_a, **site_b}, latency=0.4)  # each run takes a second or two
    config = _config(tmp_path / "c.toml", wsman_peer)
    inventories = [_inventory(tmp_path / "a.csv", wsman_peer, site_a),
                   _inventory(tmp_path / "b.csv", wsman_peer, site_b)]
    SnapshotStore.open(postgres_url).dispose()  # the schema in place before the race
    everyone = {*site_a, *site_b}
    rounds = []
    for _round in range(2):
        started = time.monotonic()
        processes = [_collect(wsman_peer, tmp_path, postgres_url, config, inventory,
                              data_dir=f"data-{n}")
                     for n, inventory in enumerate(inventories)]
        for process in processes:
            _finish(process)
        rounds.append(time.monotonic() - started)
    snapshots = _fleet(postgres_url)  # also: the chain verifies
    assert len(snapshots) == 4
    # The first snapshot saved can only know its own site; from then on every snapshot is the
    # whole fleet, whichever collector saved it, and no snapshot ever loses a host.
    known: set[str] = set()
    for _id, hosts in snapshots:
        assert known <= set(hosts)
        known |= set(hosts)
    assert set(snapshots[1][1]) == everyone
    for snapshot_id, hosts in snapshots[2:]:
        assert set(hosts) == everyone, snapshot_id
        fresh = {name for name, (_status, observed_in) in hosts.items() if observed_in is None}
        assert fresh in (set(site_a), set(site_b))
        carried = everyone - fresh
        # The other site's hosts come from the latest snapshot that observed them.
        sources = {hosts[name][1] for name in carried}
        assert len(sources) == 1 and sources.pop() < snapshot_id
        statuses = {name: status for name, (status, _) in hosts.items()}
        expected = {**{n: "patched" if b == PATCHED else "vulnerable" for n, b in site_a.items()},
                    **{n: "patched" if b == PATCHED else "vulnerable" for n, b in site_b.items()}}
        assert statuses == expected


def _import(tmp_path: Path, db: str, *documents: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PROXYLOGON_DATA_DIR": str(tmp_path / "data")}
    return subprocess.run([sys.executable, "-m", "collectors", "import", *map(str, documents),
                           "--db", db, "--secrets", os.devnull], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60)


def _document(path: Path, name: str, build: str, collected_at: str) -> Path:
    path.write_text(dumps(probe_document(name, build, collected_at=collected_at)))
    return path


def test_a_late_old_document_or_a_future_dated_one_never_makes_a_host_patched(wsman_peer,
                                                                             tmp_path):
    db = f"sqlite:///{tmp_path / 'store.db'}"
    _serve(wsman_peer, {"LATE-01": VULNERABLE})
    hosts = _inventory(tmp_path / "hosts.csv", wsman_peer, ["LATE-01"])
    _finish(_collect(wsman_peer, tmp_path, db, _config(tmp_path / "c.toml", wsman_peer), hosts))
    # Two days old, run by hand before the server was restored from an old image: "patched".
    old = _document(tmp_path / "old.json", "late-01", PATCHED, "2026-01-01T00:00:00Z")
    done = _import(tmp_path, db, old)
    assert done.returncode == 0, done.stderr
    assert "0 hosts observed by this run (1 not used: the fleet holds a newer reading" in \
        done.stderr
    # Dated three days ahead (a server with a fast clock): refused, named, never stored.
    ahead = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
    future = _document(tmp_path / "future.json", "LATE-02", PATCHED,
                       ahead.strftime("%Y-%m-%dT%H:%M:%SZ"))
    refused = _import(tmp_path, db, future)
    assert refused.returncode == 1 and "future.json" in refused.stderr
    assert "later than now" in refused.stderr
    snapshots = _fleet(db)
    assert snapshots[-1][1] == {"LATE-01": ("vulnerable", snapshots[0][0])}


def test_retire_takes_hosts_out_by_hand_and_says_who_and_why(tmp_path):
    from collectors.demo import seed_demo

    db = f"sqlite:///{tmp_path / 'store.db'}"
    store = SnapshotStore.open(db)
    seed_demo(store, load_catalog(), datetime.now(UTC))
    store.dispose()
    typo = _document(tmp_path / "typo.json", "EXHNAD01", PATCHED, _now())
    done = _import(tmp_path, db, typo)
    assert done.returncode == 0 and "68 hosts of the fictional demo fleet" in done.stderr

    def retire(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "store", "--db", db, "--secrets",
                               os.devnull, "retire", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)

    unknown = retire("EXNOWHERE", "--reason", "decommissioned")
    assert unknown.returncode == 2 and "not in the fleet" in unknown.stderr
    assert retire("EXHNAD01", "--reason", "   ").returncode == 2
    assert retire("exhnad01", "--reason", "typo of EXHAND01").returncode == 0
    assert retire("--demo", "--reason", "real data from now on").returncode == 0
    store = SnapshotStore.open(db)
    try:
        history = store.history()
        assert [s.source for s in history[-2:]] == ["retire", "retire"]
        assert history[-2].host_count == 68 and history[-1].host_count == 0
        assert "typo of EXHAND01" in history[-2].label and store.demo_hosts(history[-1].id) == 0
        audit = [(e["action"], e["detail"]) for e in store.audit_log()[:2]]
        assert audit[1][0] == "retire" and "EXHNAD01; reason: typo of EXHAND01" in audit[1][1]
        changes = diff([a.verdict for a in store.fleet(history[-3].id, load_catalog())],
                       [a.verdict for a in store.fleet(history[-2].id, load_catalog())])
        assert [c.host for c in changes.removed_hosts] == ["EXHNAD01"]
        assert store.verify().ok
    finally:
        store.dispose()


def test_a_discovery_that_lists_no_server_removes_nobody(wsman_peer, tmp_path):
    require_slapd()
    db = f"sqlite:///{tmp_path / 'store.db'}"
    full = start_slapd(tmp_path / "dc-full", ad_ldif([_spec("NS-01")]))
    empty = start_slapd(tmp_path / "dc-empty", ad_ldif([]))
    try:
        _serve(wsman_peer, {"NS-01": VULNERABLE, "NS-EDGE": PATCHED})
        endpoints = _inventory(tmp_path / "endpoints.csv", wsman_peer, ["NS-01"])
        _finish(_collect(wsman_peer, tmp_path, db, _config(tmp_path / "a.toml", wsman_peer, full),
                         endpoints, slapd=full))
        # The account lost its read access (or a filter went wrong): AD answers with nothing.
        edge = _inventory(tmp_path / "edge.csv", wsman_peer, ["NS-EDGE"])
        said = _finish(_collect(wsman_peer, tmp_path, db,
                                _config(tmp_path / "b.toml", wsman_peer, empty), edge,
                                slapd=empty))
        assert "listed no Exchange server" in said and "nothing is removed" in said
        assert set(_fleet(db)[-1][1]) == {"NS-01", "NS-EDGE"}
    finally:
        full.stop()
        empty.stop()


def test_a_host_the_collector_cannot_reach_keeps_its_hand_run_reading(wsman_peer, tmp_path):
    """The README's case for the hand-run probe: the nightly collection still fails on the
    server, and that must not wipe the imported reading while it is fresh."""
    from tests.peers.slapd import closed_port

    db = f"sqlite:///{tmp_path / 'store.db'}"
    done = _import(tmp_path, db, _document(tmp_path / "probe-EXHAND01.json", "EXHAND01",
                                           VULNERABLE, _now()))
    assert done.returncode == 0, done.stderr
    _serve(wsman_peer, {"REACH-01": PATCHED})
    hosts = tmp_path / "hosts.csv"
    hosts.write_text("name,winrm_url\n"
                     f"REACH-01,{wsman_peer.url('REACH-01')}\n"
                     f"EXHAND01,https://127.0.0.1:{closed_port()}/wsman\n")
    said = _finish(_collect(wsman_peer, tmp_path, db, _config(tmp_path / "c.toml", wsman_peer),
                            hosts))
    assert "1 hosts observed by this run (1 not used" in said
    (imported, _one), (collected, two) = _fleet(db)
    assert two == {"EXHAND01": ("vulnerable", imported), "REACH-01": ("patched", None)}
    store = SnapshotStore.open(db)
    try:
        exhand = store.assessment(collected, "EXHAND01")
        assert exhand is not None
        failed = [e for e in exhand.verdict.evidence if e.kind == "collection_failed"]
        assert failed and failed[0].value.startswith("connect:")
        assert store.info(collected).coverage == (2, 2)
    finally:
        store.dispose()
