"""Explore: the UMAP map of the store; select points to see their images."""

import altair as alt
import streamlit as st

from snakeweb.explore import MAX_POINTS, map_points
from views.common import current_store, image_grid

store = current_store()
st.title("Explore the embedding map")
points, rate = map_points(store)
if points.empty:
    st.info("No map yet: run `python -m pipelines project --store ...` to compute it.")
    st.stop()
settings = store.get_meta("projection", {})
st.caption(
    f"{len(points):,} points ({settings.get('method', '?')}, PCA to {settings.get('pca_components', '-')} dims first). "
    + (f"Sampled at {rate:.1%} per species to stay under {MAX_POINTS:,} points." if rate < 1 else "All points shown.")
)
colour = st.selectbox("Colour by", ["binomial_name", "genus", "venom_status", "prediction"],
                      format_func={"binomial_name": "species", "genus": "genus", "venom_status": "venom status",
                                   "prediction": "correct / incorrect"}.get)
brush = alt.selection_interval(name="area")
chart = (
    alt.Chart(points).mark_circle(size=18, opacity=0.7)
    .encode(x=alt.X("x", axis=None), y=alt.Y("y", axis=None),
            color=alt.Color(f"{colour}:N", legend=alt.Legend(columns=2, symbolLimit=60)),
            tooltip=["image_id", "binomial_name", "venom_status", "prediction"])
    .add_params(brush).properties(height=560)
)
event = st.altair_chart(chart, on_select="rerun", key="map", width="stretch")
selected = event.selection.get("area", {}) if event else {}
if selected and "x" in selected and "y" in selected:
    (x0, x1), (y0, y1) = selected["x"], selected["y"]
    inside = points[points["x"].between(min(x0, x1), max(x0, x1)) & points["y"].between(min(y0, y1), max(y0, y1))]
    st.subheader(f"{len(inside)} selected image(s)")
    st.dataframe(inside["binomial_name"].value_counts().rename("images"), width="content")
    image_grid(inside.head(24), columns=6, key="explore", search_button=True)
else:
    st.info("Drag on the map to select points and see their images.")
