"""The dashboard frame: page config, configuration check, demo badge, navigation."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from collectors.demo import seed_demo
from settings import Role, SettingsError, access_settings
from store import StoreError
from views import access, data, integrity
from views.markdown import literal

# The icon is served by this server: a ":material/..." or emoji icon makes the browser fetch it
# from a public CDN, and a loopback-only tool must not tell anyone it is being looked at.
ICON = Path(__file__).resolve().parent / "views" / "assets" / "shield.png"
st.set_page_config(page_title="ProxyLogon compliance", page_icon=ICON, layout="wide")

try:
    secrets = data.secrets()
except SettingsError as error:
    st.error(f"**Configuration error.** {error}. Fix the secrets file, then reload.")
    st.stop()
if access.auth_configured(secrets):
    if not st.user.is_logged_in:
        st.title("ProxyLogon compliance")
        st.markdown("This dashboard maps which Exchange servers are exposed. Sign in to continue.")
        st.button("Sign in", on_click=st.login, icon=":material/login:")
        st.stop()
    user = st.user.to_dict()
    try:
        granted = access_settings(secrets)
    except SettingsError as error:
        st.error(f"**Configuration error.** {error}. Fix `[access]` in the dashboard's secrets, "
                 "then reload.")
        st.stop()
    who = access.Access(False, access.roles_for(user, granted),
                        str(user.get("email") or "signed-in user"))
    st.sidebar.caption(f"Signed in as {literal(who.who)} ({', '.join(sorted(who.roles)) or 'no role'})")
    st.sidebar.button("Sign out", on_click=st.logout)
    if not who.roles:
        st.error(f"**{literal(who.who)} has no role here.** Ask an administrator to add you to "
                 "`[access]` (viewers, admins or auditors) in the dashboard's secrets.")
        st.stop()
else:
    # DNS rebinding: a site whose name resolves to 127.0.0.1 reaches this server from the
    # admin's browser, with its own name in the Host header. Answer loopback names only.
    headers = st.context.headers
    if not access.local_request_allowed(headers.get_all("host") if headers else None):
        port = st.get_option("server.port")
        st.error(f"**This dashboard answers only at http://127.0.0.1:{port} or "
                 f"http://localhost:{port}.** It runs without sign-in, so it answers only names "
                 "of this machine: another web site could have pointed the name in the address "
                 "bar at it (see SECURITY.md).")
        st.stop()
    address = st.get_option("server.address")
    if not access.local_mode_allowed(address):
        st.error(f"**Refusing to serve on {address} without sign-in.** Configure `[auth]` "
                 "(OIDC, e.g. Microsoft Entra ID) and `[access]` roles in "
                 "`.streamlit/secrets.toml`, or bind to 127.0.0.1 (see SECURITY.md).")
        st.stop()
    who = access.Access(True, frozenset(Role), "local user (dashboard)")
    st.sidebar.caption("Local mode: no sign-in, listening on loopback only.")

# Settings and the store only after sign-in: their errors name the store's host and user.
try:
    config = data.settings()
    data.prepare(config, seed_demo)  # the one place the demo fleet is seeded
except SettingsError as error:
    st.error(f"**Configuration error.** {error}. Fix it in `.streamlit/secrets.toml` or the "
             "environment (see the README, section *Configuration*), then reload.")
    st.stop()
except StoreError as error:
    st.error(f"**The snapshot store cannot be opened.** {error}. Check `[store] url` in "
             "`.streamlit/secrets.toml` (see the README, section *Configuration*).")
    st.stop()

if data.is_demo(config.store_url):
    st.badge("Demo data", icon=":material/science:", color="orange",
             help="A fictional fleet seeded on first start. Point the store at real "
                  "collections to leave demo mode (README, section Configuration).")

# The chain's state on every page: a store that fails verification is a red banner everywhere.
integrity.show(config.store_url, config.signing_key)

PAGES = {
    "overview": st.Page("views/overview.py", title="Overview", icon=":material/dashboard:",
                        default=True),
    "hosts": st.Page("views/hosts.py", title="Hosts", icon=":material/dns:"),
    "worklist": st.Page("views/worklist.py", title="Worklist", icon=":material/checklist:"),
    "collection": st.Page("views/collection.py", title="Collection", icon=":material/sync:"),
    "snapshots": st.Page("views/snapshots.py", title="Snapshots", icon=":material/verified:"),
    "catalog": st.Page("views/catalog.py", title="Catalogue", icon=":material/menu_book:"),
}
# Which advisory the pages judge by (issue 19): March 2021 by default, as before; each page
# reads it through data.chosen_advisory.
st.sidebar.selectbox("Advisory", data.advisory_choices(), key="advisory",
                     format_func=data.advisory_label,
                     help="The advisory the headline, the Hosts page and the Worklist judge by. "
                          "'All advisories' shows each server at its worst. Snapshots saved "
                          "before per-advisory verdicts hold March 2021 only.")
st.session_state["who"] = who.who  # for the audit log of the pages that record actions
st.session_state["roles"] = tuple(sorted(who.roles))  # what the pages may offer this person

# Pages a role may not use are not offered at all: not in the navigation, not reachable by URL.
st.navigation([PAGES[name] for name in who.pages()]).run()
