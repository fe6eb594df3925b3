"""GPU embedding throughput, JPEG bytes on disk -> vectors on the host, against the naive way in the same run.

Self-contained (torch, transformers, torchvision, Pillow, numpy; no snakeweb import, no hub access) so it runs
as one command on a bare GPU machine:

    python benchmarks/gpu_embed.py [--photos DIR] [--images 16384] [--naive-images 1024] [--model base]

Naive = the seed paper's way: HF image processor on PIL images + Dinov2Model, fp32, eager attention, batch 8,
the whole last_hidden_state copied to the host. Fast = bytes read by CPU threads, batched nvJPEG decode on the
GPU in 1, 3 or 4 producer threads, each on its own side stream (overlapping the model on the main stream; the
model also with CUDA graphs),
resize/crop/normalise on the GPU (per photo, or batched: one grid_sample over a padded batch), bf16 weights,
SDPA attention, torch.compile, batch 256, only [CLS] + mean-patch copied back through pinned memory. A
CPU-decode variant (Pillow `draft` in worker processes), a model-only ceiling and a one-thread profile of the
producer (read, +decode, +resize, no model) are printed too, for large photos as well, so the decode share is
visible. Weights are random (compute is the same as the real checkpoint's).
Prints one JSON object per line and writes them to --out if given.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import torch

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
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


class FastEmbedder:
    """bf16 + SDPA + torch.compile at one fixed batch shape (short batches are padded, so nothing recompiles);
    returns [CLS] + mean patch tokens."""

    def __init__(self, size: str, batch: int, compile_model: bool = True, mode: str | None = None):
        self.model = build_model(size, "cuda", torch.bfloat16, "sdpa")
        self.graphs = mode == "reduce-overhead"  # CUDA graphs: one launch per batch, so the GIL matters less
        self.batch = batch
        self.mean, self.std = (MEAN * 255).cuda(), (STD * 255).cuda()

        def forward(pixels_uint8):
            x = ((pixels_uint8.float() - self.mean) / self.std).to(torch.bfloat16)
            hidden = self.model(pixel_values=x).last_hidden_state
            return torch.cat([hidden[:, 0], hidden[:, 1:].mean(dim=1)], dim=1).float()

        self._forward = torch.compile(forward, dynamic=False, mode=mode) if compile_model else forward
        with torch.inference_mode():  # compile + autotune outside the timed region
            for _ in range(3):
                self(torch.zeros((batch, 3, 224, 224), dtype=torch.uint8, device="cuda"))
        torch.cuda.synchronize()

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        n = pixels.shape[0]
        if n < self.batch:
            pixels = torch.cat([pixels, pixels.new_zeros((self.batch - n, *pixels.shape[1:]))])
        if self.graphs:  # each call is a new step: the previous output (already copied out on this stream) may be reused
            torch.compiler.cudagraph_mark_step_begin()
        return self._forward(pixels.contiguous())[:n]

    def model_only(self, batches: int = 40) -> float:
        with torch.inference_mode():
            x = torch.randint(0, 255, (self.batch, 3, 224, 224), dtype=torch.uint8, device="cuda")
            self(x)
            torch.cuda.synchronize()
            started = time.perf_counter()
            for _ in range(batches):
                self(x)
            torch.cuda.synchronize()
        return batches * self.batch / (time.perf_counter() - started)


def gpu_resize_crop(images: list[torch.Tensor]) -> torch.Tensor:
    """Resize shortest side to 256 and centre-crop 224 (DINOv2's eval transform), done as one crop + resize."""
    import torch.nn.functional as F

    out = []
    for img in images:
        _, h, w = img.shape
        side = min(h, w) * 224 / 256
        top, left = int(round((h - side) / 2)), int(round((w - side) / 2))
        crop = img[:, top:top + int(side), left:left + int(side)].unsqueeze(0).float()
        out.append(F.interpolate(crop, size=(224, 224), mode="bilinear", antialias=True, align_corners=False))
    return torch.cat(out).clamp_(0, 255).to(torch.uint8)


def gpu_resize_crop_batched(images: list[torch.Tensor], supersample: int = 3) -> torch.Tensor:
    """The same crop + resize for the whole batch in a few kernels instead of ~3 per photo: each centre crop is
    copied into one padded buffer, one `grid_sample` reads a `supersample`-times finer grid per photo (its own
    scale) and an average pool brings it to 224 (the box filter stands in for antialiasing)."""
    import torch.nn.functional as F

    sides, corners = [], []
    for img in images:
        _, h, w = img.shape
        side = int(min(h, w) * 224 / 256)
        sides.append(side)
        corners.append(((h - side) // 2, (w - side) // 2))
    size = max(sides)
    buffer = images[0].new_zeros((len(images), 3, size, size))
    for i, (img, side, (top, left)) in enumerate(zip(images, sides, corners)):
        buffer[i, :, :side, :side] = img[:, top:top + side, left:left + side]
    fine = 224 * supersample
    base = (torch.arange(fine, device=buffer.device, dtype=torch.float32) + 0.5) / fine  # 0..1 across the crop
    scale = torch.tensor(sides, device=buffer.device, dtype=torch.float32).view(-1, 1) / size
    coords = 2 * base.view(1, -1) * scale - 1  # [N, fine], grid_sample's normalised coordinates
    grid = torch.stack(torch.broadcast_tensors(coords[:, None, :, None], coords[:, :, None, None]), dim=-1).squeeze(-2)
    sampled = F.grid_sample(buffer.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
    return F.avg_pool2d(sampled, supersample).round_().clamp_(0, 255).to(torch.uint8)


def read_bytes(paths: list[Path]) -> list[torch.Tensor]:
    return [torch.frombuffer(bytearray(p.read_bytes()), dtype=torch.uint8) for p in paths]


def _pil_prepare(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        im.draft("RGB", (256, 256))  # JPEG DCT scaling: decode big photos at 1/2..1/8 size
        im = im.convert("RGB")
        w, h = im.size
        side = min(w, h) * 224 / 256
        left, top = (w - side) / 2, (h - side) / 2
        im = im.resize((224, 224), Image.BILINEAR, box=(left, top, left + side, top + side), reducing_gap=3.0)
        return np.asarray(im)


class PillowChunks(torch.utils.data.Dataset):
    """Each item: one batch's Pillow share, decoded in a worker process (no GIL contention with nvJPEG)."""

    def __init__(self, chunks: list[list[Path]]):
        self.chunks = chunks

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(np.stack([_pil_prepare(p) for p in self.chunks[i]]))


def end_to_end(embedder: FastEmbedder, paths: list[Path], pil_share: float, workers: int, producers: int = 1,
               resize=gpu_resize_crop) -> tuple[float, np.ndarray]:
    """`producers` threads, each on its own CUDA stream, prepare batches i+1.. (a `pil_share` of each decoded by
    Pillow in worker processes, the rest by batched nvJPEG, then `resize`) while the main thread runs the model
    on batch i; batch i comes from producer i % producers, so the order is kept."""
    import queue
    import threading

    from torchvision.io import ImageReadMode, decode_jpeg

    if pil_share and producers != 1:
        raise ValueError("the Pillow share is fed by one producer")
    started = time.perf_counter()  # worker start-up counts
    batches = [paths[i:i + embedder.batch] for i in range(0, len(paths), embedder.batch)]
    ready: list[queue.Queue] = [queue.Queue(maxsize=2) for _ in range(producers)]

    shares = [int(round(len(b) * pil_share)) for b in batches]
    loader = iter(torch.utils.data.DataLoader(
        PillowChunks([b[:n] for b, n in zip(batches, shares) if n]), batch_size=None, num_workers=workers,
        pin_memory=True, prefetch_factor=4, persistent_workers=False)) if pil_share else None

    def produce(me: int, readers: ThreadPoolExecutor) -> None:
        try:
            side = torch.cuda.Stream()
            with torch.inference_mode(), torch.cuda.stream(side):
                for i in range(me, len(batches), producers):
                    batch, n_pil = batches[i], shares[i]
                    parts = []
                    rest = batch[n_pil:]
                    if rest:
                        chunk = max(1, len(rest) // 4)
                        data = [t for part in readers.map(read_bytes, [rest[j:j + chunk] for j in range(0, len(rest), chunk)]) for t in part]
                        parts.append(resize(decode_jpeg(data, mode=ImageReadMode.RGB, device="cuda")))
                    if n_pil:
                        parts.insert(0, next(loader).to("cuda", non_blocking=True).permute(0, 3, 1, 2))
                    pixels = torch.cat(parts) if len(parts) > 1 else parts[0].contiguous()
                    event = torch.cuda.Event()
                    event.record(side)
                    ready[me].put((pixels, event))
        except BaseException as exc:  # surface producer errors in the main thread
            ready[me].put(exc)
            return

    vectors = []
    with ThreadPoolExecutor(4 * producers) as readers, torch.inference_mode():
        threads = [threading.Thread(target=produce, args=(me, readers), daemon=True) for me in range(producers)]
        for thread in threads:
            thread.start()
        outputs = []
        for i in range(len(batches)):
            item = ready[i % producers].get()
            if isinstance(item, BaseException):
                raise item
            pixels, event = item
            torch.cuda.current_stream().wait_event(event)
            pixels.record_stream(torch.cuda.current_stream())
            host = embedder(pixels).to("cpu", non_blocking=True)
            done = torch.cuda.Event()
            done.record()
            outputs.append((done, host))
            if len(outputs) > 2:  # the GPU stays two batches ahead of the host
                oldest, vector = outputs.pop(0)
                oldest.synchronize()
                vectors.append(vector.numpy())
        torch.cuda.synchronize()
        vectors.extend(v.numpy() for _, v in outputs)
        elapsed = time.perf_counter() - started
        for thread in threads:
            thread.join()
    return len(paths) / elapsed, np.concatenate(vectors)


def decode_profile(paths: list[Path], batch: int) -> None:
    """Where the producer's time goes, one thread, no model: reading bytes, batched nvJPEG, each resize."""
    from concurrent.futures import ThreadPoolExecutor

    from torchvision.io import ImageReadMode, decode_jpeg

    batches = [paths[i:i + batch] for i in range(0, len(paths), batch)]
    with ThreadPoolExecutor(4) as readers, torch.inference_mode():
        def read(batch_paths):
            chunk = max(1, len(batch_paths) // 4)
            return [t for part in readers.map(read_bytes, [batch_paths[j:j + chunk] for j in range(0, len(batch_paths), chunk)]) for t in part]

        def decode(b):
            return decode_jpeg(read(b), mode=ImageReadMode.RGB, device="cuda")

        for label, work in (("read", read), ("read_decode", decode),
                            ("read_decode_resize_loop", lambda b: gpu_resize_crop(decode(b))),
                            ("read_decode_resize_batched", lambda b: gpu_resize_crop_batched(decode(b)))):
            work(batches[0])
            torch.cuda.synchronize()
            started = time.perf_counter()
            for b in batches:
                work(b)
            torch.cuda.synchronize()
            emit(name=f"gpu_producer_{label}", value=round(len(paths) / (time.perf_counter() - started), 1), unit="img/s",
                 threads=1, what="one producer thread, no model")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=Path, help="folder of real JPEG photos to derive the test images from")
    parser.add_argument("--images", type=int, default=8192)
    parser.add_argument("--naive-images", type=int, default=512)
    parser.add_argument("--large-images", type=int, default=512, help="2-4k px photos for the decode-share figure")
    parser.add_argument("--model", choices=sorted(SIZES), default="base")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("No CUDA device: this benchmark needs a GPU (the CPU one is `python benchmarks/run.py`).", file=sys.stderr)
        return 2
    torch.backends.cuda.matmul.allow_tf32 = True
    emit(name="device", value=torch.cuda.get_device_name(), unit="", torch=torch.__version__, cpus=os.cpu_count())
    tmp = Path(tempfile.mkdtemp())
    seeds = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in {".jpg", ".jpeg"}) if args.photos else synthetic_seeds(tmp / "seeds")
    photos = make_dataset(seeds, tmp / "photos", args.images, (375, 750))
    large = make_dataset(seeds, tmp / "large", args.large_images, (2000, 4000))

    baseline = naive(photos[: args.naive_images], args.model, "cuda")
    emit(name=f"gpu_naive_vit_{args.model}", value=round(baseline, 1), unit="img/s", batch=8, dtype="fp32", attn="eager")

    def ratio(value: float) -> dict:
        return {"baseline": round(baseline, 1), "ratio": round(value / baseline, 2)}

    try:
        t0 = time.perf_counter()
        embedder = FastEmbedder(args.model, args.batch)
        emit(name="gpu_compile_warmup", value=round(time.perf_counter() - t0, 1), unit="s")
    except Exception:
        traceback.print_exc()
        embedder = FastEmbedder(args.model, args.batch, compile_model=False)
        emit(name="gpu_compile_failed_fell_back_to_eager", value=1, unit="")
    emit(name=f"gpu_model_only_vit_{args.model}", value=round(embedder.model_only(), 1), unit="img/s", batch=args.batch, dtype="bf16")
    workers = max(1, (os.cpu_count() or 4) - 4)  # leave cores for the nvJPEG producer, readers and the model thread
    decode_profile(photos, args.batch)
    # fidelity of the fast path: bf16 vs fp32 on the same decoded pixels
    try:
        from torchvision.io import ImageReadMode, decode_jpeg

        pixels = gpu_resize_crop(decode_jpeg(read_bytes(photos[:64]), mode=ImageReadMode.RGB, device="cuda"))
        fp32 = build_model(args.model, "cuda", torch.float32, "eager")
        with torch.inference_mode():
            ref = fp32(pixel_values=((pixels.float() - embedder.mean) / embedder.std)).last_hidden_state[:, 0]
            fast = embedder(pixels)[:, : ref.shape[1]]
        cosine = torch.nn.functional.cosine_similarity(ref, fast).min().item()
        emit(name="gpu_bf16_cls_cosine_min_vs_fp32", value=round(cosine, 5), unit="cosine", images=64)
        batched_pixels = gpu_resize_crop_batched(decode_jpeg(read_bytes(photos[:64]), mode=ImageReadMode.RGB, device="cuda"))
        emit(name="gpu_batched_resize_mean_abs_diff_vs_loop", value=round((batched_pixels.float() - pixels.float()).abs().mean().item(), 3),
             unit="grey levels of 255", images=64)
    except Exception:
        traceback.print_exc()
    one, three, four = dict(pil_share=0.0), dict(pil_share=0.0, producers=3), dict(pil_share=0.0, producers=4)
    batched = dict(resize=gpu_resize_crop_batched)
    runs = [("photos", photos, "pil0", one), ("photos", photos, "pil100", dict(pil_share=1.0)),
            ("photos", photos, "batched_resize", {**one, **batched}), ("large", large, "pil0", one),
            # several producers after: should concurrent nvJPEG calls break the CUDA context, the above is measured
            *[("photos", photos, f"3_producers_rep{r}", three) for r in range(3)],
            *[("photos", photos, f"4_producers_rep{r}", four) for r in range(3)],
            *[("photos", photos, f"3_producers_batched_resize_rep{r}", {**three, **batched}) for r in range(3)],
            ("large", large, "3_producers", three)]
    try:
        graphed = FastEmbedder(args.model, args.batch, mode="reduce-overhead")
        emit(name=f"gpu_model_only_vit_{args.model}_cuda_graphs", value=round(graphed.model_only(), 1), unit="img/s", batch=args.batch)
        runs += [("photos", photos, f"3_producers_batched_resize_cuda_graphs_rep{r}", {**three, **batched, "embedder": graphed})
                 for r in range(3)]
    except Exception:
        traceback.print_exc()
    for label, paths, variant, options in runs:
        try:
            run_embedder = options.pop("embedder", embedder)
            options = {"workers": workers, **options}
            end_to_end(run_embedder, paths[: args.batch * 4], **options)  # warm nvJPEG and the threads
            value, vectors = end_to_end(run_embedder, paths, **options)
            assert vectors.shape[0] == len(paths) and np.isfinite(vectors).all()
            decode = f"{int(options['pil_share'] * 100)}% Pillow, rest nvJPEG"
            emit(name=f"gpu_e2e_{label}_vit_{args.model}_{variant}", value=round(value, 1), unit="img/s", **ratio(value),
                 decode=decode, pillow_processes=options["workers"], batch=args.batch,
                 producers=options.get("producers", 1), resize=options.get("resize", gpu_resize_crop).__name__)
        except Exception:
            traceback.print_exc()
    if args.out:
        args.out.write_text("".join(json.dumps(r) + "\n" for r in RESULTS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
