"""The embed stage on a GPU: JPEG bytes decoded by nvJPEG, resized on the device, the backbone in bf16.

CPU threads read each file, hash it and read its header; a producer thread per CUDA side stream decodes a
batch of JPEGs at once with nvJPEG (`torchvision.io.decode_jpeg(device="cuda")`), resizes the short side and
centre-crops the whole batch on the GPU with the CPU path's geometry (bicubic with antialiasing, as Pillow
filters; the sizes `snakeweb.images.to_pixels` computes; `snakeweb.gpu_resize`: two matrix products per batch)
and normalises; the main thread runs the backbone in bf16 (SDPA attention, `torch.compile` at one padded batch
shape) while the producers prepare the next batches, and copies back only the feature vectors, through pinned
memory. Photos nvJPEG should not or cannot take (not a JPEG,
CMYK, EXIF-turned, no end-of-image marker, or rejected by the decoder) go through the CPU decoder
(`snakeweb.images.decode_bytes` + `to_pixels`) with its error handling and one-sentence reasons: nothing is
lost or duplicated, the order is kept, and each photo's `decoder` ("nvjpeg" or "pillow") is recorded.

Without torchvision every photo takes the CPU decoder and the model still runs in bf16 on the GPU; the stage
says what to install (requirements-gpu.txt). Everything but nvJPEG and the CUDA streams also runs on the CPU
(device "cpu"), which is how the batching, fallback and ordering are tested on machines without a GPU.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from snakeweb.embed import EmbeddedBatch, chunks, gpu_dtype
from snakeweb.errors import SnakewebError
from snakeweb.gpu_resize import resize_crop_normalise, resize_method
from snakeweb.models import BackboneConfig, LoadedBackbone
from snakeweb.photo_reader import Photo, cpu_decode, prepare_chunk

log = logging.getLogger(__name__)
GPU_BATCH_SIZE = 256  # ViT-B/14 in bf16 reaches the H100's model-only rate from ~128; 256 keeps it fed
PRODUCERS = 3  # side streams preparing batches; 3 gave 5,489-5,926 img/s on an H100 (one: 4,980)
READ_TASKS_PER_BATCH = 16  # reader tasks a batch is split into (each task's cost is spread over its photos)
INSTALL_HINT = "pip install -r requirements-gpu.txt (torchvision built for your CUDA torch)"

# A batch decoder: JPEG bytes (1-d uint8 CPU tensors) -> one [3, H, W] uint8 image on the device each.
BatchDecoder = Callable[[list[torch.Tensor]], list[torch.Tensor]]


def nvjpeg_decoder(device: str = "cuda") -> BatchDecoder | None:
    """Batched nvJPEG through torchvision, or None (with the reason logged) when torchvision cannot decode on
    this device."""
    try:
        from torchvision.io import ImageReadMode, decode_jpeg
    except ImportError as exc:
        log.warning("torchvision is not installed (%s): every photo is decoded on the CPU; for nvJPEG: %s", exc, INSTALL_HINT)
        return None

    def decode(datas: list[torch.Tensor]) -> list[torch.Tensor]:
        return decode_jpeg(datas, mode=ImageReadMode.RGB, device=device)

    return decode


class DeviceForward:
    """The backbone's features at one padded batch shape, in `dtype` (default `snakeweb.embed.gpu_dtype`: bfloat16
    for ViTs, float32 for CNNs; SNAKEWEB_GPU_DTYPE overrides it), `torch.compile`d in `mode` (SNAKEWEB_COMPILE_MODE,
    e.g. reduce-overhead for CUDA graphs: no faster on an H200, where the producers are the limit) unless
    SNAKEWEB_COMPILE=0 or compilation fails (then eager, said in the log and recorded)."""

    def __init__(self, backbone: LoadedBackbone, feature_kind: str, batch_size: int, compile_model: bool | None = None,
                 dtype: str | None = None, mode: str | None = None):
        self.backbone, self.feature_kind, self.batch_size = backbone, feature_kind, batch_size
        self.device = next(backbone.model.parameters()).device
        self.cuda = self.device.type == "cuda"
        dtype = dtype or os.environ.get("SNAKEWEB_GPU_DTYPE") or (gpu_dtype(backbone) if self.cuda else "float32")
        if dtype not in ("bfloat16", "float32"):
            raise SnakewebError(f"Unknown GPU precision {dtype!r}; use bfloat16 or float32.")
        self.dtype_name = dtype
        self.half = self.cuda and dtype == "bfloat16"
        if self.cuda:
            backbone.model.to(dtype=torch.bfloat16 if self.half else torch.float32)  # a composite's parts are the same modules
            torch.backends.cuda.matmul.allow_tf32 = False  # float32 means float32: TF32 would drop to 10 mantissa bits
        if compile_model is None:
            compile_model = self.cuda and os.environ.get("SNAKEWEB_COMPILE", "1") != "0"
        self.mode = mode or os.environ.get("SNAKEWEB_COMPILE_MODE") or None
        self.compiled, self.warmup_seconds = False, 0.0
        self._fn = self._eager
        if compile_model:
            started = time.perf_counter()
            try:
                self._fn = torch.compile(self._eager, dynamic=False, mode=self.mode)
                self(torch.zeros((batch_size, 3, backbone.config.image_size, backbone.config.image_size), device=self.device))
                self.compiled = True
            except Exception as exc:  # any compiler failure: the eager model gives the same vectors, slower
                log.warning("torch.compile failed (%s: %s); running the model eagerly", type(exc).__name__, str(exc)[:200])
                self._fn = self._eager
            self.warmup_seconds = time.perf_counter() - started

    def _eager(self, pixels: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.half):
            return self.backbone.features(pixels, self.feature_kind).float()

    @torch.inference_mode()
    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        """[n, 3, S, S] float32 on the device (n <= batch_size) -> [n, D] float32 on the device."""
        n = pixels.shape[0]
        if n < self.batch_size:  # one shape: a short last batch never recompiles
            pixels = torch.cat([pixels, pixels.new_zeros((self.batch_size - n, *pixels.shape[1:]))])
        if self.compiled and self.mode == "reduce-overhead":
            # CUDA graphs reuse their output buffer at the next replay; the caller copies it out on this stream first
            torch.compiler.cudagraph_mark_step_begin()
        return self._fn(pixels.contiguous())[:n]


def _decode_batch(photos: list[Photo], decoder: BatchDecoder, config: BackboneConfig) -> list[torch.Tensor | None]:
    """nvJPEG the photos holding bytes, all at once; when the batch call fails, one by one, and the photos the
    decoder still rejects go through the CPU decoder (filled into `photo.pixels`, or `photo.error`)."""
    datas = [torch.frombuffer(bytearray(p.jpeg), dtype=torch.uint8) for p in photos]
    try:
        return list(decoder(datas))
    except Exception as exc:  # nvJPEG raises RuntimeError for a file it cannot take: find which
        log.info("batched GPU decode failed (%s); decoding this batch's JPEGs one by one", str(exc)[:120])
    images: list[torch.Tensor | None] = []
    for photo, data in zip(photos, datas):
        try:
            images.append(decoder([data])[0])
        except Exception:  # rare: this thread decodes it with the CPU path's code
            images.append(None)
            cpu_decode(photo, photo.jpeg, config)
    return images


def embed_images_on_device(
    backbone: LoadedBackbone, items: Iterable[tuple[object, str | Path | bytes]], feature_kind: str,
    batch_size: int = GPU_BATCH_SIZE, decoder: BatchDecoder | None | str = "nvjpeg", readers: int | None = None,
    producers: int = PRODUCERS, forward: DeviceForward | None = None, profile: Profile | None = None,

) -> Iterator[EmbeddedBatch]:
    """Embed (key, path-or-bytes) items on the backbone's device, batch by batch, in order.

    `decoder` "nvjpeg" (torchvision's batched nvJPEG; without torchvision every photo is decoded on the CPU),
    None (always the CPU decoder) or a `BatchDecoder`. `readers` threads read, hash and (for the CPU decoder)
    decode (worker processes were measured slower: 1,889 against 3,551 img/s on an H200, the bytes crossing
    back cost more than the GIL they spared); `producers` threads, each on its own CUDA stream, turn batch i + 1, i + 2, ... into model
    input while the model runs batch i. Each yielded batch lists every item it was given, with its record,
    error, vector and decoder. Raises what the model raises; an unreadable photo is an error row, never raised.
    `profile` collects where the time goes (seconds summed per phase and thread kind; see `Profile`).
    """
    profile = profile if profile is not None else Profile()
    config = backbone.config
    method = resize_method()  # a wrong SNAKEWEB_GPU_RESIZE is a sentence before any work
    device = next(backbone.model.parameters()).device
    if decoder == "nvjpeg":
        decoder = nvjpeg_decoder(str(device)) if device.type == "cuda" else None
    forward = forward or DeviceForward(backbone, feature_kind, batch_size)
    readers = readers or max(2, _cpus() - producers)
    cuda = device.type == "cuda"
    source = chunks(items, batch_size)
    taking = {"next": 0, "ended": False}  # guarded by source_lock
    source_lock = threading.Lock()
    ahead = threading.Semaphore(2 * producers)  # batches taken but not yet consumed: bounds memory
    ready: queue.Queue = queue.Queue()
    stop = threading.Event()

    def take() -> tuple[int, list | BaseException] | None:
        """The next batch and its index; an error of the caller's iterator takes the index it happened at."""
        with source_lock:
            if taking["ended"]:
                return None
            index = taking["next"]
            try:
                chunk = next(source, None)
            except BaseException as exc:
                chunk = exc
            if chunk is None or isinstance(chunk, BaseException):
                taking["ended"] = True
            if chunk is None:
                return None
            taking["next"] += 1
            return index, chunk

    def produce(pool: Executor) -> None:
        stream = torch.cuda.Stream(device) if cuda else None
        with torch.inference_mode(), torch.cuda.stream(stream) if cuda else contextlib.nullcontext():
            while True:
                while not ahead.acquire(timeout=0.5):
                    if stop.is_set():
                        return
                taken = None if stop.is_set() else take()
                if taken is None:
                    break
                index, chunk = taken
                try:  # errors are handed to the consumer, which raises them in turn (after the batches before)
                    item = chunk if isinstance(chunk, BaseException) else _prepare_batch(
                        chunk, config, decoder, pool, device, stream, profile, method)
                except BaseException as exc:
                    item = exc
                ready.put((index, item))
        ready.put((None, None))  # this producer is done

    with ThreadPoolExecutor(readers) as pool:
        threads = [threading.Thread(target=produce, args=(pool,), daemon=True) for _ in range(producers)]
        for thread in threads:
            thread.start()
        in_flight: list[tuple] = []
        pending: dict[int, tuple] = {}  # batches prepared out of turn, by index: yielded in order
        try:
            wanted, finished = 0, 0
            while True:
                while wanted not in pending and finished < producers:
                    with profile.timed("consumer_waits_for_producers"):
                        index, item = ready.get()
                    if index is None:
                        finished += 1
                    else:
                        pending[index] = item
                if wanted not in pending:
                    break
                item = pending.pop(wanted)
                wanted += 1
                if isinstance(item, BaseException):
                    while in_flight:  # the batches before it are done: hand them over first
                        yield _finish(*in_flight.pop(0))
                    raise item
                photos, good, pixels, event = item
                if cuda:
                    torch.cuda.current_stream(device).wait_event(event)
                    pixels.record_stream(torch.cuda.current_stream(device))
                with profile.timed("consumer_launches_model"):
                    features = forward(pixels) if len(good) else torch.zeros((0, 0), device=device)
                    host = torch.empty(features.shape, dtype=torch.float32, pin_memory=cuda)
                    host.copy_(features, non_blocking=cuda)
                copied = None
                if cuda:
                    copied = torch.cuda.Event()
                    copied.record()
                in_flight.append((photos, good, host, copied))
                ahead.release()
                if len(in_flight) > 2:  # the GPU stays two batches ahead of the host
                    with profile.timed("consumer_waits_for_gpu"):
                        finished_batch = _finish(*in_flight.pop(0))
                    with profile.timed("consumer_waits_for_caller"):  # the stage: rows, progress, the store writer's queue
                        yield finished_batch
            while in_flight:
                yield _finish(*in_flight.pop(0))
        finally:
            stop.set()
            for _ in threads:
                ahead.release()
            for thread in threads:
                thread.join(timeout=60)


class Profile:
    """Seconds per phase, summed over threads (producers run at once, so their sums can exceed the wall time).
    Host-side times: a GPU call counts the time to launch it, unless the phase waits for the GPU."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._lock = threading.Lock()

    def add(self, phase: str, seconds: float) -> None:
        with self._lock:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds

    @contextlib.contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(phase, time.perf_counter() - started)

    def rounded(self) -> dict[str, float]:
        return {k: round(v, 2) for k, v in sorted(self.seconds.items())}


def _prepare_batch(chunk: list, config: BackboneConfig, decoder: BatchDecoder | None, pool: Executor,
                   device: torch.device, stream, profile: Profile, method: str = "batched") -> tuple:
    """(photos, photos with pixels, their [n, 3, S, S] model input on the device, the event it is ready at)."""
    # a task per 8 photos: the executor's own cost per task is not small beside reading one header
    gpu = decoder is not None
    started = time.perf_counter()
    step = max(1, -(-len(chunk) // READ_TASKS_PER_BATCH))
    parts = pool.map(prepare_chunk, [chunk[i:i + step] for i in range(0, len(chunk), step)], [config] * len(chunk), [gpu] * len(chunk))
    photos = [photo for part in parts for photo in part]
    profile.add("producer_reads_headers_cpu_decodes", time.perf_counter() - started)
    on_gpu = [p for p in photos if p.jpeg is not None]
    with profile.timed("producer_nvjpeg"):
        decoded = _decode_batch(on_gpu, decoder, config) if on_gpu else []
    with profile.timed("producer_resizes"):
        gpu_pixels = resize_crop_normalise([d for d in decoded if d is not None], config, method)
    good = [p for p in photos if p.pixels is not None or p.jpeg is not None]
    slots = {id(p): i for i, p in enumerate(good)}
    pixels = torch.empty((len(good), 3, config.image_size, config.image_size), device=device)
    gpu_rows = [slots[id(p)] for p, d in zip(on_gpu, decoded) if d is not None]
    if gpu_rows:
        pixels[gpu_rows] = gpu_pixels
    cpu_photos = [p for p in good if p.pixels is not None]
    if cpu_photos:
        stacked = torch.from_numpy(np.stack([p.pixels for p in cpu_photos]))
        cuda = device.type == "cuda"
        pixels[[slots[id(p)] for p in cpu_photos]] = (stacked.pin_memory() if cuda else stacked).to(device, non_blocking=cuda)
    for p in photos:
        p.jpeg, p.pixels = None, None
    event = None
    if stream is not None:
        event = torch.cuda.Event()
        event.record(stream)
    return photos, good, pixels, event


def _finish(photos: list[Photo], good: list[Photo], host: torch.Tensor, copied) -> EmbeddedBatch:
    if copied is not None:
        copied.synchronize()
    matrix = host.numpy()
    rows = {id(p): i for i, p in enumerate(good)}
    return EmbeddedBatch(
        keys=[p.key for p in photos], decoded=[p.record for p in photos], errors=[p.error for p in photos],
        vectors=[matrix[rows[id(p)]] if id(p) in rows else None for p in photos],
        decoders=[p.decoder if id(p) in rows else None for p in photos],
    )


def _cpus() -> int:
    try:
        from snakeweb.threads import available_cpus
    except ImportError:
        return len(os.sched_getaffinity(0))
    return available_cpus()

