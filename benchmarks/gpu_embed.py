"""The product's embed stage on a GPU, photos on disk -> vectors in a store, against the naive way in the same run.

    python benchmarks/gpu_embed.py [--photos DIR] [--images 32768] [--large-images 2048] [--naive-images 512] \
        [--model base] [--faiss-only] [--smoke] [--out benchmarks/results/gpu_embed_h200.jsonl]

Generates JPEGs of realistic sizes (about 640 x 480, and 1-2 MP) from real photos (`--photos`) or smooth noise,
saves a randomly initialised DINOv2 ViT-B/14 as a transformers folder (the compute of the real checkpoint;
the hub is out of reach here), ingests the folder into a store and times `python -m pipelines embed --device
cuda` itself (snakeweb.gpu_embed: nvJPEG, GPU resize, bf16, torch.compile, batch 256). The stage's own figures
come from the store (`embed_run`: seconds, decoders, compile warm-up). Naive = the seed paper's way: HF image
processor on PIL images + Dinov2Model, fp32, eager attention, batch 8, the whole last_hidden_state copied back.
The model-only ceiling is the product's `DeviceForward` on random pixels. Last, FAISS on the GPU vs the CPU index
through the product's index code (faiss_on_device; `--faiss-only` runs just that). Prints one JSON object per line and
writes them to --out if given.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import traceback
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SIZES = {"small": dict(hidden_size=384, num_attention_heads=6), "base": dict(hidden_size=768, num_attention_heads=12),
         "large": dict(hidden_size=1024, num_attention_heads=16, num_hidden_layers=24)}
RESULTS: list[dict] = []


def emit(**row) -> None:
    RESULTS.append(row)
    print(json.dumps(row), flush=True)


# ---------------------------------------------------------------- data: unique JPEGs from real seed photos
def _make_jpeg(args: tuple[str, int, int, int, str]) -> int:
    seed_path, index, long_side, quality, out = args
    from PIL import Image, ImageOps

    rng = random.Random(index)
    with Image.open(seed_path) as im:
        im = im.convert("RGB")
        w, h = im.size
        crop = rng.uniform(0.6, 1.0)
        cw, ch = int(w * crop), int(h * crop)
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        im = im.crop((x, y, x + cw, y + ch))
        if rng.random() < 0.5:
            im = ImageOps.mirror(im)
        scale = long_side / max(im.size)
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.BICUBIC)
        if rng.random() < 0.5:
            im = im.rotate(90, expand=True)
        im.save(out, quality=quality)
    return os.path.getsize(out)


def make_dataset(seeds: list[Path], folder: Path, count: int, long_sides: tuple[int, int]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    jobs = [(str(seeds[i % len(seeds)]), i, rng.randint(*long_sides), rng.choice([85, 90, 95]), str(folder / f"{i:06d}.jpg"))
            for i in range(count)]
    with Pool(os.cpu_count()) as pool:
        sizes = pool.map(_make_jpeg, jobs, chunksize=16)
    emit(name=f"dataset_{folder.name}", value=count, unit="images", mean_bytes=int(np.mean(sizes)), long_side=list(long_sides))
    return [Path(j[4]) for j in jobs]


def synthetic_seeds(folder: Path, n: int = 16) -> list[Path]:
    """Smooth random colour fields with noise, when no real photos are given."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        low = rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)
        im = Image.fromarray(low).resize((1600, 1200), Image.BICUBIC)
        noisy = np.clip(np.asarray(im, dtype=np.int16) + rng.integers(-25, 25, (1200, 1600, 3)), 0, 255).astype(np.uint8)
        path = folder / f"seed{i}.jpg"
        Image.fromarray(noisy).save(path, quality=92)
        paths.append(path)
    return paths


# ---------------------------------------------------------------- models
def build_model(size: str, device: str, dtype: torch.dtype, attn: str):
    from transformers import AutoModel, Dinov2Config

    config = Dinov2Config(patch_size=14, image_size=518, intermediate_size=4 * SIZES[size]["hidden_size"],
                          layerscale_value=1.0, **{"num_hidden_layers": 12, **SIZES[size]})
    torch.manual_seed(0)
    model = AutoModel.from_config(config, attn_implementation=attn)
    return model.to(device=device, dtype=dtype).eval()


def naive(paths: list[Path], size: str, device: str) -> float:
    from PIL import Image
    from transformers import BitImageProcessor

    processor = BitImageProcessor(size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224}, do_center_crop=True,
                                  image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    model = build_model(size, device, torch.float32, "eager")

    def run(batch_paths):
        images = [Image.open(p).convert("RGB") for p in batch_paths]
        with torch.no_grad():
            inputs = processor(images, return_tensors="pt").to(device)
            return model(**inputs).last_hidden_state.cpu()

    run(paths[:8])
    started = time.perf_counter()
    for i in range(0, len(paths), 8):
        run(paths[i:i + 8])
    return len(paths) / (time.perf_counter() - started)


def embed_stage(label: str, photos: Path, model_dir: Path, work: Path, baseline: float, target: str | None,
                device: str = "cuda") -> None:
    """Ingest `photos` into a fresh store and time the product's embed stage on the GPU."""
    store = work / f"store-{label}"
    run = [sys.executable, "-m", "pipelines"]
    subprocess.run([*run, "ingest", "--store", str(store), "--images", str(photos)], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    started = time.perf_counter()
    subprocess.run([*run, "embed", "--store", str(store), "--model", str(model_dir), "--device", device, "--views", "none"],
                   check=True, cwd=ROOT)
    wall = time.perf_counter() - started
    sys.path.insert(0, str(ROOT))
    from snakeweb.store import Store

    s = Store(store)
    facts = s.get_meta("embed_run")
    counts = s.query("SELECT status, count(*) AS n FROM images GROUP BY status")
    ok = int(counts.loc[counts["status"] == "ok", "n"].sum())
    rate = facts["images"] / facts["seconds"]
    extra = {"target": target} if target else {}
    emit(name=f"gpu_embed_stage_{label}", value=round(rate, 1), unit="img/s", baseline=round(baseline, 1), ratio=round(rate / baseline, 1),
         what="python -m pipelines embed --device cuda into a store (steady rate: after the one-off compile)",
         images=facts["images"], embedded=ok, decoders=facts["decoders"], batch=facts["batch_size"], compiled=facts.get("compiled"),
         profile_s=facts.get("profile"), resize=facts.get("resize"), device=facts.get("device"), **extra)
    emit(name=f"gpu_embed_stage_{label}_wall", value=round(wall, 1), unit="s",
         what="the whole command: process start, model load, compile warm-up, embedding, store writes",
         compile_warmup_s=facts.get("warmup_seconds"), images=facts["images"])


def fidelity(root: Path) -> None:
    """GPU vectors vs the CPU fp32 path on real photos (EfficientNet-Lite0, offline weights): cosine per photo and
    top-1 agreement of a logistic head fitted on the CPU vectors, for each decoder x precision, so a miss says
    whether decoding or bf16 causes it."""
    sys.path.insert(0, str(ROOT))
    from sklearn.linear_model import LogisticRegression

    from snakeweb.embed import embed_images, l2_normalise
    from snakeweb.gpu_embed import DeviceForward, embed_images_on_device
    from snakeweb.models import load_backbone, resolve_model

    folders = sorted(p for p in root.iterdir() if p.is_dir())
    items = [(i, path) for i, path in enumerate(p for f in folders for p in sorted(f.glob("*.jpg")))]
    labels = np.array([folders.index(path.parent) for _, path in items])
    config = resolve_model("efficientnet-lite0-offline")
    reference = l2_normalise(np.stack([v for b in embed_images(load_backbone(config), items, "pool", batch_size=32) for v in b.vectors]))
    head = LogisticRegression(max_iter=3000).fit(reference, labels)
    cpu_top1 = head.predict(reference)
    for decoder, dtype, compiled in (("nvjpeg", "bfloat16", True), ("nvjpeg", "float32", False), (None, "bfloat16", False),
                                     (None, "float32", False)):
        backbone = load_backbone(config, device="cuda")
        forward = DeviceForward(backbone, "pool", 64, compile_model=compiled, dtype=dtype)
        vectors = l2_normalise(np.stack([v for b in embed_images_on_device(backbone, items, "pool", 64, decoder=decoder, forward=forward)
                                         for v in b.vectors]))
        cosines = np.sum(vectors * reference, axis=1)
        emit(name=f"gpu_fidelity_lite0_{decoder or 'pillow'}_{dtype}", value=round(float(cosines.min()), 5), unit="min cosine vs CPU fp32",
             median=round(float(np.median(cosines)), 5), p01=round(float(np.quantile(cosines, 0.01)), 5),
             top1_agreement=round(float(np.mean(head.predict(vectors) == cpu_top1)), 4), photos=len(items), compiled=forward.compiled)


def pipeline_only(photos: Path, model_dir: Path, baseline: float, producers: int = 3, resize: str = "batched",
                  mode: str | None = None, count: int = 16384, device: str = "cuda", batch: int = 256) -> None:
    """The product's GPU pipeline (snakeweb.gpu_embed.embed_images_on_device: reader threads, producers on side
    streams) with no store behind it, for one resize method (snakeweb.gpu_resize) and compile mode."""
    sys.path.insert(0, str(ROOT))
    from snakeweb.gpu_embed import DeviceForward, Profile, embed_images_on_device
    from snakeweb.models import load_backbone, resolve_model

    os.environ["SNAKEWEB_GPU_RESIZE"] = resize
    # on the CPU (--smoke) a Pillow stand-in for nvJPEG sends every photo through the producers' resize
    decoder = "nvjpeg" if device == "cuda" else pillow_batch_decoder
    try:
        backbone = load_backbone(resolve_model(str(model_dir)), device=device)
        forward, profile = DeviceForward(backbone, "cls", batch, mode=mode), Profile()
        paths = sorted(photos.glob("*.jpg"))[:count]
        started = time.perf_counter()
        n = sum(len(b.keys) for b in embed_images_on_device(backbone, enumerate(paths), "cls", batch, forward=forward, profile=profile,
                                                               producers=producers, decoder=decoder))
        rate = n / (time.perf_counter() - started)
    finally:
        os.environ.pop("SNAKEWEB_GPU_RESIZE", None)
    label = f"{producers}_producers_{resize}_resize{'_' + mode if mode else ''}"
    emit(name=f"gpu_pipeline_only_{model_dir.name.removesuffix('-14').replace('-', '_')}_{label}", value=round(rate, 1), unit="img/s",
         baseline=round(baseline, 1), ratio=round(rate / baseline, 1), device=device,
         what="snakeweb.gpu_embed.embed_images_on_device, vectors dropped (no store)", images=n, profile_s=profile.rounded())


def pillow_batch_decoder(datas: list[torch.Tensor]) -> list[torch.Tensor]:
    """JPEG bytes -> [3, H, W] uint8 tensors with Pillow: nvJPEG's place in a --smoke run."""
    import io

    from PIL import Image

    return [torch.from_numpy(np.asarray(Image.open(io.BytesIO(d.numpy().tobytes())).convert("RGB")).transpose(2, 0, 1).copy())
            for d in datas]


def model_only(model_dir: Path, batch: int, device: str = "cuda", repeats: int = 30) -> float:
    """The product's DeviceForward (bf16, compiled) on random pixels already on the GPU: the ceiling."""
    sys.path.insert(0, str(ROOT))
    from snakeweb.gpu_embed import DeviceForward
    from snakeweb.models import load_backbone, resolve_model

    forward = DeviceForward(load_backbone(resolve_model(str(model_dir)), device=device), "cls", batch)
    x = torch.randn((batch, 3, 224, 224), device=device)
    forward(x)
    if device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(repeats):
        forward(x)
    if device == "cuda":
        torch.cuda.synchronize()
    return repeats * batch / (time.perf_counter() - started)


def faiss_on_device(n: int = 182_261, dim: int = 768, queries: int = 20_000, k: int = 11) -> None:
    """FAISS on the GPU against the CPU index in the same run, through the product's own index code: build_index
    (the IVF k-means on the GPU where FAISS sees one; SNAKEWEB_FAISS_GPU=0 gives the CPU baseline) and the batch
    search of predict and the kNN head (index.on_gpu, as load_index(batch_search=True) does), on SnakeCLEF-sized
    clustered vectors, for the automatic index kind and an exact one. Each row says where the search really ran:
    on_gpu keeps index kinds FAISS has no GPU version of (fast-scan PQ) on the CPU. Runs without a GPU too (both
    sides on the CPU, `ran_on` says so), which is how it is tested."""
    from benchmarks.run import clustered_vectors
    from snakeweb.index import IndexSpec, build_index, index_spec, on_gpu, search

    x, _ = clustered_vectors(n, dim, 1784)
    ids = np.arange(n, dtype=np.int64) + 1_000
    q = x[np.random.default_rng(1).choice(n, queries, replace=False)]
    saved = os.environ.get("SNAKEWEB_FAISS_GPU")

    def faiss_gpu(value: str | None) -> None:  # SNAKEWEB_FAISS_GPU set to `value`, or unset for None
        if value is None:
            os.environ.pop("SNAKEWEB_FAISS_GPU", None)
        else:
            os.environ["SNAKEWEB_FAISS_GPU"] = value

    for kind, spec in (("auto", index_spec(n, dim)), ("flat", IndexSpec("Flat"))):
        found, seconds = {}, {}
        for where in ("cpu", "gpu"):
            faiss_gpu("0" if where == "cpu" else saved)  # the caller's setting for the GPU side
            started = time.perf_counter()
            index = build_index(ids, x, spec)
            build_s = time.perf_counter() - started
            searched = on_gpu(index) if where == "gpu" else index
            search(searched, q[:100], k)  # warm-up (GPU memory, kernels)
            started = time.perf_counter()
            _, found[where] = search(searched, q, k)
            seconds[where] = time.perf_counter() - started
            ran_on = "gpu" if searched is not index else "cpu"
            baseline = {} if where == "cpu" else {"baseline": round(queries / seconds["cpu"], 1),
                                                   "ratio": round(seconds["cpu"] / seconds["gpu"], 2)}
            emit(name=f"faiss_batch_search_{kind}_{where}", value=round(queries / seconds[where], 1), unit="queries/s", **baseline,
                 ran_on=ran_on, index=spec.factory, vectors=n, dim=dim, k=k, build_s=round(build_s, 2),
                 what="snakeweb.index.build_index + search (on_gpu for the GPU side), the product's batch-search path")
        same = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(found["cpu"], found["gpu"])]))
        emit(name=f"faiss_gpu_vs_cpu_agreement_{kind}", value=round(same, 4), unit="share of top-k ids shared",
             top1=round(float(np.mean(found["cpu"][:, 0] == found["gpu"][:, 0])), 4), index=spec.factory)
    faiss_gpu(saved)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=Path, help="folder of real JPEG photos to derive the test images from")
    parser.add_argument("--images", type=int, default=32768)
    parser.add_argument("--large-images", type=int, default=2048, help="1-2 MP photos")
    parser.add_argument("--naive-images", type=int, default=512)
    parser.add_argument("--model", choices=sorted(SIZES), default="base")
    parser.add_argument("--fidelity", type=Path, help="folder of species folders of real photos: GPU vs CPU fp32 vectors")
    parser.add_argument("--work", type=Path, help="folder for the photos and stores (default: a temporary one)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--faiss-only", action="store_true", help="only FAISS on the GPU vs the CPU index (faiss_on_device)")
    parser.add_argument("--smoke", action="store_true",
                        help="every step on the CPU with a handful of photos and a small model: checks that this command runs "
                             "end to end before a GPU is lent (its figures mean nothing)")
    args = parser.parse_args()
    if args.faiss_only:  # also runs without a GPU: both sides on the CPU, each row's ran_on says so
        faiss_on_device()
        if args.out:
            args.out.write_text("".join(json.dumps(r) + "\n" for r in RESULTS))
        return 0
    device = "cpu" if args.smoke else "cuda"
    if args.smoke:
        args.images, args.large_images, args.naive_images, args.model = 24, 4, 8, "small"
    elif not torch.cuda.is_available():
        print("No CUDA device: this benchmark needs a GPU (the CPU one is `python benchmarks/run.py`; `--smoke` checks "
              "this one runs).", file=sys.stderr)
        return 2
    emit(name="device", value=torch.cuda.get_device_name() if device == "cuda" else "cpu (--smoke)", unit="",
         torch=torch.__version__, cpus=os.cpu_count(), date=time.strftime("%Y-%m-%d"))
    work = args.work or Path(tempfile.mkdtemp())
    jpegs = {".jpg", ".jpeg"}
    seeds = sorted(p for p in args.photos.rglob("*") if p.suffix.lower() in jpegs) if args.photos else synthetic_seeds(work / "seeds")
    photos = make_dataset(seeds, work / "photos", args.images, (560, 800))
    large = make_dataset(seeds, work / "large", args.large_images, (1200, 1700))
    model_dir = work / f"vit-{args.model}-14"
    build_model(args.model, "cpu", torch.float32, "sdpa").save_pretrained(model_dir)

    baseline = naive(photos[: args.naive_images], args.model, device)
    emit(name=f"gpu_naive_vit_{args.model}", value=round(baseline, 1), unit="img/s", batch=8, dtype="fp32", attn="eager")
    steps = [lambda: embed_stage(f"vit_{args.model}", work / "photos", model_dir, work, baseline,
                                 ">= 5,000 img/s and >= 10x naive" if args.model == "base" else None, device)]
    if args.fidelity:
        steps.append(lambda: fidelity(args.fidelity))
    # the resize per photo (the way measured in November) is the same-run baseline of the batched resize
    batch, repeats = (256, 30) if device == "cuda" else (8, 2)
    steps += [lambda options=options: pipeline_only(work / "photos", model_dir, baseline, device=device, batch=batch, **options)
              for options in ({"resize": "batched"}, {"resize": "per-photo"}, {"resize": "batched", "mode": "reduce-overhead"})
              if device == "cuda" or "mode" not in options]
    steps += [lambda: emit(name=f"gpu_model_only_vit_{args.model}", value=round(model_only(model_dir, batch, device, repeats), 1),
                           unit="img/s", batch=batch,
                           what="snakeweb.gpu_embed.DeviceForward on random pixels on the GPU (no decode, no store)"),
              lambda: embed_stage(f"vit_{args.model}_1-2MP", work / "large", model_dir, work, baseline, None, device),
              (lambda: faiss_on_device(5_000, 64, 200)) if args.smoke else faiss_on_device]
    failed = 0
    for step in steps:  # the headline first: a run cut short still reports it
        try:
            step()
        except Exception:
            failed += 1
            traceback.print_exc()
        if args.out:
            args.out.write_text("".join(json.dumps(r) + "\n" for r in RESULTS))
    del photos, large
    if args.out:
        args.out.write_text("".join(json.dumps(r) + "\n" for r in RESULTS))
    if failed:
        print(f"{failed} of {len(steps)} steps failed (tracebacks above); the rows of the others were written.", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
