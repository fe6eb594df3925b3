"""What the answers are worth, measured: accuracy at each rank, how many photos are answered at which rank and
how often correctly there, risk-coverage curves, reliability (calibration) tables, and the venom-critical
figures (a venomous snake given a low p(venomous), or answered with a harmless taxon).

Pure NumPy/pandas over per-observation probabilities [n, K] in the head's label-map order, truth head indices
[n] and `snakeweb.answers.Taxa` / `Answers`; `snakeweb.evaluation.evaluate` puts the results in its report and
the Metrics page draws them. Shares are fractions in 0..1; None where nothing was there to measure.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from snakeweb.answers import RANKS, SOURCES, Answers, Taxa, correct_at_rank
from snakeweb.calibration import RELIABILITY_BINS, reliability
from snakeweb.errors import SnakewebError
from snakeweb.threshold_choice import precision_curve

ABSTAIN = "abstain"
MAX_CURVE_POINTS = 200


def _share(part: int, whole: int) -> float | None:
    return float(part / whole) if whole else None


def _truth(truth_index, taxa: Taxa) -> np.ndarray:
    truth = np.asarray(truth_index, dtype=np.int64)
    if len(truth) and (truth.min() < 0 or truth.max() >= len(taxa)):
        raise SnakewebError(f"Truth indices must be head indices in 0..{len(taxa) - 1}; map class ids with the head's label map first.")
    return truth


def _top(probabilities: np.ndarray, truth: np.ndarray, taxa: Taxa, rank: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(top score [n], top taxon correct [n], true taxon known [n]) at `rank` (`Taxa.scored`, plus which truths
    have a taxon at that rank)."""
    score, correct = taxa.scored(probabilities, truth, rank)
    groups, _ = taxa.group(rank)
    return score, correct, groups[truth] >= 0


def rank_accuracy(probabilities: np.ndarray, truth_index: np.ndarray, taxa: Taxa) -> dict:
    """Top-1 accuracy at species, genus and family: the argmax of the probabilities summed per taxon of the rank.

    `probabilities` [n, K] (head order), `truth_index` [n] head indices. Per rank: accuracy (0..1, None when no
    observation counts), observations counted, and `left_out`: observations whose true class has no known taxon
    at that rank (a placeholder class, family "unknown"), which cannot be scored there. Raises SnakewebError for
    truth indices outside the head.
    """
    truth = _truth(truth_index, taxa)
    out = {}
    for rank in RANKS:
        _, correct, known = _top(probabilities, truth, taxa, rank)
        counted = int(known.sum())
        out[rank] = {"accuracy": _share(int(correct[known].sum()), counted), "observations": counted,
                     "left_out": int((~known).sum())}
    return out


def answer_summary(answers: Answers, truth_index: np.ndarray, taxa: Taxa) -> dict:
    """Where the answers fall and how often they are right at the rank answered (`answers.correct_at_rank`).

    Per rank (species, genus, family, abstain = no taxon named: "unknown snake" from the thresholds or from the
    venom rule, told apart in `by_source`): `answered` (count), `coverage` (share of all n observations) and
    `accuracy` (share of those answers naming the true taxon at that rank; None for abstain or when none were
    answered there; an answer at genus for a photo whose true genus is unknown counts as wrong). Overall:
    `species_or_genus` {coverage, precision} (the issue's target: a quarter of photos at >= 90%), `answered`
    {coverage, precision} at any rank, and counts by source (classifier / rollup / range_filter / venom_rule /
    abstain). The coverages add up to 1.
    """
    truth = _truth(truth_index, taxa)
    n = len(truth)
    correct = correct_at_rank(answers, truth, taxa)
    ranks = np.asarray(answers.rank, dtype=object)
    per_rank = {}
    for rank in (*RANKS, ABSTAIN):
        rows = ranks == ("" if rank == ABSTAIN else rank)
        count = int(rows.sum())
        per_rank[rank] = {"answered": count, "coverage": _share(count, n),
                          "accuracy": None if rank == ABSTAIN else _share(int(correct[rows].sum()), count)}

    def overall(rows: np.ndarray) -> dict:
        count = int(rows.sum())
        return {"answered": count, "coverage": _share(count, n), "precision": _share(int(correct[rows].sum()), count)}

    sources = np.asarray(answers.source, dtype=object)
    return {"observations": n, "ranks": per_rank, "species_or_genus": overall((ranks == "species") | (ranks == "genus")),
            "answered": overall(ranks != ""), "by_source": {s: int((sources == s).sum()) for s in SOURCES}}


def risk_coverage(probabilities: np.ndarray, truth_index: np.ndarray, taxa: Taxa, rank: str,
                  max_points: int = MAX_CURVE_POINTS) -> pd.DataFrame:
    """The risk-coverage curve at one rank: answer the observations whose top summed probability at `rank` is at
    least a threshold; one point per distinct top score, swept from the highest down.

    Columns: threshold, coverage (share of all n observations answered), accuracy (share of the answered whose
    top taxon is the true one; a true class without a taxon at `rank` counts as wrong, as `correct_at_rank` does).
    Coverage rises monotonically and the last point is coverage 1 at the rank's top-1 accuracy over all rows.
    Points are thinned evenly to at most `max_points` (the first and last are kept). Empty frame when n = 0 or
    the rank has no taxa. This is each rank alone over every row, not the species -> genus -> family cascade
    of `answers.decide` (that is `answer_summary`).
    """
    truth = _truth(truth_index, taxa)
    columns = ["threshold", "coverage", "accuracy"]
    if not len(truth) or not len(taxa.group(rank)[1]):
        return pd.DataFrame(columns=columns, dtype=float)
    score, correct, _ = _top(probabilities, truth, taxa, rank)
    thresholds, answered, accuracy = precision_curve(score, correct)
    keep = np.arange(len(thresholds))
    if len(keep) > max_points:  # thinned evenly, the first and last points kept
        keep = np.unique(np.linspace(0, len(keep) - 1, max_points).round().astype(int))
    return pd.DataFrame({"threshold": thresholds[keep], "coverage": answered[keep] / len(score), "accuracy": accuracy[keep]})


def operating_point(probabilities: np.ndarray, truth_index: np.ndarray, taxa: Taxa, rank: str, threshold: float | None) -> dict | None:
    """The point of `risk_coverage(..., rank)` at one threshold (e.g. the one chosen on validation): coverage and
    accuracy of answering every row whose top score at `rank` is >= `threshold`. None without a threshold;
    accuracy None when no row reaches it."""
    if threshold is None:
        return None
    truth = _truth(truth_index, taxa)
    score, correct, _ = _top(probabilities, truth, taxa, rank)
    take = score >= threshold
    return {"threshold": float(threshold), "coverage": _share(int(take.sum()), len(truth)),
            "accuracy": _share(int(correct[take].sum()), int(take.sum()))}


def venom_reliability(answers: Answers, truth_index: np.ndarray, taxa: Taxa, bins: int = RELIABILITY_BINS) -> tuple[pd.DataFrame, int]:
    """(`reliability` of p(venomous) against "the true species is venomous", observations left out): truths of
    unknown venom status cannot say whether p(venomous) was right, so they are left out (and counted)."""
    status = taxa.status[_truth(truth_index, taxa)]
    known = status != "unknown"
    return reliability(np.clip(answers.p_venomous[known], 0.0, 1.0), status[known] == "venomous", bins), int((~known).sum())


def venom_critical(answers: Answers, truth_index: np.ndarray, taxa: Taxa) -> dict:
    """The figures a snakebite team cares about most, per observation.

    Among observations whose true species is venomous: `low_p_venomous` (p(venomous) < 0.5: the headline
    understates the danger) and `answered_harmless` (the final answer's taxon is harmless: the worst outcome),
    each as count and share of venomous truths. Among harmless truths, for context: `answered_venomous` (the
    alarm rate: the answer's taxon is venomous). Truths of unknown venom status are counted apart. Shares are
    None when there is no such truth.
    """
    truth = _truth(truth_index, taxa)
    status = taxa.status[truth] if len(truth) else np.zeros(0, dtype=str)
    answered = np.asarray(answers.venom_status, dtype=object)
    venomous, harmless = status == "venomous", status == "harmless"
    n_venomous, n_harmless = int(venomous.sum()), int(harmless.sum())
    low = int((venomous & (answers.p_venomous < 0.5)).sum())
    called_harmless = int((venomous & (answered == "harmless")).sum())
    alarms = int((harmless & (answered == "venomous")).sum())
    return {
        "venomous_observations": n_venomous,
        "low_p_venomous": low, "low_p_venomous_share": _share(low, n_venomous),
        "answered_harmless": called_harmless, "answered_harmless_share": _share(called_harmless, n_venomous),
        "harmless_observations": n_harmless,
        "answered_venomous": alarms, "answered_venomous_share": _share(alarms, n_harmless),
        "unknown_status_observations": int((status == "unknown").sum()),
    }
