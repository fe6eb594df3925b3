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


def check_model_folder(folder: Path) -> None:
    """Raise ModelFolderError when `folder` cannot hold a DINOv2 model snakeweb can read: config.json missing,
    unreadable, not a JSON object, or with a model_type other than dinov2 (snakeweb's features are DINOv2's [CLS] and
    patch tokens at 224 px: another ViT loads, then fails or misreads them), no weights file, or a safetensors file
    whose header is damaged or whose size is not what its header says (cut short, or not safetensors at all). Cheap
    (reads config.json and the safetensors headers; imports neither torch nor transformers), so the command line runs it
    before any store is made; what only loading shows (weights that do not fit the config) is said by
    load_model_folder."""
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
    if model_type != "dinov2":
        raise ModelFolderError(folder, f"its config.json names model_type {model_type!r}, and snakeweb reads DINOv2 models "
                                       "only (model_type dinov2)")
    if not any((Path(folder) / name).is_file() for name in WEIGHT_FILES):
        raise ModelFolderError(folder, f"it holds no weights ({' or '.join(WEIGHT_FILES[::2])})")
    for weights in _safetensors_files(Path(folder)):
        problem = _safetensors_problem(weights)
        if problem:
            raise ModelFolderError(folder, f"its weights file {weights.name} {problem}")


def _safetensors_files(folder: Path) -> list[Path]:
    """The safetensors files a folder's weights are in: model.safetensors, or the shards its index names."""
    import json

    if (folder / "model.safetensors").is_file():
        return [folder / "model.safetensors"]
    index = folder / "model.safetensors.index.json"
    if not index.is_file():
        return []
    try:
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelFolderError(folder, f"its model.safetensors.index.json cannot be read ({exc})") from exc
    missing = [name for name in shards if not (folder / name).is_file()]
    if missing:
        raise ModelFolderError(folder, f"the weight shards {', '.join(missing[:3])} its index names are missing")
    return [folder / name for name in shards]


def _safetensors_problem(path: Path) -> str | None:
    """Why a safetensors file cannot be whole, from its header alone (the format: an 8-byte little-endian header length,
    a JSON header giving each tensor's byte range, then the data: https://github.com/huggingface/safetensors), or None."""
    import json

    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            start = handle.read(8)
            length = int.from_bytes(start, "little") if len(start) == 8 else -1
            if length <= 0 or 8 + length > size or length > 100_000_000:
                return "is not a safetensors file (no header), or is cut short"
            header = json.loads(handle.read(length).decode("utf-8"))
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    except (UnicodeDecodeError, ValueError):
        return "has a damaged header (not safetensors JSON)"
    try:
        end = max((int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"), default=0)
    except (TypeError, KeyError, IndexError, ValueError, AttributeError):
        return "has a damaged header (tensors without byte ranges)"
    if 8 + length + end != size:
        return f"is {size:,} bytes where its header says {8 + length + end:,}: cut short or damaged"
    return None


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
