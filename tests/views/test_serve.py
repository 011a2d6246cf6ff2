"""The README's run command really serves the dashboard: run.sh's `python -m views.server run
app.py`, which is `streamlit run app.py` after importing what the pages need."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.peers.loopback import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_streamlit_run_serves_health_and_page(tmp_path):
    port = free_port()
    env = {**os.environ, "PROXYLOGON_DATA_DIR": str(tmp_path)}
    process = subprocess.Popen(
        [sys.executable, "-m", "views.server", "run", "app.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        health = None
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health",
                                            timeout=2) as answer:
                    health = answer.read().decode()
                    break
            except OSError:
                time.sleep(0.2)
        assert health == "ok"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as answer:
            assert answer.status == 200
            assert b"<div id=\"root\">" in answer.read()
    finally:
        process.terminate()
        process.wait(timeout=10)
