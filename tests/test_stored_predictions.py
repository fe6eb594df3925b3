"""Damage confined to the `predictions` table (written with SQL through DuckDB, as a stray script or a half-copied
store would) is refused by the readers that trust the table (`check`, the Review queue, the map's correct /
incorrect colouring), with a sentence naming `predict`; `export` and `identify` run the head again, so their
answers stay those of the undamaged store."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pytest

from pipelines.cli import main
from snakeweb.explore import map_points
from snakeweb.integrity import check_store
from snakeweb.review import review_queue
from snakeweb.store import Store
from snakeweb.stored_predictions import StalePredictionsError, prediction_problems
from tests.conftest import build_photo_store

FIRST = "(SELECT min(observation_id) FROM predictions)"
DAMAGE = {
    "class id not in the species table": (f"UPDATE predictions SET class_id = 99999 WHERE rank = 1 AND observation_id = {FIRST}",
                                          "1 class id(s) in the rows are missing from the species table (e.g. 99999)"),
    "class id not in the head's label map": (
        "INSERT INTO species VALUES (4242, 'Testus extraneus', 'Testus', 'harmless', NULL); "
        f"UPDATE predictions SET class_id = 4242 WHERE rank = 1 AND observation_id = {FIRST}",
        "1 class id(s) in the rows are not in the head's label map (e.g. 4242)"),
    "rows for an observation that no longer exists": ("INSERT INTO predictions VALUES ('ghost', 1, 7, 0.9)",
                                                      "1 observation(s) in the rows have no embedded photo in the store"),
    "NaN probability": (f"UPDATE predictions SET probability = 'nan'::DOUBLE WHERE rank = 1 AND observation_id = {FIRST}",
                        "1 row(s) have a probability that is not a number from 0 to 1"),
    "negative probability": (f"UPDATE predictions SET probability = -0.2 WHERE rank = 2 AND observation_id = {FIRST}",
                             "1 row(s) have a probability that is not a number from 0 to 1"),
    "probability over 1": (f"UPDATE predictions SET probability = 1.5 WHERE rank = 1 AND observation_id = {FIRST}",
                           "1 row(s) have a probability that is not a number from 0 to 1"),
    "a class twice for one observation": (
        f"INSERT INTO predictions SELECT observation_id, 4, class_id, 0.0 FROM predictions WHERE rank = 1 AND observation_id = {FIRST}",
        "1 observation(s) have rows that repeat a class or a rank"),
    "ranks swapped": (f"UPDATE predictions SET rank = 3 - rank WHERE rank IN (1, 2) AND observation_id = {FIRST}",
                      "1 observation(s) have rows that repeat a class or a rank, skip a rank, rise with the rank"),
    "an observation's rows deleted": (f"DELETE FROM predictions WHERE observation_id = {FIRST}",
                                      "1 observation(s) with embedded photos have no rows"),
}


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_model_dir, photo_folder, species_csv) -> Path:
    return build_photo_store(tmp_path_factory.mktemp("stored-predictions") / "store", tiny_model_dir, photo_folder, species_csv)


@pytest.fixture(scope="module")
def clean_outputs(built, photo_folder, tmp_path_factory) -> dict:
    """export's submission and answers, and identify's JSON, of the undamaged store."""
    return _outputs(built, photo_folder, tmp_path_factory.mktemp("clean"))


def _outputs(store: Path, photo_folder: Path, out: Path) -> dict:
    import contextlib
    import io

    assert main(["export", "--store", str(store), "--out", str(out / "submission.csv")]) == 0
    assert main(["export", "--store", str(store), "--out", str(out / "answers.jsonl"), "--answers"]) == 0
    photo = photo_folder / "Vipera_berus" / "03.jpg"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["identify", "--store", str(store), str(photo), "--json", "--neighbours", "2"]) == 0
    answers = [json.loads(line) for line in (out / "answers.jsonl").read_text().splitlines()]
    for answer in answers:  # the head id and the store's place are the same; the time of writing is not compared
        answer.pop("provenance", None)
    identified = json.loads(printed.getvalue())
    identified.pop("provenance", None)
    return {"submission": (out / "submission.csv").read_text(), "answers": answers, "identify": identified}


def _damaged_copy(built: Path, tmp_path: Path, sql: str) -> Store:
    root = tmp_path / "store"
    shutil.copytree(built, root, ignore=shutil.ignore_patterns(".writer.*"))
    con = duckdb.connect(str(root / "snakeweb.duckdb"))
    con.execute(sql)
    con.close()
    return Store(root)


def test_a_fresh_store_passes_and_check_says_so(built):
    store = Store(built)
    assert prediction_problems(store) == []
    verdict = next(v for v in check_store(store) if v.name == "prediction rows")
    assert verdict.ok and "made by the current head.pt" in verdict.detail
    assert len(review_queue(store, "low-confidence", limit=100)) > 0
    points = map_points(store)
    assert points.prediction_note is None and "correct" in np.asarray(points.categories["prediction"])[points.codes["prediction"]]


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_rows_are_refused_by_their_readers_and_recomputed_by_export_and_identify(case, built, photo_folder, clean_outputs,
                                                                                         tmp_path, capsys):
    sql, said = DAMAGE[case]
    store = _damaged_copy(built, tmp_path, sql)
    fix = f"python -m pipelines predict --store {store.root}"
    # check: its own FAIL line naming what is wrong and the fix, exit 1
    assert main(["check", "--store", str(store.root)]) == 1
    lines = [line for line in capsys.readouterr().out.splitlines() if "prediction rows:" in line]
    assert len(lines) == 1 and lines[0].startswith("FAIL") and said in lines[0] and fix in lines[0], lines
    # the Review queue refuses rather than send reviewers to another head's or damaged calls
    with pytest.raises(StalePredictionsError, match="predict --store"):
        review_queue(store, "low-confidence")
    # the map: every point's outcome unknown, and the sentence for the page
    points = map_points(store)
    outcomes = set(np.asarray(points.categories["prediction"])[points.codes["prediction"]])
    assert outcomes == {"unknown"} and said in points.prediction_note and fix in points.prediction_note
    # export and identify run the head again: the answers of the undamaged store
    assert _outputs(store.root, photo_folder, tmp_path) == clean_outputs
    # predict makes them again, and every reader trusts them once more
    assert main(["predict", "--store", str(store.root)]) == 0
    assert prediction_problems(store) == [] and len(review_queue(store, "low-confidence", limit=100)) > 0


def test_rows_of_a_head_trained_since_are_refused_until_predict(built, tmp_path, capsys):
    """The train stage replaces head.pt; the rows of the head before it are no longer its answers. The `train`
    command makes them again after it, with the aggregation they were made with, and says so."""
    from snakeweb import stages
    from snakeweb.options import TrainConfig

    store = _damaged_copy(built, tmp_path, "SELECT 1")
    before = store.get_meta("predictions")["head_id"]
    stages.train(store, TrainConfig(kind="knn"), force=True)
    problems = prediction_problems(store)
    assert len(problems) == 1 and f"made by another head (id {before})" in problems[0]
    with pytest.raises(StalePredictionsError, match="trained again or replaced since"):
        review_queue(store, "venomous-runner-up")
    assert main(["predict", "--store", str(store.root), "--aggregation", "mean-prob"]) == 0
    capsys.readouterr()
    assert main(["train", "--store", str(store.root), "--force"]) == 0
    assert "making them again (predict --aggregation mean-prob)" in capsys.readouterr().out
    assert prediction_problems(store) == [] and store.get_meta("predictions")["aggregation"] == "mean-prob"
    assert len(review_queue(store, "low-confidence", limit=5)) == 5


def test_rows_from_before_heads_were_recorded_are_refused(built, tmp_path):
    store = _damaged_copy(built, tmp_path, "UPDATE run_metadata SET value = json_object('head', 'linear+knn') "
                                           "WHERE key = 'predictions'")
    assert prediction_problems(store) == ["they were made before snakeweb recorded which head made them"]


def test_a_deleted_species_row_the_head_uses_sends_people_to_ingest_the_species_table(tmp_path, tiny_model_dir, photo_folder,
                                                                                      species_csv, capsys):
    """`DELETE FROM species WHERE class_id = ...`: head and prediction rows say to ingest the species table again (predict
    and train cannot put the row back), predict warns, and the advised ingest passes check."""
    from tests.conftest import build_photo_store

    root = build_photo_store(tmp_path / "store", tiny_model_dir, photo_folder, species_csv, "--skip-project")
    with duckdb.connect(str(root / "snakeweb.duckdb")) as con:
        con.execute("DELETE FROM species WHERE class_id = 1740")
    assert main(["predict", "--store", str(root)]) == 0
    assert "lacks class id(s) the head was trained on (1740" in capsys.readouterr().err
    failed = {v.name: v.detail for v in check_store(Store(root)) if not v.ok}
    assert set(failed) == {"head", "prediction rows"}
    for detail in failed.values():
        assert "--images DIR --species TABLE" in detail and "Make them again with" not in detail
    assert main(["ingest", "--store", str(root), "--images", str(photo_folder), "--species", str(species_csv)]) == 0
    assert all(v.ok for v in check_store(Store(root))), [v.line() for v in check_store(Store(root)) if not v.ok]
