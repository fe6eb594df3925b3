"""Metrics: the official SnakeCLEF numbers of the stored evaluation, per-species table and venom safety."""

import altair as alt
import pandas as pd
import streamlit as st

from snakeweb.decisions import DECISIONS, CountryPrior
from snakeweb.errors import SnakewebError
from snakeweb.evaluation import evaluate
from snakeweb.stages import export_submission
from views.common import current_store

store = current_store()
st.title("Metrics")


@st.cache_data(show_spinner="Scoring…", max_entries=8)
def scored(root: str, split: str, countries: tuple[str, ...], version: str) -> dict:
    from snakeweb.store import Store

    table = Store(root).get_meta("country_table")
    prior = CountryPrior.from_csv(table) if table else None
    return evaluate(Store(root), split, prior, countries=list(countries), save=False)


observations = store.query("SELECT DISTINCT split, country_code FROM observations WHERE class_id IS NOT NULL")
splits = [s for s in ("test", "val", "train") if s in set(observations["split"])]
if not splits:
    st.info("This store has no labelled observations to score.")
    st.stop()
left, right = st.columns(2)
split = left.selectbox("Split", splits, help="test is held out from training and from every choice made on validation")
countries = right.multiselect("Country", sorted(observations["country_code"].dropna().unique().tolist()))
try:
    report = scored(str(store.root), split, tuple(countries), str(store.get_meta("head", {}).get("training_digest")))
except SnakewebError as exc:
    st.error(str(exc))
    st.stop()

st.caption(f"{report['observations']} {split} observations, {report['head']} head, per observation "
           f"({report['aggregation']} over each observation's photos). Venom-aware = minimum expected Track2 cost, "
           f"venomous errors weighted x{report['chosen_on_validation'].get('venom_weight') or 1:g} (chosen on validation by Track1).")
if report.get("classes_with_unknown_venom_status"):
    st.warning(f"❓ {report['classes_with_unknown_venom_status']} species have venom status unknown: these numbers count them "
               "as venomous, as the venom-aware rule does. Build with a species table that has a venom flag for them.")
rows = []
for name, s in report["variants"].items():
    rule, prior = name.split("/prior=")
    rows.append({"decision": "venom-aware" if rule == "cost" else "argmax", "country prior": prior,
                 "macro F1": s["F1 Score"], "accuracy": s["Accuracy"], "Track1 ↑": s["Track1 Metric"], "Track2 ↓": s["Track2 Metric"],
                 "harmless→other harmless %": s["PSC"][0], "harmless→venomous %": s["PSC"][1],
                 "venomous→harmless %": s["PSC"][2], "venomous→other venomous %": s["PSC"][3]})
st.dataframe(pd.DataFrame(rows), hide_index=True)

variant = st.selectbox("Variant for the tables below", list(report["variants"]))
confusion = pd.DataFrame(report["variants"][variant]["venom_confusion"])
confusion.index.name, confusion.columns.name = "truth", "predicted"
st.subheader("Venomous / harmless confusion")
st.dataframe(confusion)

# the report's `venomous` means "counted as venomous" (venomous or unknown); show the status itself
statuses = store.species().set_index("class_id")["venom_status"]
table = pd.DataFrame(report["species_metrics"])
table = table[table["variant"] == variant].drop(columns="variant")
table.insert(2, "venom status", table["class_id"].map(statuses).fillna("unknown"))
table = table.drop(columns="venomous")
st.subheader("Per species")
needle = st.text_input("Search species")
if needle:
    table = table[table["binomial_name"].str.contains(needle, case=False, na=False)]
st.dataframe(table, hide_index=True, column_config={c: st.column_config.NumberColumn(format="%.3f") for c in ("precision", "recall", "f1")})
chart_rows = table[table["support"] > 0].sort_values("f1")
st.altair_chart(
    alt.Chart(chart_rows).mark_bar().encode(
        x=alt.X("f1", title="F1", scale=alt.Scale(domain=[0, 1])), y=alt.Y("binomial_name", sort="-x", title=None),
        color=alt.Color("venom status", scale=alt.Scale(domain=["harmless", "venomous", "unknown"],
                                                        range=["#4c78a8", "#e45756", "#f2a93b"])),
        tooltip=["binomial_name", "support", "precision", "recall", "f1"],
    ).properties(height=max(200, 14 * len(chart_rows))),
    width="stretch",
)
st.subheader("Venom safety: venomous (and unknown-status) species called harmless")
all_variants = pd.DataFrame(report["species_metrics"])
all_variants["binomial_name"] += all_variants["class_id"].map(statuses).map({"unknown": " (venom status unknown)"}).fillna("")
safety = all_variants[all_variants["venomous"] & (all_variants["support"] > 0)].copy()
safety["called harmless %"] = 100 * safety["share_c10"] * safety["errors"] / safety["support"]
st.dataframe(safety.pivot_table(index="binomial_name", columns="variant", values="called harmless %"), width="stretch")

st.subheader("SnakeCLEF submission")
decision = st.selectbox("Decision rule", DECISIONS, format_func={"argmax": "argmax", "cost": "venom-aware"}.get)
use_prior = st.checkbox("Country prior", disabled=store.get_meta("country_table") is None)
if st.button("Prepare submission CSV"):
    prior_table = store.get_meta("country_table")
    prior = CountryPrior.from_csv(prior_table) if use_prior and prior_table else None
    submission = export_submission(store, None, decision, prior)
    st.download_button("Download submission.csv", submission.to_csv(index=False), "submission.csv", "text/csv")
