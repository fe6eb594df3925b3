"""Identify: photos of one animal -> how likely it is venomous (first, in one line), the answer at the rank the
evidence supports, the range flag, the classifier's top 5, the nearest reference images and where the answer
came from. Every number and sentence comes from `Identifier.identify`; this page only lays them out."""

import pandas as pd
import streamlit as st

from snakeweb.countries import all_countries, country_name
from snakeweb.errors import SnakewebError
from views.answer_parts import answer_title, candidates_table, venom_banner
from views.common import current_store, identifier, image_grid

RANGE_MODE_LABELS = {"prior": "down-weight species not recorded there", "filter": "only species recorded there"}
RANK_LABELS = {None: "auto (as precise as validation allows)", "species": "species", "genus": "genus", "family": "family"}

store = current_store()
st.title("Identify a snake")
model = identifier(store)  # a SnakewebError here is shown as a sentence by app.py

uploads = st.file_uploader("Photos of one animal (they are combined into one identification)", accept_multiple_files=True)
country_column, range_column, rank_column = st.columns(3)
prior = None if model.prior_error else model.ranges.current()  # the shipped table and/or the team's range records
with country_column:
    # a list to pick from, not free text: a country the user did not mean would move probability between species
    names = dict(all_countries())
    country = st.selectbox("Country where it was seen (optional; type to search)", [None, *names],
                           format_func=lambda c: "not given" if c is None else f"{names[c]} ({c})",
                           disabled=prior is None,
                           help=None if prior else (model.prior_error or "Build the store with --country-table, or add "
                                                    "range records on the Review page, to enable the country check."))
with range_column:
    range_mode = st.radio("Range check", list(RANGE_MODE_LABELS), format_func=RANGE_MODE_LABELS.get, disabled=country is None,
                          help="What the country does to species with no record there. Down-weighting keeps an escaped "
                               "pet or a range extension findable; filtering never answers a species not recorded there.")
with rank_column:
    rank = st.selectbox("Answer at", list(RANK_LABELS), format_func=RANK_LABELS.get,
                        help="Auto names the species only when validation showed that confident species answers are "
                             "right often enough, else the genus or family, else 'unknown snake'.")
if model.prior_error:
    st.warning(f"The country check is off: {model.prior_error}")
elif prior is None:
    st.caption("The country picker is off: this store has no species x country table (--country-table) and no range "
               "records (Review page).")
if not uploads:
    st.info("Upload one or more photos of the same snake.")
    st.stop()
try:
    result = model.identify([(u.name, u.getvalue()) for u in uploads], country=country, rank=rank, range_mode=range_mode)
except SnakewebError as exc:
    st.error(str(exc))
    st.stop()


venom_banner(result)
st.subheader(answer_title(result))
st.markdown(result.answer_text)
if result.out_of_range and result.unconstrained_top is not None:
    where = country_name(result.country) if result.country else "the country given"
    st.warning(f"{result.unconstrained_top.binomial_name} is outside its known range in {where}: a possible escaped pet "
               "or range extension — worth a review.", icon="📍")
if result.out_of_store:
    st.warning("This does not look like a snake in this store. The closest matches are shown, but trust none of them.")
for failure in result.failures:  # by position: several uploads may share a file name
    st.warning(f"Photo {failure.index + 1} ({failure.name}) was skipped: {failure.reason}")
for note in result.notes:
    st.info(note)

if result.country_prior_applied:
    raw_column, adjusted_column = st.columns(2)
    with raw_column:
        st.subheader("Top 5 from the classifier")
        st.table(candidates_table(result.raw_top_k))
    with adjusted_column:
        mode = "recorded species only" if result.range_mode == "filter" else "others down-weighted"
        st.subheader(f"After the range check in {country_name(result.country)}")
        st.caption(f"{RANGE_MODE_LABELS[result.range_mode].capitalize()} ({mode}).")
        st.table(candidates_table(result.species))
else:
    st.subheader("Top 5 from the classifier")
    st.table(candidates_table(result.raw_top_k))

st.subheader("Nearest reference images")
neighbours = pd.DataFrame([n.__dict__ for n in result.neighbours])
if not neighbours.empty:
    neighbours["venom_status"] = [None if c is None else model.venom_status.get(c, "unknown") for c in neighbours["class_id"]]
image_grid(neighbours, key="identify", search_button=True)

with st.expander("Where this answer came from"):
    provenance, decision = result.provenance, result.provenance.get("decision", {})
    thresholds = decision.get("thresholds")
    st.markdown("\n".join([
        f"- **Model** {provenance.get('model_name') or 'unknown'} (`{provenance.get('model_fingerprint') or '—'}`), "
        f"features `{provenance.get('feature_kind')}`",
        f"- **Head** {provenance.get('head_kind')} `{provenance.get('head_id')}`",
        f"- **Store** `{provenance.get('store_id') or '—'}`",
        f"- **Answer rank** {decision.get('rank')}; thresholds chosen on validation: "
        + ("none (the most likely species, unless withheld)" if not thresholds else
           ", ".join(f"{r} {t:.2f}" if t is not None else f"{r} never" for r, t in thresholds.items())
           + (f" (target precision {decision['target_precision']:.0%})" if decision.get("target_precision") else "")),
        f"- **Range check** {decision.get('range_mode')} · country "
        + (f"{country_name(result.country)} ({result.country})" if result.country else "not given")
        + f" · table `{decision.get('country_table') or 'none'}` · range records version {decision.get('range_records')}",
        f"- **Source of the answer** {result.prediction_source}",
        f"- **snakeweb** {provenance.get('snakeweb_version')}",
    ]))
    st.caption(result.explanation)
    st.json(result.to_json()["provenance"], expanded=False)
