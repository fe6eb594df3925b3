"""A photo replaced in place (same path, new bytes) is noticed by ingest and `check` from its size and modification
time (hashed only when they differ) and embedded again, with the index, map, head and predictions made again; a
touched photo (same bytes) is not."""

import os
import shutil

import numpy as np

from pipelines.cli import main
from snakeweb.integrity import check_store
from snakeweb.store import Store
from tests.conftest import build_photo_store


def _vectors(store: Store) -> dict[int, np.ndarray]:
    ids, vectors = store.embeddings()
    return dict(zip(ids.tolist(), vectors))


def _files_verdict(store: Store):
    return next(v for v in check_store(store) if v.name == "files")


def test_a_photo_replaced_in_place_is_embedded_again_and_a_touched_one_is_not(
        tmp_path, photo_folder, species_csv, tiny_model_dir, capsys):
    photos = tmp_path / "photos"
    shutil.copytree(photo_folder, photos)
    store = Store(build_photo_store(tmp_path / "store", tiny_model_dir, photos, species_csv))
    assert store.query("SELECT count(*) AS n FROM images WHERE status = 'ok' AND mtime_ns IS NULL")["n"][0] == 0
    images = store.query("SELECT image_id, path, split, class_id, observation_id FROM images WHERE status = 'ok' "
                         "ORDER BY image_id")
    val = images[images["split"] == "val"].iloc[0]
    source = images[(images["class_id"] == val["class_id"]) & (images["image_id"] != val["image_id"])].iloc[0]
    before, head_before = _vectors(store), store.head_path.read_bytes()
    from snakeweb.review import add_review

    add_review(store, val["observation_id"], "ana", int(val["class_id"]), note="kept")

    # another photo's bytes copied over the validation photo: check fails `files`, naming it and the remedy
    shutil.copyfile(source["path"], val["path"])
    files = _files_verdict(store)
    assert not files.ok and "1 CHANGED since they were embedded" in files.detail and val["path"] in files.detail
    assert "`build` embeds them again" in files.detail
    capsys.readouterr()
    assert main(["build", "--store", str(store.root), "--images", str(photos), "--model", str(tiny_model_dir)]) == 0
    out = capsys.readouterr().out
    name = val["path"].removeprefix(str(photos.resolve()) + "/")
    assert "ingest: 1 photo(s) changed since they were embedded" in out and name in out and "1 changed since embedded" in out
    assert "train: head up to date" not in out and "index: up to date" not in out and "project: up to date" not in out
    after = _vectors(store)
    assert sorted(after) == sorted(before)  # the photo kept its image id
    for image_id, vector in before.items():  # only that one photo was embedded again, now as the photo copied over it
        if image_id == val["image_id"]:
            assert np.allclose(after[image_id], before[source["image_id"]], atol=1e-4)
            assert not np.allclose(after[image_id], vector, atol=1e-4)
        else:
            assert np.array_equal(after[image_id], vector)
    assert store.head_path.read_bytes() != head_before and "stale" not in store.get_meta("head")
    assert store.query("SELECT count(*) AS n FROM reviews WHERE observation_id = ?", [val["observation_id"]])["n"][0] == 1
    assert store.query("SELECT count(DISTINCT observation_id) AS n FROM predictions WHERE observation_id = ?",
                       [val["observation_id"]])["n"][0] == 1
    verdicts = check_store(store)
    assert all(v.ok for v in verdicts), [v.line() for v in verdicts if not v.ok]

    # touched (same bytes, a new time): hashed once, nothing embedded again, and the new time recorded
    touched = images[images["split"] == "train"].iloc[0]["path"]
    stat = os.stat(touched)
    os.utime(touched, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    assert _files_verdict(store).ok
    capsys.readouterr()
    assert main(["build", "--store", str(store.root), "--images", str(photos), "--model", str(tiny_model_dir)]) == 0
    out = capsys.readouterr().out
    assert "changed since" not in out and "train: head up to date" in out and "index: up to date" in out
    assert all(np.array_equal(v, after[k]) for k, v in _vectors(store).items())
    recorded = store.query("SELECT mtime_ns FROM images WHERE path = ?", [touched])["mtime_ns"][0]
    assert recorded == os.stat(touched).st_mtime_ns

    # a training photo replaced by bytes that are no photo: an error row with its reason, and the head retrains
    broken = images[images["split"] == "train"].iloc[1]
    with open(broken["path"], "wb") as handle:
        handle.write(b"not a photo any more")
    capsys.readouterr()
    assert main(["build", "--store", str(store.root), "--images", str(photos), "--model", str(tiny_model_dir)]) == 0
    out = capsys.readouterr().out
    assert "ingest: 1 photo(s) changed" in out and "train: head up to date" not in out
    row = store.query("SELECT status, error FROM images WHERE image_id = ?", [int(broken["image_id"])]).iloc[0]
    assert row["status"] == "error" and row["error"]
    assert int(broken["image_id"]) not in set(store.embedded_ids().tolist())
    verdicts = check_store(store)
    assert all(v.ok for v in verdicts), [v.line() for v in verdicts if not v.ok]

    # a good photo put back where the unreadable one was: check says so, and the next build reads it again (its id kept)
    shutil.copyfile(source["path"], broken["path"])
    later = os.stat(broken["path"]).st_mtime_ns + 5_000_000_000
    os.utime(broken["path"], ns=(later, later))
    files = _files_verdict(store)
    assert not files.ok and "1 photo(s) that could not be read have CHANGED since" in files.detail, files.detail
    assert main(["build", "--store", str(store.root), "--images", str(photos), "--model", str(tiny_model_dir)]) == 0
    assert "ingest: 1 photo(s) that could not be read have changed on disk since" in capsys.readouterr().out
    assert store.query("SELECT status FROM images WHERE image_id = ?", [int(broken["image_id"])])["status"][0] == "ok"
    assert int(broken["image_id"]) in set(store.embedded_ids().tolist())
    verdicts = check_store(store)
    assert all(v.ok for v in verdicts), [v.line() for v in verdicts if not v.ok]

    # a store embedded before sizes and times were recorded: not compared, and the verdict says so
    with store.transaction() as con:
        con.execute("UPDATE images SET mtime_ns = NULL")
    shutil.copyfile(source["path"], images[images["split"] == "train"].iloc[2]["path"])
    files = _files_verdict(store)
    assert files.ok and "embedded before sizes and times were recorded, not compared" in files.detail


def test_an_older_store_gains_the_column(tmp_path):
    import duckdb

    from snakeweb.store import DB_NAME

    root = tmp_path / "old"
    root.mkdir()
    with duckdb.connect(str(root / DB_NAME)) as con:  # the images table as stores made before mtime_ns had it
        con.execute("CREATE TABLE images (image_id BIGINT PRIMARY KEY, observation_id VARCHAR NOT NULL, path VARCHAR "
                    "NOT NULL UNIQUE, class_id BIGINT, split VARCHAR NOT NULL, sha256 VARCHAR, size_bytes BIGINT, width "
                    "INTEGER, height INTEGER, status VARCHAR NOT NULL DEFAULT 'pending', error VARCHAR, decoder VARCHAR)")
    store = Store(root).create()
    assert "mtime_ns" in set(store.query("DESCRIBE images")["column_name"])
