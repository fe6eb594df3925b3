"""Shared fixtures: a tiny randomly initialised DINOv2 (fast unit tests), synthetic photo folders, and the
real data in ../shared/data (integration tests)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SNAKEWEB_SHARED_DATA", REPO.parent / "shared" / "data"))

# class ids far apart and out of order on purpose: heads must never mix them up with head indices
SYNTHETIC_SPECIES = {"Natrix natrix": 1130, "Vipera berus": 1740, "Zamenis longissimus": 7}
SYNTHETIC_COLOURS = {"Natrix natrix": (40, 160, 60), "Vipera berus": (170, 50, 40), "Zamenis longissimus": (50, 60, 170)}
# the browser tests' skip reason; pytest_terminal_summary repeats it beside the final count so it is not missed
NO_CHROMIUM = "Debian chromium is not installed; `apt-get install chromium` (what .ci/run does)"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")  # the browser the browser tests drive


def pytest_terminal_summary(terminalreporter) -> None:
    """Say at the end, not only in -rs, when the browser tests were skipped for want of chromium."""
    skipped = [report for report in terminalreporter.stats.get("skipped", [])
               if isinstance(report.longrepr, tuple) and NO_CHROMIUM in str(report.longrepr[-1])]
    if skipped:
        terminalreporter.write_line(f"browser tests skipped ({len(skipped)}): {NO_CHROMIUM}", yellow=True, bold=True)


def build_photo_store(root: Path, model_dir: Path, photos: Path, species_csv: Path, *extra: str) -> Path:
    """`python -m pipelines build` of the synthetic photo folder with the tiny model; asserts it succeeded."""
    from pipelines.cli import main

    assert main(["build", "--store", str(root), "--images", str(photos), "--species", str(species_csv),
                 "--model", str(model_dir), *extra]) == 0
    return root


def shared(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not found at {path}")
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer DINOv2 with random weights, saved as a local transformers folder."""
    import torch
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-dinov2")
    config = Dinov2Config(hidden_size=48, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2, image_size=224, patch_size=14)
    Dinov2Model(config).save_pretrained(folder)
    return folder


def make_photo(path: Path, colour: tuple[int, int, int], seed: int, size: tuple[int, int] = (96, 72)) -> None:
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.asarray(colour) + rng.normal(0, 25, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=90)


@pytest.fixture(scope="module")
def species_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("species") / "species.csv"
    rows = ["class_id,binomial_name,MIVS"] + [f"{i},{n},{int(n == 'Vipera berus')}" for n, i in SYNTHETIC_SPECIES.items()]
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory) -> Path:
    """8 photos per species, folder names with '_' as users write them, plus two files that are not images."""
    root = tmp_path_factory.mktemp("photos")
    for name, colour in SYNTHETIC_COLOURS.items():
        for i in range(8):
            make_photo(root / name.replace(" ", "_") / f"{i:02d}.jpg", colour, seed=hash((name, i)) % 2**32)
    (root / "Natrix_natrix" / "empty.jpg").write_bytes(b"")
    (root / "Vipera_berus" / "notes.jpg").write_text("not a photo")
    return root


@pytest.fixture(scope="session")
def imagenet_store(tmp_path_factory) -> Path:
    """A store of the 17 real ImageNet snake photos (one folder per taxon) built with the offline weights."""
    import shutil

    import pandas as pd

    from pipelines.cli import main

    source = shared("images", "imagenet-snakes")
    root = tmp_path_factory.mktemp("imagenet-snakes")
    for row in pd.read_csv(source / "mapping.csv").itertuples():
        folder = root / "photos" / row.wordnet_taxon.split(" (")[0]
        folder.mkdir(parents=True)
        shutil.copy(source / row.file, folder / row.file)
    store = root / "store"
    assert main(["build", "--store", str(store), "--images", str(root / "photos"), "--model", "dinov2-small-offline",
                 "--species", str(shared("snakeclef", "class_list.csv")),
                 "--country-table", str(shared("snakeclef", "Species_Relevance.csv"))]) == 0
    return store
