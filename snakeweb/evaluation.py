"""Evaluate a store's head per observation with the official metric: argmax vs the venom-aware rule, with
and without the country prior, plus the per-species table (stored in DuckDB for the dashboard)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from snakeweb import rank_metrics as rm
from snakeweb.answers import RANKS, Taxa, Thresholds
from snakeweb.answers import decide as decide_answers
from snakeweb.calibration import ece, reliability
from snakeweb.copies import copies_of_training
from snakeweb.decisions import CountryPrior, decide
from snakeweb.errors import SnakewebError
from snakeweb.export import observations_without_vectors
from snakeweb.heads import Head
from snakeweb.options import require_probabilities
from snakeweb.provenance import file_id
from snakeweb.ranges import effective_prior, overrides_version
from snakeweb.scoring import official_scores, per_species_table, venom_confusion
from snakeweb.species import UNKNOWN, possibly_venomous_class_ids, possibly_venomous_mask
from snakeweb.stages import observation_probabilities
from snakeweb.store import Store, StoreReadOnlyError, set_meta
from snakeweb.taxonomy import species_as_flagged

# raised when a report gains something the Metrics page shows: reports saved before are then scored again
# (2: observations_copied_from_training and observations_not_compared_for_copies; 3: venom_flags, the Track figures
# under the species table's own flags; 4: venom_confusion keyed true status first, {"true_venomous": {"predicted_harmless": n}},
# where 3 had DataFrame.to_dict()'s predicted-first keys, and observations_not_embedded)
REPORT_VERSION = 4
SPECIES_METRICS_TABLE = """
CREATE OR REPLACE TABLE species_metrics (
    variant VARCHAR, class_id BIGINT, binomial_name VARCHAR, venomous BOOLEAN, support INTEGER, precision DOUBLE,
    recall DOUBLE, f1 DOUBLE, most_confused_with BIGINT, most_confused_with_name VARCHAR, errors INTEGER,
    share_c00 DOUBLE, share_c01 DOUBLE, share_c10 DOUBLE, share_c11 DOUBLE
)
"""


def evaluate(store: Store, split: str = "test", prior: CountryPrior | None = None, aggregation: str = "mean-log",
             countries: list[str] | None = None, save: bool = True, country_table: str | None = None) -> dict:
    """Official scores of every decision variant on one split's labelled observations (optionally only those
    from some countries); with `save`, stores the report (run_metadata 'evaluation') and per-species tables
    (`species_metrics`, one set per variant). The report carries the tables too, as records, and what it was
    computed from (`basis`, see `_basis`; `country_table` is the file `prior` was read from), so `stored_report`
    can tell whether it still holds. A store that cannot be written here is still scored: the report then carries
    `not_saved`, the sentence saying why it was not kept.

    Two sets of venom flags: the decisions (argmax / venom-aware) use the store's, in which `--taxonomy` made the
    vipers and elapids a species table flagged harmless venomous (`taxonomy.front_fanged_are_venomous`), as export
    and identify do; each variant's official figures (F1 ... Track2, PSC, `venom_confusion`) are scored with the
    species table's own flags (`taxonomy.species_as_flagged`), as the organisers' code and `score` score them, so a
    submission `export` writes scores the same with `score`. `venom_flags` says how many classes differ
    (`promoted_to_venomous`) and, when any do, gives every variant's figures under the store's flags too
    (`variants_under_store_flags`). The per-species tables (`species_metrics`, the Metrics page's venom safety) keep
    the store's flags, so a promoted viper called harmless is still counted there."""
    require_probabilities(aggregation, "the venom-aware and country-prior scores")
    basis = _basis(store, split, aggregation, country_table if prior is not None else None, countries)
    observation_ids, probabilities, head = observation_probabilities(store, aggregation, split=split)
    observations = store.query("SELECT observation_id, class_id, country_code, split FROM observations").set_index("observation_id")
    keep = np.array([
        observations["split"].get(o) == split and pd.notna(observations["class_id"].get(o))
        and (not countries or observations["country_code"].get(o) in countries)
        for o in observation_ids
    ])
    if not keep.any():
        where = f" from {', '.join(countries)}" if countries else ""
        raise SnakewebError(f"No labelled observations{where} with predictions in the {split!r} split; choose another split or country.")
    ids = [o for o, k in zip(observation_ids, keep) if k]
    probabilities = probabilities[keep]
    species = store.species().set_index("class_id")
    class_ids = head.label_map.class_ids
    names = species["binomial_name"].to_dict()
    # species of unknown venom status count as venomous here, as in the venom-aware rule (the report says how many)
    venomous_set = possibly_venomous_class_ids(species)  # the store's (safety) flags: decisions and per-species tables
    venomous = possibly_venomous_mask(species, class_ids)
    # the species table's own flags: what the official metric weighs venomous<->harmless confusions by
    official_set = possibly_venomous_class_ids(species_as_flagged(store).set_index("class_id"))
    promoted = sorted(venomous_set - official_set)
    truth = pd.DataFrame({"observation_id": ids, "class_id": observations.loc[ids, "class_id"].astype(np.int64).to_numpy()})

    variants = {"none": probabilities}
    row_countries = [c if isinstance(c, str) else None for c in observations.loc[ids, "country_code"]]
    if prior is not None:
        prior = effective_prior(store, prior)  # the review team's range records in the store count as much as the table
        variants["country"] = prior.apply(probabilities, [names.get(c, "") for c in class_ids], row_countries)
    # labelled observations of the split none of whose photos could be used: not scored, and said so
    predicted = set(observation_ids)
    unscored = ((observations["split"] == split) & observations["class_id"].notna() & ~observations.index.isin(list(predicted))
                & (observations["country_code"].isin(countries) if countries else True))
    unscored = observations_without_vectors(store, list(observations.index[unscored]))
    report: dict = {"split": split, "observations": len(ids),
                    # not embedded yet (fine photos ingested after the last embed: a build scores them) apart from unreadable ones
                    "observations_not_embedded": len(unscored["not_embedded"]),
                    "observations_without_usable_photos": len(unscored["unreadable"]) + len(unscored["no_photos"]),
                    **copies_of_training(store, ids, split),
                    "aggregation": aggregation, "head": head.kind, "variants": {},
                    "classes_with_unknown_venom_status": int((species["venom_status"] == UNKNOWN).sum())}
    # what validation chose (the test split is only read here, after every choice was made), read from the head scored,
    # not the store's run metadata: a head.pt trained elsewhere, or again, has its own
    report["chosen_on_validation"] = {
        **{k: head.history.get(k) for k in ("learning_rate", "weight_decay", "logit_adjustment")},
        "temperature": head.temperature, "blend_weight": head.blend_weight, "venom_weight": head.venom_weight,
        **{k: head.history.get(k) for k in ("val_ece_before", "val_ece_after")}}
    # when validation ECE rose under the temperature kept, or the fitted one was not kept (calibration.choose_temperature)
    report["calibration_note"] = head.history.get("temperature_note")
    report["model"] = (store.get_meta("model") or {}).get("fingerprint")
    report["venom_flags"] = {
        "scored_with": "species table", "promoted_to_venomous": len(promoted),
        "promoted_examples": [names.get(c, f"class {c}") for c in promoted[:5]],
        "observations_of_promoted_classes": int(truth["class_id"].isin(promoted).sum()),
        "variants_under_store_flags": {} if promoted else None}
    tables = []
    for prior_name, probs in variants.items():
        for rule in ("argmax", "cost"):
            variant = f"{rule}/prior={prior_name}"
            predicted = head.label_map.to_class_ids(decide(probs, venomous, rule, head.venom_weight))
            submission = pd.DataFrame({"observation_id": ids, "class_id": predicted})
            scores = official_scores(truth, submission, official_set)
            confusion = venom_confusion(truth["class_id"].to_numpy(), predicted, official_set)
            report["variants"][variant] = {**scores, "venom_confusion": confusion}
            if promoted:
                safety = official_scores(truth, submission, venomous_set)
                safety_confusion = venom_confusion(truth["class_id"].to_numpy(), predicted, venomous_set)
                report["venom_flags"]["variants_under_store_flags"][variant] = {**safety, "venom_confusion": safety_confusion}
            table = per_species_table(truth["class_id"].to_numpy(), predicted, venomous_set, names)
            table.insert(0, "variant", variant)
            tables.append(table)
    if prior is not None:
        report["prior_coverage"] = prior.coverage([names.get(c, "") for c in class_ids])
    report.update(answer_report(store, head, probabilities, truth["class_id"].to_numpy(), prior, row_countries))
    report["created"] = datetime.now(UTC).isoformat(timespec="seconds")
    report["countries"] = countries or []
    report["basis"] = basis
    all_tables = pd.concat(tables, ignore_index=True)
    if not save:
        return {**report, "species_metrics": all_tables.to_dict("records")}
    try:
        with store.transaction() as con:
            con.execute(SPECIES_METRICS_TABLE)
            con.register("new_metrics", all_tables)
            con.execute("INSERT INTO species_metrics SELECT * FROM new_metrics")
            set_meta(con, "evaluation", report)
    except StoreReadOnlyError as exc:  # the scores are still right: report them, and say they were not kept
        return {**report, "not_saved": str(exc)}
    return report


def _basis(store: Store, split: str, aggregation: str, country_table: str | None, countries: list[str] | None) -> dict:
    """Everything an evaluation report depends on, by digest: the species (names, venom status, taxonomy), the
    observations (labels, countries, splits), the images (which observation each belongs to, its label, status
    and split) and which of them have vectors, the model that made them, the head (training digest and file),
    the index file (the kNN part votes through it), the country table's bytes and the range records. A report
    whose basis is not the store's current one no longer holds (tests/test_rank_metrics.py changes each), nor does
    one saved by a snakeweb whose reports lacked something this one reports (REPORT_VERSION)."""
    digests = store.table_digests()
    table = Path(country_table).resolve() if country_table else None
    return {"report_version": REPORT_VERSION, "split": split, "aggregation": aggregation, "countries": sorted(countries or []),
            **{name: digests[name] for name in ("species", "observations", "images", "embeddings")},
            "model": (store.get_meta("model") or {}).get("fingerprint"),
            "head": (store.get_meta("head") or {}).get("training_digest"),
            "head_file": _stamp(store.head_path), "index_file": _stamp(store.index_path),
            "country_table": str(table) if table else None,
            "country_table_file": file_id(table) if table else None,
            "range_records": overrides_version(store)}


def _stamp(path: Path) -> list[int] | None:
    """(modification time in ns, size in bytes) of a file, None when it is absent."""
    return [path.stat().st_mtime_ns, path.stat().st_size] if path.is_file() else None


def stored_report(store: Store, split: str, country_table: str | None, aggregation: str = "mean-log") -> dict | None:
    """The report the evaluate stage saved, with its per-species tables as records (`species_metrics`), when it
    was computed for this split, aggregation and country table (None: no prior) on every country, from what the
    store and the table hold now (`_basis`; `saved` True); else None. Lets the Metrics page open a SnakeCLEF-sized
    store without re-scoring it (5.5 s on 10k test observations of 182k images)."""
    report = store.get_meta("evaluation")
    if not report or report.get("basis") != _basis(store, split, aggregation, country_table, None):
        return None
    tables = store.query("SELECT * FROM species_metrics")
    return {**report, "species_metrics": tables.to_dict("records"), "saved": True}


def answer_report(store: Store, head: Head, probabilities: np.ndarray, truth_class_ids: np.ndarray, prior: CountryPrior | None,
                  countries: list[str | None]) -> dict:
    """The answers a person gets (`snakeweb.answers.decide` with the head's thresholds and answer venom weight
    chosen on validation, else the head's venom weight), measured per observation: report keys `thresholds` (as saved with the head; None for a
    head without them, then `answers_note` says so and every answer is the top species), `answers_note` and
    `answers`: per variant (`prior=none`; `prior=country` with a prior, range mode "prior" with each row's
    country as identify uses it) the answer summary, top-1 accuracy per rank, venom-critical figures,
    risk-coverage curves and operating points per rank, and reliability tables with ECE for top-1 species and
    for p(venomous) (`snakeweb.rank_metrics`). Observations of a class the head was not trained on cannot be
    placed in its taxa and are left out (`outside_head`). `probabilities` [n, K] head order before any prior;
    `truth_class_ids` and `countries` [n]."""
    taxa = Taxa.from_species(store.species(), head.label_map.class_ids)
    thresholds = Thresholds.from_json(head.thresholds)
    seen = np.isin(truth_class_ids, head.label_map.class_ids)
    out: dict = {"thresholds": None if thresholds is None else thresholds.to_json(), "answers_note": None, "answers": {}}
    if thresholds is None:
        out["answers_note"] = ("This head has no rank thresholds chosen on validation (trained before rank roll-up, or "
                               "validation too small), so no answer is rolled up to genus or family: each names the most likely "
                               "species unless the venom rule or the out-of-store check withholds it; retrain to choose them.")
    truth_index = head.label_map.to_indices(truth_class_ids[seen])
    probabilities = probabilities[seen]
    rows_countries = [c for c, s in zip(countries, seen) if s]
    settings = {"none": (None, None)}
    if prior is not None:
        weights = np.ones_like(probabilities)
        records = np.full(probabilities.shape, -1, dtype=np.int8)
        for country in {c for c in rows_countries if c}:
            # as identify does: a country the table cannot use (no records there for these species) gets no prior
            if prior.note(country, taxa.names) is None:
                rows = np.array([c == country for c in rows_countries])
                weights[rows] = prior.weights(taxa.names, country)
                records[rows] = prior.records(taxa.names, country)
        settings["country"] = (weights, records)
    for name, (weights, records) in settings.items():
        answers = decide_answers(probabilities, taxa, thresholds, head.venom_weight, None, "prior", weights, records)
        top_correct = answers.probabilities.argmax(1) == truth_index
        species_table = reliability(answers.probabilities.max(1, initial=0.0), top_correct)
        venom_table, venom_left_out = rm.venom_reliability(answers, truth_index, taxa)
        curves, points = {}, {}
        for rank in RANKS:
            curves[rank] = _records(rm.risk_coverage(answers.probabilities, truth_index, taxa, rank))
            threshold = None if thresholds is None else thresholds.of(rank)
            points[rank] = rm.operating_point(answers.probabilities, truth_index, taxa, rank, threshold)
        out["answers"][f"prior={name}"] = {
            "observations": int(len(truth_index)), "outside_head": int((~seen).sum()),
            "summary": rm.answer_summary(answers, truth_index, taxa),
            "rank_accuracy": rm.rank_accuracy(answers.probabilities, truth_index, taxa),
            "venom_critical": rm.venom_critical(answers, truth_index, taxa),
            "risk_coverage": curves, "operating_points": points,
            "reliability": {"species": {"ece": ece(species_table), "bins": _records(species_table)},
                            "p_venomous": {"ece": ece(venom_table), "bins": _records(venom_table), "left_out": venom_left_out}},
        }
    return out


def _records(frame: pd.DataFrame) -> list[dict]:
    """Plain-Python records with floats rounded to 4 places: the report is run metadata and `evaluate --json`
    output, so it stays small and JSON-serialisable."""
    return [{k: (round(float(v), 4) if isinstance(v, float | np.floating) else int(v) if isinstance(v, np.integer) else v)
             for k, v in row.items()} for row in frame.to_dict("records")]


def venom_safety(store: Store) -> pd.DataFrame:
    """Per venomous species: how often it is called harmless under each stored decision variant."""
    return store.query(
        "SELECT variant, class_id, binomial_name, support, share_c10 * errors AS called_harmless, "
        "share_c10 * errors / NULLIF(support, 0) AS called_harmless_rate FROM species_metrics "
        "WHERE venomous AND support > 0 ORDER BY binomial_name, variant"
    )
