"""Combine the per-image predictions of one observation (several photos of one animal) into one."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from snakeweb.options import AGGREGATIONS  # defined there so the command line offers them without NumPy


def _logsumexp(x: np.ndarray, axis: int) -> np.ndarray:
    peak = x.max(axis=axis, keepdims=True)
    return (peak + np.log(np.exp(x - peak).sum(axis=axis, keepdims=True))).squeeze(axis)


def combine(log_probs: np.ndarray, method: str = "mean-log") -> np.ndarray:
    """Probabilities [K] of one observation from its images' log-probabilities [n, K].

    mean-log: product of experts (mean of log-probabilities, renormalised), the default;
    mean-prob: mean of probabilities; mode: the paper's majority vote of per-image top-1, returned as
    vote shares (ties broken by mean probability).
    """
    log_probs = np.asarray(log_probs, dtype=np.float64)
    if method == "mean-log":
        mean = log_probs.mean(axis=0)
        return np.exp(mean - _logsumexp(mean, axis=0))
    probs = np.exp(log_probs)
    if method == "mean-prob":
        return probs.mean(axis=0)
    if method == "mode":
        votes = np.bincount(log_probs.argmax(axis=1), minlength=log_probs.shape[1]).astype(np.float64)
        tie_break = probs.mean(axis=0) * 1e-6  # below one vote, so it only orders equal counts
        shares = votes + tie_break
        return shares / shares.sum()
    raise ValueError(f"unknown aggregation {method!r}; use one of {', '.join(AGGREGATIONS)}")


def combine_by_observation(
    log_probs: np.ndarray, observation_ids: Sequence[str], method: str = "mean-log"
) -> tuple[list[str], np.ndarray]:
    """(observation ids in first-seen order, probabilities [m, K])."""
    order: dict[str, list[int]] = {}
    for row, observation in enumerate(observation_ids):
        order.setdefault(str(observation), []).append(row)
    combined = np.stack([combine(log_probs[rows], method) for rows in order.values()]) if order else np.zeros((0, log_probs.shape[1]))
    return list(order), combined


def top_k(probabilities: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices [m, k], probabilities [m, k]) sorted by probability, highest first."""
    k = min(k, probabilities.shape[1])
    part = np.argpartition(-probabilities, k - 1, axis=1)[:, :k]
    part_probs = np.take_along_axis(probabilities, part, axis=1)
    order = np.argsort(-part_probs, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(part_probs, order, axis=1)
