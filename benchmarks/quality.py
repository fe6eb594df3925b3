"""Quality table: backbone x TTA x head x decision on a labelled image folder, chosen on validation, test read once.

    python benchmarks/quality.py --images ../shared/data/hackerearth-35 --species ../shared/data/snakeclef/class_list.csv \
        --work /tmp/quality [--models M ...] [--tta none flip] [--views none flip] [--heads linear mlp knn linear+knn]

One store per (backbone, TTA) under --work (resumable: a re-run reuses finished embeddings); the training views
(snakeweb/train_views.py; `--views none flip zoom,flip` = three sets) are all embedded once and each set trains its
own heads. Each head is trained
with the library's own sweep (learning rate x weight decay, logit adjustment, temperature, blend weight: all on
validation). Prints a markdown table and one JSON object per row; the row best on validation is marked.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_MODELS = ("efficientnet-lite0-offline", "efficientnet-lite1-offline", "efficientnet-lite2-offline",
                  "concat:efficientnet-lite0-offline+efficientnet-lite2-offline",
                  "concat:efficientnet-lite0-offline+efficientnet-lite1-offline+efficientnet-lite2-offline", "dinov2-small-offline")


def evaluate_store(store, head: str, views: tuple[str, ...] | None = None) -> list[dict]:
    from snakeweb import stages
    from snakeweb.evaluation import evaluate
    from snakeweb.heads import TrainConfig

    info = stages.train(store, TrainConfig(kind=head, views=views), force=True)
    rows = []
    reports = {split: evaluate(store, split, save=False) for split in ("val", "test")}
    for rule in ("argmax", "cost"):
        variant = f"{rule}/prior=none"
        val, test = reports["val"]["variants"][variant], reports["test"]["variants"][variant]
        p10 = test["PSC"][2]
        rows.append({
            "head": head, "views": "+".join(views) if views else "none", "decision": rule,
            "val_accuracy": val["Accuracy"], "val_f1": val["F1 Score"], "val_track1": val["Track1 Metric"],
            "test_accuracy": test["Accuracy"], "test_f1": test["F1 Score"], "test_track1": test["Track1 Metric"],
            "test_venomous_called_harmless_pct": p10,
            # kNN votes are not temperature-calibrated: no ECE for that head
            "val_ece_before": None if info["val_ece_before"] is None else round(info["val_ece_before"], 4),
            "val_ece_after": None if info["val_ece_after"] is None else round(info["val_ece_after"], 4),
            "temperature": round(info["temperature"], 3), "venom_weight": info.get("venom_weight"),
        })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--species", type=Path)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--tta", nargs="+", default=["none"])
    parser.add_argument("--heads", nargs="+", default=["linear", "mlp", "knn", "linear+knn"])
    parser.add_argument("--views", nargs="+", default=["none"], help="training view sets, each comma-joined (none = no views)")
    args = parser.parse_args()
    from snakeweb import stages
    from snakeweb.ingest import ingest
    from snakeweb.species import read_species_table
    from snakeweb.store import Store
    from snakeweb.train_views import parse_views

    table = read_species_table([args.species]) if args.species else None
    view_sets = [parse_views(v.split(",")) for v in args.views]
    results = []
    for model in args.models:
        for tta in args.tta:
            store = Store(args.work / re.sub(r"[^A-Za-z0-9.+-]", "_", f"{model}__{tta}"))
            ingest(store, images=args.images, species_table=table)
            stages.embed(store, model=model, tta=tta, views=sorted({v for views in view_sets for v in views}))
            stages.index(store)
            for head, views in ((h, v) for v in view_sets for h in args.heads):
                for row in evaluate_store(store, head, views):
                    row = {"backbone": model, "tta": tta, **row}
                    results.append(row)
                    print(json.dumps(row), flush=True)
    best = max((r for r in results if r["decision"] == "argmax"), key=lambda r: r["val_accuracy"] + r["val_f1"])
    print("\n| backbone | TTA | training views | head | decision | val top-1 | val F1 | val Track1 | test top-1 | test F1 | test Track1 "
          "| test venomous->harmless % | venom weight (val) | val ECE (after T) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        mark = " **(best on val)**" if r is best else ""
        print(f"| {r['backbone']}{mark} | {r['tta']} | {r['views']} | {r['head']} | {r['decision']} | "
              f"{r['val_accuracy']:.1f} | {r['val_f1']:.1f} | "
              f"{r['val_track1']:.2f} | "
              f"{r['test_accuracy']:.1f} | {r['test_f1']:.1f} | {r['test_track1']:.2f} | {r['test_venomous_called_harmless_pct']:.1f} | "
              f"{r['venom_weight'] if r['decision'] == 'cost' else '-'} | {'-' if r['val_ece_after'] is None else r['val_ece_after']} |")


if __name__ == "__main__":
    main()
