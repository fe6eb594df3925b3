"""Temperature scaling: one scalar that makes softmax probabilities honest on held-out data.

The venom-aware rule minimises *expected* cost, so it is only as good as the probabilities are calibrated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from snakeweb.errors import SnakewebError

RELIABILITY_BINS = 15
# folds of the held-out check in `choose_temperature`: each fold's NLL is scored at a temperature fitted without it
TEMPERATURE_FOLDS = 5

# Work in torch (float32 passes, float64 means, all cores): with SnakeCLEF's 1,784 classes a validation split
# is ~30M logits; a NumPy float64 softmax took 0.7 s per pass here, a torch float32 one ~0.15 s.


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of `logits / temperature` (temperature scaling: Guo et al. 2017, "On Calibration of Modern
    Neural Networks", section 4.2), float32."""
    return torch.softmax(torch.as_tensor(np.asarray(logits), dtype=torch.float32) / temperature, dim=1).numpy()


def nll(logits: np.ndarray, true_index: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of the true classes under `softmax(logits, temperature)` (float64 mean)."""
    return _nll_at(*_logits_and_picked(logits, true_index), 1.0 / temperature)[0]


def _logits_and_picked(logits: np.ndarray, true_index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    z = torch.as_tensor(np.asarray(logits), dtype=torch.float32)
    return z, z[torch.arange(len(true_index)), torch.as_tensor(np.asarray(true_index))]


def _nll_at(z: torch.Tensor, picked: torch.Tensor, beta: float) -> tuple[float, torch.Tensor]:
    """NLL at temperature 1/beta and the row log-normalisers, in one pass."""
    lse = torch.logsumexp(beta * z, dim=1)
    return float((lse - beta * picked).double().mean()), lse


# the sharpest temperature fit_temperature tries: validation with no wrong top-1 answer drives the NLL fit there (NLL
# then falls the whole way as T -> 0), which would make every probability near 0 or 1
LOWEST_TEMPERATURE = 0.05


def fit_temperature(logits: np.ndarray, true_index: np.ndarray, low: float = LOWEST_TEMPERATURE, high: float = 20.0) -> float:
    """The temperature in [low, high] minimising validation NLL.

    NLL is convex in beta = 1/T (a log-sum-exp of functions linear in beta, minus one), with derivative
    mean(E_p[z] - z_true) and second derivative mean(Var_p[z]) under p = softmax(beta z), so damped Newton steps
    on beta reach the minimum in a handful of passes over the logits (a golden-section search took ~40).
    """
    # float32 passes (half the memory traffic of float64; 18k x 1,784 logits take ~0.15 s a pass here), means in
    # float64; Newton stops when its step is under 1e-6 of beta, far below what moves a probability
    z, picked = _logits_and_picked(logits, true_index)
    beta, lowest, highest = 1.0, 1.0 / high, 1.0 / low
    current, lse = _nll_at(z, picked, beta)
    for _ in range(50):
        weighted = torch.exp(beta * z - lse[:, None]).mul_(z)  # p * z, p = softmax(beta z)
        mean_z = weighted.sum(1)
        gradient = float((mean_z - picked).double().mean())
        curvature = float(((weighted.mul_(z)).sum(1).double() - mean_z.double() ** 2).mean())
        if curvature <= 0:  # every softmax one-hot or uniform: NLL is (nearly) linear in beta; the bounds decide below
            break
        step = gradient / curvature
        if abs(step) <= 1e-6 * beta:
            break
        for _ in range(30):  # halve the step until NLL does not rise (pure Newton can overshoot on a convex function)
            candidate = float(np.clip(beta - step, lowest, highest))
            value, candidate_lse = _nll_at(z, picked, candidate)
            if value <= current:
                break
            step /= 2
        else:
            break  # no step lowers NLL: at its minimum to float precision
        if candidate == beta:
            break
        beta, current, lse = candidate, value, candidate_lse
    # Where NLL is (nearly) linear in beta, float32 rounding decides the gradient's sign and Newton's last steps: it
    # once sent confident, correct logits to T = 20 (every probability flattened, every venomous species' p(venomous)
    # under 0.5). The lowest float64 NLL of where Newton stopped and the two bounds decides (where it stopped on a tie).
    z64, picked64 = z.double(), picked.double()
    options = [(float((torch.logsumexp(b * z64, dim=1) - b * picked64).mean()), rank, b) for rank, b in enumerate((beta, highest, lowest))]
    return float(1.0 / min(options)[2])


@dataclass(frozen=True)
class TemperatureChoice:
    """What `choose_temperature` chose and the validation figures behind it: `temperature` the one kept (`fitted`
    or 1.0), NLL at T = 1 and at the kept temperature on all of validation, NLL held out across `folds` folds at
    T = 1 and at temperatures fitted without each fold, top-1 ECE (15 bins) before and after, and `note`, the
    sentence to tell people when the temperature was not kept or made ECE worse (None otherwise)."""

    temperature: float
    fitted: float
    nll_before: float
    nll_after: float
    held_out_nll_before: float
    held_out_nll_fitted: float
    folds: int
    ece_before: float
    ece_after: float
    note: str | None

    @property
    def ece_worsened(self) -> bool:
        """Whether the temperature kept raised validation ECE."""
        return self.ece_after > self.ece_before


def choose_temperature(logits: np.ndarray, true_index: np.ndarray, folds: int = TEMPERATURE_FOLDS, seed: int = 0) -> TemperatureChoice:
    """Temperature scaling as Guo et al. 2017 ("On Calibration of Modern Neural Networks", section 4.2) fit it: the T
    minimising validation NLL (`fit_temperature`), kept only when it also lowers NLL *held out*: validation is cut into
    `folds` random folds, each scored at a T fitted on the others, and unless their mean NLL is below NLL at T = 1,
    T = 1 is kept. On all of validation the fitted T can never do worse than T = 1 (T = 1 is one of the candidates),
    so that comparison would keep any T; on a small validation split the fitted T follows its noise, and the held-out
    check catches it.

    The choice is by NLL, a proper scoring rule, not by ECE: ECE over 15 equal-width bins of a few hundred
    observations is noisy, and choosing by it overfits validation. NLL and ECE can disagree (a few confidently wrong
    observations among many confidently right ones: the NLL-best T flattens every probability), so ECE is reported
    before and after, and `note` says when the kept T made it worse. `logits` [n, K], `true_index` [n] head indices."""
    logits, true_index = np.asarray(logits), np.asarray(true_index)
    n = len(true_index)
    fitted = fit_temperature(logits, true_index)
    nll_before, nll_fitted = nll(logits, true_index, 1.0), nll(logits, true_index, fitted)
    folds = max(1, min(folds, n // 2))  # at least 2 rows a fold
    fold_of = np.empty(n, dtype=np.int64)
    fold_of[np.random.default_rng(seed).permutation(n)] = np.arange(n) % folds
    held_out = nll_fitted
    if folds > 1:
        total = 0.0
        for fold in range(folds):
            inside = fold_of == fold
            t = fit_temperature(logits[~inside], true_index[~inside])
            total += nll(logits[inside], true_index[inside], t) * int(inside.sum())
        held_out = total / n
    # no wrong top-1 answer on validation: NLL keeps falling as T -> 0, so the fit says nothing about how confident to be
    no_errors = n > 0 and bool((logits.argmax(axis=1) == true_index).all())
    keep = held_out < nll_before and nll_fitted < nll_before and not no_errors
    temperature = fitted if keep else 1.0
    ece_before = expected_calibration_error(softmax(logits), true_index)
    ece_after = expected_calibration_error(softmax(logits, temperature), true_index) if keep else ece_before
    note = None
    if no_errors and fitted < 1.0:
        note = (f"temperature kept at 1: every validation observation ({n}) is right at top-1, so the NLL fit only sharpens "
                f"(T = {fitted:.3g}) and would make every probability near 0 or 1; a validation split with some wrong "
                "answers is needed to calibrate.")
    elif not keep and fitted != 1.0:
        note = (f"temperature kept at 1: the temperature fitted on validation ({fitted:.3g}) did not lower validation NLL held out "
                f"across {folds} folds ({held_out:.4f} against {nll_before:.4f} at T = 1), so it would only follow this split's "
                f"noise; validation ECE stays {ece_before:.1%}.")
    elif keep and ece_after > ece_before:
        note = (f"temperature {temperature:.3g} made validation ECE worse ({ece_before:.1%} -> {ece_after:.1%}) while lowering "
                f"validation NLL ({nll_before:.4f} -> {nll_fitted:.4f}; held out across {folds} folds {held_out:.4f}); kept, "
                f"since NLL scores every probability and ECE over {RELIABILITY_BINS} bins of {n} observations is noisy: "
                "read p(venomous) and the top-1 confidence with that in mind.")
    return TemperatureChoice(temperature=float(temperature), fitted=float(fitted), nll_before=nll_before,
                             nll_after=nll_fitted if keep else nll_before, held_out_nll_before=nll_before,
                             held_out_nll_fitted=float(held_out), folds=folds, ece_before=ece_before, ece_after=ece_after, note=note)


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int = RELIABILITY_BINS) -> pd.DataFrame:
    """Reliability diagram table: `bins` equal-width confidence bins over 0..1 (bin i holds (i/bins, (i+1)/bins],
    the first also holds 0), one row per non-empty bin: bin, lower, upper, confidence (mean), accuracy (share of
    `correct`), count.

    For top-1 species: confidence = top probability, correct = top is the true class; for the venom probability:
    confidence = p(venomous), correct = the true species is venomous (a calibrated p says 0.8 where 80% are).
    The ECE (`ece`) is the count-weighted mean |confidence - accuracy| over the bins (Guo et al. 2017, "On
    Calibration of Modern Neural Networks").
    Raises SnakewebError when the arrays differ in length or a confidence lies outside 0..1.
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    if confidence.shape != correct.shape:
        raise SnakewebError(f"Give one correct flag per confidence ({len(correct)} flags for {len(confidence)} confidences).")
    if len(confidence) and (np.nanmin(confidence) < 0 or np.nanmax(confidence) > 1 + 1e-9 or np.isnan(confidence).any()):
        raise SnakewebError("Confidences must be probabilities in 0..1; pass calibrated probabilities, not logits.")
    # bin i is (edges[i], edges[i + 1]], 0 put in the first; found by searchsorted on the edges (c * bins can round
    # across an edge)
    edges = np.linspace(0, 1, bins + 1)
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    rows = []
    for b in np.unique(index):
        inside = index == b
        rows.append({"bin": int(b), "lower": float(edges[b]), "upper": float(edges[b + 1]), "confidence": float(confidence[inside].mean()),
                     "accuracy": float(correct[inside].mean()), "count": int(inside.sum())})
    return pd.DataFrame(rows, columns=["bin", "lower", "upper", "confidence", "accuracy", "count"])


def ece(table: pd.DataFrame) -> float | None:
    """Expected calibration error of a `reliability` table: sum over bins of count/n x |confidence - accuracy| (Guo
    et al. 2017, "On Calibration of Modern Neural Networks", eq. 3); None for an empty table."""
    total = table["count"].sum() if len(table) else 0
    if not total:
        return None
    return float((table["count"] / total * (table["confidence"] - table["accuracy"]).abs()).sum())


def expected_calibration_error(probabilities: np.ndarray, true_index: np.ndarray, bins: int = RELIABILITY_BINS) -> float:
    """ECE of the top-1 confidence over `bins` equal-width bins (the `reliability` table's): sum over bins of
    |B|/n x |accuracy(B) - confidence(B)| (Guo et al. 2017, "On Calibration of Modern Neural Networks", eq. 3)."""
    probabilities = np.asarray(probabilities)
    table = reliability(probabilities.max(1), probabilities.argmax(1) == np.asarray(true_index), bins)
    return ece(table) or 0.0
