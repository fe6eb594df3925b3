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
