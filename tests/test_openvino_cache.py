"""A damaged OpenVINO cache is repaired, not a traceback at every load (a tester truncated model.bin / model.xml
and garbled the compiled blobs; two processes compiled at once), and never used when overwritten in place: a
tester overwrote the middle quarter of model.bin, then of a compiled blob, with random bytes of the same size,
and identify answered from the garbled weights (score 0.953 -> 0.922 / 0.893, exit 0) while `check` said cached."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("openvino", reason="the OpenVINO engine is not installed")


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SNAKEWEB_CACHE", str(tmp_path))
    monkeypatch.delenv("SNAKEWEB_ENGINE", raising=False)
    return tmp_path


def _garble_middle_quarter(path):
    """Overwrite the middle quarter of a file with random bytes, keeping its size (as the tester did)."""
    size = path.stat().st_size
    path.chmod(0o644)  # OpenVINO writes its blobs read-only
    with open(path, "r+b") as handle:
        handle.seek(size * 3 // 8)
        handle.write(np.random.default_rng(0).bytes(size // 4))
    assert path.stat().st_size == size


def _engine_line():
    """`check`'s engine line for a store of efficientnet-lite0-offline (only the store's recorded model is read)."""
    from types import SimpleNamespace

    from snakeweb.integrity import _engine
    from snakeweb.models import resolve_model

    config = resolve_model("efficientnet-lite0-offline")
    store = SimpleNamespace(get_meta=lambda key: {"config": {"source": config.source, "name": config.name, "location": config.location}})
    return _engine(store).detail


def _features(purpose="identify"):
    from snakeweb.models import load_backbone, resolve_model

    backbone = load_backbone(resolve_model("efficientnet-lite0-offline"), purpose=purpose)
    assert backbone.openvino is not None
    return backbone, backbone.features(torch.linspace(-1, 1, 2 * 3 * 224 * 224).view(2, 3, 224, 224), "pool").numpy()


def test_truncated_or_garbled_cache_files_are_made_again(cache, caplog):
    backbone, reference = _features()
    folder = backbone.openvino.folder
    assert json.loads((folder / "conversion.json").read_text())["sizes"]["model.bin"] == (folder / "model.bin").stat().st_size
    for name, size in (("model.bin", 100_000), ("model.xml", 5_000), ("model.bin", 0)):
        with open(folder / name, "r+b") as handle:
            handle.truncate(size)
        caplog.clear()
        _, again = _features()
        np.testing.assert_allclose(again, reference, atol=1e-5)
        # the rebuild says why (it said only "converting ... once", as on a first run)
        assert "is incomplete or damaged (a file is missing or differs from what its conversion recorded)" in caplog.text
    for blob in (folder / "compiled").glob("*"):
        blob.write_bytes(b"not a compiled model")
    _, again = _features()
    np.testing.assert_allclose(again, reference, atol=1e-5)


def test_first_compiles_in_several_processes_at_once_all_succeed(cache):
    _features()  # converted once; the compiled blobs are what the processes race for
    backbone, _ = _features()
    for blob in (backbone.openvino.folder / "compiled").glob("*"):
        blob.unlink()
    code = ("from snakeweb.models import load_backbone, resolve_model; import torch; "
            "b = load_backbone(resolve_model('efficientnet-lite0-offline'), purpose='identify'); "
            "print(float(b.features(torch.zeros(1, 3, 224, 224), 'pool').sum()))")
    runs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = [(run.wait(timeout=600), run.stdout.read(), run.stderr.read()) for run in runs]
    assert all(rc == 0 for rc, _, _ in results), [err[-500:] for _, _, err in results]
    assert len({round(float(out), 3) for _, out, _ in results}) == 1


def test_same_size_overwrite_of_the_converted_weights_is_converted_again(cache):
    from snakeweb.openvino_cache import is_converted

    backbone, reference = _features()
    folder = backbone.openvino.folder
    clean = hashlib.sha256((folder / "model.bin").read_bytes()).hexdigest()
    assert "converted forward is cached in" in _engine_line()
    _garble_middle_quarter(folder / "model.bin")
    shutil.rmtree(folder / "compiled")  # so the weights are compiled again, from whatever model.bin holds
    damaged_line = _engine_line()
    again, features = _features()
    np.testing.assert_allclose(features, reference, atol=1e-5)  # the size-only check answered from the garbled weights
    assert "cached" not in damaged_line  # `check` said "cached in ..." of the garbled folder
    assert again.openvino.folder == folder and is_converted(folder)
    assert hashlib.sha256((folder / "model.bin").read_bytes()).hexdigest() == clean
    assert json.loads((folder / "conversion.json").read_text())["sha256"]["model.bin"] == clean
    assert "converted forward is cached in" in _engine_line()


def test_same_size_overwrite_of_a_compiled_blob_is_compiled_again(cache):
    backbone, reference = _features()
    compiled = backbone.openvino.folder / "compiled"
    blobs = sorted(compiled.glob("*.blob"))
    assert blobs
    garbled = {}
    for blob in blobs:
        _garble_middle_quarter(blob)
        garbled[blob.name] = hashlib.sha256(blob.read_bytes()).hexdigest()
    damaged_line = _engine_line()
    _, features = _features()
    np.testing.assert_allclose(features, reference, atol=1e-5)  # OpenVINO imported the garbled blob without a word
    assert "cached" not in damaged_line
    recorded = json.loads((compiled / "digests.json").read_text())["sha256"]
    for blob in compiled.glob("*.blob"):  # compiled again: no garbled blob left, the new ones recorded
        digest = hashlib.sha256(blob.read_bytes()).hexdigest()
        assert digest != garbled.get(blob.name) and recorded[blob.name] == digest
    assert "converted forward is cached in" in _engine_line()


def test_a_folder_converted_before_digests_were_recorded_is_converted_once_more(cache):
    from snakeweb.openvino_cache import is_converted

    backbone, reference = _features()
    folder = backbone.openvino.folder
    record = json.loads((folder / "conversion.json").read_text())
    del record["sha256"]  # what a conversion by the size-only code wrote
    (folder / "conversion.json").write_text(json.dumps(record))
    assert not is_converted(folder)
    _, features = _features()
    assert is_converted(folder) and "sha256" in json.loads((folder / "conversion.json").read_text())
    np.testing.assert_allclose(features, reference, atol=1e-5)


@pytest.mark.parametrize("where", ["a file", "/proc"])
def test_a_cache_that_cannot_be_made_falls_back_to_torch_with_one_sentence(tmp_path, monkeypatch, caplog, where):
    # it warned "(FileExistsError: [Errno 17] File exists: ...)" once per network; under /proc (where root passes
    # every permission check, yet nothing can be made) check said OpenVINO would run
    from snakeweb import engines, models

    if where == "/proc" and not Path("/proc/self").is_dir():
        pytest.skip("no /proc on this system")
    cache = tmp_path if where == "a file" else Path("/proc/snakeweb-test-cache")
    blocked = tmp_path / "openvino" if where == "a file" else Path("/proc")
    if where == "a file":
        (tmp_path / "openvino").write_text("not a folder")
    monkeypatch.setenv("SNAKEWEB_CACHE", str(cache))
    monkeypatch.delenv("SNAKEWEB_ENGINE", raising=False)
    monkeypatch.setattr(engines, "_SAID_CONVERSION_FAILURES", set())
    backbone = models.load_backbone(models.resolve_model(models.AUTO_OFFLINE_MODEL), purpose="identify")
    assert backbone.engine == "torch"
    said = [r.getMessage() for r in caplog.records if "could not convert" in r.getMessage()]
    assert len(said) == 1 and f"its cache cannot be written at {blocked}: " in said[0]
    assert where != "a file" or "a file stands where a folder is needed" in said[0]
    assert "set SNAKEWEB_CACHE to a writable folder" in said[0] and "Errno" not in said[0]
    assert "converting" not in caplog.text  # "converting ... once (cached in <a path that cannot be made>)" per network
    # check says what identify will do, not "the converted forward is made on first use"
    from snakeweb.integrity import _engine

    config = models.resolve_model(models.AUTO_OFFLINE_MODEL)
    recorded = {"config": {"source": config.source, "name": config.name, "location": config.location}}
    store = type("S", (), {"get_meta": staticmethod(lambda key: recorded)})
    verdict = _engine(store)
    assert verdict.ok and verdict.detail.startswith("torch on the CPU: OpenVINO's cache cannot be written at")
