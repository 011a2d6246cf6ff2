"""Test peers for browser tests: `streamlit run app.py` on loopback and Debian's Chromium."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from tests.peers.loopback import free_port
from tests.peers.process import signal_on_parent_death

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run",
    "--disable-dev-shm-usage",
]


@contextlib.contextmanager
def serve_dashboard(data_dir: Path, env: Mapping[str, str] | None = None,
                    args: Sequence[str] = (), port: int | None = None) -> Iterator[str]:
    """``python -m views.server run app.py`` (run.sh's command) on loopback (``port`` or a free one) with the store in
    ``data_dir``, plus ``env`` and extra command-line ``args``; yields its URL once it answers.
    The log is ``data_dir/streamlit.log``."""
    port = port or free_port()
    log_path = data_dir / "streamlit.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    # No proxy may see the traffic (Streamlit's httpx client, e.g. for OIDC, honours these).
    base = {key: value for key, value in os.environ.items() if not key.lower().endswith("_proxy")}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "views.server", "run", "app.py", "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true",
             "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false", *args],
            cwd=ROOT, env={**base, "PROXYLOGON_DATA_DIR": str(data_dir), **(env or {})},
            stdout=log, stderr=subprocess.STDOUT,
            preexec_fn=lambda: signal_on_parent_death(signal.SIGTERM),
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                        break
                except OSError as error:
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise RuntimeError(f"streamlit did not start: see {log_path}") from error
                    time.sleep(0.2)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="session")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The dashboard served from a fresh demo store; yields its URL and data directory."""
    data_dir = tmp_path_factory.mktemp("browser-store")
    with serve_dashboard(data_dir) as url:
        yield url, data_dir


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (./test.sh installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser, tmp_path):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1500, "height": 1200},
                                  accept_downloads=True)
    opened = context.new_page()
    yield opened
    context.close()


def wait_idle(page, timeout: float = 30_000) -> None:  # type: ignore[no-untyped-def]
    """Wait until Streamlit is connected, has finished the script and shows nothing stale."""
    page.wait_for_selector(
        '[data-testid="stApp"][data-test-connection-state="CONNECTED"]'
        '[data-test-script-state="notRunning"]', timeout=timeout)
    page.wait_for_function("() => !document.querySelector('[data-stale=\"true\"]')",
                           timeout=timeout)


def screenshot(page, name: str) -> Path:  # type: ignore[no-untyped-def]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def download_csv(page, button_name: str) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    """Click the download button named ``button_name`` (a regex) and read the CSV it gives."""
    import csv
    import io

    text = download(page, button_name).decode("utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def download(page, button_name: str) -> bytes:  # type: ignore[no-untyped-def]
    """Click the download button named ``button_name`` (a regex); the file's bytes."""
    import re

    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    button = page.get_by_role("button", name=re.compile(button_name))
    button.wait_for(state="visible")
    try:
        with page.expect_download(timeout=15_000) as download_info:
            button.click()
    except PlaywrightTimeout:  # a click that landed while the page redrew: once more
        wait_idle(page)
        with page.expect_download(timeout=30_000) as download_info:
            button.click()
    return download_info.value.path().read_bytes()
