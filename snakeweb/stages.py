"""The build stages over a store: embed, index, train, predict, project. Each is resumable and idempotent:
finished work is recorded in the store and skipped on a re-run; work cut off by a crash is redone."""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from dataclasses import asdict

import numpy as np
import pandas as pd

from snakeweb.aggregate import combine_by_observation, top_k
from snakeweb.answers import THRESHOLD_METHOD
from snakeweb.embed_stage import StoreWriter, embed, package_versions, store_backbone, tqdm  # noqa: F401 (the stages in one place)
from snakeweb.errors import SnakewebError
from snakeweb.head_training import train_head
from snakeweb.heads import INDEX_HEADS, Head, TrainConfig, load_head, observation_probabilities
from snakeweb.options import require_probabilities
from snakeweb.species import possibly_venomous_class_ids
from snakeweb.store import Store, read_keyed_vectors, set_meta
from snakeweb.stored_predictions import head_classes_missing, predictions_record, species_gap_advice

log = logging.getLogger(__name__)
STORED_TOP_K = 10


def views_to_train_on(store: Store, config: TrainConfig) -> list[str]:
    """The embedded training views this head trains on: `config.views`, or every view the embed stage made;
    none for kNN (it votes with the photos in the index: views would only be carried along)."""
    made = store.get_meta("train_views") or []
    return [] if config.kind == "knn" else [v for v in made if config.views is None or v in config.views]


def training_views(store: Store, train_ids: np.ndarray, train_labels: np.ndarray, views: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(vectors, class ids) of these augmented views of the training photos (ids sorted ascending)."""
    empty = np.zeros((0, 0), np.float32), np.zeros(0, np.int64)
    if not views or len(train_ids) == 0:
        return empty
    names = sorted(set(views))
    # one key per (image, view), in the order of image id, then view name
    key = f"image_id * {len(names)} + CASE view " + " ".join(f"WHEN ? THEN {r}" for r in range(len(names))) + " END"
    marks = ", ".join("?" * len(names))
    with store.connect(read_only=True) as con:
        con.execute("BEGIN TRANSACTION")
        keys = np.sort(con.execute(f"SELECT {key} AS key FROM view_embeddings WHERE view IN ({marks})", names * 2)
                       .fetchnumpy()["key"].astype(np.int64))
        vectors = read_keyed_vectors(con, f"SELECT {key} AS key, vector FROM view_embeddings WHERE view IN ({marks})", names * 2, keys)
        con.execute("COMMIT")
    ids = keys // len(names)
    position = np.clip(np.searchsorted(train_ids, ids), 0, len(train_ids) - 1)
    keep = train_ids[position] == ids  # views of photos now outside training (a changed split) are left out
    if not keep.any():
        return empty
    return vectors[keep], train_labels[position[keep]]


def index(store: Store, force: bool = False) -> dict:
    """Build the FAISS index from all stored embeddings (skipped when it already holds exactly them)."""
    import torch

    from snakeweb.index import build_index, describe, gpu_count, ids_digest, save_index  # faiss: only the stages that need it

    store.require()
    if torch.cuda.is_available() and not gpu_count():
        print("index: a GPU is present but this FAISS is the CPU build; `pip install -r requirements-gpu.txt` trains "
              "and searches on the GPU")
    embedded = store.embedded_ids()
    if len(embedded) == 0:
        raise SnakewebError("No embeddings to index; run the embed stage first.")
    digest = ids_digest(embedded)
    recorded = store.get_meta("index")
    if not force and recorded and recorded["ids_digest"] == digest and store.index_path.is_file():
        print(f"index: up to date ({len(embedded)} vectors)")
        return recorded
    image_ids, vectors = store.embeddings()  # read the vectors only when the index must be rebuilt
    built = build_index(image_ids, vectors, overwrite=True)  # the stage's own copy: 2.8 GB less at 182k x 3840
    save_index(built, store.index_path)
    info = {**describe(built), "metric": "inner product on L2-normalised vectors", "count": int(built.ntotal),
            "dim": int(vectors.shape[1]), "ids_digest": digest, "trained_on": "gpu" if gpu_count() else "cpu"}
    with store.transaction() as con:
        set_meta(con, "index", info)
    approximate = f" (approximate, nprobe {info.get('nprobe')}, {info.get('k_factor', 1)} x k re-ranked)"
    print(f"index: {built.ntotal} vectors, {info['kind']}" + (" (exact)" if info["exact"] else approximate))
    return info


def _training_digest(ids: np.ndarray, labels: np.ndarray, config: TrainConfig, fingerprint: str, feature_kind: str,
                     views: list[str], view_rows: int, val_ids: np.ndarray, val_labels: np.ndarray) -> str:
    """What a head depends on: its training photos and labels, and the validation photos and labels that chose its
    early stopping, temperature, venom weight and rank thresholds (validation photos added later retrain it too)."""
    digest = hashlib.sha256(np.asarray(ids, np.int64).tobytes() + np.asarray(labels, np.int64).tobytes())
    digest.update(b"val" + np.asarray(val_ids, np.int64).tobytes() + np.asarray(val_labels, np.int64).tobytes())
    digest.update(json.dumps([asdict(config), fingerprint, feature_kind, views, view_rows], sort_keys=True).encode())
    return digest.hexdigest()[:16]


def labelled_embeddings(store: Store, split: str, include_reviews: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image ids, vectors, class ids) of embedded, labelled images of one split. With `include_reviews`,
    a reviewer's latest label replaces the ingested one, and reviewed unlabelled photos join training."""
    reviewed = "SELECT NULL::VARCHAR AS observation_id, NULL::BIGINT AS class_id WHERE FALSE"
    if include_reviews:
        from snakeweb.review import REVIEWED_LABELS, ensure_reviews_table

        ensure_reviews_table(store)
        reviewed = REVIEWED_LABELS
    with store.connect(read_only=True) as con:
        rows = con.execute(
            f"WITH r AS ({reviewed}), labelled AS ("
            "  SELECT i.image_id, COALESCE(r.class_id, i.class_id) AS class_id,"
            "         CASE WHEN i.split = 'unlabelled' AND r.class_id IS NOT NULL THEN 'train' ELSE i.split END AS split"
            "  FROM images i LEFT JOIN r USING (observation_id))"
            " SELECT l.image_id, l.class_id FROM labelled l JOIN embeddings e USING (image_id)"
            " WHERE l.class_id IS NOT NULL AND l.split = ? ORDER BY l.image_id", [split]
        ).fetchnumpy()
    ids = np.asarray(rows["image_id"], dtype=np.int64)
    labels = np.asarray(rows["class_id"], dtype=np.int64)
    # the vectors streamed apart (Store.embeddings): fetched with the labels they came as an object array of lists
    found, vectors = store.embeddings(ids=ids)
    if not np.array_equal(found, ids):
        raise SnakewebError("The store changed while the training vectors were read; run the stage again.")
    return ids, vectors, labels


def _head_is_this_stores(store: Store) -> bool:
    """Whether head.pt is there and was trained on this store (not copied in from another one, which `train`
    replaces even when the store's training data are unchanged)."""
    try:
        load_head(store, note=False)
    except SnakewebError:
        return False
    return True


def _nothing_to_train_on(store: Store) -> str:
    """Why the train split has no labelled, embedded photo, with the store's counts by split: after a removal, or with
    every labelled photo in test, "run embed" alone would be the wrong advice."""
    counts = store.query("SELECT i.split, count(*) AS photos, count(e.image_id) AS embedded FROM images i "
                         "LEFT JOIN embeddings e USING (image_id) WHERE i.status = 'ok' AND i.class_id IS NOT NULL "
                         "GROUP BY i.split ORDER BY i.split")
    if counts.empty:
        return "The store has no labelled photo to train on; ingest photos in species folders (or with a species table)."
    held = ", ".join(f"{r.photos} in {r.split} ({r.embedded} embedded)" for r in counts.itertuples())
    train = counts[counts["split"] == "train"]
    if len(train) and int(train["photos"].iloc[0]) > 0:
        return f"No training photo is embedded yet (labelled photos: {held}); run the embed stage, then train."
    return (f"The train split has no labelled photo (labelled photos: {held}); a head needs training photos: add photos "
            "(a few per species) to the folder and build again.")


def reviews_choice(store: Store, include_reviews: bool | None) -> bool:
    """Whether to train on reviewers' labels: as asked, or (None: not asked) as the recorded head did, said in one
    line when that includes them, so a later plain `train` or `build` never quietly puts back a pre-review head."""
    if include_reviews is not None:
        return include_reviews
    followed = bool((store.get_meta("head") or {}).get("include_reviews"))
    if followed:
        print("train: including reviews, as the last train did; --no-include-reviews leaves them out")
    return followed


def train(store: Store, config: TrainConfig | None = None, force: bool = False, include_reviews: bool | None = None) -> dict:
    """Train the head on the train split, early-stopping on the val split; skipped when nothing changed.
    `include_reviews` None follows the recorded head's choice (`reviews_choice`)."""
    store.require().require_embeddings()
    config = config or TrainConfig()
    include_reviews = reviews_choice(store, include_reviews)
    fingerprint, feature_kind = store.get_meta("model")["fingerprint"], store.get_meta("feature_kind")
    train_ids, train_x, train_y = labelled_embeddings(store, "train", include_reviews)
    val_ids, val_x, val_y = labelled_embeddings(store, "val", include_reviews)
    if len(train_ids) == 0:
        raise SnakewebError(_nothing_to_train_on(store))
    views = views_to_train_on(store, config)
    view_x, view_y = training_views(store, train_ids, train_y, views)
    digest = _training_digest(train_ids, train_y, config, fingerprint, feature_kind, views, len(view_y), val_ids, val_y)
    recorded = store.get_meta("head")
    if not force and recorded and recorded.get("training_digest") == digest and _head_is_this_stores(store):
        chosen = ((recorded.get("thresholds") or {}).get("chosen_on") or {}).get("method")
        if "thresholds" not in recorded or (recorded["thresholds"] and chosen != THRESHOLD_METHOD):
            # a head from before rank roll-up, or thresholds chosen another way: choose them again, keep the head
            head = load_head(store)
            head.thresholds = recorded["thresholds"] = rank_thresholds(store, head, include_reviews)
            head.save(store.head_path)
            _say_thresholds(head.thresholds)
            with store.transaction() as con:
                set_meta(con, "head", recorded)
        print(f"train: head up to date ({recorded['kind']}, {recorded['classes']} classes)")
        return recorded
    if config.kind in INDEX_HEADS and not store.index_path.is_file():
        index(store)
    with tqdm(total=config.max_epochs, desc=f"train {config.kind}", unit="epoch") as bar:
        def progress(epoch, total, train_loss, val_loss):
            bar.update(epoch - bar.n)
            bar.set_postfix(train_loss=f"{train_loss:.3f}", val_loss="-" if val_loss is None else f"{val_loss:.3f}")

        started = time.perf_counter()
        head = train_head(train_x, train_y, val_x if len(val_y) else np.zeros((0, train_x.shape[1] if train_x.ndim == 2 else 0), np.float32),
                          val_y, feature_kind, fingerprint, config, train_image_ids=train_ids, progress=progress,
                          venomous_class_ids=possibly_venomous_class_ids(store.species().set_index("class_id")),
                          view_vectors=view_x, view_class_ids=view_y)
        if bar.n < bar.total:  # early stopping: the bar ends full at the epochs run, not part-way to the most allowed
            bar.set_description(f"train {config.kind} (stopped early)")
            bar.total = bar.n
            bar.refresh()
        head.thresholds = rank_thresholds(store, head, include_reviews)
    head.store_id = store.get_meta("store_id")  # which store's vectors trained it (checked by `check`)
    head.save(store.head_path)
    info = {
        "kind": config.kind, "classes": len(head.label_map), "train_images": int(len(train_ids)),
        "train_view_vectors": int(len(view_y)),
        "val_images": int(len(val_y)), "config": asdict(config), "training_digest": digest, "include_reviews": include_reviews,
        "seconds": round(time.perf_counter() - started, 2),
        "best_epoch": head.history.get("best_epoch"), "epochs_run": head.history.get("epochs_run"),
        "temperature": head.temperature, "val_ece_before": head.history.get("val_ece_before"),
        "val_ece_after": head.history.get("val_ece_after"), "temperature_note": head.history.get("temperature_note"),
        "learning_rate": head.history.get("learning_rate"),
        "weight_decay": head.history.get("weight_decay"), "sweep": head.history.get("sweep"),
        "logit_adjustment": head.history.get("logit_adjustment"), "blend_weight": head.blend_weight,
        "venom_weight": head.venom_weight, "thresholds": head.thresholds,
    }
    from snakeweb.novelty import similarity_threshold

    novelty = similarity_threshold(train_x, val_x) if len(val_y) else None
    with store.transaction() as con:
        set_meta(con, "head", info)
        set_meta(con, "novelty", novelty)
    print(f"train: {config.kind} head, {info['classes']} classes, {info['train_images']} train / {info['val_images']} val images"
          + (f" (+{info['train_view_vectors']} augmented training views)" if info["train_view_vectors"] else "")
          + (f"; chosen on validation: lr {info['learning_rate']}, weight decay {info['weight_decay']}, logit adjustment "
             f"{info['logit_adjustment']}, temperature {info['temperature']:.2f}" if info["logit_adjustment"] is not None else "")
          # ECE before and after the temperature, always (a temperature that raised it is also said by a warning)
          + (f" (validation ECE {info['val_ece_before']:.1%} -> {info['val_ece_after']:.1%})" if info["val_ece_before"] is not None else "")
          + (f", kNN blend weight {1 - head.blend_weight:.2f}" if config.kind == "linear+knn" else "")
          + (f", venom weight {head.venom_weight:g}" if "venom_weight_val_track1" in head.history else ""))
    _say_thresholds(head.thresholds)
    return info


# below this many venomous validation observations the answer venom weight rests on too few snakes to trust
FEW_VENOMOUS = 30


def _say_thresholds(thresholds: dict | None) -> None:
    """One line on the rank thresholds, and a warning when validation had too few venomous snakes."""
    if not thresholds:
        print("train: no rank thresholds (validation too small): answers name the most likely species "
              "(or none, where the venom rule withholds it)")
        return
    shown = ", ".join(f"{r} {'never' if thresholds.get(r) is None else format(thresholds[r], '.3f')}" for r in ("species", "genus", "family"))
    print(f"train: rank thresholds for {thresholds['target_precision']:.0%} correct: {shown}; "
          f"answer venom weight {thresholds['venom_weight']:g}")
    venomous = thresholds.get("chosen_on", {}).get("venom_weight", {}).get("venomous_observations")
    if venomous is not None and venomous < FEW_VENOMOUS:
        print(f"train: warning: validation holds only {venomous} venomous observation(s); the answer venom weight rests on too "
              "few snakes to trust how often a venomous one is answered harmless. Add labelled photos of venomous species.")


def rank_thresholds(store: Store, head: Head, include_reviews: bool = False, aggregation: str = "mean-log") -> dict | None:
    """The rank roll-up thresholds (snakeweb.threshold_choice.choose_thresholds) chosen on the validation split's
    observations, as saved with the head; None when validation is too small to choose any."""
    require_probabilities(aggregation, "the thresholds chosen on validation")
    from snakeweb.answers import Taxa
    from snakeweb.index import load_index
    from snakeweb.threshold_choice import MIN_ANSWERED, choose_answer_venom_weight, choose_thresholds

    val_ids, val_x, val_y = labelled_embeddings(store, "val", include_reviews)
    seen = np.isin(val_y, head.label_map.class_ids)
    if seen.sum() < MIN_ANSWERED:
        return None
    faiss_index = load_index(store.index_path, batch_search=True) if head.kind in INDEX_HEADS else None
    log_probs = head.predict_log_proba(val_x[seen], faiss_index, val_ids[seen])
    observation_of = store.query("SELECT image_id, observation_id FROM images WHERE split = 'val'").set_index("image_id")["observation_id"]
    observations = [observation_of.get(int(i), f"image {i}") for i in val_ids[seen]]
    observation_ids, probabilities = combine_by_observation(log_probs, observations, aggregation)
    truth = dict(zip(observations, val_y[seen]))
    truth_index = head.label_map.to_indices([truth[o] for o in observation_ids])
    taxa = Taxa.from_species(store.species(), head.label_map.class_ids)
    thresholds = choose_thresholds(probabilities, truth_index, taxa)
    return choose_answer_venom_weight(probabilities, truth_index, taxa, thresholds, head.venom_weight).to_json()


def predict(store: Store, aggregation: str = "mean-log") -> dict:
    """Per-observation top-k predictions of the head for every embedded image, stored in `predictions`, and the
    answers decided from them. Raises SnakewebError for the `mode` aggregation (vote shares, not probabilities)."""
    require_probabilities(aggregation, "the stored answers")
    observation_ids, probabilities, head = observation_probabilities(store, aggregation)
    indices, probs = top_k(probabilities, STORED_TOP_K)
    class_ids = head.label_map.to_class_ids(indices)
    k = indices.shape[1]
    rows = pd.DataFrame({
        "observation_id": np.repeat(observation_ids, k),
        "rank": np.tile(np.arange(1, k + 1), len(observation_ids)),
        "class_id": class_ids.ravel(),
        "probability": probs.ravel(),
    })
    with store.transaction() as con:
        con.execute("DELETE FROM predictions")
        con.register("new_predictions", rows)
        con.execute("INSERT INTO predictions SELECT * FROM new_predictions")
        # which head.pt made these rows: their readers (snakeweb.stored_predictions) refuse them once it changes
        set_meta(con, "predictions", predictions_record(store, head, aggregation, len(observation_ids)))
    from snakeweb.export import store_answers  # export builds on this module

    store_answers(store, (observation_ids, probabilities, head), aggregation)
    summary = held_out_summary(store)
    with store.transaction() as con:
        set_meta(con, "held_out", summary)
    missing = head_classes_missing(store)
    if missing:  # the rows are written, but no reader will use them until the species table is whole again
        print(f"predict: warning: {species_gap_advice(store, missing)}.", file=sys.stderr)
    print(f"predict: {len(observation_ids)} observations; " + ", ".join(
        f"{split}: top-1 {s['accuracy']:.1%}, macro-F1 {s['macro_f1']:.1%} ({s['observations']} obs)"
        for split, s in summary.items()))
    return summary


def refresh_predictions(store: Store) -> dict | None:
    """After `train` alone: make the stored predictions again (the predict stage, with the aggregation they were
    made with, else mean-log) when they are no longer the current head's answers, so the Review page and `check`
    do not refuse them; says so in one line. None when they were still current."""
    from snakeweb.stored_predictions import META_KEY, prediction_problems

    if not prediction_problems(store):
        return None
    aggregation = (store.get_meta(META_KEY) or {}).get("aggregation") or "mean-log"
    print(f"train: the stored predictions are not this head's answers; making them again (predict --aggregation {aggregation})")
    return predict(store, aggregation)


def held_out_summary(store: Store) -> dict:
    """Observation-level top-1 accuracy and macro-F1 of the stored predictions per labelled split. Read right after
    `predict` wrote them in this process, so trusted without snakeweb.stored_predictions' checks."""
    from sklearn.metrics import f1_score

    frame = store.query(
        "SELECT o.split, o.class_id AS truth, p.class_id AS predicted FROM observations o "
        "JOIN predictions p ON p.observation_id = o.observation_id AND p.rank = 1 WHERE o.class_id IS NOT NULL"
    )
    summary = {}
    for split, group in frame.groupby("split"):
        summary[split] = {
            "observations": int(len(group)),
            "accuracy": float((group["truth"] == group["predicted"]).mean()),
            "macro_f1": float(f1_score(group["truth"], group["predicted"], average="macro", zero_division=0)),
        }
    return summary


def project(store: Store, force: bool = False) -> dict:
    """UMAP (after PCA to 50) of all embeddings into the `projection` table."""
    from snakeweb.index import ids_digest
    from snakeweb.projection import project_2d

    store.require().require_embeddings()
    digest = ids_digest(store.embedded_ids())
    recorded = store.get_meta("projection")
    if not force and recorded and recorded.get("ids_digest") == digest:
        print(f"project: up to date ({recorded.get('n')} points)")
        return recorded
    image_ids, vectors = store.embeddings()
    started = time.perf_counter()
    coords, settings = project_2d(vectors)
    settings.update(ids_digest=digest, seconds=round(time.perf_counter() - started, 2))
    rows = pd.DataFrame({"image_id": image_ids, "x": coords[:, 0], "y": coords[:, 1]})
    with store.transaction() as con:
        con.execute("DELETE FROM projection")
        con.register("new_projection", rows)
        con.execute("INSERT INTO projection SELECT * FROM new_projection")
        set_meta(con, "projection", settings)
    print(f"project: {len(image_ids)} points with {settings['method']}")
    return settings
