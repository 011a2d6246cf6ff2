"""The investigation after the fix beyond one snapshot (issue 21), in Chromium: the Overview's
trend of the patched servers' states, and the one-page report's section with the Overview's
figure."""

from __future__ import annotations

import re

import pytest

from .conftest import download, screenshot, wait_idle

pytestmark = pytest.mark.integration


def test_the_overview_trend_and_the_report_say_who_was_never_investigated(dashboard, page):
    url, _ = dashboard
    page.goto(url)
    wait_idle(page)
    page.wait_for_selector(".main-svg", timeout=30_000)
    chart = page.locator(".js-plotly-plot").filter(
        has_text="Patched servers: investigated after the fix?")
    chart.first.scroll_into_view_if_needed()
    legend = chart.first.inner_text()
    for label in ("Investigated, clean", "Investigation incomplete", "Not investigated",
                  "Indicators found"):
        assert label in legend
    screenshot(page, "overview-investigation-trend")
    metric = page.locator('[data-testid="stMetric"]').filter(has_text="Patched, not investigated")
    figure = int(metric.first.locator('[data-testid="stMetricValue"]').inner_text())
    report = download(page, r"One-page report").decode("utf-8")
    assert f"<b>{figure} patched servers not investigated</b>" in report
    assert "CISA ED 21-02" in report and "<th>Patched, not investigated</th>" in report
    assert re.search(r"<tr><td>Patched</td>(<td class=\"n\">\d+</td>){5}</tr>", report)
