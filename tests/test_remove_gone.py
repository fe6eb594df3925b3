"""`--remove-gone`: photos deleted from an ingested folder leave the store (rows, vectors, index, head, predictions,
map) when the user asks, in one transaction, and never otherwise; reviews stay."""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.cli import main
from snakeweb.integrity import check_store
from snakeweb.store import Store
from snakeweb.vectors import read_index_file
from tests.conftest import build_photo_store, make_photo


def _state(store: Store) -> dict:
    return {
        "paths": set(store.query("SELECT path FROM images")["path"]),
        "observations": set(store.query("SELECT observation_id FROM observations")["observation_id"]),
        "embedded": store.embedded_ids(),
        "head": store.get_meta("head")["training_digest"],
    }


def test_build_with_remove_gone_takes_deleted_photos_out_and_leaves_a_consistent_store(
        tmp_path, photo_folder, species_csv, tiny_model_dir, caplog, capsys):
    photos = tmp_path / "photos"
    shutil.copytree(photo_folder, photos)
    store = Store(build_photo_store(tmp_path / "store", tiny_model_dir, photos, species_csv))
    before = _state(store)
    images = store.query("SELECT image_id, path, observation_id, split FROM images WHERE status = 'ok' ORDER BY image_id")
    # one photo the head trained on and one it was validated on: both must leave the index, head and map
    removed = pd.concat([images[images["split"] == "train"].head(1), images[images["split"] == "val"].head(1)])
    assert len(removed) == 2
    from snakeweb.review import add_review

    reviewed = removed["observation_id"].iloc[0]
    add_review(store, reviewed, "ana", 1740, note="a team's work")
    for path in removed["path"]:
        shutil.copy(path, tmp_path / f"query-{len(list(tmp_path.glob('query-*')))}.jpg")  # to search with it later
        (photos / path.removeprefix(str(photos.resolve()) + "/")).unlink()

    # without the option: nothing leaves, and the warning names the option
    caplog.clear()
    assert main(["ingest", "--store", str(store.root), "--images", str(photos)]) == 0
    warned = [r.getMessage() for r in caplog.records if "no longer there" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith("ingest: 2 photo(s)") and "--remove-gone" in warned[0]
    assert "2 gone from the folder kept (--remove-gone removes them)" in capsys.readouterr().out
    kept = _state(store)
    assert kept["paths"] == before["paths"] and np.array_equal(kept["embedded"], before["embedded"])

    capsys.readouterr()
    assert main(["build", "--store", str(store.root), "--images", str(photos), "--species", str(species_csv),
                 "--model", str(tiny_model_dir), "--remove-gone"]) == 0
    out = capsys.readouterr().out
    assert "ingest: removed 2 photo(s) gone from" in out and "1 review(s) of those observations are kept" in out
    assert all(p.removeprefix(str(photos.resolve()) + "/") in out for p in removed["path"])
    after = _state(store)
    assert after["paths"] == before["paths"] - set(removed["path"])
    assert after["observations"] == before["observations"] - set(removed["observation_id"])  # one photo each: emptied
    assert np.array_equal(after["embedded"], np.setdiff1d(before["embedded"], removed["image_id"]))
    assert np.array_equal(np.sort(read_index_file(store.index_path).ids), after["embedded"])  # the index was rebuilt
    assert after["head"] != before["head"] and after["head"] is not None  # the head was retrained
    assert np.array_equal(np.sort(store.query("SELECT image_id FROM projection")["image_id"]), after["embedded"])
    assert not set(store.query("SELECT DISTINCT observation_id FROM predictions")["observation_id"]) & set(removed["observation_id"])
    assert not set(store.query("SELECT observation_id FROM answers")["observation_id"]) & set(removed["observation_id"])
    assert store.query("SELECT count(*) AS n FROM view_embeddings WHERE image_id IN (SELECT unnest(?))",
                       [removed["image_id"].tolist()])["n"][0] == 0
    assert store.query("SELECT count(*) AS n FROM reviews WHERE observation_id = ?", [reviewed])["n"][0] == 1
    record = store.get_meta("removed_images")
    assert len(record) == 1 and record[0]["images"] == 2 and record[0]["embedded"] == 2 and record[0]["reviews_kept"] == 1
    assert sorted(record[0]["examples"]) == sorted(p.removeprefix(str(photos.resolve()) + "/") for p in removed["path"])
    verdicts = check_store(store)
    assert all(v.ok for v in verdicts), [v.line() for v in verdicts if not v.ok]
    assert main(["check", "--store", str(store.root)]) == 0

    # identify with the removed photos themselves: their nearest images are everything else, never them
    from snakeweb.identify import Identifier

    identifier = Identifier(store)
    for query in sorted(tmp_path.glob("query-*.jpg")):
        result = identifier.identify([(query.name, query)], neighbours=len(after["embedded"]) + 5)
        named = {n.path for n in result.neighbours}
        assert len(named) == len(after["embedded"]) and not named & set(removed["path"])

    # a build killed after its ingest removed a validation photo: the next plain build retrains the head (its digest
    # covers its validation photos too) and rebuilds the rest; a new photo never takes a removed photo's id
    val = store.query("SELECT path FROM images WHERE split = 'val' AND status = 'ok' ORDER BY image_id")["path"][0]
    (photos / val.removeprefix(str(photos.resolve()) + "/")).unlink()
    make_photo(photos / "Natrix_natrix" / "new.jpg", (40, 160, 60), seed=99)
    assert main(["ingest", "--store", str(store.root), "--images", str(photos), "--remove-gone"]) == 0
    assert "ingest: removed 1 photo(s)" in capsys.readouterr().out
    assert store.get_meta("head")["training_digest"] is None and "were removed" in store.get_meta("head")["stale"]
    # until the next train, check fails the head and the commands that answer with it say it is out of date
    head_line = next(v for v in check_store(store) if v.name == "head")
    assert not head_line.ok and "out of date: 1 photo(s) it was trained or validated on were removed" in head_line.line()
    assert main(["evaluate", "--store", str(store.root)]) == 0
    assert "note: the head is out of date: 1 photo(s) it was trained or validated on were removed" in capsys.readouterr().out
    new_id = store.query("SELECT image_id FROM images WHERE path LIKE '%new.jpg'")["image_id"][0]
    assert new_id > max(removed["image_id"].max(), before["embedded"].max())
    assert main(["build", "--store", str(store.root), "--images", str(photos), "--model", str(tiny_model_dir)]) == 0
    out = capsys.readouterr().out
    assert "train: head up to date" not in out and "removed" not in out and "no longer there" not in out
    assert "stale" not in store.get_meta("head") and len(store.get_meta("removed_images")) == 2
    assert main(["check", "--store", str(store.root)]) == 0


def test_remove_gone_is_refused_for_metadata(tmp_path, capsys):
    root = tmp_path / "images"
    make_photo(root / "a.jpg", (40, 160, 60), seed=1)
    metadata = tmp_path / "metadata.csv"
    metadata.write_text("observation_id,image_path,class_id\n1,a.jpg,3\n")
    store = tmp_path / "store"
    assert main(["ingest", "--store", str(store), "--metadata", str(metadata), "--image-root", str(root), "--remove-gone"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --remove-gone removes photos gone from an --images folder") and err.count("\n") == 1
    assert not store.exists()  # refused before the store was made


def test_a_store_whose_training_photos_are_all_gone_says_so(tmp_path, photo_folder, species_csv, tiny_model_dir, capsys):
    """Every training photo removed: train says the train split is empty (with the counts by split), not "run embed",
    and check keeps failing the head trained on them, which the commands still answering with it name."""
    photos = tmp_path / "photos"
    shutil.copytree(photo_folder, photos)
    store = Store(build_photo_store(tmp_path / "store", tiny_model_dir, photos, species_csv))
    train = store.query("SELECT path FROM images WHERE split = 'train' AND status = 'ok'")["path"]
    for path in train:
        Path(path).unlink()
    capsys.readouterr()
    assert main(["build", "--store", str(store.root), "--images", str(photos), "--remove-gone"]) == 2
    err = capsys.readouterr().err
    assert "The train split has no labelled photo (labelled photos: " in err and "run embed" not in err, err
    assert main(["check", "--store", str(store.root)]) == 1
    assert "FAIL  head: head.pt is out of date" in capsys.readouterr().out


def test_a_folder_emptied_of_photos_leaves_the_store_unchanged_and_says_so(tmp_path, photo_folder, species_csv, tiny_model_dir,
                                                                           capsys):
    """Every photo deleted from the folder: ingest and build (with --remove-gone or without) refuse, say the store was
    left as it was with its photos, and what to do: check the path, or build a new store to have an empty one."""
    photos = tmp_path / "photos"
    shutil.copytree(photo_folder, photos)
    store = Store(build_photo_store(tmp_path / "store", tiny_model_dir, photos, species_csv))
    before = _state(store)
    held = len(before["paths"])
    for path in [p for p in photos.rglob("*") if p.is_file()]:
        path.unlink()
    for command in (["ingest", "--remove-gone"], ["build", "--remove-gone"], ["ingest"]):
        capsys.readouterr()
        assert main([command[0], "--store", str(store.root), "--images", str(photos), *command[1:]]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: No photos under {photos}; the store {store.root} was left unchanged") and err.count("\n") == 1
        assert f"it still holds {held} photo(s)" in err and "Check the --images path" in err and "build a new one" in err
        assert ("removed none of its photos (--remove-gone)" in err) == ("--remove-gone" in command)
        after = _state(store)
        assert after["paths"] == before["paths"] and np.array_equal(after["embedded"], before["embedded"])
        assert after["head"] == before["head"]
    # a store that holds nothing yet gets the plain sentence
    assert main(["ingest", "--store", str(tmp_path / "new"), "--images", str(photos)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: No photos under {photos}") and "left unchanged" not in err
