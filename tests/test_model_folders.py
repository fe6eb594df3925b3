"""A `--model` folder that cannot be loaded is refused with one sentence (what is wrong, what to give instead) and
exit 2, before any store is made or changed; what only loading shows is said as a sentence too, and a build that
made the store leaves none behind. The folders are real: the tiny DINOv2 of conftest, copied and broken."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.cli import main
from snakeweb.models import ModelFolderError, check_model_folder, load_backbone, resolve_model
from snakeweb.store import Store
from tests.conftest import REPO, build_photo_store, make_photo
from tests.test_cli_imports import imported, probe

ADVICE = "give a folder written by transformers' save_pretrained of a DINOv2 model"


def broken(tmp_path: Path, tiny_model_dir: Path, name: str, config: object | None = None, drop: str | None = None) -> Path:
    """A copy of the tiny model with its config.json replaced (text as given, anything else as JSON) or a file removed."""
    folder = tmp_path / name
    shutil.copytree(tiny_model_dir, folder)
    if config is not None:
        (folder / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    if drop:
        (folder / drop).unlink()
    return folder


def tiny_config(tiny_model_dir: Path) -> dict:
    return json.loads((tiny_model_dir / "config.json").read_text())


@pytest.fixture(scope="module")
def cheap_cases(tmp_path_factory, tiny_model_dir) -> dict[str, tuple[Path, str]]:
    """Folders the cheap check refuses, each with the words of its reason."""
    root = tmp_path_factory.mktemp("bad-models")
    config = tiny_config(tiny_model_dir)
    return {
        "unknown model_type": (broken(root, tiny_model_dir, "unknown-type", {**config, "model_type": "dinov9"}),
                               "names model_type 'dinov9', and snakeweb reads DINOv2 models only"),
        "not JSON": (broken(root, tiny_model_dir, "not-json", "model_type = dinov2\n"), "its config.json is not JSON"),
        "a JSON list": (broken(root, tiny_model_dir, "json-list", [config]), "holds a JSON list, not an object"),
        "no model_type": (broken(root, tiny_model_dir, "no-type", {k: v for k, v in config.items() if k != "model_type"}),
                          "its config.json has no model_type"),
        "no config.json": (broken(root, tiny_model_dir, "no-config", drop="config.json"), "it has no config.json"),
        "no weights": (broken(root, tiny_model_dir, "no-weights", drop="model.safetensors"), "it holds no weights"),
        # a ViT (or any other model) loads, then fails on the input size or reads the tokens otherwise
        "another architecture": (broken(root, tiny_model_dir, "vit", {**config, "model_type": "vit"}),
                                 "names model_type 'vit', and snakeweb reads DINOv2 models only"),
        "weights cut short": (cut_short(broken(root, tiny_model_dir, "cut")), "cut short or damaged"),
        "not safetensors": (garbage(broken(root, tiny_model_dir, "garbage")), "is not a safetensors file"),
    }


def cut_short(folder: Path) -> Path:
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return folder


def garbage(folder: Path) -> Path:
    (folder / "model.safetensors").write_bytes(b"not a safetensors file" * 8)
    return folder


def test_each_kind_of_bad_folder_is_one_sentence_naming_the_folder_and_what_to_give(cheap_cases):
    for folder, words in cheap_cases.values():
        with pytest.raises(ModelFolderError) as caught:
            resolve_model(str(folder))
        message = str(caught.value)
        assert message.startswith(f"The model folder {folder} cannot be used: ") and words in message and ADVICE in message
        assert message.count(". ") == 0 and message.endswith(".")  # one sentence


def test_bad_folders_are_refused_by_every_model_command_before_torch_and_before_any_store(cheap_cases, tmp_path,
                                                                                            photo_folder, tiny_model_dir):
    existing = tmp_path / "existing"
    assert main(["ingest", "--store", str(existing), "--images", str(photo_folder)]) == 0
    before = Store(existing).query("SELECT count(*) AS n FROM images")["n"][0], (existing / "snakeweb.duckdb").stat().st_mtime_ns
    runs = []
    for folder, _ in cheap_cases.values():
        runs += [["build", "--store", str(tmp_path / "new"), "--images", str(photo_folder), "--model", str(folder)],
                 ["build", "--store", str(existing), "--images", str(photo_folder), "--model", str(folder)],
                 ["embed", "--store", str(existing), "--model", str(folder)],
                 ["embed", "--store", str(existing), "--model", f"concat:efficientnet-lite0-offline+{folder}"],
                 ["import-embeddings", "--store", str(tmp_path / "new"), "--parquet", str(tmp_path / "none.parquet"),
                  "--model", str(folder)]]
    # features the model does not give (pooled CNN features of a ViT): said before the build ingests anything
    runs += [["build", "--store", str(tmp_path / "new"), "--images", str(photo_folder), "--model", str(tiny_model_dir),
              "--features", "pool"],
             ["embed", "--store", str(existing), "--model", "efficientnet-lite0-offline", "--features", "cls"]]
    report = probe(runs, tmp_path)
    assert report["codes"] == [2] * len(runs)
    assert imported(report, ("torch",)) == []  # said from config.json and a listing alone
    assert not (tmp_path / "new").exists()
    assert (existing / "snakeweb.duckdb").stat().st_mtime_ns == before[1]
    assert Store(existing).get_meta("model") is None and Store(existing).query("SELECT count(*) AS n FROM images")["n"][0] == before[0]


def test_a_good_model_folder_passes_the_cheap_check(tiny_model_dir):
    check_model_folder(tiny_model_dir)
    assert resolve_model(str(tiny_model_dir)).source == "local"


@pytest.mark.parametrize("kind", ["weights of another size", "a field of the wrong type", "tensors missing"])
def test_what_only_loading_shows_is_a_sentence_too(tmp_path, tiny_model_dir, kind):
    config = tiny_config(tiny_model_dir)
    folder = {
        "weights of another size": lambda: broken(tmp_path, tiny_model_dir, "bigger", {**config, "hidden_size": 96}),
        "a field of the wrong type": lambda: broken(tmp_path, tiny_model_dir, "typed", {**config, "num_hidden_layers": "two"}),
        # more layers than the weights hold: loads without an error, the extra layers at random values
        "tensors missing": lambda: broken(tmp_path, tiny_model_dir, "deeper", {**config, "num_hidden_layers": 3}),
    }[kind]()
    config_of_folder = resolve_model(str(folder))  # the cheap check cannot tell
    with pytest.raises(ModelFolderError) as caught:
        load_backbone(config_of_folder)
    assert str(caught.value).startswith(f"The model folder {folder} cannot be used: ") and ADVICE in str(caught.value)


def test_a_build_whose_model_fails_to_load_leaves_no_store_or_says_how_to_go_on(tmp_path, tiny_model_dir, photo_folder,
                                                                               species_csv, capsys):
    bigger = broken(tmp_path, tiny_model_dir, "bigger", {**tiny_config(tiny_model_dir), "hidden_size": 96})
    new = tmp_path / "new"
    assert main(["build", "--store", str(new), "--images", str(photo_folder), "--model", str(bigger)]) == 2
    err = capsys.readouterr().err
    assert f"error: The model folder {bigger} cannot be used: transformers could not load it" in err and "Traceback" not in err
    assert not new.exists()  # refused before ingest: no store made

    # an older store: the folder is loaded before ingest, so no photo is added (nor removed with --remove-gone)
    older, photos = tmp_path / "older", tmp_path / "photos"
    shutil.copytree(photo_folder, photos)
    assert main(["ingest", "--store", str(older), "--images", str(photos), "--species", str(species_csv)]) == 0
    count = Store(older).query("SELECT count(*) AS n FROM images")["n"][0]
    make_photo(photos / "Natrix_natrix" / "added.jpg", (10, 200, 10), seed=7)
    next(p for p in sorted(photos.rglob("*.jpg")) if p.name != "added.jpg").unlink()
    assert main(["build", "--store", str(older), "--images", str(photos), "--model", str(bigger), "--remove-gone"]) == 2
    err = capsys.readouterr().err
    assert f"error: The model folder {bigger} cannot be used" in err and "ingest:" not in err
    assert Store(older).query("SELECT count(*) AS n FROM images")["n"][0] == count
    assert Store(older).get_meta("model") is None
    assert main(["embed", "--store", str(older), "--model", str(bigger)]) == 2  # embed alone: nothing written
    assert Store(older).get_meta("model") is None and "cannot be used" in capsys.readouterr().err


def test_identify_on_a_store_whose_model_folder_broke_says_restore_or_reembed(tmp_path, tiny_model_dir, photo_folder,
                                                                              species_csv, capsys):
    model = broken(tmp_path, tiny_model_dir, "model")
    store = build_photo_store(tmp_path / "store", model, photo_folder, species_csv, "--skip-project")
    photo = next(photo_folder.glob("Natrix_natrix/0*.jpg"))
    (model / "config.json").write_text("{")
    capsys.readouterr()
    assert main(["identify", "--store", str(store), str(photo)]) == 2
    err = capsys.readouterr().err
    assert f"was embedded with the model folder {model}, which cannot be loaded now: its config.json is not JSON" in err
    assert "restore that folder, or re-embed the store" in err and "Traceback" not in err
    shutil.rmtree(model)
    assert main(["identify", "--store", str(store), str(photo)]) == 2
    assert "it is not there (moved or deleted)" in capsys.readouterr().err


def test_a_damaged_cached_hub_download_is_a_sentence(tiny_model_dir, tmp_path):
    """A hub model's cached download cut short (a full disk, a killed download): what transformers raises for it is
    not an OSError, and it was a traceback. Now a sentence naming the cache folder to delete."""
    snapshot = tmp_path / "hf" / "hub" / "models--facebook--dinov2-small" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    shutil.copy(tiny_model_dir / "config.json", snapshot / "config.json")
    weights = (tiny_model_dir / "model.safetensors").read_bytes()
    (snapshot / "model.safetensors").write_bytes(weights[: len(weights) // 3])  # cut short
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0" * 40)
    # in a fresh process: huggingface_hub reads HF_HUB_OFFLINE when it is imported
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "SNAKEWEB_ENGINE": "torch"}
    script = ("from snakeweb.errors import SnakewebError\nfrom snakeweb.models import load_backbone, resolve_model\n"
              "try:\n    load_backbone(resolve_model('dinov2-small'))\nexcept SnakewebError as exc:\n    print(exc)\n")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "cached download of facebook/dinov2-small cannot be loaded" in done.stdout, done.stdout
    assert "models--facebook--dinov2-small" in done.stdout


def test_a_concat_store_checks_its_model_folders_and_says_restore_or_reembed_when_one_is_gone(
        tmp_path, tiny_model_dir, photo_folder, species_csv, capsys):
    """A local folder part of a concat: is checked by `check` as a single folder is (its files' sha256), and when it
    is moved away check, identify and build say so (not "Unknown model"), identify with the restore-or-re-embed advice."""
    import torch
    from transformers import Dinov2Config, Dinov2Model

    first = broken(tmp_path, tiny_model_dir, "first")
    second = tmp_path / "second"  # another model: the same shape, other weights
    torch.manual_seed(1)
    Dinov2Model(Dinov2Config(**{k: v for k, v in tiny_config(tiny_model_dir).items() if k != "architectures"})).save_pretrained(second)
    store = tmp_path / "store"
    assert main(["build", "--store", str(store), "--images", str(photo_folder), "--species", str(species_csv),
                 "--model", f"concat:{first}+{second}", "--skip-project"]) == 0
    capsys.readouterr()
    assert main(["check", "--store", str(store)]) == 0
    assert "folder sha256 match" in capsys.readouterr().out

    config = (second / "config.json").read_text()
    (second / "config.json").write_text(json.dumps({**json.loads(config), "note": "changed"}))
    assert main(["check", "--store", str(store)]) == 1
    assert "FAIL  model: concat(" in (out := capsys.readouterr().out) and f"model folder {second}: folder sha256 has CHANGED" in out
    (second / "config.json").write_text(config)

    shutil.move(second, tmp_path / "moved")
    assert main(["check", "--store", str(store)]) == 1
    out = capsys.readouterr().out
    assert f"the model folder {second} is gone (moved or deleted)" in out and "Unknown model" not in out
    photo = next(photo_folder.glob("Natrix_natrix/0*.jpg"))
    assert main(["identify", "--store", str(store), str(photo)]) == 2
    err = capsys.readouterr().err
    assert f"was embedded with the model folder {second}, which cannot be loaded now: it is not there (moved or deleted)" in err
    assert "restore that folder, or re-embed the store" in err and "Unknown model" not in err
    assert main(["build", "--store", str(store), "--images", str(photo_folder), "--skip-project"]) == 2
    err = capsys.readouterr().err
    assert "it is not there (moved or deleted)" in err and "Unknown model" not in err and "Traceback" not in err
