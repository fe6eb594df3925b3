"""What the answers of a built store are worth: per-rank coverage and precision on validation and test with the
thresholds `train` chose, the best any thresholds could do on test itself (the frontier the validation choice is
measured against), and the venom-critical figures for each answer venom weight.

    python benchmarks/decisions.py --store stores/he35            # JSON lines on stdout

It runs the product's own code (stages.observation_probabilities, answers.decide, threshold_choice.choose_thresholds); nothing
here decides differently from identify, export or evaluate.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from snakeweb.answers import Taxa, Thresholds, answer_venom_weight, decide  # noqa: E402
from snakeweb.rank_metrics import answer_summary, venom_critical  # noqa: E402
from snakeweb.stages import observation_probabilities  # noqa: E402
from snakeweb.store import Store  # noqa: E402
from snakeweb.threshold_choice import ANSWER_VENOM_WEIGHTS, choose_thresholds  # noqa: E402


def figures(probabilities: np.ndarray, truth: np.ndarray, taxa: Taxa, thresholds: Thresholds | None, venom_weight: float) -> dict:
    """The evaluate stage's own measures of the answers (rank_metrics.answer_summary and venom_critical)."""
    answers = decide(probabilities, taxa, thresholds, venom_weight)
    return {**answer_summary(answers, truth, taxa), "venom_critical": venom_critical(answers, truth, taxa)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", required=True, type=Path)
    args = parser.parse_args()
    store = Store(args.store).require()
    observation_ids, probabilities, head = observation_probabilities(store)
    labels = store.query("SELECT observation_id, class_id, split FROM observations WHERE class_id IS NOT NULL").set_index("observation_id")
    taxa = Taxa.from_species(store.species(), head.label_map.class_ids)
    thresholds = Thresholds.from_json(head.thresholds)
    weight = answer_venom_weight(thresholds, head.venom_weight)
    splits = {}
    for split in ("val", "test"):
        rows = [i for i, o in enumerate(observation_ids) if o in labels.index and labels.at[o, "split"] == split
                and int(labels.at[o, "class_id"]) in head.label_map.class_ids]
        truth = head.label_map.to_indices(labels.loc[[observation_ids[i] for i in rows], "class_id"].astype(int).to_numpy())
        splits[split] = (probabilities[rows], truth)
    print(json.dumps({"thresholds": head.thresholds}))
    for split, (p, y) in splits.items():
        print(json.dumps({"split": split, "chosen_on": "val", "venom_weight": weight, **figures(p, y, taxa, thresholds, weight)}))
    p, y = splits["test"]
    for target in (0.85, 0.9, 0.95):  # the frontier: thresholds chosen on test itself (an upper bound, not a result)
        oracle = choose_thresholds(p, y, taxa, target=target)
        print(json.dumps({"split": "test", "chosen_on": "test (upper bound)", "target": target,
                          "thresholds": {r: oracle.of(r) for r in ("species", "genus", "family")}, **figures(p, y, taxa, oracle, weight)}))
    for split, (p, y) in splits.items():
        for w in ANSWER_VENOM_WEIGHTS:
            f = figures(p, y, taxa, replace(thresholds, venom_weight=w), w)
            print(json.dumps({"split": split, "answer_venom_weight": w, "venom_critical": f["venom_critical"],
                              "species_or_genus": f["species_or_genus"], "no_name": f["ranks"]["abstain"]}))


if __name__ == "__main__":
    main()
