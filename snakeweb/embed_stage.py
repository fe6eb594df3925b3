"""The embed stage: photos on disk -> vectors in the store, on the CPU or a GPU (snakeweb.gpu_embed), locally or
on Ray (snakeweb.ray_backend); resumable (every finished batch is committed, pending photos are redone), and the
augmented views of training photos the heads train on."""

from __future__ import annotations

import contextlib
import logging
import platform
import queue
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata

import numpy as np
import pandas as pd

from snakeweb.changed_photos import record_stamps
from snakeweb.copies import warn_of_copies
from snakeweb.embed import embed_images, resolve_device
from snakeweb.errors import SnakewebError, shell_word
from snakeweb.models import FEATURE_KINDS, BackboneConfig, LoadedBackbone, ModelFolderError, load_backbone, resolve_model
from snakeweb.progress import tqdm  # the stages' progress bars (snakeweb.stages takes it from here)
from snakeweb.store import RETRY_DELAY_MAX_S, SCHEMA, Store, set_meta
from snakeweb.train_views import DEFAULT_TRAIN_VIEWS, parse_views

log = logging.getLogger(__name__)
CPU_BATCH_SIZE = 32
GPU_BATCH_SIZE = 256  # snakeweb.gpu_embed.GPU_BATCH_SIZE (not imported here: that module needs CUDA-side torch code)
PACKAGES = ("torch", "transformers", "faiss-cpu", "duckdb", "numpy", "pillow", "umap-learn", "scikit-learn")


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            pass
    return versions


def store_backbone(store: Store, device: str | None = None) -> LoadedBackbone:
    """The backbone that embedded this store, checked against the recorded fingerprint."""
    recorded = store.get_meta("model")
    if recorded is None:
        raise SnakewebError(f"The store {store.root} has no embeddings yet; run `python -m pipelines embed --store {shell_word(store.root)}`.")
    try:
        backbone = load_backbone(BackboneConfig(**recorded["config"]), device=resolve_device(device))
    except ModelFolderError as exc:  # the folder changed since the store was embedded: another --model is no help here
        raise SnakewebError(
            f"The store {store.root} was embedded with the model folder {exc.folder}, which cannot be loaded now: "
            f"{exc.reason}; restore that folder, or re-embed the store with `python -m pipelines embed --store "
            f"{shell_word(store.root)} --model MODEL --reembed`."
        ) from exc
    if backbone.fingerprint != recorded["fingerprint"]:
        raise SnakewebError(
            f"The store was embedded with {recorded['fingerprint']} but {backbone.config.location} now loads "
            f"{backbone.fingerprint}. Restore those weights, or re-embed with `embed --reembed`."
        )
    feature_kind, feature_dim = store.get_meta("feature_kind"), store.get_meta("feature_dim")
    if feature_kind and feature_dim is not None and backbone.feature_dim(feature_kind) != feature_dim:
        raise SnakewebError(
            f"The store holds {feature_dim}-d {feature_kind} vectors but {backbone.config.name} gives "
            f"{backbone.feature_dim(feature_kind)}-d ones; this store cannot embed photos with it."
        )
    return backbone


def record_model(con, backbone: LoadedBackbone, feature_kind: str) -> None:
    """Record in run metadata (inside the caller's transaction `con`) which model made the store's vectors and how
    photos are fed to it: `model` (config, fingerprint, details), `feature_kind`, `feature_dim`, `preprocessing`,
    `image_size`. Identify, the head and `check` read these; the embed stage and import-embeddings both write them
    here. Raises SnakewebError when the model gives no `feature_kind` features."""
    config = backbone.config
    set_meta(con, "model", {"config": config.to_json(), "fingerprint": backbone.fingerprint, **backbone.details})
    set_meta(con, "feature_kind", feature_kind)
    set_meta(con, "feature_dim", backbone.feature_dim(feature_kind))
    set_meta(con, "preprocessing", {
        "exif_transpose": True, "mode": "RGB", "resize_short_side": config.resize_size,
        "interpolation": "bicubic", "centre_crop": config.image_size, "mean": config.mean, "std": config.std,
        # snakeweb.images: JPEG decoded at reduced scale (draft), other formats shrunk by an integer factor
        # while the short side stays >= 2 x resize_short_side; strips beyond 50:1 refused
        "decode_reduction": "jpeg draft / integer reduce to >= 2x resize", "max_aspect_ratio": 50,
    })
    set_meta(con, "image_size", config.image_size)


def embed(
    store: Store, model: str | None = None, feature_kind: str | None = None, batch_size: int | None = None,
    reembed: bool = False, device: str | None = None, tta: str | None = None, backend: str = "local",
    views: list[str] | tuple[str, ...] | None = None,
) -> dict[str, int]:
    """Embed every pending image; commits per batch, so a killed run loses at most one batch. `tta` "flip"
    averages each photo with its mirror image (identify then does the same: it is part of the recorded model).
    `backend` "ray" runs decoding and the model on a Ray Data actor pool (snakeweb/ray_backend.py). Then
    train-split photos get their augmented `views` (snakeweb/train_views.py; default: what the store recorded,
    else DEFAULT_TRAIN_VIEWS), extra rows for the head."""
    store.require()
    device = resolve_device(device)  # before anything is loaded: a GPU that cannot be used is said at once
    recorded_model, recorded_features = store.get_meta("model"), store.get_meta("feature_kind")
    n_embedded = int(store.query("SELECT count(*) AS n FROM embeddings")["n"][0])
    config = resolve_model(model) if model else (
        BackboneConfig(**recorded_model["config"]) if recorded_model else resolve_model("auto")
    )
    if tta is not None:
        config = replace(config, tta=tta)
    if feature_kind is None:
        feature_kind = recorded_features if recorded_features in config.feature_kinds else config.feature_kinds[0]
    if feature_kind not in FEATURE_KINDS:
        raise SnakewebError(f"Unknown feature kind {feature_kind!r}; use one of {', '.join(FEATURE_KINDS)}.")
    backbone = load_backbone(config, device=device)
    backbone.check_feature_kind(feature_kind)
    changed = recorded_model is not None and (
        recorded_model["fingerprint"] != backbone.fingerprint or recorded_features != feature_kind
    )
    if changed and n_embedded and not reembed:
        raise SnakewebError(
            f"This store holds {n_embedded} embeddings of {recorded_model['fingerprint']} ({recorded_features}); "
            f"you asked for {backbone.fingerprint} ({feature_kind}). Add --reembed to replace them, or use another --store."
        )
    views = _views_for(store, views, backbone)
    with store.transaction() as con:
        con.execute(SCHEMA)  # stores made before a table was added get it here
        con.execute("DELETE FROM view_embeddings WHERE NOT list_contains(?::VARCHAR[], view)", [list(views)])
        set_meta(con, "train_views", list(views))
        if reembed:
            con.execute("DELETE FROM embeddings")
            con.execute("DELETE FROM view_embeddings")
            # rejected files stay rejected: a link out of the image root must never be read, even on a re-embed
            con.execute("UPDATE images SET status = 'pending' WHERE status = 'ok'")
        record_model(con, backbone, feature_kind)
        set_meta(con, "dtype", str(next(backbone.model.parameters()).dtype).removeprefix("torch."))  # the GPU path sets its own
        set_meta(con, "device", str(next(backbone.model.parameters()).device))
        set_meta(con, "packages", package_versions())
        set_meta(con, "embedded_at", datetime.now(UTC).isoformat(timespec="seconds"))
    cuda = str(next(backbone.model.parameters()).device).startswith("cuda")
    engine = "torch on the GPU" if cuda else f"{backbone.engine} on the CPU"  # the Ray workers load theirs alike
    print(f"embed: model {backbone.config.name} ({backbone.fingerprint}), features {feature_kind}, engine {engine}")
    pending = store.query("SELECT image_id, path FROM images WHERE status = 'pending' ORDER BY image_id")
    record_stamps(store, pending)  # before reading: a file changed meanwhile is noticed by the next ingest
    counts = {"embedded": 0, "errors": 0, "already_done": n_embedded if not reembed else 0}
    batch_size = batch_size or (GPU_BATCH_SIZE if cuda else CPU_BATCH_SIZE)
    started = time.perf_counter()
    run = {"device": "cuda" if cuda else "cpu", "batch_size": batch_size, "backend": backend}
    if backend == "ray":
        from snakeweb.ray_backend import embed_with_ray

        frames = embed_with_ray(backbone.config, feature_kind, pending, batch_size, device)
    elif backend == "local" and cuda and not pending.empty:
        from snakeweb.gpu_embed import DeviceForward, Profile, embed_images_on_device
        from snakeweb.gpu_resize import resize_method

        forward = DeviceForward(backbone, feature_kind, batch_size)
        profile = Profile()
        with store.transaction() as con:
            set_meta(con, "dtype", forward.dtype_name)
        run.update(dtype=forward.dtype_name, resize=resize_method(), compiled=forward.compiled,
                   warmup_seconds=round(forward.warmup_seconds, 1), profile=profile.seconds)
        started = time.perf_counter()  # compiling is a one-off, reported apart from the rate
        items = zip(pending["image_id"].tolist(), pending["path"].tolist())
        frames = (batch.rows() for batch in embed_images_on_device(backbone, items, feature_kind, batch_size, forward=forward, profile=profile))
    elif backend == "local":
        items = zip(pending["image_id"].tolist(), pending["path"].tolist())
        frames = (batch.rows() for batch in embed_images(backbone, items, feature_kind, batch_size=batch_size))
    else:
        raise SnakewebError(f"Unknown embed backend {backend!r}; use local or ray.")
    decoders: dict[str, int] = {}
    writer = StoreWriter(store)
    with tqdm(total=len(pending), desc="embed", unit="img") as bar, writer:
        for frame in frames:
            writer.put(frame)
            errors = int((frame["status"] == "error").sum())
            counts["errors"] += errors
            counts["embedded"] += len(frame) - errors
            for name, n in frame["decoder"].value_counts().items():
                decoders[name] = decoders.get(name, 0) + int(n)
            bar.update(len(frame))
            bar.set_postfix(errors=counts["errors"])
    elapsed = time.perf_counter() - started
    counts["images_per_second"] = round(len(pending) / elapsed, 2) if pending.shape[0] and elapsed > 0 else None
    if not pending.empty:
        with store.transaction() as con:
            if "profile" in run:
                run["profile"] = {**{k: round(v, 2) for k, v in sorted(run["profile"].items())}, "store_writes": round(writer.seconds, 2)}
            set_meta(con, "embed_run", {**run, "decoders": decoders, "images": len(pending), "seconds": round(elapsed, 2)})
    if counts["errors"]:
        print(f"embed: {counts['errors']} image(s) could not be read; see `images` rows with status 'error'.")
    counts["view_vectors"] = _embed_views(store, backbone, feature_kind, views, batch_size)
    warn_of_copies(store)  # ingest lists files unread: their bytes are first compared here, before any training
    return counts


def _views_for(store: Store, views, backbone: LoadedBackbone) -> tuple[str, ...]:
    recorded = store.get_meta("train_views")
    views = parse_views(views if views is not None else recorded if recorded is not None else DEFAULT_TRAIN_VIEWS)
    if backbone.config.tta == "flip" and any("flip" in v for v in views):
        # with mirror TTA a photo and its mirror image have one vector: a flipped view would repeat a row
        views = tuple(v for v in views if "flip" not in v)
        print("embed: mirrored training views skipped (the flip TTA already averages each photo with its mirror image)")
    return views


def _embed_views(store: Store, backbone: LoadedBackbone, feature_kind: str, views: tuple[str, ...], batch_size: int) -> int:
    """Embed the missing augmented views of train-split photos (resumable: committed per batch)."""
    done = failed = 0
    for view in views:
        pending = store.query(
            "SELECT image_id, path FROM images i WHERE split = 'train' AND status = 'ok' AND NOT EXISTS "
            "(SELECT 1 FROM view_embeddings v WHERE v.image_id = i.image_id AND v.view = ?) ORDER BY image_id", [view])
        if pending.empty:
            continue
        items = zip(pending["image_id"].tolist(), pending["path"].tolist())
        with tqdm(total=len(pending), desc=f"embed view {view}", unit="img") as bar:
            for batch in embed_images(backbone, items, feature_kind, batch_size=batch_size, view=view):
                rows = pd.DataFrame({
                    "image_id": [k for k, v in zip(batch.keys, batch.vectors) if v is not None],
                    "vector": [np.asarray(v, np.float32).tolist() for v in batch.vectors if v is not None],
                })
                with store.transaction() as con:
                    con.register("batch_views", rows)
                    con.execute("INSERT OR REPLACE INTO view_embeddings SELECT image_id, ?, vector::FLOAT[] FROM batch_views", [view])
                done += len(rows)
                failed += sum(e is not None for e in batch.errors)
                bar.update(len(batch.keys))
    if failed:
        print(f"embed: {failed} training view(s) could not be made (the photo could not be read again); "
              "the next embed run retries them, and training uses the views that exist.")
    return done


def _write_rows(con, frames: list[pd.DataFrame]) -> None:
    """Record embedded batches (the columns of `EmbeddedBatch.rows`) in one transaction on `con`: vectors go to
    DuckDB as one Arrow fixed-size-list column (no Python list per vector), image rows get status, error and
    header facts."""
    import pyarrow as pa

    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    has_vector = frame["vector"].map(lambda v: v is not None).to_numpy(bool)
    ids = frame.loc[has_vector, "image_id"].to_numpy(np.int64)
    con.execute("BEGIN TRANSACTION")
    try:
        if len(ids):
            matrix = np.ascontiguousarray(np.stack(frame.loc[has_vector, "vector"].to_list()).astype(np.float32, copy=False))
            vectors = pa.table({"image_id": ids, "vector": pa.FixedSizeListArray.from_arrays(matrix.ravel(), matrix.shape[1])})
            con.register("batch_vectors", vectors)
            con.execute(
                "INSERT INTO embeddings SELECT image_id, vector::FLOAT[] FROM batch_vectors "
                "ON CONFLICT (image_id) DO UPDATE SET vector = excluded.vector"
            )
            con.unregister("batch_vectors")
        con.register("batch_rows", frame.drop(columns="vector"))
        con.execute(
            "UPDATE images i SET status = b.status, error = b.error, sha256 = b.sha256, size_bytes = b.size_bytes, "
            "width = b.width, height = b.height, decoder = b.decoder FROM batch_rows b WHERE i.image_id = b.image_id"
        )
        con.unregister("batch_rows")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


class StoreWriter:
    """Writes embedded batches from a thread of its own, so decoding and the model never wait for DuckDB;
    batches that queue up while a transaction runs are committed together, each write in a transaction of its own.
    A killed run loses at most the batches in the queue (the next run redoes them: they are still 'pending').

    The writer keeps its connection for up to HOLD_S seconds, the wait for the next batch included: opening the
    file and the checkpoint DuckDB makes when the last connection closes cost more than the write itself (61 -> 31
    ms per batch of 256 x 768 measured on 2 cores; the GPU stage's writer was busy 9 of 13 s). Closing it that
    often lets the dashboard, which waits up to 5 s for the file, read between writes, however slow a batch is."""

    HOLD_S = 2.0

    def __init__(self, store: Store, depth: int = 4):
        self.store, self.queue = store, queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.seconds = 0.0  # spent in transactions
        self.thread = threading.Thread(target=self._run, name="store-writer", daemon=True)

    def __enter__(self) -> StoreWriter:
        self.thread.start()
        return self

    def put(self, frame: pd.DataFrame) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(frame)

    def _run(self) -> None:
        held: contextlib.ExitStack | None = None
        opened, closed_at = 0.0, None
        try:
            while True:
                try:  # a held connection waits for the next batch only until HOLD_S has passed
                    first = self.queue.get(timeout=max(0.0, self.HOLD_S - (time.perf_counter() - opened))) if held else self.queue.get()
                except queue.Empty:  # a slow batch (a large model on the CPU): let readers in while it is made
                    held.close()
                    held, closed_at = None, time.perf_counter()
                    first = self.queue.get()
                if held is None and closed_at is not None and first is not None:
                    # let go for longer than a waiting reader's retry delay, or one whose tries fall between our
                    # writes never gets in (batches a tenth of a second apart kept readers out for their 5 s)
                    time.sleep(max(0.0, 2 * RETRY_DELAY_MAX_S - (time.perf_counter() - closed_at)))
                frames = [first]
                while not self.queue.empty() and frames[-1] is not None:
                    frames.append(self.queue.get())
                stop = frames[-1] is None
                frames = [f for f in frames if f is not None]
                try:
                    if frames and self.error is None:
                        started = time.perf_counter()
                        if held is None:
                            held, opened = contextlib.ExitStack(), started
                            con = held.enter_context(self.store.connect())
                        _write_rows(con, frames)
                        if time.perf_counter() - opened > self.HOLD_S:
                            held.close()
                            held, closed_at = None, time.perf_counter()
                        self.seconds += time.perf_counter() - started
                except BaseException as exc:  # re-raised in the stage's thread
                    self.error = exc
                if stop:
                    return
        finally:
            if held is not None:
                started = time.perf_counter()
                held.close()
                self.seconds += time.perf_counter() - started

    def __exit__(self, *exc_info) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.error is not None and exc_info[0] is None:
            raise self.error
