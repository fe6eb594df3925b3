"""Heads on frozen embeddings: linear (the paper's), a small MLP, and kNN over the FAISS index.

A head file carries its `LabelMap`, feature kind and the backbone fingerprint it was trained for; loading it
against embeddings of another model or feature kind is refused. Heads see L2-normalised embeddings.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from snakeweb.embed import l2_normalise
from snakeweb.errors import SnakewebError
from snakeweb.species import LabelMap
from snakeweb.store import write_atomically

log = logging.getLogger(__name__)
HEAD_KINDS = ("linear", "mlp", "knn")
HEAD_FORMAT = 1


@dataclass
class TrainConfig:
    kind: str = "linear"
    max_epochs: int = 1000  # a cap; early stopping on validation loss decides
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 256
    patience: int = 15  # epochs without validation improvement before stopping
    balanced: bool = False  # weight classes by inverse frequency
    hidden: int = 1024  # MLP width
    # Cosine similarity of L2-normalised features lies in [-1, 1]; logits need a wider range to become
    # confident, so linear/MLP inputs are scaled by this (learned biases and weights absorb the rest).
    input_scale: float = 10.0
    knn_k: int = 10
    knn_temperature: float = 0.05
    seed: int = 0


def _module(kind: str, dim: int, classes: int, hidden: int) -> nn.Module:
    if kind == "linear":
        return nn.Linear(dim, classes)
    if kind == "mlp":
        return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(0.2), nn.Linear(hidden, classes))
    raise SnakewebError(f"Unknown head {kind!r}; use one of {', '.join(HEAD_KINDS)}.")


@dataclass
class Head:
    kind: str
    label_map: LabelMap
    feature_kind: str
    model_fingerprint: str
    feature_dim: int
    config: TrainConfig
    module: nn.Module | None = None
    # kNN: the reference image ids and their class ids (the vectors live in the FAISS index)
    reference_ids: np.ndarray | None = None
    reference_labels: np.ndarray | None = None
    history: dict[str, Any] = field(default_factory=dict)
    # fitted on validation after training, so probabilities (and the venom-aware rule that trusts them) are calibrated
    temperature: float = 1.0

    def predict_log_proba(self, vectors: np.ndarray, index=None, exclude_self_ids: np.ndarray | None = None) -> np.ndarray:
        """Log-probabilities [n, K] in label-map order. kNN needs the store's FAISS index; when the queries
        are themselves stored images, pass their ids as `exclude_self_ids` so an image never votes for itself."""
        x = l2_normalise(vectors)
        if x.ndim != 2 or x.shape[1] != self.feature_dim:
            raise SnakewebError(
                f"This head expects {self.feature_dim}-d features but got {x.shape[-1]}; rebuild the head for this store."
            )
        if self.kind == "knn":
            return self._knn_log_proba(x, index, exclude_self_ids)
        assert self.module is not None
        self.module.eval()
        with torch.inference_mode():
            logits = self.module(torch.from_numpy(x) * self.config.input_scale)
            return torch.log_softmax(logits / self.temperature, dim=1).numpy()

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
        payload = {
            "format": HEAD_FORMAT, "kind": self.kind, "class_ids": self.label_map.to_json(),
            "feature_kind": self.feature_kind, "model_fingerprint": self.model_fingerprint,
            "feature_dim": self.feature_dim, "config": asdict(self.config), "history": self.history,
            "state_dict": self.module.state_dict() if self.module is not None else None,
            "reference_ids": self.reference_ids, "reference_labels": self.reference_labels,
            "temperature": self.temperature,
        }
        write_atomically(Path(path), lambda tmp: torch.save(payload, tmp))

    @classmethod
    def load(cls, path: Path, model_fingerprint: str | None = None, feature_kind: str | None = None) -> Head:
        """Load a head; refuse one trained for other embeddings than the store's."""
        try:
            payload = torch.load(path, map_location="cpu", weights_only=False)
        except (OSError, EOFError, RuntimeError) as exc:
            raise SnakewebError(f"Cannot read the head {path} ({exc}); run the train stage again.") from exc
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
        config = TrainConfig(**payload["config"])
        label_map = LabelMap.from_json(payload["class_ids"])
        module = None
        if payload["state_dict"] is not None:
            module = _module(payload["kind"], payload["feature_dim"], len(label_map), config.hidden)
            module.load_state_dict(payload["state_dict"])
            module.eval()
        return cls(
            kind=payload["kind"], label_map=label_map, feature_kind=payload["feature_kind"],
            model_fingerprint=payload["model_fingerprint"], feature_dim=payload["feature_dim"], config=config,
            module=module, reference_ids=payload["reference_ids"], reference_labels=payload["reference_labels"],
            history=payload["history"], temperature=float(payload.get("temperature", 1.0)),
        )


def train_head(
    train_vectors: np.ndarray,
    train_class_ids: np.ndarray,
    val_vectors: np.ndarray,
    val_class_ids: np.ndarray,
    feature_kind: str,
    model_fingerprint: str,
    config: TrainConfig,
    train_image_ids: np.ndarray | None = None,
    progress=None,
) -> Head:
    """Train a head on class ids (any integers): they are mapped to head indices here and only here.

    Linear and MLP: log-softmax + NLL (cross-entropy) with Adam, early stopping on validation loss when a
    validation split exists (else a fixed number of epochs), optionally class-balanced.
    """
    if len(train_vectors) == 0:
        raise SnakewebError("No labelled training images with embeddings; ingest labelled photos and run embed.")
    label_map = LabelMap.from_labels(train_class_ids)
    dim = int(train_vectors.shape[1])
    head = Head(config.kind, label_map, feature_kind, model_fingerprint, dim, config)
    if config.kind == "knn":
        if train_image_ids is None:
            raise ValueError("the kNN head needs the training image ids")
        head.reference_ids = np.asarray(train_image_ids, dtype=np.int64)
        head.reference_labels = np.asarray(train_class_ids, dtype=np.int64)
        return head

    torch.manual_seed(config.seed)
    x_train = torch.from_numpy(l2_normalise(train_vectors)) * config.input_scale
    y_train = torch.from_numpy(label_map.to_indices(train_class_ids))
    # validation images of classes the head never saw cannot be scored by it; they are left out
    seen = np.isin(val_class_ids, label_map.class_ids)
    x_val = torch.from_numpy(l2_normalise(val_vectors[seen])) * config.input_scale if seen.any() else None
    y_val = torch.from_numpy(label_map.to_indices(val_class_ids[seen])) if seen.any() else None

    weights = None
    if config.balanced:
        counts = torch.bincount(y_train, minlength=len(label_map)).float().clamp(min=1)
        weights = counts.sum() / (len(label_map) * counts)
    module = _module(config.kind, dim, len(label_map), config.hidden)
    optimiser = torch.optim.Adam(module.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    loss_fn = nn.NLLLoss(weight=weights)
    generator = torch.Generator().manual_seed(config.seed)
    best_loss, best_state, best_epoch, stale = float("inf"), None, 0, 0
    history: dict[str, list] = {"train_loss": [], "val_loss": [], "val_accuracy": []}
    for epoch in range(config.max_epochs):
        module.train()
        order = torch.randperm(len(x_train), generator=generator)
        total = 0.0
        for start in range(0, len(order), config.batch_size):
            batch = order[start:start + config.batch_size]
            optimiser.zero_grad()
            loss = loss_fn(torch.log_softmax(module(x_train[batch]), dim=1), y_train[batch])
            loss.backward()
            optimiser.step()
            total += loss.item() * len(batch)
        history["train_loss"].append(total / len(order))
        if x_val is None:
            if progress:
                progress(epoch + 1, config.max_epochs, history["train_loss"][-1], None)
            continue
        module.eval()
        with torch.inference_mode():
            log_probs = torch.log_softmax(module(x_val), dim=1)
            val_loss = float(nn.functional.nll_loss(log_probs, y_val))
            val_accuracy = float((log_probs.argmax(1) == y_val).float().mean())
        history["val_loss"].append(val_loss)
        history["val_accuracy"].append(val_accuracy)
        if progress:
            progress(epoch + 1, config.max_epochs, history["train_loss"][-1], val_loss)
        if val_loss < best_loss - 1e-4:
            best_loss, best_state, best_epoch, stale = val_loss, copy.deepcopy(module.state_dict()), epoch + 1, 0
        else:
            stale += 1
            if stale >= config.patience:
                break
    if best_state is not None:
        module.load_state_dict(best_state)
    module.eval()
    history["best_epoch"] = best_epoch or len(history["train_loss"])
    history["epochs_run"] = len(history["train_loss"])
    head.module, head.history = module, history
    if x_val is not None and len(y_val) >= 10:
        from snakeweb.calibration import expected_calibration_error, fit_temperature, softmax

        with torch.inference_mode():
            val_logits = module(x_val).numpy()
        truth = y_val.numpy()
        head.temperature = fit_temperature(val_logits, truth)
        history["temperature"] = head.temperature
        history["val_ece_before"] = expected_calibration_error(softmax(val_logits), truth)
        history["val_ece_after"] = expected_calibration_error(softmax(val_logits, head.temperature), truth)
    return head
