"""Choosing, on the validation split, the rank thresholds and the answer venom weight that snakeweb.answers.decide
uses (train stage); the choice and the figures it was made on are saved with the head (`Thresholds.chosen_on`).

How (docs/decisions.md): answering observations from the most probable down, each rank's threshold is the lowest
score whose answers are still at least TARGET_PRECISION correct at that rank (a precision-coverage curve, as in
selective classification), species and genus chosen together, then family; then the smallest venom weight whose
answers call at most MAX_VENOMOUS_CALLED_HARMLESS of the venomous observations harmless.
"""

from __future__ import annotations

import numpy as np

from snakeweb.answers import TARGET_PRECISION, THRESHOLD_METHOD, Answers, Taxa, Thresholds, decide

# a threshold needs this many validation observations answered at its rank: precision from 3 photos means nothing
MIN_ANSWERED = 10
# answers may call at most this share of venomous validation observations harmless: a sixth of the 3% allowed on
# test, because a validation split of a few hundred venomous snakes estimates the rate with +-1.5 points of noise
MAX_VENOMOUS_CALLED_HARMLESS = 0.005
ANSWER_VENOM_WEIGHTS = (1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0)
# a species name is worth more than a genus: give up this share of observations answered at species or genus
# to answer more of them at species
COVERAGE_SLACK = 0.02


def precision_curve(scores: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Answering the rows from the highest score down: (threshold, rows answered, precision) [points], one point
    per distinct score (a threshold cannot split equal scores), thresholds falling. Empty arrays for no rows."""
    scores, correct = np.asarray(scores, dtype=np.float64), np.asarray(correct, dtype=bool)
    order = np.argsort(-scores, kind="stable")
    scores, answered = scores[order], np.arange(1, len(order) + 1)
    precision = np.cumsum(correct[order]) / np.maximum(answered, 1)
    ends = np.flatnonzero(np.append(scores[1:] < scores[:-1], True)) if len(scores) else np.zeros(0, int)
    return scores[ends], answered[ends], precision[ends]


def _prefix_choice(scores: np.ndarray, correct: np.ndarray, target: float, min_answered: int) -> tuple[int, float | None, float | None]:
    """Answering the rows with the highest scores: (how many, the threshold, their precision) for the most
    rows whose precision is at least `target` (at least `min_answered` of them); (0, None, None) when none."""
    thresholds, answered, precision = precision_curve(scores, correct)
    ok = np.flatnonzero((precision >= target) & (answered >= min_answered))
    if not len(ok):
        return 0, None, None
    m = int(ok[-1])
    return int(answered[m]), float(thresholds[m]), float(precision[m])


def choose_thresholds(probabilities: np.ndarray, truth_index: np.ndarray, taxa: Taxa,
                      target: float = TARGET_PRECISION, min_answered: int = MIN_ANSWERED, candidates: int = 200,
                      coverage_slack: float = COVERAGE_SLACK) -> Thresholds:
    """Thresholds that answer the most validation observations at species or genus with at least `target` of
    each rank's answers correct at that rank (at least `min_answered` answers per rank that answers); among
    choices within `coverage_slack` (a share of the observations) of that coverage, the one answering the most
    at species. Then the family threshold on the observations left, the same way.

    Species and genus are chosen together: answering a likely-but-unsure species at genus instead is often
    right where the species would be wrong, so the species threshold that answers most at species is rarely
    the one that answers most at species or genus. Species thresholds tried: "never" and up to `candidates`
    quantiles of the top species probability; genus thresholds: every observed score (exact on validation).
    Rows are observations: probabilities [n, K], truth_index [n] head indices.
    """
    probs = np.atleast_2d(np.asarray(probabilities, dtype=np.float64))
    truth_index = np.asarray(truth_index, dtype=np.int64)
    top_species, species_ok = taxa.scored(probs, truth_index, "species")
    has_genus = len(taxa.genera) > 0
    genus_p, genus_ok = taxa.scored(probs, truth_index, "genus")
    tried = np.unique(np.quantile(top_species, np.linspace(0, 1, candidates))) if len(probs) else np.zeros(0)
    options = []  # (coverage, species answered, t_species, t_genus, species precision, genus precision)
    for t_species in [None, *tried.tolist()]:
        at_species = top_species >= t_species if t_species is not None else np.zeros(len(probs), bool)
        n_species = int(at_species.sum())
        species_precision = float(species_ok[at_species].mean()) if n_species else None
        if n_species and (n_species < min_answered or species_precision < target):
            continue
        rest = ~at_species
        n_genus, t_genus, genus_precision = _prefix_choice(genus_p[rest], genus_ok[rest], target, min_answered) if has_genus \
            else (0, None, None)
        # the threshold reported is the lowest score answered: quantiles between two scores answer the same rows
        t_species = float(top_species[at_species].min()) if n_species else None
        options.append((n_species + n_genus, n_species, t_species, t_genus, species_precision, genus_precision))
    # the most species answers among the choices within `coverage_slack` of the best coverage at species or genus
    most = max(o[0] for o in options)
    best = max((o for o in options if o[0] >= most - coverage_slack * len(probs)), key=lambda o: (o[1], o[0]))
    _, n_species, t_species, t_genus, species_precision, genus_precision = best
    answered = (top_species >= t_species if t_species is not None else np.zeros(len(probs), bool)) | \
        (genus_p >= t_genus if t_genus is not None else np.zeros(len(probs), bool))
    n_family, t_family, family_precision = 0, None, None
    if taxa.families and (~answered).any():
        family_p, family_ok = taxa.scored(probs, truth_index, "family")
        n_family, t_family, family_precision = _prefix_choice(family_p[~answered], family_ok[~answered], target, min_answered)
    figures = {"method": THRESHOLD_METHOD, "observations": int(len(probs)),
               "species": {"answered": n_species, "precision": species_precision},
               "genus": {"answered": int(best[0] - n_species), "precision": genus_precision},
               "family": {"answered": n_family, "precision": family_precision}}
    return Thresholds(species=t_species, genus=t_genus, family=t_family, target_precision=target, chosen_on=figures)


def called_harmless_rate(answers: Answers, truth_index: np.ndarray, taxa: Taxa) -> float | None:
    """Share of observations of venomous species whose answer names a harmless taxon; None without any."""
    venomous = taxa.status[truth_index] == "venomous"
    return float((answers.venom_status[venomous] == "harmless").mean()) if venomous.any() else None


def choose_answer_venom_weight(probabilities: np.ndarray, truth_index: np.ndarray, taxa: Taxa, thresholds: Thresholds,
                               start: float = 1.0, max_rate: float = MAX_VENOMOUS_CALLED_HARMLESS) -> Thresholds:
    """`thresholds` with the smallest venom weight >= `start` (the head's, chosen by Track1) whose answers call at
    most `max_rate` of the venomous validation observations harmless (the largest tried when none does)."""
    tried: dict[str, float | None] = {}
    chosen = None
    for weight in [w for w in ANSWER_VENOM_WEIGHTS if w >= start] or [start]:
        rate = called_harmless_rate(decide(probabilities, taxa, thresholds, weight), truth_index, taxa)
        tried[f"{weight:g}"] = None if rate is None else round(rate, 4)
        chosen = weight
        if rate is None or rate <= max_rate:
            break
    venomous = int((taxa.status[np.asarray(truth_index)] == "venomous").sum())
    chosen_on = {**thresholds.chosen_on, "venom_weight": {"max_venomous_called_harmless": max_rate, "called_harmless_by_weight": tried,
                                                          "venomous_observations": venomous}}
    return Thresholds(thresholds.species, thresholds.genus, thresholds.family, thresholds.target_precision, chosen, chosen_on)
