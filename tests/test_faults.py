"""SIGKILL the build at several points of each stage, re-run, and compare with an uninterrupted build."""

import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from snakeweb.heads import Head
from snakeweb.index import index_ids, load_index
from snakeweb.integrity import check_store
from snakeweb.store import Store
from tests.conftest import REPO, SYNTHETIC_COLOURS, make_photo

# (marker printed just before the stage we want to interrupt, seconds to wait after it)
KILL_POINTS = {
    "during ingest": (None, 0.0),  # killed as soon as the process has started
    "mid-embed": ("embed: model", 0.8),
    "during index": ("embed: 60 embedded", 0.0),
    "during head training": ("index:", 0.0),
    "during predict": ("train:", 0.0),
    "during UMAP": ("predict:", 0.5),
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
    marker, delay = KILL_POINTS[point]
    store = tmp_path / "store"
    project = point == "during UMAP"
    process = subprocess.Popen(command(store, photos, tiny_model_dir, project), cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    if marker is not None:
        seen = ""
        while marker not in seen:
            line = process.stdout.readline()
            assert line, f"the build ended before {marker!r}: {seen}"
            seen = line
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait()

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
