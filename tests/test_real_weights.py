"""Integration: the real offline DINOv2 weights, on the real photos in ../shared/data."""

import json

import numpy as np
import pandas as pd
import pytest

from pipelines.cli import main
from snakeweb.models import REGISTRY, _hub_available, load_backbone
from tests.conftest import shared

pytestmark = pytest.mark.integration


def test_converted_weights_equal_the_onnx_backbone():
    import onnx
    import onnxruntime
    import torch

    from snakeweb.offline_weights import converted_model_dir, find_onnx

    graph = onnx.load(str(find_onnx()))
    final = "/backbone/layernorm/Add_1_output_0"  # the backbone's last layer norm, before the saliency decoder
    graph.graph.output.append(onnx.helper.make_tensor_value_info(final, onnx.TensorProto.FLOAT, None))
    session = onnxruntime.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    pixels = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    expected = session.run([final], {"input_image": pixels})[0]

    from transformers import Dinov2Model

    model = Dinov2Model.from_pretrained(converted_model_dir()).eval()
    with torch.inference_mode():
        actual = model(pixel_values=torch.from_numpy(pixels)).last_hidden_state.numpy()
    assert actual.shape == expected.shape == (2, 257, 384)
    assert np.abs(actual - expected).max() < 1e-4


def test_build_on_real_photos_identifies_each_as_its_own_species(imagenet_store, capsys):
    mapping = pd.read_csv(shared("images", "imagenet-snakes", "mapping.csv"))
    photos = sorted((imagenet_store.parent / "photos").rglob("*.JPEG"))
    capsys.readouterr()
    assert main(["identify", "--store", str(imagenet_store), *map(str, photos), "--each", "--json", "--neighbours", "1"]) == 0
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(results) == 17
    known = mapping.dropna(subset=["snakeclef_class_id"]).set_index("file")["snakeclef_class_id"].astype(int)
    for photo, result in zip(photos, results):
        top = result["species"][0]
        assert top["binomial_name"] == photo.parent.name
        if photo.name in known.index:  # species in the SnakeCLEF table keep their official class id
            assert top["class_id"] == known[photo.name]
        assert result["neighbours"][0]["path"] == str(photo.resolve())
        assert result["neighbours"][0]["similarity"] > 0.99
    venomous = {r["inputs"][0].split("/")[-1]: r["species"][0]["venomous"] for r in results}
    assert venomous["n01755581_diamondback.JPEG"] is True and venomous["n01728572_thunder_snake.JPEG"] is False


def test_hub_loading_is_real_code():
    config = REGISTRY["dinov2-small"]
    if not _hub_available(config.location):
        pytest.skip("the HuggingFace hub is unreachable from this machine")
    backbone = load_backbone(config)
    assert backbone.fingerprint.startswith("facebook/dinov2-small@")
    assert backbone.model.config.hidden_size == 384


def test_efficientnet_lite0_offline_backbone_embeds_with_its_own_normalisation():
    import torch

    from snakeweb.embed import embed_images
    from snakeweb.errors import SnakewebError

    backbone = load_backbone(REGISTRY["efficientnet-lite0-offline"])
    assert backbone.fingerprint.startswith("efficientnet-lite0-offline@sha256:")
    assert backbone.config.mean == (0.498, 0.498, 0.498) and backbone.feature_dim("pool") == 1280
    with pytest.raises(SnakewebError, match="gives pool features"):
        backbone.check_feature_kind("cls")
    photos = sorted(shared("images", "imagenet-snakes").glob("*.JPEG"))[:3]
    batch = next(embed_images(backbone, [(p.name, p) for p in photos], "pool"))
    vectors = np.stack(batch.vectors)
    assert vectors.shape == (3, 1280) and np.isfinite(vectors).all() and (vectors >= 0).all()  # Lite uses ReLU6: pooled features are >= 0
    assert not torch.allclose(torch.from_numpy(vectors[0]), torch.from_numpy(vectors[1]))


def test_default_offline_concat_backbone_joins_its_parts_and_flip_tta_changes_the_fingerprint():
    import dataclasses

    from snakeweb.embed import embed_images
    from snakeweb.models import AUTO_OFFLINE_MODEL, resolve_model

    config = resolve_model(AUTO_OFFLINE_MODEL)
    names = config.location.split("+")
    assert config.source == "concat" and names[0] == "efficientnet-lite0-offline"
    assert config.image_size == max(REGISTRY[n].image_size for n in names)  # the largest part's input size
    backbone = load_backbone(config)
    assert backbone.feature_dim("concat") == 1280 * len(names)
    photos = sorted(shared("images", "imagenet-snakes").glob("*.JPEG"))[:2]
    joined = np.stack(next(embed_images(backbone, [(p.name, p) for p in photos], "concat")).vectors)
    # each part is unit-normalised and scaled by 1/sqrt(parts): the parts have equal weight
    for part in range(len(names)):
        assert np.allclose(np.linalg.norm(joined[:, 1280 * part:1280 * (part + 1)], axis=1), len(names) ** -0.5, atol=1e-4)
    assert np.allclose(np.linalg.norm(joined, axis=1), 1.0, atol=1e-4)
    # the Lite0 part equals Lite0 run alone on its own 224-px input, up to resampling of the shared crop
    lite0 = load_backbone(REGISTRY["efficientnet-lite0-offline"])
    alone = np.stack(next(embed_images(lite0, [(p.name, p) for p in photos], "pool")).vectors)
    alone /= np.linalg.norm(alone, axis=1, keepdims=True)
    assert (np.sum(joined[:, :1280] * len(names) ** 0.5 * alone, axis=1) > 0.9).all()
    flipped = load_backbone(dataclasses.replace(config, tta="flip"))
    assert flipped.fingerprint == backbone.fingerprint + "|tta=flip"
    averaged = np.stack(next(embed_images(flipped, [(p.name, p) for p in photos], "concat")).vectors)
    assert not np.allclose(averaged, joined, atol=1e-3) and (np.sum(averaged * joined, axis=1) > 0.9).all()


def test_check_verifies_the_packaged_efficientnet_weights_against_the_recorded_fingerprint():
    # check said "hub weights: verified by revision" for the default offline model, and verified nothing
    from dataclasses import asdict

    from snakeweb.integrity import _packaged_weights
    from snakeweb.models import AUTO_OFFLINE_MODEL, efficientnet_weights, resolve_model
    from snakeweb.offline_weights import sha256_of

    config = resolve_model(AUTO_OFFLINE_MODEL)
    parts = config.location.split("+")
    digests = {name: sha256_of(efficientnet_weights(REGISTRY[name]))[:16] for name in parts}
    recorded = "concat(" + ",".join(f"{name}@sha256:{digests[name]}" for name in parts) + ")"
    verdict = _packaged_weights(recorded, asdict(config))
    assert verdict.ok and verdict.detail.endswith("package weights sha256 match")
    changed = recorded.replace(digests[parts[1]], "0" * 16)
    verdict = _packaged_weights(changed, asdict(config))
    assert not verdict.ok and f"the installed weights of {parts[1]} have CHANGED" in verdict.detail
    alone = _packaged_weights(f"{parts[0]}@sha256:{digests[parts[0]]}", asdict(REGISTRY[parts[0]]))
    assert alone.ok
