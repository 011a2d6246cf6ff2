"""Hostile values from AD and probe output render as text in a real browser, never as markup.

The store holds hosts whose names, FQDNs, sites, DAGs, failure details and probe errors are
HTML, Markdown, Streamlit directives and links. Chromium must show them literally: no element,
link, image or script they describe may appear, and no script of theirs may run.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from compliance.catalog import load_catalog
from compliance.evaluate import assess
from compliance.models import Failure, Host, Observation
from store import SnapshotStore
from tests.browser.conftest import screenshot, serve_dashboard, wait_idle
from views.markdown import UNLINK

pytestmark = pytest.mark.integration

IMG = 'EX-IMG<img src=x onerror="window.__pwned=1">'
BOLD = "EX-MD **PATCHED** [Click to fix](https://evil.example/fix)"
SCRIPT_FQDN = "<script>window.__pwned=2</script>.evil.example"
SITE = '<a href="https://evil.example/site">Site</a>'
DAG = "<b>DAG</b><img src=x onerror=window.__pwned=4>"
DETAIL = ":green[patched] $x^2$ [fix](javascript:window.__pwned=3) https://evil.example/bare"
PROBE_ERROR = '<iframe src="https://evil.example/frame"></iframe> **bold**'
HOSTILE_HOSTS = (IMG, BOLD)


@pytest.fixture(scope="module")
def hostile_dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data_dir = tmp_path_factory.mktemp("hostile-store")
    now = datetime.now(UTC)
    observations = [
        Observation(Host(IMG, fqdn=SCRIPT_FQDN, site=SITE, dag=DAG), now, "test",
                    failure=Failure("bad_output", DETAIL, "rerun the probe")),
        Observation(Host(BOLD, fqdn="ex-md.test.example", site=SITE, dag=DAG), now, "test",
                    exsetup_version="15.1.2176.2", probe_errors=(PROBE_ERROR,)),
    ]
    store = SnapshotStore.open(f"sqlite:///{Path(data_dir) / 'compliance.db'}")
    store.save(assess(observations, load_catalog(), now, source="test", tool_version="t",
                      discovered=[o.host for o in observations], scope="hostile values"),
               load_catalog())
    store.dispose()
    with serve_dashboard(Path(data_dir), env={"PROXYLOGON_DEMO": "false"}) as url:
        yield url


def _assert_inert(page) -> None:  # type: ignore[no-untyped-def]
    """Nothing the hostile values describe exists in the page, and none of their script ran."""
    assert page.evaluate("() => window.__pwned") is None
    links = page.locator('a[href*="evil.example"], a[href^="javascript:"]')
    assert links.count() == 0, [links.nth(i).evaluate("e => e.outerHTML.slice(0, 300)")
                                for i in range(links.count())]
    assert page.locator("img[onerror], iframe, script:has-text('__pwned')").count() == 0
    # (our own bold around the whole host name is fine: the value must not make its own)
    assert page.locator("strong, b", has_text=re.compile(r"^(PATCHED|DAG)$")).count() == 0


def test_overview_charts_show_hostile_site_and_dag_names_as_text(hostile_dashboard, page):
    page.goto(hostile_dashboard)
    wait_idle(page)
    page.locator(".js-plotly-plot").first.wait_for()
    labels = page.eval_on_selector_all(".js-plotly-plot text", "els => els.map(e => e.textContent)")
    assert SITE in labels and DAG in labels  # the literal text, as a tick label
    _assert_inert(page)
    screenshot(page, "hostile-overview")


@pytest.mark.parametrize("host", HOSTILE_HOSTS, ids=["img-tag", "markdown"])
def test_hosts_page_shows_hostile_values_literally(hostile_dashboard, page, host):
    page.goto(f"{hostile_dashboard}/hosts")
    wait_idle(page)
    page.get_by_label("Host name contains").fill(host.split()[0][:6])
    page.keyboard.press("Enter")
    wait_idle(page)
    page.get_by_text("1 of 2 hosts").wait_for()
    wait_idle(page)  # the caption comes early in the rerun; the host detail comes after it
    # As a reader sees it: without the zero-width spaces that keep URLs from being linked.
    body = page.locator('[data-testid="stMain"]').inner_text().replace(UNLINK, "")
    assert host in body  # shown as its own text
    if host == IMG:
        assert SCRIPT_FQDN in body and DETAIL in body
    else:
        assert PROBE_ERROR in body
    _assert_inert(page)
    screenshot(page, f"hostile-hosts-{'img' if host == IMG else 'markdown'}")
