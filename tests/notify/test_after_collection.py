"""The collection job end to end with notifications: the real command line, the WS-Man peer
fleet, a real SMTP server and an HTTPS webhook receiver on loopback (issue 17, part 3)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from store import SnapshotStore
from tests.collectors.documents import REWRITE_RULES, dumps, probe_document
from tests.peers.slapd import closed_port
from tests.peers.tls import TlsFiles
from tests.peers.wsman import HostBehavior, WsmanPeer

ROOT = Path(__file__).resolve().parents[2]
USER, PASSWORD = "notifier@corp.example", "dummy-smtp-password"
SECRET = "dummy-webhook-secret"


def _document(name: str, state: str) -> HostBehavior:
    at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if state == "patched":
        document = probe_document(name, "15.1.2176.9", kbs=["KB5000871"], collected_at=at)
    elif state == "mitigated":
        document = probe_document(name, "15.1.2176.2", rewrite_rules=REWRITE_RULES,
                                  collected_at=at)
    else:
        document = probe_document(name, "15.2.792.3", collected_at=at)
    return HostBehavior(stdout=dumps(document))


def _fleet(peer: WsmanPeer, tmp_path: Path, prefix: str, states: dict[str, str]) -> tuple[Path, Path]:
    lines = ["name,fqdn,winrm_url"]
    for name, state in states.items():
        peer.set_host(prefix + name, _document(name, state))
        lines.append(f"{prefix}{name},{(prefix + name).lower()}.test.example,"
                     f"{peer.url(prefix + name)}")
    inventory = tmp_path / "hosts.csv"
    inventory.write_text("\n".join(lines) + "\n")
    config = tmp_path / "collection.toml"
    config.write_text(
        "[winrm]\n"
        f'username = "{peer.username.replace(chr(92), chr(92) * 2)}"\n'
        f'ca_file = "{peer.ca_file}"\n'
        "deadline_seconds = 20\nread_timeout_seconds = 5\noperation_timeout_seconds = 4\n"
        "concurrency = 4\nretries = 0\n")
    return config, inventory


def _secrets(tmp_path: Path, tls: TlsFiles, smtp_port: int, webhook_url: str) -> Path:
    path = tmp_path / "secrets.toml"
    path.write_text(
        "[notifications]\n"
        f'smtp_host = "127.0.0.1"\nsmtp_port = {smtp_port}\n'
        f'smtp_ca_file = "{tls.ca_file}"\nsmtp_username = "{USER}"\n'
        f'smtp_password = "{PASSWORD}"\n'
        'mail_from = "proxylogon@corp.example"\nmail_to = ["exchange-team@corp.example"]\n'
        f'webhook_url = "{webhook_url}"\nwebhook_secret = "{SECRET}"\n'
        f'webhook_ca_file = "{tls.ca_file}"\n'
        "attempts = 2\nbackoff_seconds = 0\ntimeout_seconds = 5\n")
    return path


def _collect(peer: WsmanPeer, tmp_path: Path, config: Path, inventory: Path,
             secrets: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PROXYLOGON_WINRM_PASSWORD": peer.password,
           "PROXYLOGON_DATA_DIR": str(tmp_path / "data"),
           "PROXYLOGON_STORE_URL": f"sqlite:///{tmp_path / 'store.db'}"}
    return subprocess.run([sys.executable, "-m", "collectors", "collect", "--config",
                           str(config), "--inventory", str(inventory), "--secrets",
                           str(secrets)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=180)


def _audit(tmp_path: Path) -> list[dict[str, object]]:
    store = SnapshotStore.open(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        return list(reversed(store.audit_log()))
    finally:
        store.dispose()


def test_a_regression_between_two_collections_is_told_once_by_mail_and_webhook(
        wsman_peer, tmp_path, tls, smtp, webhook):
    states = {"EX1": "patched", "EX2": "vulnerable", "EX3": "mitigated"}
    config, inventory = _fleet(wsman_peer, tmp_path, "N1-", states)
    secrets = _secrets(tmp_path, tls, smtp.port, webhook.url())

    first = _collect(wsman_peer, tmp_path, config, inventory, secrets)
    assert first.returncode == 0, first.stderr
    assert "baseline, nothing sent" in first.stderr
    assert smtp.messages == [] and webhook.requests == []

    wsman_peer.set_host("N1-EX1", _document("EX1", "vulnerable"))  # the update was removed
    second = _collect(wsman_peer, tmp_path, config, inventory, secrets)
    assert second.returncode == 0, second.stderr
    assert "snapshot #2 saved" in second.stderr
    assert len(smtp.messages) == 1 and len(webhook.requests) == 1

    mail = smtp.messages[0]
    assert mail.tls and mail.authenticated
    assert mail.rcpt_tos == ("exchange-team@corp.example",)
    body = mail.message.get_content()
    assert "N1-EX1" in body and "patched" in body and "vulnerable" in body
    assert "N1-EX2" not in body and "N1-EX3" not in body  # unchanged: not told
    assert "N1-EX1" not in str(mail.message["Subject"])  # no host name in a header

    request = webhook.requests[0]
    document = json.loads(request.body)
    changes = document["proxylogon"]["changes"]
    assert [(c["kind"], c["host"]) for c in changes] == [("regressed", "N1-EX1")]
    assert document["proxylogon"]["snapshot_id"] == 2
    stamp = request.headers["x-proxylogon-timestamp"]
    expected = hmac.new(SECRET.encode(), stamp.encode() + b"." + request.body,
                        hashlib.sha256).hexdigest()
    assert request.headers["x-proxylogon-signature"] == f"sha256={expected}"

    audit = _audit(tmp_path)
    told = [e for e in audit if e["action"] == "notify"]
    assert len(told) == 1 and told[0]["snapshot_id"] == 2
    assert "sent" in str(told[0]["detail"]) and "FAILED" not in str(told[0]["detail"])
    assert PASSWORD not in second.stderr + str(told[0]["detail"])

    third = _collect(wsman_peer, tmp_path, config, inventory, secrets)  # nothing changed
    assert third.returncode == 0, third.stderr
    assert "nothing changed, nothing sent" in third.stderr
    assert len(smtp.messages) == 1 and len(webhook.requests) == 1


def test_a_dead_mail_server_and_a_failing_webhook_never_lose_the_snapshot(
        wsman_peer, tmp_path, tls, webhook):
    config, inventory = _fleet(wsman_peer, tmp_path, "N2-", {"EX1": "patched"})
    secrets = _secrets(tmp_path, tls, closed_port(), webhook.url())
    assert _collect(wsman_peer, tmp_path, config, inventory, secrets).returncode == 0
    wsman_peer.set_host("N2-EX1", _document("EX1", "vulnerable"))
    webhook.answer(500, 500, 500)
    second = _collect(wsman_peer, tmp_path, config, inventory, secrets)
    assert second.returncode == 0, second.stderr
    assert "snapshot #2 saved" in second.stderr
    assert len(webhook.requests) == 2  # attempts = 2, then given up

    store = SnapshotStore.open(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        latest = store.latest()
        assert latest is not None and latest.id == 2 and latest.counts["vulnerable"] == 1
    finally:
        store.dispose()
    told = [e for e in _audit(tmp_path) if e["action"] == "notify"]
    assert len(told) == 1
    detail = str(told[0]["detail"])
    assert "email" in detail and "webhook" in detail and detail.count("FAILED after 2") == 2
    assert PASSWORD not in detail and SECRET not in detail
