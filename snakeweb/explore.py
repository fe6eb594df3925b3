"""Data for the embedding map: every UMAP point of the store as numeric arrays (coordinates, image ids, and one
category code per point for each colouring: species, genus, venom status, correct/incorrect top 1), the
categories' names and a colour per category that keeps neighbouring clusters apart; the species counts and the
images of a selection.

A SnakeCLEF store (182,261 points, 1,784 species) is drawn whole: one query, no per-row Python, a few MB of
arrays to cache. Only a store beyond MAX_POINTS is thinned, uniformly, and says so."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from snakeweb.store import Store

# Beyond this many points the page draws a uniform sample and says so. A bound for browsers with a GPU: 182k are
# measured (benchmarks/explore_scale.py), 2M are not; in software (SwiftShader) a frame costs ~0.2 s per 182k points.
MAX_POINTS = 2_000_000

COLOURINGS = {"species": "species", "genus": "genus", "venom_status": "venom status", "prediction": "correct / incorrect"}
UNLABELLED = "unlabelled"
GREY = "#9e9e9e"
FIXED_COLOURS = {
    "venom_status": {"venomous": "#d7191c", "harmless": "#2c7bb6", "unknown": "#fdae61", UNLABELLED: GREY},
    "prediction": {"correct": "#1a9850", "incorrect": "#d73027", "unknown": GREY},
}
# Kelly's colours of maximum contrast (less white, black and grey) and eleven more; a colour comes back for
# far-apart categories, never for close ones (separated_colours)
PALETTE = (
    "#f3c300", "#875692", "#f38400", "#a1caf1", "#be0032", "#c2b280", "#008856", "#e68fac", "#0067a5", "#f99379",
    "#604e97", "#f6a600", "#b3446c", "#dcd300", "#882d17", "#8db600", "#654522", "#e25822", "#2b3d26",
    "#1f77b4", "#17becf", "#9467bd", "#e377c2", "#2ca02c", "#d62728", "#ff7f0e", "#8c564b", "#bcbd22", "#00cc96",
    "#636efa", "#ff6692",
)


@dataclass
class MapPoints:
    """The map's points (arrays of one length) and, per colouring, the category names and their colours."""
    image_id: np.ndarray  # int64
    x: np.ndarray  # float32
    y: np.ndarray  # float32
    codes: dict[str, np.ndarray] = field(default_factory=dict)  # colouring -> category code per point
    categories: dict[str, list[str]] = field(default_factory=dict)  # colouring -> names, by code
    colours: dict[str, list[str]] = field(default_factory=dict)  # colouring -> "#rrggbb", by code
    species_venom: list[str] = field(default_factory=list)  # venom status of each species category
    total: int = 0  # points in the store's projection; more than len(x) only beyond MAX_POINTS
    # why correct / incorrect is unknown for every point: the stored predictions are not the current head's
    prediction_note: str | None = None

    def __len__(self) -> int:
        return len(self.x)


def map_points(store: Store, max_points: int = MAX_POINTS, seed: int = 0) -> MapPoints:
    """All projected points (a uniform sample of `max_points` when there are more), with the category codes. When the
    stored predictions are not the current head's (snakeweb.stored_predictions), every point's correct / incorrect is
    unknown and `prediction_note` says why and what to run: the rest of the map does not depend on them."""
    from snakeweb.stored_predictions import prediction_problems, predictions_sentence

    problems = prediction_problems(store)
    with store.connect(read_only=True) as con:
        rows = con.execute(
            "SELECT p.image_id, p.x::FLOAT AS x, p.y::FLOAT AS y, i.class_id, pr.class_id AS predicted "
            "FROM projection p JOIN images i USING (image_id) "
            "LEFT JOIN predictions pr ON pr.observation_id = i.observation_id AND pr.rank = 1 ORDER BY p.image_id"
        ).fetchnumpy()
        species = con.execute(
            "SELECT class_id, binomial_name, COALESCE(genus, split_part(binomial_name, ' ', 1)) AS genus, venom_status "
            "FROM species ORDER BY class_id"
        ).df()
    total = len(rows["image_id"])
    keep = np.sort(np.random.default_rng(seed).choice(total, max_points, replace=False)) if total > max_points else slice(None)
    class_id, labelled = _ints(rows["class_id"][keep])
    predicted, has_prediction = _ints(rows["predicted"][keep])
    if problems:  # another head's or damaged rows: no point is called correct or incorrect on their word
        has_prediction = np.zeros(len(predicted), dtype=bool)
    points = MapPoints(image_id=np.asarray(rows["image_id"][keep], dtype=np.int64), x=np.asarray(rows["x"][keep], dtype=np.float32),
                       y=np.asarray(rows["y"][keep], dtype=np.float32), total=total)

    # species: the classes on the map (a class id missing from the species table counts as unlabelled)
    known = np.asarray(species["class_id"], dtype=np.int64)
    row = np.clip(np.searchsorted(known, class_id), 0, max(len(known) - 1, 0))
    labelled &= (known[row] == class_id) if len(known) else False
    present, species_code = np.unique(np.where(labelled, row, len(known)), return_inverse=True)
    on_map = species.iloc[present[present < len(known)]]
    unlabelled = [UNLABELLED] if len(present) and present[-1] == len(known) else []
    names = on_map["binomial_name"].tolist() + unlabelled
    venom = on_map["venom_status"].tolist() + unlabelled
    genus = on_map["genus"].fillna(UNLABELLED).tolist() + unlabelled
    points.species_venom = venom
    _add(points, "species", species_code.astype(np.int32), names)
    genus_names, genus_of_species = np.unique(np.asarray(genus, dtype=object), return_inverse=True)
    _add(points, "genus", genus_of_species[species_code].astype(np.int32), genus_names.tolist())
    statuses = list(FIXED_COLOURS["venom_status"])
    _add(points, "venom_status", np.array([statuses.index(v) for v in venom], dtype=np.int8)[species_code], statuses)
    outcome = np.where(~(labelled & has_prediction), 2, np.where(predicted == class_id, 0, 1)).astype(np.int8)
    _add(points, "prediction", outcome, list(FIXED_COLOURS["prediction"]))
    points.prediction_note = predictions_sentence(store, problems) if problems else None
    return points


def _ints(column) -> tuple[np.ndarray, np.ndarray]:
    """(values with NULL as -1, not-NULL mask) of a nullable integer column from fetchnumpy."""
    if isinstance(column, np.ma.MaskedArray):
        return column.filled(-1).astype(np.int64), ~np.ma.getmaskarray(column)
    values = np.asarray(column)
    if values.dtype.kind == "f":  # NULLs read as NaN
        return np.nan_to_num(values, nan=-1).astype(np.int64), ~np.isnan(values)
    return values.astype(np.int64), np.ones(len(values), dtype=bool)


def _add(points: MapPoints, colouring: str, codes: np.ndarray, names: list[str]) -> None:
    """Record a colouring: codes, names and colours (fixed ones where they mean something, else separated)."""
    points.codes[colouring] = codes
    points.categories[colouring] = names
    fixed = FIXED_COLOURS.get(colouring)
    if fixed:
        points.colours[colouring] = [fixed[name] for name in names]
        return
    sizes = np.bincount(codes, minlength=len(names)).astype(np.float64)
    centres = np.c_[np.bincount(codes, points.x, len(names)), np.bincount(codes, points.y, len(names))] / np.maximum(sizes, 1)[:, None]
    colours = [PALETTE[i] for i in separated_colours(centres, sizes)]
    points.colours[colouring] = [GREY if name == UNLABELLED else c for name, c in zip(names, colours)]


def separated_colours(centres: np.ndarray, sizes: np.ndarray, neighbours: int = 12) -> np.ndarray:
    """A PALETTE index per category such that each category's colour is as far as the palette allows (in CIELAB)
    from the colours of its neighbours on the map (its `neighbours` nearest centres, and the categories that
    count it among theirs). Greedy, largest category first; a Python loop over categories (1,784 at most for
    SnakeCLEF), never over points."""
    count = len(centres)
    if count <= len(PALETTE):
        return np.arange(count)
    from scipy.spatial import cKDTree

    lab = _lab(np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in PALETTE], dtype=np.float64) / 255)
    apart = np.linalg.norm(lab[:, None] - lab[None], axis=-1)
    _, near = cKDTree(centres).query(centres, k=min(neighbours + 1, count))
    source = np.repeat(np.arange(count), near.shape[1] - 1)
    pairs = np.unique(np.r_[np.c_[source, near[:, 1:].ravel()], np.c_[near[:, 1:].ravel(), source]], axis=0)
    adjacent = np.split(pairs[:, 1], np.searchsorted(pairs[:, 0], np.arange(1, count)))
    chosen = np.full(count, -1)
    used = np.zeros(len(PALETTE))
    for category in np.argsort(-sizes, kind="stable"):
        taken = chosen[adjacent[category]]
        taken = taken[taken >= 0]
        score = apart[:, taken].min(axis=1) if len(taken) else np.full(len(PALETTE), np.inf)
        best = np.lexsort((used, -score))[0]  # farthest from the neighbours' colours; the least used on ties
        chosen[category] = best
        used[best] += 1
    return chosen


def _lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB in [0, 1] -> CIELAB (D65)."""
    linear = np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = linear @ np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]).T
    xyz /= np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 216 / 24389, np.cbrt(xyz), (24389 / 27 * xyz + 16) / 116)
    return np.c_[116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])]


def inside_polygon(x: np.ndarray, y: np.ndarray, vx: np.ndarray, vy: np.ndarray) -> np.ndarray:
    """Mask of the points (x, y) inside the polygon (vx, vy) by the even-odd rule: vectorised over the points
    within the polygon's bounding box, one step per polygon edge."""
    inside = np.zeros(len(x), dtype=bool)
    if len(vx) < 3:
        return inside
    near = np.flatnonzero((x >= vx.min()) & (x <= vx.max()) & (y >= vy.min()) & (y <= vy.max()))
    px, py = x[near].astype(np.float64), y[near].astype(np.float64)
    crossed = np.zeros(len(near), dtype=bool)
    for (x0, y0), (x1, y1) in zip(zip(vx, vy), zip(np.roll(vx, 1), np.roll(vy, 1))):
        if y0 == y1:
            continue
        crossed ^= ((y0 > py) != (y1 > py)) & (px < (x1 - x0) * (py - y0) / (y1 - y0) + x0)
    inside[near] = crossed
    return inside


def selection_counts(points: MapPoints, selected: np.ndarray) -> pd.DataFrame:
    """Images per species among the selected point positions, most first: species, venom status, images."""
    counts = np.bincount(points.codes["species"][selected], minlength=len(points.categories["species"]))
    order = np.flatnonzero(counts)[np.argsort(-counts[counts > 0], kind="stable")]
    names, venom = np.asarray(points.categories["species"], dtype=object), np.asarray(points.species_venom, dtype=object)
    return pd.DataFrame({"species": names[order], "venom status": venom[order], "images": counts[order]})


def selection_images(store: Store, image_ids: np.ndarray) -> pd.DataFrame:
    """image_id, path, binomial_name, venom_status of the given images, in the order given."""
    ids = pd.DataFrame({"image_id": np.asarray(image_ids, dtype=np.int64), "position": np.arange(len(image_ids))})
    with store.connect(read_only=True) as con:
        con.register("wanted", ids)
        return con.execute(
            "SELECT i.image_id, i.path, s.binomial_name, s.venom_status FROM wanted w JOIN images i USING (image_id) "
            "LEFT JOIN species s ON s.class_id = i.class_id ORDER BY w.position"
        ).df()
