import numpy as np
import pytest

from snakeweb.decisions import CountryPrior, cost_aware_choice, expected_cost_matrix, is_uncertain
from tests.conftest import shared


def test_cost_rule_equals_brute_force_on_random_inputs():
    rng = np.random.default_rng(0)
    for _ in range(200):
        k = int(rng.integers(2, 12))
        venomous = rng.random(k) < 0.3
        probs = rng.dirichlet(np.full(k, 0.3), size=20)
        brute = (probs @ expected_cost_matrix(venomous)).argmin(1)
        fast = cost_aware_choice(probs, venomous)
        fast_cost = (probs @ expected_cost_matrix(venomous))[np.arange(20), fast]
        brute_cost = (probs @ expected_cost_matrix(venomous))[np.arange(20), brute]
        assert np.allclose(fast_cost, brute_cost)


def test_cost_rule_prefers_a_likely_venomous_species():
    # harmless 0.55 vs venomous 0.45: argmax says harmless, expected cost says venomous (0.45*5 > 1.1)
    probs = np.array([[0.55, 0.45]])
    assert cost_aware_choice(probs, np.array([False, True])).tolist() == [1]
    assert cost_aware_choice(np.array([[0.9, 0.1]]), np.array([False, True])).tolist() == [0]


def test_all_harmless_or_all_venomous_is_argmax():
    probs = np.array([[0.2, 0.5, 0.3]])
    assert cost_aware_choice(probs, np.zeros(3, bool)).tolist() == [1]
    assert cost_aware_choice(probs, np.ones(3, bool)).tolist() == [1]


def test_uncertain():
    assert is_uncertain(np.array([[0.4, 0.35, 0.25], [0.9, 0.05, 0.05]]), 0.5).tolist() == [True, False]


def test_country_prior_smooths_and_renormalises():
    prior = CountryPrior.from_csv(shared("snakeclef", "Species_Relevance.csv"))
    assert prior.unmatched_countries == ["n cyprus"]
    assert prior.presence.shape[1] >= 190
    names = ["Vipera berus", "Crotalus atrox", "Not in table"]
    weights = prior.weights(names, "DE")
    assert weights.tolist() == [1.0, prior.floor, 1.0]
    out = prior.apply(np.array([[0.2, 0.7, 0.1]]), names, ["DE"])
    assert out.sum() == pytest.approx(1.0) and out[0].argmax() == 0 and out[0, 1] > 0
    assert prior.apply(np.array([[0.2, 0.7, 0.1]]), names, [None]) == pytest.approx(np.array([[0.2, 0.7, 0.1]]))
    assert CountryPrior.country_code("germany") == "DE" and CountryPrior.country_code("burma") == "MM"
