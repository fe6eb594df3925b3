"""Simulation (not a measurement of any model): the venom-aware decision vs argmax on the real SnakeCLEF
validation observations, with synthetic class probabilities.

Each observation gets logits: N(0, 1) noise for every class, +`signal` for its true class and +`genus`
for the other species of its genus (the realistic confusers). The expected-cost rule needs calibrated
probabilities, so a temperature is fitted on half of the observations (NLL) and both rules are scored by
the official metric on the other half, from the same probabilities.

    python -m benchmarks.simulate_cost_rule [--shared ../shared/data] [--signal 4.5] [--genus 3.5]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from snakeweb.calibration import expected_calibration_error, fit_temperature, softmax
from snakeweb.decisions import decide
from snakeweb.label_map import LabelMap
from snakeweb.scoring import official_scores, read_venomous
from snakeweb.species import read_species_table


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--signal", type=float, default=4.5)
    parser.add_argument("--genus", type=float, default=3.5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    snakeclef = args.shared / "snakeclef"
    truth = pd.read_csv(snakeclef / "SnakeCLEF2023-ValMetadata.csv", dtype={"observation_id": str}).drop_duplicates("observation_id")
    venomous_ids = read_venomous(snakeclef / "venomous_status_list.csv")
    species = read_species_table([snakeclef / "class_list.csv", snakeclef / "venomous_status_list.csv"])
    label_map = LabelMap.from_labels(species["class_id"])
    genus = species.set_index("class_id").loc[list(label_map.class_ids), "genus"].to_numpy()
    venomous = np.isin(label_map.class_ids, list(venomous_ids))

    rng = np.random.default_rng(args.seed)
    true_index = label_map.to_indices(truth["class_id"].to_numpy())
    logits = rng.normal(size=(len(truth), len(label_map)))
    logits += args.genus * (genus[None, :] == genus[true_index][:, None])
    logits[np.arange(len(truth)), true_index] += args.signal - args.genus
    fit = rng.random(len(truth)) < 0.5
    temperature = fit_temperature(logits[fit], true_index[fit])
    probabilities = softmax(logits[~fit], temperature)
    held_out = truth[~fit]
    ece = expected_calibration_error(probabilities, true_index[~fit])
    for rule in ("argmax", "cost"):
        predicted = label_map.to_class_ids(decide(probabilities, venomous, rule))
        submission = pd.DataFrame({"observation_id": held_out["observation_id"], "class_id": predicted})
        scores = official_scores(held_out, submission, venomous_ids)
        print(json.dumps({"simulation": True, "rule": rule, "signal": args.signal, "genus": args.genus,
                          "temperature": round(temperature, 3), "ece": round(ece, 4), "observations": len(held_out), **scores}))


if __name__ == "__main__":
    main()
