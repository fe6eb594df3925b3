"""Hostile and odd inputs at every entry point: build, identify, dashboard upload, score. A generated corpus
of files (no committed binaries): each bad one gets one sentence, the good ones go on, nothing crashes."""

import io
import json
import os
import struct
import tracemalloc
import zlib

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipelines.cli import main
from snakeweb.images import ImageReadError, decode_bytes
from snakeweb.store import Store
from tests.conftest import make_photo


def jpeg(size=(96, 72), colour=(40, 160, 60), **save) -> bytes:
    buffer = io.BytesIO()
    rng = np.random.default_rng(0)
    pixels = np.clip(np.asarray(colour) + rng.normal(0, 20, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90, **save)
    return buffer.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A valid-looking 1-row PNG whose header declares width x height: a decompression bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 10)) + chunk(b"IEND", b"")


def saved(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def corrupt_body() -> bytes:
    """Intact headers, scrambled entropy-coded data after the start-of-scan marker."""
    data = bytearray(jpeg())
    start = data.find(b"\xff\xda") + 40
    data[start:-10] = np.random.default_rng(1).integers(0, 255, len(data) - 10 - start, dtype=np.uint8).tobytes()
    return bytes(data)


def exif_rotated() -> bytes:
    """A 120 x 60 landscape JPEG whose EXIF says 'rotate 90° clockwise': upright it is 60 x 120."""
    image = Image.fromarray(np.tile(np.linspace(0, 255, 120, dtype=np.uint8), (60, 1))).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6
    return saved(image, "JPEG", exif=exif.tobytes())


GOOD = {  # usable, if odd: each must be embedded
    "plain.jpg": lambda: jpeg(),
    "cmyk.jpg": lambda: saved(Image.new("CMYK", (80, 60), (0, 128, 255, 10)), "JPEG"),
    "sixteen-bit.png": lambda: saved(Image.fromarray(np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 20), "PNG"),
    "greyscale.png": lambda: saved(Image.new("L", (70, 50), 128), "PNG"),
    "palette-transparent.png": lambda: saved(Image.new("P", (40, 40), 3), "PNG", transparency=3),
    "animated.gif": lambda: saved(Image.new("P", (40, 30), 1), "GIF", save_all=True,
                                  append_images=[Image.new("P", (40, 30), 2)], duration=100),
    "animated.webp": lambda: saved(Image.new("RGB", (40, 30), (200, 0, 0)), "WEBP", save_all=True,
                                   append_images=[Image.new("RGB", (40, 30), (0, 200, 0))], duration=100),
    "exif-rotated.jpg": exif_rotated,
    "one-pixel.png": lambda: saved(Image.new("RGB", (1, 1), (10, 200, 10)), "PNG"),
    "png-renamed.jpg": lambda: saved(Image.new("RGB", (50, 40), (1, 2, 3)), "PNG"),
    "jpeg-renamed.png": lambda: jpeg(),
    "spaces ünïcødé ..name.jpg": lambda: jpeg(colour=(90, 30, 30)),
    "large-legal.jpg": lambda: saved(Image.new("RGB", (12000, 9000), (30, 90, 30)), "JPEG", quality=50),
}
BAD = {  # each must be rejected with a reason containing the given words
    "zero-byte.jpg": (lambda: b"", "empty"),
    "truncated.jpg": (lambda: jpeg()[:300], "damaged or cut short"),
    "text.jpg": (lambda: b"just some notes about a snake\n", "not an image"),
    "page.png": (lambda: b"<!doctype html><html><body>hello</body></html>", "not an image"),
    "vector.jpg": (lambda: b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', "not an image"),
    "bomb.png": (lambda: png_declaring(50_000, 50_000), "declares"),
    "photo.heic": (lambda: b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64, "not an image"),
    "random.webp": (lambda: os.urandom(2048), "not an image"),
}


# Pillow decodes scrambled JPEG scan data without any error (libjpeg only warns), so this one may be
# embedded as the noise it decodes to; it must not crash, and if rejected it needs a reason.
ODD = {"corrupt-body.jpg": corrupt_body}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    photos = root / "photos" / "Natrix natrix"
    photos.mkdir(parents=True)
    for name, make in GOOD.items():
        (photos / name).write_bytes(make())
    for name, (make, _) in BAD.items():
        (photos / name).write_bytes(make())
    for name, make in ODD.items():
        (photos / name).write_bytes(make())
    (photos / "folder.jpg").mkdir()  # a directory named like an image
    os.mkfifo(photos / "named-pipe.jpg")  # not a regular file: reading it would wait for a writer forever
    outside = root / "outside.jpg"
    outside.write_bytes(jpeg())
    (photos / "link-outside.jpg").symlink_to(outside)  # a link leading out of the image root
    (photos / "broken-link.jpg").symlink_to(root / "nowhere.jpg")
    (photos / "self-loop.jpg").symlink_to(photos / "self-loop.jpg")  # links that lead round in a loop
    (photos / "loop-a.jpg").symlink_to(photos / "loop-b.jpg")
    (photos / "loop-b.jpg").symlink_to(photos / "loop-a.jpg")
    (photos / ".hidden.jpg").write_bytes(jpeg())  # hidden files: left out, and said so
    (photos / ".thumbs").mkdir()
    (photos / ".thumbs" / "a.jpg").write_bytes(jpeg())
    locked = photos / "no-permission.jpg"
    locked.write_bytes(jpeg())
    locked.chmod(0)  # unreadable for a normal user (root reads it anyway, so it may be accepted)
    for i in range(3):
        make_photo(root / "photos" / "Vipera berus" / f"{i}.jpg", (170, 50, 40), seed=i)
    return root


def test_corpus_has_at_least_25_cases():
    assert len(GOOD) + len(BAD) + len(ODD) + 5 >= 25


def test_build_records_every_bad_file_and_embeds_every_good_one(corpus, tmp_path, tiny_model_dir, capsys):
    store = Store(tmp_path / "store")
    code = main(["build", "--store", str(store.root), "--images", str(corpus / "photos"), "--model", str(tiny_model_dir),
                 "--skip-project", "--batch-size", "4"])
    out = capsys.readouterr()
    assert code == 0 and "Traceback" not in out.err + out.out
    assert "2 hidden file(s) left out" in out.out
    images = store.query("SELECT path, status, error, width, height FROM images")
    images["name"] = images["path"].str.rsplit("/", n=1).str[-1]
    images = images.set_index("name")
    for name in GOOD:
        assert images.loc[name, "status"] == "ok", (name, images.loc[name, "error"])
    for name, (_, words) in BAD.items():
        assert images.loc[name, "status"] == "error" and words in images.loc[name, "error"], (name, images.loc[name, "error"])
        assert images.loc[name, "error"].count(". ") == 0  # one sentence
    assert "directory" in images.loc["folder.jpg", "error"]
    assert "not a regular file" in images.loc["named-pipe.jpg", "error"]
    assert "outside the image folder" in images.loc["link-outside.jpg", "error"]
    assert "missing" in images.loc["broken-link.jpg", "error"] or "outside" in images.loc["broken-link.jpg", "error"]
    for name in ("self-loop.jpg", "loop-a.jpg", "loop-b.jpg"):
        assert images.loc[name, "status"] == "error" and "link loop" in images.loc[name, "error"], name
    assert not images.index.str.startswith(".").any() and "a.jpg" not in images.index
    for name in ["no-permission.jpg", *ODD]:
        assert images.loc[name, "status"] == "ok" or images.loc[name, "error"], name
    assert (images.loc["exif-rotated.jpg", "width"], images.loc["exif-rotated.jpg", "height"]) == (60, 120)
    assert (images.loc["large-legal.jpg", "width"], images.loc["large-legal.jpg", "height"]) == (12000, 9000)
    embedded = store.query("SELECT count(*) n FROM embeddings")["n"][0]
    assert embedded == (images["status"] == "ok").sum()


def test_exif_rotated_photo_is_turned_upright():
    decoded = decode_bytes(exif_rotated())
    assert decoded.image.size == (60, 120)
    column = np.asarray(decoded.image.convert("L"))[:, 30]
    # orientation 6 turns the stored left edge (dark) to the top: the gradient now runs dark to light downwards
    assert int(column[0]) < 10 and int(column[-1]) > 245


def test_decompression_bomb_never_allocates_its_declared_size():
    bomb = png_declaring(50_000, 50_000)  # 2.5 G pixels = 7.5 GB as RGB
    tracemalloc.start()
    with pytest.raises(ImageReadError, match="declares"):
        decode_bytes(bomb)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 20_000_000


def test_identify_cli_goes_on_with_good_files_and_fails_only_when_none_is_usable(corpus, tmp_path, tiny_model_dir, capsys):
    store = tmp_path / "store"
    assert main(["build", "--store", str(store), "--images", str(corpus / "photos"), "--model", str(tiny_model_dir), "--skip-project"]) == 0
    folder = corpus / "photos" / "Natrix natrix"
    files = [folder / n for n in [*BAD, "plain.jpg", "folder.jpg"]]
    capsys.readouterr()
    assert main(["identify", "--store", str(store), *map(str, files), "--each", "--json"]) == 0
    out = capsys.readouterr()
    lines = [json.loads(line) for line in out.out.splitlines()]
    assert len(lines) == len(files) and "Traceback" not in out.err
    assert sum("species" in line for line in lines) == 1
    assert all("could be read" in line["error"] for line in lines if "error" in line)
    assert main(["identify", "--store", str(store), *map(str, files[:3])]) == 2  # nothing usable: bad input
    err = capsys.readouterr().err
    assert "empty" in err and "Traceback" not in err
    assert main(["identify", "--store", str(store), str(folder / "plain.jpg"), str(folder / "text.jpg")]) == 0
    assert "skipped" in capsys.readouterr().out  # one observation: the bad photo is named and left out


def test_dashboard_upload_of_bad_files_warns_and_goes_on(corpus, tmp_path, tiny_model_dir, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from tests.conftest import REPO

    store = tmp_path / "store"
    assert main(["build", "--store", str(store), "--images", str(corpus / "photos"), "--model", str(tiny_model_dir), "--skip-project"]) == 0
    monkeypatch.setenv("SNAKEWEB_STORE", str(store))
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=900).run()
    folder = corpus / "photos" / "Natrix natrix"
    uploads = [(n, (folder / n).read_bytes(), "image/jpeg") for n in ["bomb.png", "truncated.jpg", "plain.jpg"]]
    app.file_uploader[0].set_value(uploads).run()
    assert not app.exception
    warnings = " ".join(w.value for w in app.warning)
    assert "Photo 1 (bomb.png) was skipped" in warnings and "Photo 2 (truncated.jpg) was skipped" in warnings
    assert app.table[0].value.index[0] in {"Natrix natrix", "Vipera berus"}


@pytest.mark.parametrize("rows, words", [
    ("observation_id,class_id\n1,2\n", "has no image_path (or path"),
    ("", "The metadata"),
    ("observation_id,image_path\n", "has a header but no rows"),
])
def test_bad_metadata_is_a_sentence(tmp_path, rows, words, capsys):
    metadata = tmp_path / "meta.csv"
    metadata.write_text(rows)
    assert main(["ingest", "--store", str(tmp_path / "s"), "--metadata", str(metadata), "--image-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err


def test_metadata_with_bad_ids_duplicates_and_escaping_paths(tmp_path, caplog, capsys):
    root = tmp_path / "images"
    make_photo(root / "a.jpg", (1, 2, 3), seed=1)
    make_photo(tmp_path / "secret.jpg", (1, 2, 3), seed=2)
    metadata = tmp_path / "meta.csv"
    pd.DataFrame({
        "observation_id": ["1", "1", "3", "4"],
        "image_path": ["a.jpg", "a.jpg", "../secret.jpg", "/etc/passwd"],
        "class_id": [5, 5, "", 6],
        "binomial_name": ["Natrix natrix", "Natrix natrix", "", "Vipera berus"],
    }).to_csv(metadata, index=False)
    store = Store(tmp_path / "store")
    assert main(["ingest", "--store", str(store.root), "--metadata", str(metadata), "--image-root", str(root)]) == 0
    images = store.query("SELECT path, class_id, status, error FROM images ORDER BY image_id")
    assert len(images) == 3  # the repeated row is kept once
    assert "repeat an earlier row of the same photo" in caplog.text
    escaped = images[images["status"] == "error"]
    assert len(escaped) == 2 and escaped["error"].str.contains("outside the image root").all()
    assert images["class_id"].isna().sum() == 1  # an empty class id is an unlabelled photo
    # a class id that is not a whole number is refused, never read as unlabelled or cast
    metadata.write_text(metadata.read_text().replace(",,", ",cobra,Naja naja", 1))
    assert main(["ingest", "--store", str(tmp_path / "other"), "--metadata", str(metadata), "--image-root", str(root)]) == 2
    assert "line 4: 'cobra'" in capsys.readouterr().err


def test_score_with_a_binary_file_is_a_sentence(tmp_path, capsys):
    truth = tmp_path / "gt.csv"
    truth.write_text("observation_id,class_id\n1,2\n")
    garbage = tmp_path / "sub.csv"
    garbage.write_bytes(os.urandom(4096))
    venomous = tmp_path / "v.csv"
    venomous.write_text("class_id,MIVS\n2,1\n")
    assert main(["score", "--metadata", str(truth), "--predictions", str(garbage), "--venomous", str(venomous)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("error: ")


def test_reembed_never_reads_files_rejected_at_ingest(corpus, tmp_path, tiny_model_dir):
    store = Store(tmp_path / "store")
    args = ["build", "--store", str(store.root), "--images", str(corpus / "photos"), "--model", str(tiny_model_dir), "--skip-project"]
    assert main(args) == 0
    assert main(["embed", "--store", str(store.root), "--model", str(tiny_model_dir), "--reembed"]) == 0
    link = store.query("SELECT status, error FROM images WHERE path LIKE '%link-outside.jpg'").iloc[0]
    assert link["status"] == "error" and "outside the image folder" in link["error"]
    assert store.query("SELECT count(*) n FROM images WHERE status = 'pending'")["n"][0] == 0


@pytest.mark.parametrize("second", [{"observation_id": "2"}, {"observation_id": "2", "class_id": 6, "binomial_name": "Vipera berus"}])
@pytest.mark.parametrize("files", [1, 2])
def test_one_photo_listed_under_two_observations_is_refused(tmp_path, capsys, second, files):
    # the first row was kept: the second observation (its only photo) vanished, or the photo's other label, exit 0
    root = tmp_path / "images"
    make_photo(root / "a.jpg", (1, 2, 3), seed=1)
    make_photo(root / "b.jpg", (1, 2, 3), seed=2)
    first = {"observation_id": "1", "image_path": "a.jpg", "class_id": 5, "binomial_name": "Natrix natrix"}
    other = {"observation_id": "3", "image_path": "b.jpg", "class_id": 5, "binomial_name": "Natrix natrix"}
    rows = [first, other, {**first, **second, "image_path": "./sub/../a.jpg"}]
    tables = [rows] if files == 1 else [rows[:2], rows[2:]]
    paths = []
    for n, table in enumerate(tables):
        paths.append(tmp_path / f"meta{n}.csv")
        pd.DataFrame(table).to_csv(paths[-1], index=False)
    (root / "sub").mkdir()
    store = Store(tmp_path / "store")
    code = main(["ingest", "--store", str(store.root), "--metadata", *map(str, paths), "--image-root", str(root)])
    err = capsys.readouterr().err
    assert code == 2 and "1 photo(s) are listed in the metadata under more than one observation" in err, err
    assert "a.jpg: observations 1 and 2" in err and not store.exists()
