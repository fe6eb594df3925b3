"""GPU embedding throughput, JPEG bytes on disk -> vectors on the host, against the naive way in the same run.

Self-contained (torch, transformers, torchvision, Pillow, numpy; no snakeweb import, no hub access) so it runs
as one command on a bare GPU machine:

    python benchmarks/gpu_embed.py [--photos DIR] [--images 4096] [--model base]

Naive = the seed paper's way: HF image processor on PIL images + Dinov2Model, fp32, eager attention, batch 8,
the whole last_hidden_state copied to the host. Fast = bytes read by CPU threads, batched nvJPEG decode on the
GPU on a side stream (overlapping the model on the main stream), resize/crop/normalise on the GPU, bf16 weights,
SDPA attention, torch.compile, batch 256, only [CLS] + mean-patch copied back through pinned memory. A CPU-decode
variant (Pillow `draft` in threads) and a model-only ceiling are printed too, for large photos as well, so the
decode share is visible. Weights are random (compute is the same as the real checkpoint's).
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

    def __init__(self, size: str, batch: int, compile_model: bool = True):
        self.model = build_model(size, "cuda", torch.bfloat16, "sdpa")
        self.batch = batch
        self.mean, self.std = (MEAN * 255).cuda(), (STD * 255).cuda()

        def forward(pixels_uint8):
            x = ((pixels_uint8.float() - self.mean) / self.std).to(torch.bfloat16)
            hidden = self.model(pixel_values=x).last_hidden_state
            return torch.cat([hidden[:, 0], hidden[:, 1:].mean(dim=1)], dim=1).float()

        self._forward = torch.compile(forward, dynamic=False) if compile_model else forward
        with torch.inference_mode():  # compile + autotune outside the timed region
            for _ in range(3):
                self(torch.zeros((batch, 3, 224, 224), dtype=torch.uint8, device="cuda"))
        torch.cuda.synchronize()

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        n = pixels.shape[0]
        if n < self.batch:
            pixels = torch.cat([pixels, pixels.new_zeros((self.batch - n, *pixels.shape[1:]))])
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


def end_to_end(embedder: FastEmbedder, paths: list[Path], pil_share: float, workers: int) -> tuple[float, np.ndarray]:
    """A producer thread prepares batch i+1 (a `pil_share` of it decoded by Pillow in worker processes, the rest
    by batched nvJPEG on a side stream) while the main thread runs the model on batch i."""
    import queue
    import threading

    from torchvision.io import ImageReadMode, decode_jpeg

    started = time.perf_counter()  # worker start-up counts
    batches = [paths[i:i + embedder.batch] for i in range(0, len(paths), embedder.batch)]
    side = torch.cuda.Stream()
    ready: queue.Queue = queue.Queue(maxsize=2)

    shares = [int(round(len(b) * pil_share)) for b in batches]
    loader = iter(torch.utils.data.DataLoader(
        PillowChunks([b[:n] for b, n in zip(batches, shares) if n]), batch_size=None, num_workers=workers,
        pin_memory=True, prefetch_factor=4, persistent_workers=False)) if pil_share else None

    def produce(readers: ThreadPoolExecutor) -> None:
        try:
            with torch.inference_mode(), torch.cuda.stream(side):
                for i, batch in enumerate(batches):
                    n_pil = shares[i]
                    parts = []
                    rest = batch[n_pil:]
                    if rest:
                        chunk = max(1, len(rest) // 4)
                        data = [t for part in readers.map(read_bytes, [rest[j:j + chunk] for j in range(0, len(rest), chunk)]) for t in part]
                        parts.append(gpu_resize_crop(decode_jpeg(data, mode=ImageReadMode.RGB, device="cuda")))
                    if n_pil:
                        parts.insert(0, next(loader).to("cuda", non_blocking=True).permute(0, 3, 1, 2))
                    pixels = torch.cat(parts) if len(parts) > 1 else parts[0].contiguous()
                    event = torch.cuda.Event()
                    event.record(side)
                    ready.put((pixels, event))
        except BaseException as exc:  # surface producer errors in the main thread
            ready.put(exc)
            return

    vectors = []
    with ThreadPoolExecutor(4) as readers, torch.inference_mode():
        producer = threading.Thread(target=produce, args=(readers,), daemon=True)
        producer.start()
        outputs = []
        for _ in batches:
            item = ready.get()
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
        producer.join()
    return len(paths) / elapsed, np.concatenate(vectors)


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
    for label, paths in (("photos", photos), ("large", large)):
        for pil_share in (0.0, 0.3, 0.45, 1.0):
            try:
                end_to_end(embedder, paths[: args.batch * 2], pil_share, workers)  # warm nvJPEG and the threads
                value, vectors = end_to_end(embedder, paths, pil_share, workers)
                assert vectors.shape[0] == len(paths) and np.isfinite(vectors).all()
                emit(name=f"gpu_e2e_{label}_vit_{args.model}_pil{int(pil_share * 100)}", value=round(value, 1), unit="img/s",
                     **ratio(value), decode=f"{int(pil_share * 100)}% Pillow in {workers} processes, rest nvJPEG", batch=args.batch)
            except Exception:
                traceback.print_exc()
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
    except Exception:
        traceback.print_exc()
    if args.out:
        args.out.write_text("".join(json.dumps(r) + "\n" for r in RESULTS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
