"""Review: check the least certain predictions and the close venomous calls; confirm or correct them."""

import streamlit as st

from snakeweb.errors import SnakewebError
from snakeweb.review import QUEUES, add_review, review_queue, reviews
from views.common import catalogue, current_store, image_grid

store = current_store()
st.title("Review predictions")
reviewer = st.session_state.get("reviewer")
if not reviewer:
    reviewer = st.text_input("Your name (stored with each review)")

kind = st.radio("Queue", QUEUES, horizontal=True,
                format_func={"low-confidence": "lowest confidence first",
                             "venomous-runner-up": "venomous or unknown-status species a close second"}.get)
queue = review_queue(store, kind, limit=100)
if queue.empty:
    st.success("Nothing left in this queue.")
else:
    st.dataframe(queue[["observation_id", "top_species", "top_probability", "second_species", "second_probability"]],
                 hide_index=True)
    observation = st.selectbox("Observation", queue["observation_id"].tolist())
    row = queue.set_index("observation_id").loc[observation]
    images = catalogue(store)
    image_grid(images[images["observation_id"] == observation].reset_index().head(8), key="review")
    species = store.species()
    options = species["class_id"].tolist()
    names = dict(zip(species["class_id"], species["binomial_name"]))
    default = options.index(int(row["top_class_id"])) if int(row["top_class_id"]) in options else 0
    new_class = st.selectbox("Species", options, index=default, format_func=lambda c: f"{names[c]} ({c})")
    note = st.text_input("Note (optional)")
    if st.button("Save review", type="primary"):
        try:
            add_review(store, observation, reviewer or "", int(new_class), note)
            st.success(f"Saved: {observation} is {names[int(new_class)]}.")
            st.rerun()
        except SnakewebError as exc:
            st.error(str(exc))

st.subheader("Reviews so far")
done = reviews(store)
st.dataframe(done, hide_index=True)
# a cell a spreadsheet would run as a formula (=, +, -, @) is written with a leading quote (OWASP CSV injection)
safe = done.apply(lambda col: col.map(lambda v: "'" + v if isinstance(v, str) and v[:1] in ("=", "+", "-", "@") else v))
st.download_button("Export reviews (CSV)", safe.to_csv(index=False), "reviews.csv", "text/csv", disabled=done.empty)
st.caption("Retrain on corrected labels with `python -m pipelines train --store ... --include-reviews`.")
