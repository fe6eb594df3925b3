"""What every page shares: the chosen store, heavy objects loaded once per process, image grids."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from snakeweb.identify import Identifier
from snakeweb.images import ImageReadError, thumbnail_jpeg
from snakeweb.search import image_catalogue
from snakeweb.settings import store_path
from snakeweb.store import Store

# how each venom status is shown: unknown is never shown (or treated) as harmless
VENOM_LABELS = {"venomous": "☠️ VENOMOUS", "harmless": "harmless", "unknown": "❓ venom status unknown"}
VENOM_MARKS = {"venomous": " ☠️", "unknown": " ❓"}


def current_store() -> Store:
    return Store(st.session_state.get("store_root") or store_path())


def _version(store: Store) -> tuple:
    """Changes whenever a rebuild changes the photos, labels, head or index, so caches reload (not on a review)."""
    return store.content_version()


@st.cache_resource(show_spinner=False, max_entries=2)
def _identifier(root: str, version: tuple) -> Identifier:
    return Identifier(Store(root))


_LOADED: set[tuple] = set()  # (root, version) of identifiers this process has loaded


def identifier(store: Store) -> Identifier:
    """Model, head and index: loaded once per process and shared by all sessions (read-only use). While they
    load, the page says what it is doing (a first load on a machine converts the model for OpenVINO)."""
    key = (str(store.root), _version(store))
    if key in _LOADED:
        return _identifier(*key)
    with st.spinner(loading_message(store), show_time=True):
        loaded = _identifier(*key)
    _LOADED.add(key)
    return loaded


def loading_message(store: Store) -> str:
    """What the spinner says: the model load on this machine (OpenVINO converting it the first time, or not),
    then the head and index."""
    from snakeweb.models import BackboneConfig
    from snakeweb.openvino_backend import load_message

    try:
        recorded = store.get_meta("model")
        model = load_message(BackboneConfig(**recorded["config"])).removesuffix("…") if recorded else "Loading the model"
    except Exception:  # the store is busy or from another version: loading itself will say what is wrong
        model = "Loading the model"
    return model + ", head and index…"


@st.cache_data(show_spinner=False, max_entries=4)
def _catalogue(root: str, version: tuple) -> pd.DataFrame:
    return image_catalogue(Store(root))


def catalogue(store: Store) -> pd.DataFrame:
    return _catalogue(str(store.root), _version(store))


@st.cache_data(show_spinner=False, max_entries=5000)
def thumbnail(path: str) -> bytes | None:
    try:
        return thumbnail_jpeg(path)
    except ImageReadError:
        return None


def image_grid(rows: pd.DataFrame, columns: int = 4, key: str = "grid", search_button: bool = False) -> None:
    """Images with species and similarity captions; optionally a button that opens the image in Search."""
    if rows.empty:
        st.info("No images to show.")
        return
    cells = st.columns(columns)
    for i, row in enumerate(rows.itertuples()):
        with cells[i % columns]:
            name = row.binomial_name if isinstance(row.binomial_name, str) else "unlabelled"
            flag = VENOM_MARKS.get(getattr(row, "venom_status", None), "")
            similarity = f" · {row.similarity:.3f}" if hasattr(row, "similarity") else ""
            picture = thumbnail(row.path)
            if picture is None:
                st.warning(f"{row.path} can no longer be read.")
            else:
                st.image(picture, caption=f"{name}{flag}{similarity}", width="stretch")
            if search_button and st.button("Search similar", key=f"{key}-{row.image_id}"):
                st.session_state["search_image_id"] = int(row.image_id)
                st.switch_page("views/search.py")
