"""snakeweb.rank_metrics on a hand-computed 6-class example, and its figures in `evaluate` and on the Metrics page
(real store built with the tiny model, real DuckDB, Streamlit AppTest)."""

import json

import numpy as np
import pandas as pd
import pytest

from snakeweb import rank_metrics as rm
from snakeweb.answers import Answers, Taxa, Thresholds, decide
from snakeweb.calibration import ece, expected_calibration_error, reliability
from snakeweb.errors import SnakewebError
from tests.conftest import REPO
from tests.test_pipeline import built_store  # noqa: F401  (the module-scoped store fixture, built once here)

# head order 0..5: genus Alpha (family Fa) = classes 0, 1, 2; genus Beta (family Fb) = 3, 4; class 5 is in family Fb
# with no known genus. Venom: 0, 1 harmless; 2, 3, 4 venomous; 5 unknown. So genus Alpha and family Fa are mixed
# (status unknown), Beta venomous, Fb unknown (a member of unknown status).
SPECIES = pd.DataFrame({
    "class_id": [10, 11, 12, 13, 14, 15],
    "binomial_name": ["Alpha one", "Alpha two", "Alpha three", "Beta one", "Beta two", "Incerta sedis"],
    "genus": ["Alpha", "Alpha", "Alpha", "Beta", "Beta", "unknown"],
    "family": ["Fa", "Fa", "Fa", "Fb", "Fb", "Fb"],
    "venom_status": ["harmless", "harmless", "venomous", "venomous", "venomous", "unknown"],
})
# sixteenths, so every sum per genus/family is exact in floating point (ties stay ties)
PROBABILITIES = np.array([
    [10, 2, 2, 1, 1, 0],  # truth 0: species 0 right (10), genus Alpha 14 right, family Fa 14 right
    [6, 5, 1, 2, 2, 0],  # truth 1: species 0 wrong (6), Alpha 12 right, Fa 12 right
    [8, 1, 3, 2, 2, 0],  # truth 2: species 0 wrong (8), Alpha 12 right, Fa 12 right; p(venomous) 7/16
    [5, 5, 0, 3, 2, 1],  # truth 3: species 0 wrong (5; tie with 1, argmax takes 0), Alpha 10 wrong, Fa 10 wrong
    [1, 1, 0, 2, 9, 3],  # truth 4: species 4 right (9), Beta 11 right, Fb 14 right
    [5, 5, 1, 2, 0, 3],  # truth 5: species 0 wrong (5), genus unknown (Alpha 11), Fa 11 wrong
]) / 16
TRUTH = np.array([0, 1, 2, 3, 4, 5])


@pytest.fixture
def taxa() -> Taxa:
    return Taxa.from_species(SPECIES, SPECIES["class_id"])


def hand_answers() -> Answers:
    """Six answers, one of each kind: species right / a venomous species for a harmless snake / a harmless species
    for a venomous snake / genus right / no name (the venom rule's "unknown snake") / family wrong."""
    p_venomous = PROBABILITIES[:, 2:5].sum(1)  # 4, 5, 7, 5, 11, 3 sixteenths
    return Answers(
        rank=np.array(["species", "species", "species", "genus", "", "family"], dtype=object),
        taxon=np.array([0, 3, 0, 1, -1, 0]), name=["Alpha one", "Beta one", "Alpha one", "Beta", "unknown snake", "Fa"],
        score=np.array([10, 2, 8, 5, np.nan, 11]) / 16,
        source=np.array(["classifier", "classifier", "classifier", "rollup", "venom_rule", "rollup"], dtype=object),
        venom_status=np.array(["harmless", "venomous", "harmless", "venomous", "unknown", "unknown"], dtype=object),
        p_venomous=p_venomous, p_unknown_venom=PROBABILITIES[:, 5], unconstrained_top=PROBABILITIES.argmax(1),
        out_of_range=[None] * 6, class_index=np.array([0, 3, 0, -1, -1, -1]), probabilities=PROBABILITIES,
    )


def test_toy_taxa_are_as_described(taxa):
    assert taxa.genera == ["Alpha", "Beta"] and taxa.families == ["Fa", "Fb"]
    assert taxa.genus_of.tolist() == [0, 0, 0, 1, 1, -1] and taxa.family_of.tolist() == [0, 0, 0, 1, 1, 1]
    assert taxa.status_of_taxa("genus").tolist() == ["unknown", "venomous"]


def test_rank_accuracy_sums_per_taxon_and_leaves_out_unknown_taxa(taxa):
    accuracy = rm.rank_accuracy(PROBABILITIES, TRUTH, taxa)
    assert accuracy["species"] == {"accuracy": pytest.approx(2 / 6), "observations": 6, "left_out": 0}
    # the sixth photo's species has no genus: 4 right of the other 5
    assert accuracy["genus"] == {"accuracy": pytest.approx(4 / 5), "observations": 5, "left_out": 1}
    assert accuracy["family"] == {"accuracy": pytest.approx(4 / 6), "observations": 6, "left_out": 0}


def test_answer_summary_by_hand(taxa):
    summary = rm.answer_summary(hand_answers(), TRUTH, taxa)
    ranks = summary["ranks"]
    assert ranks["species"] == {"answered": 3, "coverage": pytest.approx(0.5), "accuracy": pytest.approx(1 / 3)}
    assert ranks["genus"] == {"answered": 1, "coverage": pytest.approx(1 / 6), "accuracy": 1.0}
    assert ranks["family"] == {"answered": 1, "coverage": pytest.approx(1 / 6), "accuracy": 0.0}
    assert ranks["abstain"] == {"answered": 1, "coverage": pytest.approx(1 / 6), "accuracy": None}
    assert sum(r["coverage"] for r in ranks.values()) == pytest.approx(1.0)
    assert summary["species_or_genus"] == {"answered": 4, "coverage": pytest.approx(4 / 6), "precision": 0.5}
    assert summary["answered"] == {"answered": 5, "coverage": pytest.approx(5 / 6), "precision": pytest.approx(2 / 5)}
    assert summary["by_source"] == {"classifier": 3, "rollup": 2, "range_filter": 0, "venom_rule": 1, "abstain": 0}
    assert summary["observations"] == 6


def test_answer_summary_of_real_decisions(taxa):
    # species >= 9/16 answers rows 0 and 4; genus >= 12/16 rows 1 and 2 (Alpha); rows 3 (Alpha 10) and 5 (11) abstain
    answers = decide(PROBABILITIES, taxa, Thresholds(species=9 / 16, genus=12 / 16, family=None), venom_rule=False)
    summary = rm.answer_summary(answers, TRUTH, taxa)
    assert answers.rank.tolist() == ["species", "genus", "genus", "", "species", ""]
    assert {r: (v["answered"], v["accuracy"]) for r, v in summary["ranks"].items()} == {
        "species": (2, 1.0), "genus": (2, 1.0), "family": (0, None), "abstain": (2, None)}
    assert summary["species_or_genus"] == {"answered": 4, "coverage": pytest.approx(4 / 6), "precision": 1.0}


def test_risk_coverage_by_hand_one_point_per_distinct_score(taxa):
    species = rm.risk_coverage(PROBABILITIES, TRUTH, taxa, "species")
    # top scores 10 (right), 9 (right), 8, 6, 5, 5 (wrong): the tie at 5 is one point
    expected = pd.DataFrame({"threshold": np.array([10, 9, 8, 6, 5]) / 16, "coverage": np.array([1, 2, 3, 4, 6]) / 6,
                             "accuracy": [1.0, 1.0, 2 / 3, 2 / 4, 2 / 6]})
    pd.testing.assert_frame_equal(species.reset_index(drop=True), expected)
    genus = rm.risk_coverage(PROBABILITIES, TRUTH, taxa, "genus")
    # 14 right; 12, 12 right; 11 (row 4 right, row 5 has no genus: wrong); 10 wrong
    assert genus["threshold"].tolist() == pytest.approx([14 / 16, 12 / 16, 11 / 16, 10 / 16])
    assert genus["coverage"].tolist() == pytest.approx([1 / 6, 3 / 6, 5 / 6, 1.0])
    assert genus["accuracy"].tolist() == pytest.approx([1.0, 1.0, 4 / 5, 4 / 6])
    point = rm.operating_point(PROBABILITIES, TRUTH, taxa, "species", 9 / 16)
    assert point == {"threshold": 9 / 16, "coverage": pytest.approx(2 / 6), "accuracy": 1.0}
    assert rm.operating_point(PROBABILITIES, TRUTH, taxa, "genus", None) is None


def test_risk_coverage_is_monotone_thinned_and_ends_at_top1_accuracy(taxa):
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (1000, 6))
    probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    truth = rng.integers(0, 5, 1000)  # classes 0..4: every truth has a genus and a family
    accuracy = rm.rank_accuracy(probabilities, truth, taxa)
    for rank in ("species", "genus", "family"):
        curve = rm.risk_coverage(probabilities, truth, taxa, rank)
        assert 2 <= len(curve) <= rm.MAX_CURVE_POINTS
        assert (np.diff(curve["coverage"]) > 0).all() and (np.diff(curve["threshold"]) < 0).all()
        assert curve["coverage"].iloc[-1] == 1.0
        assert curve["accuracy"].iloc[-1] == pytest.approx(accuracy[rank]["accuracy"])
        assert curve["coverage"].iloc[0] == pytest.approx(1 / 1000)  # the most confident photo is kept
    assert len(rm.risk_coverage(probabilities, truth, taxa, "species", max_points=7)) == 7


def test_reliability_by_hand_and_ece():
    table = reliability([0.0, 0.2, 0.25, 0.3, 0.8, 1.0], [0, 0, 1, 0, 1, 1], bins=4)
    # (0, .25] holds 0 (first bin), .2 and .25 (an edge belongs to the bin below); (.25, .5] holds .3; (.75, 1] .8 and 1
    assert table["bin"].tolist() == [0, 1, 3] and table["count"].tolist() == [3, 1, 2]
    assert table["confidence"].tolist() == pytest.approx([0.15, 0.3, 0.9])
    assert table["accuracy"].tolist() == pytest.approx([1 / 3, 0.0, 1.0])
    assert table[["lower", "upper"]].values.tolist() == [[0.0, 0.25], [0.25, 0.5], [0.75, 1.0]]
    assert ece(table) == pytest.approx(0.5 * (1 / 3 - 0.15) + 0.3 / 6 + 2 / 6 * 0.1)
    assert ece(reliability([], [])) is None
    with pytest.raises(SnakewebError, match="one correct flag"):
        reliability([0.5], [True, False])
    with pytest.raises(SnakewebError, match="0..1"):
        reliability([1.5], [True])


def test_reliability_ece_matches_calibration_module():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 3, (500, 20))
    probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    truth = rng.integers(0, 20, 500)
    table = reliability(probabilities.max(1), probabilities.argmax(1) == truth)
    assert ece(table) == pytest.approx(expected_calibration_error(probabilities, truth), abs=1e-12)
    assert table["count"].sum() == 500


def test_venom_reliability_leaves_out_unknown_status_truths(taxa):
    table, left_out = rm.venom_reliability(hand_answers(), TRUTH, taxa, bins=4)
    # p(venomous) 4/16 (harmless truth), 5/16 (harmless), 7/16, 5/16, 11/16 (venomous); row 5's truth is unknown
    assert left_out == 1
    assert table["count"].tolist() == [1, 3, 1]
    assert table["accuracy"].tolist() == pytest.approx([0.0, 2 / 3, 1.0])


def test_venom_critical_by_hand(taxa):
    venom = rm.venom_critical(hand_answers(), TRUTH, taxa)
    assert venom == {
        # venomous truths: rows 2 (p 7/16, answered harmless), 3 (p 5/16, genus Beta venomous), 4 (p 11/16, no name)
        "venomous_observations": 3, "low_p_venomous": 2, "low_p_venomous_share": pytest.approx(2 / 3),
        "answered_harmless": 1, "answered_harmless_share": pytest.approx(1 / 3),
        # harmless truths: rows 0 (answered harmless) and 1 (answered Beta one, venomous: an alarm)
        "harmless_observations": 2, "answered_venomous": 1, "answered_venomous_share": 0.5,
        "unknown_status_observations": 1,
    }


def test_truth_outside_the_head_is_refused(taxa):
    with pytest.raises(SnakewebError, match="head indices"):
        rm.rank_accuracy(PROBABILITIES, np.array([0, 1, 2, 3, 4, 6]), taxa)


def test_evaluate_reports_answers_per_rank(built_store):  # noqa: F811
    from snakeweb.evaluation import evaluate

    split = "test" if "test" in set(built_store.query("SELECT split FROM observations")["split"]) else "val"
    report = evaluate(built_store, split, save=False)
    json.loads(json.dumps(report, allow_nan=False))  # strict JSON: no NaN anywhere
    assert "thresholds" in report and "answers_note" in report
    if report["thresholds"] is None:
        assert "no rank thresholds" in report["answers_note"]
    answers = report["answers"]["prior=none"]
    assert set(answers) >= {"summary", "rank_accuracy", "venom_critical", "risk_coverage", "operating_points", "reliability"}
    summary = answers["summary"]
    assert answers["observations"] + answers["outside_head"] == report["observations"]
    assert sum(r["answered"] for r in summary["ranks"].values()) == answers["observations"]
    assert sum(r["coverage"] for r in summary["ranks"].values()) == pytest.approx(1.0)
    assert sum(summary["by_source"].values()) == answers["observations"]
    species_curve = answers["risk_coverage"]["species"]
    assert species_curve[-1]["coverage"] == 1.0
    assert species_curve[-1]["accuracy"] == pytest.approx(answers["rank_accuracy"]["species"]["accuracy"], abs=1e-4)
    assert sum(b["count"] for b in answers["reliability"]["species"]["bins"]) == answers["observations"]
    # the synthetic species table flags Vipera berus venomous, the two others harmless: every truth has a status
    venom = answers["venom_critical"]
    assert venom["venomous_observations"] + venom["harmless_observations"] == answers["observations"]


def test_evaluate_with_a_prior_adds_the_country_variant(built_store):  # noqa: F811
    from snakeweb.decisions import CountryPrior
    from snakeweb.evaluation import evaluate

    prior = CountryPrior.from_overrides(pd.DataFrame({"binomial_name": ["Vipera berus", "Natrix natrix"],
                                                      "country_code": ["FR", "FR"], "present": [True, False]}))
    report = evaluate(built_store, "train", prior, save=False)
    assert set(report["answers"]) == {"prior=none", "prior=country"}
    # photo folders carry no country, so no row gets a prior: both variants answer alike
    assert report["answers"]["prior=country"]["summary"] == report["answers"]["prior=none"]["summary"]
    json.loads(json.dumps(report, allow_nan=False))


def test_evaluate_command_prints_ranks_and_venom_figures(built_store, capsys):  # noqa: F811
    from pipelines.cli import main

    assert main(["evaluate", "--store", str(built_store.root), "--split", "train"]) == 0
    out = capsys.readouterr().out
    assert "answers prior=none:" in out and "venom-critical: of " in out and "species or genus:" in out
    for rank in ("species", "genus", "family", "abstain"):
        assert f"\n  {rank:<10}" in out
    assert main(["evaluate", "--store", str(built_store.root), "--split", "train", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["answers"]["prior=none"]["summary"]["observations"] == report["observations"]


def test_evaluate_says_when_the_heads_temperature_raised_validation_ece(built_store, tmp_path, capsys):  # noqa: F811
    """The head records ECE before and after its temperature, and the sentence train said when the temperature raised
    it (calibration.choose_temperature); evaluate repeats that sentence, not only the two figures."""
    import shutil

    from pipelines.cli import main
    from snakeweb.heads import Head

    store = tmp_path / "store"
    shutil.copytree(built_store.root, store)
    head = Head.load(store / "head.pt")
    head.history.update(val_ece_before=0.213, val_ece_after=0.227, temperature_note="temperature 1.13 made validation ECE worse")
    head.save(store / "head.pt")
    capsys.readouterr()
    assert main(["evaluate", "--store", str(store), "--split", "train"]) == 0
    out = capsys.readouterr().out
    assert "note: calibration: temperature 1.13 made validation ECE worse" in out
    chosen = next(line for line in out.splitlines() if line.startswith("chosen on validation"))
    assert "val_ece_before 0.213" in chosen and "val_ece_after 0.227" in chosen
    assert main(["evaluate", "--store", str(store), "--split", "train", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["calibration_note"] == "temperature 1.13 made validation ECE worse"


def test_metrics_page_shows_the_answer_sections(built_store, monkeypatch):  # noqa: F811
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("SNAKEWEB_STORE", str(built_store.root))
    # an upper bound for one script run on a busy machine, not a speed assertion
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=900).run()
    app.switch_page("views/metrics.py").run()
    assert not app.exception
    headers = [h.value for h in app.subheader]
    for section in ("Answers at each rank", "Risk-coverage", "Reliability", "Venom-critical"):
        assert section in headers
    assert headers.index("Answers at each rank") < headers.index("Venom-critical") < headers.index("Per species")
    assert app.dataframe[0].value.columns[0] == "decision"  # the official table stays first
    ranks = next(d.value for d in app.dataframe if "answered at" in d.value.columns)
    assert ranks["answered at"].tolist() == ["species", "genus", "family", "unknown snake (no taxon named)"]
    assert ranks["share of photos %"].sum() == pytest.approx(100.0)
    labels = [m.label for m in app.metric]
    assert "Venomous snakes answered harmless" in labels and "Venomous snakes given p(venomous) < 50%" in labels
    specs = [chart.proto.spec for chart in app.get("vega_lite_chart")]
    assert any("share of photos answered" in spec for spec in specs)  # the risk-coverage plot
    assert any("Top-1 species (mean in bin)" in spec for spec in specs) and any("p(venomous) (mean in bin)" in spec for spec in specs)


def test_the_saved_evaluation_is_reused_only_while_it_holds(built_store, tmp_path):  # noqa: F811
    """The Metrics page shows the evaluate stage's saved report instead of re-scoring a SnakeCLEF-sized store, but
    only for the split, country table, head, species and range records it was made with."""
    import shutil

    from snakeweb.decisions import CountryPrior
    from snakeweb.evaluation import evaluate, stored_report
    from snakeweb.ranges import add_range_override
    from snakeweb.store import Store, set_meta

    store = Store(shutil.copytree(built_store.root, tmp_path / "store"))
    with store.transaction() as con:  # whatever an earlier test saved
        con.execute("DELETE FROM run_metadata WHERE key = 'evaluation'")
    assert stored_report(store, "train", None) is None  # nothing saved yet
    saved = evaluate(store, "train")
    fresh = evaluate(store, "train", save=False)
    reused = stored_report(store, "train", None)
    assert reused is not None and reused["created"] == saved["created"]
    assert reused["variants"] == fresh["variants"] and reused["answers"] == fresh["answers"]
    columns = ["variant", "class_id", "support", "precision", "recall", "f1"]
    assert pd.DataFrame(reused["species_metrics"])[columns].equals(pd.DataFrame(fresh["species_metrics"])[columns])
    assert stored_report(store, "val", None) is None  # another split
    with store.transaction() as con:  # a report saved by an earlier snakeweb lacks what this one reports (copies)
        old = {**saved, "basis": {k: v for k, v in saved["basis"].items() if k != "report_version"}}
        set_meta(con, "evaluation", {k: v for k, v in old.items() if k != "observations_copied_from_training"})
    assert stored_report(store, "train", None) is None
    evaluate(store, "train")
    assert stored_report(store, "train", str(tmp_path / "Species_Relevance.csv")) is None  # a country table it was made without
    species = store.species()
    add_range_override(store, int(species["class_id"].iloc[0]), "FR", False, "ana")
    assert stored_report(store, "train", None) is None  # a range record changes the prior's answers
    evaluate(store, "train")
    assert stored_report(store, "train", None) is not None
    with store.transaction() as con:  # a species' venom status corrected: the venom figures change
        con.execute("UPDATE species SET venom_status = CASE WHEN venom_status = 'venomous' THEN 'harmless' ELSE 'venomous' END "
                    "WHERE class_id = ?", [int(species["class_id"].iloc[-1])])
    assert stored_report(store, "train", None) is None
    # one more photo (and its vector) of an observation already scored: its probabilities change
    evaluate(store, "train")
    assert stored_report(store, "train", None) is not None
    with store.transaction() as con:
        con.execute("INSERT INTO images (image_id, observation_id, path, class_id, split, status) SELECT max(image_id) + 1, "
                    "arg_min(observation_id, image_id), 'extra.jpg', arg_min(class_id, image_id), 'train', 'ok' FROM images "
                    "WHERE split = 'train'")
        con.execute("INSERT INTO embeddings SELECT (SELECT max(image_id) FROM images), vector FROM embeddings LIMIT 1")
    assert stored_report(store, "train", None) is None
    # the recorded country table edited in place (same path, other bytes)
    table = tmp_path / "Species_Relevance.csv"
    table.write_text("binomial_name;FR\n" + "\n".join(f"{n};1" for n in names_of(store)) + "\n")
    evaluate(store, "train", CountryPrior.from_csv(table), country_table=str(table))
    assert stored_report(store, "train", str(table)) is not None
    table.write_text(table.read_text().replace(";1\n", ";0\n", 1))
    assert stored_report(store, "train", str(table)) is None


def names_of(store) -> list[str]:
    return store.species()["binomial_name"].tolist()
