"""Identify: photos of one animal -> top-5 species, venom status, the venom-aware call, 12 nearest images."""

import pandas as pd
import streamlit as st

from snakeweb.countries import all_countries
from snakeweb.errors import SnakewebError
from views.common import VENOM_LABELS, current_store, identifier, image_grid

store = current_store()
st.title("Identify a snake")
model = identifier(store)  # a SnakewebError here is shown as a sentence by app.py

uploads = st.file_uploader("Photos of one animal (they are combined into one identification)", accept_multiple_files=True)
left, right = st.columns(2)
with left:
    # a list to pick from, not free text: a country the user did not mean would move probability between species
    choices = [None, *(code for code, _ in all_countries())]
    names = dict(all_countries())
    country = st.selectbox("Country where it was seen (optional; type to search)", choices,
                           format_func=lambda c: "not given" if c is None else f"{names[c]} ({c})",
                           disabled=model.prior is None,
                           help=None if model.prior else (model.prior_error
                                                          or "Build the store with --country-table to enable the country prior."))
if model.prior_error:
    st.warning(f"The country prior is off: {model.prior_error}")
elif model.prior is None:
    st.caption("The country picker is off: this store was built without a species x country table (--country-table).")
with right:
    threshold = st.slider("Call it uncertain below this top probability", 0.0, 1.0, 0.3, 0.05)
if not uploads:
    st.info("Upload one or more photos of the same snake.")
    st.stop()
try:
    result = model.identify([(u.name, u.getvalue()) for u in uploads], country=country, uncertain_below=threshold)
except SnakewebError as exc:
    st.error(str(exc))
    st.stop()
for failure in result.failures:  # by position: several uploads may share a file name
    st.warning(f"Photo {failure.index + 1} ({failure.name}) was skipped: {failure.reason}")
for note in result.notes:
    st.info(note)

likely_venomous = [s for s in result.species if s.venom_status == "venomous" and s.probability >= 0.05]
likely_unknown = [s for s in result.species if s.venom_status == "unknown" and s.probability >= 0.05]
if likely_venomous:
    st.error(f"☠️ Venomous species among the likely candidates: {', '.join(s.binomial_name for s in likely_venomous)}. "
             "Keep your distance and treat this snake as dangerous.")
if likely_unknown:
    st.warning(f"❓ Venom status unknown for likely candidates: {', '.join(s.binomial_name for s in likely_unknown)}. "
               "snakeweb has no venom record for them: treat them as possibly venomous.")
top = result.species[0]
if result.out_of_store:
    st.warning("This does not look like a snake in this store. The closest matches are shown, but trust none of them.")
elif result.uncertain:
    st.warning(f"Uncertain: no species reaches {threshold:.0%}. Candidates are listed below; ask an expert.")
else:
    st.subheader(f"{top.binomial_name} · {top.probability:.0%} · {VENOM_LABELS[top.venom_status]}")
st.caption(result.explanation)
# a static table: drawn at once, unlike the interactive grid (identify is the page people wait on)
st.table(pd.DataFrame([{"species": s.binomial_name, "class id": s.class_id, "probability": f"{s.probability:.1%}",
                        "venom status": VENOM_LABELS[s.venom_status]} for s in result.species]).set_index("species"))
st.subheader("Nearest reference images")
neighbours = pd.DataFrame([n.__dict__ for n in result.neighbours])
if not neighbours.empty:
    neighbours["venom_status"] = [None if c is None else model.venom_status.get(c, "unknown") for c in neighbours["class_id"]]
image_grid(neighbours, key="identify", search_button=True)
