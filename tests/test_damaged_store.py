"""A store whose DuckDB file was damaged on disk (a block of zeros, a file cut short) is one sentence and exit 2 for
every command that reads it, and one FAIL verdict with exit 1 for `check`; never a traceback. The block of zeros is
met when DuckDB opens the file, the cut-short file only on a later query: both paths are covered."""

from __future__ import annotations

import shutil

import pytest

from pipelines.cli import main
from tests.conftest import build_photo_store


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_model_dir, photo_folder, species_csv):
    return build_photo_store(tmp_path_factory.mktemp("damaged") / "store", tiny_model_dir, photo_folder, species_csv)


def _zeros_at_5000(db):
    with open(db, "r+b") as f:  # the block after the headers: its checksum fails when DuckDB opens the file
        f.seek(5000)
        f.write(bytes(4096))


def _cut_short(db):
    db.write_bytes(db.read_bytes()[:300_000])  # opens; the first query reading past the end fails


DAMAGE = {"zeros": (_zeros_at_5000, "cannot be opened"), "cut short": (_cut_short, "is damaged")}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_store_file_is_one_sentence_and_a_failed_check(damage, built, photo_folder, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    damaged, words = DAMAGE[damage]
    damaged(copy / "snakeweb.duckdb")
    photo = next((photo_folder / "Vipera_berus").glob("0*.jpg"))
    for argv in (["evaluate"], ["export", "--out", str(tmp_path / "s.csv")],
                 ["export-embeddings", "--out", str(tmp_path / "v.parquet")], ["identify", str(photo)]):
        capsys.readouterr()
        assert main([argv[0], "--store", str(copy), *argv[1:]]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: The store file ") and words in err and "build the store again" in err, (argv, err)
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, (argv, err)
    assert main(["check", "--store", str(copy)]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert out == [out[0]] and out[0].startswith("FAIL  store file: The store file ") and words in out[0], out
