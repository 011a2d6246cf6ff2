"""Local mode in a real Chromium: no DNS rebinding, and no request that leaves the machine.

Chromium resolves every name under ``attacker.example`` to 127.0.0.1 (``--host-resolver-rules``),
as a browser does once an attacker's DNS server rebinds a name it served a page from: that
page could then read whatever the dashboard shows under its own origin. Local mode must show
such a name only the refusal, opening no store. Every other name resolves to nothing and every
request off loopback is aborted before it is sent, so these tests send no traffic off the
machine even when the dashboard tries to.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from .conftest import CHROMIUM, CHROMIUM_ARGS, screenshot, serve_dashboard, wait_idle

pytestmark = pytest.mark.integration

RESOLVER_RULES = ("--host-resolver-rules=MAP *.attacker.example 127.0.0.1, MAP * ~NOTFOUND, "
                  "EXCLUDE localhost, EXCLUDE 127.0.0.1")
LOCAL_HOSTS = ("127.0.0.1", "localhost")
PAGES = ("", "hosts", "worklist", "collection", "snapshots", "catalog")
# What the demo fleet (collectors/demo.py) and the pages around it would put on a page.
FLEET_WORDS = ("DEMO-", "corp.demo.example", "EU-West", "US-East", "APAC", "DAG-", "Demo data",
               "snapshot #", "hosts still need work")


@pytest.fixture(scope="module")
def rebinding_browser(browser) -> Iterator[object]:  # type: ignore[no-untyped-def]
    """Chromium (from the session's Playwright) that resolves *.attacker.example to 127.0.0.1."""
    launched = browser.browser_type.launch(executable_path=CHROMIUM,
                                           args=[*CHROMIUM_ARGS, RESOLVER_RULES])
    yield launched
    launched.close()


def _local(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme == "blob":
        return _local(url.removeprefix("blob:"))
    if parts.scheme in ("data", "about"):
        return True
    return parts.scheme in ("http", "ws") and parts.hostname in LOCAL_HOSTS


@pytest.fixture
def recorded(rebinding_browser) -> Iterator[tuple[object, list[str]]]:  # type: ignore[no-untyped-def]
    """A page of the rebinding browser, and every URL any page of its context requests (and
    the page's websockets). A request off loopback is recorded, then aborted, so it never
    leaves the machine."""
    context = rebinding_browser.new_context(viewport={"width": 1500, "height": 1200})
    urls: list[str] = []
    context.on("request", lambda request: urls.append(request.url))

    def only_local(route) -> None:  # type: ignore[no-untyped-def]
        host = urlsplit(route.request.url).hostname or ""
        if _local(route.request.url) or host.endswith(".attacker.example"):
            route.continue_()
        else:
            route.abort()

    context.route("**/*", only_local)
    page = context.new_page()
    page.on("websocket", lambda socket: urls.append(socket.url))
    yield page, urls
    context.close()


@pytest.fixture(scope="module")
def unvisited_dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """A dashboard no loopback name ever visits: its store must never be opened."""
    data_dir = tmp_path_factory.mktemp("rebinding-store")
    with serve_dashboard(data_dir) as url:
        yield int(url.rsplit(":", 1)[1]), data_dir


def _wait_rendered(page) -> None:  # type: ignore[no-untyped-def]
    """Wait for the run to show the refusal or the dashboard (idle alone may come before it)."""
    # In the main area: the sidebar has an alert of its own (the chain's state).
    page.locator('[data-testid="stMain"] [data-testid="stAlert"], [data-testid="stMetric"]'
                 ).first.wait_for(timeout=30_000)
    wait_idle(page)


def _assert_refusal_only(page) -> None:  # type: ignore[no-untyped-def]
    main = page.locator('[data-testid="stMain"]').inner_text()
    html = page.content()
    for word in FLEET_WORDS:
        assert word not in main and word not in html, word
    for element in ('[data-testid="stSidebar"]', '[data-testid="stSidebarNav"]',
                    '[data-testid="stMetric"]', '[data-testid="stDataFrame"]', ".js-plotly-plot",
                    '[data-testid="stButton"]', '[data-testid="stDownloadButton"]',
                    '[data-testid="stFileUploader"]', "input", "textarea"):
        assert page.locator(element).count() == 0, element
    for name in ("Overview", "Hosts", "Worklist", "Collection", "Snapshots", "Catalogue"):
        assert page.get_by_role("link", name=name).count() == 0, name
    alerts = page.locator('[data-testid="stAlert"]')
    assert alerts.count() == 1
    assert re.search(r"answers only at .*127\.0\.0\.1", alerts.inner_text())


@pytest.mark.parametrize(("name", "path"), [
    ("rebind.attacker.example", ""),
    ("rebind.attacker.example", "collection"),
    ("rebind.attacker.example", "snapshots"),
    ("localhost.attacker.example", ""),
    ("127.0.0.1.attacker.example", ""),
])
def test_a_rebound_name_gets_only_the_refusal(unvisited_dashboard, recorded, name, path):
    port, data_dir = unvisited_dashboard
    page, _urls = recorded
    page.goto(f"http://{name}:{port}/{path}")
    _wait_rendered(page)
    _assert_refusal_only(page)
    assert not (data_dir / "compliance.db").exists()  # the store was never opened
    if name == "rebind.attacker.example" and not path:
        screenshot(page, "rebinding-refused")


@pytest.mark.parametrize("name", LOCAL_HOSTS)
def test_the_same_browser_gets_the_dashboard_on_loopback(dashboard, recorded, name):
    """The control: it is the name that is refused, not this browser or its resolver rules."""
    url, _ = dashboard
    page, _urls = recorded
    page.goto(f"http://{name}:{urlsplit(url).port}/")
    _wait_rendered(page)
    assert page.locator('[data-testid="stMetric"]').count() > 0
    for link in ("Collection", "Snapshots"):
        assert page.get_by_role("link", name=link).count() == 1, link
    assert page.get_by_text("Demo data").first.is_visible()
    assert page.locator('[data-testid="stAlert"]', has_text="answers only").count() == 0


def test_no_page_requests_anything_off_loopback(dashboard, recorded):
    url, _ = dashboard
    page, urls = recorded
    icons: dict[str, list[str]] = {}
    for path in PAGES:
        page.goto(f"{url}/{path}")
        wait_idle(page)
        if not path:
            page.locator(".js-plotly-plot .main-svg").first.wait_for()
        icons[path] = page.eval_on_selector_all("link[rel~='icon']", "els => els.map(e => e.href)")
    page.wait_for_timeout(1_000)  # a late favicon or font request still counts
    assert urls, "no request recorded at all: the recorder is broken"
    assert [u for u in urls if not _local(u)] == []
    # The favicon is this server's own file on every page (not one a later visit could fetch).
    assert all(hrefs and all(_local(href) for href in hrefs) for hrefs in icons.values()), icons
