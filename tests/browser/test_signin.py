"""Sign-in in a real browser: Streamlit's st.login against the loopback OIDC peer, then roles.

The dashboard runs with ``[auth]`` pointing at ``tests/peers/oidc.py`` and ``[access]`` naming a
viewer, an admin and an auditor group. Each test signs in through the real redirect flow (the
"Sign in" button, the provider's authorize endpoint, Streamlit's /oauth2callback exchanging the
code for an id_token), so what is checked is what a person would get. The admin test is the
control for the viewer's: the same URL must show the Collection page to an admin.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.peers.loopback import free_port
from tests.peers.oidc import OidcPeer, start_oidc
from views.markdown import UNLINK

from .conftest import screenshot, serve_dashboard, wait_idle

pytestmark = pytest.mark.integration

VIEWER = {"email": "Viewer@Corp.Example", "name": "Vera Viewer"}  # [access] matches any case
ADMIN = {"email": "exchange-admin@corp.example", "name": "Ada Admin"}
AUDITOR = {"email": "it-audit@corp.example", "name": "Aldo Auditor", "groups": ["SG-IT-Audit"]}
NOBODY = {"email": "stranger@corp.example", "name": "Sam Stranger", "groups": ["SG-Sales"]}
ACCESS = {"viewers": ["viewer@corp.example"], "admins": [ADMIN["email"]], "auditor_groups": ["SG-IT-Audit"]}
VIEWER_PAGES = ["Overview", "Hosts", "Catalogue"]
# Only the Collection page says these (views/collection.py); "Collection" is its URL path.
COLLECTION_ONLY = ("Collect now", "Import probe files")
TIMEOUT = 20_000  # ms, for any one wait


@dataclass(frozen=True)
class SignInApp:
    url: str
    oidc: OidcPeer
    data_dir: Path


def _toml(sections: dict[str, dict[str, Any]]) -> str:
    # JSON strings and lists of strings are valid TOML values.
    return "".join(f"[{name}]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in keys.items()) + "\n"
                   for name, keys in sections.items())


@pytest.fixture(scope="module")
def signin_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SignInApp]:
    """The dashboard with OIDC sign-in against the peer, on a fresh demo store."""
    workdir = tmp_path_factory.mktemp("signin")
    data_dir = workdir / "store"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    oidc = start_oidc([f"{url}/oauth2callback"])
    secrets_file = workdir / "secrets.toml"
    secrets_file.write_text(_toml({
        "auth": {"redirect_uri": f"{url}/oauth2callback", "cookie_secret": secrets.token_urlsafe(32),
                 "client_id": oidc.client_id, "client_secret": oidc.client_secret,
                 "server_metadata_url": oidc.metadata_url},
        "access": ACCESS,
    }), encoding="utf-8")
    secrets_file.chmod(0o600)
    try:
        # Only this secrets file: never a developer's ~/.streamlit or .streamlit/secrets.toml.
        with serve_dashboard(data_dir, args=["--secrets.files", str(secrets_file)], port=port):
            yield SignInApp(url, oidc, data_dir)
    finally:
        oidc.stop()


def main(page: Any) -> Any:
    """The page body (the header's menu button is Streamlit's, on every page)."""
    return page.locator('[data-testid="stMain"]')


def text_of(locator: Any) -> str:
    """What a reader sees: the app breaks autolinks with a zero-width space after "@" (views/markdown.py)."""
    return str(locator.inner_text()).replace(UNLINK, "")


def nav_links(page: Any) -> list[str]:
    """The navigation's page titles (each link's text starts with its icon's name)."""
    return [text.split()[-1] for text in page.locator('[data-testid="stSidebarNavLink"]').all_inner_texts()]


def sign_in(page: Any, app: SignInApp, user: dict[str, Any]) -> None:
    """Open the dashboard signed out and sign in as ``user`` through the real redirect flow."""
    app.oidc.sign_in_next(user)
    before = len(app.oidc.token_requests)
    page.goto(app.url)
    wait_idle(page, TIMEOUT)
    page.get_by_role("button", name="Sign in").click()
    # Streamlit -> /auth/login -> the peer's /authorize -> /oauth2callback (code exchange) -> /
    page.get_by_text("Signed in as").wait_for(timeout=TIMEOUT)
    wait_idle(page, TIMEOUT)
    assert f"Signed in as {user['email']}" in text_of(page.locator('[data-testid="stSidebar"]'))
    asked = app.oidc.authorize_requests[-1]
    assert asked["redirect_uri"] == f"{app.url}/oauth2callback"
    assert asked["code_challenge_method"] == "S256" and asked["nonce"]
    assert len(app.oidc.token_requests) == before + 1 and app.oidc.token_requests[-1]["code_verifier"]


def test_signed_out_users_see_only_the_sign_in(signin_app: SignInApp, page: Any) -> None:
    for path in ("", "/collection"):
        page.goto(f"{signin_app.url}{path}")
        page.get_by_role("button", name="Sign in").wait_for(timeout=TIMEOUT)
        wait_idle(page, TIMEOUT)
        assert page.get_by_text("Sign in to continue").is_visible()
        assert main(page).get_by_role("button").count() == 1
        assert nav_links(page) == []
        assert page.locator('[data-testid="stMetric"]').count() == 0
        for text in (*COLLECTION_ONLY, "Demo data"):
            assert page.get_by_text(text).count() == 0
    screenshot(page, "signin-signed-out")


def test_a_viewer_cannot_open_the_collection_page_by_url(signin_app: SignInApp, page: Any) -> None:
    sign_in(page, signin_app, VIEWER)
    assert nav_links(page) == VIEWER_PAGES
    assert page.get_by_text("(viewer)").is_visible()
    page.goto(f"{signin_app.url}/collection")
    wait_idle(page, TIMEOUT)
    overview = main(page).get_by_role("heading", name="ProxyLogon exposure: overview")
    collection = main(page).get_by_role("heading", name="Collection", exact=True)
    overview.or_(collection).first.wait_for(timeout=TIMEOUT)  # whichever page rendered
    assert collection.count() == 0
    for text in COLLECTION_ONLY:
        assert page.get_by_text(text).count() == 0
    # st.navigation was given no Collection page: Streamlit says so and runs the default page.
    assert overview.is_visible()
    dialog = page.get_by_role("dialog")
    dialog.wait_for(timeout=TIMEOUT)
    assert "Page not found" in dialog.inner_text()
    assert "Running the app's main page" in dialog.inner_text()
    assert nav_links(page) == VIEWER_PAGES
    assert page.url == f"{signin_app.url}/"  # Streamlit puts the main page's address back
    screenshot(page, "signin-viewer-refused-collection")


def test_an_admin_can_open_the_collection_page_by_url(signin_app: SignInApp, page: Any) -> None:
    sign_in(page, signin_app, ADMIN)
    assert nav_links(page) == ["Overview", "Hosts", "Worklist", "Collection", "Catalogue"]
    page.goto(f"{signin_app.url}/collection")
    main(page).get_by_role("heading", name="Collection", exact=True).wait_for(timeout=TIMEOUT)
    wait_idle(page, TIMEOUT)
    for text in COLLECTION_ONLY:
        assert page.get_by_text(text).first.is_visible()
    assert page.get_by_role("dialog").count() == 0
    screenshot(page, "signin-admin-collection")


def test_an_auditor_by_group_claim_gets_snapshots_and_not_collection(signin_app: SignInApp, page: Any) -> None:
    # The group comes only from the id_token's "groups" claim: [access] does not name this address.
    sign_in(page, signin_app, AUDITOR)
    assert page.get_by_text("(auditor)").is_visible()
    assert nav_links(page) == ["Overview", "Hosts", "Snapshots", "Catalogue"]


def test_a_signed_in_user_without_a_role_is_told_so(signin_app: SignInApp, page: Any) -> None:
    sign_in(page, signin_app, NOBODY)
    assert f"{NOBODY['email']} has no role here" in text_of(main(page))
    assert nav_links(page) == []
    assert page.locator('[data-testid="stMetric"]').count() == 0
    screenshot(page, "signin-no-role")
    page.get_by_role("button", name="Sign out").click()  # to try another account
    page.get_by_role("button", name="Sign in").wait_for(timeout=TIMEOUT)
    wait_idle(page, TIMEOUT)
    assert page.get_by_text("has no role here").count() == 0


def _host_with_a_gap(app: SignInApp, status: str = "mitigated") -> str:
    from compliance.catalog import load_catalog
    from compliance.models import Status
    from store import SnapshotStore

    store = SnapshotStore.open(f"sqlite:///{app.data_dir / 'compliance.db'}")
    try:
        latest = store.latest()
        assert latest is not None
        return next(s.host for s in store.summaries(latest.id, load_catalog())
                    if s.status is Status(status))
    finally:
        store.dispose()


def _open_host(page: Any, app: SignInApp, host: str) -> None:
    page.goto(f"{app.url}/hosts")
    wait_idle(page, TIMEOUT)
    page.get_by_label("Host name contains").fill(host)
    page.keyboard.press("Enter")
    wait_idle(page, TIMEOUT)
    page.get_by_text("Next action:").first.wait_for(timeout=TIMEOUT)  # one host: its detail


def test_an_admin_records_a_risk_acceptance_from_the_host_detail(signin_app: SignInApp,
                                                                  page: Any) -> None:
    from store import SnapshotStore
    from store.acceptances import acceptances

    sign_in(page, signin_app, ADMIN)  # the first page seeds the demo fleet
    host = _host_with_a_gap(signin_app, "vulnerable")  # the viewer's test accepts a mitigated one
    _open_host(page, signin_app, host)
    page.get_by_text("Accept this risk for a while (admins)").click()
    page.get_by_label("Reason").fill("URL Rewrite mitigation in place, CU upgrade in CHG-9")
    page.get_by_label("Approver").fill("A. Approver")
    page.get_by_role("button", name="Record the acceptance").click()
    page.get_by_text("Risk accepted until").first.wait_for(timeout=TIMEOUT)
    wait_idle(page, TIMEOUT)
    screenshot(page, "signin-admin-acceptance")
    store = SnapshotStore.open(f"sqlite:///{signin_app.data_dir / 'compliance.db'}")
    try:
        (recorded,) = [r for r in acceptances(store) if r.acceptance.host == host]
        assert store.verify().ok
    finally:
        store.dispose()
    assert (recorded.acceptance.host, recorded.acceptance.accepted_by) == (host, ADMIN["email"])
    assert recorded.acceptance.approver == "A. Approver"


def test_a_viewer_sees_an_acceptance_but_is_not_offered_one(signin_app: SignInApp,
                                                             page: Any) -> None:
    from datetime import UTC, datetime, timedelta

    from compliance.acceptance import accept
    from compliance.catalog import load_catalog
    from store import SnapshotStore
    from store.acceptances import acceptances, record

    sign_in(page, signin_app, VIEWER)  # the first page seeds the demo fleet
    host = _host_with_a_gap(signin_app)
    store = SnapshotStore.open(f"sqlite:///{signin_app.data_dir / 'compliance.db'}")
    try:  # an acceptance in force for the host, whichever test ran before
        if not [r for r in acceptances(store) if r.acceptance.host == host]:
            latest = store.latest()
            assert latest is not None
            (summary,) = store.summaries(latest.id, load_catalog(), hosts={host})
            now = datetime.now(UTC)
            record(store, accept(summary, reason="r", approver="A. Approver", ticket="",
                                 expires_at=now + timedelta(days=3), accepted_by="admin",
                                 now=now), latest.id)
    finally:
        store.dispose()
    _open_host(page, signin_app, host)
    page.get_by_text("Risk accepted until").first.wait_for(timeout=TIMEOUT)  # the badge, read
    assert page.get_by_text("Accept this risk").count() == 0
    assert page.get_by_role("button", name="Record the acceptance").count() == 0
