"""Killing the build mid-embed (SIGKILL, a real subprocess) and re-running stores every image exactly once."""

import subprocess
import sys

from snakeweb.integrity import check_store
from snakeweb.store import Store
from tests.conftest import REPO, SYNTHETIC_COLOURS, make_photo
from tests.killpoints import run_killed


def test_kill_mid_embed_then_rerun_stores_each_image_once(tmp_path, tiny_model_dir):
    photos = tmp_path / "photos"
    for name, colour in SYNTHETIC_COLOURS.items():
        for i in range(150):
            make_photo(photos / name / f"{i:03d}.jpg", colour, seed=i, size=(320, 240))
    store = tmp_path / "store"
    arguments = ["build", "--store", str(store), "--images", str(photos), "--model", str(tiny_model_dir),
                 "--batch-size", "4", "--skip-project"]
    # the real build in a real subprocess, killed without warning (SIGKILL) right after its third embed transaction
    # has committed: a fixed point mid-embed on any machine, where a kill after a sleep missed on a fast one
    killed_run = run_killed("snakeweb.embed_stage:_write_rows", "after", 3, arguments, REPO)
    assert "embed: model" in killed_run.stdout and ", engine " in killed_run.stdout  # the engine is named

    killed = Store(store)
    done = int(killed.query("SELECT count(*) n FROM embeddings")["n"][0])
    assert 0 < done < 450, f"the kill should land mid-embed, but {done} of 450 were embedded"

    rerun = subprocess.run([sys.executable, "-m", "pipelines", *arguments], cwd=REPO, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "0 new image(s), 450 already" in rerun.stdout
    images = killed.query("SELECT image_id, path, status FROM images")
    assert len(images) == 450 and images["path"].is_unique and (images["status"] == "ok").all()
    embedded = killed.query("SELECT image_id FROM embeddings")["image_id"]
    assert len(embedded) == 450 and embedded.is_unique
    assert set(embedded) == set(images["image_id"])
    assert all(v.ok for v in check_store(killed))
