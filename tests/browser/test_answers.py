"""Each user's answer at a glance (issue 16), in Chromium: one headline that the Worklist and
its downloads repeat, click-through from charts and rows, the report, the chain on every page.
"""

from __future__ import annotations

import io
import re
import shutil
import time
from datetime import UTC, datetime

import pytest
from openpyxl import load_workbook
from sqlalchemy import text

from collectors.demo import seed_demo
from compliance.catalog import load_catalog
from store import SnapshotStore

from .conftest import download, download_csv, screenshot, serve_dashboard, wait_idle

pytestmark = pytest.mark.integration


def _headline(page) -> int:  # type: ignore[no-untyped-def]
    heading = page.get_by_role("heading", name=re.compile(r"servers? need action")).first
    heading.wait_for()
    return int(re.match(r"(\d+)", heading.inner_text()).group(1))


def test_the_headline_is_the_worklist_and_its_downloads(dashboard, page):
    url, _ = dashboard
    page.goto(url)
    wait_idle(page)
    headline = _headline(page)
    assert headline > 0
    screenshot(page, "overview-headline")
    page.goto(f"{url}/worklist")
    wait_idle(page)
    shown = page.get_by_text(re.compile(r"\d+ hosts need work")).first.inner_text()
    assert int(re.search(r"(\d+) hosts need work", shown).group(1)) == headline
    # The downloads list the work, then the patched servers still to check for a back door.
    found = re.search(r"(\d+) patched servers? to check for a back door", shown)
    investigate = int(found.group(1)) if found else 0
    assert investigate > 0  # the demo fleet has patched servers nobody investigated
    assert len(download_csv(page, r"Download worklist \(CSV\)")) == headline + investigate
    book = load_workbook(io.BytesIO(download(page, r"Download worklist \(Excel\)")))
    assert book["Worklist"].max_row - 1 == headline + investigate


def test_a_bar_opens_the_hosts_page_filtered_to_it(dashboard, page):
    url, data_dir = dashboard
    page.goto(url)
    wait_idle(page)
    page.wait_for_selector(".main-svg")
    by_site = page.locator(".js-plotly-plot").nth(2)  # status by AD site
    bar = by_site.locator(".bars .point path").first
    bar.scroll_into_view_if_needed()
    box = bar.bounding_box()
    # Plotly's drag layer takes the click over the bar: click where the bar is.
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_url(re.compile(r"/hosts\?"), timeout=30_000)
    wait_idle(page)
    query = dict(part.split("=", 1) for part in page.url.split("?", 1)[1].split("&"))
    assert set(query) == {"status", "site"}
    store = SnapshotStore.open(f"sqlite:///{data_dir / 'compliance.db'}")
    try:
        latest = store.latest()
        expected = sum(1 for a in store.assessments(latest.id)
                       if a.verdict.status.value == query["status"]
                       and (a.observation.host.site or "") == query["site"])
    finally:
        store.dispose()
    page.get_by_text(re.compile(rf"^{expected} of \d+ hosts")).wait_for()
    screenshot(page, "hosts-filtered")


def test_a_row_opens_its_evidence(dashboard, page):
    url, _ = dashboard
    page.goto(f"{url}/hosts")
    wait_idle(page)
    page.get_by_label("Host name contains").fill("DEMO-EX16OLD0")
    page.keyboard.press("Enter")
    wait_idle(page)
    assert not page.get_by_text("Next action:").count()  # several hosts: none chosen yet
    grid = page.locator('[data-testid="stDataFrame"]').first
    grid.scroll_into_view_if_needed()
    box = grid.bounding_box()
    page.mouse.click(box["x"] + 18, box["y"] + 35 + 35 * 1 + 17)  # the second row's marker
    wait_idle(page)
    page.get_by_text("Next action:").first.wait_for()
    second = grid.get_by_text(re.compile(r"DEMO-EX16OLD0\d")).nth(1).inner_text()
    assert page.get_by_text(re.compile(rf"^{second} \(")).count() == 1  # the detail's heading
    screenshot(page, "hosts-detail")


def test_the_report_downloads_with_the_headline(dashboard, page):
    url, _ = dashboard
    page.goto(url)
    wait_idle(page)
    headline = _headline(page)
    report = download(page, r"One-page report").decode("utf-8")
    assert f"{headline} servers need action:" in report
    assert "Snapshot chain: verified" in report and "DEMO DATA" in report


def test_a_tampered_store_is_a_red_banner_on_every_page(tmp_path, page):
    data_dir = tmp_path / "tampered"
    data_dir.mkdir()
    store = SnapshotStore.open(f"sqlite:///{data_dir / 'compliance.db'}")
    try:
        ids = seed_demo(store, load_catalog(), datetime.now(UTC))
        with store.engine.begin() as conn:  # a writer without the key hides a vulnerable host
            conn.execute(text("UPDATE results SET status = 'patched' WHERE snapshot_id = :id "
                              "AND status = 'vulnerable'"), {"id": ids[-1]})
    finally:
        store.dispose()
    with serve_dashboard(data_dir, env={"PROXYLOGON_DEMO": "false"}) as url:
        for path in ("", "/hosts", "/worklist"):
            page.goto(f"{url}{path}")
            wait_idle(page)
            deadline = time.monotonic() + 30  # the check runs in the background
            banner = page.get_by_text("The snapshot store does not verify")
            while not banner.count() and time.monotonic() < deadline:
                time.sleep(0.5)
                wait_idle(page)
            assert banner.first.is_visible(), path
        screenshot(page, "tampered")
    shutil.rmtree(data_dir, ignore_errors=True)
