"""Benchmark: the dashboard on a 10,000-host fleet with 52 weekly snapshots (issue #6).

Prints the script run time of the Overview, Hosts, Worklist and Collection pages under AppTest (first run with an
empty cache, then warm), the time to build the worklist CSV of the latest snapshot, and the
first paint in headless Chromium (page load until the KPIs and charts show).
Targets: each page's run < 1 s, the CSV < 0.3 s, first paint < 3 s.
Run: .venv/bin/python bench/pages.py [--hosts N] [--snapshots S] [--no-browser]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.store import fleet  # noqa: E402
from compliance.catalog import load_catalog  # noqa: E402
from compliance.worklist import plan_waves, rank  # noqa: E402
from store import SnapshotStore  # noqa: E402
from store.export import to_csv, worklist_rows  # noqa: E402


def seed(url: str, hosts: int, count: int) -> None:
    catalog = load_catalog()
    now = datetime.now(UTC)
    base = fleet(catalog, hosts, now)
    store = SnapshotStore.open(url)
    for week in range(count):
        store.save(replace(base, taken_at=now - timedelta(weeks=count - 1 - week, hours=1)),
                   catalog)
    store.dispose()


def apptest(page: str) -> tuple[float, float]:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    if page != "views/overview.py":
        at.switch_page(page)
    t0 = time.perf_counter()
    at.run()
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    at.run()
    warm = time.perf_counter() - t0
    assert not at.exception, at.exception
    return cold, warm


def first_paint(data_dir: str) -> float:
    from playwright.sync_api import sync_playwright

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "PROXYLOGON_DATA_DIR": data_dir, "PROXYLOGON_DEMO": "false"}
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py",
                               "--server.port", str(port), "--server.address", "127.0.0.1"],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-quic",
                "--no-first-run", "--disable-dev-shm-usage"]
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=args)
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")  # warm the server's caches once
            page.wait_for_selector(".main-svg", timeout=120_000)
            page.close()
            page = browser.new_page()
            t0 = time.perf_counter()
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector('[data-testid="stMetric"]', timeout=60_000)
            page.wait_for_selector(".main-svg", timeout=60_000)
            paint = time.perf_counter() - t0
            browser.close()
        return paint
    finally:
        server.terminate()
        server.wait(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", type=int, default=10_000)
    parser.add_argument("--snapshots", type=int, default=52)
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        url = f"sqlite:///{Path(data_dir) / 'compliance.db'}"
        started = time.perf_counter()
        seed(url, args.hosts, args.snapshots)
        print(f"seeded {args.snapshots} snapshots x {args.hosts} hosts in "
              f"{time.perf_counter() - started:.0f} s")
        os.environ.update(PROXYLOGON_DATA_DIR=data_dir, PROXYLOGON_DEMO="false")
        for page in ("views/overview.py", "views/hosts.py", "views/worklist.py",
                     "views/collection.py"):
            cold, warm = apptest(page)
            verdict = "MET" if warm < 1.0 else "MISSED"
            print(f"{page:22} script run: first {cold:.2f} s, cached {warm:.2f} s "
                  f"(target < 1 s: {verdict})")
        store = SnapshotStore.open(url)
        latest = store.latest()
        assert latest is not None
        assessments = store.assessments(latest.id)
        t0 = time.perf_counter()
        rows = worklist_rows(plan_waves(rank(assessments)), latest.id,
                             latest.taken_at.isoformat())
        text = to_csv(rows)
        csv_time = time.perf_counter() - t0
        store.dispose()
        print(f"worklist CSV: {len(rows)} rows, {len(text) / 1024:.0f} KiB in {csv_time:.3f} s "
              f"(target < 0.3 s: {'MET' if csv_time < 0.3 else 'MISSED'})")
        if not args.no_browser:
            paint = first_paint(data_dir)
            print(f"first paint in Chromium (Overview, warm server): {paint:.2f} s "
                  f"(target < 3 s: {'MET' if paint < 3 else 'MISSED'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
