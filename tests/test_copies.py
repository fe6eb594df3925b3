"""Byte-identical copies of a photo (saved twice, not linked): `check` fails on copies labelled as two species and
names them, and `evaluate` counts the held-out observations whose photo the head saw in training; both figures
are checked against the files' own bytes."""

from __future__ import annotations

import hashlib
import json
import re
import shutil

from pipelines.cli import main
from snakeweb.integrity import check_store
from snakeweb.store import Store
from tests.conftest import build_photo_store


def test_copies_across_splits_and_species_are_found_and_counted(tiny_model_dir, photo_folder, species_csv, tmp_path, capsys):
    photos = shutil.copytree(photo_folder, tmp_path / "photos")
    original = photos / "Natrix_natrix" / "00.jpg"
    for k in range(10):  # copies of one photo under other names: each its own observation, so some land in held-out splits
        shutil.copy(original, photos / "Natrix_natrix" / f"copy{k}.jpg")
    shutil.copy(photos / "Zamenis_longissimus" / "03.jpg", photos / "Vipera_berus" / "mislabelled.jpg")
    store = Store(build_photo_store(tmp_path / "store", tiny_model_dir, photos, species_csv, "--skip-project"))

    # the right values, from the files' bytes and the store's splits
    images = store.query("SELECT image_id, path, observation_id, split FROM images WHERE status = 'ok'")
    images["bytes"] = [hashlib.sha256(open(p, "rb").read()).hexdigest() for p in images["path"]]
    trained = set(images.loc[images["split"] == "train", "bytes"])
    expected = {split: images.loc[(images["split"] == split) & images["bytes"].isin(trained), "observation_id"].nunique()
                for split in ("val", "test")}
    assert sum(expected.values()) > 0  # (else this test would not exercise the count)

    verdict = next(v for v in check_store(store) if v.name == "copies")
    assert not verdict.ok
    groups = images.groupby("bytes")["path"].count()
    assert verdict.detail.startswith(f"{int((groups - 1)[groups > 1].sum())} photo(s) are byte-identical copies of others "
                                     f"({int((groups > 1).sum())} group(s))")
    assert "1 group(s) are labelled as two species" in verdict.detail and "mislabelled.jpg" in verdict.detail
    assert "lie in two splits" in verdict.detail and "copy" in verdict.detail
    # each example is a pair that really differs: its two photos' splits (or species) are named and not equal
    shown = re.search(r"e\.g\. \S+ \(split (\w+)\) = \S+ \(split (\w+)\)", verdict.detail)
    assert shown and shown.group(1) != shown.group(2)
    labels = re.search(r"e\.g\. \S+mislabelled.jpg \(class_id (\d+)\) = \S+ \(class_id (\d+)\)", verdict.detail)
    assert labels and {int(labels.group(1)), int(labels.group(2))} == {1740, 7}

    for split, copied in expected.items():
        capsys.readouterr()
        assert main(["evaluate", "--store", str(store.root), "--split", split, "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["observations_copied_from_training"] == copied
        assert main(["evaluate", "--store", str(store.root), "--split", split]) == 0
        note = f"note: {copied} of these {split} observations have a photo that is a byte-identical copy"
        assert (note in capsys.readouterr().out) == bool(copied)


def test_a_photo_moved_to_another_species_folder_is_fixed_by_remove_gone(tiny_model_dir, photo_folder, species_csv, tmp_path,
                                                                         caplog, capsys):
    """The old row of a moved photo stays (a store only grows): the copies are labelled as two species, and the advice
    is `build --remove-gone`, which removes the photo gone from the folder; check passes after it."""
    photos = tmp_path / "photos"
    shutil.copytree(photo_folder, photos)
    root = build_photo_store(tmp_path / "store", tiny_model_dir, photos, species_csv, "--skip-project")
    (photos / "Natrix_natrix" / "03.jpg").rename(photos / "Vipera_berus" / "moved-03.jpg")
    with caplog.at_level("WARNING"):
        build_photo_store(root, tiny_model_dir, photos, species_csv, "--skip-project")
    assert "--remove-gone" in caplog.text and "delete the wrong copy" not in caplog.text
    verdict = {v.name: v for v in check_store(Store(root))}["copies"]
    assert not verdict.ok and "Natrix_natrix/03.jpg" in verdict.detail
    assert f"python -m pipelines build --store {root} --images DIR --remove-gone" in verdict.detail
    assert main(["build", "--store", str(root), "--images", str(photos), "--species", str(species_csv), "--model",
                 str(tiny_model_dir), "--skip-project", "--remove-gone"]) == 0
    capsys.readouterr()
    assert all(v.ok for v in check_store(Store(root))), [v.line() for v in check_store(Store(root)) if not v.ok]
