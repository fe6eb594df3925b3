"""2-D map of all embeddings for the dashboard: PCA to 50 dimensions, then UMAP."""

from __future__ import annotations

import numpy as np

from snakeweb.embed import l2_normalise

SEEDED_UP_TO = 50_000


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
    # A seed makes UMAP reproducible but single-threaded; above SEEDED_UP_TO points the layout runs on every
    # core instead, and starts from the PCA coordinates rather than a spectral embedding of the neighbour graph
    # (on SnakeCLEF's 182k points the spectral start alone took ~35 s of 195; from PCA the whole map took 131 s:
    # benchmarks/run.py, umap_182k).
    seeded = n <= SEEDED_UP_TO
    init = "spectral" if seeded else "pca"
    reducer = umap.UMAP(n_components=2, n_neighbors=neighbours, min_dist=0.1, metric="euclidean", init=init,
                        random_state=seed if seeded else None, n_jobs=1 if seeded else -1, low_memory=True)
    coords = reducer.fit_transform(reduced)
    return coords, {"method": "umap", "pca_components": components, "n_neighbors": neighbours, "min_dist": 0.1, "n": n,
                    "seed": seed if seeded else None, "init": init}
