"""A table dropped from the store's DuckDB file (`DROP TABLE predictions`): `check` fails one "store file" verdict
naming it and the command that makes it again, readers say so in a sentence, and the building stages make it again."""

from __future__ import annotations

import shutil

import duckdb
import pytest

from pipelines.cli import main
from snakeweb.errors import SnakewebError
from snakeweb.integrity import check_store
from snakeweb.store import Store
from tests.conftest import build_photo_store


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_model_dir, photo_folder, species_csv):
    return build_photo_store(tmp_path_factory.mktemp("missing-tables") / "store", tiny_model_dir, photo_folder, species_csv)


def copy_without(built, tmp_path, table: str) -> Store:
    root = tmp_path / "store"
    shutil.copytree(built, root)
    with duckdb.connect(str(root / "snakeweb.duckdb")) as con:
        con.execute(f"DROP TABLE {table}")
    return Store(root)


@pytest.mark.parametrize("table, stage", [("predictions", "predict"), ("answers", "predict"), ("projection", "project"),
                                          ("embeddings", "embed"), ("view_embeddings", "embed"), ("images", "build"),
                                          ("species", "build"), ("observations", "build"), ("run_metadata", "build")])
def test_check_fails_one_store_file_verdict_naming_the_table_and_its_command(built, tmp_path, capsys, table, stage):
    store = copy_without(built, tmp_path, table)
    verdicts = check_store(store)
    assert [v.name for v in verdicts] == ["store file"] and not verdicts[0].ok
    assert f"lacks the table {table}" in verdicts[0].detail and f"python -m pipelines {stage} --store" in verdicts[0].detail
    assert main(["check", "--store", str(store.root)]) == 1
    out, err = capsys.readouterr()
    assert "FAIL" in out and "Traceback" not in err
    if table in ("images", "embeddings", "species", "observations", "predictions", "run_metadata"):
        with pytest.raises(SnakewebError, match=f"lacks the table {table}"):
            store.content_version()  # the dashboard's key reads these
    assert main(["evaluate", "--store", str(store.root)]) == 2
    assert f"lacks the table {table}" in capsys.readouterr().err


@pytest.mark.parametrize("table, command", [("predictions", ["predict"]), ("answers", ["predict"]),
                                            ("projection", ["project"]), ("embeddings", ["embed"])])
def test_the_stage_that_writes_the_table_makes_it_again(built, tmp_path, tiny_model_dir, capsys, table, command):
    store = copy_without(built, tmp_path, table)
    before = len(Store(built).query(f"SELECT * FROM {table}"))
    extra = ["--model", str(tiny_model_dir)] if command == ["embed"] else []
    assert main([*command, "--store", str(store.root), *extra]) == 0, capsys.readouterr().err
    assert len(store.query(f"SELECT * FROM {table}")) == before > 0
    if table == "embeddings":  # the later stages follow: the store checks clean again
        assert main(["index", "--store", str(store.root)]) == 0 and main(["predict", "--store", str(store.root)]) == 0
    capsys.readouterr()
    failed = [v for v in check_store(store) if not v.ok]
    assert not failed or table == "embeddings", failed


def test_predict_makes_a_dropped_predictions_table_again(built, tmp_path):
    store = copy_without(built, tmp_path, "predictions")
    assert main(["predict", "--store", str(store.root)]) == 0
    assert all(v.ok for v in check_store(store) if v.name in ("predictions", "prediction rows", "answers"))
