"""SIGKILL the build at several points of each stage, re-run, and compare with an uninterrupted build."""

import subprocess
import sys

import numpy as np
import pytest

from snakeweb.heads import Head
from snakeweb.index import index_ids, load_index
from snakeweb.integrity import check_store
from snakeweb.store import Store
from tests.conftest import REPO, SYNTHETIC_COLOURS, make_photo
from tests.killpoints import run_killed

# where each run is killed: (function, "before"/"after", which call), a fixed point of the code on any machine
KILL_POINTS = {
    # inside ingest's one transaction, its rows inserted but not committed
    "during ingest": ("snakeweb.ingest:update_splits", "after", 1),
    # right after the second embed transaction has committed, with most images still pending
    "mid-embed": ("snakeweb.embed_stage:_write_rows", "after", 2),
    # the index file written, its run metadata not yet recorded
    "during index": ("snakeweb.index:save_index", "after", 1),
    # the head file written, its run metadata (and the novelty threshold) not yet recorded
    "during head training": ("snakeweb.heads:Head.save", "after", 1),
    # the predictions committed, the answers and held-out summary not yet
    "during predict": ("snakeweb.export:store_answers", "before", 1),
    # the map about to be computed, nothing of it stored
    "during UMAP": ("snakeweb.projection:project_2d", "before", 1),
}



def _count(store: Store, table: str) -> int:
    return int(store.query(f"SELECT count(*) n FROM {table}")["n"][0])


# what the killed run leaves behind at each point (checked, so a moved point cannot go unnoticed)
KILLED_STATE = {
    "during ingest": lambda s: _count(s, "images") == 0,
    "mid-embed": lambda s: 0 < _count(s, "embeddings") < 60,
    "during index": lambda s: s.index_path.is_file() and s.get_meta("index") is None,
    "during head training": lambda s: s.head_path.is_file() and s.get_meta("head") is None,
    "during predict": lambda s: _count(s, "predictions") > 0 and s.get_meta("held_out") is None,
    "during UMAP": lambda s: s.get_meta("held_out") is not None and _count(s, "projection") == 0,
}


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("fault-photos")
    for name, colour in SYNTHETIC_COLOURS.items():
        for i in range(20):
            make_photo(root / name / f"{i:02d}.jpg", colour, seed=i, size=(200, 150))
    return root


def command(store, photos, model, project: bool = True):
    # UMAP's first call in a process compiles for ~20 s; only the kill point inside it needs the map
    return [sys.executable, "-m", "pipelines", "build", "--store", str(store), "--images", str(photos),
            "--model", str(model), "--batch-size", "2", *([] if project else ["--skip-project"])]


def snapshot(store: Store) -> dict:
    ids, vectors = store.embeddings()
    head = Head.load(store.head_path)
    return {
        "images": store.query("SELECT image_id, path, status FROM images ORDER BY image_id"),
        "ids": ids, "vectors": vectors, "classes": head.label_map.class_ids,
        "index": np.sort(index_ids(load_index(store.index_path))),
        "predictions": store.query("SELECT observation_id, rank, class_id FROM predictions ORDER BY 1, 2"),
        "projected": int(store.query("SELECT count(*) n FROM projection")["n"][0]),
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory, photos, tiny_model_dir):
    store = tmp_path_factory.mktemp("reference") / "store"
    subprocess.run(command(store, photos, tiny_model_dir), cwd=REPO, check=True, capture_output=True)
    return snapshot(Store(store))


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_killed_build_resumes_to_the_same_store(point, photos, tiny_model_dir, reference, tmp_path):
    target, when, nth = KILL_POINTS[point]
    store = tmp_path / "store"
    project = point == "during UMAP"
    run_killed(target, when, nth, command(store, photos, tiny_model_dir, project)[3:], REPO)
    assert KILLED_STATE[point](Store(store)), f"the kill {point} left another state than the one this test is for"

    rerun = subprocess.run(command(store, photos, tiny_model_dir, project), cwd=REPO, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    result = snapshot(Store(store))
    assert result["images"].equals(reference["images"])  # each image exactly once, same ids
    assert np.array_equal(result["ids"], reference["ids"])
    assert np.allclose(result["vectors"], reference["vectors"], atol=1e-5)
    assert np.array_equal(result["index"], result["ids"])  # index ids == stored image ids
    assert result["classes"] == reference["classes"]
    assert result["predictions"].equals(reference["predictions"])
    assert result["projected"] == (reference["projected"] if project else 0) and reference["projected"] == 60
    assert all(v.ok for v in check_store(Store(store)))
