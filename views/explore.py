"""Explore: the UMAP map of the store, every point drawn (WebGL); select a region to see its species and images."""

import json

import numpy as np
import streamlit as st

from snakeweb.explore import COLOURINGS, MAX_POINTS, PALETTE, MapPoints, map_points, selection_counts, selection_images
from snakeweb.store import Store
from views.common import VENOM_LABELS, current_store, image_grid
from views.explore_map import LEGEND_MAX, DrawnMap, map_figure, selected_positions

SHOWN = 24  # images shown from a selection, drawn at random from it
TOP = 8  # species listed for a selection before "All N species"


@st.cache_data(show_spinner="Reading the map…", max_entries=2)
def points_of(root: str, version: tuple) -> MapPoints:
    return map_points(Store(root))


@st.cache_resource(show_spinner=False, max_entries=8)
def drawn_map(root: str, version: tuple, colouring: str) -> DrawnMap:
    """The figure of one colouring, built once and shared (read only: st.plotly_chart serialises a copy)."""
    return map_figure(points_of(root, version), colouring)


def map_version(store: Store) -> tuple[dict, tuple]:
    """(the projection's record, a version key): the store's content version, so a new projection, new
    predictions or relabelled images change the key, and a saved review does not."""
    settings = store.get_meta("projection") or {}
    return settings, (json.dumps(settings, sort_keys=True), store.content_version())


store = current_store()
st.title("Explore the embedding map")
settings, version = map_version(store)
points = points_of(str(store.root), version)
if len(points) == 0:
    st.info("No map yet: run `python -m pipelines project --store ...` to compute it.")
    st.stop()
st.caption(
    f"{len(points):,} points ({settings.get('method', '?')}, PCA to {settings.get('pca_components', '-')} dims first). "
    + (f"The store has {points.total:,}: a uniform sample of {MAX_POINTS:,} is drawn, the most a browser draws smoothly."
       if points.total > len(points) else "All points shown.")
)
colouring = st.selectbox("Colour by", list(COLOURINGS), format_func=COLOURINGS.get)
if colouring == "prediction" and points.prediction_note:  # every point is grey: say why, and what to run
    st.warning(points.prediction_note + " Until then no point is called correct or incorrect.")
categories = len(points.categories[colouring])
st.caption(("" if categories <= LEGEND_MAX else f"{categories:,} {COLOURINGS[colouring]}: " + (
    "each its own colour. " if categories <= len(PALETTE) else f"{len(PALETTE)} colours, each repeated only between clusters far apart. "))
    + "Drag to select a region (a box; a lasso from the toolbar), scroll to zoom, double-click to reset; in pan mode a click "
      "selects one point.")
drawn = drawn_map(str(store.root), version, colouring)
event = st.plotly_chart(drawn.figure, on_select="rerun", selection_mode=("points", "box", "lasso"), key="map",
                        width="stretch", config={"scrollZoom": True, "displaylogo": False, "plotGlPixelRatio": 1})
selected = selected_positions(event, drawn)
if selected is None:
    st.info("Select a region of the map to see its species and images.")
    st.stop()
st.subheader(f"{len(selected):,} selected image(s)")
if len(selected) == 0:
    st.stop()
counts = selection_counts(points, selected)
# the first few as markdown: the table component's script, loaded on a page's first table, cost the first
# selection 0.4 s (benchmarks/explore_scale.py)
rows = counts.head(TOP).itertuples(index=False)
st.markdown("| species | venom status | images |\n|---|---|---:|\n"
            + "\n".join(f"| {name.replace('|', '/')} | {VENOM_LABELS.get(venom, venom)} | {count:,} |" for name, venom, count in rows))
if len(counts) > TOP and st.toggle(f"All {len(counts):,} species of the selection"):
    st.dataframe(counts, hide_index=True, width="content", height=min(420, 38 + 35 * len(counts)))
shown = np.sort(np.random.default_rng(0).choice(selected, min(SHOWN, len(selected)), replace=False))
if len(selected) > SHOWN:
    st.caption(f"{SHOWN} of the {len(selected):,} images, drawn at random:")
image_grid(selection_images(store, points.image_id[shown]), columns=6, key="explore", search_button=True)
