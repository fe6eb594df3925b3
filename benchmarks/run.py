"""Every CPU benchmark, each against the naive way measured in the same run. One JSON object per line:
{"name", "value", "unit", "baseline", "ratio", ...}. About 15 minutes on 2 cores (14.5 measured).

    python benchmarks/run.py [--only embed,identify,index,head,umap] [--out results.jsonl]

The GPU figures come from benchmarks/gpu_embed.py (needs a CUDA machine).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"
RESULTS: list[dict] = []


def emit(name: str, value: float, unit: str, baseline: float | None = None, higher_is_better: bool = True, **extra) -> None:
    row = {"name": name, "value": round(value, 4), "unit": unit}
    if baseline is not None:
        row["baseline"] = round(baseline, 4)
        row["ratio"] = round(value / baseline if higher_is_better else baseline / value, 2)
    row.update(extra)
    RESULTS.append(row)
    print(json.dumps(row), flush=True)


def photos(n: int) -> list[Path]:
    folder = SHARED / "hackerearth-35"
    if not folder.is_dir():
        sys.exit(f"The shared data folder {folder} is missing; these benchmarks read real photos from it.")
    files = sorted(p for d in sorted(folder.iterdir()) if d.is_dir() for p in sorted(d.iterdir()))
    return files[:: max(1, len(files) // n)][:n]


def clustered_vectors(n: int, dim: int, clusters: int, seed: int = 0, labels: np.ndarray | None = None,
                      isotropic_noise: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors with species-like structure: a low-rank cluster centre plus per-image noise (isotropic
    noise 0.2 makes a linear head ~30-45% accurate, like real species features; 0.02 is nearly separable)."""
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(96, dim)).astype(np.float32)
    centres = rng.normal(size=(clusters, 96)).astype(np.float32) @ basis
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = rng.integers(0, clusters, n) if labels is None else labels
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        noise = (rng.normal(size=(stop - start, 32)).astype(np.float32) @ basis[:32]) / np.sqrt(96 * 32)
        out[start:stop] = centres[labels[start:stop]] + 0.6 * noise + isotropic_noise * rng.normal(size=(stop - start, dim)).astype(np.float32)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out, labels


# ------------------------------------------------------------------ embedding
def bench_embed() -> None:
    import torch

    from benchmarks.embed_throughput import naive, snakeweb_stage
    from snakeweb.models import REGISTRY, load_backbone
    from snakeweb.offline_weights import converted_model_dir

    vit = photos(64)
    load_backbone(REGISTRY["dinov2-small-offline"])  # conversion cached before timing
    baseline = naive(vit, converted_model_dir())
    ours = snakeweb_stage(vit, "dinov2-small-offline")
    emit("embed_cpu_vit_s14", ours, "img/s", baseline, images=len(vit), dtype="float32", threads=torch.get_num_threads(),
         note="no AVX-512/AMX on this CPU, so bf16 is not chosen; compute-bound")

    cnn = photos(192)
    backbone = load_backbone(REGISTRY["efficientnet-lite0-offline"])
    from snakeweb.images import read_image, to_pixels

    started = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(cnn), 32):  # naive: eager module, NCHW, batch 32
            pixels = torch.stack([to_pixels(read_image(p).image, backbone.config) for p in cnn[i:i + 32]])
            backbone.model.extract_features(pixels).mean(dim=(2, 3))
    naive_cnn = len(cnn) / (time.perf_counter() - started)
    emit("embed_cpu_efficientnet_lite0", snakeweb_stage(cnn, "efficientnet-lite0-offline"), "img/s", naive_cnn, images=len(cnn),
         how="TorchScript-frozen (BN folded), channels-last, micro-batch 4 vs eager NCHW batch 32")


def bench_decode() -> None:
    """Decode share on large photos: Pillow draft (DCT scaling) vs full decode, against model time."""
    from PIL import Image

    from snakeweb.images import read_image, to_pixels
    from snakeweb.models import REGISTRY

    config = REGISTRY["dinov2-small-offline"]
    seeds = sorted((SHARED / "images" / "imagenet-snakes").glob("*.JPEG"))[:6] + sorted((SHARED / "images" / "snakeclef").rglob("*.jpg"))
    with tempfile.TemporaryDirectory() as tmp:
        large = []
        for i, seed in enumerate(seeds):
            with Image.open(seed) as im:
                side = 2000 + 400 * (i % 6)
                im.convert("RGB").resize((side, side * 3 // 4), Image.BICUBIC).save(Path(tmp) / f"{i}.jpg", quality=92)
            large.append(Path(tmp) / f"{i}.jpg")
        sizes = [os.path.getsize(p) / 1e6 for p in large]

        def full(path):
            with Image.open(path) as im:
                return to_pixels(im.convert("RGB"), config)

        def drafted(path):
            return to_pixels(read_image(path, min_side=config.resize_size).image, config)

        timings = {}
        for name, fn in (("full", full), ("draft", drafted)):
            fn(large[0])
            started = time.perf_counter()
            for p in large:
                fn(p)
            timings[name] = (time.perf_counter() - started) / len(large) * 1000
        emit("decode_large_jpeg_ms", timings["draft"], "ms/img", timings["full"], higher_is_better=False, images=len(large),
             megabytes=f"{min(sizes):.1f}-{max(sizes):.1f}", pixels="2000-4000 px wide",
             note="read_image(min_side) uses Pillow draft (JPEG DCT scaling) before the bicubic resize")


# ------------------------------------------------------------------ identify
def bench_identify(model: str, vectors_in_index: int = 200_000, queries: int = 60) -> None:
    import pandas as pd

    from snakeweb import stages
    from snakeweb.heads import TrainConfig
    from snakeweb.identify import Identifier
    from snakeweb.index import build_index, describe
    from snakeweb.ingest import ingest
    from snakeweb.search import search_images
    from snakeweb.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        species = sorted(d for d in (SHARED / "hackerearth-35").iterdir() if d.is_dir())[:3]
        for d in species:
            (folder / d.name).mkdir(parents=True)
            for p in sorted(d.iterdir())[:12]:
                shutil.copy(p, folder / d.name / p.name)
        store = Store(Path(tmp) / "store")
        ingest(store, images=folder)
        stages.embed(store, model=model)
        stages.index(store)
        stages.train(store, TrainConfig(max_epochs=30))
        identifier = Identifier(store)
        real_ids, real_vectors = store.embeddings()
        synthetic, _ = clustered_vectors(vectors_in_index - len(real_ids), real_vectors.shape[1], 2000)
        ids = np.concatenate([real_ids, np.arange(len(synthetic)) + 10_000_000])
        identifier.index = build_index(ids, np.vstack([real_vectors, synthetic]))
        extra = pd.DataFrame({"image_id": ids[len(real_ids):], "path": "synthetic", "class_id": np.nan})
        identifier.catalogue = pd.concat([identifier.catalogue.reset_index(), extra], ignore_index=True).set_index("image_id")
        uploads = [p.read_bytes() for p in photos(queries + 5)]
        for data in uploads[:5]:
            identifier.identify([("upload.jpg", data)])
        latencies, search_ms = [], []
        for data in uploads[5:]:
            started = time.perf_counter()
            result = identifier.identify([("upload.jpg", data)], top=5, neighbours=12)
            latencies.append((time.perf_counter() - started) * 1000)
            assert len(result.species) >= 1 and len(result.neighbours) == 12
            vector = identifier.embed([("q", data)])[1]
            started = time.perf_counter()
            search_images(identifier.index, identifier.catalogue, vector, 12)
            search_ms.append((time.perf_counter() - started) * 1000)
        emit(f"identify_p50_{model}", float(np.percentile(latencies, 50)), "ms", queries=len(latencies),
             index_vectors=int(identifier.index.ntotal))
        emit(f"identify_p95_{model}", float(np.percentile(latencies, 95)), "ms", queries=len(latencies))
        emit(f"identify_search_p50_{model}", float(np.percentile(search_ms, 50)), "ms", k=12, index=describe(identifier.index)["kind"])


# ------------------------------------------------------------------ index at scale
def bench_index(n: int = 1_000_000, dim: int = 768, n_queries: int = 200) -> None:
    import faiss

    from snakeweb.index import IndexSpec, build_index, describe, index_spec

    vectors, _ = clustered_vectors(n + n_queries, dim, 5000, seed=1)
    queries, vectors = vectors[:n_queries], vectors[n_queries:]
    ids = np.arange(n, dtype=np.int64) * 7 + 3  # ids are never positions
    truth = None

    def hnsw(subset: int) -> faiss.Index:
        inner = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efSearch = 128
        index = faiss.IndexIDMap2(inner)
        index.add_with_ids(vectors[:subset], ids[:subset])
        return index

    def measure(label: str, spec: IndexSpec | None, subset: int, **extra) -> None:
        nonlocal truth
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        index = hnsw(subset) if spec is None else build_index(ids[:subset], vectors[:subset], spec=spec)
        build_s = time.perf_counter() - started
        size_gb = faiss.serialize_index(index).nbytes / 1e9
        found = np.stack([index.search(q[None], 10)[1][0] for q in queries[:20]])  # warm
        started = time.perf_counter()
        found = np.stack([index.search(q[None], 10)[1][0] for q in queries])
        per_query = (time.perf_counter() - started) / len(queries) * 1000
        if spec is not None and spec.factory == "Flat" and subset == n:
            truth = found
        reference = truth if subset == n else exact_for(subset)
        recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, reference)]))
        emit(f"index_{label}_{subset // 1000}k_query_ms", per_query, "ms/query", recall_at_10=round(recall, 4), build_s=round(build_s, 1),
             index_gb=round(size_gb, 3), rss_growth_gb=round((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1e6, 2),
             **({} if spec is None else {"kind": describe(index)["kind"], "nprobe": spec.nprobe, "k_factor": spec.k_factor}), **extra)

    exact_cache: dict[int, np.ndarray] = {}

    def exact_for(subset: int) -> np.ndarray:
        if subset not in exact_cache:
            flat = faiss.IndexFlatIP(dim)
            flat.add(vectors[:subset])
            exact_cache[subset] = ids[flat.search(queries, 10)[1]]
        return exact_cache[subset]

    measure("flat", IndexSpec("Flat"), n)
    auto = index_spec(n, dim)
    measure("auto", auto, n, chosen_by="snakeweb.index.index_spec", target="<= 1.5 GB, recall@10 >= 0.95, <= 10 ms")
    lists = int(auto.factory.split(",")[0][3:])
    measure("ivf_sq8", IndexSpec(f"IVF{lists},SQ8", nprobe=lists // 6), n, note="the previous automatic choice")
    measure("hnsw32", None, 50_000,
            note="HNSW built on 50k only (about 1,000-2,400 vectors/s here, so 1M takes 7+ min, and HNSW32 over float vectors needs over 3 GB)")
    measure("flat", IndexSpec("Flat"), 50_000)
    small = describe(build_index(ids[:1000], vectors[:1000]))["kind"]
    emit("index_auto_choice", float(n), "vectors", chosen=f"{small} up to 16M floats, {auto.factory} (nprobe {auto.nprobe}, "
         f"k_factor {auto.k_factor}) at {n} x {dim}")


# ------------------------------------------------------------------ head training and UMAP at SnakeCLEF scale
def snakeclef_like(n: int = 182_000, dim: int = 768, isotropic_noise: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    import pandas as pd

    counts = pd.read_csv(SHARED / "snakeclef" / "class_count.csv")
    share = counts["count"].to_numpy(float) / counts["count"].sum()
    rng = np.random.default_rng(2)
    class_index = rng.choice(len(share), n, p=share)  # the real class-size skew
    vectors, _ = clustered_vectors(n, dim, len(share), seed=3, labels=class_index, isotropic_noise=isotropic_noise)
    return vectors, counts["class_id"].to_numpy()[class_index]


def bench_head() -> None:
    """A full default training run (learning rates swept on a 10k sample, the chosen head on every row with
    early stopping read every half-patience of steps, logit adjustment, temperature, venom weight) against the
    previous way: all six sweep heads (3 learning rates x 2 weight decays) on every row, validated once an
    epoch with 15 epochs' patience. The previous way's training rate is measured here for 2 epochs and scaled to
    best epoch + 15, its stopping point."""
    import snakeweb.heads as heads
    from snakeweb.heads import TrainConfig, train_head

    vectors, labels = snakeclef_like(isotropic_noise=0.2)  # as hard as real species features, so early stopping acts
    val = np.random.default_rng(4).random(len(labels)) < 0.1
    venomous = set(np.unique(labels)[::5].tolist())
    started = time.perf_counter()
    head = train_head(vectors[~val], labels[~val], vectors[val], labels[val], "pool", "bench", TrainConfig(kind="linear"),
                      venomous_class_ids=venomous)
    seconds = time.perf_counter() - started
    accuracy = float((head.label_map.to_class_ids(head.predict_log_proba(vectors[val]).argmax(1)) == labels[val]).mean())

    marks: list[tuple[float, float]] = []
    sample, heads.SWEEP_SAMPLE = heads.SWEEP_SAMPLE, len(labels)  # the previous way: the whole grid on every row
    try:
        train_head(vectors[~val], labels[~val], vectors[val], labels[val], "pool", "bench", TrainConfig(kind="linear", max_epochs=2),
                   progress=lambda epoch, *_: marks.append((time.perf_counter(), epoch)))
    finally:
        heads.SWEEP_SAMPLE = sample
    (t0, e0), (t1, e1) = marks[0], marks[-1]
    naive_per_epoch = (t1 - t0) / (e1 - e0)
    naive = naive_per_epoch * (head.history["best_epoch"] + TrainConfig().patience)
    emit("head_train_182k_768_1784_full_run_s", seconds, "s", baseline=round(naive, 1), ratio=round(naive / seconds, 2),
         images=int((~val).sum()), classes=len(head.label_map), epochs_run=head.history["epochs_run"],
         best_epoch=head.history["best_epoch"], sweep_sample=head.history.get("sweep_sample"),
         chosen_lr=head.history["learning_rate"], val_accuracy=round(accuracy, 4), previous_way_s_per_epoch=round(naive_per_epoch, 1),
         baseline_what="6 heads on every row: measured s/epoch x (best epoch + 15 patience epochs)", target="<= 60 s")


def bench_umap() -> None:
    from snakeweb.projection import project_2d

    vectors, _ = snakeclef_like()
    started = time.perf_counter()
    coords, settings = project_2d(vectors)
    emit("umap_182k", time.perf_counter() - started, "s", **settings, target="<= 180 s")
    assert np.isfinite(coords).all()


def bench_identify_models() -> None:
    from snakeweb.models import AUTO_OFFLINE_MODEL

    for model in ("efficientnet-lite0-offline", AUTO_OFFLINE_MODEL, "dinov2-small-offline"):
        bench_identify(model)


BENCHES = {"embed": bench_embed, "decode": bench_decode, "identify": bench_identify_models, "index": bench_index,
           "head": bench_head, "umap": bench_umap}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(BENCHES))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    import platform

    emit("machine", float(os.cpu_count() or 0), "cpus", cpu=platform.processor() or platform.machine())
    for name in args.only.split(","):
        started = time.perf_counter()
        BENCHES[name]()
        print(f"# {name}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    if args.out:
        args.out.write_text("".join(json.dumps(r) + "\n" for r in RESULTS))


if __name__ == "__main__":
    main()
