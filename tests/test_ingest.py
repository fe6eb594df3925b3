"""Ingest from SnakeCLEF metadata and from folders with loose images; reviews feeding training."""

import os

import pandas as pd
import pytest

from pipelines.cli import main
from snakeweb.errors import SnakewebError
from snakeweb.heads import Head
from snakeweb.review import add_review, review_queue, reviews
from snakeweb.splits import assign_splits
from snakeweb.stages import labelled_embeddings
from snakeweb.store import Store
from snakeweb.stored_predictions import prediction_problems
from tests.conftest import SYNTHETIC_COLOURS, SYNTHETIC_SPECIES, build_photo_store, make_photo, shared


@pytest.fixture(scope="module")
def snakeclef_layout(tmp_path_factory):
    """Real SnakeCLEF metadata columns and ids; photos generated at their image_path."""
    root = tmp_path_factory.mktemp("snakeclef")
    rows = []
    for species, colour in SYNTHETIC_COLOURS.items():
        for i in range(6):
            observation = f"HM {SYNTHETIC_SPECIES[species]}{i // 2}"  # two photos per observation
            path = f"HMP/{species.replace(' ', '_')}/{i}.jpg"
            make_photo(root / "images" / path, colour, seed=i)
            rows.append({"observation_id": observation, "binomial_name": species, "image_path": path,
                         "subset": "train-hm" if i < 4 else "val", "code": "DE", "endemic": False,
                         "class_id": SYNTHETIC_SPECIES[species]})
    metadata = root / "metadata.csv"
    pd.DataFrame(rows).to_csv(metadata, index=False)
    return root, metadata


def test_snakeclef_metadata_uses_its_subset_and_observations(snakeclef_layout, tmp_path, tiny_model_dir, capsys):
    root, metadata = snakeclef_layout
    store = Store(tmp_path / "store")
    assert main(["build", "--store", str(store.root), "--metadata", str(metadata), "--image-root", str(root / "images"),
                 "--species", str(shared("snakeclef", "venomous_status_list.csv")), "--model", str(tiny_model_dir),
                 "--skip-project"]) == 0
    observations = store.query("SELECT * FROM observations ORDER BY observation_id")
    assert len(observations) == 9 and set(observations["country_code"]) == {"DE"}
    assert observations.groupby("split").size().to_dict() == {"train": 6, "val": 3}
    species = store.species().set_index("class_id")
    assert species.loc[1740, "binomial_name"] == "Vipera berus"
    mivs = pd.read_csv(shared("snakeclef", "venomous_status_list.csv")).set_index("class_id").loc[1740, "MIVS"]
    assert species.loc[1740, "venom_status"] == ("venomous" if mivs else "harmless")
    predictions = store.query("SELECT count(DISTINCT observation_id) n FROM predictions")["n"][0]
    assert predictions == 9  # one prediction per observation, not per image
    # a second ingest of the same metadata keeps the official subsets (it once re-split them, moving test photos
    # into training); so does one of a folder of new photos without subsets
    splits = observations.set_index("observation_id")["split"]
    assert main(["ingest", "--store", str(store.root), "--metadata", str(metadata), "--image-root", str(root / "images")]) == 0
    again = store.query("SELECT observation_id, split FROM observations").set_index("observation_id")["split"]
    assert again.sort_index().equals(splits.sort_index())
    assert store.get_meta("split_source") == "metadata subsets"


def test_metadata_missing_columns_is_a_sentence(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("observation_id,class_id\n1,2\n")
    assert main(["ingest", "--store", str(tmp_path / "s"), "--metadata", str(bad), "--image-root", str(tmp_path)]) == 2
    assert "has no image_path (or path, file, filename, file_path, image) column" in capsys.readouterr().err


def test_loose_images_are_indexed_not_trained(tmp_path, tiny_model_dir):
    photos = tmp_path / "photos"
    for species, colour in SYNTHETIC_COLOURS.items():
        for i in range(4):
            make_photo(photos / species / f"{i}.jpg", colour, seed=i)
    make_photo(photos / "mystery.jpg", (90, 90, 90), seed=1)
    store = Store(tmp_path / "store")
    assert main(["build", "--store", str(store.root), "--images", str(photos), "--model", str(tiny_model_dir), "--skip-project"]) == 0
    loose = store.query("SELECT * FROM images WHERE path LIKE '%mystery.jpg'")
    assert loose["class_id"].isna().all() and loose["split"].tolist() == ["unlabelled"] and loose["status"].tolist() == ["ok"]
    head = Head.load(store.head_path)
    assert head.history["epochs_run"] >= 1 and len(head.label_map) == 3
    train_ids, _, _ = labelled_embeddings(store, "train")
    assert int(loose["image_id"][0]) not in set(train_ids.tolist())
    from snakeweb.index import index_ids, load_index
    assert int(loose["image_id"][0]) in set(index_ids(load_index(store.index_path)).tolist())
    # a second ingest of the same folder (resume, or photos added later) adds nothing and refuses nothing: the
    # unlabelled photo's missing class is not "another class id"
    assert main(["ingest", "--store", str(store.root), "--images", str(photos)]) == 0
    assert store.query("SELECT count(*) AS n FROM images")["n"][0] == 13


def test_splits_are_stratified_deterministic_and_keep_small_classes_for_training():
    observations = pd.DataFrame({"observation_id": [f"o{i}" for i in range(22)],
                                 "class_id": [1] * 20 + [2] * 2})
    first, second = assign_splits(observations), assign_splits(observations.sample(frac=1, random_state=3))
    assert first.equals(second.sort_index())
    assert first[:20].value_counts().to_dict() == {"train": 14, "test": 3, "val": 3}
    assert first[20:].tolist() == ["train", "train"]


def test_a_later_ingest_moves_no_photo_to_another_split_and_fills_the_shares_with_new_ones(tmp_path):
    observations = pd.DataFrame({"observation_id": [f"o{i}" for i in range(20)], "class_id": [1] * 20})
    first = assign_splits(observations)
    grown = pd.concat([observations.assign(split=first), pd.DataFrame({"observation_id": [f"n{i}" for i in range(5)],
                                                                       "class_id": [1] * 5, "split": "unassigned"})],
                      ignore_index=True)
    second = assign_splits(grown)
    assert second[:20].equals(first)  # (re-splitting moved 3 of these: trained-on photos into test)
    assert second.value_counts().to_dict() == {"train": 17, "test": 4, "val": 4}  # round(25 x 0.15) = 4 each
    # through ingest: photos added to a store keep the old ones where they were
    photos = tmp_path / "photos"
    for i in range(12):
        make_photo(photos / "Natrix natrix" / f"{i:02d}.jpg", (40, 160, 60), seed=i)
    store = Store(tmp_path / "store")
    assert main(["ingest", "--store", str(store.root), "--images", str(photos)]) == 0
    before = store.query("SELECT path, split FROM images ORDER BY path")
    for i in range(12, 20):
        make_photo(photos / "Natrix natrix" / f"{i:02d}.jpg", (40, 160, 60), seed=i)
    assert main(["ingest", "--store", str(store.root), "--images", str(photos)]) == 0
    after = store.query("SELECT path, split FROM images ORDER BY path")
    assert after.iloc[:12].equals(before) and after["split"].value_counts().to_dict() == {"train": 14, "test": 3, "val": 3}
    # metadata with train and validation rows added to this store split by snakeweb: its observations take their
    # subsets, and the store stays split by snakeweb, so later folder photos still fill the held-out shares
    rows = ["observation_id,image_path,class_id,binomial_name,subset"]
    for i, subset in enumerate(["train", "val", "test", "train"]):
        make_photo(tmp_path / "meta" / f"m{i}.jpg", (40, 160, 60), seed=100 + i)
        rows.append(f"m{i},m{i}.jpg,,Natrix natrix,{subset}")  # (the class id the store gave Natrix natrix)
    (tmp_path / "meta.csv").write_text("\n".join(rows) + "\n")
    assert main(["ingest", "--store", str(store.root), "--metadata", str(tmp_path / "meta.csv"), "--image-root", str(tmp_path / "meta")]) == 0
    given = store.query("SELECT observation_id, split FROM observations WHERE observation_id LIKE 'm%' ORDER BY 1")["split"]
    assert given.tolist() == ["train", "val", "test", "train"] and "snakeweb" in store.get_meta("split_source")
    for i in range(20, 30):
        make_photo(photos / "Vipera berus" / f"{i:02d}.jpg", (170, 50, 40), seed=i)
    assert main(["ingest", "--store", str(store.root), "--images", str(photos)]) == 0
    vipera = store.query("SELECT split FROM images WHERE path LIKE '%Vipera berus%'")["split"].value_counts().to_dict()
    assert vipera == {"train": 6, "test": 2, "val": 2}


def test_reviews_feed_training_with_include_reviews(tmp_path, tiny_model_dir, photo_folder, species_csv, capsys):
    store = Store(tmp_path / "store")
    build_photo_store(store.root, tiny_model_dir, photo_folder, species_csv, "--skip-project")
    queue = review_queue(store, "low-confidence", limit=5)
    assert len(queue) == 5 and queue["top_probability"].is_monotonic_increasing
    target = store.query("SELECT observation_id FROM images WHERE split = 'train' AND class_id = 7 LIMIT 1")["observation_id"][0]
    add_review(store, target, "ana", 1740, "scales say viper")
    saved = reviews(store).iloc[-1]
    assert (saved["old_class_id"], saved["new_class_id"], saved["reviewer"]) == (7, 1740, "ana")
    assert target not in review_queue(store, "low-confidence", limit=100)["observation_id"].tolist()
    with pytest.raises(SnakewebError, match="not in this store"):
        add_review(store, "no-such-observation", "ana", 7)
    with pytest.raises(SnakewebError, match="not in this store's species table"):
        add_review(store, target, "ana", 999999)
    ids, _, labels = labelled_embeddings(store, "train", include_reviews=True)
    image_id = store.query(f"SELECT image_id FROM images WHERE observation_id = '{target}'")["image_id"][0]
    assert labels[list(ids).index(image_id)] == 1740
    capsys.readouterr()
    assert main(["train", "--store", str(store.root), "--include-reviews"]) == 0
    assert store.get_meta("head")["include_reviews"] is True
    # the new head's stored predictions are made with it: the Review queues and `check` accept them at once
    assert "making them again (predict --aggregation mean-log)" in capsys.readouterr().out
    assert prediction_problems(store) == [] and len(review_queue(store, "low-confidence", limit=5)) == 5
    assert main(["check", "--store", str(store.root)]) == 0
    # a later plain build keeps the reviews (it used to put the pre-review head back, saying nothing), and says so
    build_photo_store(store.root, tiny_model_dir, photo_folder, species_csv, "--skip-project")
    assert "train: including reviews, as the last train did; --no-include-reviews leaves them out" in capsys.readouterr().out
    assert store.get_meta("head")["include_reviews"] is True
    assert main(["train", "--store", str(store.root), "--no-include-reviews"]) == 0
    assert store.get_meta("head")["include_reviews"] is False and prediction_problems(store) == []
    assert main(["train", "--store", str(store.root)]) == 0  # follows the last train: without reviews, nothing said
    assert "including reviews" not in capsys.readouterr().out and store.get_meta("head")["include_reviews"] is False


def test_one_photo_keeps_one_path_however_its_folder_is_spelled(tmp_path, tiny_model_dir, capsys, monkeypatch):
    """`../photos`, `/abs/photos/` and a link to the folder name the same photos: a second ingest adds none of them
    (each spelling used to add every photo again), and a metadata row reaching a photo through `..` or a folder loop is
    that photo. A link to a photo in the same folder is the same photo, recorded once with a reason."""
    import os

    photos = tmp_path / "photos"
    for i in range(3):
        make_photo(photos / "Natrix natrix" / f"{i}.jpg", SYNTHETIC_COLOURS["Natrix natrix"], seed=i)
    (photos / "Natrix natrix" / "same.jpg").symlink_to(photos / "Natrix natrix" / "0.jpg")
    (tmp_path / "link").symlink_to(photos)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    store = tmp_path / "store"
    for spelling in ("../photos", f"{photos}/", str(tmp_path / "link"), str(tmp_path / "link" / ".." / "photos")):
        assert main(["ingest", "--store", str(store), "--images", spelling]) == 0
    out = capsys.readouterr().out
    assert out.count("0 new image(s), 4 already in the store") == 3, out
    images = Store(store).query("SELECT path, status, error FROM images ORDER BY path")
    assert len(images) == 4 and not images["path"].str.contains(r"\.\.|/link/").any()
    link = images[images["path"].str.endswith("same.jpg")].iloc[0]
    assert link["status"] == "error" and "a link to Natrix natrix/0.jpg, which is in the folder already" in link["error"]

    (photos / "loop").symlink_to(photos)  # a folder loop: loop/loop/Natrix natrix/1.jpg is Natrix natrix/1.jpg
    metadata = tmp_path / "metadata.csv"
    # (one observation: one photo under two observations is refused, tests/test_bad_inputs.py)
    pd.DataFrame({"observation_id": ["a", "a"], "image_path": ["Natrix natrix/1.jpg", "loop/loop/Natrix natrix/1.jpg"],
                  "class_id": [1130, 1130]}).to_csv(metadata, index=False)
    other = tmp_path / "metadata-store"
    assert main(["ingest", "--store", str(other), "--metadata", str(metadata), "--image-root", os.path.relpath(photos)]) == 0
    assert Store(other).query("SELECT count(*) n FROM images")["n"][0] == 1


def test_a_photo_linked_into_another_species_folder_keeps_its_own_species(tmp_path):
    """The photo itself is kept, whichever folder sorts first, and the link (or a hard link) is the row refused:
    a link from Coluber/ to a Crotalus photo used to keep the link, under Coluber, and refuse the real file."""
    import os

    photos = tmp_path / "photos"
    make_photo(photos / "Crotalus atrox" / "real.jpg", SYNTHETIC_COLOURS["Vipera berus"], seed=1)
    make_photo(photos / "Crotalus atrox" / "other.jpg", SYNTHETIC_COLOURS["Vipera berus"], seed=2)
    (photos / "Coluber constrictor").mkdir()
    (photos / "Coluber constrictor" / "link.jpg").symlink_to(photos / "Crotalus atrox" / "real.jpg")
    os.link(photos / "Crotalus atrox" / "other.jpg", photos / "Coluber constrictor" / "hard.jpg")
    store = tmp_path / "store"
    assert main(["ingest", "--store", str(store), "--images", str(photos)]) == 0
    images = Store(store).query("SELECT i.path, i.status, i.error, s.binomial_name FROM images i LEFT JOIN species s "
                                "USING (class_id)").set_index("path")
    images.index = [p.split("/photos/")[1] for p in images.index]
    assert images.loc["Crotalus atrox/real.jpg", "status"] == "pending"
    assert images.loc["Crotalus atrox/real.jpg", "binomial_name"] == "Crotalus atrox"
    assert "a link to Crotalus atrox/real.jpg" in images.loc["Coluber constrictor/link.jpg", "error"]
    hard = images.loc[["Coluber constrictor/hard.jpg", "Crotalus atrox/other.jpg"]]  # no name says which species
    assert (hard["status"] == "error").all() and hard["error"].str.contains("species it shows is ambiguous").all()
    (photos / "Crotalus atrox" / "same.jpg").symlink_to(photos / "Crotalus atrox" / "other.jpg")
    os.link(photos / "Crotalus atrox" / "real.jpg", photos / "Crotalus atrox" / "real-again.jpg")
    (photos / "Crotalus viridis").symlink_to(photos / "Crotalus atrox")  # a species folder linked to another inside
    assert main(["ingest", "--store", str(store), "--images", str(photos)]) == 0
    images = Store(store).query("SELECT path, status, error FROM images").set_index("path")
    images.index = [p.split("/photos/")[1] for p in images.index]
    assert "a hard link of Crotalus atrox/real.jpg" in images.loc["Crotalus atrox/real-again.jpg", "error"]
    assert "ambiguous" in images.loc["Crotalus atrox/same.jpg", "error"]
    assert not images.index.str.startswith("Crotalus viridis").any()  # its photos are read where they are


def test_an_observation_takes_its_values_from_any_of_its_rows(tmp_path):
    # the first row's empty cells became the observation's: stored unlabelled (never trained on), country lost,
    # and one photo listed in two files kept whichever row came first (a test photo trained on)
    root = green_photos(tmp_path / "img", 6)
    (tmp_path / "a.csv").write_text("observation_id,image_path,class_id,binomial_name,country_code,subset\n"
                                    "o1,0.jpg,,,,train\no1,1.jpg,1137,Natrix natrix,US,\n"
                                    "o2,2.jpg,1137,Natrix natrix,,\no2,3.jpg,,,DE,val\n"
                                    "o3,4.jpg,,,,\n")
    (tmp_path / "b.csv").write_text("observation_id,image_path,class_id,binomial_name,country_code,subset\n"
                                    "o3,4.jpg,1137,Natrix natrix,DE,test\no4,5.jpg,1137,Natrix natrix,DE,train\n")
    store = Store(tmp_path / "store")
    assert main(["ingest", "--store", str(store.root), "--metadata", str(tmp_path / "a.csv"), str(tmp_path / "b.csv"),
                 "--image-root", str(root)]) == 0
    observations = store.query("SELECT observation_id, class_id, country_code, split FROM observations ORDER BY 1")
    assert observations.values.tolist() == [["o1", 1137, "US", "train"], ["o2", 1137, "DE", "val"], ["o3", 1137, "DE", "test"],
                                            ["o4", 1137, "DE", "train"]]
    images = store.query("SELECT class_id, split FROM images ORDER BY path")
    assert images["class_id"].tolist() == [1137] * 6 and images["split"].tolist() == ["train", "train", "val", "val", "test", "train"]


def test_new_photos_may_not_label_a_stored_observation_that_had_no_class_or_country(tmp_path, capsys):
    root = green_photos(tmp_path / "img", 4)
    (tmp_path / "a.csv").write_text("observation_id,image_path,class_id,binomial_name,country_code,subset\n"
                                    "o1,0.jpg,,,,train\no2,1.jpg,1137,Natrix natrix,,val\n")
    store = Store(tmp_path / "store")
    ingest = ["ingest", "--store", str(store.root), "--image-root", str(root), "--metadata"]
    assert main([*ingest, str(tmp_path / "a.csv")]) == 0
    before = store.query("SELECT * FROM observations ORDER BY 1")
    for row, said in (("o1,2.jpg,1137,Natrix natrix,,train", "observation o1: no class in the store, class 1137 now"),
                      ("o2,3.jpg,1137,Natrix natrix,DE,val", "observation o2: no country in the store, DE now")):
        (tmp_path / "b.csv").write_text("observation_id,image_path,class_id,binomial_name,country_code,subset\n" + row + "\n")
        assert main([*ingest, str(tmp_path / "b.csv")]) == 2
        assert said in capsys.readouterr().err
    assert store.query("SELECT * FROM observations ORDER BY 1").equals(before) and len(store.query("SELECT * FROM images")) == 2


def test_a_second_folder_with_the_same_file_names_gives_new_observations(tmp_path, caplog):
    # IMG_0001.jpg of a second batch joined the first batch's observation of that name and took its split
    for batch, seed in (("a", 0), ("b", 100)):
        for i in range(8):
            make_photo(tmp_path / batch / "Natrix natrix" / f"IMG_{i:04d}.jpg", (40, 160, 60), seed=seed + i)
    store = Store(tmp_path / "store")
    assert main(["ingest", "--store", str(store.root), "--images", str(tmp_path / "a")]) == 0
    before = store.query("SELECT observation_id, split FROM observations ORDER BY 1")
    assert main(["ingest", "--store", str(store.root), "--images", str(tmp_path / "b")]) == 0
    observations = store.query("SELECT observation_id, split FROM observations ORDER BY 1")
    assert len(observations) == 16 and observations.merge(before).equals(before)
    new = store.query("SELECT observation_id FROM images WHERE path LIKE '%/b/%'")["observation_id"]
    assert sorted(new) == sorted(str((tmp_path / "b" / "Natrix natrix" / f"IMG_{i:04d}.jpg").absolute()) for i in range(8))
    assert "8 new photo(s) have the same species folder and file name as photos already in the store" in caplog.text


def test_new_photos_without_a_class_take_their_stored_observations_class(tmp_path):
    # they were stored with no class beside the observation's (never trained on), and a later file giving them the
    # right class was then refused as a relabel
    root = green_photos(tmp_path / "img", 4)
    header = "observation_id,image_path,class_id,binomial_name,country_code,subset\n"
    (tmp_path / "a.csv").write_text(header + "o1,0.jpg,1137,Natrix natrix,DE,train\no2,1.jpg,1137,Natrix natrix,,val\n")
    (tmp_path / "b.csv").write_text(header + "o1,2.jpg,,,,\no2,3.jpg,,,,\n")
    (tmp_path / "c.csv").write_text(header + "o1,2.jpg,1137,Natrix natrix,DE,train\n")
    store = Store(tmp_path / "store")
    for name in ("a.csv", "b.csv", "c.csv"):
        assert main(["ingest", "--store", str(store.root), "--metadata", str(tmp_path / name), "--image-root", str(root)]) == 0
    images = store.query("SELECT i.path, i.class_id, i.split, o.split AS observation_split FROM images i JOIN observations o "
                         "USING (observation_id) ORDER BY i.path")
    assert images["class_id"].tolist() == [1137] * 4 and images["split"].tolist() == ["train", "val", "train", "val"]
    assert images["split"].equals(images["observation_split"])


def test_a_trinomial_on_new_photos_fills_a_stored_observations_empty_subspecies(tmp_path):
    # new photos of a stored observation named its subspecies, and the observation kept its empty one
    root = green_photos(tmp_path / "img", 3)
    header = "observation_id,image_path,class_id,binomial_name,country_code,subset\n"
    (tmp_path / "a.csv").write_text(header + "o1,0.jpg,1137,Natrix natrix,DE,train\no2,1.jpg,1137,Natrix natrix helvetica,DE,train\n")
    (tmp_path / "b.csv").write_text(header + "o1,2.jpg,1137,Natrix natrix helvetica,DE,train\n")
    store = Store(tmp_path / "store")
    for name in ("a.csv", "b.csv", "b.csv"):  # the second b.csv: nothing changes
        assert main(["ingest", "--store", str(store.root), "--metadata", str(tmp_path / name), "--image-root", str(root)]) == 0
    observations = store.query("SELECT observation_id, class_id, country_code, subspecies FROM observations ORDER BY 1")
    assert observations.values.tolist() == [["o1", 1137, "DE", "Natrix natrix helvetica"], ["o2", 1137, "DE", "Natrix natrix helvetica"]]


def test_two_names_of_one_file_in_the_metadata(tmp_path, capsys):
    root = tmp_path / "img"
    make_photo(root / "Natrix natrix" / "a.jpg", (40, 160, 60), seed=1)
    make_photo(root / "Natrix natrix" / "b.jpg", (40, 160, 60), seed=2)
    (root / "Crotalus atrox").mkdir()
    (root / "Crotalus atrox" / "link.jpg").symlink_to(root / "Natrix natrix" / "a.jpg")
    os.link(root / "Natrix natrix" / "a.jpg", root / "hard.jpg")
    header = "observation_id,image_path,class_id,binomial_name\n"
    for n, second in enumerate(("Crotalus atrox/link.jpg", "hard.jpg")):
        # under two observations (two species): the same bytes were stored as both, in two splits, exit 0
        (tmp_path / f"two{n}.csv").write_text(header + f"y1,Natrix natrix/a.jpg,1137,Natrix natrix\ny2,{second},405,Crotalus atrox\n"
                                              "y3,Natrix natrix/b.jpg,1137,Natrix natrix\n")
        assert main(["ingest", "--store", str(tmp_path / f"s{n}"), "--metadata", str(tmp_path / f"two{n}.csv"),
                     "--image-root", str(root)]) == 2
        err = capsys.readouterr().err
        assert f"Natrix natrix/a.jpg (also named {root / second}): observations y1 and y2" in err, err
    # under one observation: the photo is stored once, the other name recorded with its reason
    (tmp_path / "one.csv").write_text(header + "y1,Natrix natrix/a.jpg,1137,Natrix natrix\ny1,hard.jpg,,\n"
                                      "y3,Natrix natrix/b.jpg,1137,Natrix natrix\n")
    store = Store(tmp_path / "s")
    assert main(["ingest", "--store", str(store.root), "--metadata", str(tmp_path / "one.csv"), "--image-root", str(root)]) == 0
    rows = store.query("SELECT path, status, error FROM images ORDER BY path")
    refused = rows[rows["path"].str.endswith("hard.jpg")].iloc[0]
    assert refused["status"] == "error" and "a hard link of Natrix natrix/a.jpg" in refused["error"]
    assert rows["status"].tolist().count("pending") == 2


def test_a_name_only_row_and_a_class_only_row_of_two_species_are_refused(tmp_path, capsys):
    # x1's rows matched to two classes; it was stored under one, and the names table got two classes of one name
    root = green_photos(tmp_path / "img", 3)
    (tmp_path / "m.csv").write_text("observation_id,image_path,class_id,binomial_name\nx1,0.jpg,,Crotalus atrox\nx1,1.jpg,1137,\n"
                                    "x2,2.jpg,405,Crotalus atrox\n")
    store = Store(tmp_path / "s")
    assert main(["ingest", "--store", str(store.root), "--metadata", str(tmp_path / "m.csv"), "--image-root", str(root)]) == 2
    err = capsys.readouterr().err
    assert "1 observation(s) are given two species by their rows (e.g. observation x1: 405 (Crotalus atrox) and 1137)" in err, err
    assert not store.exists()


def test_a_second_batch_ingested_again_adds_nothing(tmp_path, capsys):
    # its photos are stored under their full paths; the same ingest again was refused as 'another observation'
    for batch, seed in (("a", 0), ("b", 100)):
        for i in range(3):
            make_photo(tmp_path / batch / "Natrix natrix" / f"IMG_{i:04d}.jpg", (40, 160, 60), seed=seed + i)
    store = Store(tmp_path / "store")
    for batch in ("a", "b", "b", "a"):
        assert main(["ingest", "--store", str(store.root), "--images", str(tmp_path / batch)]) == 0
    assert capsys.readouterr().out.count("0 new image(s), 3 already in the store") == 2
    assert len(store.query("SELECT * FROM observations")) == 6


def green_photos(root, n: int):
    """`root` with n distinct photos 0.jpg ... of one colour (what the metadata tests list)."""
    for i in range(n):
        make_photo(root / f"{i}.jpg", (40, 160, 60), seed=i)
    return root


def test_metadata_without_labels_or_species_table_and_name_only_rows(tmp_path, capsys):
    root = green_photos(tmp_path / "img", 4)
    # no label at all, no --species: a DuckDB type error (a traceback, exit 1) left an empty store behind
    (tmp_path / "bare.csv").write_text("observation_id,image_path\no1,0.jpg\no2,1.jpg\n")
    bare = Store(tmp_path / "bare")
    assert main(["ingest", "--store", str(bare.root), "--metadata", str(tmp_path / "bare.csv"), "--image-root", str(root)]) == 0
    assert bare.query("SELECT split FROM images")["split"].tolist() == ["unlabelled"] * 2
    # a name-only row beside another observation's class-only row: a new species, not "None of the names matches"
    (tmp_path / "mixed.csv").write_text("observation_id,image_path,class_id,binomial_name,subset\no1,0.jpg,,Crotalus atrox,train\n"
                                        "o2,1.jpg,1137,,val\n")
    mixed = Store(tmp_path / "mixed")
    assert main(["ingest", "--store", str(mixed.root), "--metadata", str(tmp_path / "mixed.csv"), "--image-root", str(root)]) == 0
    assert mixed.query("SELECT count(DISTINCT class_id) AS n FROM images")["n"][0] == 2
    # one name under two class ids: stored as two classes of one name, and every later ingest was refused
    (tmp_path / "twice.csv").write_text("observation_id,image_path,class_id,binomial_name\no1,0.jpg,405,Crotalus atrox\n"
                                        "o2,1.jpg,406,crotalus_atrox\n")
    assert main(["ingest", "--store", str(tmp_path / "t"), "--metadata", str(tmp_path / "twice.csv"), "--image-root", str(root)]) == 2
    assert "give Crotalus atrox more than one class id: class 405" in capsys.readouterr().err


def test_the_same_ingest_again_is_a_no_op_and_later_links_to_stored_photos_are_refused(tmp_path, capsys):
    root = green_photos(tmp_path / "img", 3)
    header = "observation_id,image_path,class_id,binomial_name,subset\n"
    (tmp_path / "a.csv").write_text(header + "o1,0.jpg,405,Crotalus atrox,train\no2,1.jpg,1137,Natrix natrix,val\n")
    (tmp_path / "b.csv").write_text(header + "o1,2.jpg,,,\n")  # a photo without a class of a stored observation
    store = Store(tmp_path / "s")
    ingest = ["ingest", "--store", str(store.root), "--image-root", str(root), "--metadata"]
    for name in ("a.csv", "b.csv", "b.csv"):  # the second b.csv was refused: "another class id (405 -> (empty))"
        assert main([*ingest, str(tmp_path / name)]) == 0
    assert "0 new image(s), 1 already in the store" in capsys.readouterr().out
    # a link made later to a stored photo, under another species: a second copy of it in another split, exit 0
    os.link(root / "0.jpg", root / "hard.jpg")
    (root / "soft.jpg").symlink_to(root / "1.jpg")
    (tmp_path / "c.csv").write_text(header + "o7,hard.jpg,1137,Natrix natrix,val\no8,soft.jpg,1137,Natrix natrix,train\n")
    assert main([*ingest, str(tmp_path / "c.csv")]) == 0
    rows = store.query("SELECT path, status, error FROM images WHERE path LIKE '%hard.jpg' OR path LIKE '%soft.jpg' ORDER BY path")
    assert rows["status"].tolist() == ["error", "error"]
    assert "(a hard link) in another species folder" in rows["error"][0] and "it is a link to " in rows["error"][1]
