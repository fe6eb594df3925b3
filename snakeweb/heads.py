"""Heads on frozen embeddings: linear (the paper's), a small MLP, kNN over the FAISS index, and a linear+kNN blend.

A head is trained by snakeweb.head_training; this module holds what a trained head is and how it runs, is
saved, loaded and applied to a store's observations.

A head file carries its `LabelMap`, feature kind and the backbone fingerprint it was trained for; loading it
against embeddings of another model or feature kind is refused. Heads see L2-normalised embeddings.

Training uses torch; a trained head is NumPy arrays (each linear layer's weight and bias), saved as safetensors
with its settings as JSON metadata, so loading and running one (`check`, `export`, `predict`, `identify`'s
decision) needs no torch. Head files of earlier versions (a `torch.save` payload) are still read, with torch.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from snakeweb.errors import SnakewebError, shell_word
from snakeweb.label_map import LabelMap
from snakeweb.options import SPLITS, TrainConfig  # defined there so the command line offers them without torch
from snakeweb.outputs import write_atomically
from snakeweb.vectors import l2_normalise

if TYPE_CHECKING:  # torch is imported by the functions that train

    from snakeweb.store import Store

log = logging.getLogger(__name__)
INDEX_HEADS = ("knn", "linear+knn")  # heads that vote with the store's FAISS index
HEAD_FORMAT = 3  # 3: safetensors of NumPy arrays + JSON metadata; 2 and before: a torch.save payload
SAFETENSORS_KEY = "snakeweb.head"  # the metadata entry holding the head's settings (JSON)


def _gelu(x: np.ndarray) -> np.ndarray:
    """torch.nn.GELU() (the exact, erf one) in NumPy."""
    from scipy.special import erf  # MLP heads only

    return (0.5 * x * (1.0 + erf(x / np.float32(np.sqrt(2.0))))).astype(np.float32)


@dataclass
class Head:
    kind: str
    label_map: LabelMap
    feature_kind: str
    model_fingerprint: str
    feature_dim: int
    config: TrainConfig
    # the trained part: (weight [out, in], bias [out]) of each linear layer, GELU between them (one for linear, two
    # for the MLP; dropout is off at inference); None for kNN
    layers: list[tuple[np.ndarray, np.ndarray]] | None = None
    # kNN: the reference image ids and their class ids (the vectors live in the FAISS index)
    reference_ids: np.ndarray | None = None
    reference_labels: np.ndarray | None = None
    history: dict[str, Any] = field(default_factory=dict)
    # fitted on validation after training, so probabilities (and the venom-aware rule that trusts them) are calibrated
    temperature: float = 1.0
    logit_offset: np.ndarray | None = None  # tau * log(class prior), subtracted from the logits
    blend_weight: float = 1.0  # linear+knn: p = w * p_linear + (1 - w) * p_knn
    venom_weight: float = 1.0  # the venom-aware rule's weight on venomous errors, chosen on validation by Track1
    # rank roll-up thresholds chosen on validation observations (snakeweb.answers.Thresholds.to_json); None = not chosen
    thresholds: dict | None = None
    saved_format: int = HEAD_FORMAT  # the format of the file it was loaded from (older ones need torch to read)
    # the store_id (run metadata) of the store whose vectors trained it: `check` fails a head.pt copied from another
    # store; None for a head saved before heads recorded it
    store_id: str | None = None

    @property
    def needs_index(self) -> bool:
        """Whether predictions read the store's index: kNN, and linear+kNN unless validation gave kNN no weight."""
        return self.kind == "knn" or (self.kind == "linear+knn" and self.blend_weight < 1.0)

    def predict_log_proba(self, vectors: np.ndarray, index=None, exclude_self_ids: np.ndarray | None = None) -> np.ndarray:
        """Log-probabilities [n, K] in label-map order. kNN needs the store's index (`snakeweb.vectors.open_index`,
        or a FAISS index); when the queries are themselves stored images, pass their ids as `exclude_self_ids` so
        an image never votes for itself."""
        x = l2_normalise(vectors)
        if x.ndim != 2 or x.shape[1] != self.feature_dim:
            raise SnakewebError(
                f"This head expects {self.feature_dim}-d features but got {x.shape[-1]}; rebuild the head for this store."
            )
        if self.kind == "knn":
            return self._knn_log_proba(x, index, exclude_self_ids)
        log_probs = _log_softmax(self.logits(x) / self.temperature)
        if self.kind == "linear+knn" and self.blend_weight < 1.0:
            knn = np.exp(self._knn_log_proba(x, index, exclude_self_ids))
            return np.log(self.blend_weight * np.exp(log_probs) + (1 - self.blend_weight) * knn).astype(np.float32)
        return log_probs

    def forward(self, x: np.ndarray) -> np.ndarray:
        """The trained part's logits of L2-normalised features (no logit adjustment, no temperature)."""
        assert self.layers is not None
        h = np.ascontiguousarray(x, dtype=np.float32) * np.float32(self.config.input_scale)
        for i, (weight, bias) in enumerate(self.layers):
            h = (_gelu(h) if i else h) @ weight.T + bias
        return h

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Adjusted, uncalibrated logits of L2-normalised features."""
        logits = self.forward(x)
        return logits - self.logit_offset if self.logit_offset is not None else logits

    def _knn_log_proba(self, x: np.ndarray, index, exclude_self_ids: np.ndarray | None) -> np.ndarray:
        if index is None:
            raise SnakewebError("The kNN head needs the store's FAISS index; run the index stage first.")
        k = self.config.knn_k
        sims, ids = index.search(x, k + (1 if exclude_self_ids is not None else 0))
        label_of = dict(zip(self.reference_ids.tolist(), self.label_map.to_indices(self.reference_labels).tolist()))
        scores = np.full((len(x), len(self.label_map)), 1e-6, dtype=np.float64)
        for row in range(len(x)):
            used = 0
            for sim, image_id in zip(sims[row], ids[row]):
                if image_id < 0 or image_id not in label_of:
                    continue
                if exclude_self_ids is not None and image_id == exclude_self_ids[row]:
                    continue
                if used == k:
                    break
                scores[row, label_of[image_id]] += np.exp((sim - 1.0) / self.config.knn_temperature)
                used += 1
        scores /= scores.sum(axis=1, keepdims=True)
        return np.log(scores).astype(np.float32)

    def save(self, path: Path) -> None:
        """Write the head as safetensors (arrays) with its settings as JSON metadata, atomically."""
        from safetensors.numpy import save

        settings = {
            "format": HEAD_FORMAT, "kind": self.kind, "class_ids": self.label_map.to_json(),
            "feature_kind": self.feature_kind, "model_fingerprint": self.model_fingerprint,
            "feature_dim": self.feature_dim, "config": asdict(self.config), "history": self.history,
            "layers": len(self.layers) if self.layers is not None else None,
            "temperature": self.temperature, "blend_weight": self.blend_weight,
            "venom_weight": self.venom_weight, "thresholds": self.thresholds, "store_id": self.store_id,
        }
        arrays = {}
        for i, (weight, bias) in enumerate(self.layers or []):
            arrays[f"layers.{i}.weight"], arrays[f"layers.{i}.bias"] = weight, bias
        for name in ("reference_ids", "reference_labels", "logit_offset"):
            if getattr(self, name) is not None:
                arrays[name] = getattr(self, name)
        data = save({k: np.ascontiguousarray(v) for k, v in arrays.items()},
                    metadata={SAFETENSORS_KEY: json.dumps(settings, default=_json_value)})
        write_atomically(Path(path), lambda tmp: Path(tmp).write_bytes(data))

    @classmethod
    def load(cls, path: Path, model_fingerprint: str | None = None, feature_kind: str | None = None) -> Head:
        """Load a head; refuse one trained for other embeddings than the store's."""
        payload = _read(Path(path))
        if model_fingerprint is not None and payload["model_fingerprint"] != model_fingerprint:
            raise SnakewebError(
                f"The head {path} was trained on embeddings of {payload['model_fingerprint']}, but this store was "
                f"embedded with {model_fingerprint}. Retrain it with `python -m pipelines train --store ...`."
            )
        if feature_kind is not None and payload["feature_kind"] != feature_kind:
            raise SnakewebError(
                f"The head {path} was trained on {payload['feature_kind']!r} features, but this store has "
                f"{feature_kind!r} features. Retrain it with `python -m pipelines train --store ...`."
            )
        known = TrainConfig.__dataclass_fields__
        config = TrainConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in payload["config"].items() if k in known})
        label_map = LabelMap.from_json(payload["class_ids"])
        return cls(
            kind=payload["kind"], label_map=label_map, feature_kind=payload["feature_kind"],
            model_fingerprint=payload["model_fingerprint"], feature_dim=payload["feature_dim"], config=config,
            layers=payload["layers"], reference_ids=payload.get("reference_ids"), reference_labels=payload.get("reference_labels"),
            history=payload["history"], temperature=float(payload.get("temperature", 1.0)),
            logit_offset=payload.get("logit_offset"), blend_weight=float(payload.get("blend_weight", 1.0)),
            venom_weight=float(payload.get("venom_weight", 1.0)), thresholds=payload.get("thresholds"),
            saved_format=int(payload.get("format", 1)), store_id=payload.get("store_id"),
        )


def _json_value(value):
    """NumPy scalars and arrays in a head's history, as JSON."""
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _read(path: Path) -> dict:
    """A head file's settings and arrays (`layers` as (weight, bias) pairs): safetensors, or an earlier torch.save."""
    unreadable = "Cannot read the head {path} ({exc}); run the train stage again."
    try:
        with open(path, "rb") as f:
            start = f.read(9)
    except OSError as exc:
        raise SnakewebError(unreadable.format(path=path, exc=exc)) from exc
    # safetensors opens with its JSON header's length (u64, little-endian) and then "{"; that length's first byte can
    # be 0x80 (1 head in 256), so the torch formats (a zip archive; a legacy pickle, 0x80) are tested only after it
    if start[8:9] != b"{" and (start[:2] == b"PK" or start[:1] == b"\x80"):
        return _read_torch(path, unreadable)
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            settings = json.loads((f.metadata() or {})[SAFETENSORS_KEY])
            arrays = {name: f.get_tensor(name) for name in f.keys()}
    except Exception as exc:  # safetensors raises its own error kinds for a damaged file; any of them means the same
        raise SnakewebError(unreadable.format(path=path, exc=str(exc) or type(exc).__name__)) from exc
    count = settings.pop("layers")
    settings["layers"] = None if count is None else [(arrays[f"layers.{i}.weight"], arrays[f"layers.{i}.bias"]) for i in range(count)]
    return settings | {name: arrays[name] for name in ("reference_ids", "reference_labels", "logit_offset") if name in arrays}


def _read_torch(path: Path, unreadable: str) -> dict:
    """A head saved by snakeweb before format 3 (torch.save of its settings and the trained module's state_dict)."""
    import pickle

    import torch

    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, EOFError, RuntimeError, pickle.UnpicklingError) as exc:
        raise SnakewebError(unreadable.format(path=path, exc=exc)) from exc
    state = payload.pop("state_dict")
    layers = None
    if state is not None:  # nn.Linear: weight, bias; the MLP's nn.Sequential: 0.weight, 0.bias, 3.weight, 3.bias
        prefixes = list(dict.fromkeys(name.rpartition(".")[0] for name in state))
        layers = [(state[f"{p}.weight" if p else "weight"].numpy().astype(np.float32),
                   state[f"{p}.bias" if p else "bias"].numpy().astype(np.float32)) for p in prefixes]
    for name in ("reference_ids", "reference_labels", "logit_offset"):
        if isinstance(payload.get(name), torch.Tensor):
            payload[name] = payload[name].numpy()
    return payload | {"layers": layers, "format": payload.get("format", 1)}


def load_head(store: Store, note: bool = True) -> Head:
    """The store's head, checked against the store's model, feature kind and identity.

    Raises SnakewebError when there is no head, or when head.pt was trained on another store's vectors (copied in
    from another store): its class ids, thresholds and kNN references belong to that store, so its answers here
    would be wrong without any sign. A head saved before heads recorded their store is used, with a printed note
    (`note=False` leaves it out, for `check`, which says it in its verdict)."""
    train = f"python -m pipelines train --store {shell_word(store.root)} --force"
    if not store.head_path.is_file():
        raise SnakewebError(f"No trained head in {store.root}; run `{train.removesuffix(' --force')}`.")
    head = Head.load(store.head_path, store.get_meta("model")["fingerprint"], store.get_meta("feature_kind"))
    store_id = store.get_meta("store_id")
    if head.store_id is not None and store_id is not None and head.store_id != store_id:
        raise SnakewebError(
            f"The head {store.head_path} was trained on another store's vectors (store_id {head.store_id}; this "
            f"store's is {store_id}), so its class ids and thresholds may not fit these photos. Train a head on this "
            f"store with `{train}`.")
    stale = (store.get_meta("head") or {}).get("stale")
    if stale and note:  # a removal (--remove-gone) since it was trained: its answers still stand, but say so
        print(f"note: the head is out of date: {stale}; `{train.removesuffix(' --force')}` trains it on the photos there now.")
    if head.store_id is None and note:
        print(f"note: the head {store.head_path} was saved before heads recorded which store trained them, so it "
              f"cannot be checked against this store; `{train}` records it.")
    return head


def split_condition(split: str | None) -> str:
    """SQL on `images i`: the images of one split's observations (any image for None). Raises SnakewebError for a
    split the store does not know."""
    if split is None:
        return "TRUE"
    if split not in SPLITS:
        raise SnakewebError(f"Unknown split {split!r}; use one of {', '.join(SPLITS)}.")
    return f"i.observation_id IN (SELECT observation_id FROM observations WHERE split = '{split}')"


def observation_probabilities(store: Store, aggregation: str = "mean-log", chunk: int = 4096,
                              split: str | None = None) -> tuple[list[str], np.ndarray, Head]:
    """(observation ids, class probabilities [m, K] in the head's label-map order, head) for every
    observation with at least one embedded image (of one split's observations with `split`: evaluating or
    exporting the 10k test observations of a SnakeCLEF-sized store then reads 10% of its vectors). Needs no
    torch, and no FAISS unless the head votes with an approximate (IVF) index."""
    from snakeweb.aggregate import ObservationCombiner
    from snakeweb.progress import tqdm
    from snakeweb.vectors import open_index

    store.require()
    head = load_head(store)
    index = open_index(store.index_path, batch_search=True) if head.needs_index else None
    where = split_condition(split)
    image_ids, vectors = store.embeddings(where)
    observations = store.query(
        f"SELECT i.image_id, i.observation_id FROM images i JOIN embeddings USING (image_id) WHERE {where} ORDER BY i.image_id"
    )["observation_id"].tolist()
    # each chunk's per-image log-probabilities go straight into the per-observation sums (never [n_images, K] at once)
    combiner = ObservationCombiner(observations, len(head.label_map), aggregation)
    for s in tqdm(range(0, len(vectors), chunk), desc="predict", unit="chunk"):
        combiner.add(s, head.predict_log_proba(vectors[s:s + chunk], index, image_ids[s:s + chunk]))
    observation_ids, probabilities = combiner.result()
    return observation_ids, probabilities, head


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return (shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))).astype(np.float32)
