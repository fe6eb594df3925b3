"""Combine the per-image predictions of one observation (several photos of one animal) into one."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from snakeweb.options import AGGREGATIONS  # defined there so the command line offers them without NumPy


def combine(log_probs: np.ndarray, method: str = "mean-log") -> np.ndarray:
    """Probabilities [K] of one observation from its images' log-probabilities [n, K].

    mean-log: product of experts (mean of log-probabilities, renormalised), the default;
    mean-prob: mean of probabilities; mode: the paper's majority vote of per-image top-1, returned as
    vote shares (ties broken by mean probability). One observation through ObservationCombiner: one rule for both.
    """
    log_probs = np.atleast_2d(np.asarray(log_probs, dtype=np.float64))
    return combine_by_observation(log_probs, ["one"] * len(log_probs), method)[1][0]


class ObservationCombiner:
    """`combine` for many observations at once, fed image chunks in any order: an accumulator of [m, K] float64
    and sparse sums per chunk, no per-observation Python loop and no [n_images, K] array. At SnakeCLEF scale
    (182k images, 103k observations, 1,784 classes) predict held 7.2 GB with per-image log-probabilities
    concatenated and combined one observation at a time; this holds the [m, K] result and one chunk.

    Same results as `combine` on each observation (mode's tie-break: vote shares plus 1e-6 x mean probability)."""

    def __init__(self, observation_ids: Sequence[str], n_classes: int, method: str = "mean-log") -> None:
        import pandas as pd

        if method not in AGGREGATIONS:
            raise ValueError(f"unknown aggregation {method!r}; use one of {', '.join(AGGREGATIONS)}")
        codes, uniques = pd.factorize(pd.Series([str(o) for o in observation_ids], dtype=object), sort=False)
        self.codes, self.ids, self.method = codes.astype(np.int64), [str(u) for u in uniques], method
        self.counts = np.bincount(self.codes, minlength=len(self.ids)).astype(np.float64)
        self.sums = np.zeros((len(self.ids), n_classes), np.float64)

    def add(self, start: int, log_probs: np.ndarray) -> None:
        """The log-probabilities [c, K] of images start .. start + c - 1 (rows of the ids given at creation)."""
        from scipy import sparse

        codes = self.codes[start:start + len(log_probs)]
        touched, local = np.unique(codes, return_inverse=True)
        log_probs = np.asarray(log_probs, dtype=np.float64)
        if self.method == "mean-log":
            values = log_probs
        elif self.method == "mean-prob":
            values = np.exp(log_probs)
        else:  # mode: one vote for each image's top class, plus the tie-break share of its probabilities
            values = np.exp(log_probs) * (1e-6 / self.counts[codes])[:, None]
            values[np.arange(len(values)), log_probs.argmax(axis=1)] += 1.0
        members = sparse.csr_matrix((np.ones(len(codes)), (local, np.arange(len(codes)))), shape=(len(touched), len(codes)))
        self.sums[touched] += members @ values

    def result(self, chunk: int = 8192) -> tuple[list[str], np.ndarray]:
        """(observation ids in first-seen order, probabilities [m, K]); normalised in place, chunk by chunk."""
        out = self.sums
        for s in range(0, len(out), chunk):
            block = out[s:s + chunk]
            if self.method == "mean-log":
                block /= self.counts[s:s + chunk, None]
                block -= block.max(axis=1, keepdims=True)
                np.exp(block, out=block)
            block /= block.sum(axis=1, keepdims=True)
        return self.ids, out


def combine_by_observation(
    log_probs: np.ndarray, observation_ids: Sequence[str], method: str = "mean-log"
) -> tuple[list[str], np.ndarray]:
    """(observation ids in first-seen order, probabilities [m, K]) of per-image log-probabilities [n, K]."""
    combiner = ObservationCombiner(observation_ids, log_probs.shape[1], method)
    if len(log_probs):
        combiner.add(0, log_probs)
    return combiner.result()


def top_k(probabilities: np.ndarray, k: int, chunk: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """(indices [m, k], probabilities [m, k]) sorted by probability, highest first. Rows in chunks: argpartition
    of all of a 103k x 1,784 matrix at once held a negated copy and int64 indices of its full size (3 GB)."""
    k = min(k, probabilities.shape[1])
    indices = np.empty((len(probabilities), k), np.int64)
    values = np.empty((len(probabilities), k), probabilities.dtype)
    for s in range(0, len(probabilities), chunk):
        block = probabilities[s:s + chunk]
        part = np.argpartition(-block, k - 1, axis=1)[:, :k]
        part_probs = np.take_along_axis(block, part, axis=1)
        order = np.argsort(-part_probs, axis=1, kind="stable")
        indices[s:s + chunk] = np.take_along_axis(part, order, axis=1)
        values[s:s + chunk] = np.take_along_axis(part_probs, order, axis=1)
    return indices, values
