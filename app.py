"""snakeweb dashboard: `streamlit run app.py`. Login gate, store choice and page navigation; every page is a
thin view over `snakeweb` (see views/)."""

from __future__ import annotations

import os

import streamlit as st

from snakeweb.auth import check_reviewer
from snakeweb.errors import SnakewebError
from views.common import current_store, identifier

st.set_page_config(page_title="snakeweb", page_icon="🐍", layout="wide")


def configured_secrets() -> dict:
    try:
        return {key: st.secrets[key] for key in ("auth", "reviewers") if key in st.secrets}
    except (FileNotFoundError, KeyError, st.errors.StreamlitSecretNotFoundError):
        return {}


def login_gate() -> None:
    """With authentication configured, nothing else renders until the user is logged in; the reviewer
    identity is then the logged-in user."""
    secrets = configured_secrets()
    # hosted: reviewers may read and review, but not build stores or open other directories from the page
    st.session_state["hosted"] = bool(secrets) and os.environ.get("SNAKEWEB_ALLOW_BUILD") != "1"
    if "auth" in secrets:
        if not st.user.is_logged_in:
            st.title("snakeweb")
            st.write("Log in to use this dashboard.")
            st.button("Log in", on_click=st.login, type="primary")
            st.stop()
        st.session_state["reviewer"] = st.user.get("email") or st.user.get("name")
        st.sidebar.button("Log out", on_click=st.logout)
    elif "reviewers" in secrets and not st.session_state.get("reviewer"):
        st.title("snakeweb")
        with st.form("login"):
            name = st.text_input("Reviewer name")
            password = st.text_input("Password", type="password")
            if st.form_submit_button("Log in", type="primary"):
                if check_reviewer(dict(secrets["reviewers"]), name, password):
                    st.session_state["reviewer"] = name
                    st.rerun()
                st.error("Unknown reviewer or wrong password.")
        st.stop()


login_gate()
store = current_store()
has_store = store.exists()


def home() -> None:
    # "/" only forwards to the first page: a real page made the default is served at "/" alone, so its own URL
    # (/identify) answered "Page not found"; with this hidden default every page keeps the URL it is linked by
    st.switch_page(pages["identify" if has_store else "build"])


pages = {
    "home": st.Page(home, title="snakeweb", url_path="home", default=True, visibility="hidden"),
    "build": st.Page("views/build.py", title="Build", icon="🛠️", url_path="build"),
}
# without a store only Build is in the menu; the others stay registered (hidden) so their URLs still resolve
for name, title, icon in [("identify", "Identify", "🐍"), ("search", "Search", "🔎"), ("explore", "Explore", "🗺️"),
                          ("metrics", "Metrics", "📊"), ("review", "Review", "✅")]:
    pages[name] = st.Page(f"views/{name}.py", title=title, icon=icon, url_path=name,
                          visibility="visible" if has_store else "hidden")
if has_store:
    try:  # loaded here, not in the sidebar: the main area says what it is doing while the model loads
        loaded, load_error = identifier(store), None
    except SnakewebError as exc:
        loaded, load_error = None, exc
    with st.sidebar:
        st.write(f"**Store** `{store.root}`")
        if loaded is not None:
            st.write(f"**Model** {loaded.backbone.config.name}")
            st.caption(loaded.backbone.config.description)
            st.write(f"**Head** {loaded.head.kind}, {len(loaded.head.label_map)} species")
        else:
            st.warning(str(load_error))
        if st.session_state.get("reviewer"):
            st.write(f"**Reviewer** {st.session_state['reviewer']}")
order = ["home", "identify", "search", "explore", "metrics", "review", "build"]
page = st.navigation([pages[name] for name in order])
try:
    if has_store or page in (pages["home"], pages["build"]):
        page.run()
    else:  # e.g. a bookmarked /identify on a fresh clone: say what to do instead of a missing-store error
        st.title(page.title)
        st.info(f"There is no store at `{store.root}` yet: build one first.")
        st.page_link(pages["build"], label="Build a store", icon="🛠️")
except SnakewebError as exc:  # e.g. the store is being rebuilt: a sentence, never a traceback
    st.error(str(exc))
