""""Not a snake in this store": a photo farther from every reference image than real snakes ever are.

The threshold is the similarity to the nearest training image that all but `false_rejection` of the
validation photos reach, so at most that share of real snakes is turned away.
"""

from __future__ import annotations

import numpy as np

from snakeweb.embed import l2_normalise


def nearest_training_similarity(train_vectors: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Cosine similarity of each query to its nearest training vector: exact, by FAISS's brute-force search over
    the normalised vectors as they are (an index would hold a second copy of them)."""
    import faiss

    sims, _ = faiss.knn(np.ascontiguousarray(l2_normalise(queries)), np.ascontiguousarray(l2_normalise(train_vectors)), 1,
                        faiss.METRIC_INNER_PRODUCT)
    return sims[:, 0]


def similarity_threshold(train_vectors: np.ndarray, val_vectors: np.ndarray, false_rejection: float = 0.01) -> dict | None:
    """The threshold and what it costs on validation; None without enough validation photos to choose it."""
    if len(val_vectors) < 20 or len(train_vectors) == 0:
        return None
    sims = nearest_training_similarity(train_vectors, val_vectors)
    threshold = float(np.quantile(sims, false_rejection))
    return {"similarity_threshold": threshold, "target_false_rejection": false_rejection,
            "val_false_rejection": float((sims < threshold).mean()), "val_images": int(len(sims))}
