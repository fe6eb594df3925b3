"""Metrics: the official SnakeCLEF numbers of the stored evaluation; the answers people get (coverage and accuracy
per rank, risk-coverage, reliability, the venom-critical figures); per-species table and venom safety."""

from pathlib import Path

import altair as alt
import pandas as pd
import streamlit as st

from snakeweb.decisions import DECISIONS, CountryPrior
from snakeweb.errors import SnakewebError
from snakeweb.evaluation import evaluate, stored_report
from snakeweb.export import export_submission
from snakeweb.provenance import file_id
from snakeweb.ranges import overrides_version
from snakeweb.scoring import confusion_table
from views.common import current_store

BAR_CHART_MAX = 60  # species drawn in the per-species F1 chart (the lowest F1 first)

store = current_store()
st.title("Metrics")


# a resource, not data: shared read-only (nothing below changes it), so each run is not handed an unpickled copy
# of a SnakeCLEF-sized report (7,136 per-species records)
@st.cache_resource(show_spinner="Scoring…", max_entries=8)
def scored(root: str, split: str, countries: tuple[str, ...], version: tuple) -> dict:
    """The evaluate stage's saved report where it was made for this split, every country, the recorded country
    table and the current head and range records; else scored now (5.5 s on a SnakeCLEF-sized test split)."""
    from snakeweb.store import Store

    table = Store(root).get_meta("country_table")
    if not countries:
        saved = stored_report(Store(root), split, table)
        if saved is not None:
            return saved
    prior = CountryPrior.from_csv(table, notes=False) if table else None  # (said at ingest)
    return evaluate(Store(root), split, prior, countries=list(countries), save=False, country_table=table)


observations = store.query("SELECT DISTINCT split, country_code FROM observations WHERE class_id IS NOT NULL")
splits = [s for s in ("test", "val", "train") if s in set(observations["split"])]
if not splits:
    st.info("This store has no labelled observations to score.")
    st.stop()
left, right = st.columns(2)
split = left.selectbox("Split", splits, help="test is held out from training and from every choice made on validation")
countries = right.multiselect("Country", sorted(observations["country_code"].dropna().unique().tolist()))
try:
    # keyed on what the report is made from (the store's content, its range records, the country table file), so a
    # running dashboard does not keep serving a report the store has outgrown
    # (the table by its bytes, as the saved report's basis: an edit that keeps the file's time and size still counts)
    table_path = store.get_meta("country_table")
    table_id = file_id(Path(table_path)) if table_path else None
    report = scored(str(store.root), split, tuple(countries), (store.content_version(), overrides_version(store), table_id))
except SnakewebError as exc:
    st.error(str(exc))
    st.stop()

st.caption(f"{report['observations']} {split} observations, {report['head']} head, per observation "
           f"({report['aggregation']} over each observation's photos). Venom-aware = minimum expected Track2 cost, "
           f"venomous errors weighted x{report['chosen_on_validation'].get('venom_weight') or 1:g} (chosen on validation by Track1).")
if report.get("saved"):
    st.caption(f"Scores saved by the evaluate stage ({report['created']}); the page re-scores when you pick countries.")
if report.get("observations_copied_from_training"):
    st.warning(f"⚠️ {report['observations_copied_from_training']} of these {split} observations have a photo that is a byte-identical "
               "copy of a training photo: the head has seen it, so their scores are optimistic. `python -m pipelines check` lists them.")
if report.get("observations_not_compared_for_copies"):
    st.caption(f"{report['observations_not_compared_for_copies']} of these observations have imported vectors without their "
               "photos' sha256, so they were not checked for copies of training photos.")
if report.get("classes_with_unknown_venom_status"):
    st.warning(f"❓ {report['classes_with_unknown_venom_status']} species have venom status unknown: these numbers count them "
               "as venomous, as the venom-aware rule does. Build with a species table that has a venom flag for them.")
flags = report.get("venom_flags") or {}
if flags.get("promoted_to_venomous"):
    st.caption(f"Track1, Track2 and the confusion shares below use the species table's own venom flags, as the official "
               f"scorer does; {flags['promoted_to_venomous']} species it flags harmless are venomous in this store (vipers and "
               f"elapids, from --taxonomy; e.g. {', '.join(flags.get('promoted_examples') or [])}), and the venom safety "
               "figures further down count them as venomous. `python -m pipelines evaluate` prints both.")
if report.get("calibration_note"):
    st.caption(f"Calibration: {report['calibration_note']}")
rows = []
for name, s in report["variants"].items():
    rule, prior = name.split("/prior=")
    rows.append({"decision": "venom-aware" if rule == "cost" else "argmax", "country prior": prior,
                 "macro F1": s["F1 Score"], "accuracy": s["Accuracy"], "Track1 ↑": s["Track1 Metric"], "Track2 ↓": s["Track2 Metric"],
                 "harmless→other harmless %": s["PSC"][0], "harmless→venomous %": s["PSC"][1],
                 "venomous→harmless %": s["PSC"][2], "venomous→other venomous %": s["PSC"][3]})
st.dataframe(pd.DataFrame(rows), hide_index=True)


def percent(value: float | None) -> float | None:
    return None if value is None else 100 * value


def show_answers(report: dict) -> None:
    """The answers' sections: what `snakeweb.rank_metrics` measured in `evaluate`'s report (`answers`)."""
    by_variant = report.get("answers") or {}
    if not by_variant:
        return
    labels = {"prior=none": "no country prior", "prior=country": "country prior"}
    choice = (st.radio("Answers", list(by_variant), horizontal=True, format_func=lambda v: labels.get(v, v))
              if len(by_variant) > 1 else next(iter(by_variant)))
    answers, thresholds = by_variant[choice], report.get("thresholds") or {}
    summary, accuracy = answers["summary"], answers["rank_accuracy"]

    st.subheader("Answers at each rank")
    if report.get("answers_note"):
        st.info(report["answers_note"])
    rank_rows = []
    for rank, figures in summary["ranks"].items():
        top1 = accuracy.get(rank, {})
        rank_rows.append({
            "answered at": "unknown snake (no taxon named)" if rank == "abstain" else rank, "photos": figures["answered"],
            "share of photos %": percent(figures["coverage"]), "correct at this rank %": percent(figures["accuracy"]),
            "top-1 accuracy if always answered here %": percent(top1.get("accuracy")),
            "threshold (chosen on validation)": thresholds.get(rank) if rank != "abstain" else None,
        })
    st.dataframe(pd.DataFrame(rank_rows), hide_index=True, column_config={
        c: st.column_config.NumberColumn(format="%.1f") for c in
        ("share of photos %", "correct at this rank %", "top-1 accuracy if always answered here %")
    } | {"threshold (chosen on validation)": st.column_config.NumberColumn(format="%.3f")})
    both = summary["species_or_genus"]
    target = thresholds.get("target_precision")
    if both["coverage"] is not None:
        st.markdown(f"**{both['coverage']:.0%}** of the photos are answered at species or genus, and **"
                    + (f"{both['precision']:.0%}" if both["precision"] is not None else "none")
                    + "** of those answers are right at the rank answered.")
    if thresholds:
        chosen = ", ".join(f"{r} ≥ {thresholds[r]:.3f}" if thresholds.get(r) is not None else f"{r}: never (no threshold reached it)"
                           for r in ("species", "genus", "family"))
        sources = " · ".join(f"{n} by {s.replace('_', ' ')}" for s, n in summary["by_source"].items() if n)
        st.caption(f"Thresholds chosen on validation for {target:.0%} precision at each rank: {chosen}. A photo is answered at the "
                   f"first rank whose best probability reaches its threshold, else it is an unknown snake"
                   + (f"; a harmless answer where venomous errors weighted x{thresholds['venom_weight']:g} say \"treat as venomous\" "
                      "becomes an unknown snake (venom rule)" if thresholds.get("venom_weight") else "")
                   + f". Answers: {sources}.")
    if answers["outside_head"]:
        st.caption(f"{answers['outside_head']} photo(s) of species the head was not trained on are left out of these sections.")
    left_out = [f"{r} ({a['left_out']})" for r, a in accuracy.items() if a.get("left_out")]
    if left_out:
        st.caption("Photos of a species without a known genus or family are not scored at that rank: " + ", ".join(left_out) + ".")

    st.subheader("Risk-coverage")
    curves = pd.concat([pd.DataFrame(points).assign(rank=rank) for rank, points in answers["risk_coverage"].items() if points]
                       or [pd.DataFrame(columns=["threshold", "coverage", "accuracy", "rank"])], ignore_index=True)
    operating = pd.DataFrame([{**point, "rank": rank} for rank, point in answers["operating_points"].items()
                              if point and point.get("accuracy") is not None])
    ranks = alt.Scale(domain=["species", "genus", "family"], range=["#4c78a8", "#54a24b", "#b279a2"])
    lines = alt.Chart(curves).mark_line(interpolate="step-after").encode(
        x=alt.X("coverage", title="share of photos answered", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")),
        y=alt.Y("accuracy", title="correct among those answered", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")),
        color=alt.Color("rank", scale=ranks), tooltip=["rank", alt.Tooltip("threshold", format=".3f"),
                                                       alt.Tooltip("coverage", format=".1%"), alt.Tooltip("accuracy", format=".1%")])
    chart = lines
    if not operating.empty:
        chart = lines + alt.Chart(operating).mark_point(size=140, filled=True, shape="diamond").encode(
            x="coverage", y="accuracy", color=alt.Color("rank", scale=ranks),
            tooltip=["rank", alt.Tooltip("threshold", title="threshold chosen on validation", format=".3f"),
                     alt.Tooltip("coverage", format=".1%"), alt.Tooltip("accuracy", format=".1%")])
    if target:
        chart += alt.Chart(pd.DataFrame({"accuracy": [target]})).mark_rule(strokeDash=[4, 4], color="gray").encode(y="accuracy")
    st.altair_chart(chart.properties(height=340), width="stretch")
    st.caption("Each rank alone: answer the photos whose most likely taxon at that rank reaches a threshold, for every threshold. "
               "Diamonds: the thresholds chosen on validation (measured on each rank's own curve; the table above is the "
               "species → genus → family cascade people get). Dashed: the target precision.")

    st.subheader("Reliability")
    left, right = st.columns(2)
    for column, key, title, what in (
        (left, "species", "Top-1 species", "correct"),
        (right, "p_venomous", "p(venomous)", "truly venomous"),
    ):
        table = answers["reliability"][key]
        bins = pd.DataFrame(table["bins"])
        column.markdown(f"**{title}**" + (f" · ECE {table['ece']:.3f}" if table["ece"] is not None else ""))
        if bins.empty:
            column.caption("No photos to measure.")
            continue
        x = alt.X("confidence", title=f"{title} (mean in bin)", scale=alt.Scale(domain=[0, 1]))
        y = alt.Y("accuracy", title=f"share {what}", scale=alt.Scale(domain=[0, 1]))
        diagonal = alt.Chart(pd.DataFrame({"confidence": [0, 1], "accuracy": [0, 1]})).mark_line(
            color="gray", strokeDash=[4, 4], clip=True).encode(x=x, y=y)
        line = alt.Chart(bins).mark_line(opacity=0.5, clip=True).encode(x=x, y=y)  # no size: a thin line through the bins
        points = alt.Chart(bins).mark_circle(opacity=0.8, clip=True).encode(
            x=x, y=y, size=alt.Size("count", title="photos"),
            tooltip=[alt.Tooltip("lower", format=".2f"), alt.Tooltip("upper", format=".2f"),
                     alt.Tooltip("confidence", format=".3f"), alt.Tooltip("accuracy", format=".3f"), "count"])
        column.altair_chart((diagonal + line + points).properties(height=300), width="stretch")
    st.caption("On the diagonal = calibrated: of the photos given 80%, 80% are right. "
               + (f"p(venomous) leaves out {answers['reliability']['p_venomous']['left_out']} photo(s) of species of unknown venom status."
                  if answers["reliability"]["p_venomous"].get("left_out") else ""))

    st.subheader("Venom-critical")
    venom = answers["venom_critical"]
    one, two, three = st.columns(3)

    def share(key: str) -> str:
        return "n/a" if venom[f"{key}_share"] is None else f"{venom[f'{key}_share']:.1%}"

    one.metric("Venomous snakes answered harmless", share("answered_harmless"),
               help=f"{venom['answered_harmless']} of {venom['venomous_observations']} venomous photos got a harmless final answer.")
    two.metric("Venomous snakes given p(venomous) < 50%", share("low_p_venomous"),
               help=f"{venom['low_p_venomous']} of {venom['venomous_observations']} venomous photos.")
    three.metric("Harmless snakes answered venomous", share("answered_venomous"),
                 help=f"{venom['answered_venomous']} of {venom['harmless_observations']} harmless photos (false alarms, for context).")
    if venom["venomous_observations"]:
        st.markdown(f"Of **{venom['venomous_observations']}** photos of venomous snakes, **{venom['answered_harmless']}** got a harmless "
                    f"answer and **{venom['low_p_venomous']}** were given less than a 50% chance of being venomous.")


show_answers(report)

variant = st.selectbox("Variant for the tables below", list(report["variants"]))
confusion = confusion_table(report["variants"][variant]["venom_confusion"])  # rows: true status; columns: predicted
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
chart_rows = table[table["support"] > 0].sort_values(["f1", "support"], ascending=[True, False])
if len(chart_rows) > BAR_CHART_MAX:
    # one bar per species of 1,784 made a 25,000-pixel chart the browser drew on every visit; the table has them all
    st.caption(f"The {BAR_CHART_MAX} species with the lowest F1 of the {len(chart_rows):,} with {split} photos "
               "(sort or search the table above for the others).")
    chart_rows = chart_rows.head(BAR_CHART_MAX)
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
