"""Identify: photos of one animal -> top-5 species, venom flags, the venom-aware call, 12 nearest images."""

import pandas as pd
import streamlit as st

from snakeweb.errors import SnakewebError
from views.common import current_store, identifier, image_grid

store = current_store()
st.title("Identify a snake")
model = identifier(store)  # a SnakewebError here is shown as a sentence by app.py

uploads = st.file_uploader("Photos of one animal (they are combined into one identification)", accept_multiple_files=True)
left, right = st.columns(2)
with left:
    country = st.text_input("Country where it was seen (ISO code or name, optional)",
                            disabled=model.prior is None,
                            help=None if model.prior else "Build the store with --country-table to enable the country prior.")
with right:
    threshold = st.slider("Call it uncertain below this top probability", 0.0, 1.0, 0.3, 0.05)
if not uploads:
    st.info("Upload one or more photos of the same snake.")
    st.stop()
try:
    result = model.identify([(u.name, u.getvalue()) for u in uploads], country=country or None, uncertain_below=threshold)
except SnakewebError as exc:
    st.error(str(exc))
    st.stop()
for name, why in result.rejected.items():
    st.warning(f"{name} was skipped: {why}")

likely_venomous = [s for s in result.species if s.venomous and s.probability >= 0.05]
if likely_venomous:
    st.error(f"☠️ Venomous species among the likely candidates: {', '.join(s.binomial_name for s in likely_venomous)}. "
             "Keep your distance and treat this snake as dangerous.")
top = result.species[0]
if result.out_of_store:
    st.warning("This does not look like a snake in this store. The closest matches are shown, but trust none of them.")
elif result.uncertain:
    st.warning(f"Uncertain: no species reaches {threshold:.0%}. Candidates are listed below; ask an expert.")
else:
    st.subheader(f"{top.binomial_name} · {top.probability:.0%} · {'VENOMOUS' if top.venomous else 'harmless'}")
st.caption(result.explanation)
# a static table: drawn at once, unlike the interactive grid (identify is the page people wait on)
st.table(pd.DataFrame([{"species": s.binomial_name, "class id": s.class_id, "probability": f"{s.probability:.1%}",
                        "venomous": "☠️ venomous" if s.venomous else "harmless"} for s in result.species]).set_index("species"))
st.subheader("Nearest reference images")
neighbours = pd.DataFrame([n.__dict__ for n in result.neighbours])
neighbours["venomous"] = [model.venomous.get(c, False) if c is not None else False for c in neighbours["class_id"]]
image_grid(neighbours, key="identify", search_button=True)
