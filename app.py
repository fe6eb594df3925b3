"""snakeweb dashboard: `streamlit run app.py`. A thin view over `snakeweb`; no logic lives here."""

from __future__ import annotations

import streamlit as st

from snakeweb.errors import SnakewebError
from snakeweb.identify import Identifier
from snakeweb.settings import store_path
from snakeweb.store import Store

st.set_page_config(page_title="snakeweb", page_icon="🐍", layout="wide")


@st.cache_resource(show_spinner="Loading model, head and index…")
def load_identifier(root: str) -> Identifier:
    return Identifier(Store(root))


def build_help(store: Store) -> None:
    st.title("snakeweb: build a store first")
    st.write(f"There is no store at `{store.root}` yet. Build one from a folder with one subfolder of photos per species:")
    st.code(
        f"python -m pipelines build --store {store.root} --images PATH/TO/PHOTOS \\\n"
        "    --species ../shared/data/snakeclef/class_list.csv --model dinov2-small-offline",
        language="bash",
    )
    st.write("Then reload this page. To use a store elsewhere, start the app with `SNAKEWEB_STORE=DIR streamlit run app.py`.")


def identify_page(store: Store) -> None:
    try:
        identifier = load_identifier(str(store.root))
    except SnakewebError as exc:
        st.error(str(exc))
        return
    meta = store.get_meta("model")
    st.sidebar.write(f"**Store** `{store.root}`")
    st.sidebar.write(f"**Model** {meta['config']['name']}")
    st.sidebar.caption(meta["config"]["description"])
    st.sidebar.write(f"**Head** {identifier.head.kind}, {len(identifier.head.label_map)} species")

    st.title("Identify a snake")
    uploads = st.file_uploader("Photos of one animal", type=None, accept_multiple_files=True)
    if not uploads:
        st.info("Upload one or more photos of the same snake.")
        return
    try:
        result = identifier.identify([(u.name, u.getvalue()) for u in uploads])
    except SnakewebError as exc:
        st.error(str(exc))
        return
    for name, why in result.rejected.items():
        st.warning(f"{name} was skipped: {why}")
    top = result.species[0]
    if any(s.venomous for s in result.species if s.probability >= 0.1):
        st.error("⚠️ A venomous species is among the likely candidates: treat this snake as dangerous.")
    st.subheader(f"{top.binomial_name}: {top.probability:.0%}")
    st.dataframe(
        [{"species": s.binomial_name, "class id": s.class_id, "probability": round(s.probability, 4),
          "venomous": "VENOMOUS" if s.venomous else "harmless"} for s in result.species],
        hide_index=True,
    )
    st.subheader("Nearest reference images")
    columns = st.columns(4)
    for i, neighbour in enumerate(result.neighbours):
        with columns[i % 4]:
            st.image(neighbour.path, caption=f"{neighbour.binomial_name or 'unlabelled'} · {neighbour.similarity:.3f}")


store = Store(store_path())
if store.exists():
    identify_page(store)
else:
    build_help(store)
