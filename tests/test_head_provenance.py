"""The head scored and checked is the one in head.pt: `evaluate` reports the choices saved with it (not the store's run
metadata of its last train), `check` fails a head.pt trained on another store's vectors, and every stage that uses
the head refuses one (exit 2 and a sentence, never answers from another store's class ids)."""

from __future__ import annotations

import json
import shutil

import pytest

from pipelines.cli import main
from snakeweb.heads import Head
from snakeweb.store import Store
from tests.conftest import build_photo_store


@pytest.fixture(scope="module")
def two_stores(tmp_path_factory, tiny_model_dir, photo_folder, species_csv):
    root = tmp_path_factory.mktemp("heads")
    return [build_photo_store(root / name, tiny_model_dir, photo_folder, species_csv) for name in ("a", "b")]


def _head_verdict(store, capsys) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["check", "--store", str(store)])
    return code, next(line for line in capsys.readouterr().out.splitlines() if " head: " in line)


def test_evaluate_reports_the_choices_of_the_head_it_scored(two_stores, tmp_path, capsys):
    store = tmp_path / "a"
    shutil.copytree(two_stores[0], store)
    head = Head.load(store / "head.pt")
    head.temperature, head.venom_weight = 0.861, 1.5  # another train's head: the run metadata still says its own
    head.save(store / "head.pt")
    assert Store(store).get_meta("head")["temperature"] != 0.861
    capsys.readouterr()
    assert main(["evaluate", "--store", str(store)]) == 0
    chosen = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("chosen on validation"))
    assert "temperature 0.861" in chosen and "venom_weight 1.5" in chosen, chosen
    assert main(["evaluate", "--store", str(store), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["chosen_on_validation"]["temperature"], report["chosen_on_validation"]["venom_weight"]) == (0.861, 1.5)


def test_check_fails_a_head_trained_on_another_store(two_stores, tmp_path, capsys):
    a, b = two_stores
    assert Head.load(a / "head.pt").store_id == Store(a).get_meta("store_id")
    assert _head_verdict(a, capsys)[1].startswith("ok")
    store = tmp_path / "a"
    shutil.copytree(a, store)
    shutil.copy(b / "head.pt", store / "head.pt")
    code, line = _head_verdict(store, capsys)
    assert code == 1 and line.startswith("FAIL") and "trained on another store's vectors" in line and "--force" in line, line
    # a head saved before heads recorded their store: not known, so a note, not a failure
    head = Head.load(store / "head.pt")
    head.store_id = None
    head.save(store / "head.pt")
    code, line = _head_verdict(store, capsys)
    assert line.startswith("ok") and "not known" in line, line


def test_every_stage_refuses_a_head_copied_from_another_store(two_stores, tmp_path, capsys, photo_folder):
    a, b = two_stores
    store = tmp_path / "a"
    shutil.copytree(a, store)
    shutil.copy(b / "head.pt", store / "head.pt")
    photo = str(next(p for p in sorted(photo_folder.rglob("*")) if p.suffix.lower() in {".jpg", ".jpeg", ".png"}))
    commands = [["evaluate"], ["export", "--out", str(tmp_path / "sub.csv")], ["predict"],
                ["identify", photo]]
    for command in commands:
        capsys.readouterr()
        assert main([command[0], "--store", str(store), *command[1:]]) == 2, command
        err = capsys.readouterr().err
        assert "trained on another store's vectors" in err and "Traceback" not in err, (command, err)
    assert not (tmp_path / "sub.csv").exists()
    # train does not call the copied head "up to date": it trains this store's own, and the stages work again
    assert main(["train", "--store", str(store)]) == 0
    assert Head.load(store / "head.pt").store_id == Store(store).get_meta("store_id")
    assert main(["evaluate", "--store", str(store)]) == 0


def test_a_change_to_the_validation_photos_retrains_the_head(two_stores, tmp_path, capsys):
    """Validation photos chose the head's early stopping, temperature, venom weight and rank thresholds: one relabelled
    (or added, or removed) makes train run again, as a change to the training photos does."""
    from snakeweb import stages

    store_dir = tmp_path / "a"
    shutil.copytree(two_stores[0], store_dir)
    store = Store(store_dir)
    capsys.readouterr()
    stages.train(store)
    assert "head up to date" in capsys.readouterr().out
    val = store.query("SELECT image_id, class_id FROM images WHERE split = 'val' AND status = 'ok' ORDER BY image_id")
    other = store.query(f"SELECT min(class_id) AS c FROM species WHERE class_id <> {int(val['class_id'][0])}")["c"][0]
    with store.transaction() as con:
        con.execute("UPDATE images SET class_id = ? WHERE image_id = ?", [int(other), int(val["image_id"][0])])
    before = store.get_meta("head")["training_digest"]
    stages.train(store)
    assert "head up to date" not in capsys.readouterr().out and store.get_meta("head")["training_digest"] != before
