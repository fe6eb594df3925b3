"""SnakeCLEF scale end to end: a store of the real task's size built and used through the product's own commands.

    python benchmarks/scale.py [--scale 1.0] [--work DIR] [--model NAME] [--no-pages] [--no-default-identify] [--keep] \
        [--reuse] [--queries 40] [--repeats 3] [--out benchmarks/results/scale.jsonl]

1. Synthesis (the harness's own code, not timed as product): `scale` x 182,261 images in ~0.567 observations
   per image over the 1,784 SnakeCLEF classes with the real class-size skew (snakeclef/class_count.csv), split
   80/10/10 by observation, each observation's country drawn from its class's countries in the real metadata
   (the global distribution for classes the metadata lacks; `NA` is Namibia), vectors of the model's dimension
   with the head benchmark's structure (benchmarks/run.py clustered_vector_chunks), one small real JPEG per
   image, written as the import-embeddings Parquet layout. The model the vectors name is by default a stand-in
   of DINOv2-B's shape (768-d, random weights: standin_model), the dimension SnakeCLEF entries import.
2. Stages, each `python -m pipelines ...` in its own process, timed with its peak resident memory (VmHWM):
   import-embeddings (class_list.csv + venomous_status_list.csv as the species tables, the taxonomy) -> index
   -> train -> predict -> project -> evaluate -> export (submission) -> export --answers -> check.
3. Identify on that store with the model it names (the product's Identifier, as the CLI and the dashboard use
   it): load time once, then p50/p95 over real HackerEarth photos. Identify's target is for the default offline
   backbone: unless the store already is of that model (or --no-default-identify), the same images as
   default-backbone vectors (3840-d) go through import -> index -> train into a second store, identify timed there.
4. Every dashboard page in headless chromium (benchmarks/scale_pages.py): first render and one interaction.

Prints one JSON object per line (the shape of benchmarks/run.py) and writes them to --out. Targets (issue 17,
this 2-core machine): stages <= 6 min in all and <= 6 GB peak; identify p50 <= 150 ms; pages <= 2 s first
render, <= 1 s per interaction. `--scale 0.05` is the CI-sized run (tests/test_scale.py: completes, no timings).
`--reuse --work DIR` re-times identify and the pages on a store an earlier `--keep` run left there.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("SNAKEWEB_SHARED_DATA", ROOT.parent / "shared" / "data"))
SNAKECLEF = SHARED / "snakeclef"
IMAGES, OBSERVATIONS = 182_261, 103_404  # SnakeCLEF 2023 training set
RESULTS: list[dict] = []
TARGET_TOTAL_S, TARGET_PEAK_GB = 360.0, 6.0


SCALE = 1.0  # this run's --scale: the targets are the full task's, so a smaller run states them without a verdict


def emit(name: str, value, unit: str, **fields) -> dict:
    if SCALE != 1.0 and "met" in fields and not fields.get("reused"):
        fields["met"] = None
        fields["target_note"] = f"the targets are for --scale 1; this run is --scale {SCALE:g}"
    row = {"name": name, "value": value, "unit": unit, **fields}
    RESULTS.append(row)
    print(json.dumps(row), flush=True)
    return row


# ---------------------------------------------------------------------------------------------------------------
# synthesis


def country_draws(class_ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One ISO country code per observation of `class_ids`: drawn from that class's codes in the real SnakeCLEF
    metadata (validation + HerpMapper training), else from all their codes. `NA` is Namibia, kept as text."""
    frames = [pd.read_csv(SNAKECLEF / name, usecols=["class_id", "code"], keep_default_na=False, na_values=[""])
              for name in ("SnakeCLEF2023-ValMetadata.csv", "SnakeCLEF2023-TrainMetadata-HM.csv")]
    meta = pd.concat(frames).dropna()
    meta = meta[meta["code"].str.fullmatch(r"[A-Z]{2}")]  # the metadata's "unknown" stays out of the draws
    overall = meta["code"].to_numpy()
    by_class = {c: group.to_numpy() for c, group in meta.groupby("class_id")["code"]}
    out = np.empty(len(class_ids), dtype=object)
    for class_id in np.unique(class_ids):
        rows = np.flatnonzero(class_ids == class_id)
        out[rows] = rng.choice(by_class.get(int(class_id), overall), len(rows))
    return out


def thumbnails(rng: np.random.Generator, count: int = 256) -> list[bytes]:
    """`count` small JPEGs (96 x 72, a blotchy colour each): every image grid has something real to draw."""
    import io

    from PIL import Image

    pool = []
    for _ in range(count):
        coarse = rng.integers(30, 230, (6, 8, 3)).astype(np.uint8)
        image = Image.fromarray(coarse).resize((96, 72), Image.Resampling.BICUBIC)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=80)
        pool.append(buffer.getvalue())
    return pool


def synthesise(work: Path, scale: float, dim: int, seed: int = 0, parquet_name: str = "vectors.parquet", photos: bool = True) -> dict:
    """Writes work/`parquet_name` and (with `photos`) work/photos/<class_id>/<n>.jpg; returns what was made. The
    same `scale` and `seed` give the same images, observations, splits and countries at any `dim`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from benchmarks.run import clustered_vector_chunks

    rng = np.random.default_rng(seed)
    counts = pd.read_csv(SNAKECLEF / "class_count.csv")[["class_id", "count"]].sort_values("class_id")
    sizes = np.maximum(1, np.round(counts["count"].to_numpy() * scale)).astype(np.int64)
    class_of = np.repeat(counts["class_id"].to_numpy(), sizes)
    n = len(class_of)
    # observations: consecutive images of a class, OBSERVATIONS / IMAGES of them per image; split by observation
    local = np.arange(n) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    obs_local = np.floor(local * OBSERVATIONS / IMAGES).astype(np.int64)
    obs_key = class_of * 1_000_000 + obs_local
    obs_codes, obs_unique = pd.factorize(obs_key)
    observation_id = (1_000_000 + obs_codes).astype(np.int64)
    obs_class = np.asarray(obs_unique) // 1_000_000
    draw = rng.random(len(obs_unique))
    obs_split = np.where(draw < 0.8, "train", np.where(draw < 0.9, "val", "test"))
    obs_country = country_draws(obs_class, rng)
    order = rng.permutation(n)  # rows in no particular order, as a cluster job writes them

    folder = work / "photos"
    pool = thumbnails(rng)
    paths = np.array([str(folder / f"{c}" / f"{i}.jpg") for i, c in enumerate(class_of)], dtype=object)
    if photos:
        for class_id in np.unique(class_of):
            (folder / str(class_id)).mkdir(parents=True, exist_ok=True)
        for i, path in enumerate(paths):  # the generator's loop, not the product's
            with open(path, "wb") as f:
                f.write(pool[i % len(pool)])

    # the head benchmark's difficulty at dim 768 (isotropic noise 0.2), the same per-coordinate signal-to-noise at `dim`
    noise = 0.2 * np.sqrt(768 / dim)
    class_index = np.searchsorted(counts["class_id"].to_numpy(), class_of[order])
    parquet = work / parquet_name
    writer = None
    start = 0
    for vectors, _ in clustered_vector_chunks(n, dim, len(counts), seed=3, labels=class_index, isotropic_noise=noise, chunk=20_000):
        rows = order[start:start + len(vectors)]
        start += len(vectors)
        batch = pa.table({
            "path": pa.array(paths[rows], pa.string()),
            "observation_id": pa.array(observation_id[rows]),
            "class_id": pa.array(class_of[rows]),
            "split": pa.array(obs_split[obs_codes[rows]], pa.string()),
            "country": pa.array(obs_country[obs_codes[rows]], pa.string()),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel(), pa.float32()), dim),
        })
        writer = writer or pq.ParquetWriter(parquet, batch.schema)
        writer.write_table(batch)
    writer.close()
    return {"images": n, "observations": len(obs_unique), "classes": int((sizes > 0).sum()), "dim": dim,
            "parquet_gb": round(parquet.stat().st_size / 1e9, 2), "namibia_observations": int((obs_country == "NA").sum())}


# ---------------------------------------------------------------------------------------------------------------
# the product's stages


def high_water_gb(pid: int) -> float | None:
    """The process's peak resident memory so far (VmHWM of /proc/PID/status), or None once it has exited."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        return None
    return None


def run_stage(name: str, argv: list[str], **fields) -> dict:
    """`python -m pipelines ARGV` in a fresh process: wall seconds and peak resident memory. The peak is the stage
    process's own VmHWM, read every 50 ms while it runs: wait4's ru_maxrss keeps the high-water mark of the process
    that forked it (this harness, holding the synthesised tables), so every stage reported at least the harness's.
    A failing stage is reported with its last lines and stops the run."""
    log = Path(tempfile.gettempdir()) / f"scale-{name}-{os.getpid()}.log"
    started = time.perf_counter()
    peak = 0.0
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "pipelines", *argv], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        while process.poll() is None:
            peak = max(peak, high_water_gb(process.pid) or 0.0)
            time.sleep(0.05)
    seconds = time.perf_counter() - started
    code = process.returncode
    tail = log.read_text(errors="replace").strip().splitlines()[-3:]
    row = emit(f"stage_{name}_s", round(seconds, 2), "s", peak_gb=round(peak, 2), exit_code=code,
               last_line=tail[-1] if tail else "", **fields)
    if code != 0:
        raise SystemExit(f"stage {name} failed (exit {code}); its output is in {log}:\n" + "\n".join(tail))
    return row


IDENTIFY = """
import json, sys, time
import numpy as np
from pathlib import Path
started = time.perf_counter()
from snakeweb.identify import Identifier
from snakeweb.store import Store
identifier = Identifier(Store(sys.argv[1]))
loaded = time.perf_counter() - started
photos = [Path(p).read_bytes() for p in sys.argv[2:]]
first = time.perf_counter()
identifier.identify([("upload.jpg", photos[0])], top=5, neighbours=12)
first = time.perf_counter() - first
latencies = []
for data in photos[1:]:
    t = time.perf_counter()
    result = identifier.identify([("upload.jpg", data)], top=5, neighbours=12)
    latencies.append((time.perf_counter() - t) * 1000)
    assert result.species and len(result.neighbours) == 12
print(json.dumps({"load_s": loaded, "first_s": first, "p50": float(np.percentile(latencies, 50)),
                  "p95": float(np.percentile(latencies, 95)), "queries": len(latencies),
                  "index": int(identifier.index.ntotal), "engine": identifier.backbone.details.get("engine")}))
"""


def measure_identify(store: Path, queries: int, prefix: str = "identify", target: bool = True, **fields) -> None:
    from benchmarks.run import photos

    files = [str(p) for p in photos(queries + 1)]
    done = subprocess.run([sys.executable, "-c", IDENTIFY, str(store), *files], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode != 0:
        raise SystemExit("identify on the store failed:\n" + done.stderr[-2000:])
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    emit(f"{prefix}_load_s", round(figures["load_s"], 2), "s", note="Identifier(store): model, index, head, catalogue; once per process")
    emit(f"{prefix}_first_s", round(figures["first_s"], 3), "s", note="the first identification after loading")
    goal = {"target": "<= 150 ms", "met": figures["p50"] <= 150} if target else {}
    emit(f"{prefix}_p50_ms", round(figures["p50"], 1), "ms", **goal, p95_ms=round(figures["p95"], 1), queries=figures["queries"],
         index_vectors=figures["index"], engine=figures["engine"], **fields)


STANDIN = "dinov2-base-shape"


def standin_model(work: Path) -> Path:
    """A local transformers folder with DINOv2-base's shape (ViT-B/14, 768-d) and random weights: SnakeCLEF
    entries (the seed paper among them) import DINOv2-B vectors, and the hub that holds the real weights is not
    reachable from this machine. The vectors are synthetic either way; this gives them the paper's dimension and
    identify a ViT-B forward to time."""
    folder = work / STANDIN
    if not (folder / "config.json").is_file():
        import torch
        from transformers import Dinov2Config, Dinov2Model

        torch.manual_seed(0)
        Dinov2Model(Dinov2Config(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, image_size=518,
                                 patch_size=14)).save_pretrained(folder)
    return folder


def import_argv(store: Path, parquet: Path, model: str) -> list[str]:
    """`import-embeddings` of the harness's Parquet into `store` with the real species tables, the taxonomy and the
    species x country table (recorded, so predict, evaluate and the pages apply the country prior)."""
    return ["import-embeddings", "--store", str(store), "--parquet", str(parquet), "--model", model,
            "--species", str(SNAKECLEF / "class_list.csv"), str(SNAKECLEF / "venomous_status_list.csv"),
            "--taxonomy", str(SHARED / "taxonomy" / "serpentes.csv"), "--country-table", str(SNAKECLEF / "Species_Relevance.csv")]


def run_product(work: Path, store: Path, args: argparse.Namespace) -> None:
    """Synthesis, then every stage into `store`; records the model in store/scale.json for --reuse."""
    started = time.perf_counter()
    made = synthesise(work, args.scale, args.dim)
    emit("synthesis_s", round(time.perf_counter() - started, 1), "s", note="the harness's generator (Parquet + JPEGs), not the product",
         **made)

    s = ["--store", str(store)]
    stages = [
        ("import", import_argv(store, work / "vectors.parquet", args.model)),
        ("index", ["index", *s]),
        ("train", ["train", *s, *(["--epochs", str(args.epochs)] if args.epochs else [])]),
        ("predict", ["predict", *s]),
        ("project", ["project", *s]),
        ("evaluate", ["evaluate", *s, "--split", "test"]),  # with the country table recorded at import, as the Metrics page
        ("export", ["export", *s, "--out", str(work / "submission.csv")]),
        ("export_answers", ["export", *s, "--answers", "--split", "test", "--out", str(work / "answers.jsonl")]),
        ("check", ["check", *s]),
    ]
    rows = [run_stage(name, stage_argv) for name, stage_argv in stages]
    total = sum(r["value"] for r in rows)
    peak = max(r["peak_gb"] for r in rows)
    emit("stages_total_s", round(total, 1), "s", target=f"<= {TARGET_TOTAL_S:.0f} s", met=total <= TARGET_TOTAL_S,
         stages=[r["name"].removeprefix("stage_").removesuffix("_s") for r in rows], load=round(os.getloadavg()[0], 2))
    emit("stages_peak_gb", peak, "GB", target=f"<= {TARGET_PEAK_GB:.0f} GB", met=peak <= TARGET_PEAK_GB)

    (store / "scale.json").write_text(json.dumps({"model": args.model, "scale": args.scale, "rows": RESULTS}))


def default_backbone_store(work: Path, args: argparse.Namespace) -> Path:
    """The same images, observations, splits and countries as vectors of the default offline backbone (3840-d),
    imported, indexed and trained into work/store-default with the product's defaults (at most --default-epochs): the store identify's
    target is set on (issue 17: p50 <= 150 ms with the default backbone). Its stages are reported, not counted
    in the main store's totals."""
    from snakeweb.models import AUTO_OFFLINE_MODEL, load_backbone, resolve_model

    config = resolve_model(AUTO_OFFLINE_MODEL)
    dim = load_backbone(config).feature_dim(config.feature_kinds[0])
    store = work / "store-default"
    if store.exists():
        shutil.rmtree(store)
    started, first_row = time.perf_counter(), len(RESULTS)
    made = synthesise(work, args.scale, dim, parquet_name="vectors-default.parquet", photos=False)
    emit("default_synthesis_s", round(time.perf_counter() - started, 1), "s", note="the harness's generator (Parquet), not the product",
         **made)
    s = ["--store", str(store)]
    for name, argv in (
        ("default_import", import_argv(store, work / "vectors-default.parquet", AUTO_OFFLINE_MODEL)),
        ("default_index", ["index", *s]),
        # capped: at full scale early stopping ends it after ~4 epochs (as on the main store); at --scale 0.05, 5 photos a
        # class in 3840 dims, validation loss keeps creeping down (0.02% an epoch) past the cap of 1,000 epochs
        ("default_train", ["train", *s, "--epochs", str(args.default_epochs)]),
    ):
        run_stage(name, argv, model=config.name, dim=dim)
    (work / "vectors-default.parquet").unlink()  # 2.8 GB at full scale; the store holds the vectors
    (store / "scale.json").write_text(json.dumps({"model": AUTO_OFFLINE_MODEL, "scale": args.scale, "rows": RESULTS[first_row:]}))
    return store


def main(argv: list[str] | None = None) -> int:
    from snakeweb.models import AUTO_OFFLINE_MODEL

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of SnakeCLEF's 182,261 images (each class scaled, >= 1)")
    parser.add_argument("--work", type=Path, help="working folder (default: a temporary one, removed unless --keep)")
    parser.add_argument("--model", default=STANDIN,
                        help=f"the model the vectors are said to come from (identify embeds with it): {STANDIN} (default; 768-d, "
                        f"DINOv2-B's shape with random weights, see standin_model), or any model name, e.g. {AUTO_OFFLINE_MODEL} "
                        "(the default offline backbone, 3840-d)")
    parser.add_argument("--no-pages", action="store_true", help="skip the dashboard pages")
    parser.add_argument("--no-default-identify", action="store_true",
                        help="skip the second store of default-backbone vectors that identify's target is measured on")
    parser.add_argument("--epochs", type=int, help="a cap on the main store's training epochs (default: the product's own; "
                        "tests/test_scale.py caps it: at --scale 0.05 validation loss creeps down for hundreds of epochs)")
    parser.add_argument("--default-epochs", type=int, default=20, help="the cap on the second store's training (identify's latency "
                        "does not depend on it; at full scale early stopping ends sooner)")
    parser.add_argument("--queries", type=int, default=40, help="identifications timed on the store")
    parser.add_argument("--repeats", type=int, default=3, help="warm page visits and interactions timed per page")
    parser.add_argument("--keep", action="store_true", help="keep the working folder")
    parser.add_argument("--reuse", action="store_true", help="--work holds a store this harness built: time identify and the pages only")
    parser.add_argument("--out", type=Path, help="also write the JSON lines here")
    args = parser.parse_args(argv)
    if args.reuse and args.work is None:
        parser.error("--reuse needs --work DIR: the folder an earlier --keep run left its store in")
    for needed in ("class_count.csv", "class_list.csv", "venomous_status_list.csv", "SnakeCLEF2023-ValMetadata.csv",
                   "SnakeCLEF2023-TrainMetadata-HM.csv", "Species_Relevance.csv", "../taxonomy/serpentes.csv"):
        if not (SNAKECLEF / needed).is_file():
            parser.error(f"{(SNAKECLEF / needed).resolve()} is missing: the harness reads the real SnakeCLEF tables from ../shared/data "
                         "(or SNAKEWEB_SHARED_DATA)")

    work = args.work or Path(tempfile.mkdtemp(prefix="snakeweb-scale-"))
    store = work / "store"
    if args.reuse and not (store / "snakeweb.duckdb").is_file():
        parser.error(f"--reuse needs a store this harness built in --work; {store} has none")
    if store.exists() and not args.reuse:
        shutil.rmtree(store)
    work.mkdir(parents=True, exist_ok=True)
    try:
        from snakeweb.models import load_backbone, resolve_model

        if args.reuse:  # the earlier run's machine, synthesis and stage rows come first, as they were
            earlier = json.loads((store / "scale.json").read_text())
            args.model, args.scale = earlier["model"], earlier["scale"]
            for row in earlier.get("rows", []):
                if row["name"] != "machine":  # this run's machine row follows (one per file)
                    emit(**{**row, "reused": True})
        elif args.model == STANDIN:
            args.model = str(standin_model(work))
        config = resolve_model(args.model)
        backbone = load_backbone(config)
        dim = backbone.feature_dim(config.feature_kinds[0])
        args.dim = dim
        del backbone
        global SCALE
        SCALE = args.scale
        load = os.getloadavg()[0]
        from benchmarks.run import cpu_isa

        emit("machine", os.cpu_count(), "cpus", cpu=platform.processor() or platform.machine(), isa=cpu_isa(), python=platform.python_version(),
             load=round(load, 2), scale=args.scale, model=config.name, dim=dim, date=time.strftime("%Y-%m-%d"))
        if not args.reuse:
            run_product(work, store, args)
        default = config.name == resolve_model(AUTO_OFFLINE_MODEL).name
        measure_identify(store, args.queries, target=default, model=config.name,
                         **({} if default else {"note": "the store's own model; the target is for the default backbone: identify_default"}))
        if not default and not args.no_default_identify:
            second = work / "store-default"
            if args.reuse and (second / "scale.json").is_file():
                for row in json.loads((second / "scale.json").read_text())["rows"]:
                    emit(**{**row, "reused": True})
            else:
                second = default_backbone_store(work, args)
            measure_identify(second, args.queries, prefix="identify_default", model=AUTO_OFFLINE_MODEL,
                             note="a store of the same images as default-backbone vectors (default_backbone_store)")
        failures: list[str] = []
        if not args.no_pages:
            from benchmarks.run import photos
            from benchmarks.scale_pages import measure_pages

            failures = measure_pages(store, photos(1)[0], emit, repeats=args.repeats)
            emit("pages_failures", len(failures), "count", failures=failures)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text("".join(json.dumps(r) + "\n" for r in RESULTS))
        return 1 if failures else 0
    finally:
        if not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
