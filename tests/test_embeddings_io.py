"""import-embeddings and export-embeddings: the round trip, a store extended with imported vectors, every refusal
(exit 2, one sentence naming the rows), identify holding to the imported model, and a 100k-row import in batches."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.cli import main
from snakeweb.store import Store
from tests.conftest import SYNTHETIC_SPECIES, build_photo_store

DIM = 48  # the tiny DINOv2's cls features


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_model_dir, photo_folder, species_csv) -> dict[str, Path]:
    """A store built from the photo folder, and its export."""
    root = tmp_path_factory.mktemp("embeddings-io")
    store = build_photo_store(root / "built", tiny_model_dir, photo_folder, species_csv, "--skip-project")
    assert main(["export-embeddings", "--store", str(store), "--out", str(root / "built.parquet")]) == 0
    return {"store": store, "parquet": root / "built.parquet"}


def write(out: Path, vectors, /, fixed: bool = True, metadata: dict | None = None, **columns) -> Path:
    """A Parquet file with these columns and a vector column (fixed-size list of float32, or a plain list)."""
    if fixed:
        matrix = np.asarray(vectors, np.float32)
        vector = pa.FixedSizeListArray.from_arrays(pa.array(matrix.ravel(), pa.float32()), matrix.shape[1])
    else:
        vector = pa.array([None if v is None else list(v) for v in vectors], pa.list_(pa.float32()))
    table = pa.table({**{k: pa.array(v) for k, v in columns.items()}, "vector": vector})
    pq.write_table(table.replace_schema_metadata(metadata), out)
    return out


def rows(n: int, seed: int = 0, **overrides) -> dict:
    """n valid rows: paths, observations of two photos, class ids of the synthetic species, vectors."""
    rng = np.random.default_rng(seed)
    classes = list(SYNTHETIC_SPECIES.values())
    columns = {"path": [f"/photos/{seed}/{i}.jpg" for i in range(n)], "observation_id": [f"obs{seed}-{i // 2}" for i in range(n)],
               "class_id": [classes[(i // 2) % 3] for i in range(n)], "vectors": rng.normal(size=(n, DIM)).astype(np.float32)}
    return {**columns, **overrides}


def assert_vectors_by_path(store: Path, expected: dict) -> None:
    """The store holds exactly these paths' vectors, each equal (as float32) to its own path's."""
    stored = Store(store).query("SELECT i.path, e.vector FROM embeddings e JOIN images i USING (image_id)")
    by_path = {path: np.asarray(vector, np.float32) for path, vector in zip(stored["path"], stored["vector"])}
    assert set(by_path) == set(expected)
    for path, vector in expected.items():
        np.testing.assert_array_equal(by_path[path], np.asarray(vector, np.float32), err_msg=path)


def run_import(store: Path, files: list[Path], model: Path, *extra: str) -> int:
    return main(["import-embeddings", "--store", str(store), "--parquet", *map(str, files), "--model", str(model), *extra])


def refused(capsys, store: Path, files: list[Path], model: Path, *extra: str) -> str:
    """The one-sentence error of an import that must be refused with exit code 2."""
    capsys.readouterr()
    assert run_import(store, files, model, *extra) == 2
    err = capsys.readouterr().err  # (transformers may print a progress bar while the model loads)
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def test_round_trip_then_every_stage_runs_on_the_imported_store(built, tiny_model_dir, species_csv, photo_folder, tmp_path):
    first = pq.read_table(built["parquet"])
    facts = json.loads(pq.ParquetFile(built["parquet"]).schema_arrow.metadata[b"snakeweb"])
    source = Store(built["store"])
    assert first.schema.field("vector").type == pa.list_(pa.float32(), DIM)
    assert first.column_names == ["image_id", "path", "observation_id", "class_id", "split", "country", "vector"]
    assert first.num_rows == 24 and facts["fingerprint"] == source.get_meta("model")["fingerprint"] and facts["feature_kind"] == "cls"

    store = tmp_path / "imported"
    assert run_import(store, [built["parquet"]], tiny_model_dir, "--species", str(species_csv)) == 0
    assert main(["export-embeddings", "--store", str(store), "--out", str(tmp_path / "again.parquet")]) == 0
    again = pq.read_table(tmp_path / "again.parquet")
    assert again.replace_schema_metadata(None).equals(first.replace_schema_metadata(None))  # same ids, labels, splits, vectors

    imported = Store(store)
    assert imported.get_meta("model") == source.get_meta("model")  # config, fingerprint, details: as the embed stage records them
    assert (imported.get_meta("feature_kind"), imported.get_meta("feature_dim")) == ("cls", DIM)
    [record] = imported.get_meta("embedding_imports")
    assert record["files"][0]["sha256"] == hashlib.sha256(built["parquet"].read_bytes()).hexdigest()
    assert record["rows"] == record["added"] == 24 and record["imported_at"]
    assert set(imported.query("SELECT DISTINCT status || '/' || decoder AS s FROM images")["s"]) == {"ok/imported"}
    for stage in ("index", "train", "predict"):
        assert main([stage, "--store", str(store)]) == 0
    assert main(["check", "--store", str(store)]) == 0
    assert main(["identify", "--store", str(store), str(photo_folder / "Vipera_berus" / "00.jpg")]) == 0
    # imported vectors come without their photos' bytes: copies are said to be unchecked, never "none"
    from snakeweb.evaluation import evaluate
    from snakeweb.integrity import check_store

    copies = {v.name: v for v in check_store(imported)}["copies"]
    assert copies.ok and copies.detail == "not checked: 24 photo(s) have no recorded sha256 (their vectors were imported) and were not compared"
    report = evaluate(imported, save=False)
    assert report["observations_not_compared_for_copies"] == report["observations"] > 0


def test_identify_refuses_when_the_named_model_no_longer_loads_the_same_weights(built, tiny_model_dir, species_csv, photo_folder,
                                                                               tmp_path, capsys):
    import torch
    from transformers import Dinov2Config, Dinov2Model

    model = tmp_path / tiny_model_dir.name  # the fingerprint names the folder: a copy of the same name loads the same model
    shutil.copytree(tiny_model_dir, model)
    store = tmp_path / "store"
    assert run_import(store, [built["parquet"]], model, "--species", str(species_csv)) == 0
    torch.manual_seed(1)  # other weights in the folder the store recorded
    Dinov2Model(Dinov2Config(hidden_size=DIM, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2, patch_size=14)).save_pretrained(model)
    capsys.readouterr()
    assert main(["identify", "--store", str(store), str(photo_folder / "Vipera_berus" / "00.jpg")]) == 2
    err = capsys.readouterr().err
    assert f"The store was embedded with local:{model.name}@sha256:" in err and "Restore those weights" in err


def test_vectors_for_ingested_photos_fill_them_in_and_a_second_import_adds_nothing(built, tiny_model_dir, photo_folder, species_csv, tmp_path):
    store = tmp_path / "store"
    assert main(["ingest", "--store", str(store), "--images", str(photo_folder), "--species", str(species_csv)]) == 0
    splits = Store(store).query("SELECT path, split FROM images ORDER BY path")
    assert run_import(store, [built["parquet"]], tiny_model_dir) == 0
    s = Store(store)
    counts = s.query("SELECT count(*) FILTER (status = 'ok') AS ok, count(*) FILTER (status = 'pending') AS pending FROM images").iloc[0]
    assert (counts["ok"], counts["pending"]) == (24, 2)  # the two unreadable files were never embedded, so not exported
    assert s.query("SELECT path, split FROM images ORDER BY path").equals(splits)  # ingest's splits stand
    assert run_import(store, [built["parquet"]], tiny_model_dir) == 0
    assert [r["added"] for r in s.get_meta("embedding_imports")] == [24, 0]
    assert int(s.query("SELECT count(*) AS n FROM embeddings")["n"][0]) == 24


def test_images_by_id_splits_countries_and_new_ids(tiny_model_dir, species_csv, tmp_path):
    from snakeweb.embeddings_io import import_embeddings
    from snakeweb.errors import SnakewebError

    data = rows(6)
    file = write(tmp_path / "ids.parquet", data["vectors"], image_id=[10, 11, 12, 13, 14, 15], observation_id=data["observation_id"],
                 class_id=[1130, 1130, 7, 7, None, None], split=["Train", "train", "val", "val", "unlabelled", "unlabelled"],
                 country=["DE", "DE", "Germany", "germany", "NA", None])
    store = tmp_path / "store"
    assert run_import(store, [file], tiny_model_dir, "--species", str(species_csv)) == 0
    images = Store(store).query("SELECT i.image_id, i.path, i.split, o.country_code FROM images i JOIN observations o USING "
                                "(observation_id) ORDER BY image_id")
    assert images["image_id"].tolist() == [10, 11, 12, 13, 14, 15] and images["path"][0] == "imported:10"
    assert images["split"].tolist() == ["train", "train", "val", "val", "unlabelled", "unlabelled"]
    assert images["country_code"].tolist()[:5] == ["DE", "DE", "DE", "DE", "NA"]
    more = rows(2, seed=1)
    assert run_import(store, [write(tmp_path / "more.parquet", more["vectors"], path=more["path"],
                                    observation_id=more["observation_id"])], tiny_model_dir) == 0
    assert Store(store).query("SELECT image_id FROM images ORDER BY image_id")["image_id"].tolist()[-2:] == [16, 17]
    # new photos of stored observations may not move them to another split (they once moved, with exit 0)
    before = Store(store).query("SELECT image_id, split FROM images ORDER BY image_id")
    moving = rows(2, seed=2)
    with pytest.raises(SnakewebError, match=r"2 observation\(s\) already in the store are given another subset by their new photos"):
        import_embeddings(Store(store), [write(tmp_path / "moving.parquet", moving["vectors"], path=moving["path"], class_id=[1130, 7],
                                              observation_id=[data["observation_id"][0], data["observation_id"][2]],
                                              split=["val", "train"])], str(tiny_model_dir))
    assert Store(store).query("SELECT image_id, split FROM images ORDER BY image_id").equals(before)
    # a stored photo given another split was ignored with exit 0; a class or country for a stored observation that
    # had none was dropped (its new photo stored with the class, in split unlabelled)
    refusals = ((dict(image_id=[10], observation_id=[data["observation_id"][0]], class_id=[1130], split=["val"]),
                 "1 row(s) would move a photo already in the store to another split"),
                (dict(path=["/new/a.jpg"], observation_id=[data["observation_id"][4]], class_id=[7], split=["val"]),
                 "give an observation already in the store another class than the store has for it, or one it was stored without"),
                (dict(path=["/new/b.jpg"], observation_id=[more["observation_id"][0]], country=["FR"]),
                 "give an observation already in the store another country"))
    for n, (columns, said) in enumerate(refusals):
        with pytest.raises(SnakewebError, match=re.escape(said)):
            import_embeddings(Store(store), [write(tmp_path / f"refused{n}.parquet", data["vectors"][:1], **columns)], str(tiny_model_dir))
    assert Store(store).query("SELECT image_id, split FROM images ORDER BY image_id").equals(before)
    # one observation's rows: 'train' and 'train-hm' are one split, and a row with empty cells takes the others' values
    same = rows(3, seed=3)
    assert run_import(store, [write(tmp_path / "same.parquet", same["vectors"], path=same["path"], observation_id=["n1"] * 3,
                                    class_id=[None, 7, 7], split=["train", "Train-HM", None], country=[None, "FR", None])],
                      tiny_model_dir) == 0
    added = Store(store).query("SELECT i.class_id, i.split, o.country_code FROM images i JOIN observations o USING (observation_id) "
                               "WHERE observation_id = 'n1'")
    assert added.values.tolist() == [[7, "train", "FR"]] * 3
    # a new photo of a stored observation without a class takes the observation's (it was stored unlabelled)
    late = rows(1, seed=4)
    assert run_import(store, [write(tmp_path / "late.parquet", late["vectors"], path=late["path"], observation_id=["n1"])],
                      tiny_model_dir) == 0
    assert Store(store).query("SELECT class_id, split FROM images WHERE path = ?", [late["path"][0]]).values.tolist() == [[7, "train"]]
    # the same import again changes nothing (it was refused: "another class id" for the photo it had just stored)
    assert run_import(store, [tmp_path / "late.parquet"], tiny_model_dir) == 0
    # two names of one file on this machine (a link) are one photo: stored twice, as two species, it was accepted
    real = tmp_path / "real.jpg"
    real.write_bytes(b"photo")
    (tmp_path / "alias.jpg").symlink_to(real)
    linked = write(tmp_path / "linked.parquet", data["vectors"][:2], path=[str(real), str(tmp_path / "alias.jpg")],
                   observation_id=["l1", "l2"], class_id=[7, 1130])
    with pytest.raises(SnakewebError, match=r"1 file\(s\) are named by more than one path, a link to one photo \(linked.parquet row 1, "
                                            r"linked.parquet row 2\)"):
        import_embeddings(Store(store), [linked], str(tiny_model_dir))


def _broken(vectors: np.ndarray) -> np.ndarray:
    broken = vectors.copy()
    broken[1, 3], broken[3, 0], broken[4, 47] = np.nan, np.inf, -np.inf
    return broken


def test_unlabelled_vectors_need_no_species_table(tiny_model_dir, tmp_path):
    data = rows(4)
    file = write(tmp_path / "x.parquet", data["vectors"], path=data["path"], observation_id=data["observation_id"])
    assert run_import(tmp_path / "store", [file], tiny_model_dir) == 0
    images = Store(tmp_path / "store").query("SELECT split, status, decoder FROM images")
    assert len(images) == 4 and set(images["split"]) == {"unlabelled"} and set(images["decoder"]) == {"imported"}


REFUSALS = {
    "dimension": (lambda d: dict(path=d["path"], observation_id=d["observation_id"], vectors=np.zeros((4, 47))),
                  "its vectors are 47-d but tiny-dinov2"),
    "missing observation_id": (lambda d: dict(path=d["path"], vectors=d["vectors"]),
                               "it has no observation_id (or observation, obs_id) column; its columns are ['path', 'vector']"),
    "neither path nor id": (lambda d: dict(observation_id=d["observation_id"], vectors=d["vectors"]),
                            "it has neither a path nor an image_id column; give one of them (its columns are ['observation_id', 'vector'])"),
    "NaN and inf": (lambda d: dict(path=d["path"], observation_id=d["observation_id"], vectors=_broken(d["vectors"])),
                    "3 row(s) have NaN, infinite or missing values in their vector (row 2, row 4, row 5)"),
    "repeated path": (lambda d: dict(path=["a", "b", "a", "b"] + d["path"][4:], observation_id=d["observation_id"], vectors=d["vectors"]),
                      "4 rows share an image path with another row (x.parquet row 1, x.parquet row 3, x.parquet row 2 and 1 more); "
                      "each image must"),
    "repeated image id": (lambda d: dict(image_id=[1, 2, 3, 1, 5], observation_id=d["observation_id"], vectors=d["vectors"]),
                          "2 rows share an image_id with another row (x.parquet row 1, x.parquet row 4)"),
    "unknown class": (lambda d: dict(path=d["path"], observation_id=d["observation_id"], class_id=[7, 7, 999, 999, 1130], vectors=d["vectors"]),
                      "2 row(s) have a class_id the store's species table does not have (x.parquet row 3, x.parquet row 4)"),
    "unknown split": (lambda d: dict(path=d["path"], observation_id=d["observation_id"], split=["train", "train", "holdout", "holdout", "val"],
                                     vectors=d["vectors"]), "2 row(s) have a subset snakeweb does not know (row 3: 'holdout', row 4: "),
    "bad country": (lambda d: dict(path=d["path"], observation_id=d["observation_id"], country=["DE", "DE", "ZZ", "ZZ", None],
                                   vectors=d["vectors"]), "country that is not exactly one current country (row 3: 'ZZ', row 4: 'ZZ')"),
    "bad class id": (lambda d: dict(path=d["path"], observation_id=d["observation_id"], class_id=["7", "7", "x", "7", ""],
                                    vectors=d["vectors"]), "1 value(s) in column class_id are not whole numbers (row 3: 'x')"),
    "two classes in one observation": (lambda d: dict(path=d["path"], observation_id=d["observation_id"], class_id=[7, 1130, 7, 7, 7],
                                                      vectors=d["vectors"]), "2 row(s) give one observation photos with different class_id"),
    "empty observation": (lambda d: dict(path=d["path"], observation_id=["1", "", "2", "2", "3"], vectors=d["vectors"]),
                          "1 row(s) have no observation_id (row 2)"),
    "no rows": (lambda d: dict(path=[], observation_id=[], vectors=d["vectors"][:0]), "has its columns but no rows"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refusals_name_the_rows_and_leave_no_store(case, tiny_model_dir, species_csv, tmp_path, capsys):
    make, sentence = REFUSALS[case]
    data = rows(5)
    columns = make(data)
    vectors = columns.pop("vectors")
    vectors = vectors[:len(next(iter(columns.values())))] if case != "dimension" else vectors
    file = write(tmp_path / "x.parquet", vectors, **{k: v[:len(vectors)] for k, v in columns.items()})
    store = tmp_path / "new-store"
    err = refused(capsys, store, [file], tiny_model_dir, "--species", str(species_csv))
    assert sentence in err and (str(file) in err or "x.parquet" in err), err
    assert not store.exists()  # a refused import into a new store leaves nothing behind


def test_list_vectors_of_other_lengths_and_null_vectors(tiny_model_dir, tmp_path, capsys):
    data = rows(5)
    vectors = [list(v) for v in data["vectors"]]
    vectors[1], vectors[4] = vectors[1][:47], vectors[4] + [0.0]
    file = write(tmp_path / "x.parquet", vectors, fixed=False, path=data["path"], observation_id=data["observation_id"])
    err = refused(capsys, tmp_path / "s", [file], tiny_model_dir)
    assert "2 row(s) have vectors of another length (row 2: 47 values, row 5: 49 values) but tiny-dinov2" in err
    assert "gives 48-d cls features; name the model that made them with --model (and --features)." in err
    vectors[1], vectors[4] = None, vectors[0]
    file = write(tmp_path / "x.parquet", vectors, fixed=False, path=data["path"], observation_id=data["observation_id"])
    assert "1 row(s) have no vector (row 2)" in refused(capsys, tmp_path / "s", [file], tiny_model_dir)


def test_class_ids_without_a_species_table_and_rows_across_batches(tiny_model_dir, tmp_path, capsys):
    from snakeweb.embeddings_io import import_embeddings
    from snakeweb.errors import SnakewebError

    data = rows(5)
    file = write(tmp_path / "x.parquet", data["vectors"], path=data["path"], observation_id=data["observation_id"], class_id=data["class_id"])
    err = refused(capsys, tmp_path / "s", [file], tiny_model_dir)
    assert "5 row(s) have a class_id (x.parquet row 1, x.parquet row 2, x.parquet row 3 and 2 more) but the store has no species " in err
    assert "give one with --species class_list.csv" in err
    other = write(tmp_path / "y.parquet", data["vectors"][:2], path=data["path"][3:5], observation_id=["o1", "o2"])
    shared = r"4 rows share an image path with another row \(x.parquet row 4, y.parquet row 1, x.parquet row 5 and 1 more\)"
    with pytest.raises(SnakewebError, match=shared):
        import_embeddings(Store(tmp_path / "s"), [write(tmp_path / "x.parquet", data["vectors"], path=data["path"],
                                                        observation_id=data["observation_id"]), other],
                          str(tiny_model_dir), batch_rows=2)
    assert not (tmp_path / "s").exists()


def test_the_model_must_be_the_one_that_made_the_vectors(built, tiny_model_dir, species_csv, tmp_path, capsys):
    assert "--model auto picks a model by what is installed" in refused(capsys, tmp_path / "s", [built["parquet"]], Path("auto"))
    # a file snakeweb exported says which model made it
    table = pq.read_table(built["parquet"])
    metadata = {b"snakeweb": b'{"fingerprint": "dinov2-base@main", "feature_kind": "cls"}'}
    other = tmp_path / "other.parquet"
    pq.write_table(table.replace_schema_metadata(metadata), other)
    err = refused(capsys, tmp_path / "s", [other], tiny_model_dir, "--species", str(species_csv))
    assert "was exported from a store embedded with dinov2-base@main (cls) but you named local:tiny-dinov2" in err
    # a store holds one model's vectors
    err = refused(capsys, built["store"], [built["parquet"]], tiny_model_dir, "--tta", "flip")
    assert "holds 24 embeddings of local:tiny-dinov2" in err and "import into another --store" in err


def test_a_refused_import_leaves_an_existing_store_as_it_was(built, tiny_model_dir, tmp_path, capsys):
    store = tmp_path / "store"
    shutil.copytree(built["store"], store)
    before = Store(store).query("SELECT count(*) AS n FROM images")["n"][0]
    data = rows(4)
    file = write(tmp_path / "x.parquet", data["vectors"], path=data["path"], observation_id=data["observation_id"],
                 class_id=[7, 7, 12345, 12345])
    err = refused(capsys, store, [file], tiny_model_dir)
    assert "2 row(s) have a class_id the store's species table does not have (x.parquet row 3, x.parquet row 4)" in err
    assert Store(store).query("SELECT count(*) AS n FROM images")["n"][0] == before
    assert Store(store).get_meta("embedding_imports") is None


def test_a_hundred_thousand_rows_stream_in_and_out(tiny_model_dir, species_csv, tmp_path, capsys):
    n, rng = 100_000, np.random.default_rng(7)
    classes = np.array(list(SYNTHETIC_SPECIES.values()))
    observation = np.arange(n) // 2
    split = np.array(["train", "val", "test"])[(observation % 10 >= 7).astype(int) + (observation % 10 >= 9).astype(int)]
    table = pa.table({
        "image_path": pa.array([f"/cluster/photos/{i}.jpg" for i in range(n)]),
        "observation_id": pa.array(observation.astype(str)), "class_id": pa.array(classes[observation % 3]),
        "split": pa.array(split), "country": pa.array(np.where(observation % 2 == 0, "DE", "FR")),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(rng.normal(size=n * DIM).astype(np.float32)), DIM),
    })
    file = tmp_path / "big.parquet"
    pq.write_table(table, file, row_group_size=10_000)
    store = tmp_path / "store"
    capsys.readouterr()
    assert run_import(store, [file], tiny_model_dir, "--species", str(species_csv)) == 0
    err = capsys.readouterr().err  # both passes show progress, and end at every row of the file
    assert re.search(r"import: check rows: 100%.*100000/100000", err) and re.search(r"import: store vectors: 100%.*100000/100000", err)
    counts = Store(store).query(
        "SELECT (SELECT count(*) FROM images WHERE status = 'ok') AS images, (SELECT count(*) FROM embeddings) AS vectors, "
        "(SELECT count(*) FROM observations) AS observations, (SELECT count(*) FROM images WHERE split = 'val') AS val").iloc[0]
    assert counts.tolist() == [n, n, n // 2, int((split == "val").sum())]
    assert main(["export-embeddings", "--store", str(store), "--out", str(tmp_path / "out.parquet")]) == 0
    assert re.search(r"export-embeddings: 100%.*100000/100000", capsys.readouterr().err)
    out = pq.ParquetFile(tmp_path / "out.parquet")
    assert out.metadata.num_rows == n and out.metadata.num_row_groups > 1
    last = out.read_row_group(out.metadata.num_row_groups - 1)
    assert last.column("path")[-1].as_py() == f"/cluster/photos/{n - 1}.jpg"
    np.testing.assert_array_equal(np.asarray(last.column("vector")[-1].as_py(), np.float32), table.column("vector")[-1].as_py())


def test_a_split_without_a_class_is_said_and_unlabelled_rows_get_no_false_warning(tiny_model_dir, species_csv, tmp_path, caplog):
    """Rows marked train/val with no class_id are stored as unlabelled and the import says so; rows marked
    `unlabelled` (what the docs ask for) are not reported as having no subset."""
    data = rows(8)
    class_ids = [data["class_id"][i] if i < 4 else None for i in range(8)]
    split = ["train", "train", "val", "val", "train", "train", "unlabelled", "unlabelled"]
    file = write(tmp_path / "x.parquet", data["vectors"], path=data["path"], observation_id=data["observation_id"],
                 class_id=pa.array(class_ids, pa.int64()), split=split)
    with caplog.at_level("WARNING"):
        assert run_import(tmp_path / "store", [file], tiny_model_dir, "--species", str(species_csv)) == 0
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "1 observation(s) have a train, validation or test subset but no class_id; they are stored as unlabelled" in said
    assert "have no subset" not in said
    splits = Store(tmp_path / "store").query("SELECT observation_id, split FROM observations ORDER BY observation_id")
    assert splits["split"].tolist() == ["train", "val", "unlabelled", "unlabelled"]


def test_each_row_keeps_its_own_vector_across_files_types_and_header_spellings(tiny_model_dir, species_csv, tmp_path):
    """The vectors go in by file and row number (DuckDB streams them from the file): every stored vector must be its
    own row's, as float32, whatever list type and header spelling the file uses, and in the second file too."""
    first, second = rows(7, seed=2), rows(5, seed=3)
    wide = second["vectors"].astype(np.float64) * 1e3  # float64 values that float32 rounds
    write(tmp_path / "a.parquet", first["vectors"], fixed=False, path=first["path"], observation_id=first["observation_id"],
          class_id=first["class_id"])
    table = pa.table({" Image Path ": pa.array(second["path"]), "observation_id": pa.array(second["observation_id"]),
                      " Embedding ": pa.array(list(wide), pa.large_list(pa.float64()))})
    pq.write_table(table, tmp_path / "b.parquet", row_group_size=2)
    half = pa.table({"path": pa.array(["/photos/half/0.jpg", "/photos/half/1.jpg"]), "observation_id": pa.array(["h0", "h1"]),
                     "features": pa.array(list(first["vectors"][:2].astype(np.float16)), pa.list_(pa.float16()))})
    pq.write_table(half, tmp_path / "c.parquet")
    store = tmp_path / "store"
    assert run_import(store, [tmp_path / "a.parquet", tmp_path / "b.parquet", tmp_path / "c.parquet"], tiny_model_dir,
                      "--species", str(species_csv)) == 0
    assert_vectors_by_path(store, {**dict(zip(first["path"], first["vectors"])), **dict(zip(second["path"], wide.astype(np.float32))),
                                   **dict(zip(half["path"].to_pylist(), first["vectors"][:2].astype(np.float16).astype(np.float32)))})


def test_a_file_replaced_during_the_import_is_read_as_it_was_opened(tiny_model_dir, tmp_path, monkeypatch):
    """Every pass (metadata, vectors, sha256) reads the file opened at the start: another job replacing the file
    meanwhile (here with NaN vectors) neither slips unchecked vectors in nor pairs one file's rows with another's."""
    import os

    import snakeweb.embeddings_io as embeddings_io

    data = rows(6)
    file = write(tmp_path / "v.parquet", data["vectors"], path=data["path"], observation_id=data["observation_id"])
    opened = hashlib.sha256(file.read_bytes()).hexdigest()
    write(tmp_path / "other.parquet", np.full((6, DIM), np.nan), path=data["path"], observation_id=data["observation_id"])
    stage = embeddings_io._stage

    def stage_then_replace(con, source, *args):
        stage(con, source, *args)
        os.replace(tmp_path / "other.parquet", file)  # between the metadata pass and the vector pass

    monkeypatch.setattr(embeddings_io, "_stage", stage_then_replace)
    store = tmp_path / "store"
    assert run_import(store, [file], tiny_model_dir) == 0
    assert_vectors_by_path(store, dict(zip(data["path"], data["vectors"])))
    assert Store(store).get_meta("embedding_imports")[0]["files"][0]["sha256"] == opened  # the bytes that went in


def test_a_file_name_with_pattern_characters_is_that_file(tiny_model_dir, tmp_path):
    """DuckDB's read_parquet took vec[1].parquet as a pattern matching vec1.parquet: another file's vectors, exit 0."""
    data = rows(5)
    named = write(tmp_path / "vec[1].parquet", data["vectors"], path=data["path"], observation_id=data["observation_id"])
    write(tmp_path / "vec1.parquet", data["vectors"][::-1], path=data["path"], observation_id=data["observation_id"])
    store = tmp_path / "store"
    assert run_import(store, [named], tiny_model_dir) == 0
    assert_vectors_by_path(store, dict(zip(data["path"], data["vectors"])))


def test_a_folder_given_as_a_file_gets_a_sentence(tiny_model_dir, tmp_path, capsys):
    assert "is a folder; give the Parquet files in it" in refused(capsys, tmp_path / "store", [tmp_path], tiny_model_dir)
    # one file named twice (its rows were all reported as repeats of themselves)
    data = rows(3)
    file = write(tmp_path / "part A.parquet", data["vectors"], path=data["path"], observation_id=data["observation_id"])
    err = refused(capsys, tmp_path / "store", [file, tmp_path / "." / "part A.parquet"], tiny_model_dir)
    assert f"The embeddings file {tmp_path / 'part A.parquet'} is given twice" in err and not (tmp_path / "store").exists()


def test_vectors_named_by_another_spelling_of_the_folder_fill_in_the_same_photos(built, tiny_model_dir, photo_folder,
                                                                                   species_csv, tmp_path):
    store = tmp_path / "store"
    assert main(["ingest", "--store", str(store), "--images", str(photo_folder), "--species", str(species_csv)]) == 0
    table = pq.read_table(built["parquet"])
    folder = str(photo_folder)
    (tmp_path / "link").symlink_to(photo_folder)  # the folder through a link, and through `..`
    respelled = [p.replace(folder, str(tmp_path / "link") if i % 2 else f"{folder}/../{photo_folder.name}", 1)
                 for i, p in enumerate(table.column("path").to_pylist())]
    assert all(p != q for p, q in zip(respelled, table.column("path").to_pylist()))
    file = tmp_path / "respelled.parquet"
    pq.write_table(table.set_column(table.schema.get_field_index("path"), "path", pa.array(respelled)), file)
    assert run_import(store, [file], tiny_model_dir) == 0
    s = Store(store)
    assert s.get_meta("embedding_imports")[0]["added"] == 24 and len(s.query("SELECT path FROM images")) == 26  # none new


def test_a_file_cut_short_during_the_import_is_refused_with_a_sentence(tiny_model_dir, tmp_path, capsys, monkeypatch):
    import os

    import snakeweb.embeddings_io as embeddings_io

    data = rows(400)
    file = write(tmp_path / "v.parquet", data["vectors"], path=data["path"], observation_id=data["observation_id"])
    stage = embeddings_io._stage

    def stage_then_truncate(con, source, *args):  # another job rewriting the file in place while the import runs
        stage(con, source, *args)
        os.truncate(file, file.stat().st_size // 2)

    monkeypatch.setattr(embeddings_io, "_stage", stage_then_truncate)
    store = tmp_path / "store"
    message = refused(capsys, store, [file], tiny_model_dir)
    assert "could not be read to the end" in message and "import it again once it is complete" in message
    assert not store.exists()


def test_relative_paths_and_uris_are_kept_as_written_wherever_the_import_runs(tiny_model_dir, tmp_path, monkeypatch):
    """They name files on the machine that made the vectors: resolved against the folder an import ran from, the
    same file imported from two folders went in twice."""
    data = rows(3)
    written = ["photos/1.jpg", "../photos/2.jpg", "s3://bucket/3.jpg"]
    file = write(tmp_path / "v.parquet", data["vectors"], path=written, observation_id=data["observation_id"])
    store = tmp_path / "store"
    for folder in (tmp_path / "a", tmp_path / "b" / "c"):
        folder.mkdir(parents=True)
        monkeypatch.chdir(folder)
        assert run_import(store, [file], tiny_model_dir) == 0
    assert sorted(Store(store).query("SELECT path FROM images")["path"]) == sorted(written)
    respelled = ["./photos//1.jpg", "../photos/x/../2.jpg", "s3://bucket/3.jpg"]  # the same names, written otherwise
    assert run_import(store, [write(tmp_path / "r.parquet", data["vectors"], path=respelled,
                                    observation_id=data["observation_id"])], tiny_model_dir) == 0
    assert sorted(Store(store).query("SELECT path FROM images")["path"]) == sorted(written)
