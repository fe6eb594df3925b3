"""'Not a snake in this store': thresholds chosen on validation, checked on real non-snake photos."""

import numpy as np
import pytest
from PIL import Image

from pipelines.cli import main
from snakeweb.identify import Identifier
from snakeweb.novelty import nearest_training_similarity, similarity_threshold
from snakeweb.stages import labelled_embeddings
from snakeweb.store import Store
from tests.conftest import SYNTHETIC_COLOURS, make_photo


def test_threshold_rejects_at_most_the_target_share_of_validation():
    rng = np.random.default_rng(0)
    train, val = rng.normal(size=(200, 8)), rng.normal(size=(100, 8))
    chosen = similarity_threshold(train, val, false_rejection=0.05)
    assert chosen["val_false_rejection"] <= 0.05 and chosen["val_images"] == 100
    assert similarity_threshold(train, val[:5]) is None  # too few to choose from


@pytest.fixture(scope="module")
def store(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("novelty")
    for name, colour in SYNTHETIC_COLOURS.items():
        for i in range(50):
            make_photo(root / "photos" / name / f"{i:02d}.jpg", colour, seed=i)
    assert main(["build", "--store", str(root / "store"), "--images", str(root / "photos"), "--model", str(tiny_model_dir),
                 "--skip-project"]) == 0
    return Store(root / "store")


def test_real_non_snake_photos_are_called_out_of_store_and_held_out_snakes_are_not(store, tmp_path):
    import skimage.data

    novelty = store.get_meta("novelty")
    assert novelty is not None and novelty["val_false_rejection"] <= 0.05
    identifier = Identifier(store)
    outsiders = []
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        path = tmp_path / f"{name}.jpg"
        Image.fromarray(getattr(skimage.data, name)()).convert("RGB").save(path)
        outsiders.append(identifier.identify([(name, path)]))
    assert sum(r.out_of_store for r in outsiders) >= 3
    assert all("does not look like a snake" in r.explanation for r in outsiders if r.out_of_store)
    # its venom figure is qualified in the headline itself (a flat green image read "Venomous: 69% likely")
    assert all(r.headline.endswith("unlike every snake in this store, so this figure says little") == bool(r.out_of_store)
               for r in outsiders)
    # held-out snakes are in the store's index (identify would find each one itself): measure them against the
    # training photos, the references the threshold was chosen with
    _, train, _ = labelled_embeddings(store, "train")
    _, held_out, _ = labelled_embeddings(store, "test")
    assert len(held_out) >= 20
    assert np.mean(nearest_training_similarity(train, held_out) < novelty["similarity_threshold"]) <= 0.1


def test_one_splits_answers_equal_the_same_observations_in_the_whole_export(store):
    """`export --answers --split test` reads only the test observations' photos (probabilities and the
    out-of-store search): its records are exactly the test observations' records of the whole export."""
    from snakeweb.export import observation_answers

    everything = {r["observation_id"]: r for r in observation_answers(store)}
    test = observation_answers(store, split="test")
    split_of = dict(store.query("SELECT observation_id, split FROM observations").itertuples(index=False))
    assert len(test) >= 10 and [r["observation_id"] for r in test] == [o for o in everything if split_of[o] == "test"]
    for record in test:
        assert record == everything[record["observation_id"]]
    assert any(r["out_of_store"] is not None for r in test)  # the novelty search ran on them


def test_answers_decided_in_chunks_equal_one_pass(store, tmp_path, monkeypatch):
    """observation_answers decides DECIDE_ROWS observations at a time (memory at SnakeCLEF scale): with countries
    and a country prior, every record equals the one decided in a single pass."""
    import shutil

    import pandas as pd

    from snakeweb import export
    from snakeweb.decisions import CountryPrior

    copy = Store(shutil.copytree(store.root, tmp_path / "store"))
    with copy.transaction() as con:  # a third of the observations in France, a third in Germany, a third unknown
        con.execute("UPDATE observations SET country_code = CASE hash(observation_id) % 3 WHEN 0 THEN 'FR' WHEN 1 THEN 'DE' END")
    names = copy.species()["binomial_name"].tolist()
    prior = CountryPrior.from_overrides(pd.DataFrame({"binomial_name": [names[0], names[1], names[0]], "country_code": ["FR", "FR", "DE"],
                                                      "present": [False, True, True]}))
    monkeypatch.setattr(export, "DECIDE_ROWS", 10**6)
    whole = export.observation_answers(copy, prior=prior)
    monkeypatch.setattr(export, "DECIDE_ROWS", 7)
    chunked = export.observation_answers(copy, prior=prior)
    assert len(whole) > 7 * 3 and chunked == whole
    assert {r["country"] for r in whole} == {"FR", "DE", None}
    assert any(r["out_of_range"] for r in whole)  # the prior reached some rows
