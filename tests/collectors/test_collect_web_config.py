"""End to end (issue 18, part 4): `collect` over the WS-Management peer, probe documents whose
OWA/ECP web.config holds an unresolved %ExchangeInstallDir%, the flag and its action in the
store, and the worklist taking the patched host at the "unknown" urgency."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from compliance.models import Flag, Status, WebConfigState
from compliance.worklist import priority
from store import SnapshotStore
from tests.collectors.documents import dumps, probe_document
from tests.peers.wsman import HostBehavior

ROOT = Path(__file__).resolve().parents[2]
INSTALL = "C:\\Program Files\\Microsoft\\Exchange Server\\V15\\"
FOLDERS = ("ClientAccess\\Owa", "ClientAccess\\ecp", "FrontEnd\\HttpProxy\\owa",
           "FrontEnd\\HttpProxy\\ecp")


def _behaviour(name: str, states: tuple[str, ...] | None) -> HostBehavior:
    document = probe_document(name, "15.1.2176.9", kbs=["KB5000871"],
                              collected_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    if states is not None:  # None: a probe from before the check (no field)
        document["web_config"] = [{"path": f"{INSTALL}{folder}\\web.config", "state": state}
                                  for folder, state in zip(FOLDERS, states, strict=True)]
        if "unreadable" in states:
            document["errors"] = ["web_config: Access to the path is denied."]
    return HostBehavior(stdout=dumps(document))


def test_collect_flags_a_broken_web_config_without_changing_the_status(wsman_peer, tmp_path):
    hosts = {
        "WC-BROKEN": ("fine", "fine", "fine", "unresolved"),
        "WC-FINE": ("fine", "fine", "fine", "fine"),
        "WC-UNREAD": ("fine", "unreadable", "fine", "fine"),
        "WC-OLDPROBE": None,
    }
    lines = ["name,winrm_url"]
    for name, states in hosts.items():
        wsman_peer.set_host(name, _behaviour(name, states))
        lines.append(f"{name},{wsman_peer.url(name)}")
    inventory = tmp_path / "hosts.csv"
    inventory.write_text("\n".join(lines) + "\n")
    config = tmp_path / "collection.toml"
    config.write_text("[winrm]\n"
                      f'username = "{wsman_peer.username.replace(chr(92), chr(92) * 2)}"\n'
                      f'ca_file = "{wsman_peer.ca_file}"\nconcurrency = 4\n')
    db = f"sqlite:///{tmp_path / 'store.db'}"
    env = {**os.environ, "PROXYLOGON_WINRM_PASSWORD": wsman_peer.password,
           "PROXYLOGON_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run([sys.executable, "-m", "collectors", "collect", "--config", str(config),
                           "--inventory", str(inventory), "--db", db, "--secrets", os.devnull],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr

    store = SnapshotStore.open(db)
    try:
        latest = store.latest()
        assert latest is not None and store.verify().ok
        found = {a.observation.host.name: a for a in store.assessments(latest.id)}
    finally:
        store.dispose()
    assert {name: a.verdict.status for name, a in found.items()} == dict.fromkeys(
        hosts, Status.PATCHED)
    broken = found["WC-BROKEN"].verdict
    assert Flag.WEB_CONFIG_BROKEN in broken.flags
    assert broken.action.startswith("Repair OWA/ECP: %ExchangeInstallDir% is left unresolved in "
                                    "FrontEnd\\HttpProxy\\ecp\\web.config;")
    assert "iisreset" in broken.action and "elevated command prompt" in broken.action
    assert priority(broken.status, broken.flags) == 2
    for name in ("WC-FINE", "WC-UNREAD", "WC-OLDPROBE"):
        verdict = found[name].verdict
        assert Flag.WEB_CONFIG_BROKEN not in verdict.flags, name
        assert priority(verdict.status, verdict.flags) is None, name
    unread = found["WC-UNREAD"]
    assert [f.state for f in unread.observation.web_configs or ()].count(
        WebConfigState.UNREADABLE) == 1
    assert any("could not be read" in e.value for e in unread.verdict.evidence)
    assert found["WC-OLDPROBE"].observation.web_configs is None
