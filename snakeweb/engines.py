"""Which engine runs a backbone's forward on the CPU: OpenVINO where it is installed and converts the model
(snakeweb/openvino_backend.py), else torch, said once per process and reason. `snakeweb.models.load_backbone`
asks here; `SNAKEWEB_ENGINE` (auto / openvino / torch) chooses."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from snakeweb.errors import SnakewebError

if TYPE_CHECKING:
    from snakeweb.models import LoadedBackbone

log = logging.getLogger(__name__)


def engine_label(loaded: LoadedBackbone) -> str:
    """What runs a loaded backbone's forward on CPU tensors, as the store and identify's provenance record it."""
    from importlib import metadata

    if loaded.openvino is not None:
        return f"openvino {metadata.version('openvino')} (f32)"
    if loaded.cpu_runner is not None:
        return "torch (TorchScript frozen)"
    return "torch"


_SAID_NO_OPENVINO: list[bool] = []  # the fallback is said once a process
_SAID_CONVERSION_FAILURES: set[str] = set()


def use_openvino(device: str) -> bool:
    """OpenVINO for this load? Only on the CPU, and only when installed (else torch, with a log line);
    `SNAKEWEB_ENGINE=openvino` makes a missing OpenVINO an error, `torch` turns it off."""
    from snakeweb.openvino_backend import ENV_ENGINE, INSTALL, openvino_problem, requested_engine

    engine = requested_engine()
    if engine == "torch" or device != "cpu":
        return False
    problem = openvino_problem()
    if problem is not None:
        if engine == "openvino":
            raise SnakewebError(f"{ENV_ENGINE}=openvino but OpenVINO {problem}; `{INSTALL}`, or unset {ENV_ENGINE}.")
        if not _SAID_NO_OPENVINO:
            log.warning("OpenVINO %s: the backbone runs with torch; `%s` makes the CPU path ~2x faster "
                        "(SNAKEWEB_ENGINE=torch silences this)", problem, INSTALL)
            _SAID_NO_OPENVINO.append(True)
        return False
    return True


def attach_openvino(loaded: LoadedBackbone, weights_fingerprint: str, purpose: str) -> bool:
    """Give `loaded` its OpenVINO forward; False (and torch stays) when the conversion fails in auto mode."""
    from snakeweb import threads
    from snakeweb.openvino_backend import load_forward, requested_engine

    try:
        loaded.openvino = load_forward(loaded.model, loaded.config.source, loaded.config.name, weights_fingerprint,
                                       loaded.config.image_size, threads.inference_threads(), purpose)
        return True
    except Exception as exc:
        if requested_engine() == "openvino":
            raise SnakewebError(f"OpenVINO could not convert {loaded.config.name} ({type(exc).__name__}: {exc}); "
                                "unset SNAKEWEB_ENGINE to fall back to torch.") from exc
        reason = f"{type(exc).__name__}: {str(exc)[:200]}"
        if isinstance(exc, OSError) and exc.filename:  # a cache that cannot be written: say where, in words
            why = "a file stands where a folder is needed" if isinstance(exc, FileExistsError) else exc.strerror
            reason = f"its cache cannot be written at {exc.filename}: {why or exc}; set SNAKEWEB_CACHE to a writable folder"
        if reason not in _SAID_CONVERSION_FAILURES:  # once per reason, not once per network
            log.warning("OpenVINO could not convert %s (%s); running it with torch", loaded.config.name, reason)
            _SAID_CONVERSION_FAILURES.add(reason)
        return False
