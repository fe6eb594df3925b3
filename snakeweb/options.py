"""The names the library's options take (aggregations, answer ranks, range modes, decision rules, head kinds) and
the head's training settings with their defaults.

They live here, in a module that imports only the standard library, so that `python -m pipelines --help`,
argument errors and the light commands (`score`) can offer them as argparse choices and defaults without
importing NumPy, pandas or torch. This is their one definition: `snakeweb.aggregate`, `snakeweb.answers`,
`snakeweb.decisions` and `snakeweb.heads` import them from here (and so still export them under their old names).
"""

from __future__ import annotations

from dataclasses import dataclass

from snakeweb.errors import SnakewebError

AGGREGATIONS = ("mean-log", "mean-prob", "mode")  # how one observation's photos are combined (snakeweb.aggregate)
# the aggregations that give probabilities; mode gives vote shares (see require_probabilities)
PROBABILITY_AGGREGATIONS = ("mean-log", "mean-prob")
RANKS = ("species", "genus", "family")  # the ranks an answer can name (snakeweb.answers)
RANGE_MODES = ("prior", "filter")  # what the range check does with a country (snakeweb.answers)
DECISIONS = ("argmax", "cost")  # SnakeCLEF decision rules (snakeweb.decisions)
HEAD_KINDS = ("linear", "mlp", "knn", "linear+knn")  # heads on frozen embeddings (snakeweb.heads)
SPLITS = ("train", "val", "test", "unlabelled")  # an observation's split, as the store records it (snakeweb.ingest)


def require_probabilities(aggregation: str, what: str) -> None:
    """Raises SnakewebError when `aggregation` is `mode` and `what` (an answer, the venom-aware decision, a country
    prior) reads the combined values as probabilities. The paper's majority vote gives vote shares: one photo's vote
    is 100% for its top species, so a photo the head gives 30% copperhead became a certain harmless snake with
    p(venomous) 0. The vote stays for what reads only its winner: a submission's argmax."""
    if aggregation not in AGGREGATIONS:
        raise SnakewebError(f"Unknown aggregation {aggregation!r}; use one of {', '.join(AGGREGATIONS)}.")
    if aggregation not in PROBABILITY_AGGREGATIONS:
        raise SnakewebError(f"--aggregation {aggregation} gives each observation its photos' vote shares, not probabilities "
                            f"(one photo's vote is 100%), so {what} would read a certainty that is not there: use mean-log "
                            "(the default) or mean-prob; the vote serves only a submission's argmax (export --decision argmax "
                            "without a country prior).")


@dataclass
class TrainConfig:
    """How a head is trained (snakeweb.head_training.train_head); saved with the head."""

    kind: str = "linear+knn"  # best on HackerEarth-35 validation; the blend weight falls to 1.0 where kNN does not help
    max_epochs: int = 1000  # a cap; early stopping on validation loss decides
    # trained together, one head per (learning rate, weight decay); the best on validation accuracy is kept
    learning_rates: tuple[float, ...] = (1e-3, 3e-3, 1e-2)
    weight_decays: tuple[float, ...] = (0.0, 1e-4)
    # post-hoc logit adjustment strengths tau (logits - tau * log class prior), chosen on validation
    logit_adjustments: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    blend_weights: tuple[float, ...] = (0.5, 0.7, 0.85)  # linear+knn: weight of the linear head's probabilities
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
    # augmented training views to train on (snakeweb/train_views.py): None = every view the embed stage made
    views: tuple[str, ...] | None = None
