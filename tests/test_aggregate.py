import numpy as np
import pytest

from snakeweb.aggregate import combine, combine_by_observation, top_k


def log(p):
    return np.log(np.asarray(p, dtype=np.float64))


def test_mean_log_is_a_normalised_product_of_experts():
    images = log([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1]])
    combined = combine(images, "mean-log")
    expected = np.sqrt(np.array([0.12, 0.21, 0.01]))
    assert combined == pytest.approx(expected / expected.sum())
    assert combined.sum() == pytest.approx(1.0)


def test_mean_prob_and_mode():
    images = log([[0.5, 0.4, 0.1], [0.5, 0.4, 0.1], [0.1, 0.8, 0.1]])
    assert combine(images, "mean-prob") == pytest.approx([1.1 / 3, 1.6 / 3, 0.1])
    mode = combine(images, "mode")
    assert mode.argmax() == 0 and mode[0] == pytest.approx(2 / 3, abs=1e-5)


def test_mode_ties_broken_by_mean_probability():
    images = log([[0.55, 0.45], [0.1, 0.9]])
    assert combine(images, "mode").argmax() == 1


def test_combine_by_observation_groups_rows_in_first_seen_order():
    images = log([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]])
    ids, probs = combine_by_observation(images, ["b", "a", "b"])
    assert ids == ["b", "a"]
    assert probs[1] == pytest.approx([0.2, 0.8])
    assert probs[0].argmax() == 0


def test_top_k_sorted():
    idx, p = top_k(np.array([[0.1, 0.5, 0.05, 0.35]]), 3)
    assert idx.tolist() == [[1, 3, 0]] and p[0].tolist() == [0.5, 0.35, 0.1]


@pytest.mark.parametrize("method", ["mean-log", "mean-prob", "mode"])
def test_streamed_observations_match_combine_one_at_a_time(method):
    """The vectorised combiner, fed in uneven chunks, equals `combine` per observation (images in any order)."""
    from snakeweb.aggregate import ObservationCombiner

    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (500, 40))
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    observations = [f"o{i}" for i in rng.integers(0, 180, 500)]
    combiner = ObservationCombiner(observations, 40, method)
    for start, stop in [(0, 7), (7, 300), (300, 301), (301, 500)]:
        combiner.add(start, log_probs[start:stop])
    ids, probabilities = combiner.result(chunk=16)
    assert ids == list(dict.fromkeys(observations))
    for observation, row in zip(ids, probabilities):
        rows = [i for i, o in enumerate(observations) if o == observation]
        assert row == pytest.approx(combine(log_probs[rows], method), rel=1e-9, abs=1e-12)
