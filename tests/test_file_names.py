"""Photo folders as users unpack them: file names that are not UTF-8, backslashes from Windows zips, the same photo
under two species, and species folders named by class ids."""

import os
from pathlib import Path

from pipelines.cli import main
from snakeweb.store import Store
from tests.conftest import make_photo


def test_a_backslash_is_part_of_a_file_name_on_posix(tmp_path, tiny_model_dir):
    """A Windows zip unpacked on Linux names a file `Crotalus atrox\\IMG_1.jpg`: every `/` of its path was turned
    into `\\`, and embed recorded the photo as missing although it is on disk."""
    photos = tmp_path / "photos"
    make_photo(photos / "Natrix natrix" / "ok.jpg", (40, 160, 60), seed=1)
    make_photo(photos / "Natrix natrix" / "back\\slash.jpg", (40, 160, 60), seed=2)
    make_photo(photos / "Crotalus atrox\\IMG_1.jpg", (170, 50, 40), seed=3)  # at the top: a file, not a folder
    store = Store(tmp_path / "store")
    assert main(["ingest", "--store", str(store.root), "--images", str(photos)]) == 0
    assert main(["embed", "--store", str(store.root), "--model", str(tiny_model_dir)]) == 0
    images = store.query("SELECT path, observation_id, status, error FROM images ORDER BY path")
    assert sorted(images["path"]) == sorted(str(p) for p in photos.rglob("*.jpg"))
    assert set(images["status"]) == {"ok"}, images["error"].tolist()
    assert "Natrix natrix/back\\slash.jpg" in set(images["observation_id"])


def test_metadata_written_on_windows_names_its_photos_with_backslashes(tmp_path):
    """An image_path with backslashes names the file with that name where there is one, else the file in those folders."""
    root = tmp_path / "images"
    make_photo(root / "Natrix natrix" / "a.jpg", (40, 160, 60), seed=1)
    make_photo(root / "Natrix natrix" / "b\\c.jpg", (40, 160, 60), seed=2)
    metadata = tmp_path / "metadata.csv"
    metadata.write_text("observation_id,image_path,class_id\n1,Natrix natrix\\a.jpg,3\n2,Natrix natrix/b\\c.jpg,3\n")
    store = Store(tmp_path / "store")
    assert main(["ingest", "--store", str(store.root), "--metadata", str(metadata), "--image-root", str(root)]) == 0
    assert sorted(store.query("SELECT path FROM images")["path"]) == [str(root / "Natrix natrix" / "a.jpg"),
                                                                       str(root / "Natrix natrix" / "b\\c.jpg")]


def test_a_name_that_is_not_utf8_is_recorded_with_its_reason(tmp_path):
    """A file or species folder whose name is not UTF-8 (Latin-1 bytes from an old camera or zip) stopped ingest with
    a traceback from pyarrow; now each of its photos is an error row, stored as valid UTF-8, and the rest go in."""
    photos = tmp_path / "photos"
    make_photo(photos / "Natrix natrix" / "ok.jpg", (40, 160, 60), seed=1)
    make_photo(Path(os.fsdecode(bytes(photos / "Natrix natrix") + b"/latin1_\xe9\xfc.jpg")), (40, 160, 60), seed=2)
    make_photo(Path(os.fsdecode(bytes(photos) + b"/Vipera \xe9/1.jpg")), (170, 50, 40), seed=3)
    store = Store(tmp_path / "store")
    assert main(["ingest", "--store", str(store.root), "--images", str(photos)]) == 0
    images = store.query("SELECT observation_id, status, error FROM images ORDER BY observation_id").set_index("observation_id")
    assert images["status"].to_dict() == {"Natrix natrix/latin1_\\xe9\\xfc.jpg": "error", "Natrix natrix/ok.jpg": "pending",
                                          "Vipera \\xe9/1.jpg": "error"}
    assert "its name is not valid UTF-8" in images.loc["Natrix natrix/latin1_\\xe9\\xfc.jpg", "error"]
    assert "folder Vipera \\xe9 is not valid UTF-8" in images.loc["Vipera \\xe9/1.jpg", "error"]
    assert list(store.species()["binomial_name"]) == ["Natrix natrix"]  # the unreadable folder names no species
    assert main(["ingest", "--store", str(store.root), "--images", str(photos)]) == 0  # again: nothing new
    assert len(store.query("SELECT * FROM images")) == 3


def test_the_same_photo_under_two_species_is_said_before_training(tmp_path, tiny_model_dir, caplog):
    """The build trained on both labels of one picture and said nothing; only `check` found it."""
    photos = tmp_path / "photos"
    make_photo(photos / "Natrix natrix" / "1.jpg", (40, 160, 60), seed=1)
    make_photo(photos / "Natrix natrix" / "2.jpg", (40, 160, 60), seed=2)
    make_photo(photos / "Vipera berus" / "3.jpg", (170, 50, 40), seed=3)
    (photos / "Vipera berus" / "copy.jpg").write_bytes((photos / "Natrix natrix" / "1.jpg").read_bytes())
    store = tmp_path / "store"
    assert main(["ingest", "--store", str(store), "--images", str(photos)]) == 0
    assert main(["embed", "--store", str(store), "--model", str(tiny_model_dir)]) == 0
    warned = [r.getMessage() for r in caplog.records if "same bytes" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith("2 photo(s) have the same bytes as a photo under another species")
    assert "copy.jpg" in warned[0] and "delete the wrong copy" in warned[0]


def test_a_folder_named_by_a_number_is_that_class_id(tmp_path, species_csv, caplog, capsys):
    """Without a table `1137/` became class 1 named "1137" and `405.0/` a species "405.0", silently; with one, a
    number the table lacks became a new class above it."""
    photos = tmp_path / "photos"
    for i, folder in enumerate(["1137", "0405", "405.0", "0", "Natrix natrix"]):
        make_photo(photos / folder / f"{i}.jpg", (40, 160, 60), seed=i)
    store = Store(tmp_path / "store")
    assert main(["ingest", "--store", str(store.root), "--images", str(photos)]) == 0
    species = store.species().set_index("class_id")
    assert species["binomial_name"].to_dict() == {0: "class 0", 1: "Natrix natrix", 405: "class 405", 1137: "class 1137"}
    assert set(species["venom_status"]) == {"unknown"}
    assert any("named by a number are taken as those class ids" in r.getMessage() for r in caplog.records)
    classes = store.query("SELECT observation_id, class_id FROM images").set_index("observation_id")["class_id"]
    assert classes.to_dict() == {"1137/0.jpg": 1137, "0405/1.jpg": 405, "405.0/2.jpg": 405, "0/3.jpg": 0,
                                 "Natrix natrix/4.jpg": 1}

    table = tmp_path / "table"
    make_photo(table / "1740.0" / "a.jpg", (170, 50, 40), seed=1)
    assert main(["ingest", "--store", str(tmp_path / "t"), "--images", str(table), "--species", str(species_csv)]) == 0
    assert Store(tmp_path / "t").query("SELECT class_id FROM images")["class_id"].tolist() == [1740]
    capsys.readouterr()
    errors = {}
    for folder in ("99999", "405.5"):
        make_photo(table / folder / "b.jpg", (170, 50, 40), seed=2)
        assert main(["ingest", "--store", str(tmp_path / folder), "--images", str(table), "--species", str(species_csv)]) == 2
        errors[folder] = capsys.readouterr().err
        assert errors[folder].startswith(f"error: Folder {folder} ") and errors[folder].count("\n") == 1
        assert not (tmp_path / folder).exists()  # refused before any work
        (table / folder / "b.jpg").unlink()
        (table / folder).rmdir()
    assert "names class id 99999, which the species table does not have" in errors["99999"]
    assert "is named by a number that is not a class id" in errors["405.5"]


def test_photos_gone_from_the_folder_and_a_renamed_folder_are_said(tmp_path, tiny_model_dir, caplog):
    """Deleted or moved photos kept their rows, vectors and labels with exit 0 and no word; a renamed species folder
    (`Natrix natrix` -> `Natrix_natrix`, the same species) was ingested again and split anew, so a test photo had a
    copy in training and check called the store ok."""
    photos = tmp_path / "photos"
    for i in range(6):
        make_photo(photos / "Natrix natrix" / f"{i}.jpg", (40, 160, 60), seed=i)
        make_photo(photos / "Vipera berus" / f"{i}.jpg", (170, 50, 40), seed=10 + i)
    store = tmp_path / "store"
    assert main(["ingest", "--store", str(store), "--images", str(photos)]) == 0
    assert main(["embed", "--store", str(store), "--model", str(tiny_model_dir)]) == 0
    assert not [r for r in caplog.records if "more than one split" in r.getMessage()]
    (photos / "Vipera berus" / "0.jpg").unlink()
    (photos / "Natrix natrix").rename(photos / "Natrix_natrix")
    caplog.clear()
    assert main(["ingest", "--store", str(store), "--images", str(photos)]) == 0
    gone = [r.getMessage() for r in caplog.records if "no longer there" in r.getMessage()]
    assert len(gone) == 1 and gone[0].startswith("ingest: 7 photo(s) that an earlier ingest took from this folder are no longer")
    assert "Vipera berus/0.jpg" in gone[0] or "Natrix natrix/" in gone[0]
    assert main(["embed", "--store", str(store), "--model", str(tiny_model_dir)]) == 0
    split = [r.getMessage() for r in caplog.records if "more than one split" in r.getMessage()]
    assert len(split) == 1 and "validation and test count photos the head has seen" in split[0]
