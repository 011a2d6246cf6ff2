"""End to end: `python -m collectors collect` with the real pywinrm against the WS-Man peer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from collectors.job import run_lock
from collectors.probe import compact, probe_script
from compliance.catalog import load_catalog
from compliance.evaluate import assess
from compliance.models import Host, Observation, Status
from store import SnapshotStore
from tests.collectors.documents import REWRITE_RULES, dumps, probe_document
from tests.peers.slapd import closed_port
from tests.peers.wsman import HostBehavior, WsmanPeer

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _doc(name: str, build: str | None, **kwargs) -> HostBehavior:
    return HostBehavior(stdout=dumps(probe_document(name, build, collected_at=_now(), **kwargs)))


def _fleet(prefix: str) -> dict[str, tuple[HostBehavior | None, str, str | None]]:
    """name -> (behaviour, expected status, expected failure reason)."""
    um = ["Mailbox", "UnifiedMessaging"]
    fleet: dict[str, tuple[HostBehavior | None, str, str | None]] = {}
    for i in range(12):  # multi-part output and a little latency on some
        fleet[f"{prefix}PAT{i:02d}"] = (HostBehavior(
            stdout=dumps(probe_document(f"P{i}", "15.1.2176.9", kbs=["KB5000871"],
                                        collected_at=_now())),
            latency=0.05 * (i % 3), chunks=1 + i % 3), "patched", None)
    for i in range(8):
        fleet[f"{prefix}MIT{i:02d}"] = (_doc(f"M{i}", "15.1.2176.2", rewrite_rules=REWRITE_RULES),
                                        "mitigated", None)
    for i in range(8):
        fleet[f"{prefix}VUL{i:02d}"] = (_doc(f"V{i}", "15.2.792.3"), "vulnerable", None)
    for i in range(4):
        fleet[f"{prefix}OLD{i:02d}"] = (_doc(f"O{i}", "15.1.845.34"), "vulnerable", None)
    for i in range(4):
        fleet[f"{prefix}E10{i:02d}"] = (_doc(f"E{i}", "14.3.509.0", roles=["Mailbox"]),
                                        "not_applicable", None)
    fleet[f"{prefix}E10UM"] = (_doc("E10UM", "14.3.509.0", roles=um, um_disabled=True),
                               "mitigated", None)
    fleet[f"{prefix}SHELL"] = (_doc("SHELL", "15.1.2176.9", findings={
        "CVE-2021-27065": ["Set-OabVirtualDirectory with script in ExternalUrl"]}),
        "patched", None)
    fleet[f"{prefix}PARTIAL"] = (_doc("PARTIAL", "15.2.792.10", errors=[
        "rewrite_rules: WebAdministration module not available"]), "patched", None)
    fleet[f"{prefix}NOEXSETUP"] = (_doc("NOEXSETUP", None, errors=["exsetup: not found"]),
                                   "unknown", None)
    fleet[f"{prefix}OPTIMEOUT"] = (HostBehavior(stdout=dumps(probe_document(
        "OT", "15.1.2176.9", collected_at=_now())), operation_timeouts=2,
        operation_timeout_delay=0.2), "patched", None)
    fleet[f"{prefix}AUTH"] = (HostBehavior(http_status=401), "unknown", "auth")
    fleet[f"{prefix}DENIED"] = (HostBehavior(fault="access_denied"), "unknown", "access_denied")
    fleet[f"{prefix}STALL"] = (HostBehavior(stall=True), "unknown", "timeout")
    fleet[f"{prefix}CRASH"] = (HostBehavior(stderr="Exception calling GetType", exit_code=1),
                               "unknown", "probe_error")
    fleet[f"{prefix}GARBAGE"] = (HostBehavior(stdout="WARNING: something {not json"), "unknown",
                                 "bad_output")
    fleet[f"{prefix}WRONGSCHEMA"] = (HostBehavior(stdout='{"schema":"exchange-probe/9"}'),
                                     "unknown", "bad_output")
    fleet[f"{prefix}RESET"] = (HostBehavior(reset="Create"), "unknown", "connect")
    fleet[f"{prefix}CLOSED"] = (None, "unknown", "connect")
    fleet[f"{prefix}BADTLS"] = (None, "unknown", "tls")
    return fleet


def _setup(peer: WsmanPeer, tmp_path: Path, prefix: str, deadline: int = 4) -> tuple[Path, Path, dict]:
    fleet = _fleet(prefix)
    lines = ["name,fqdn,winrm_url"]
    for name, (behavior, _status, _reason) in fleet.items():
        if behavior is not None:
            peer.set_host(name, behavior)
        if name.endswith("CLOSED"):
            url = f"https://127.0.0.1:{closed_port()}/wsman/{name}"
        elif name.endswith("BADTLS"):
            url = peer.url(name, bad_tls=True)
        else:
            url = peer.url(name)
        lines.append(f"{name},{name.lower()}.test.example,{url}")
    inventory = tmp_path / "hosts.csv"
    inventory.write_text("\n".join(lines) + "\n")
    config = tmp_path / "collection.toml"
    config.write_text(
        "[winrm]\n"
        f'username = "{peer.username.replace(chr(92), chr(92) * 2)}"\n'
        f'ca_file = "{peer.ca_file}"\n'
        f"deadline_seconds = {deadline}\nread_timeout_seconds = 3\noperation_timeout_seconds = 2\n"
        "concurrency = 16\nretries = 1\nbackoff_seconds = 0.2\n")
    return config, inventory, fleet


def _run(args: list[str], peer: WsmanPeer, tmp_path: Path, **kwargs) -> subprocess.Popen[str]:
    env = {**os.environ, "PROXYLOGON_WINRM_PASSWORD": peer.password,
           "PROXYLOGON_DATA_DIR": str(tmp_path / "data")}
    return subprocess.Popen([sys.executable, "-m", "collectors", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def test_collect_grades_every_host_and_classifies_every_failure(wsman_peer, tmp_path,
                                                               monkeypatch):
    config, inventory, fleet = _setup(wsman_peer, tmp_path, "C1-")
    db = f"sqlite:///{tmp_path / 'store.db'}"
    wsman_peer.expected_script = compact(probe_script())
    try:
        started = time.monotonic()
        process = _run(["collect", "--config", str(config), "--inventory", str(inventory),
                        "--db", db, "--secrets", os.devnull], wsman_peer, tmp_path)
        out, err = process.communicate(timeout=120)
        elapsed = time.monotonic() - started
    finally:
        wsman_peer.expected_script = None
    assert process.returncode == 0, err
    assert len(fleet) >= 50
    assert "snapshot #1 saved" in err and f"{len(fleet)} hosts" in err
    assert "Traceback" not in err and wsman_peer.password not in out + err
    assert elapsed < 4 + 3 + 5 + 15, elapsed  # the stall is cut at its deadline

    store = SnapshotStore.open(db)
    try:
        latest = store.latest()
        assert latest is not None and latest.host_count == len(fleet)
        by_name = {a.observation.host.name: a for a in store.assessments(latest.id)}
    finally:
        store.dispose()
    for name, (_behavior, status, reason) in fleet.items():
        assessment = by_name[name]
        assert assessment.verdict.status.value == status, (name, assessment.verdict.reason)
        failure = assessment.observation.failure
        assert (failure.reason if failure else None) == reason, (name, failure)
        if failure:
            assert failure.hint, name
            assert assessment.verdict.action, name
    for name in fleet:
        if fleet[name][0] is not None and not name.endswith(("AUTH", "RESET")):
            assert not wsman_peer.mismatches(name), name  # exactly the probe, nothing else
    assert "indicators_found" in [f.value for f in by_name["C1-SHELL"].verdict.flags]
    assert any(e.kind == "probe_error" for e in by_name["C1-PARTIAL"].verdict.evidence)
    assert by_name["C1-E10UM"].observation.host.roles == frozenset({"Mailbox", "UnifiedMessaging"})

    store = SnapshotStore.open(db)
    audit = store.audit_log()
    store.dispose()
    assert [(e["action"], e["snapshot_id"]) for e in audit] == [("collect", latest.id)]
    assert "@" in audit[0]["who"] and "saved" in audit[0]["detail"]

    # The dashboard shows the collected snapshot: every host, its status and next action.
    from streamlit.testing.v1 import AppTest

    env = {"PROXYLOGON_STORE_URL": db, "PROXYLOGON_DEMO": "false"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    at.switch_page("views/hosts.py")
    at.run()
    assert not at.exception
    assert not any("Demo data" in m.value for m in at.markdown)
    table = at.dataframe[0].value
    shown = dict(zip(table["host"], (cell[0] for cell in table["status"]), strict=True))
    assert shown == {name: expected[1] for name, expected in fleet.items()}
    assert (table["action"].str.len() > 0).all()


def _slow_collection(peer: WsmanPeer, tmp_path: Path,
                     prefix: str) -> tuple[str, subprocess.Popen[str]]:
    """A store holding one earlier snapshot, and ``collect`` started on 20 slow hosts."""
    db = f"sqlite:///{tmp_path / 'store.db'}"
    store = SnapshotStore.open(db)
    previous = assess([Observation(Host("OLD"), datetime.now(UTC), "test",
                                   exsetup_version="15.1.2176.9")],
                      load_catalog(), datetime.now(UTC), source="test", tool_version="t")
    store.save(previous, load_catalog())
    store.dispose()
    lines = ["name,winrm_url"]
    for i in range(20):
        name = f"{prefix}{i:02d}"
        peer.set_host(name, HostBehavior(stdout=dumps(probe_document(
            name, "15.1.2176.9", collected_at=_now())), latency=3.0))
        lines.append(f"{name},{peer.url(name)}")
    inventory = tmp_path / "hosts.csv"
    inventory.write_text("\n".join(lines) + "\n")
    config = tmp_path / "collection.toml"
    config.write_text("[winrm]\n" f'username = "{peer.username.replace(chr(92), chr(92) * 2)}"\n'
                      f'ca_file = "{peer.ca_file}"\nconcurrency = 4\n')
    process = _run(["collect", "--config", str(config), "--inventory", str(inventory), "--db", db,
                    "--secrets", os.devnull], peer, tmp_path)
    return db, process


def _only_the_earlier_snapshot(db: str) -> bool:
    store = SnapshotStore.open(db)
    try:
        listed = store.history()
        return len(listed) == 1 and listed[0].host_count == 1 and store.verify().ok
    finally:
        store.dispose()


def test_sigterm_mid_collection_keeps_the_previous_snapshot_and_saves_nothing(wsman_peer,
                                                                               tmp_path):
    db, process = _slow_collection(wsman_peer, tmp_path, "SIG-")
    time.sleep(2.0)
    process.send_signal(signal.SIGTERM)
    _out, err = process.communicate(timeout=60)
    assert process.returncode == 1, err
    assert "nothing was saved" in err
    assert _only_the_earlier_snapshot(db)


def test_collect_while_another_collection_holds_the_lock_exits_3(wsman_peer, tmp_path):
    inventory = tmp_path / "hosts.csv"
    inventory.write_text(f"name,winrm_url\nLOCK-01,{wsman_peer.url('LOCK-01')}\n")
    config = tmp_path / "collection.toml"
    config.write_text("[winrm]\n" f'username = "{wsman_peer.username.replace(chr(92), chr(92) * 2)}"\n'
                      f'ca_file = "{wsman_peer.ca_file}"\n')
    with run_lock(tmp_path / "data"):  # the data directory _run gives the command
        process = _run(["collect", "--config", str(config), "--inventory", str(inventory),
                        "--db", f"sqlite:///{tmp_path / 'store.db'}",
                        "--secrets", os.devnull], wsman_peer, tmp_path)
        _out, err = process.communicate(timeout=60)
    assert process.returncode == 3, err
    assert "another collection is running (pid" in err and "Traceback" not in err
    assert wsman_peer.requests("LOCK-01") == []  # refused before any host was asked


def test_a_config_that_still_sets_processes_is_refused_in_one_line(wsman_peer, tmp_path):
    # [winrm] processes split big fleets over worker processes; one process with bounded
    # threads keeps up (bench/collection.py), so the key is refused, never silently ignored.
    inventory = tmp_path / "hosts.csv"
    inventory.write_text(f"name,winrm_url\nPROC-01,{wsman_peer.url('PROC-01')}\n")
    config = tmp_path / "collection.toml"
    config.write_text("[winrm]\n" f'username = "{wsman_peer.username.replace(chr(92), chr(92) * 2)}"\n'
                      f'ca_file = "{wsman_peer.ca_file}"\nprocesses = 2\n')
    process = _run(["collect", "--config", str(config), "--inventory", str(inventory),
                    "--db", f"sqlite:///{tmp_path / 'store.db'}",
                    "--secrets", os.devnull], wsman_peer, tmp_path)
    _out, err = process.communicate(timeout=60)
    assert process.returncode == 2, err
    assert err.count("\n") == 1 and err.startswith("configuration error: "), err
    assert "[winrm] processes was removed" in err and "delete the line" in err
    assert wsman_peer.requests("PROC-01") == []


def test_import_keeps_good_documents_and_names_bad_ones(tmp_path):
    good = tmp_path / "EX1.json"
    good.write_text(dumps(probe_document("EX1", "15.1.2176.9", collected_at=_now())))
    second = tmp_path / "EX2.json"
    second.write_text(dumps(probe_document("EX2", "15.1.2176.2", collected_at=_now())))
    bad = tmp_path / "broken.json"
    bad.write_text('{"schema": "exchange-probe/1", "host": "X"}')
    garbage = tmp_path / "garbage.json"
    garbage.write_bytes(b"\xff\xfe not utf8")
    db = f"sqlite:///{tmp_path / 'store.db'}"
    env = {**os.environ, "PROXYLOGON_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run([sys.executable, "-m", "collectors", "import", str(good), str(bad),
                           str(second), str(garbage), "--db", db, "--secrets",
                           os.devnull], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "rejected" in done.stderr and "broken.json" in done.stderr
    assert "garbage.json" in done.stderr
    store = SnapshotStore.open(db)
    latest = store.latest()
    assert latest is not None and latest.source == "import"
    statuses = Counter(a.verdict.status for a in store.assessments(latest.id))
    assert statuses == {Status.PATCHED: 1, Status.VULNERABLE: 1}
    assert [e["action"] for e in store.audit_log()] == ["import"]
    assert "2 files rejected" in store.audit_log()[0]["detail"]
    store.dispose()
