"""Training a head (snakeweb.heads) on frozen embeddings, with torch.

Like DINOv2's linear evaluation (`eval/linear.py`), several learning rates and weight decays are trained together
and the best on validation is kept; a post-hoc logit adjustment for the long tail (Menon et al. 2021, "Long-tail
learning via logit adjustment"), the temperature, the kNN weight of the blend and the venom-aware rule's weight
are chosen on validation too. Test data is never seen here. Class ids become head indices here and only here
(`LabelMap`), and the trained layers leave as NumPy arrays, so a trained head runs without torch.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from snakeweb.errors import SnakewebError
from snakeweb.heads import INDEX_HEADS, Head
from snakeweb.label_map import LabelMap
from snakeweb.options import HEAD_KINDS, TrainConfig
from snakeweb.vectors import l2_normalise

if TYPE_CHECKING:
    import torch
    from torch import nn

log = logging.getLogger(__name__)
# SnakeCLEF scale (182k x 768, 1,784 classes; one epoch of one linear head ~14 s of fp32 GEMM here): above
# SWEEP_SAMPLE training rows the learning rates are swept on a stratified sample of that many rows, for at most
# SWEEP_SAMPLE_EPOCHS epochs (a slow rate that has not won by then loses), with the first weight decay only (0 vs
# 1e-4 moved validation accuracy by under 0.1 point there); the chosen head then continues on every row.
SWEEP_SAMPLE = 10_000
SWEEP_SAMPLE_EPOCHS = 8
PATIENCE_STEPS_PER_EPOCH = 13  # early-stopping patience is config.patience epochs of this many steps (HackerEarth-35)
# an evaluation counts as an improvement when validation loss falls by this fraction: a head that only sharpens
# its logits on a few images per class lowered val loss ~0.001 an epoch for hundreds of epochs (benchmarks/scale.py
# at --scale 0.05: 1,784 classes of 2-5 images) under the former absolute 1e-4
MIN_IMPROVEMENT = 1e-3
EARLY_STOPPING_VAL_ROWS = 5_000  # early stopping reads a stratified sample of a larger validation split


def _module(kind: str, dim: int, classes: int, hidden: int) -> nn.Module:
    """The trained part of a head (`linear+knn` trains a linear one)."""
    from torch import nn

    if kind in ("linear", "linear+knn"):
        return nn.Linear(dim, classes)
    if kind == "mlp":
        return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(0.2), nn.Linear(hidden, classes))
    raise SnakewebError(f"Unknown head {kind!r}; use one of {', '.join(HEAD_KINDS)}.")


def _layers(module: nn.Module) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (weight [out, in], bias [out]) of each linear layer of a trained module, in order, as float32 arrays."""
    from torch import nn

    return [(m.weight.detach().cpu().numpy().astype(np.float32), m.bias.detach().cpu().numpy().astype(np.float32))
            for m in module.modules() if isinstance(m, nn.Linear)]


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
    venomous_class_ids: set[int] | None = None,
    view_vectors: np.ndarray | None = None,
    view_class_ids: np.ndarray | None = None,
) -> Head:
    """Train a head on class ids (any integers): they are mapped to head indices here and only here.
    With `venomous_class_ids`, the venom-aware rule's weight is chosen on validation too. `view_vectors`
    (augmented views of training photos, e.g. their mirror images) are extra rows for the trained linear or
    MLP part only: the kNN references, the class prior and everything chosen on validation stay per photo.

    Linear and MLP: log-softmax + NLL (cross-entropy) with Adam, early stopping on validation loss when a
    validation split exists (else a fixed number of epochs), optionally class-balanced.
    """
    if len(train_vectors) == 0:
        raise SnakewebError("No labelled training images with embeddings; ingest labelled photos and run embed.")
    label_map = LabelMap.from_labels(train_class_ids)
    dim = int(train_vectors.shape[1])
    head = Head(config.kind, label_map, feature_kind, model_fingerprint, dim, config)
    if config.kind in INDEX_HEADS:
        if train_image_ids is None:
            raise ValueError(f"the {config.kind} head needs the training image ids")
        head.reference_ids = np.asarray(train_image_ids, dtype=np.int64)
        head.reference_labels = np.asarray(train_class_ids, dtype=np.int64)
    # validation images of classes the head never saw cannot be scored by it; they are left out
    seen = np.isin(val_class_ids, label_map.class_ids)
    if config.kind == "knn":
        if venomous_class_ids and seen.sum() >= 10:
            votes = _knn_probabilities(head, l2_normalise(val_vectors[seen]), train_vectors, train_image_ids)
            _choose_venom_weight(head, votes, label_map.to_indices(val_class_ids[seen]), venomous_class_ids)
        return head

    import torch

    # scaled in place: a second [n, D] copy is 2.2 GB for SnakeCLEF's 146k training vectors at 3840-d
    x_train = torch.from_numpy(l2_normalise(train_vectors)).mul_(config.input_scale)
    y_train = torch.from_numpy(label_map.to_indices(train_class_ids))
    counts = torch.bincount(y_train, minlength=len(label_map)).float().clamp(min=1)
    if view_vectors is not None and len(view_vectors):
        x_train = torch.cat([x_train, torch.from_numpy(l2_normalise(view_vectors)) * config.input_scale])
        y_train = torch.cat([y_train, torch.from_numpy(label_map.to_indices(view_class_ids))])
    x_val = torch.from_numpy(l2_normalise(val_vectors[seen])).mul_(config.input_scale) if seen.any() else None
    y_val = torch.from_numpy(label_map.to_indices(val_class_ids[seen])) if seen.any() else None

    weights = None
    if config.balanced:
        weights = counts.sum() / (len(label_map) * counts)
    grid = [(lr, wd) for lr in config.learning_rates for wd in config.weight_decays] if x_val is not None else [
        (config.learning_rates[len(config.learning_rates) // 2], config.weight_decays[0])]  # nothing to choose on
    history: dict[str, Any] = {}
    x_stop, y_stop = x_val, y_val
    if x_val is not None and len(y_val) > EARLY_STOPPING_VAL_ROWS:
        rows = _stratified_sample(y_val.numpy(), EARLY_STOPPING_VAL_ROWS, config.seed)
        x_stop, y_stop = x_val[rows], y_val[rows]
    if len(grid) > 1 and len(x_train) > SWEEP_SAMPLE:
        # SnakeCLEF scale: choose the learning rate on a stratified sample, then train only the chosen head on everything
        grid = list(dict.fromkeys((lr, config.weight_decays[0]) for lr, _ in grid))
        sample = _stratified_sample(y_train.numpy(), SWEEP_SAMPLE, config.seed)
        sweep_config = replace(config, max_epochs=min(config.max_epochs, SWEEP_SAMPLE_EPOCHS))
        modules, best, sweep_curves = _fit(sweep_config, grid, x_train[sample], y_train[sample], x_stop, y_stop, weights,
                                           len(label_map), progress)
        chosen, history["sweep"] = _choose(modules, best, grid, x_val, y_val)
        history["sweep_sample"] = len(sample)
        # the chosen head starts afresh on every row: starting from the sample's head ended 0.7 point worse (measured)
        grid = [grid[chosen]]
        if progress:  # the full run's epochs continue on the same progress bar after the sample sweep's
            progress = _offset_progress(progress, sweep_curves["epoch"][-1])
    modules, best, curves = _fit(config, grid, x_train, y_train, x_stop, y_stop, weights, len(label_map), progress)
    chosen = 0
    if x_val is not None and len(grid) > 1:
        chosen, history["sweep"] = _choose(modules, best, grid, x_val, y_val)
    head.layers = _layers(modules[chosen])
    epochs_run = curves["epoch"][-1]
    history.update(curves, epochs_run=epochs_run, best_evaluation=best[chosen]["evaluation"] or len(curves["epoch"]),
                   best_epoch=best[chosen]["epoch"] or epochs_run)
    history["learning_rate"], history["weight_decay"] = grid[chosen]
    head.history = history
    if x_val is not None and len(y_val) >= 10:
        # the kNN references are the training rows of x_train (scaled unit vectors, no longer needed for training):
        # the index normalises them in place instead of a normalised copy of train_vectors (2.2 GB at SnakeCLEF scale)
        references = x_train[:len(train_vectors)].numpy()
        _choose_on_validation(head, config, x_val.numpy() / config.input_scale, y_val.numpy(), counts.numpy(), val_vectors[seen],
                              references, train_image_ids, venomous_class_ids, overwrite_references=True)
    return head


def _offset_progress(progress, offset: int):
    return lambda epoch, total, train_loss, val_loss: progress(offset + epoch, total, train_loss, val_loss)


def _stratified_sample(labels: np.ndarray, size: int, seed: int) -> torch.Tensor:
    """Row indices: `size` rows spread over the classes in proportion, at least one of each class."""
    import torch

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    rank = np.empty(len(labels), np.int64)
    for cls_rows in np.split(order[np.argsort(labels[order], kind="stable")], np.cumsum(np.bincount(labels))[:-1]):
        rank[cls_rows] = np.arange(len(cls_rows))
    share = rank / np.bincount(labels)[labels]  # 0 for each class's first row, then evenly up to 1
    return torch.from_numpy(np.sort(np.argsort(share, kind="stable")[:size]))


def _fit(config: TrainConfig, grid: list[tuple[float, float]], x_train: torch.Tensor, y_train: torch.Tensor,
         x_val: torch.Tensor | None, y_val: torch.Tensor | None, weights: torch.Tensor | None, classes: int, progress):
    """Train one head per (learning rate, weight decay) together, each early-stopped on validation loss;
    returns the modules (each at its best evaluation), their best records and the loss curves (one point per
    evaluation, `epoch` giving where it fell)."""
    import torch
    from torch import nn

    torch.manual_seed(config.seed)
    modules = nn.ModuleList(_module(config.kind, x_train.shape[1], classes, config.hidden) for _ in grid)
    # fused: one pass over each tensor per step (3.3x faster on SnakeCLEF-sized heads here; same update to 1 ulp)
    optimiser = torch.optim.AdamW([{"params": m.parameters(), "lr": lr, "weight_decay": wd} for m, (lr, wd) in zip(modules, grid)],
                                  fused=True)
    loss_fn = nn.NLLLoss(weight=weights)
    generator = torch.Generator().manual_seed(config.seed)
    # Patience counts optimiser steps, so a SnakeCLEF-sized epoch (hundreds of steps) is not waited out 15 times:
    # validation is read every epoch, or every half-patience of steps when an epoch is longer than that.
    steps_per_epoch = -(-len(x_train) // config.batch_size)
    patience_steps = config.patience * PATIENCE_STEPS_PER_EPOCH
    period = min(steps_per_epoch, max(1, patience_steps // 2))
    patience = max(2, min(config.patience * -(-steps_per_epoch // period), -(-patience_steps // period)))
    max_steps = config.max_epochs * steps_per_epoch
    best = [{"loss": float("inf"), "state": None, "epoch": 0, "evaluation": 0, "stale": 0, "last": float("inf")} for _ in grid]
    curves: dict[str, list[float]] = {"epoch": [], "train_loss": [], "val_loss": [], "val_accuracy": []}
    step, period_loss, period_rows = 0, 0.0, 0
    # a head past its patience stops training (its best state is kept), so the sweep costs what is still learning
    live = list(range(len(grid)))
    while step < max_steps and live:
        modules.train()
        order = torch.randperm(len(x_train), generator=generator)
        for start in range(0, len(order), config.batch_size):
            batch = order[start:start + config.batch_size]
            optimiser.zero_grad()
            loss = sum(loss_fn(torch.log_softmax(modules[i](x_train[batch]), dim=1), y_train[batch]) for i in live)
            loss.backward()
            optimiser.step()
            step += 1
            period_loss += loss.item() / len(live) * len(batch)
            period_rows += len(batch)
            if step % period and step < max_steps:
                continue
            epoch = step // steps_per_epoch if step % steps_per_epoch == 0 else round(step / steps_per_epoch, 3)
            curves["epoch"].append(epoch)
            curves["train_loss"].append(period_loss / period_rows)
            period_loss, period_rows = 0.0, 0
            if x_val is None:
                if progress:
                    progress(epoch, config.max_epochs, curves["train_loss"][-1], None)
                if step >= max_steps:
                    break
                continue
            live = _evaluate(modules, best, live, x_val, y_val, epoch, len(curves["epoch"]), curves, patience)
            if progress:
                progress(epoch, config.max_epochs, curves["train_loss"][-1], curves["val_loss"][-1])
            modules.train()
            if step >= max_steps or not live:
                break
    for m, record in zip(modules, best):
        if record["state"] is not None:
            m.load_state_dict(record["state"])
    modules.eval()
    return modules, best, curves


def _evaluate(modules: nn.ModuleList, best: list[dict], live: list[int], x_val: torch.Tensor, y_val: torch.Tensor, epoch: float,
              evaluation: int, curves: dict, patience: int) -> list[int]:
    """Validation loss of the heads still training: keep each one's best state; returns those still live."""
    import torch
    from torch import nn

    modules.eval()
    accuracies = []
    with torch.inference_mode():
        for i in live:
            log_probs = torch.log_softmax(modules[i](x_val), dim=1)
            record, loss = best[i], float(nn.functional.nll_loss(log_probs, y_val))
            accuracies.append(float((log_probs.argmax(1) == y_val).float().mean()))
            record["last"] = loss
            if loss < record["loss"] * (1 - MIN_IMPROVEMENT):
                record.update(loss=loss, state=copy.deepcopy(modules[i].state_dict()), epoch=epoch, evaluation=evaluation, stale=0)
            else:
                record["stale"] += 1
    curves["val_loss"].append(min(record["last"] for record in best))
    curves["val_accuracy"].append(max(accuracies))
    return [i for i in live if best[i]["stale"] < patience]


def _choose(modules: nn.ModuleList, best: list[dict], grid: list[tuple[float, float]], x_val: torch.Tensor,
            y_val: torch.Tensor) -> tuple[int, list[dict]]:
    """The most accurate head on validation (ties: lower validation loss), and the sweep's table."""
    import torch

    with torch.inference_mode():
        scores = [(float((m(x_val).argmax(1) == y_val).float().mean()), -record["loss"]) for m, record in zip(modules, best)]
    chosen = max(range(len(grid)), key=lambda i: scores[i])
    return chosen, [{"lr": lr, "weight_decay": wd, "val_accuracy": sc[0], "val_loss": -sc[1], "best_epoch": record["epoch"]}
                    for (lr, wd), sc, record in zip(grid, scores, best)]


def _choose_on_validation(head: Head, config: TrainConfig, x_val: np.ndarray, y_val: np.ndarray, counts: np.ndarray,
                          val_vectors: np.ndarray, train_vectors: np.ndarray, train_image_ids: np.ndarray | None,
                          venomous_class_ids: set[int] | None, overwrite_references: bool = False) -> None:
    """Logit adjustment (by mean of accuracy and macro-F1), then temperature (by NLL, kept only if it lowers NLL held
    out across folds: `calibration.choose_temperature`), then the kNN blend weight, then the venom-aware rule's weight
    (by the official Track1)."""
    from sklearn.metrics import f1_score

    from snakeweb.calibration import choose_temperature, softmax

    def quality(predicted: np.ndarray) -> float:
        return ((predicted == y_val).mean() + f1_score(y_val, predicted, average="macro")) / 2

    log_prior = np.log(counts / counts.sum()).astype(np.float32)
    raw = head.logits(x_val)
    taus = {tau: quality((raw - tau * log_prior).argmax(1)) for tau in config.logit_adjustments}
    tau = max(taus, key=lambda t: (taus[t], -t))
    head.logit_offset = (tau * log_prior).astype(np.float32) if tau else None
    logits = raw - head.logit_offset if tau else raw  # = head.logits(x_val), without a second pass
    # fitted by NLL, kept only if it lowers NLL held out across folds; ECE before and after is recorded, and a
    # temperature that raised it is said (`temperature_note`), not kept in silence (calibration.choose_temperature)
    choice = choose_temperature(logits, y_val, seed=config.seed)
    head.temperature = choice.temperature
    head.history.update(
        logit_adjustment=tau, logit_adjustment_val_quality={str(k): round(v, 4) for k, v in taus.items()},
        temperature=head.temperature, temperature_fitted=choice.fitted, val_ece_before=choice.ece_before,
        val_ece_after=choice.ece_after, val_ece_worsened=choice.ece_worsened, val_nll_before=choice.nll_before,
        val_nll_after=choice.nll_after, val_nll_held_out_fitted=choice.held_out_nll_fitted, temperature_folds=choice.folds,
        temperature_note=choice.note,
    )
    if choice.note:
        log.warning("train: %s", choice.note)
    probabilities = softmax(logits, head.temperature)
    if head.kind == "linear+knn":
        knn = _knn_probabilities(head, x_val, train_vectors, train_image_ids, overwrite_references)
        weights = {w: quality((w * probabilities + (1 - w) * knn).argmax(1)) for w in (*config.blend_weights, 1.0)}
        head.blend_weight = max(weights, key=lambda w: (weights[w], w))
        head.history["blend_weight_val_quality"] = {str(k): round(v, 4) for k, v in weights.items()}
        probabilities = head.blend_weight * probabilities + (1 - head.blend_weight) * knn
    if venomous_class_ids:
        _choose_venom_weight(head, probabilities, y_val, venomous_class_ids)


def _knn_probabilities(head: Head, x_val: np.ndarray, train_vectors: np.ndarray, train_image_ids: np.ndarray,
                       overwrite: bool = False) -> np.ndarray:
    """kNN vote probabilities of normalised validation features over an index of the training references (with
    `overwrite`, `train_vectors` are normalised in place)."""
    from snakeweb.index import build_index, on_gpu

    return np.exp(head._knn_log_proba(x_val, on_gpu(build_index(train_image_ids, train_vectors, overwrite=overwrite)), None))


def _choose_venom_weight(head: Head, probabilities: np.ndarray, y_val: np.ndarray, venomous_class_ids: set[int]) -> None:
    from snakeweb.decisions import choose_venom_weight

    venomous = np.isin(head.label_map.class_ids, list(venomous_class_ids))
    head.venom_weight, track1 = choose_venom_weight(probabilities, y_val, venomous)
    head.history["venom_weight_val_track1"] = {str(k): v for k, v in track1.items()}
