"""The dashboard frame: page config, configuration check, demo badge, navigation."""

from __future__ import annotations

import streamlit as st

from settings import SettingsError
from store import StoreError
from views import data

st.set_page_config(page_title="ProxyLogon compliance", page_icon=":material/shield:",
                   layout="wide")

try:
    config = data.settings()
    data.prepare(config)
except SettingsError as error:
    st.error(f"**Configuration error.** {error}. Fix it in `.streamlit/secrets.toml` or the "
             "environment (see the README, section *Configuration*), then reload.")
    st.stop()
except StoreError as error:
    st.error(f"**The snapshot store cannot be opened.** {error}. Check `[store] url` in "
             "`.streamlit/secrets.toml` (see the README, section *Configuration*).")
    st.stop()

if data.is_demo(data.latest(config.store_url)):
    st.badge("Demo data", icon=":material/science:", color="orange",
             help="A fictional fleet seeded on first start. Point the store at real "
                  "collections to leave demo mode (README, section Configuration).")

pages = [
    st.Page("views/overview.py", title="Overview", icon=":material/dashboard:", default=True),
    st.Page("views/hosts.py", title="Hosts", icon=":material/dns:"),
    st.Page("views/worklist.py", title="Worklist", icon=":material/checklist:"),
    st.Page("views/collection.py", title="Collection", icon=":material/sync:"),
    st.Page("views/snapshots.py", title="Snapshots", icon=":material/verified:"),
    st.Page("views/catalog.py", title="Catalogue", icon=":material/menu_book:"),
]
st.navigation(pages).run()
