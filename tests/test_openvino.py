"""OpenVINO on the CPU: the same vectors as torch (cosine >= 0.9999 per photo, same top-1 from a head) on real
photos, a conversion cache that is reused, re-made for another OpenVINO and never left half-written, the engine
recorded in the store beside an unchanged fingerprint, and torch when OpenVINO is missing."""

from __future__ import annotations

import json
import logging
import sys

import numpy as np
import pytest

from snakeweb.openvino_backend import import_openvino, openvino_version
from tests.conftest import shared

if openvino_version() is None:
    pytest.skip("OpenVINO is not installed (pip install openvino==2026.4.1)", allow_module_level=True)
openvino = import_openvino()

SPECIES = 6  # species of HackerEarth-35
PER_SPECIES = 6  # photos each: half fit the head, half are the held-out photos compared


def hackerearth_photos() -> tuple[list, np.ndarray]:
    root = shared("hackerearth-35")
    folders = sorted(d for d in root.iterdir() if d.is_dir())[:SPECIES]
    paths, labels = [], []
    for label, folder in enumerate(folders):
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})[:PER_SPECIES]
        paths += files
        labels += [label] * len(files)
    return paths, np.asarray(labels)


def embed_with(engine: str, model: str, paths, monkeypatch) -> np.ndarray:
    from snakeweb.embed import embed_images
    from snakeweb.models import load_backbone, resolve_model

    monkeypatch.setenv("SNAKEWEB_ENGINE", engine)
    backbone = load_backbone(resolve_model(model))
    assert backbone.engine == ("torch" if engine == "torch" else "openvino")
    kind = backbone.config.feature_kinds[0]
    vectors = [v for batch in embed_images(backbone, [(i, p) for i, p in enumerate(paths)], kind) for v in batch.vectors]
    assert all(v is not None for v in vectors)
    return np.stack(vectors).astype(np.float64)


@pytest.mark.integration
@pytest.mark.parametrize("model", [
    "efficientnet-lite0-offline",
    "concat:efficientnet-lite0-offline+efficientnet-lite1-offline+efficientnet-lite2-offline",  # the offline default
    "dinov2-small-offline",
])
def test_openvino_features_match_torch_on_real_photos(model, monkeypatch):
    from sklearn.linear_model import LogisticRegression

    paths, labels = hackerearth_photos()
    reference = embed_with("torch", model, paths, monkeypatch)
    converted = embed_with("openvino", model, paths, monkeypatch)
    cosine = np.sum(reference * converted, axis=1) / (np.linalg.norm(reference, axis=1) * np.linalg.norm(converted, axis=1))
    assert cosine.min() >= 0.9999, f"lowest cosine {cosine.min():.6f} ({paths[int(cosine.argmin())].name})"
    # a head fitted on the torch features of half the photos answers the other half alike from either engine
    fit = np.arange(len(paths)) % PER_SPECIES < PER_SPECIES // 2
    head = LogisticRegression(max_iter=2000).fit(reference[fit], labels[fit])
    assert (head.predict(converted[~fit]) == head.predict(reference[~fit])).all()
    assert np.abs(head.predict_proba(converted[~fit]) - head.predict_proba(reference[~fit])).max() < 1e-3


@pytest.fixture()
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SNAKEWEB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SNAKEWEB_ENGINE", raising=False)
    return tmp_path / "cache" / "openvino"


def test_conversion_is_cached_reused_and_remade_for_another_openvino(tiny_model_dir, own_cache, monkeypatch):
    import torch

    from snakeweb import openvino_backend, openvino_convert
    from snakeweb.models import load_backbone, resolve_model

    config = resolve_model(str(tiny_model_dir))
    first = load_backbone(config)
    assert first.engine == "openvino" and first.details["engine"].startswith("openvino ")
    folders = [f for f in own_cache.iterdir() if not f.name.startswith(".")]
    assert len(folders) == 1 and openvino_backend.is_converted(folders[0])
    recorded = json.loads((folders[0] / "conversion.json").read_text())
    assert recorded["fingerprint"] == first.fingerprint and recorded["outputs"] == ["cls", "mean"]
    assert not [f for f in own_cache.iterdir() if f.name.startswith(".convert-")]  # the staging folder is gone

    # a second load reuses the folder: converting again would fail here
    def no_conversion(*args, **kwargs):
        raise AssertionError("converted again although the cache holds this model")

    with monkeypatch.context() as patched:
        patched.setattr(openvino, "convert_model", no_conversion)
        second = load_backbone(config)
    assert second.openvino.folder == folders[0]
    pixels = torch.randn(3, 3, 224, 224)
    with torch.inference_mode():
        for kind in ("cls", "cls+mean"):
            assert np.allclose(first.features(pixels, kind).numpy(), second.features(pixels, kind).numpy(), atol=1e-5)
    # the compiled blob is cached too (OpenVINO's CACHE_DIR), so a fresh process imports it
    assert any((folders[0] / "compiled").iterdir())

    # another OpenVINO version: another folder, converted anew
    real_version = openvino_backend.openvino_version()
    # the converter names its folders by version (snakeweb.openvino_convert)
    monkeypatch.setattr(openvino_convert, "openvino_version", lambda: real_version.replace(real_version.split("-")[0], "2099.1.0"))
    third = load_backbone(config)
    assert third.openvino.folder != folders[0] and third.openvino.folder.name.endswith("-ov2099.1.0")
    assert openvino_backend.is_converted(third.openvino.folder)
    assert third.fingerprint == first.fingerprint  # the model's fingerprint never depends on the engine


def test_a_killed_or_damaged_conversion_is_never_used_and_is_made_again(tiny_model_dir, own_cache):
    import torch

    from snakeweb import openvino_backend
    from snakeweb.models import load_backbone, resolve_model

    config = resolve_model(str(tiny_model_dir))
    folder = load_backbone(config).openvino.folder
    # what a conversion killed before its rename leaves: a staging folder with part of a model, beside the target
    staging = own_cache / ".convert-killed"
    staging.mkdir()
    (staging / "model.xml").write_text("<net")
    assert not openvino_backend.is_converted(staging)
    # a target folder missing its weights (cut short by hand or a full disk) is not taken as converted: made again
    (folder / "model.bin").unlink()
    assert not openvino_backend.is_converted(folder)
    again = load_backbone(config)
    assert again.engine == "openvino" and again.openvino.folder == folder and openvino_backend.is_converted(folder)
    with torch.inference_mode():
        assert torch.isfinite(again.features(torch.randn(1, 3, 224, 224), "cls")).all()


def test_store_records_the_engine_and_the_same_fingerprint_as_torch(tmp_path, tiny_model_dir, photo_folder, species_csv, own_cache,
                                                                      monkeypatch):
    from snakeweb.store import Store
    from tests.conftest import build_photo_store

    ov_store = Store(build_photo_store(tmp_path / "ov", tiny_model_dir, photo_folder, species_csv))
    monkeypatch.setenv("SNAKEWEB_ENGINE", "torch")
    torch_store = Store(build_photo_store(tmp_path / "torch", tiny_model_dir, photo_folder, species_csv))
    ov_model, torch_model = ov_store.get_meta("model"), torch_store.get_meta("model")
    assert ov_model["engine"].startswith("openvino ") and torch_model["engine"] == "torch"
    assert ov_model["fingerprint"] == torch_model["fingerprint"]
    ids, ov_vectors = ov_store.embeddings()
    torch_ids, torch_vectors = torch_store.embeddings()
    assert (ids == torch_ids).all()
    cosine = np.sum(ov_vectors * torch_vectors, axis=1) / np.linalg.norm(ov_vectors, axis=1) / np.linalg.norm(torch_vectors, axis=1)
    assert cosine.min() >= 0.9999


def test_identify_compiles_for_latency_and_embed_for_throughput(tiny_model_dir, own_cache):
    from snakeweb.models import load_backbone, resolve_model
    from snakeweb.openvino_backend import PERFORMANCE_HINTS

    backbone = load_backbone(resolve_model(str(tiny_model_dir)))
    assert backbone.openvino.config()["PERFORMANCE_HINT"] == PERFORMANCE_HINTS["embed"] == "THROUGHPUT"
    backbone.set_purpose("identify")
    compiled = backbone.openvino.compiled()
    assert str(compiled.get_property("PERFORMANCE_HINT")) in ("LATENCY", "PerformanceMode.LATENCY")
    assert str(compiled.get_property("INFERENCE_PRECISION_HINT")) in ("f32", "<Type: 'float32'>")


def test_without_openvino_torch_runs_and_says_so(tiny_model_dir, own_cache, monkeypatch, caplog):
    import torch

    from snakeweb import engines
    from snakeweb.errors import SnakewebError
    from snakeweb.models import load_backbone, resolve_model

    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` now raises ImportError, as when not installed
    monkeypatch.setattr(engines, "_SAID_NO_OPENVINO", [])
    with caplog.at_level(logging.WARNING, logger="snakeweb.engines"):
        backbone = load_backbone(resolve_model(str(tiny_model_dir)))
    assert backbone.engine == "torch" and backbone.details["engine"] == "torch"
    assert "OpenVINO is not installed" in caplog.text
    with torch.inference_mode():
        assert backbone.features(torch.randn(2, 3, 224, 224), "cls").shape == (2, 48)
    monkeypatch.setenv("SNAKEWEB_ENGINE", "openvino")
    with pytest.raises(SnakewebError, match="pip install openvino"):
        load_backbone(resolve_model(str(tiny_model_dir)))
    monkeypatch.setenv("SNAKEWEB_ENGINE", "fast")
    with pytest.raises(SnakewebError, match="SNAKEWEB_ENGINE='fast' is not an engine"):
        load_backbone(resolve_model(str(tiny_model_dir)))


def test_openvino_threads_follow_the_cores_granted(tiny_model_dir, own_cache, monkeypatch):
    from snakeweb.models import load_backbone, resolve_model

    monkeypatch.setenv("SNAKEWEB_THREADS", "1")
    backbone = load_backbone(resolve_model(str(tiny_model_dir)))
    compiled = backbone.openvino.compiled()
    assert int(compiled.get_property("INFERENCE_NUM_THREADS")) == 1


def test_the_loading_message_says_whether_a_conversion_comes_first(tiny_model_dir, own_cache, monkeypatch):
    from snakeweb.models import AUTO_OFFLINE_MODEL, load_backbone, resolve_model
    from snakeweb.openvino_backend import load_message

    config = resolve_model(str(tiny_model_dir))
    assert "first time on this machine: converting 1 network(s) for OpenVINO, ~4 s" in load_message(config)
    # ~12 s for the default's three (1.4-1.6 s each measured with OpenVINO 2026.4; it said ~60 s)
    assert "converting 3 network(s) for OpenVINO, ~12 s" in load_message(resolve_model(AUTO_OFFLINE_MODEL))
    load_backbone(config)
    assert load_message(config) == "Loading the model (OpenVINO, converted before: a few seconds)…"
    monkeypatch.setenv("SNAKEWEB_ENGINE", "torch")
    assert load_message(config).startswith("Loading the model with torch")


def test_check_names_torch_when_openvino_is_listed_but_does_not_import(tiny_model_dir, photo_folder, species_csv, tmp_path,
                                                                         own_cache, monkeypatch):
    from snakeweb.integrity import check_store
    from snakeweb.store import Store
    from tests.conftest import build_photo_store

    store = Store(build_photo_store(tmp_path / "store", tiny_model_dir, photo_folder, species_csv, "--skip-project"))
    engine = next(v for v in check_store(store) if v.name == "engine")
    assert engine.ok and engine.detail.startswith("openvino ")
    # the package stays installed (its metadata is there) but its import fails, as with a broken install: identify
    # falls back to torch, and check must say so rather than read the version from the metadata
    monkeypatch.setitem(sys.modules, "openvino", None)
    engine = next(v for v in check_store(store) if v.name == "engine")
    assert engine.ok and engine.detail.startswith("torch on the CPU: OpenVINO is not installed"), engine.detail
    # a broken install raises OSError (a shared library that does not load) or its own errors, not ImportError:
    # check and identify still go on, with torch
    from snakeweb import engines
    from snakeweb.models import load_backbone, resolve_model

    monkeypatch.delitem(sys.modules, "openvino")
    for error, said in (("OSError('libopenvino.so: undefined symbol: foo')", "OSError: libopenvino.so: undefined symbol: foo"),
                        ("RuntimeError('bad build')", "RuntimeError: bad build"), ("SystemExit", "SystemExit")):
        fake = tmp_path / f"broken-{error.split('(')[0]}"
        (fake / "openvino").mkdir(parents=True)
        (fake / "openvino" / "__init__.py").write_text(f"raise {error}\n")
        monkeypatch.syspath_prepend(str(fake))
        engine = next(v for v in check_store(store) if v.name == "engine")
        said = f"is installed but does not import ({said})"
        assert engine.ok and said in engine.detail, engine.detail
        monkeypatch.setattr(engines, "_SAID_NO_OPENVINO", [])
        assert load_backbone(resolve_model(str(tiny_model_dir))).engine == "torch"
        sys.path.remove(str(fake))
