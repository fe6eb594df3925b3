"""End to end on a tiny random DINOv2: build, resume, identify, ids agree, bad images recorded."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.cli import main
from snakeweb.heads import Head
from snakeweb.index import index_ids, load_index
from snakeweb.integrity import check_store
from snakeweb.store import Store
from tests.conftest import REPO, SYNTHETIC_SPECIES, build_photo_store


@pytest.fixture(scope="module")
def built_store(tmp_path_factory, tiny_model_dir, photo_folder, species_csv):
    root = tmp_path_factory.mktemp("built") / "store"
    return Store(build_photo_store(root, tiny_model_dir, photo_folder, species_csv, "--features", "cls+mean", "--batch-size", "5"))


def test_build_stores_every_image_once_and_records_bad_ones(built_store):
    images = built_store.query("SELECT * FROM images ORDER BY image_id")
    assert len(images) == 26 and images["path"].is_unique and images["image_id"].is_unique
    bad = images[images["status"] == "error"].set_index(images[images["status"] == "error"]["path"].str.rsplit("/", n=1).str[-1])
    assert set(bad.index) == {"empty.jpg", "notes.jpg"}
    assert "empty" in bad.loc["empty.jpg", "error"] and "not an image" in bad.loc["notes.jpg", "error"]
    ok = images[images["status"] == "ok"]
    assert ok["sha256"].notna().all() and (ok["width"] == 96).all() and (ok["height"] == 72).all()
    assert int(built_store.query("SELECT count(*) n FROM embeddings")["n"][0]) == 24


def test_store_records_model_features_and_species(built_store, tiny_model_dir):
    meta = built_store.all_meta()
    assert meta["model"]["config"]["source"] == "local" and meta["model"]["fingerprint"].startswith("local:")
    assert meta["feature_kind"] == "cls+mean" and meta["feature_dim"] == 96
    assert meta["preprocessing"]["resize_short_side"] == 256 and meta["preprocessing"]["centre_crop"] == 224
    assert "torch" in meta["packages"]
    species = built_store.species().set_index("binomial_name")
    assert species["class_id"].to_dict() == SYNTHETIC_SPECIES
    assert species["venom_status"].to_dict() == {"Natrix natrix": "harmless", "Vipera berus": "venomous", "Zamenis longissimus": "harmless"}


def test_faiss_ids_are_duckdb_image_ids(built_store):
    index = load_index(built_store.index_path)
    stored = built_store.query("SELECT image_id FROM images WHERE status = 'ok' ORDER BY image_id")["image_id"]
    assert sorted(index_ids(index).tolist()) == stored.tolist()
    verdicts = {v.name: v for v in check_store(built_store)}
    assert verdicts["index"].ok
    assert verdicts["copies"].ok and verdicts["copies"].detail == "no photo is a byte-identical copy of another"
    # a stored vector searched finds its own image id, whatever the insertion order was
    ids, vectors = built_store.embeddings()
    from snakeweb.index import search
    _, found = search(index, vectors[::-1], 1)
    assert found[:, 0].tolist() == ids[::-1].tolist()


def test_head_and_predictions_use_real_class_ids(built_store):
    head = Head.load(built_store.head_path)
    assert head.label_map.class_ids == (7, 1130, 1740)
    predictions = built_store.query("SELECT * FROM predictions WHERE rank = 1")
    assert set(predictions["class_id"]) <= set(SYNTHETIC_SPECIES.values())
    observations = built_store.query("SELECT count(*) n FROM observations")["n"][0]
    assert len(predictions) == observations - 2  # the two unreadable files have no prediction
    held_out = built_store.get_meta("held_out")
    assert held_out["test"]["accuracy"] == 1.0  # colours are trivially separable even for random weights
    projection = built_store.query("SELECT count(*) n FROM projection")["n"][0]
    assert projection == 24 and built_store.get_meta("projection")["method"] == "umap"


def test_rerun_is_idempotent(built_store, photo_folder, species_csv, tiny_model_dir, capsys):
    before = built_store.query("SELECT image_id, path, sha256 FROM images ORDER BY image_id")
    code = main(["build", "--store", str(built_store.root), "--images", str(photo_folder), "--species", str(species_csv)])
    assert code == 0
    out = capsys.readouterr().out
    assert "0 new image(s), 26 already" in out and "index: up to date" in out and "head up to date" in out
    after = built_store.query("SELECT image_id, path, sha256 FROM images ORDER BY image_id")
    assert before.equals(after)
    assert int(built_store.query("SELECT count(*) n FROM embeddings")["n"][0]) == 24


def test_identify_finds_the_photo_itself_and_its_species(built_store, photo_folder, capsys):
    photo = photo_folder / "Vipera_berus" / "03.jpg"
    assert main(["identify", "--store", str(built_store.root), str(photo), "--json", "--neighbours", "3"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["species"][0]["class_id"] == 1740 and result["species"][0]["venomous"] is True
    assert result["neighbours"][0]["path"] == str(photo.resolve())
    assert result["neighbours"][0]["similarity"] > 0.99
    assert sum(s["probability"] for s in result["species"]) <= 1.0 + 1e-6


def test_identify_each_prints_one_json_line_per_photo_and_reports_bad_ones(built_store, photo_folder, tmp_path, capsys):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    photos = [photo_folder / "Natrix_natrix" / "01.jpg", bad]
    assert main(["identify", "--store", str(built_store.root), *map(str, photos), "--each", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 2
    assert lines[0]["species"][0]["binomial_name"] == "Natrix natrix"
    assert "could be read" in lines[1]["error"]


def test_mismatched_model_is_refused_without_reembed(built_store, tmp_path, capsys):
    import torch
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(1)
    other = tmp_path / "other-model"
    Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=224, patch_size=14)).save_pretrained(other)
    assert main(["embed", "--store", str(built_store.root), "--model", str(other)]) == 2
    assert "--reembed" in capsys.readouterr().err


def test_missing_store_is_a_sentence_not_a_traceback(tmp_path, capsys):
    assert main(["identify", "--store", str(tmp_path / "nothing"), "x.jpg"]) == 2
    err = capsys.readouterr().err
    assert "No store at" in err and "Traceback" not in err


def test_vectors_are_deterministic(built_store, tiny_model_dir):
    from snakeweb.identify import Identifier

    identifier = Identifier(built_store)
    ids, vectors = built_store.embeddings()
    path = built_store.query(f"SELECT path FROM images WHERE image_id = {ids[0]}")["path"][0]
    _, again, _, _ = identifier.embed([("x", path)])
    assert np.allclose(again[0], vectors[0], atol=1e-5)


def test_identify_country_prior_uncertain_and_venom_aware_call(built_store, photo_folder, tmp_path, capsys):
    table = tmp_path / "relevance.csv"
    # Vipera berus absent from Germany in this made-up table, Natrix natrix present
    table.write_text(";germany;france\nNatrix natrix;1;1\nVipera berus;0;1\nZamenis longissimus;1;1\n")
    photo = photo_folder / "Vipera_berus" / "02.jpg"
    args = ["identify", "--store", str(built_store.root), str(photo), "--json", "--country-table", str(table)]
    assert main(args) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main([*args, "--country", "DE", "--uncertain-below", "1"]) == 0
    german = json.loads(capsys.readouterr().out)
    p_plain = {s["class_id"]: s["probability"] for s in plain["species"]}
    p_german = {s["class_id"]: s["probability"] for s in german["species"]}
    assert german["country"] == "DE" and p_german[1740] < p_plain[1740] and p_german[1740] > 0
    assert german["uncertain"] is True and plain["uncertain"] is False
    assert "Uncertain" in german["explanation"]
    # candidates, not an answer: no taxon is named below the confidence asked for (a species was named anyway)
    assert german["prediction_rank"] is None and german["prediction"] == "unknown snake"
    assert german["answer_text"].startswith("Not named: no species reaches the confidence asked for")
    assert plain["prediction_rank"] is not None
    assert plain["venom_aware"]["class_id"] == 1740  # the most likely species is itself venomous


def test_evaluate_and_export_make_a_submission_that_scores(built_store, tmp_path, capsys):
    import pandas as pd

    from snakeweb.evaluation import venom_safety

    assert main(["evaluate", "--store", str(built_store.root), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["variants"]) == {"argmax/prior=none", "cost/prior=none"}
    assert report["variants"]["argmax/prior=none"]["Accuracy"] == 100.0
    assert not venom_safety(built_store).empty
    out = tmp_path / "submission.csv"
    assert main(["export", "--store", str(built_store.root), "--out", str(out), "--decision", "cost"]) == 0
    submission = pd.read_csv(out)
    assert submission["observation_id"].is_unique and submission["class_id"].dtype.kind == "i"
    truth = tmp_path / "truth.csv"
    built_store.query("SELECT observation_id, class_id FROM observations WHERE observation_id IN "
                      "(SELECT observation_id FROM predictions)").to_csv(truth, index=False)
    venomous = tmp_path / "venomous.csv"
    pd.DataFrame({"class_id": [1740], "MIVS": [1]}).to_csv(venomous, index=False)
    capsys.readouterr()
    assert main(["score", "--metadata", str(truth), "--predictions", str(out), "--venomous", str(venomous), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["Accuracy"] == 100.0
    # --split test: the test observations only (it wrote every observation), so it scores against the test truth
    test_only = tmp_path / "test-submission.csv"
    assert main(["export", "--store", str(built_store.root), "--out", str(test_only), "--split", "test"]) == 0
    expected = built_store.query("SELECT observation_id FROM observations WHERE split = 'test'")["observation_id"]
    assert sorted(pd.read_csv(test_only, dtype=str)["observation_id"]) == sorted(expected) and len(expected) < len(submission)
    for answers in ([], ["--answers"]):  # an empty split: a sentence, not a header-only file with exit 0
        empty = tmp_path / f"empty{len(answers)}.csv"
        assert main(["export", "--store", str(built_store.root), "--out", str(empty), "--split", "unlabelled", *answers]) == 2
        assert "no observations in the unlabelled split" in capsys.readouterr().err and not empty.exists()


def test_training_views_are_embedded_once_for_train_photos_and_feed_the_head(built_store, tiny_model_dir, photo_folder, capsys):
    from snakeweb import stages
    from snakeweb.embed import embed_pixels
    from snakeweb.images import read_image, to_pixels
    from snakeweb.models import load_backbone, resolve_model

    train = built_store.query("SELECT image_id, path FROM images WHERE split = 'train' AND status = 'ok' ORDER BY image_id")
    assert built_store.get_meta("train_views") == [] and built_store.get_meta("head")["train_view_vectors"] == 0  # the default
    assert main(["build", "--store", str(built_store.root), "--images", str(photo_folder), "--views", "flip"]) == 0
    assert f"+{len(train)} augmented training views" in capsys.readouterr().out
    views = built_store.query("SELECT image_id, view, vector FROM view_embeddings ORDER BY image_id")
    assert views["image_id"].tolist() == train["image_id"].tolist() and set(views["view"]) == {"flip"}
    assert built_store.get_meta("train_views") == ["flip"] and built_store.get_meta("head")["train_view_vectors"] == len(train)
    # the flip view of a photo is the embedding of its mirrored crop (the tiny model is not mirror-symmetric)
    backbone = load_backbone(resolve_model(str(tiny_model_dir)))
    pixels = to_pixels(read_image(train["path"][0]).image, backbone.config)[None]
    stored = np.asarray(views["vector"][0], np.float32)
    assert np.abs(embed_pixels(backbone, pixels.flip(-1), "cls+mean")[0] - stored).max() < 1e-4
    assert np.abs(built_store.embeddings(f"i.image_id = {int(train['image_id'][0])}")[1][0] - stored).max() > 1e-2
    # resumable: nothing left to do; `--views none` drops them and the head retrains without them
    assert stages.embed(built_store)["view_vectors"] == 0
    assert main(["embed", "--store", str(built_store.root), "--views", "none"]) == 0
    assert int(built_store.query("SELECT count(*) n FROM view_embeddings")["n"][0]) == 0
    assert stages.train(built_store)["train_view_vectors"] == 0
    assert main(["embed", "--store", str(built_store.root), "--views", "flip", "zoom"]) == 0
    assert f"{2 * len(train)} augmented training view(s)" in capsys.readouterr().out
    with built_store.transaction() as con:  # as if a run was killed half-way through the zoom views
        con.execute("DELETE FROM view_embeddings WHERE view = 'zoom' AND image_id % 2 = 0")
    verdict = {v.name: v for v in check_store(built_store)}["training views"]
    assert not verdict.ok and "run the embed stage to finish zoom" in verdict.detail
    assert 0 < stages.embed(built_store)["view_vectors"] < len(train)
    assert {v.name: v.ok for v in check_store(built_store)}["training views"]
    info = stages.train(built_store)
    assert info["train_view_vectors"] == 2 * len(train)
    # streamed into their (image id, view name) rows: exactly what an ORDER BY of the table gives
    labelled = built_store.query("SELECT image_id, class_id FROM images WHERE split = 'train' AND status = 'ok' ORDER BY image_id")
    x, y = stages.training_views(built_store, labelled["image_id"].to_numpy(np.int64), labelled["class_id"].to_numpy(np.int64),
                                 ["zoom", "flip"])
    table = built_store.query("SELECT v.vector, i.class_id FROM view_embeddings v JOIN images i USING (image_id) ORDER BY image_id, view")
    assert np.array_equal(x, np.stack(table["vector"]).astype(np.float32)) and y.tolist() == table["class_id"].tolist()
    assert Head.load(built_store.head_path).reference_ids.tolist() == train["image_id"].tolist()  # kNN votes per photo
    # other views, as many rows: the head is stale and retrains
    assert main(["embed", "--store", str(built_store.root), "--views", "flip"]) == 0
    assert stages.train(built_store)["train_view_vectors"] == len(train)
    assert main(["embed", "--store", str(built_store.root), "--views", "zoom"]) == 0
    capsys.readouterr()
    assert stages.train(built_store)["train_view_vectors"] == len(train)
    assert "head up to date" not in capsys.readouterr().out


def schema_validator(name: str):
    """A validator of one output kind (identification / answer / review) of snakeweb/schemas/output.schema.json."""
    from pathlib import Path

    import jsonschema

    schema = json.loads((Path(__file__).resolve().parents[1] / "snakeweb" / "schemas" / "output.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator({"$ref": f"#/$defs/{name}", "$defs": schema["$defs"]})


def test_outputs_follow_the_published_schema(built_store, photo_folder, tmp_path, capsys):
    """identify --json, export --answers and the review export, made by the real commands, validate against the
    JSON Schema in the repository; and the schema refuses what it should (a made-up source, a missing field)."""
    import pandas as pd

    from snakeweb.review import add_review, review_export

    photos = [str(photo_folder / "Vipera_berus" / "03.jpg"), str(photo_folder / "Natrix_natrix" / "empty.jpg")]
    assert main(["identify", "--store", str(built_store.root), *photos, "--json", "--neighbours", "2"]) == 0
    identification = json.loads(capsys.readouterr().out)
    validator = schema_validator("identification")
    validator.validate(identification)
    assert identification["failures"][0]["index"] == 1 and identification["headline"].startswith("Venomous: ")
    provenance = identification["provenance"]
    assert provenance["store_id"] == built_store.get_meta("store_id") and len(provenance["head_id"]) == 16
    assert provenance["model_fingerprint"] == built_store.get_meta("model")["fingerprint"]
    assert provenance["engine"].split(" ")[0] in ("openvino", "torch")  # which engine ran here: the JSON did not say
    # none of the photos usable: the error form of the schema, with each photo's reason
    assert main(["identify", "--store", str(built_store.root), photos[1], "--json"]) == 2
    failed = json.loads(capsys.readouterr().out)
    schema_validator("identification_error").validate(failed)
    assert failed["failures"][0]["name"].endswith("empty.jpg") and "empty" in failed["failures"][0]["reason"]
    # a refusal before any photo is read (a country that is no country) takes the same form: it printed {"error": ...}
    assert main(["identify", "--store", str(built_store.root), photos[0], "--json", "--country", "ZZ"]) == 2
    refused = json.loads(capsys.readouterr().out)
    schema_validator("identification_error").validate(refused)
    assert refused["inputs"] == [photos[0]] and "unknown country" in refused["error"] and refused["failures"] == []
    # a venom share just below a level's edge is shown at one decimal (49.9%), which the schema accepts
    validator.validate({**identification, "headline": "Venomous: 49.9% likely"})
    broken = {**identification, "prediction_source": "oracle"}
    assert list(validator.iter_errors(broken)) and list(validator.iter_errors({k: v for k, v in identification.items() if k != "p_venomous"}))

    out = tmp_path / "answers.jsonl"
    assert main(["export", "--store", str(built_store.root), "--answers", "--out", str(out)]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    answer_validator = schema_validator("answer")
    for record in records:
        answer_validator.validate(record)
    # every observation is there, including the two whose only photo could not be read (they abstain, with reasons)
    assert len(records) == int(built_store.query("SELECT count(*) n FROM observations")["n"][0])
    unreadable = [r for r in records if r["failures"]]
    assert len(unreadable) == 2 and all(r["prediction_source"] == "abstain" and r["p_venomous"] is None for r in unreadable)
    # the CSV form carries the same class ids as whole numbers (abstentions left the column float: 29.0)
    assert main(["export", "--store", str(built_store.root), "--answers", "--out", str(tmp_path / "answers.csv")]) == 0
    ids = pd.read_csv(tmp_path / "answers.csv", dtype=str)["prediction_class_id"]
    assert ids.isna().sum() >= 2 and ids.dropna().str.fullmatch(r"\d+").all()
    assert sorted(ids.dropna().astype(int)) == sorted(r["prediction_class_id"] for r in records if r["prediction_class_id"] is not None)

    observation = records[0]["observation_id"]
    add_review(built_store, observation, "Ana", SYNTHETIC_SPECIES["Vipera berus"], "checked the head scales")
    exported = review_export(built_store)
    review_validator = schema_validator("review")
    for row in exported.astype(object).where(pd.notna(exported), None).to_dict("records"):
        review_validator.validate(row)
    reviewed = exported.set_index("observation_id").loc[observation]
    stored = built_store.query("SELECT prediction, prediction_source FROM answers WHERE observation_id = ?", [observation]).iloc[0]
    assert (reviewed["prediction"], reviewed["prediction_source"]) == (stored["prediction"], stored["prediction_source"])
    # the review carries the provenance of the answer it was made on (the predict stage's, whatever head made it)
    record = built_store.query("SELECT record FROM answers WHERE observation_id = ?", [observation])["record"][0]
    stored_provenance = json.loads(record)["provenance"]
    assert reviewed["head_id"] == stored_provenance["head_id"] and reviewed["store_id"] == provenance["store_id"]
    assert json.loads(reviewed["decision"]) == stored_provenance["decision"]
    # the export reads back: the same review is recognised, not added twice
    from snakeweb.review import import_reviews

    exported.to_csv(tmp_path / "reviews.csv", index=False)
    assert import_reviews(built_store, tmp_path / "reviews.csv") == {"added": 0, "already_present": 1, "untimed_already_present": 0}


def test_check_names_the_engine_identify_would_use(built_store, monkeypatch):
    """check says which engine runs the backbone on this machine (without importing OpenVINO or torch), and fails
    when SNAKEWEB_ENGINE asks for an engine that is not there or is not one."""
    from importlib import metadata

    monkeypatch.setenv("SNAKEWEB_ENGINE", "torch")
    assert {v.name: v.detail for v in check_store(built_store)}["engine"] == "torch on the CPU (SNAKEWEB_ENGINE=torch)"
    monkeypatch.delenv("SNAKEWEB_ENGINE")
    engine = {v.name: v for v in check_store(built_store)}["engine"]
    assert engine.ok and engine.detail.startswith(f"openvino {metadata.version('openvino')} on the CPU")
    monkeypatch.setenv("SNAKEWEB_ENGINE", "tensorrt")
    engine = {v.name: v for v in check_store(built_store)}["engine"]
    assert not engine.ok and "SNAKEWEB_ENGINE='tensorrt' is not an engine" in engine.detail


def test_content_version_ignores_reviews_and_follows_relabels(built_store):
    """The dashboard's cache key: a saved review leaves it as it is (the model, index and catalogue stay loaded),
    a relabelled photo or a new head changes it."""
    from snakeweb.review import add_review

    before = built_store.content_version()
    observation, class_id = built_store.query("SELECT observation_id, class_id FROM observations WHERE class_id IS NOT NULL LIMIT 1").iloc[0]
    add_review(built_store, observation, "ana", int(class_id), "checked")
    assert built_store.content_version() == before
    first = built_store.query("SELECT image_id, class_id FROM images ORDER BY image_id LIMIT 1").iloc[0]
    with built_store.transaction() as con:
        con.execute("UPDATE images SET class_id = NULL WHERE image_id = ?", [int(first["image_id"])])
    assert built_store.content_version() != before
    with built_store.transaction() as con:  # the module's store, as it was
        con.execute("UPDATE images SET class_id = ? WHERE image_id = ?", [int(first["class_id"]), int(first["image_id"])])
    assert built_store.content_version() == before


def test_a_duckdb_memory_cap_too_small_is_a_sentence(built_store, monkeypatch, capsys):
    import snakeweb.store

    monkeypatch.setattr(snakeweb.store, "DUCKDB_MEMORY", "100KB")
    assert main(["check", "--store", str(built_store.root)]) == 2
    assert "DuckDB ran out of memory under its cap SNAKEWEB_DUCKDB_MEMORY=100KB" in capsys.readouterr().err
    monkeypatch.setattr(snakeweb.store, "DUCKDB_MEMORY", "lots")
    assert main(["check", "--store", str(built_store.root)]) == 2
    assert "SNAKEWEB_DUCKDB_MEMORY='lots' is not a size DuckDB takes" in capsys.readouterr().err


def test_embeddings_are_read_in_id_order_without_sorting_them_under_the_memory_cap(tmp_path, monkeypatch):
    """Store.embeddings streams the vectors into their ids' rows: with an ORDER BY on the vectors DuckDB sorted
    all of them in memory and ran out under SNAKEWEB_DUCKDB_MEMORY at 182k x 3840 (2.8 GB over a 2 GB cap);
    here 24k x 512 (49 MB) over a 24 MB cap, inserted in a shuffled order."""
    import snakeweb.store

    store = Store(tmp_path / "store").create()
    rng = np.random.default_rng(0)
    n, dim = 24_000, 512
    ids = rng.permutation(np.arange(n, dtype=np.int64) * 3 + 7)
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    frame = pd.DataFrame({"image_id": ids, "observation_id": [f"o{i}" for i in ids], "path": [f"p{i}.jpg" for i in ids]})
    with store.transaction() as con:
        con.register("frame", frame)
        con.execute("INSERT INTO images (image_id, observation_id, path, split, status) "
                    "SELECT image_id, observation_id, path, 'train', 'ok' FROM frame")
        for s in range(0, n, 4000):  # the vectors in the shuffled order
            con.register("part", pd.DataFrame({"image_id": ids[s:s + 4000], "vector": list(vectors[s:s + 4000])}))
            con.execute("INSERT INTO embeddings SELECT image_id, vector::FLOAT[] FROM part")
    monkeypatch.setattr(snakeweb.store, "DUCKDB_MEMORY", "24MB")
    read_ids, read = store.embeddings()
    order = np.argsort(ids)
    assert np.array_equal(read_ids, ids[order]) and np.array_equal(read, vectors[order])
    some_ids, some = store.embeddings("i.image_id % 2 = 0")
    assert np.array_equal(some_ids, np.sort(ids[ids % 2 == 0])) and np.array_equal(some, vectors[order][ids[order] % 2 == 0])


def test_evaluate_says_how_to_give_a_recorded_country_table_that_has_moved(built_store, tmp_path, capsys):
    """evaluate uses the table recorded at ingest by default; when that file has moved it stops with a sentence
    naming the flag that gives its new place (never a traceback, never scores without the prior unasked)."""
    import shutil

    from snakeweb.store import set_meta

    copy = Store(shutil.copytree(built_store.root, tmp_path / "store"))
    with copy.transaction() as con:
        set_meta(con, "country_table", str(tmp_path / "moved" / "Species_Relevance.csv"))
    assert main(["evaluate", "--store", str(copy.root)]) == 2
    err = capsys.readouterr().err
    assert "Cannot read the species x country table" in err and "--country-table FILE" in err and "Traceback" not in err


def run_on_a_read_only_store(store: Path, *argv: str) -> subprocess.CompletedProcess:
    """`python -m pipelines ARGV` with `store` (a store folder, or only its database file) read-only as a user meets
    it: write permission taken away, or for root (whom permissions do not stop) a read-only bind mount in a private
    mount namespace."""
    command = [sys.executable, "-m", "pipelines", *argv]
    if os.geteuid() != 0:
        for path in (store, *(store.rglob("*") if store.is_dir() else ())):
            path.chmod(path.stat().st_mode & ~0o222)
        return subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if not shutil.which("unshare"):
        pytest.skip("running as root without unshare: no way to make the store read-only")
    script = '{ mount --bind "$1" "$1" && mount -o remount,bind,ro "$1"; } || exit 97; shift; exec "$@"'
    done = subprocess.run(["unshare", "--mount", "sh", "-c", script, "sh", str(store), *command], capture_output=True, text=True, cwd=REPO)
    if done.returncode == 97:  # (97: the mount failed, before the command ran)
        pytest.skip(f"a read-only mount is not permitted here: {done.stderr.strip()}")
    return done


def test_a_read_only_store_is_still_evaluated_and_every_writing_stage_says_why_it_cannot(built_store, tmp_path):
    """A store on a read-only mount (or without write permission): evaluate prints its scores and says they were
    not saved (it once stopped with 'if it was copied while a build was writing it, build it again'); a stage that
    writes stops with a sentence naming the folder (exit 2)."""
    copy = shutil.copytree(built_store.root, tmp_path / "store")
    saved_before = Store(copy).get_meta("evaluation")  # (an earlier test may have saved one)
    done = run_on_a_read_only_store(copy, "evaluate", "--store", str(copy), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["variants"]["argmax/prior=none"]["Accuracy"] == 100.0
    assert f"The store {copy} can be read but not written here" in report["not_saved"]
    assert "note: these scores are not saved in the store" in done.stderr and "build the store again" not in done.stderr
    assert Store(copy).get_meta("evaluation") == saved_before and report["created"] != (saved_before or {}).get("created")
    done = run_on_a_read_only_store(copy, "train", "--store", str(copy))
    assert done.returncode == 2 and f"Cannot write in the store folder {copy}" in done.stderr and "Traceback" not in done.stderr


def test_a_read_only_database_in_a_writable_folder_stops_a_writing_stage_before_its_work(built_store, tmp_path):
    """Only snakeweb.duckdb read-only: `train --force` once trained to the end, replaced head.pt and was refused
    at its last write, leaving a head that the database's thresholds and predictions did not belong to."""
    copy = shutil.copytree(built_store.root, tmp_path / "store")
    head = (copy / "head.pt").read_bytes()
    done = run_on_a_read_only_store(copy / "snakeweb.duckdb", "train", "--store", str(copy), "--force", "--head", "mlp")
    assert done.returncode == 2 and f"The store {copy} can be read but not written here" in done.stderr, done.stderr
    assert "train mlp" not in done.stderr and (copy / "head.pt").read_bytes() == head


def test_possibly_venomous_names_every_venomous_species_from_five_percent_beyond_top_k(built_store, photo_folder, capsys):
    # the danger banner drew its names from the top 5 only: a viper sixth at 8% went unnamed
    from snakeweb.identification import NAME_POSSIBLY_VENOMOUS_FROM
    from snakeweb.identify import Identifier

    identifier = Identifier(built_store)
    viper, zamenis, natrix = (SYNTHETIC_SPECIES[n] for n in ("Vipera berus", "Zamenis longissimus", "Natrix natrix"))
    columns = {int(c): k for k, c in enumerate(identifier.head.label_map.to_class_ids(np.arange(3)))}
    probabilities = np.zeros(3)
    probabilities[[columns[zamenis], columns[viper], columns[natrix]]] = [0.90, NAME_POSSIBLY_VENOMOUS_FROM, 0.05 - 1e-6]
    named = identifier.possibly_venomous(probabilities)
    assert [(c.class_id, c.venom_status) for c in named] == [(viper, "venomous")]  # harmless and 4.9999% are left out
    photo = photo_folder / "Vipera_berus" / "02.jpg"
    result = identifier.identify([("v.jpg", photo)], top=1)
    raw = {c.class_id: c.probability for c in identifier.top_candidates(identifier_raw(identifier, photo), 3)}
    want = [c for c, p in raw.items() if p >= NAME_POSSIBLY_VENOMOUS_FROM and identifier.venom_status.get(c) != "harmless"]
    assert result.possibly_venomous and len(result.raw_top_k) == 1
    assert sorted(c.class_id for c in result.possibly_venomous) == sorted(want)
    assert main(["identify", "--store", str(built_store.root), str(photo)]) == 0
    out = capsys.readouterr().out
    assert all(f"{c.binomial_name} ({c.probability:.0%}, VENOMOUS)" in out for c in result.possibly_venomous)


def identifier_raw(identifier, photo) -> np.ndarray:
    """The head's probabilities for one photo (mean-log over its one vector), in head order."""
    from snakeweb.aggregate import combine

    _, vectors, _, _ = identifier.embed([("v.jpg", photo)])
    return combine(identifier.head.predict_log_proba(vectors, identifier.index), "mean-log")
