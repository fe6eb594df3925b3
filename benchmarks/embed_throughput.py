"""Embed-stage throughput (JPEG on disk -> vector in the store) against the naive way, in the same run.

Naive = the seed paper's way: HF image processor + Dinov2Model with eager attention, batch 8, fp32, the
whole last_hidden_state copied to the host. Prints one JSON object per line.

    python -m benchmarks.embed_throughput [--images DIR] [--n 160] [--model dinov2-small-offline]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch


def naive(paths: list[Path], folder: Path) -> float:
    from PIL import Image
    from transformers import AutoImageProcessor, AutoModel, BitImageProcessor

    try:
        processor = AutoImageProcessor.from_pretrained(folder)
    except OSError:  # converted folders carry no processor config: DINOv2's own settings
        processor = BitImageProcessor(size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224},
                                      image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225], do_center_crop=True)
    model = AutoModel.from_pretrained(folder, attn_implementation="eager").eval()
    started = time.perf_counter()
    vectors = []
    for i in range(0, len(paths), 8):
        images = [Image.open(p).convert("RGB") for p in paths[i:i + 8]]
        with torch.no_grad():
            hidden = model(**processor(images, return_tensors="pt")).last_hidden_state.numpy()
        vectors.extend(hidden[:, 0])
    return len(paths) / (time.perf_counter() - started)


def snakeweb_stage(paths: list[Path], model: str) -> float:
    from snakeweb import stages
    from snakeweb.ingest import ingest
    from snakeweb.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos" / "Some species"
        folder.mkdir(parents=True)
        for p in paths:
            shutil.copy(p, folder / p.name)  # links out of the image root are refused at ingest
        store = Store(Path(tmp) / "store")
        ingest(store, images=folder.parent)
        counts = stages.embed(store, model=model)
        return counts["images_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser()
    default = Path(__file__).resolve().parents[2] / "shared" / "data" / "hackerearth-35" / "Natrix natrix"
    parser.add_argument("--images", type=Path, default=default)
    parser.add_argument("--n", type=int, default=160)
    parser.add_argument("--model", default="dinov2-small-offline")
    args = parser.parse_args()
    from snakeweb.models import load_backbone, resolve_model
    from snakeweb.offline_weights import converted_model_dir

    paths = sorted(p for p in args.images.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})[: args.n]
    folder = converted_model_dir() if args.model == "dinov2-small-offline" else Path(resolve_model(args.model).location)
    load_backbone(resolve_model(args.model))  # conversion/cache warm before timing
    baseline = naive(paths, folder)
    ours = snakeweb_stage(paths, args.model)
    print(json.dumps({"name": "embed_cpu_images_per_s", "value": round(ours, 2), "unit": "img/s", "baseline": round(baseline, 2),
                      "ratio": round(ours / baseline, 2), "images": len(paths), "threads": torch.get_num_threads(), "model": args.model}))


if __name__ == "__main__":
    main()
