"""Frozen-backbone embeddings: batched, `torch.inference_mode`, decode overlapped with compute."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from snakeweb.images import DecodedImage, ImageReadError, decode_bytes, read_image, to_pixels
from snakeweb.models import LoadedBackbone
from snakeweb.train_views import view_pixels


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


@torch.inference_mode()
def embed_pixels(backbone: LoadedBackbone, pixels: torch.Tensor, feature_kind: str) -> np.ndarray:
    device = next(backbone.model.parameters()).device
    return backbone.features(pixels.to(device), feature_kind).float().cpu().numpy()


@dataclass
class EmbeddedBatch:
    keys: list  # whatever the caller passed with each path (e.g. image ids)
    decoded: list[DecodedImage | None]
    errors: list[str | None]
    vectors: list[np.ndarray | None]


def embed_images(
    backbone: LoadedBackbone,
    items: Iterable[tuple[object, str | Path | bytes]],
    feature_kind: str,
    batch_size: int = 32,
    workers: int = 2,
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

    def batches() -> Iterator[list]:
        batch: list = []
        for item in items:
            batch.append(item)
            if len(batch) == batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        pending = None
        for batch in batches():
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


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)
