"""Temperature scaling: one scalar that makes softmax probabilities honest on held-out data.

The venom-aware rule minimises *expected* cost, so it is only as good as the probabilities are calibrated.
"""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def nll(logits: np.ndarray, true_index: np.ndarray, temperature: float) -> float:
    p = softmax(logits, temperature)[np.arange(len(true_index)), true_index]
    return float(-np.log(np.maximum(p, 1e-300)).mean())


def fit_temperature(logits: np.ndarray, true_index: np.ndarray, low: float = 0.05, high: float = 20.0) -> float:
    """The temperature minimising validation NLL (golden-section search on log T; NLL is unimodal in it)."""
    a, b = np.log(low), np.log(high)
    ratio = (np.sqrt(5) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = nll(logits, true_index, np.exp(c)), nll(logits, true_index, np.exp(d))
    for _ in range(60):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = nll(logits, true_index, np.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = nll(logits, true_index, np.exp(d))
    return float(np.exp((a + b) / 2))


def expected_calibration_error(probabilities: np.ndarray, true_index: np.ndarray, bins: int = 15) -> float:
    """ECE of the top-1 confidence: the usual 15 equal-width bins."""
    confidence = probabilities.max(1)
    correct = probabilities.argmax(1) == true_index
    edges = np.linspace(0, 1, bins + 1)
    error = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (confidence > lo) & (confidence <= hi)
        if inside.any():
            error += inside.mean() * abs(confidence[inside].mean() - correct[inside].mean())
    return float(error)
