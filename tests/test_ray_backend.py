"""The Ray Data embed backend writes the same store as the local one (a real local Ray instance)."""

import numpy as np
import pytest

from pipelines.cli import main
from snakeweb.integrity import check_store
from snakeweb.store import Store

ray = pytest.importorskip("ray", reason="the Ray backend is an optional extra: pip install -r requirements-ray.txt")


def test_ray_backend_writes_the_same_store_as_the_local_backend(tmp_path, tiny_model_dir, photo_folder, species_csv):
    stores = {}
    for backend in ("local", "ray"):
        root = tmp_path / backend
        assert main(["ingest", "--store", str(root), "--images", str(photo_folder), "--species", str(species_csv)]) == 0
        assert main(["embed", "--store", str(root), "--model", str(tiny_model_dir), "--backend", backend, "--batch-size", "4"]) == 0
        assert main(["index", "--store", str(root)]) == 0
        stores[backend] = Store(root)
    ray.shutdown()
    query = "SELECT image_id, path, status, error, sha256, width, height FROM images ORDER BY image_id"
    local, remote = stores["local"].query(query), stores["ray"].query(query)
    assert local.equals(remote)  # same ids, same good and bad files with the same reasons
    assert (local["status"] == "error").sum() >= 1
    local_ids, local_vectors = stores["local"].embeddings()
    ray_ids, ray_vectors = stores["ray"].embeddings()
    assert (local_ids == ray_ids).all() and np.allclose(local_vectors, ray_vectors, atol=1e-5)
    assert all(v.ok for v in check_store(stores["ray"]) if v.name in ("counts", "index"))
