"""The official SnakeCLEF 2023/2024 metric, exactly as the organisers' evaluation code computes it, and the
per-species view the dashboard shows.

Scores are per observation. Venomous means MIVS = 1 in the venomous list; the organisers' code counts ids
absent from it as harmless, and so does `score` (it says how many there are, on stderr). A ground-truth class
id of -1 is the organisers' "unknown species" of an open-set test: scored like any class, but left out of the
venomous and harmless totals the error percentages divide by. Every figure is rounded as their code rounds it
(`np.round(x * 100, 2)`), so a tie at the third decimal goes the same way.

Source: the organisers' `evaluate.py` (SnakeCLEF 2023/2024 on AIcrowd/HuggingFace: `psc`, `track1_metric`,
`track2_metric`, `evaluate_csv`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from snakeweb.errors import SnakewebError
from snakeweb.tables import Column, read_table

UNKNOWN_SPECIES = -1  # the organisers' ground-truth class of an animal of no known species
OFFICIAL_KEYS = ("F1 Score", "Accuracy", "PSC", "PSC_total", "Track1 Metric", "Track2 Metric")


class SubmissionError(SnakewebError):
    """A submission that cannot be scored; the message says how many rows are wrong and shows a few."""


def _examples(values) -> str:
    values = list(values)
    shown = ", ".join(map(str, values[:5]))
    return shown + (", ..." if len(values) > 5 else "")


ID_COLUMNS = (Column("observation_id", ("observation", "obs_id"), required=True), Column("class_id", ("classid",), required=True))
VENOMOUS_LIST_COLUMNS = (Column("class_id", ("classid",), required=True),
                         Column("MIVS", ("venomous", "is_venomous", "venom_status"), required=True))


def _observation_ids(table) -> pd.Series:
    ids = table.identifiers("observation_id")
    if ids.eq("").any():
        raise table.fail(f"{int(ids.eq('').sum())} row(s) have no observation_id ({table.where(ids.eq(''), 'observation_id')}).")
    return ids


def read_truth(path: str | Path) -> pd.DataFrame:
    """Ground truth (SnakeCLEF metadata or any table with observation_id, class_id): observation_id (str),
    class_id (nullable Int64: an empty cell is an observation without a label, which is not scored; -1 is the
    organisers' unknown species, which is). Raises SubmissionError for any other negative id."""
    table = read_table(path, "ground truth", ID_COLUMNS, SubmissionError)
    class_ids = table.ids("class_id", missing_ok=True, negative_ok=True)
    negative = (class_ids < UNKNOWN_SPECIES).fillna(False).to_numpy(bool)
    if negative.any():
        raise table.fail(f"{int(negative.sum())} ground-truth class id(s) are below -1 ({table.where(negative, 'class_id')}); class "
                         "ids are 0 or above, -1 is the organisers' unknown species, and an empty cell is no label.")
    truth = pd.DataFrame({"observation_id": _observation_ids(table), "class_id": class_ids})
    labels = truth.dropna().groupby("observation_id")["class_id"].nunique()
    if (labels > 1).any():
        first = labels[labels > 1].index[0]
        raise table.fail(f"{int((labels > 1).sum())} observation(s) have rows with different class ids, e.g. observation {first} "
                         f"({table.where((truth['observation_id'] == first).to_numpy(), 'class_id')}); one observation is one animal.")
    return truth


def read_submission(path: str | Path) -> pd.DataFrame:
    """A submission: observation_id (str), class_id (int64); every row needs a whole-number class id."""
    table = read_table(path, "submission", ID_COLUMNS, SubmissionError)
    return pd.DataFrame({"observation_id": _observation_ids(table),
                         "class_id": table.ids("class_id", negative_ok=True).astype("int64")})  # the official code scores any int


def read_venomous_list(path: str | Path) -> pd.Series:
    """The venomous list (class_id, MIVS) as a boolean Series indexed by class id; every row needs a flag."""
    table = read_table(path, "venomous list", VENOMOUS_LIST_COLUMNS, SubmissionError)
    flags = pd.Series(table.flags("MIVS", missing_ok=False).astype(bool).to_numpy(), index=table.ids("class_id").astype("int64"))
    clash = flags.groupby(level=0).nunique() > 1
    if clash.any():
        raise table.fail(f"class id(s) {', '.join(map(str, clash[clash].index[:5]))} are listed both venomous and harmless.")
    return flags.groupby(level=0).first()


def read_venomous(path: str | Path) -> set[int]:
    """The class ids the venomous list marks MIVS = 1."""
    flags = read_venomous_list(path)
    return set(flags.index[flags.to_numpy()].astype(int))


def merge_one_to_one(truth: pd.DataFrame, submission: pd.DataFrame) -> pd.DataFrame:
    """Ground truth (first row per observation) merged with a submission that must have exactly one row per
    ground-truth observation and no others; anything else is a SubmissionError, never a silent merge."""
    for frame, what in ((truth, "ground truth"), (submission, "submission")):
        missing = {"observation_id", "class_id"} - set(frame.columns)
        if missing:
            raise SubmissionError(f"The {what} lacks column(s) {sorted(missing)}; it needs observation_id and class_id.")
    truth = truth.drop_duplicates("observation_id")[["observation_id", "class_id"]].copy()
    unlabelled = truth["class_id"].isna()
    if unlabelled.all():
        raise SubmissionError("No ground-truth observation has a class_id; there is nothing to score.")
    submission = submission[["observation_id", "class_id"]].copy()
    truth["observation_id"] = truth["observation_id"].astype(str)
    submission["observation_id"] = submission["observation_id"].astype(str)

    numeric = pd.to_numeric(submission["class_id"], errors="coerce")
    bad = submission[numeric.isna() | (numeric != np.floor(numeric))]
    if len(bad):
        raise SubmissionError(
            f"{len(bad)} submission row(s) have a class_id that is not an integer, e.g. "
            f"{_examples(f'{o}: {c!r}' for o, c in zip(bad['observation_id'], bad['class_id']))}."
        )
    submission["class_id"] = numeric.astype(np.int64)
    duplicated = submission.loc[submission["observation_id"].duplicated(), "observation_id"].unique()
    if len(duplicated):
        raise SubmissionError(f"{len(duplicated)} observation id(s) appear more than once in the submission, e.g. {_examples(duplicated)}.")
    truth_ids, submitted = set(truth["observation_id"]), set(submission["observation_id"])
    missing_ids, unknown_ids = sorted(truth_ids - submitted), sorted(submitted - truth_ids)
    if missing_ids:
        raise SubmissionError(f"{len(missing_ids)} ground-truth observation(s) have no prediction, e.g. {_examples(missing_ids)}.")
    if unknown_ids:
        raise SubmissionError(f"{len(unknown_ids)} submitted observation id(s) are not in the ground truth, e.g. {_examples(unknown_ids)}.")
    if unlabelled.any():
        # an observation without a label cannot be right or wrong: it is left out (`score` says how many)
        truth = truth[~unlabelled].copy()
    truth["class_id"] = truth["class_id"].astype(np.int64)
    merged = truth.merge(submission, on="observation_id", how="inner", suffixes=("_true", "_pred"), validate="one_to_one")
    return merged.rename(columns={"class_id_true": "truth", "class_id_pred": "predicted"})


def psc_counts(truth: np.ndarray, predicted: np.ndarray, venomous: set[int]) -> list[int]:
    """[c00, c01, c10, c11] over misclassified observations: 0 = harmless, 1 = venomous; first truth, then prediction."""
    wrong = truth != predicted
    truth_v = np.isin(truth[wrong], list(venomous))
    pred_v = np.isin(predicted[wrong], list(venomous))
    return [int((~truth_v & ~pred_v).sum()), int((~truth_v & pred_v).sum()),
            int((truth_v & ~pred_v).sum()), int((truth_v & pred_v).sum())]


def official_scores(truth: pd.DataFrame, submission: pd.DataFrame, venomous: set[int]) -> dict:
    """The organisers' numbers with their key names."""
    merged = merge_one_to_one(truth, submission)
    return scores_of_arrays(merged["truth"].to_numpy(np.int64), merged["predicted"].to_numpy(np.int64), venomous)


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Macro-averaged F1 over every class in truth or prediction: scikit-learn's
    `f1_score(y_true, y_pred, average="macro")` (the organisers' call), computed the same way (per class
    2 tp / (true + predicted), their plain mean), so the official figures match to the last bit. Here rather than
    from scikit-learn because importing sklearn.metrics alone takes longer (~1.2 s) than the rest of `score`."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"truth and prediction must be 1-d arrays of one length, not {y_true.shape} and {y_pred.shape}")
    if not len(y_true):
        return 0.0
    classes, codes = np.unique(np.concatenate([y_true, y_pred]), return_inverse=True)
    truth, predicted = codes[:len(y_true)], codes[len(y_true):]
    true_sum = np.bincount(truth, minlength=len(classes))
    pred_sum = np.bincount(predicted, minlength=len(classes))
    tp_sum = np.bincount(truth[truth == predicted], minlength=len(classes))
    # every class is in truth or prediction, so no denominator is 0 (scikit-learn's zero_division never applies)
    return float(np.mean(2.0 * tp_sum.astype(np.float64) / (true_sum + pred_sum).astype(np.float64)))


def scores_of_arrays(y_true: np.ndarray, y_pred: np.ndarray, venomous: set[int]) -> dict:
    """The official numbers of aligned truth and prediction arrays (class ids), rounded as the organisers' code
    rounds them: `np.round(share * 100, 2)`, not `round(100 * share, 2)` (23 of 160 is 14.37 there, 14.38 here)."""
    f1 = float(np.round(macro_f1(y_true, y_pred) * 100, 2))
    accuracy = float(np.round(float((y_true == y_pred).mean()) * 100, 2))
    c00, c01, c10, c11 = psc_counts(y_true, y_pred, venomous)
    is_venomous, known = np.isin(y_true, list(venomous)), y_true != UNKNOWN_SPECIES
    n_venomous, n_harmless = int((is_venomous & known).sum()), int((~is_venomous & known).sum())
    p00, p01 = (float(np.round(c / n_harmless * 100, 2)) if n_harmless else 0.0 for c in (c00, c01))
    p10, p11 = (float(np.round(c / n_venomous * 100, 2)) if n_venomous else 0.0 for c in (c10, c11))
    track1 = float(np.round((f1 + (100 - p00) + 2 * (100 - p01) + 5 * (100 - p10) + 2 * (100 - p11)) / 11, 2))
    track2 = c00 + 2 * c01 + 5 * c10 + 2 * c11
    return {"F1 Score": f1, "Accuracy": accuracy, "PSC": [p00, p01, p10, p11], "PSC_total": [c00, c01, c10, c11],
            "Track1 Metric": track1, "Track2 Metric": track2}


def per_species_table(truth: np.ndarray, predicted: np.ndarray, venomous: set[int], names: dict[int, str] | None = None) -> pd.DataFrame:
    """One row per species in truth or prediction: support, precision, recall, F1, venomous, the species it
    is most often confused with, and its share of each of the four error kinds (as the true species)."""
    truth, predicted = np.asarray(truth, np.int64), np.asarray(predicted, np.int64)
    frame = pd.DataFrame({"truth": truth, "predicted": predicted})
    rows = []
    for class_id in sorted(set(truth) | set(predicted)):
        is_true, is_pred = truth == class_id, predicted == class_id
        tp = int((is_true & is_pred).sum())
        precision = tp / is_pred.sum() if is_pred.sum() else 0.0
        recall = tp / is_true.sum() if is_true.sum() else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        errors = frame[is_true & ~is_pred]
        confused = errors["predicted"].mode()
        kinds = psc_counts(truth[is_true], predicted[is_true], venomous)
        n_errors = max(1, len(errors))
        rows.append({
            "class_id": int(class_id), "binomial_name": (names or {}).get(int(class_id), f"class {class_id}"),
            "venomous": int(class_id) in venomous, "support": int(is_true.sum()), "precision": precision,
            "recall": recall, "f1": f1, "most_confused_with": int(confused.iloc[0]) if len(confused) else None,
            "most_confused_with_name": (names or {}).get(int(confused.iloc[0]), f"class {confused.iloc[0]}") if len(confused) else None,
            "errors": len(errors), "share_c00": kinds[0] / n_errors, "share_c01": kinds[1] / n_errors,
            "share_c10": kinds[2] / n_errors, "share_c11": kinds[3] / n_errors,
        })
    return pd.DataFrame(rows)


STATUSES = ("harmless", "venomous")


def venom_confusion(truth: np.ndarray, predicted: np.ndarray, venomous: set[int]) -> dict[str, dict[str, int]]:
    """Harmless/venomous counts over all observations, keyed by the true status first and with keys that say which
    is which, so the record cannot be read the wrong way round: `{"true_harmless": {"predicted_harmless": n,
    "predicted_venomous": n}, "true_venomous": {"predicted_harmless": n, "predicted_venomous": n}}`.
    `["true_venomous"]["predicted_harmless"]` is the venomous snakes called harmless (PSC_total's c10)."""
    truth_v = np.isin(truth, list(venomous))
    pred_v = np.isin(predicted, list(venomous))
    return {f"true_{t}": {f"predicted_{p}": int(((truth_v == (t == "venomous")) & (pred_v == (p == "venomous"))).sum())
                          for p in STATUSES} for t in STATUSES}


def confusion_table(record: dict[str, dict[str, int]]) -> pd.DataFrame:
    """`venom_confusion`'s record as a 2 x 2 table: rows the true status (index "truth"), columns the predicted one
    ("predicted"), labelled harmless / venomous."""
    counts = [[int(record[f"true_{t}"][f"predicted_{p}"]) for p in STATUSES] for t in STATUSES]
    return pd.DataFrame(counts, index=pd.Index(list(STATUSES), name="truth"), columns=pd.Index(list(STATUSES), name="predicted"))
