"""A stand-alone Streamlit page drawing the Explore map with one candidate, for benchmarks/explore_scale.py:

    SNAKEWEB_STORE=DIR EXPLORE_CANDIDATE=plotly|plotly-names|pydeck streamlit run benchmarks/explore_candidate_page.py

Same data (snakeweb.explore.map_points, cached), same selection panel (species counts + image grid) as the
product's page; only the chart differs. pydeck's selection is by clicking objects (Streamlit offers no box or
lasso for it), so its interaction is a click on one point."""

import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from snakeweb.explore import COLOURINGS, MapPoints, map_points, selection_counts, selection_images  # noqa: E402
from snakeweb.store import Store  # noqa: E402
from views.common import image_grid  # noqa: E402

CANDIDATE = os.environ.get("EXPLORE_CANDIDATE", "plotly")
st.set_page_config(page_title="explore candidate", layout="wide")


@st.cache_data(max_entries=1)
def points_of(root: str) -> MapPoints:
    return map_points(Store(root))


@st.cache_data(max_entries=4)
def deck_records(root: str, colouring: str) -> pd.DataFrame:
    points = points_of(root)
    rgb = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in points.colours[colouring]], dtype=np.uint8)[points.codes[colouring]]
    return pd.DataFrame({"x": points.x.round(3), "y": points.y.round(3), "r": rgb[:, 0], "g": rgb[:, 1], "b": rgb[:, 2]})


root = os.environ["SNAKEWEB_STORE"]
store = Store(root)
st.title("Explore the embedding map")
points = points_of(root)
st.caption(f"{len(points):,} points, {CANDIDATE}. All points shown.")
colouring = st.selectbox("Colour by", list(COLOURINGS), format_func=COLOURINGS.get)
if CANDIDATE.startswith("plotly"):
    from views.explore_map import map_figure, selected_positions

    drawn = map_figure(points, colouring)
    if CANDIDATE == "plotly-names":  # the species (genus, ...) name of each point on hover, as text
        names = np.asarray(points.categories[colouring], dtype=object)[points.codes[colouring]][drawn.order]
        for trace, start, end in zip(drawn.figure.data, drawn.starts, np.r_[drawn.starts[1:], len(drawn.order)]):
            trace.update(text=names[start:end], hoverinfo="text")
    event = st.plotly_chart(drawn.figure, on_select="rerun", selection_mode=("points", "box", "lasso"), key="map",
                            width="stretch", config={"scrollZoom": True})
    selected = selected_positions(event, drawn)
else:
    import pydeck as pdk

    frame = deck_records(root, colouring)
    layer = pdk.Layer("ScatterplotLayer", data=frame, id="points", get_position="[x, y]", get_fill_color="[r, g, b]",
                      get_radius=1, radius_units="pixels", radius_min_pixels=1, radius_max_pixels=1, pickable=True,
                      auto_highlight=True)
    span = float(max(np.ptp(points.x), np.ptp(points.y)))
    view = pdk.ViewState(target=[float(points.x.mean()), float(points.y.mean()), 0], zoom=float(np.log2(600 / span)))
    deck = pdk.Deck(layers=[layer], views=[pdk.View(type="OrthographicView", controller=True)], initial_view_state=view,
                    map_provider=None, map_style=None, height=640)
    event = st.pydeck_chart(deck, on_select="rerun", selection_mode="multi-object", key="map", height=640)
    indices = (event.selection.get("indices", {}) or {}).get("points") if event else None
    selected = np.asarray(indices, dtype=np.int64) if indices else None
if selected is None:
    st.info("Select a region of the map to see its species and images.")
    st.stop()
st.subheader(f"{len(selected):,} selected image(s)")
counts = selection_counts(points, selected)
left, right = st.columns([1, 3])
left.dataframe(counts, hide_index=True, width="stretch")
shown = np.sort(np.random.default_rng(0).choice(selected, min(24, len(selected)), replace=False))
with right:
    image_grid(selection_images(store, points.image_id[shown]), columns=6, key="explore")
