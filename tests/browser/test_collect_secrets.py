"""Issue 14: the dashboard's *Collect now* uses the secrets the dashboard sees (``st.secrets``),
so a WinRM password given only through ``streamlit run --secrets.files`` reaches its job. Before,
the job read a fixed ``.streamlit/secrets.toml`` and found no password."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest

from tests.browser.conftest import serve_dashboard, wait_idle
from tests.collectors.documents import dumps, probe_document
from tests.peers.wsman import HostBehavior

pytestmark = pytest.mark.integration


def test_collect_now_uses_the_secrets_given_with_secrets_files(wsman_peer, page, tmp_path,
                                                              monkeypatch):
    name = "SECRETS-EX01"
    collected_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    wsman_peer.set_host(name, HostBehavior(stdout=dumps(probe_document(
        name, "15.1.2176.9", kbs=["KB5000871"], collected_at=collected_at))))
    inventory = tmp_path / "hosts.csv"
    inventory.write_text(f"name,winrm_url\n{name},{wsman_peer.url(name)}\n")
    config = tmp_path / "collection.toml"
    config.write_text("[winrm]\n"
                      f'username = "{wsman_peer.username.replace(chr(92), chr(92) * 2)}"\n'
                      f'ca_file = "{wsman_peer.ca_file}"\n'
                      "deadline_seconds = 10\nread_timeout_seconds = 3\n"
                      "operation_timeout_seconds = 2\nretries = 0\n")
    secrets = tmp_path / "elsewhere" / "secrets.toml"  # not .streamlit/secrets.toml
    secrets.parent.mkdir()
    secrets.write_text(f'[winrm]\npassword = "{wsman_peer.password}"\n\n'
                       f'[collection]\nconfig = "{config}"\ninventory = "{inventory}"\n')
    for variable in ("PROXYLOGON_WINRM_PASSWORD", "PROXYLOGON_COLLECTION_CONFIG",
                     "PROXYLOGON_COLLECTION_INVENTORY"):
        monkeypatch.delenv(variable, raising=False)
    assert "PROXYLOGON_WINRM_PASSWORD" not in os.environ
    data_dir = tmp_path / "data"
    with serve_dashboard(data_dir, env={"PROXYLOGON_DEMO": "false"},
                         args=["--secrets.files", str(secrets)]) as url:
        page.goto(f"{url}/collection")
        wait_idle(page)
        page.get_by_role("button", name="Collect now").click()
        page.get_by_text("Last collection: snapshot #1 saved").wait_for(timeout=60_000)
        shown = page.locator('[data-testid="stMain"]').inner_text()
    assert "no WinRM password" not in shown
    assert wsman_peer.password not in shown
