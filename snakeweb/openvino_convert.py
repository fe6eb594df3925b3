"""Converting a backbone's forward for OpenVINO, once, into an on-disk cache; and importing OpenVINO itself.

Each backbone's forward (EfficientNet-Lite: global-average-pooled features; DINOv2: the [CLS] token and the
mean patch token of `last_hidden_state`) is converted from the loaded torch module once, into

    ~/.cache/snakeweb/openvino/<model name>-<key>-ov<OpenVINO version>/   (SNAKEWEB_CACHE moves ~/.cache/snakeweb)

beside the converted offline weights. The key is a digest of the model fingerprint (which changes with the
weights), the outputs, the input size, CONVERSION_VERSION and OpenVINO's full version, so new weights or another
OpenVINO make a new folder. The conversion is written to a temporary folder and renamed, so a killed conversion
never leaves a half model; the sha256 of every file it wrote is recorded (snakeweb.openvino_cache checks them).
Compiling and running the converted forward is snakeweb.openvino_backend's work.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

from snakeweb.openvino_cache import MODEL_FILE, compiled_cache_state, file_digest, is_converted
from snakeweb.paths import unwritable_folder

log = logging.getLogger(__name__)

CONVERSION_VERSION = 1  # bump when the converted graph changes, so cached folders are rebuilt
COMPILED = "compiled"  # OpenVINO's CACHE_DIR inside a model folder: compiled blobs, and BLOB_DIGESTS beside them


def import_openvino():
    """`import openvino`, without its usage telemetry: `import openvino` loads its converter, which otherwise
    sends Google Analytics events (import, conversion) unless the user ran `opt_in_out --opt_out`; snakeweb
    runs offline on people's photos and sends nothing. The converter falls back to its own no-op stub when
    `openvino_telemetry` cannot be imported, so that import is blocked in this process (no file of the user's
    is touched). Raises ImportError when OpenVINO is not installed."""
    if "openvino" not in sys.modules and "openvino_telemetry" not in sys.modules:
        sys.modules["openvino_telemetry"] = None  # type: ignore[assignment]  # `import openvino_telemetry` -> ImportError
    import openvino

    return openvino


def openvino_problem() -> str | None:
    """Why OpenVINO cannot be used in this process, as words after "OpenVINO ": "is not installed", or "is installed
    but does not import (the reason)" (a broken install: a missing shared library raises OSError, a missing
    dependency ImportError); None when it imports."""
    try:
        import_openvino()
    except ModuleNotFoundError as exc:
        if exc.name == "openvino":
            return "is not installed"
        return f"is installed but does not import ({_said(exc)})"
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 (a broken install: OSError for a library, its own errors, even SystemExit)
        return f"is installed but does not import ({_said(exc)})"
    return None


def _said(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def openvino_version() -> str | None:
    """The installed OpenVINO's full version ("2026.4.1-22982-..."), or None when it cannot be used (not
    installed, or an install that does not import: `openvino_problem` says which)."""
    if openvino_problem() is not None:
        return None
    return str(import_openvino().get_version())


def cache_root() -> Path:
    """Where converted forwards are cached: `openvino/` in snakeweb's cache folder (SNAKEWEB_CACHE moves it)."""
    from snakeweb.offline_weights import default_cache_dir

    return default_cache_dir() / "openvino"


def short_version(full: str) -> str:
    """"2026.4.1" of OpenVINO's full version "2026.4.1-22982-...": the suffix of cache folder names."""
    return full.split("-")[0]


def model_folder(name: str, fingerprint: str, outputs: tuple[str, ...], image_size: int, version: str | None = None) -> Path:
    """The cache folder of one converted forward (it need not exist yet)."""
    version = version or openvino_version() or "none"
    key = hashlib.sha256(json.dumps([fingerprint, list(outputs), image_size, CONVERSION_VERSION, version]).encode()).hexdigest()[:16]
    return cache_root() / f"{safe_name(name)}-{key}-ov{short_version(version)}"


def converted_before(name: str, version: str) -> bool:
    """Whether the cache holds a converted forward of the model `name` for this OpenVINO version (any weights or
    input size) that will be used as it is: the folder naming of model_folder, read without importing OpenVINO. A
    folder whose files or compiled blobs differ from their recorded digests does not count (it is converted or
    compiled again at its first use)."""
    return any(is_converted(f) and compiled_cache_state(f / COMPILED) in ("empty", "ok")
               for f in cache_root().glob(f"{safe_name(name)}-*-ov{short_version(version)}"))


def safe_name(name: str) -> str:
    """A model name as a folder-name prefix: other characters become "_", at most 60."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:60]


def _vit_wrapper(model):
    import torch

    class VitFeatures(torch.nn.Module):
        """[CLS] token and mean patch token of the last hidden state: `cls` and `cls+mean` come from them."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            hidden = self.inner(pixel_values=x).last_hidden_state
            return hidden[:, 0], hidden[:, 1:].mean(dim=1)

    return VitFeatures(model).eval()


def outputs_for(source: str) -> tuple[str, ...]:
    """The converted graph's outputs for a backbone source: CNNs give `pool`, ViTs `cls` and `mean`."""
    return ("pool",) if source == "efficientnet" else ("cls", "mean")


def convert(model, source: str, name: str, fingerprint: str, image_size: int) -> Path:
    """Convert a loaded torch backbone's forward into the cache once; returns its folder (the cached one when
    it exists). Writes beside the target and renames, so a killed conversion leaves no half model and two
    processes converting at once both end with one whole folder. Raises whatever the conversion raises."""
    import torch

    ov = import_openvino()
    outputs = outputs_for(source)
    folder = model_folder(name, fingerprint, outputs, image_size)
    if is_converted(folder):
        return folder
    problem = unwritable_folder(folder.parent)
    if problem is not None:  # before saying "converting": nothing could be cached
        raise problem
    started = time.perf_counter()
    if folder.exists():  # say why a conversion the cache had is made again
        log.warning("OpenVINO: the converted %s in %s is incomplete or damaged (a file is missing or differs from what "
                    "its conversion recorded); converting it again", name, folder)
    else:
        log.warning("OpenVINO: converting %s once (cached in %s)", name, folder)
    from snakeweb.models import pool_features  # imported here: models loads this module's callers

    wrapper = pool_features(model) if source == "efficientnet" else _vit_wrapper(model)
    example = torch.zeros(2, 3, image_size, image_size)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes on shapes that are constant here (one input size)
        converted = ov.convert_model(wrapper, example_input=example, input=[ov.PartialShape([-1, 3, image_size, image_size])])
    for port, output_name in zip(converted.outputs, outputs):
        port.get_tensor().set_names({output_name})
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".convert-", dir=folder.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the cache folders beside it are not
    try:
        ov.save_model(converted, str(staging / MODEL_FILE), compress_to_fp16=False)  # f32 weights: the vectors must not move
        written = {f.name: file_digest(f) for f in sorted(staging.iterdir()) if f.is_file()}
        (staging / "conversion.json").write_text(json.dumps({
            "model": name, "fingerprint": fingerprint, "outputs": list(outputs), "image_size": image_size,
            "conversion_version": CONVERSION_VERSION, "openvino": openvino_version(), "torch": torch.__version__,
            "seconds": round(time.perf_counter() - started, 1),
            "sizes": {name: size for name, (size, _) in written.items()},
            "sha256": {name: digest for name, (_, digest) in written.items()},
        }, indent=1) + "\n")
        for attempt in range(3):
            try:
                os.replace(staging, folder)
                break
            except OSError:  # the folder exists: another process finished first (keep theirs), or it is damaged
                if is_converted(folder):
                    break
                if attempt == 2:  # a damaged folder keeps coming back: no OpenVINO (auto mode runs torch)
                    raise
                shutil.rmtree(folder, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.warning("OpenVINO: %s converted in %.1f s", name, time.perf_counter() - started)
    return folder
