import numpy as np
import pytest

from snakeweb.decisions import (
    VENOM_WEIGHTS,
    CountryPrior,
    choose_venom_weight,
    cost_aware_choice,
    expected_cost_matrix,
    is_uncertain,
)
from snakeweb.scoring import scores_of_arrays
from tests.conftest import shared


@pytest.mark.parametrize("venom_weight", [1.0, 1.5, 4.0])
def test_cost_rule_equals_brute_force_on_random_inputs(venom_weight):
    rng = np.random.default_rng(0)
    for _ in range(200):
        k = int(rng.integers(2, 12))
        venomous = rng.random(k) < 0.3
        probs = rng.dirichlet(np.full(k, 0.3), size=20)
        expected = probs @ expected_cost_matrix(venomous, venom_weight)
        fast = cost_aware_choice(probs, venomous, venom_weight)
        assert np.allclose(expected[np.arange(20), fast], expected.min(1))


def test_a_larger_venom_weight_never_calls_fewer_snakes_venomous():
    rng = np.random.default_rng(1)
    venomous = rng.random(30) < 0.3
    probs = rng.dirichlet(np.full(30, 0.2), size=500)
    called_venomous = [venomous[cost_aware_choice(probs, venomous, w)].sum() for w in VENOM_WEIGHTS]
    assert called_venomous == sorted(called_venomous) and called_venomous[-1] > called_venomous[0]


def test_venom_weight_is_the_best_track1_on_the_rows_given():
    # a head that under-states venom: venomous truths keep only a fifth of their probability on a venomous class
    rng = np.random.default_rng(2)
    venomous = np.array([False] * 8 + [True] * 2)
    truth = rng.integers(0, 10, 400)
    probs = rng.dirichlet(np.full(10, 0.5), size=400) * 0.5
    probs[np.arange(400), truth] += 0.5
    probs[:, venomous] *= np.where(venomous[truth], 0.2, 1.0)[:, None]
    probs /= probs.sum(1, keepdims=True)
    chosen, track1 = choose_venom_weight(probs, truth, venomous)
    by_hand = {w: scores_of_arrays(truth, cost_aware_choice(probs, venomous, w), {8, 9})["Track1 Metric"] for w in VENOM_WEIGHTS}
    assert track1 == by_hand and chosen == max(by_hand, key=lambda w: (by_hand[w], -w))
    assert chosen > 1.0 and track1[chosen] > track1[1.0]


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


def test_the_venom_headline_never_rounds_across_a_venom_level():
    from snakeweb.identification import venom_headline

    # 9.8% was shown as "10%", the caution level, beside a low-risk banner
    assert venom_headline(0.098, 0.0) == "Venomous: 9.8% likely"
    assert venom_headline(0.4996, 0.0) == "Venomous: 49.9% likely" and venom_headline(0.495, 0.0) == "Venomous: 49.5% likely"
    assert venom_headline(0.09996, 0.0) == "Venomous: 9.9% likely"
    assert venom_headline(0.497, 0.0) == "Venomous: 49.7% likely"
    assert venom_headline(0.87, 0.0) == "Venomous: 87% likely" and venom_headline(0.104, 0.0) == "Venomous: 10% likely"
    assert venom_headline(0.2, 0.096) == ("Venomous: 20% likely (and 9.6% on species of unknown venom status: 30% possibly venomous "
                                          "in all, treat it so)")
    # the level is set by the two shares together: their sum is shown, never across an edge (45% and 4.99% read as 50%
    # beside a caution banner; 9.8% and 0.3%, a caution, hid the 0.3%)
    assert "(and 5% on species of unknown venom status: 49.9% possibly venomous in all" in venom_headline(0.45, 0.0499)
    assert venom_headline(0.098, 0.003).endswith("(and 0.3% on species of unknown venom status: 10% possibly venomous in all, treat it so)")
    assert venom_headline(0.004, 0.0) == "Venomous: 0.4% likely"
    # below the caution level the sum is shown, without "treat it so" beside an all-clear
    assert venom_headline(0.007, 0.02) == "Venomous: 0.7% likely (and 2% on species of unknown venom status: 3% possibly venomous in all)"


def test_a_withheld_answer_says_the_venom_rule_before_the_uncertainty():
    from snakeweb.identification import Identification, answer_sentence

    # an uncertain photo whose answer the venom rule withheld lost "treat it as possibly venomous"
    result = Identification(prediction="unknown snake", prediction_source="venom_rule", p_venomous=0.42, uncertain=True)
    assert answer_sentence(result, "Nerodia sipedon", None).endswith("Treat it as possibly venomous.")
    result.prediction_source = "abstain"
    assert answer_sentence(result, "Nerodia sipedon", None).startswith("Not named: no species reaches the confidence asked for")
