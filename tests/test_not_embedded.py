"""Photos ingested after the last embed are fine photos without a vector yet: export, export --answers and evaluate
say so and say to build, never that they could not be read (which is said only of photos that could not)."""

import json
import shutil

import pandas as pd

from pipelines.cli import main
from snakeweb.export import observations_without_vectors
from snakeweb.store import Store
from tests.conftest import build_photo_store, make_photo


def test_photos_not_embedded_yet_are_not_called_unreadable(tmp_path, photo_folder, species_csv, tiny_model_dir, capsys):
    photos = tmp_path / "photos"
    shutil.copytree(photo_folder, photos)
    store = Store(build_photo_store(tmp_path / "store", tiny_model_dir, photos, species_csv))
    unreadable = set(store.query("SELECT observation_id FROM images WHERE status = 'error'")["observation_id"])
    assert len(unreadable) == 2  # empty.jpg and notes.jpg of the photo folder fixture
    for i in range(3):
        make_photo(photos / "Natrix_natrix" / f"renamed-{i}.jpg", (40, 160, 60), seed=700 + i)
    assert main(["ingest", "--store", str(store.root), "--images", str(photos)]) == 0
    waiting = set(store.query("SELECT observation_id FROM images WHERE path LIKE '%renamed-%'")["observation_id"])
    assert len(waiting) == 3

    kinds = observations_without_vectors(store, sorted(waiting | unreadable))
    assert set(kinds["not_embedded"]) == waiting and set(kinds["unreadable"]) == unreadable and not kinds["no_photos"]

    capsys.readouterr()
    out = tmp_path / "x.csv"
    assert main(["export", "--store", str(store.root), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if line.startswith("note: ")]
    embed_note = next(n for n in notes if "not embedded yet" in n)
    read_note = next(n for n in notes if "could be read" in n)
    assert embed_note.startswith("note: 3 observation(s) are not in the submission") and "renamed-" in embed_note
    assert f"python -m pipelines build --store {store.root}" in embed_note and "could be read" not in embed_note
    assert read_note.startswith("note: 2 observation(s) are not in the submission") and "renamed-" not in read_note
    assert not set(pd.read_csv(out)["observation_id"]) & (waiting | unreadable)

    answers = tmp_path / "answers.jsonl"
    assert main(["export", "--store", str(store.root), "--answers", "--out", str(answers)]) == 0
    err = capsys.readouterr().err
    assert "note: 3 observation(s) abstain because their photos are not embedded yet" in err
    assert "note: 2 observation(s) abstain because none of their photos could be read" in err
    records = {r["observation_id"]: r for r in map(json.loads, answers.read_text().splitlines())}
    for o in waiting:
        assert records[o]["prediction_source"] == "abstain"
        assert [f["reason"].startswith("not embedded yet") for f in records[o]["failures"]] == [True]
    for o in unreadable:
        assert records[o]["failures"] and not any("not embedded" in f["reason"] for f in records[o]["failures"])

    split = store.query("SELECT split FROM observations WHERE observation_id = ?", [sorted(waiting)[0]])["split"][0]
    assert main(["evaluate", "--store", str(store.root), "--split", split, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    in_split = set(store.query("SELECT observation_id FROM observations WHERE split = ?", [split])["observation_id"])
    assert report["observations_not_embedded"] == len(waiting & in_split) >= 1
    assert report["observations_without_usable_photos"] == len(unreadable & in_split)

    assert main(["build", "--store", str(store.root), "--images", str(photos), "--model", str(tiny_model_dir)]) == 0
    capsys.readouterr()
    assert main(["export", "--store", str(store.root), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "not embedded" not in err and "note: 2 observation(s) are not in the submission" in err
