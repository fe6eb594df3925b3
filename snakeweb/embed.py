"""Frozen-backbone embeddings: batched, `torch.inference_mode`, decode overlapped with compute."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from snakeweb.errors import SnakewebError
from snakeweb.images import DecodedImage, ImageReadError, decode_bytes, read_image, to_pixels
from snakeweb.models import LoadedBackbone
from snakeweb.threads import decode_workers
from snakeweb.train_views import view_pixels
from snakeweb.vectors import l2_normalise  # noqa: F401 (defined there, importable without torch)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(device: str | None) -> str:
    """`device` checked ("cpu", "cuda" or "cuda:N"), or the default (cuda when present). Raises SnakewebError with
    what to do when a GPU is asked for and torch cannot use one."""
    if device is None:
        return default_device()
    kind, _, number = device.partition(":")
    if kind not in ("cpu", "cuda") or (number and (kind == "cpu" or not number.isdigit())):
        raise SnakewebError(f"Unknown device {device!r}; use cpu, cuda or cuda:N (or leave --device out: cuda when present).")
    if kind == "cuda" and not torch.cuda.is_available():
        raise SnakewebError(
            f"--device {device}: this torch cannot use a GPU (it is a CPU build, or no GPU is visible). Install a CUDA "
            "build of torch and `pip install -r requirements-gpu.txt` (docs/gpu.md), or leave --device out to run on the CPU."
        )
    if number and int(number) >= torch.cuda.device_count():
        raise SnakewebError(f"--device {device}: there is no such GPU ({torch.cuda.device_count()} visible: cuda:0 to "
                            f"cuda:{torch.cuda.device_count() - 1}).")
    return device


def gpu_dtype(backbone: LoadedBackbone) -> str:
    """The precision a backbone runs in on a GPU: "bfloat16" for ViTs, "float32" for anything holding a CNN.
    Measured on an H200 against the CPU fp32 path (benchmarks/gpu_embed.py --fidelity, same CPU-decoded pixels):
    EfficientNet-Lite0 in bf16 fell to cosine 0.988 (median 0.999), in fp32 0.99999; a ViT-B/14's [CLS] in bf16
    stayed at 0.99994 (benchmarks/results/prototype/gpu_embed_h100_standalone.jsonl)."""
    parts = backbone.parts or [backbone]
    return "float32" if any(p.config.source == "efficientnet" for p in parts) else "bfloat16"


@torch.inference_mode()
def embed_pixels(backbone: LoadedBackbone, pixels: torch.Tensor, feature_kind: str) -> np.ndarray:
    device = next(backbone.model.parameters()).device
    # on a GPU the model runs in the GPU embed stage's precision (snakeweb.gpu_embed), so uploads match the store
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda" and gpu_dtype(backbone) == "bfloat16"):
        return backbone.features(pixels.to(device), feature_kind).float().cpu().numpy()


def chunks(items: Iterable, size: int) -> Iterator[list]:
    """`items` in lists of `size` (the last one shorter), without holding more than one list."""
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass
class EmbeddedBatch:
    keys: list  # whatever the caller passed with each path (e.g. image ids)
    decoded: list[DecodedImage | None]
    errors: list[str | None]
    vectors: list[np.ndarray | None]
    decoders: list[str | None] | None = None  # "pillow" or "nvjpeg" per photo (None: all Pillow, or not decoded)

    def rows(self) -> pd.DataFrame:
        """One row per image: what the store records about it, and its vector (or None)."""
        decoders = self.decoders or ["pillow" if v is not None else None for v in self.vectors]
        return pd.DataFrame({
            "image_id": self.keys,
            "status": ["error" if e else "ok" for e in self.errors],
            "error": self.errors,
            "sha256": [d.sha256 if d else None for d in self.decoded],
            "size_bytes": [d.size_bytes if d else None for d in self.decoded],
            "width": [d.width if d else None for d in self.decoded],
            "height": [d.height if d else None for d in self.decoded],
            "decoder": decoders,
            "vector": self.vectors,
        })


def embed_images(
    backbone: LoadedBackbone,
    items: Iterable[tuple[object, str | Path | bytes]],
    feature_kind: str,
    batch_size: int = 32,
    workers: int | None = None,
    view: str | None = None,
) -> Iterator[EmbeddedBatch]:
    """Embed (key, path-or-bytes) items batch by batch; unreadable images come back with their error.
    With `view` (a name in `snakeweb.train_views.TRAIN_VIEWS`), each photo's augmented view is embedded instead.

    Decoding of the next batch runs in threads while the model works on this one (Pillow releases the
    GIL while decoding and resizing).
    """
    config = backbone.config

    def prepare(item: tuple[object, str | Path | bytes]):
        key, source = item
        try:
            decoded = (
                decode_bytes(source, min_side=config.resize_size)
                if isinstance(source, bytes)
                else read_image(source, min_side=config.resize_size)
            )
            return key, decoded, to_pixels(decoded.image, config), None
        except ImageReadError as exc:
            return key, None, None, str(exc)

    workers = workers or decode_workers()  # sized from the cores this process is granted (snakeweb.threads)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        pending = None
        for batch in chunks(items, batch_size):
            submitted = pool.map(prepare, batch)
            if pending is not None:
                yield _run(backbone, list(pending), feature_kind, view)
            pending = submitted
        if pending is not None:
            yield _run(backbone, list(pending), feature_kind, view)


def _run(backbone: LoadedBackbone, prepared: Sequence[tuple], feature_kind: str, view: str | None) -> EmbeddedBatch:
    good = [i for i, p in enumerate(prepared) if p[2] is not None]
    vectors: list[np.ndarray | None] = [None] * len(prepared)
    if good:
        pixels = torch.stack([prepared[i][2] for i in good])
        stacked = embed_pixels(backbone, pixels if view is None else view_pixels(pixels, view), feature_kind)
        for row, i in enumerate(good):
            vectors[i] = stacked[row]
    return EmbeddedBatch(
        keys=[p[0] for p in prepared], decoded=[p[1] for p in prepared],
        errors=[p[3] for p in prepared], vectors=vectors,
    )
