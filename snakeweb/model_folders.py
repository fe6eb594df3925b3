"""Local transformers model folders (a user's `--model FOLDER`, and the converted offline weights): checked cheaply
before any store is touched (`check_model_folder`: config.json and a weights file, no torch), and loaded with every
failure said as one sentence (`load_model_folder`), including the loads transformers completes without an error
but that would give wrong vectors (tensors left at random values, a model that reads no pixels)."""

from __future__ import annotations

from pathlib import Path

from snakeweb.errors import SnakewebError

# what `save_pretrained` writes (one file, or shards and their index); a folder with none of them has no weights
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
MODEL_FOLDER_ADVICE = ("give a folder written by transformers' save_pretrained of a DINOv2 model (config.json with "
                       "model_type dinov2, and model.safetensors), or a registry name such as dinov2-small-offline")


class ModelFolderError(SnakewebError):
    """A local model folder that cannot be loaded. `reason` says what is wrong with it (for callers that phrase their
    own advice, as identify does for a store's recorded folder); the message adds what to give instead."""

    def __init__(self, folder: Path, reason: str) -> None:
        self.folder, self.reason = Path(folder), reason
        super().__init__(f"The model folder {folder} cannot be used: {reason}; {MODEL_FOLDER_ADVICE}.")


def known_model_types() -> set[str]:
    """The model_type values this transformers knows. Its generated table imports without torch (~0.8 s); an older
    transformers without that module has the same table where importing it brings torch in."""
    try:
        from transformers.models.auto.auto_mappings import CONFIG_MAPPING_NAMES
    except ImportError:
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
    return set(CONFIG_MAPPING_NAMES)


def check_model_folder(folder: Path) -> None:
    """Raise ModelFolderError when `folder` cannot hold a transformers model: config.json missing, unreadable, not a
    JSON object, without a string model_type or with one transformers does not know, or no weights file. Cheap (reads
    config.json and lists the folder; torch is not imported), so the command line runs it before any store is made;
    what only loading shows (weights that do not fit the config) is said by load_backbone."""
    import json

    config = Path(folder) / "config.json"
    if not config.is_file():
        raise ModelFolderError(folder, "it has no config.json")
    try:
        text = config.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelFolderError(folder, f"its config.json cannot be read ({getattr(exc, 'strerror', None) or exc})") from exc
    try:
        settings = json.loads(text)
    except ValueError as exc:
        raise ModelFolderError(folder, f"its config.json is not JSON ({exc})") from exc
    if not isinstance(settings, dict):
        raise ModelFolderError(folder, f"its config.json holds a JSON {type(settings).__name__}, not an object of settings")
    model_type = settings.get("model_type")
    if not isinstance(model_type, str) or not model_type.strip():
        raise ModelFolderError(folder, "its config.json has no model_type")
    if model_type not in known_model_types():
        raise ModelFolderError(folder, f"its config.json names model_type {model_type!r}, which transformers does not know")
    if not any((Path(folder) / name).is_file() for name in WEIGHT_FILES):
        raise ModelFolderError(folder, f"it holds no weights ({' or '.join(WEIGHT_FILES[::2])})")


def load_model_folder(folder: Path):
    """AutoModel of a local folder (ours or a user's), every failure as ModelFolderError: transformers says a bad
    folder through many exception types (OSError, ValueError, RuntimeError, safetensors' and huggingface_hub's own),
    and a model whose weights leave parts of it at random values, or that reads no pixels, would give wrong vectors
    without any error."""
    import inspect

    from transformers import AutoModel

    check_model_folder(folder)
    try:
        model, info = AutoModel.from_pretrained(folder, attn_implementation="sdpa", output_loading_info=True)
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:
        first_line = (str(exc).strip().splitlines() or [""])[0][:300]
        raise ModelFolderError(folder, f"transformers could not load it ({type(exc).__name__}: {first_line})") from exc
    # the mask token serves masked-image pre-training only; converted weights may leave it out
    missing = [k for k in info.get("missing_keys", ()) if not k.endswith("mask_token")]
    if missing:
        raise ModelFolderError(folder, f"its weights do not fill the {type(model).__name__} its config.json describes "
                                       f"({len(missing)} tensor(s) missing, e.g. {sorted(missing)[0]})")
    if "pixel_values" not in inspect.signature(model.forward).parameters or not hasattr(model.config, "hidden_size"):
        raise ModelFolderError(folder, f"it holds a {type(model).__name__}, which does not embed images")
    return model
