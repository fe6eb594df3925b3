"""Optional Ray Data backend for the embed stage (`embed --backend ray`, `pip install -r requirements-ray.txt`).

Photos are decoded and embedded by an actor pool (`map_batches`; each actor loads the backbone once, on CPU or
a GPU); the driver writes each finished batch to the store, because DuckDB has one writer. The store result is
the local backend's: the same rows, the same ids, the same vectors. `RAY_ADDRESS` points it at a cluster
(every worker then needs the photos at the same paths and this package installed); without it a local Ray
instance is started.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pandas as pd

from snakeweb.errors import SnakewebError
from snakeweb.models import BackboneConfig


class _Embedder:
    """A Ray actor: one loaded backbone, embedding one pandas batch of (image_id, path) per call."""

    def __init__(self, config: BackboneConfig, feature_kind: str, device: str, batch_size: int):
        from snakeweb.models import load_backbone

        self.backbone = load_backbone(config, device=device)
        self.feature_kind = feature_kind
        self.forward = None
        if device == "cuda":  # the GPU path (nvJPEG, bf16, compiled once per actor at the batch shape)
            from snakeweb.gpu_embed import DeviceForward

            self.forward = DeviceForward(self.backbone, feature_kind, batch_size)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        from snakeweb.embed import embed_images

        items = zip(batch["image_id"].tolist(), batch["path"].tolist())
        if self.forward is not None:
            from snakeweb.gpu_embed import embed_images_on_device

            batches = embed_images_on_device(self.backbone, items, self.feature_kind, self.forward.batch_size, forward=self.forward)
        else:
            batches = embed_images(self.backbone, items, self.feature_kind, batch_size=len(batch))
        frames = [b.rows() for b in batches]
        out = pd.concat(frames, ignore_index=True)
        out["vector"] = [None if v is None else v.tolist() for v in out["vector"]]
        return out


def embed_with_ray(config: BackboneConfig, feature_kind: str, pending: pd.DataFrame, batch_size: int, device: str,
                   workers: int | None = None) -> Iterator[pd.DataFrame]:
    """Yield embedded batches (the columns of `EmbeddedBatch.rows`) as the actor pool finishes them."""
    try:
        import ray
    except ImportError as exc:
        raise SnakewebError("The Ray backend needs Ray: `pip install -r requirements-ray.txt` (or use --backend local).") from exc
    if pending.empty:
        return
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"), include_dashboard=False, log_to_driver=False,
                 configure_logging=False, ignore_reinit_error=True)
    gpus = 1 if device == "cuda" else 0
    if workers is None:  # one actor per GPU, else one per 2 CPUs (each uses torch's intra-op threads)
        resources = ray.cluster_resources()
        workers = max(1, int(resources.get("GPU", 0)) if gpus else int(resources.get("CPU", 2)) // 2)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # the stage draws its own
    dataset = ray.data.from_pandas(pending[["image_id", "path"]].reset_index(drop=True))
    embedded = dataset.map_batches(
        _Embedder, fn_constructor_kwargs={"config": config, "feature_kind": feature_kind, "device": device, "batch_size": batch_size},
        batch_size=batch_size, batch_format="pandas", concurrency=workers, num_gpus=gpus,
    )
    for frame in embedded.iter_batches(batch_size=None, batch_format="pandas"):
        # Arrow turns missing values into NA/NaN: back to None, as the local backend writes them
        yield frame.astype(object).where(frame.notna(), None)
