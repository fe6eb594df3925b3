"""2-D map of all embeddings for the dashboard: PCA to 50 dimensions, then UMAP."""

from __future__ import annotations

import numpy as np

from snakeweb.embed import l2_normalise


def project_2d(vectors: np.ndarray, seed: int = 0, n_neighbors: int = 15) -> tuple[np.ndarray, dict]:
    """Coordinates [n, 2] and the settings used. Very small stores (under 10 images) get PCA alone: UMAP
    needs more neighbours than that to mean anything."""
    from sklearn.decomposition import PCA

    x = l2_normalise(vectors)
    n = len(x)
    if n < 3:
        return np.zeros((n, 2)) + np.arange(n)[:, None], {"method": "trivial", "n": n}
    components = min(50, x.shape[1], n - 1)
    reduced = PCA(n_components=components, random_state=seed).fit_transform(x)
    if n < 10:
        return reduced[:, :2], {"method": "pca", "n": n}
    import umap

    neighbours = min(n_neighbors, n - 1)
    reducer = umap.UMAP(n_components=2, n_neighbors=neighbours, min_dist=0.1, metric="euclidean",
                        random_state=seed, n_jobs=1)  # a seed makes UMAP single-threaded anyway; say so
    coords = reducer.fit_transform(reduced)
    return coords, {"method": "umap", "pca_components": components, "n_neighbors": neighbours, "min_dist": 0.1, "n": n}
