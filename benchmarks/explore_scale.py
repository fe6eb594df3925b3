"""The Explore page at SnakeCLEF scale in a real headless browser: 182,261 points over the 1,784 classes, drawn
whole, coloured and selected. Measures the product's page (Plotly scattergl, through app.py) and, on a stand-alone
page with the same data and selection panel (benchmarks/explore_candidate_page.py), the candidates it was chosen
against: pydeck (deck.gl ScatterplotLayer, OrthographicView) and Plotly with each point's name as hover text. The
store is written straight into DuckDB (no model, no embeddings: Explore reads species, images, predictions and
the projection).

    python benchmarks/explore_scale.py [--scale 1.0] [--candidates product,plotly-names,pydeck] [--repeats 3] \
        [--small-scale 0.02] [--store DIR] [--out benchmarks/results/explore_scale.jsonl]

Playwright drives Debian chromium headless with --disable-gpu, as the browser tests do (WebGL in SwiftShader,
i.e. on the CPU). Per page: first render, navigation to the map drawn (its first WebGL draw call rasterised), cold
(the first visit after the server started) and warm, in a fresh browser context and in a new tab of one that had
the page open; box selections -> species table and 24 images shown (a few clusters; most of the map); a click on
one point; a colour change -> map redrawn; the server's own script seconds beside each (the server runs under
--serve-timed). The product's page is timed on a small store too (--small-scale), which separates the page's
fixed cost from the points'. Prints one JSON object per line and writes them to --out (benchmarks/figures.py
renders them). `make_explore_store` is the store generator, for other harnesses.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SNAKECLEF = Path(os.environ.get("SNAKEWEB_SHARED_DATA", ROOT.parent / "shared" / "data")) / "snakeclef"
OBSERVATIONS_PER_IMAGE = 103_404 / 182_261  # SnakeCLEF 2023: 182,261 images in 103,404 observations
RESULTS: list[dict] = []
SCRIPT_LOG = Path(tempfile.gettempdir()) / f"explore-scale-runs-{os.getpid()}.log"


def emit(name: str, value, unit: str, **fields) -> None:
    row = {"name": name, "value": value, "unit": unit, **fields}
    RESULTS.append(row)
    print(json.dumps(row), flush=True)


# ---------------------------------------------------------------------------------------------------------------
# the store


def snakeclef_species(n_classes: int = 1784) -> tuple[pd.DataFrame, np.ndarray]:
    """(species rows, images per class): the real class list and class sizes where ../shared/data has them,
    else made-up names with a long-tailed size skew of the same total."""
    names, counts = SNAKECLEF / "class_list.csv", SNAKECLEF / "class_count.csv"
    if names.is_file() and counts.is_file():
        species = pd.read_csv(names)[["class_id", "binomial_name", "genus", "MIVS"]].sort_values("class_id")
        unnamed = species["binomial_name"].isna()  # 19 classes of the list have no name
        species.loc[unnamed, "binomial_name"] = "unnamed class " + species.loc[unnamed, "class_id"].astype(str)
        species["genus"] = species["genus"].fillna(species["binomial_name"].str.split().str[0])
        sizes = pd.read_csv(counts).set_index("class_id")["count"].reindex(species["class_id"]).fillna(1).to_numpy(np.int64)
    else:
        rng = np.random.default_rng(1)
        genus = rng.integers(0, n_classes // 5, n_classes)
        species = pd.DataFrame({"class_id": np.arange(n_classes), "genus": [f"Genus{g}" for g in genus],
                                "MIVS": (rng.random(n_classes) < 0.3).astype(int)})
        species["binomial_name"] = species["genus"] + " species" + species["class_id"].astype(str)
        sizes = np.maximum(1, np.round(182_261 * rng.pareto(1.2, n_classes) / rng.pareto(1.2, n_classes).sum())).astype(np.int64)
    species["venom_status"] = np.where(species["MIVS"] == 1, "venomous", "harmless")
    species.loc[species.index[::97], "venom_status"] = "unknown"  # a few, so the page shows all three statuses
    return species.drop(columns="MIVS").reset_index(drop=True), sizes


def make_explore_store(root: str | Path, scale: float = 1.0, seed: int = 0, n_photos: int = 12):
    """A store with what the Explore page reads, SnakeCLEF-shaped, written straight into its DuckDB tables:
    the 1,784 species (real names and genera, venom from MIVS), `scale` x 182,261 images (each class's size
    scaled, at least 1) in observations of ~1.76 images split 80/10/10, rank 1-3 predictions (~56% right at
    rank 1, most errors within the genus), and a projection with genus and species clusters plus ~10% of each
    species scattered into other species' clusters. Each image path is a symlink to one of `n_photos` small
    generated JPEGs (paths are unique in the store). Returns the Store."""
    from PIL import Image

    from snakeweb.heads import Head, TrainConfig
    from snakeweb.index import ids_digest
    from snakeweb.label_map import LabelMap
    from snakeweb.store import Store, set_meta
    from snakeweb.stored_predictions import predictions_record

    root = Path(root)
    rng = np.random.default_rng(seed)
    species, sizes = snakeclef_species()
    sizes = np.maximum(1, np.round(sizes * scale)).astype(np.int64)
    n = int(sizes.sum())
    class_of = np.repeat(species["class_id"].to_numpy(), sizes)
    position = np.repeat(np.arange(len(species)), sizes)  # species row of each image

    # projection: genera spread over a disc, species around their genus, images around their species
    genus_codes, genera = pd.factorize(species["genus"])
    radius, angle = 14 * np.sqrt(rng.random(len(genera))), 2 * np.pi * rng.random(len(genera))
    genus_centre = np.c_[radius * np.cos(angle), radius * np.sin(angle)]
    species_centre = genus_centre[genus_codes] + rng.normal(0, 0.9, (len(species), 2))
    centre = species_centre[position]
    strays = rng.random(n) < 0.10
    centre[strays] = species_centre[rng.integers(0, len(species), int(strays.sum()))]
    xy = (centre + rng.normal(0, 0.3, (n, 2))).astype(np.float64)

    # observations: consecutive images of a class, ~1.76 per observation; split by observation
    local = np.arange(n) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    obs_local = np.floor(local * OBSERVATIONS_PER_IMAGE).astype(np.int64)
    observation = pd.Series(class_of).astype(str) + "-" + pd.Series(obs_local).astype(str)
    observations = pd.DataFrame({"observation_id": observation, "class_id": class_of}).drop_duplicates("observation_id")
    draw = rng.random(len(observations))
    observations["split"] = np.where(draw < 0.8, "train", np.where(draw < 0.9, "val", "test"))
    observations["country_code"] = rng.choice(["US", "MX", "BR", "IN", "AU", "ZA", "DE", "TH"], len(observations))
    observations["subspecies"] = None

    # predictions: rank 1 right ~56% of the time, else mostly a species of the same genus
    obs_class = observations["class_id"].to_numpy()
    class_row = pd.Series(np.arange(len(species)), index=species["class_id"]).reindex(obs_class).to_numpy()
    same_genus = pd.Series(species["class_id"].to_numpy()).groupby(genus_codes).apply(np.array)
    wrong = rng.random(len(obs_class)) >= 0.56
    pool = same_genus.reindex(genus_codes[class_row]).to_numpy()
    sibling = np.array([p[rng.integers(len(p))] for p in pool[wrong]]) if wrong.any() else np.zeros(0, np.int64)
    anywhere = species["class_id"].to_numpy()[rng.integers(0, len(species), int(wrong.sum()))]
    top1 = obs_class.copy()
    top1[wrong] = np.where((sibling != obs_class[wrong]) & (rng.random(int(wrong.sum())) < 0.7), sibling, anywhere)
    runner_up = species["class_id"].to_numpy()[rng.integers(0, len(species), (len(obs_class), 2))]
    p1 = rng.uniform(0.2, 0.99, len(obs_class))
    predictions = pd.DataFrame({
        "observation_id": np.tile(observations["observation_id"].to_numpy(), 3),
        "rank": np.repeat([1, 2, 3], len(obs_class)).astype(np.int32),
        "class_id": np.concatenate([top1, runner_up[:, 0], runner_up[:, 1]]),
        # falling with the rank, as predict writes them (a rank 2 above its rank 1 is refused as damage)
        "probability": np.concatenate([p1, np.minimum((1 - p1) * 0.6, p1), np.minimum((1 - p1) * 0.2, np.minimum((1 - p1) * 0.6, p1))]),
    }).drop_duplicates(["observation_id", "class_id"])  # a runner-up equal to the top 1 is dropped
    predictions["rank"] = predictions.groupby("observation_id").cumcount().astype(np.int32) + 1

    # images: ids that are not row positions (10,000 + a permutation), paths that are symlinks to a few JPEGs
    photos, links = root / "jpegs", root / "photos"
    photos.mkdir(parents=True, exist_ok=True)
    links.mkdir(parents=True, exist_ok=True)
    for k in range(n_photos):
        hue = rng.integers(40, 220, 3)
        pixels = np.clip(hue + rng.normal(0, 30, (72, 96, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(photos / f"p{k}.jpg", quality=85)
    image_ids = 10_000 + rng.permutation(n).astype(np.int64)
    paths = [str(links / f"{i}.jpg") for i in image_ids]
    targets = [str(photos / f"p{k}.jpg") for k in image_ids % n_photos]
    for path, target in zip(paths, targets):  # the generator's loop, not the product's
        if not os.path.lexists(path):
            os.symlink(target, path)
    images = pd.DataFrame({
        "image_id": image_ids, "observation_id": observation.to_numpy(), "path": paths, "class_id": class_of,
        "split": observations.set_index("observation_id")["split"].reindex(observation).to_numpy(),
        "sha256": None, "size_bytes": 0, "width": 96, "height": 72, "status": "ok", "error": None, "decoder": "pillow",
    })
    projection = pd.DataFrame({"image_id": image_ids, "x": xy[:, 0], "y": xy[:, 1]})

    store = Store(root / "store").create()
    with store.transaction() as con:
        for table in ("projection", "predictions", "images", "observations", "species"):
            con.execute(f"DELETE FROM {table}")
        for table, frame in (("species", species.assign(family="unknown")), ("observations", observations),
                             ("images", images), ("predictions", predictions), ("projection", projection)):
            con.register("frame", frame)
            columns = ", ".join(frame.columns)
            con.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM frame")
            con.unregister("frame")
        set_meta(con, "projection", {"method": "umap (synthetic clusters)", "pca_components": 50, "n": n,
                                     "ids_digest": ids_digest(image_ids), "seconds": 0.0})
        # a head.pt of the 1,784 classes (zero weights) that the rows name as theirs, so the map reads them as current
        head = Head(kind="linear", label_map=LabelMap.from_labels(species["class_id"]), feature_kind="synthetic",
                    model_fingerprint="synthetic", feature_dim=2, config=TrainConfig(),
                    layers=[(np.zeros((len(species), 2), np.float32), np.zeros(len(species), np.float32))])
        head.save(store.head_path)
        set_meta(con, "predictions", predictions_record(store, head, "synthetic", len(observations)))
    return store


# ---------------------------------------------------------------------------------------------------------------
# the browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHARTS = {"plotly": "[data-testid=stPlotlyChart]", "pydeck": "[data-testid=stDeckGlJsonChart]"}
# every WebGL draw call of 50 points or more, [page time in ms, points] and its context: "the map drawn" is
# the first such call after an action (a trace's or a layer's points; deck.gl draws instances), waited on until
# the GPU (SwiftShader here) has rasterised it. Reading the log costs the page nothing.
DRAW_LOG = """(() => {
  window.__draws = [];
  window.__drawContexts = [];
  const wrap = (proto, name, count) => {
    const draw = proto && proto[name];
    if (!draw) return;
    proto[name] = function (...args) {
      if (count(args) >= 50) {
        window.__draws.push([performance.now(), count(args)]);
        window.__drawContexts.push(this.canvas ? this : window.__lastContext);
      }
      return draw.apply(this, args);
    };
  };
  const getContext = HTMLCanvasElement.prototype.getContext;
  HTMLCanvasElement.prototype.getContext = function (...args) {
    const context = getContext.apply(this, args);
    if (String(args[0]).includes('webgl') && context) window.__lastContext = context;
    return context;
  };
  for (const proto of [self.WebGLRenderingContext && WebGLRenderingContext.prototype,
                       self.WebGL2RenderingContext && WebGL2RenderingContext.prototype]) {
    wrap(proto, 'drawArrays', a => a[2]);
    wrap(proto, 'drawElements', a => a[1]);
    wrap(proto, 'drawArraysInstanced', a => a[3]);
    wrap(proto, 'drawElementsInstanced', a => a[4]);
  }
  wrap(self.ANGLE_instanced_arrays && ANGLE_instanced_arrays.prototype, 'drawArraysInstancedANGLE', a => a[3]);
  wrap(self.ANGLE_instanced_arrays && ANGLE_instanced_arrays.prototype, 'drawElementsInstancedANGLE', a => a[4]);
})();"""
TITLE = "() => [...document.querySelectorAll('h1')].some(h => h.innerText.includes('Explore')) ? performance.now() : null"
# [draw call issued, points, rasterised]: a 1-pixel readback waits for the GPU to finish what it was given
DRAWN = """(since) => {
  const i = (window.__draws || []).findIndex(d => d[0] > since);
  if (i < 0) return null;
  const gl = window.__drawContexts[i];
  try { if (gl && gl.readPixels) gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, new Uint8Array(4)); } catch (e) {}
  return [window.__draws[i][0], window.__draws[i][1], performance.now()];
}"""
# the selection panel: the heading's text once it differs from `before` and the grid's images are all loaded
SHOWN = """([before]) => {
  const heading = [...document.querySelectorAll('h3')].map(h => h.innerText).find(t => t.includes('selected image'));
  if (!heading || heading === before) return null;
  const wanted = Math.min(24, parseInt(heading.replace(/,/g, '')));
  const images = [...document.querySelectorAll('[data-testid=stImage] img')];
  if (images.length < wanted || !images.every(i => i.complete && i.naturalWidth > 0)) return null;
  return heading;
}"""


HEADING = "() => [...document.querySelectorAll('h3')].map(h => h.innerText).find(t => t.includes('selected image')) || null"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_timed(log: str, argv: list[str]) -> None:
    """`streamlit run` with each script run's seconds appended to `log` (the server's share of an interaction)."""
    from streamlit.runtime.scriptrunner import script_runner
    from streamlit.web import cli

    run_script = script_runner.ScriptRunner._run_script

    def timed(self, rerun_data):
        started = time.perf_counter()
        try:
            return run_script(self, rerun_data)
        finally:
            with open(log, "a") as out:
                out.write(f"{time.time():.3f} {time.perf_counter() - started:.4f}\n")

    script_runner.ScriptRunner._run_script = timed
    sys.argv = ["streamlit", "run", *argv]
    sys.exit(cli.main())


def script_runs(log: Path, since: float) -> list[float]:
    """Seconds of the server's script runs that ended after `since` (time.time())."""
    if not log.is_file():
        return []
    rows = [line.split() for line in log.read_text().splitlines() if line.strip()]
    return [round(float(seconds), 3) for ended, seconds in rows if float(ended) >= since]


def start_server(script: str, store_root: Path, **env) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--serve-timed", str(SCRIPT_LOG), script, "--server.port", str(port),
         "--server.address", "127.0.0.1",
         "--server.headless", "true", "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env={**os.environ, "SNAKEWEB_STORE": str(store_root), **env}, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url + "/_stcore/health", timeout=2)
            return process, url
        except OSError:
            time.sleep(0.3)
    process.kill()
    raise RuntimeError(f"streamlit did not start for {script}")


def idle(page) -> None:
    page.wait_for_timeout(200)
    page.locator("[data-testid=stStatusWidget]").wait_for(state="hidden")


def first_render(browser, url: str, chart: str, context=None) -> tuple[dict, object]:
    """Seconds from navigation to the page's title and to the map drawn, in a new session: in a new browser
    context (nothing cached) or a new tab of `context` (the browser's cache and compiled scripts kept)."""
    page = (context or browser.new_context(viewport={"width": 1400, "height": 1800})).new_page()
    page.set_default_timeout(180_000)
    page.add_init_script(DRAW_LOG)
    since = time.time()
    page.goto(url)
    # page times: milliseconds from the navigation's start (performance.timeOrigin)
    title = page.wait_for_function(TITLE, polling="raf").json_value()
    issued, count, rasterised = page.wait_for_function(DRAWN, arg=0, polling="raf").json_value()
    return {"drawn_s": rasterised / 1000, "draw_call_s": issued / 1000, "title_s": title / 1000, "points_drawn": count,
            "server_s": script_runs(SCRIPT_LOG, since)}, page


def box_select(page, chart: str, box: tuple[float, float, float, float]) -> dict:
    """Drag a box over the plot (fractions of its area); seconds of the drag and from the release to the images shown."""
    before = page.evaluate(HEADING)
    area = page.locator(f"{chart} .nsewdrag").first.bounding_box()
    x0, y0 = area["x"] + box[0] * area["width"], area["y"] + box[1] * area["height"]
    x1, y1 = area["x"] + box[2] * area["width"], area["y"] + box[3] * area["height"]
    page.mouse.move(x0, y0)
    page.mouse.down()
    started = time.perf_counter()
    page.mouse.move(x1, y1, steps=8)
    dragged = time.perf_counter() - started
    started, since = time.perf_counter(), time.time()
    page.mouse.up()
    heading = page.wait_for_function(SHOWN, arg=[before], polling="raf").json_value()
    shown = time.perf_counter() - started
    idle(page)
    return {"drag_s": dragged, "shown_s": shown, "heading": heading, "server_s": script_runs(SCRIPT_LOG, since)}


# page coordinates of a few of the first trace's points (Plotly's own axis mapping)
PLOTLY_SPOTS = """(selector) => {
  const gd = document.querySelector(selector + ' .js-plotly-plot');
  const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, box = gd.getBoundingClientRect(), trace = gd._fullData[0];
  return [0, 7, 42, 101, 311].filter(i => i < trace.x.length)
    .map(i => [box.left + xa._offset + xa.d2p(trace.x[i]), box.top + ya._offset + ya.d2p(trace.y[i])]);
}"""


def plotly_click(page, chart: str) -> dict:
    """Click one point of the map in pan mode (in select mode a click selects nothing), after a box selection so
    the heading changes; seconds from the click to its image shown. Back to box select after."""
    page.locator(f"{chart} .modebar-btn[data-title='Pan']").click()
    page.wait_for_timeout(300)
    try:
        return click_points(page, chart)
    finally:
        page.locator(f"{chart} .modebar-btn[data-title='Box Select']").click()
        page.wait_for_timeout(300)


def click_points(page, chart: str) -> dict:
    for x, y in page.evaluate(PLOTLY_SPOTS, chart):
        before = page.evaluate(HEADING)
        page.mouse.move(x, y)
        page.wait_for_timeout(300)
        started, since = time.perf_counter(), time.time()
        page.mouse.click(x, y)
        try:
            heading = page.wait_for_function(SHOWN, arg=[before], polling="raf", timeout=10_000).json_value()
        except Exception:  # noqa: BLE001 - missed: the next point
            continue
        shown = time.perf_counter() - started
        idle(page)
        return {"shown_s": shown, "heading": heading, "server_s": script_runs(SCRIPT_LOG, since)}
    raise RuntimeError("no point could be clicked")


def deck_spots(store_root: Path, count: int = 12) -> list[tuple[float, float]]:
    """Pixel offsets from the pydeck map's centre of `count` random points, by the candidate page's view (target
    at the mean, 600 px across the larger span, y down): a click there lands on a point 1 px across."""
    from snakeweb.explore import map_points
    from snakeweb.store import Store

    points = map_points(Store(store_root))
    scale = 600 / float(max(np.ptp(points.x), np.ptp(points.y)))
    chosen = np.random.default_rng(0).choice(len(points), count, replace=False)
    return [(float((points.x[i] - points.x.mean()) * scale), float((points.y[i] - points.y.mean()) * scale)) for i in chosen]


def click_select(page, chart: str, spots: list[tuple[float, float]]) -> dict:
    """pydeck: click points until one more is selected; seconds from that click to its image shown."""
    area = page.locator(chart).first.bounding_box()
    for dx, dy in spots:
        before = page.evaluate(HEADING)
        x, y = area["x"] + area["width"] / 2 + dx, area["y"] + area["height"] / 2 + dy
        page.mouse.move(x, y)  # deck.gl picks on hover
        page.wait_for_timeout(2000)
        started, since = time.perf_counter(), time.time()
        page.mouse.click(x, y)
        try:
            heading = page.wait_for_function(SHOWN, arg=[before], polling="raf", timeout=30_000).json_value()
        except Exception:  # noqa: BLE001 - nothing under the cursor: try the next spot
            continue
        shown = time.perf_counter() - started
        idle(page)
        return {"shown_s": shown, "heading": heading, "server_s": script_runs(SCRIPT_LOG, since)}
    raise RuntimeError("no point could be clicked")


def recolour(page, chart: str, label: str) -> float:
    """Seconds from choosing another colouring to the map redrawn in it."""
    page.locator("[data-testid=stSelectbox]").first.click()
    option = page.get_by_role("option", name=label, exact=True)
    option.wait_for()
    since, wall = page.evaluate("performance.now()"), time.time()
    option.click()
    issued, _, rasterised = page.wait_for_function(DRAWN, arg=since, polling="raf").json_value()
    idle(page)
    return {"drawn_s": (rasterised - since) / 1000, "draw_call_s": (issued - since) / 1000, "server_s": script_runs(SCRIPT_LOG, wall)}


REGIONS = [(0.40, 0.40, 0.55, 0.55), (0.30, 0.50, 0.45, 0.70), (0.55, 0.25, 0.70, 0.45)]  # fractions of the plot area
MOST_OF_THE_MAP = (0.20, 0.20, 0.80, 0.80)


def median_row(name: str, runs: list[dict], key: str, **fields) -> None:
    """One row: the median run's `key` seconds, every run's, and the server's script seconds in the median run."""
    middle = sorted(runs, key=lambda r: r[key])[len(runs) // 2]
    extra = {k: round(middle[k], 3) for k in ("draw_call_s", "title_s") if k != key and k in middle}
    def seconds(value: float) -> float | None:  # a run that never completed is null in the JSON
        return round(value, 3) if np.isfinite(value) else None

    emit(name, seconds(middle[key]), "s", runs=[seconds(r[key]) for r in runs], server_script_s=middle.get("server_s"),
         load=round(os.getloadavg()[0], 2), **extra, **fields)


def measure(browser, label: str, script: str, path: str, store_root: Path, chart: str, repeats: int, **env) -> None:
    """Start a server, time the cold and warm first renders, selections and colour changes; emit the rows."""
    def goal(target: str) -> dict:  # targets on the product's rows only (the README's targets table lists them)
        return {"target": target} if label == "product" else {"target_of_the_product": target}  # product_4095_points too

    process, url = start_server(script, store_root, **env)
    try:
        cold, page = first_render(browser, url + path, chart)
        page.context.close()
        emit(f"explore_{label}_first_render_cold", round(cold["drawn_s"], 3), "s", title_s=round(cold["title_s"], 3),
             draw_call_s=round(cold["draw_call_s"], 3),
             server_script_s=cold["server_s"], note="first visit after the server started: imports, the points query, the figure")
        context = browser.new_context(viewport={"width": 1400, "height": 1800})
        for kind in ("new_browser", "new_tab"):
            warm = []
            for _ in range(repeats + (kind == "new_tab")):  # a new tab's first run fills the context's cache
                seconds, page = first_render(browser, url + path, chart, context if kind == "new_tab" else None)
                warm.append(seconds)
                idle(page)
                page.close() if kind == "new_tab" else page.context.close()
            warm = warm[1:] if kind == "new_tab" else warm
            median_row(f"explore_{label}_first_render_{kind}", warm, "drawn_s", **goal("<= 2 s"), points_in_first_draw=warm[0]["points_drawn"],
                       note="median; navigation to the map drawn (its first WebGL draw call rasterised; draw_call_s: issued) in "
                            "a new session, points cached in the server; title_s: the page title drawn; "
                            + ("a fresh browser context (no cache)" if kind == "new_browser" else "a new tab of a browser that had it open"))
        context.close()
        seconds, page = first_render(browser, url + path, chart)
        idle(page)
        if label.startswith("pydeck"):
            spots, clicks = deck_spots(store_root, 4 * repeats), []
            for i in range(repeats):
                try:
                    clicks.append(click_select(page, chart, spots[4 * i:4 * i + 4]))
                except RuntimeError:
                    clicks.append({"shown_s": float("inf"), "heading": "no selection within 30 s of a click on a point, 4 points tried"})
            median_row(f"explore_{label}_click_to_images", clicks, "shown_s", **goal("<= 1 s"), selected=[c["heading"] for c in clicks],
                       note="click on a point -> its image shown; pydeck selects objects by clicking, not regions")
        else:
            boxes, clicks = [], []
            for box in REGIONS * max(1, -(-repeats // len(REGIONS))):
                boxes.append(box_select(page, chart, box))
                clicks.append(plotly_click(page, chart))
            median_row(f"explore_{label}_select_to_images", boxes, "shown_s", **goal("<= 1 s"),
                       selected=[b["heading"] for b in boxes], note="a box over a few clusters drawn, mouse released -> species "
                       "table and 24 images shown")
            most = box_select(page, chart, MOST_OF_THE_MAP)
            median_row(f"explore_{label}_select_most_of_the_map_to_images", [most], "shown_s", **goal("<= 1 s"), selected=most["heading"],
                       note="a box over most of the map: Streamlit sends every selected point to the server as JSON and copies it there")
            median_row(f"explore_{label}_click_to_image", clicks, "shown_s", **goal("<= 1 s"), selected=[c["heading"] for c in clicks],
                       note="click on a point (after a box selection) -> its species and image shown")
            median_row(f"explore_{label}_box_drag", boxes, "drag_s", note="8 mouse moves of a box drag; Plotly highlights the "
                       "selection on each move")
        recoloured = [recolour(page, chart, name) for name in ("genus", "venom status", "species")]
        median_row(f"explore_{label}_recolour", recoloured, "drawn_s", **goal("<= 1 s"),
                   note="colour by genus, venom status, species: choice -> map redrawn")
        page.context.close()
    finally:
        process.terminate()
        process.wait(timeout=30)


def machine_row(points: int, species: int) -> None:
    version = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True).stdout.split()
    emit("machine", float(os.cpu_count() or 0), "cpus", cpu=platform.processor() or platform.machine(),
         browser=f"headless chromium {version[1].split('.')[0] if len(version) > 1 else '?'}, WebGL in SwiftShader",
         points=points, species=species, load=round(os.getloadavg()[0], 2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="share of SnakeCLEF's 182,261 images (default 1)")
    parser.add_argument("--candidates", default="product,plotly-names,pydeck",
                        help="product (the app's Explore page) and/or candidate pages: plotly, plotly-names, pydeck")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--store", type=Path, help="reuse this folder for the generated store (kept)")
    parser.add_argument("--small-scale", type=float, default=0.02,
                        help="also the product's page on a store this share of SnakeCLEF (0.02: 4,095 points), which tells "
                             "the page's fixed cost (Streamlit, Plotly's script, WebGL) from the points' (0 skips it)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if CHROMIUM is None:
        print("Debian chromium is not installed; `apt-get install chromium`", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    folder = args.store or Path(tempfile.mkdtemp(prefix="explore-scale-"))
    started = time.perf_counter()
    store = make_explore_store(folder, scale=args.scale) if not (folder / "store").is_dir() else None
    from snakeweb.store import Store

    store = store or Store(folder / "store")
    counts = store.query("SELECT (SELECT count(*) FROM projection) AS points, (SELECT count(*) FROM species) AS species")
    machine_row(int(counts["points"][0]), int(counts["species"][0]))
    emit("explore_store_generated", round(time.perf_counter() - started, 1), "s", date=time.strftime("%Y-%m-%d"),
         note="or reused from --store")
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            for candidate in args.candidates.split(","):
                if candidate == "product":
                    measure(browser, "product", "app.py", "/explore", store.root, CHARTS["plotly"], args.repeats)
                    if args.small_scale:
                        small = make_explore_store(Path(tempfile.mkdtemp(prefix="explore-small-")), scale=args.small_scale)
                        points = int(small.query("SELECT count(*) AS n FROM projection")["n"][0])
                        measure(browser, f"product_{points}_points", "app.py", "/explore", small.root, CHARTS["plotly"], args.repeats)
                        shutil.rmtree(small.root.parent, ignore_errors=True)
                else:
                    measure(browser, candidate.replace("-", "_"), "benchmarks/explore_candidate_page.py", "/", store.root,
                            CHARTS["pydeck" if candidate == "pydeck" else "plotly"], args.repeats, EXPLORE_CANDIDATE=candidate)
            browser.close()
    finally:
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text("".join(json.dumps(row) + "\n" for row in RESULTS))
        if args.store is None:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve-timed"]:
        serve_timed(sys.argv[2], sys.argv[3:])
    sys.exit(main())
