"""Backbone forwards on the CPU through OpenVINO: converted once (snakeweb.openvino_convert), cached on disk,
compiled here per purpose. Compiled blobs go to the converted folder's `compiled/` (OpenVINO's CACHE_DIR): a fresh
process imports them instead of compiling.

Neither cache is trusted on its size alone: a file overwritten in place keeps its size, and OpenVINO imports a
garbled model or blob without a word (a tester's same-size overwrite moved a prediction 0.953 -> 0.893, exit 0).
conversion.json records the sha256 of every file the conversion wrote and `compiled/digests.json` that of every
blob OpenVINO wrote; both are checked before use (once per process per file: ~1 GB/s, ~0.1 s for the default
backbone's three networks), and a mismatch converts the folder again or deletes `compiled/` and compiles again.

Precision is pinned to f32 (`INFERENCE_PRECISION_HINT`): on CPUs with AVX-512 bf16 or AMX OpenVINO would
otherwise pick bf16, and the store's vectors must match the torch path's (cosine >= 0.9999, tests/test_openvino.py).
The performance hint is chosen by purpose, in one place (PERFORMANCE_HINTS): the embed stage compiles for
throughput (one stream per core, each request single-threaded: no barrier waits, so two jobs sharing the
cores each keep their share), identify for latency (one request on every core).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from snakeweb.errors import SnakewebError
from snakeweb.openvino_cache import MODEL_FILE, compiled_cache_state, is_converted, record_blobs  # noqa: F401 (is_converted: API)
from snakeweb.openvino_convert import (  # noqa: F401 (the probes and cache lookups: this module's API too)
    COMPILED,
    cache_root,
    convert,
    converted_before,
    import_openvino,
    openvino_problem,
    openvino_version,
    outputs_for,
    safe_name,
    short_version,
)

log = logging.getLogger(__name__)

ENV_ENGINE = "SNAKEWEB_ENGINE"  # auto (default: OpenVINO on the CPU when installed), openvino, or torch
ENGINES = ("auto", "openvino", "torch")
PURPOSES = ("embed", "identify")
PERFORMANCE_HINTS = {"embed": "THROUGHPUT", "identify": "LATENCY"}
# images per inference request in throughput mode: small requests keep both streams busy to the end of a batch
# (EfficientNet-Lite0 on 2 cores: 200-210 img/s at 1, 2 or 4 a request, 85-99 for Lite2 at 4 vs 84-86 at 8-32)
THROUGHPUT_CHUNK = 4
# one network converted on 2 cores: 1.4-1.6 s measured with OpenVINO 2026.4 (EfficientNet-Lite0/1/2), 3.2 s for a
# ViT-S/14; 16-28 s with the versions of early 2026 on a busy machine. An estimate for the page, rounded up.
SECONDS_PER_CONVERSION = 4


INSTALL = "pip install openvino==2026.4.1"  # the version requirements.txt pins


def requested_engine() -> str:
    """`SNAKEWEB_ENGINE` (auto / openvino / torch); raises SnakewebError for anything else."""
    engine = os.environ.get(ENV_ENGINE, "auto").strip().lower() or "auto"
    if engine not in ENGINES:
        raise SnakewebError(f"{ENV_ENGINE}={engine!r} is not an engine; set it to one of {', '.join(ENGINES)}, or unset it.")
    return engine




@dataclass
class OpenVINOForward:
    """A converted backbone forward, compiled on first use for the current purpose (embed: throughput,
    identify: latency) and kept per purpose. Calls are serialised by a lock (a dashboard shares one loaded
    model between sessions); throughput mode splits a batch into requests that run on all streams."""

    folder: Path
    outputs: tuple[str, ...]
    threads: int
    purpose: str = "embed"
    _compiled: dict[str, Any] = field(default_factory=dict, repr=False)
    _queues: dict[str, Any] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def set_purpose(self, purpose: str, warm: bool = False) -> None:
        """Compile for `purpose` ("embed" or "identify") from now on; `warm` compiles now rather than at the
        first call. Raises SnakewebError for another purpose."""
        if purpose not in PURPOSES:
            raise SnakewebError(f"Unknown purpose {purpose!r}; use one of {', '.join(PURPOSES)}.")
        self.purpose = purpose
        if warm:
            self.compiled()

    def config(self, blob_cache: bool = True) -> dict[str, Any]:
        """The compile properties for the current purpose; the compiled-blob cache only where it can be written."""
        config = {
            "PERFORMANCE_HINT": PERFORMANCE_HINTS[self.purpose], "INFERENCE_NUM_THREADS": self.threads,
            "INFERENCE_PRECISION_HINT": "f32",
            # the OS balances threads between jobs better than fixed pins when two share the cores
            "ENABLE_CPU_PINNING": False,
        }
        if blob_cache and os.access(self.folder, os.W_OK):
            config["CACHE_DIR"] = str(self.folder / COMPILED)
        return config

    def _blob_cache_usable(self) -> bool:
        """Whether to hand OpenVINO the compiled-blob cache: it is writable and every blob in it matches the digest
        recorded when it was written (OpenVINO imports a garbled blob without a word). A blob that differs, or that
        has no record, makes the whole folder be deleted (it is only a cache) and compiled again; where it cannot
        be deleted, the model is compiled without the cache."""
        if "CACHE_DIR" not in self.config():
            return False
        compiled = self.folder / COMPILED
        state = compiled_cache_state(compiled)
        if state in ("empty", "ok"):
            return True
        if state == "damaged":
            log.warning("OpenVINO: a compiled blob in %s differs from the digest recorded when it was written; compiling again", compiled)
        else:
            log.info("OpenVINO: the compiled cache in %s is %s; compiling again", compiled, state)
        shutil.rmtree(compiled, ignore_errors=True)
        return not compiled.exists()

    def _compile(self, core):
        """Compile, one process at a time per model (OpenVINO's blob cache is not safe for two writers: two first
        compiles at once crashed 4 of 30 processes); a damaged, unrecorded or unwritable blob cache is bypassed.
        After a compile with the cache the blobs' digests are recorded beside them (still under the lock)."""
        with _exclusive(self.folder / ".compile.lock"):
            if self._blob_cache_usable():
                try:
                    compiled = core.compile_model(str(self.folder / MODEL_FILE), "CPU", self.config())
                except RuntimeError as exc:
                    log.warning("OpenVINO: the compiled cache in %s is unusable (%s); compiling without it", self.folder, str(exc)[:160])
                    shutil.rmtree(self.folder / COMPILED, ignore_errors=True)
                else:
                    record_blobs(self.folder / COMPILED)
                    return compiled
            try:
                return core.compile_model(str(self.folder / MODEL_FILE), "CPU", self.config(blob_cache=False))
            except RuntimeError as exc:
                raise SnakewebError(
                    f"OpenVINO cannot use the converted model in {self.folder} ({str(exc).splitlines()[0][:160]}); delete "
                    "that folder (it is converted again) or set SNAKEWEB_ENGINE=torch."
                ) from exc

    def compiled(self):
        """The compiled model for the current purpose (compiled, or imported from CACHE_DIR, once)."""
        if self.purpose not in self._compiled:
            ov = import_openvino()
            core = _core()
            started = time.perf_counter()
            compiled = self._compile(core)
            self._compiled[self.purpose] = compiled
            if self.purpose == "embed":
                self._queues[self.purpose] = ov.AsyncInferQueue(compiled, max(1, compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
            else:
                self._queues[self.purpose] = compiled.create_infer_request()
            log.info("OpenVINO: %s compiled for %s in %.2f s", self.folder.name, self.purpose, time.perf_counter() - started)
        return self._compiled[self.purpose]

    def __call__(self, pixels) -> dict[str, Any]:
        """{output name: float32 array [B, D]} for normalised pixels [B, 3, S, S] (a float32 numpy array)."""
        import numpy as np

        pixels = np.ascontiguousarray(pixels, dtype=np.float32)
        with self._lock:
            self.compiled()
            runner = self._queues[self.purpose]
            if self.purpose != "embed" or len(pixels) <= THROUGHPUT_CHUNK:
                request = runner if self.purpose != "embed" else runner[0]
                request.infer({0: pixels})
                return {name: request.get_output_tensor(i).data.copy() for i, name in enumerate(self.outputs)}
            chunks = [pixels[i:i + THROUGHPUT_CHUNK] for i in range(0, len(pixels), THROUGHPUT_CHUNK)]
            results: list = [None] * len(chunks)

            def done(request, position):
                results[position] = [request.get_output_tensor(i).data.copy() for i in range(len(self.outputs))]

            runner.set_callback(done)
            for position, chunk in enumerate(chunks):
                runner.start_async({0: chunk}, position)
            runner.wait_all()
            return {name: np.concatenate([r[i] for r in results]) for i, name in enumerate(self.outputs)}


@contextlib.contextmanager
def _exclusive(lock_path: Path):
    """An exclusive lock between processes on `lock_path` (filelock, as the store's writer lock); no lock where the
    file cannot be made (a read-only cache: nothing will be written there either)."""
    from filelock import FileLock

    lock = FileLock(lock_path)
    try:
        lock.acquire()
    except OSError:
        yield
        return
    try:
        yield
    finally:
        lock.release()


_CORE = None
_CORE_LOCK = threading.Lock()


def _core():
    global _CORE
    with _CORE_LOCK:
        if _CORE is None:
            _CORE = import_openvino().Core()
        return _CORE


def load_forward(model, source: str, name: str, fingerprint: str, image_size: int, threads: int, purpose: str = "embed") -> OpenVINOForward:
    """Convert (once) and wrap a loaded torch backbone for OpenVINO; compilation waits for the first call or
    `set_purpose(..., warm=True)`. Raises ImportError when OpenVINO is not installed."""
    folder = convert(model, source, name, fingerprint, image_size)
    forward = OpenVINOForward(folder=folder, outputs=outputs_for(source), threads=threads)
    forward.set_purpose(purpose)
    return forward


def load_message(config) -> str:
    """What a page says while the backbone of `config` (a models.BackboneConfig) loads: whether OpenVINO must
    convert it first on this machine, with a rough duration."""
    version = openvino_version()
    if version is None or requested_engine() == "torch":
        return "Loading the model with torch (OpenVINO is not in use; EfficientNets are traced at load, 5-20 s)…"
    from snakeweb.model_registry import part_names

    names = part_names(config)
    suffix = f"-ov{short_version(version)}"
    root = cache_root()
    missing = [n for n in names if not any(is_converted(f) for f in root.glob(f"{safe_name(n)}-*{suffix}"))] if root.is_dir() else names
    if missing:
        return (f"Loading the model (first time on this machine: converting {len(missing)} network(s) for OpenVINO, "
                f"~{SECONDS_PER_CONVERSION * len(missing)} s; later starts take a few seconds)…")
    return "Loading the model (OpenVINO, converted before: a few seconds)…"
