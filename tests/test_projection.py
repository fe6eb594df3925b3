import numpy as np

from snakeweb import projection


def clustered(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(4, 32))
    return (centres[np.arange(n) % 4] + 0.1 * rng.normal(size=(n, 32))).astype(np.float32)


def test_small_maps_are_seeded_and_reproducible_large_ones_start_from_pca_on_every_core(monkeypatch):
    x = clustered(120)
    first, settings = projection.project_2d(x)
    again, _ = projection.project_2d(x)
    assert settings["seed"] == 0 and settings["init"] == "spectral" and np.allclose(first, again)
    monkeypatch.setattr(projection, "SEEDED_UP_TO", 100)  # stand-in for SnakeCLEF-sized maps
    coords, settings = projection.project_2d(x)
    assert settings["seed"] is None and settings["init"] == "pca" and np.isfinite(coords).all()
    # the four clusters stay apart on the map: each point's nearest neighbour on the map is from its own cluster
    d = np.linalg.norm(coords[:, None] - coords[None], axis=2) + np.eye(len(coords)) * 1e9
    assert (d.argmin(1) % 4 == np.arange(len(coords)) % 4).mean() > 0.95
