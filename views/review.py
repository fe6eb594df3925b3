"""Review: check the least certain predictions and the close venomous calls; confirm or correct them; add or
remove species x country range records."""

import os

import pandas as pd
import streamlit as st

from snakeweb.countries import all_countries
from snakeweb.decisions import CountryPrior
from snakeweb.errors import SnakewebError, shell_word
from snakeweb.ranges import add_range_override, range_override_log
from snakeweb.review import QUEUES, add_review, review_export, review_queue
from snakeweb.stored_predictions import StalePredictionsError
from views.common import catalogue, current_store, image_grid

RECORD_WORDS = {1: "recorded present", 0: "recorded absent", -1: "no record"}


@st.cache_data(show_spinner=False, max_entries=2)
def shipped_table(path: str, modified: float) -> CountryPrior:
    """The species x country table the store was built with, read once per file version (it takes about a second)."""
    return CountryPrior.from_csv(path, notes=False)  # (said at ingest)


store = current_store()
st.title("Review predictions")
reviewer = st.session_state.get("reviewer")
if not reviewer:
    reviewer = st.text_input("Your name (stored with each review and range record)")

if "review_saved" in st.session_state:  # the sentence of the save that triggered this rerun
    st.success(st.session_state.pop("review_saved"))
kind = st.radio("Queue", QUEUES, horizontal=True,
                format_func={"low-confidence": "lowest confidence first",
                             "venomous-runner-up": "venomous or unknown-status species a close second"}.get)
try:
    queue = review_queue(store, kind, limit=100)
except StalePredictionsError as exc:  # another head's or damaged rows: no queue, the sentence names predict
    st.error(str(exc))
    queue = None
if queue is None:
    pass
elif queue.empty:
    st.success("Nothing left in this queue.")
else:
    shown = [c for c in ("observation_id", "answer", "answer_rank", "p_venomous", "top_species", "top_probability", "second_species",
                         "second_probability") if c in queue.columns]
    st.dataframe(queue[shown], hide_index=True, column_config={
        "answer": st.column_config.TextColumn("answer", help="what identify would say (rank roll-up, venom rule)"),
        "p_venomous": st.column_config.ProgressColumn("p(venomous)", min_value=0.0, max_value=1.0, format="percent"),
    })
    observation = st.selectbox("Observation", queue["observation_id"].tolist())
    row = queue.set_index("observation_id").loc[observation]
    images = catalogue(store)
    image_grid(images[images["observation_id"] == observation].reset_index().head(8), key="review")
    species = store.species()
    options = species["class_id"].tolist()
    names = dict(zip(species["class_id"], species["binomial_name"]))
    # start from the photo's current label, never the model's guess: one click on Save must not relabel a viper
    labelled = pd.notna(row["label"]) and int(row["label"]) in options
    st.caption(f"Current label: {names[int(row['label'])]}" if labelled else
               f"No label yet (the model's most likely species is {row['top_species']}): choose the species you see.")
    # labelled: start from the label; unlabelled: start from nothing, so Save never files the model's guess unread
    new_class = st.selectbox("Species", options, index=options.index(int(row["label"])) if labelled else None,
                             format_func=lambda c: f"{names[c]} ({c})", placeholder="choose a species")
    note = st.text_input("Note (optional)")
    if st.button("Save review", type="primary", disabled=new_class is None):
        try:
            add_review(store, observation, reviewer or "", int(new_class), note)
            # said after the rerun that refreshes the queue (a message drawn before st.rerun() is thrown away)
            st.session_state["review_saved"] = f"Saved: {observation} is {names[int(new_class)]}."
            st.rerun()
        except SnakewebError as exc:
            st.error(str(exc))

st.subheader("Species ranges")
st.caption("Record that a species is found in a country (adds it to the range) or is not found there (takes it out). "
           "Records are logged with your name and the time, stored over the shipped table (the latest record of a pair "
           "wins, so a later record undoes an earlier one) and used by the next identification.")
if "range_saved" in st.session_state:  # the sentence of the save that triggered this rerun
    st.success(st.session_state.pop("range_saved"))
range_species = store.species()
if range_species.empty:
    st.info("This store has no species yet; build it first.")
else:
    range_names = dict(zip(range_species["class_id"].astype(int), range_species["binomial_name"]))
    country_names = dict(all_countries())
    pick, where = st.columns(2)
    range_class = pick.selectbox("Species", list(range_names), format_func=lambda c: f"{range_names[c]} ({c})", key="range-species")
    # a list to pick from, not free text: a record for a country the reviewer did not mean would move probability
    range_country = where.selectbox("Country (type to search)", list(country_names), key="range-country",
                                    format_func=lambda c: f"{country_names[c]} ({c})")
    shipped, path = None, store.get_meta("country_table")
    if path:
        try:
            shipped = shipped_table(str(path), os.path.getmtime(path))
        except (OSError, SnakewebError) as exc:
            st.warning(f"The shipped species x country table {path} cannot be read ({exc}); only range records apply.")
    said = ("No shipped species x country table" if shipped is None
            else f"Shipped table: **{RECORD_WORDS[int(shipped.records([range_names[range_class]], range_country)[0])]}**")
    log = range_override_log(store)
    pair = log[(log["class_id"] == range_class) & (log["country_code"] == range_country)]
    latest = ("" if pair.empty else f"; range record in effect: {'present' if pair.iloc[0]['present'] else 'not found there'} "
              f"(by {pair.iloc[0]['reviewer']}, {pair.iloc[0]['changed_at']:%Y-%m-%d %H:%M} UTC)")
    st.write(f"{said}{latest}.")
    found = st.radio("Record", ("recorded present", "not found there"), horizontal=True, key="range-present")
    range_note = st.text_input("Source or note (optional)", key="range-note")
    if st.button("Save range record", key="range-save"):
        try:  # an empty reviewer name is refused here with a sentence
            add_range_override(store, range_class, range_country, found == "recorded present", reviewer or "", range_note)
            st.session_state["range_saved"] = f"Saved: {range_names[range_class]} {found} in {country_names[range_country]} ({range_country})."
            st.rerun()
        except SnakewebError as exc:
            st.error(str(exc))
    if log.empty:
        st.caption("No range records yet: the shipped table applies as it is.")
    else:
        st.dataframe(log, hide_index=True)

st.subheader("Reviews so far")
done = review_export(store)  # each review with the answer it was made on and which model, head and store gave it
st.dataframe(done, hide_index=True)
# a cell a spreadsheet would run as a formula (=, +, -, @) is written with a leading quote (OWASP CSV injection)
safe = done.apply(lambda col: col.map(lambda v: "'" + v if isinstance(v, str) and v[:1] in ("=", "+", "-", "@") else v))
st.download_button("Export reviews (CSV)", safe.to_csv(index=False), "reviews.csv", "text/csv", disabled=done.empty)
st.caption(f"Retrain on corrected labels with `python -m pipelines train --store {shell_word(store.root)} --include-reviews`: "
           "it also makes the stored predictions again, so these queues follow the new head; later `train` and `build` "
           "keep the reviews until `--no-include-reviews`.")
