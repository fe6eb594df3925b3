"""A damaged OpenVINO cache is repaired, not a traceback at every load (a tester truncated model.bin / model.xml
and garbled the compiled blobs; two processes compiled at once)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("openvino", reason="the OpenVINO engine is not installed")


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SNAKEWEB_CACHE", str(tmp_path))
    monkeypatch.delenv("SNAKEWEB_ENGINE", raising=False)
    return tmp_path


def _features(purpose="identify"):
    from snakeweb.models import load_backbone, resolve_model

    backbone = load_backbone(resolve_model("efficientnet-lite0-offline"), purpose=purpose)
    assert backbone.openvino is not None
    return backbone, backbone.features(torch.linspace(-1, 1, 2 * 3 * 224 * 224).view(2, 3, 224, 224), "pool").numpy()


def test_truncated_or_garbled_cache_files_are_made_again(cache):
    backbone, reference = _features()
    folder = backbone.openvino.folder
    assert json.loads((folder / "conversion.json").read_text())["sizes"]["model.bin"] == (folder / "model.bin").stat().st_size
    for name, size in (("model.bin", 100_000), ("model.xml", 5_000), ("model.bin", 0)):
        with open(folder / name, "r+b") as handle:
            handle.truncate(size)
        _, again = _features()
        np.testing.assert_allclose(again, reference, atol=1e-5)
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
