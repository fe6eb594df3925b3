import numpy as np
import pytest

from snakeweb.calibration import expected_calibration_error, fit_temperature, softmax


def test_fit_temperature_recovers_the_generating_temperature():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=(4000, 6))
    true_probs = softmax(logits, 2.0)  # labels drawn from softmax(logits / 2): the right temperature is 2
    labels = np.array([rng.choice(6, p=p) for p in true_probs])
    assert fit_temperature(logits, labels) == pytest.approx(2.0, rel=0.1)
    before = expected_calibration_error(softmax(logits, 1.0), labels)
    after = expected_calibration_error(softmax(logits, fit_temperature(logits, labels)), labels)
    assert after < before and after < 0.03


def test_ece_of_a_perfectly_confident_correct_model_is_zero():
    probs = np.eye(3)[[0, 1, 2, 1]]
    assert expected_calibration_error(probs, np.array([0, 1, 2, 1])) == 0.0


def test_fit_temperature_is_the_nll_minimum_on_a_fine_grid_and_stops_at_the_bounds():
    from snakeweb.calibration import nll

    rng = np.random.default_rng(1)
    logits = rng.normal(0, 4, size=(3000, 40))
    labels = np.where(rng.random(3000) < 0.4, logits.argmax(1), rng.integers(0, 40, 3000))  # over-confident logits
    fitted = fit_temperature(logits, labels)
    grid = np.exp(np.linspace(np.log(fitted) - 0.05, np.log(fitted) + 0.05, 201))
    best_on_grid = grid[np.argmin([nll(logits, labels, t) for t in grid])]
    assert fitted == pytest.approx(best_on_grid, rel=1e-3) and fitted > 1.0
    # always right by a wide margin: sharper is always better, up to the lowest allowed temperature
    assert fit_temperature(np.eye(5)[[0, 1, 2, 3, 4] * 20] * 10, np.array([0, 1, 2, 3, 4] * 20), low=0.05) == pytest.approx(0.05)
    # never right: flatter is always better, up to the highest
    assert fit_temperature(np.eye(5)[[0, 1, 2, 3, 4] * 20] * 10, np.array([1, 2, 3, 4, 0] * 20), high=20.0) == pytest.approx(20.0)


def test_confident_correct_logits_are_never_flattened_to_the_highest_temperature():
    """Logits whose true class leads by ~10 (a well separated validation split): NLL falls as T falls, and a
    temperature at or below 1 must come back. The degenerate-curvature branch once read the sign of a rounding-noise
    gradient and returned T = 20, which put every venomous species' p(venomous) under 0.5."""
    from snakeweb.calibration import fit_temperature

    rng = np.random.default_rng(0)
    truth = rng.integers(0, 40, 300)
    logits = rng.normal(0, 1, (300, 40)).astype(np.float32)
    logits[np.arange(300), truth] += 10
    assert fit_temperature(logits, truth) <= 1.0
    for lead in (30.0, 60.0):  # so confident that every softmax is one-hot in float32
        sharp = logits.copy()
        sharp[np.arange(300), truth] += lead
        assert fit_temperature(sharp, truth) <= 1.0
    wrong = rng.normal(0, 1, (300, 40)).astype(np.float32)
    wrong[np.arange(300), (truth + 1) % 40] += 40  # confidently wrong: flatten as far as allowed
    assert fit_temperature(wrong, truth) == 20.0
