import numpy as np
import pytest
import torch

from snakeweb.errors import SnakewebError
from snakeweb.head_training import MIN_IMPROVEMENT, train_head
from snakeweb.heads import Head, TrainConfig
from snakeweb.index import build_index
from snakeweb.label_map import LabelMap

CLASS_IDS = np.array([1740, 7, 1130])  # non-contiguous, unsorted: the seed paper's bug would show here


def clusters(n_per_class: int, seed: int, dim: int = 16):
    rng = np.random.default_rng(seed)
    centres = np.eye(dim)[:3] * 5
    x = np.concatenate([centres[i] + rng.normal(0, 0.5, (n_per_class, dim)) for i in range(3)]).astype(np.float32)
    y = np.repeat(CLASS_IDS, n_per_class)
    return x, y


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_head_predicts_class_ids_not_indices(kind):
    x, y = clusters(30, seed=0)
    vx, vy = clusters(10, seed=1)
    head = train_head(x, y, vx, vy, "cls", "model@abc", TrainConfig(kind=kind, max_epochs=200))
    tx, ty = clusters(10, seed=2)
    predicted = head.label_map.to_class_ids(head.predict_log_proba(tx).argmax(1))
    assert (predicted == ty).mean() > 0.95
    assert set(predicted.tolist()) <= set(CLASS_IDS.tolist())
    assert head.history["best_epoch"] >= 1


def test_training_views_reach_the_trained_part_only():
    """Views of class 1740's photos lie along a direction its photos never take: only a head that trained on
    them calls a photo there 1740; the kNN references stay one per photo."""
    x, y = clusters(30, seed=0)
    vx, vy = clusters(10, seed=1)
    views = np.zeros((30, 16), np.float32)
    views[:, 5] = 5
    views += np.random.default_rng(3).normal(0, 0.5, views.shape).astype(np.float32)
    probe = views[:10] + 0.1
    config = TrainConfig(kind="linear+knn", max_epochs=200, patience=50)
    ids = np.arange(100, 190)
    plain = train_head(x, y, vx, vy, "cls", "m", config, train_image_ids=ids)
    seen = train_head(x, y, vx, vy, "cls", "m", config, train_image_ids=ids, view_vectors=views,
                      view_class_ids=np.full(30, 1740))
    assert seen.reference_ids.tolist() == ids.tolist() and seen.reference_labels.tolist() == y.tolist()
    inputs = probe / np.linalg.norm(probe, axis=1, keepdims=True)

    def linear_part_calls(head):  # the trained part alone (the blend would add kNN votes from the photos)
        return head.label_map.to_class_ids(head.forward(inputs).argmax(1))

    assert (linear_part_calls(seen) == 1740).all() and not (linear_part_calls(plain) == 1740).all()


def test_knn_head_uses_index_ids_and_skips_self_matches():
    x, y = clusters(10, seed=0)
    ids = np.arange(100, 130)
    head = train_head(x, y, x[:0], y[:0], "cls", "m", TrainConfig(kind="knn", knn_k=3), train_image_ids=ids)
    index = build_index(ids, x)
    log_probs = head.predict_log_proba(x, index, exclude_self_ids=ids)
    assert (head.label_map.to_class_ids(log_probs.argmax(1)) == y).all()
    assert np.exp(log_probs).sum(1) == pytest.approx(np.ones(len(x)), abs=1e-5)


def test_balanced_weights_and_early_stopping_restore_the_best_epoch():
    # random labels: the head can only overfit, so validation loss turns upwards and training must stop
    rng = np.random.default_rng(0)
    x, vx = rng.normal(size=(60, 16)).astype(np.float32), rng.normal(size=(30, 16)).astype(np.float32)
    y, vy = rng.choice(CLASS_IDS, 60), rng.choice(CLASS_IDS, 30)
    head = train_head(x, y, vx, vy, "cls", "m", TrainConfig(kind="linear", max_epochs=300, patience=3, balanced=True, learning_rates=(1e-3,),
                                                            weight_decays=(0.0,)))
    assert head.history["epochs_run"] < 300
    val_loss = head.history["val_loss"]
    # falls under MIN_IMPROVEMENT (relative) don't count as improvements
    assert val_loss[head.history["best_evaluation"] - 1] <= min(val_loss) / (1 - MIN_IMPROVEMENT)
    assert head.history["best_epoch"] < head.history["epochs_run"]


def test_long_epochs_are_validated_every_half_patience_and_stop_within_patience_steps():
    # 4,000 rows of random labels at batch 64: 63 steps an epoch, patience 1 epoch of HackerEarth's 13 steps, so
    # validation is read every 6 steps and training stops 3 readings after the best (not a whole epoch later)
    rng = np.random.default_rng(0)
    x, vx = rng.normal(size=(4000, 16)).astype(np.float32), rng.normal(size=(200, 16)).astype(np.float32)
    y, vy = rng.choice(CLASS_IDS, 4000), rng.choice(CLASS_IDS, 200)
    head = train_head(x, y, vx, vy, "cls", "m", TrainConfig(kind="linear", max_epochs=50, patience=1, batch_size=64,
                                                            learning_rates=(1e-1,), weight_decays=(0.0,)))
    epochs = head.history["epoch"]
    assert epochs[:3] == [round(6 / 63, 3), round(12 / 63, 3), round(18 / 63, 3)]
    assert len(epochs) - head.history["best_evaluation"] == 3 and head.history["epochs_run"] < 50
    assert head.history["best_epoch"] == epochs[head.history["best_evaluation"] - 1]


def test_saved_head_round_trips_and_refuses_other_embeddings(tmp_path):
    x, y = clusters(10, seed=0)
    head = train_head(x, y, x[:0], y[:0], "cls+mean", "dinov2-small@rev1", TrainConfig(kind="linear", max_epochs=20))
    path = tmp_path / "head.pt"
    head.save(path)
    loaded = Head.load(path, "dinov2-small@rev1", "cls+mean")
    assert loaded.label_map == head.label_map
    assert np.allclose(loaded.predict_log_proba(x), head.predict_log_proba(x))
    with pytest.raises(SnakewebError, match="trained on embeddings of dinov2-small@rev1"):
        Head.load(path, "dinov2-base@rev2", "cls+mean")
    with pytest.raises(SnakewebError, match="'cls\\+mean' features"):
        Head.load(path, "dinov2-small@rev1", "cls")


def test_head_refuses_wrong_feature_width():
    x, y = clusters(5, seed=0)
    head = train_head(x, y, x[:0], y[:0], "cls", "m", TrainConfig(kind="linear", max_epochs=2))
    with pytest.raises(SnakewebError, match="16-d features"):
        head.predict_log_proba(np.zeros((1, 8), np.float32))


def cluster_sampler(seed: int, spread: float):
    """n -> (vectors [n, 16], class ids [n]) drawn around three random centres with Gaussian spread `spread`."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, 16))

    def sample(n):
        labels = rng.integers(0, 3, n)
        return (centres[labels] + rng.normal(0, spread, (n, 16))).astype(np.float32), CLASS_IDS[labels]
    return sample


def test_head_is_temperature_calibrated_on_validation(tmp_path):
    # heavily overlapping clusters: an uncalibrated head is overconfident on them (T = 1.26 lowers NLL, held out too;
    # at a spread of 1.2 the head was calibrated already, and the fitted T = 0.92 is no longer kept)
    sample = cluster_sampler(seed=0, spread=3.0)
    x, y = sample(300)
    vx, vy = sample(300)
    config = TrainConfig(kind="linear", max_epochs=300, patience=300, learning_rates=(1e-2,), weight_decays=(0.0,))
    head = train_head(x, y, vx, vy, "cls", "m", config)
    assert head.temperature > 1.1
    # temperature scaling minimises validation NLL (ECE usually follows, but need not when already small)
    assert head.history["val_nll_after"] <= head.history["val_nll_before"]
    assert head.history["val_nll_held_out_fitted"] < head.history["val_nll_before"]
    assert head.history["temperature_fitted"] == head.temperature
    # ECE is recorded before and after, and a rise is said, not kept in silence
    assert head.history["val_ece_worsened"] == (head.history["val_ece_after"] > head.history["val_ece_before"])
    assert (head.history["temperature_note"] is not None) == head.history["val_ece_worsened"]
    head.save(tmp_path / "head.pt")
    assert Head.load(tmp_path / "head.pt").temperature == head.temperature


def test_a_temperature_fitted_to_twelve_validation_photos_is_kept_only_if_it_helps_held_out(caplog):
    """Twelve validation vectors of overlapping clusters: the NLL minimum there is T = 1.57, which, fitted on any four
    fifths of them, raises NLL on the fifth left out; the head keeps T = 1 and train says why."""
    import logging

    sample = cluster_sampler(seed=2, spread=1.2)
    x, y = sample(150)
    vx, vy = sample(12)
    config = TrainConfig(kind="linear", max_epochs=100, patience=100, learning_rates=(1e-2,), weight_decays=(0.0,))
    with caplog.at_level(logging.WARNING, logger="snakeweb.head_training"):
        head = train_head(x, y, vx, vy, "cls", "m", config)
    history = head.history
    assert head.temperature == 1.0 and history["temperature_fitted"] == pytest.approx(1.57, abs=0.05)
    assert history["val_nll_held_out_fitted"] >= history["val_nll_before"] == history["val_nll_after"]
    assert history["val_ece_after"] == history["val_ece_before"] and not history["val_ece_worsened"]
    assert "temperature kept at 1: the temperature fitted on validation (1.57)" in history["temperature_note"]
    assert history["temperature_note"] in caplog.text
    # the probabilities the head gives are the uncalibrated ones (T = 1), as recorded
    logits = head.logits(vx / np.linalg.norm(vx, axis=1, keepdims=True))
    expected = logits - logits.max(1, keepdims=True)
    assert np.allclose(head.predict_log_proba(vx), expected - np.log(np.exp(expected).sum(1, keepdims=True)), atol=1e-4)


def test_sweep_keeps_the_best_learning_rate_and_adjusts_for_the_long_tail():
    # a skewed training set (60/30/6) with balanced validation: the logit adjustment must move towards the tail
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(3, 16)) * 1.2

    def sample(sizes):
        labels = np.repeat(np.arange(3), sizes)
        return (centres[labels] + rng.normal(0, 1.0, (len(labels), 16))).astype(np.float32), CLASS_IDS[labels]

    x, y = sample([60, 30, 6])
    vx, vy = sample([40, 40, 40])
    config = TrainConfig(kind="linear", max_epochs=150, patience=10, learning_rates=(1e-4, 1e-2), weight_decays=(0.0,))
    head = train_head(x, y, vx, vy, "cls", "m", config)
    sweep = {row["lr"]: row["val_accuracy"] for row in head.history["sweep"]}
    assert head.history["learning_rate"] == max(sweep, key=sweep.get)
    assert head.history["logit_adjustment"] in config.logit_adjustments
    quality = head.history["logit_adjustment_val_quality"]
    assert quality[str(head.history["logit_adjustment"])] == max(quality.values())


def test_large_training_sets_sweep_on_a_stratified_sample_then_train_only_the_chosen_head(monkeypatch):
    import snakeweb.head_training as heads

    x, y = clusters(40, seed=0)
    vx, vy = clusters(10, seed=1)
    monkeypatch.setattr(heads, "SWEEP_SAMPLE", 30)
    config = TrainConfig(kind="linear", max_epochs=20, learning_rates=(1e-4, 1e-2), weight_decays=(0.0, 1e-4))
    epochs_reported = []
    head = train_head(x, y, vx, vy, "cls", "m", config, progress=lambda epoch, *_: epochs_reported.append(epoch))
    # at scale only learning rates are swept (with the first weight decay)
    assert head.history["sweep_sample"] == 30 and [(r["lr"], r["weight_decay"]) for r in head.history["sweep"]] == [(1e-4, 0.0), (1e-2, 0.0)]
    # the sample sweep and the full run both report progress, on one rising count of epochs
    assert epochs_reported == list(range(1, len(epochs_reported) + 1)) and len(epochs_reported) > head.history["epochs_run"]
    best = max(head.history["sweep"], key=lambda r: (r["val_accuracy"], -r["val_loss"]))
    assert (head.history["learning_rate"], head.history["weight_decay"]) == (best["lr"], best["weight_decay"])
    assert (head.label_map.to_class_ids(head.predict_log_proba(vx).argmax(1)) == vy).mean() > 0.95
    # the sample keeps every class (even one with a single row) in proportion
    labels = np.repeat([0, 1, 2], [1, 30, 69])
    sample = heads._stratified_sample(labels, 20, seed=0).numpy()
    assert len(set(sample)) == 20 and np.bincount(labels[sample]).tolist() in ([1, 6, 13], [1, 5, 14])


def test_linear_knn_blend_chooses_its_weight_on_validation_and_round_trips(tmp_path):
    x, y = clusters(20, seed=0)
    vx, vy = clusters(10, seed=1)
    ids = np.arange(500, 560)
    head = train_head(x, y, vx, vy, "cls", "m", TrainConfig(kind="linear+knn", max_epochs=40, learning_rates=(1e-2,), weight_decays=(0.0,)),
                      train_image_ids=ids)
    assert head.blend_weight in (0.5, 0.7, 0.85, 1.0)
    index = build_index(ids, x)
    tx, ty = clusters(10, seed=2)
    log_probs = head.predict_log_proba(tx, index)
    assert (head.label_map.to_class_ids(log_probs.argmax(1)) == ty).mean() > 0.95
    head.save(tmp_path / "head.pt")
    loaded = Head.load(tmp_path / "head.pt")
    assert loaded.blend_weight == head.blend_weight
    assert np.allclose(loaded.predict_log_proba(tx, index), log_probs, atol=1e-5)


def test_venom_weight_is_chosen_on_validation_by_track1_and_round_trips(tmp_path):
    x, y = clusters(20, seed=0)
    vx, vy = clusters(10, seed=1)
    vx = vx + np.random.default_rng(3).normal(0, 2.0, vx.shape).astype(np.float32)  # hard validation: errors to weigh
    config = TrainConfig(kind="linear", max_epochs=30, learning_rates=(1e-2,), weight_decays=(0.0,))
    plain = train_head(x, y, vx, vy, "cls", "m", config)
    assert plain.venom_weight == 1.0 and "venom_weight_val_track1" not in plain.history
    head = train_head(x, y, vx, vy, "cls", "m", config, venomous_class_ids={7})
    track1 = head.history["venom_weight_val_track1"]
    assert len(track1) == 5 and track1[str(head.venom_weight)] == max(track1.values())
    head.save(tmp_path / "head.pt")
    assert Head.load(tmp_path / "head.pt").venom_weight == head.venom_weight
    knn = train_head(x, y, vx, vy, "cls", "m", TrainConfig(kind="knn"), train_image_ids=np.arange(60), venomous_class_ids={7})
    assert str(knn.venom_weight) in knn.history["venom_weight_val_track1"]


def test_large_stores_get_an_ivf_index_keyed_by_image_id_and_filters_still_work(monkeypatch, tmp_path):
    import pandas as pd

    from snakeweb import index as index_module
    from snakeweb.index import build_index, describe, index_ids, index_spec
    from snakeweb.search import search_images

    assert index_spec(4414, 2560).factory == "Flat"
    assert index_spec(1_000_000, 768) == index_module.IndexSpec("IVF1024,PQ96x4fs,Refine(SQ8)", nprobe=512, k_factor=40)
    assert index_spec(200_000, 1280).factory.startswith("IVF")  # a flat scan would read 1 GB per query
    assert index_spec(200_000, 1284).factory.startswith("IVF512,PQ107x4fs")  # 12-d sub-quantisers where 8 does not divide
    monkeypatch.setattr(index_module, "EXACT_UP_TO_FLOATS", 500 * 32)
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(40, 32))
    x = (centres[rng.integers(0, 40, 4000)] + rng.normal(0, 0.3, (4000, 32))).astype(np.float32)
    ids = np.arange(4000, dtype=np.int64) * 5 + 11
    built = build_index(ids, x)
    info = describe(built)
    assert info == {"kind": "IDMap2,IVF64,PQ4x4fs,Refine(SQ8)", "exact": False, "nprobe": 32, "k_factor": 40}
    saved = tmp_path / "index.faiss"
    index_module.save_index(built, saved)
    assert describe(index_module.load_index(saved)) == info  # nprobe and k_factor travel with the file
    assert (np.sort(index_ids(built)) == ids).all()
    _, found = built.search(x[:50] / np.linalg.norm(x[:50], axis=1, keepdims=True), 1)
    assert (found[:, 0] == ids[:50]).mean() >= 0.95  # each vector finds itself
    catalogue = pd.DataFrame({"image_id": ids, "path": "p"}).set_index("image_id")
    allowed = ids[1::2]
    result = search_images(built, catalogue, x[1], k=5, allowed_ids=allowed)
    assert len(result) == 5 and set(result["image_id"]) <= set(allowed.tolist()) and result["image_id"].iloc[0] == ids[1]


def _legacy_save(head: Head, module, path) -> None:
    """What Head.save wrote before format 3: a torch.save payload with the trained module's state_dict."""
    from dataclasses import asdict

    torch.save({
        "format": 2, "kind": head.kind, "class_ids": head.label_map.to_json(), "feature_kind": head.feature_kind,
        "model_fingerprint": head.model_fingerprint, "feature_dim": head.feature_dim, "config": asdict(head.config),
        "history": head.history, "state_dict": module.state_dict() if module is not None else None,
        "reference_ids": head.reference_ids, "reference_labels": head.reference_labels, "temperature": head.temperature,
        "logit_offset": head.logit_offset, "blend_weight": head.blend_weight, "venom_weight": head.venom_weight,
        "thresholds": head.thresholds,
    }, path)


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_heads_run_in_numpy_as_their_torch_module_and_old_torch_files_still_load(kind, tmp_path):
    """A trained head is NumPy layers: the same logits as the torch module it was trained as (GELU and all), saved as
    safetensors; a head file saved by an earlier snakeweb with torch.save loads to the same predictions."""
    from snakeweb.head_training import _layers, _module

    torch.manual_seed(0)
    config = TrainConfig(kind=kind, hidden=32)
    module = _module(kind, 16, 3, config.hidden).eval()
    head = Head(kind, LabelMap((7, 1130, 1740)), "cls", "m", 16, config,
                layers=_layers(module), temperature=1.7, logit_offset=np.array([0.1, -0.2, 0.3], np.float32), venom_weight=2.0,
                history={"epoch": [1, 2], "val_loss": [np.float64(0.5), 0.25]}, thresholds={"species": 0.4})
    x, _ = clusters(10, seed=2)
    inputs = x / np.linalg.norm(x, axis=1, keepdims=True)
    with torch.no_grad():
        expected = module(torch.from_numpy(inputs) * config.input_scale).numpy()
    assert np.allclose(head.forward(inputs), expected, atol=1e-5)

    head.save(tmp_path / "head.pt")
    assert (tmp_path / "head.pt").read_bytes()[:2] != b"PK"  # not a torch archive
    loaded = Head.load(tmp_path / "head.pt", "m", "cls")
    assert loaded.saved_format == 3 and loaded.history == {"epoch": [1, 2], "val_loss": [0.5, 0.25]}
    assert (loaded.temperature, loaded.venom_weight, loaded.thresholds, loaded.config) == (1.7, 2.0, {"species": 0.4}, config)
    assert np.array_equal(loaded.predict_log_proba(x), head.predict_log_proba(x))

    _legacy_save(head, module, tmp_path / "old.pt")
    old = Head.load(tmp_path / "old.pt", "m", "cls")
    assert old.saved_format == 2 and old.label_map == head.label_map and old.config == config
    assert np.allclose(old.predict_log_proba(x), head.predict_log_proba(x), atol=1e-6)
    with pytest.raises(SnakewebError, match="trained on embeddings of m"):
        Head.load(tmp_path / "old.pt", "other", "cls")
    old.save(tmp_path / "rewritten.pt")  # re-saving an old head writes the torch-free format
    assert Head.load(tmp_path / "rewritten.pt").saved_format == 3


def test_old_knn_head_files_load_and_damaged_head_files_are_refused(tmp_path):
    x, y = clusters(10, seed=0)
    ids = np.arange(100, 130)
    head = train_head(x, y, x[:0], y[:0], "cls", "m", TrainConfig(kind="knn", knn_k=3), train_image_ids=ids)
    _legacy_save(head, None, tmp_path / "old.pt")
    old = Head.load(tmp_path / "old.pt")
    assert old.layers is None and old.reference_ids.tolist() == ids.tolist() and old.reference_labels.tolist() == y.tolist()
    head.save(tmp_path / "head.pt")
    data = (tmp_path / "head.pt").read_bytes()
    for name, damaged in {"cut.pt": data[: len(data) // 2], "empty.pt": b"", "text.pt": b"not a head at all"}.items():
        (tmp_path / name).write_bytes(damaged)
        with pytest.raises(SnakewebError, match="Cannot read the head"):
            Head.load(tmp_path / name)
    (tmp_path / "cut-old.pt").write_bytes((tmp_path / "old.pt").read_bytes()[:100])
    with pytest.raises(SnakewebError, match="Cannot read the head"):
        Head.load(tmp_path / "cut-old.pt")


def test_knn_head_votes_the_same_with_the_numpy_index_as_with_faiss(tmp_path):
    from snakeweb.index import save_index
    from snakeweb.vectors import FlatIndex, open_index

    x, y = clusters(20, seed=0)
    x = x + np.random.default_rng(5).normal(0, 2.0, x.shape).astype(np.float32)  # overlapping: votes are split
    ids = np.arange(1000, 1060) * 3
    head = train_head(x, y, x[:0], y[:0], "cls", "m", TrainConfig(kind="knn", knn_k=5), train_image_ids=ids)
    faiss_index = build_index(ids, x)
    save_index(faiss_index, tmp_path / "index.faiss")
    numpy_index = open_index(tmp_path / "index.faiss")
    assert isinstance(numpy_index, FlatIndex)
    expected = head.predict_log_proba(x, faiss_index, exclude_self_ids=ids)
    assert np.allclose(head.predict_log_proba(x, numpy_index, exclude_self_ids=ids), expected, atol=1e-5)


@pytest.mark.parametrize("low_byte", [0x80, ord("P")])
def test_a_safetensors_head_whose_header_length_looks_like_torch_still_loads(low_byte, tmp_path):
    """safetensors opens with its header's length (u64 little-endian): a length whose first byte is 0x80 (a legacy
    pickle's first byte; 1 head in 256, as a 182k-image run hit) or "P" must not be read as a torch file."""
    from safetensors import safe_open
    from safetensors.numpy import save_file

    x, y = clusters(10, seed=0)
    head = train_head(x, y, x[:0], y[:0], "cls", "m", TrainConfig(kind="linear", max_epochs=3))
    head.save(tmp_path / "head.pt")
    with safe_open(str(tmp_path / "head.pt"), framework="numpy") as f:
        metadata, arrays = dict(f.metadata()), {name: f.get_tensor(name) for name in f.keys()}
    for pad in range(0, 4096):  # pad the header until its length's first byte is the one asked for
        save_file(arrays, str(tmp_path / "padded.pt"), metadata={**metadata, "pad": "x" * pad})
        if (tmp_path / "padded.pt").read_bytes()[0] == low_byte:
            break
    assert (tmp_path / "padded.pt").read_bytes()[0] == low_byte
    loaded = Head.load(tmp_path / "padded.pt", "m", "cls")
    assert loaded.saved_format == 3 and np.array_equal(loaded.predict_log_proba(x), head.predict_log_proba(x))
