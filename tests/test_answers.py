"""The decision module: p(venomous), rank roll-up, range prior/filter, the venom rule and threshold choice,
on hand-made probabilities whose right answers are worked out in the comments."""

import numpy as np
import pandas as pd
import pytest

from snakeweb.answers import Taxa, Thresholds, correct_at_rank, decide
from snakeweb.errors import SnakewebError
from snakeweb.threshold_choice import called_harmless_rate, choose_answer_venom_weight, choose_thresholds

# six classes: two rattlesnakes (Crotalus, Viperidae), two water snakes (Nerodia, Colubridae), a rat snake
# (Pantherophis, Colubridae) and a placeholder class with no genus or family
SPECIES = pd.DataFrame({
    "class_id": [405, 442, 1137, 1140, 1235, 54],
    "binomial_name": ["Crotalus atrox", "Crotalus viridis", "Nerodia sipedon", "Nerodia fasciata", "Pantherophis guttatus", "class 54"],
    "genus": ["Crotalus", "Crotalus", "Nerodia", "Nerodia", "Pantherophis", None],
    "family": ["Viperidae", "Viperidae", "Colubridae", "Colubridae", "Colubridae", "unknown"],
    "venom_status": ["venomous", "venomous", "harmless", "harmless", "harmless", "unknown"],
})
ORDER = [54, 405, 442, 1137, 1140, 1235]  # label-map order (sorted class ids)


@pytest.fixture
def taxa() -> Taxa:
    return Taxa.from_species(SPECIES, ORDER)


def row(**p: float) -> np.ndarray:
    """Probabilities in label-map order from binomial names (the rest 0)."""
    names = SPECIES.set_index("class_id").loc[ORDER, "binomial_name"].tolist()
    out = np.array([p.get(n.replace(" ", "_"), 0.0) for n in names])
    assert abs(out.sum() - 1) < 1e-9
    return out[None, :]


def test_taxa_groups_and_venom_status_of_taxa(taxa):
    assert taxa.genera == ["Crotalus", "Nerodia", "Pantherophis"] and taxa.families == ["Colubridae", "Viperidae"]
    assert taxa.genus_of.tolist() == [-1, 0, 0, 1, 1, 2] and taxa.family_of.tolist() == [-1, 1, 1, 0, 0, 0]
    assert taxa.status_of_taxa("genus").tolist() == ["venomous", "harmless", "harmless"]
    assert taxa.status_of_taxa("family").tolist() == ["harmless", "venomous"]
    # the placeholder counts towards no genus or family
    p = row(class_54=0.5, Crotalus_atrox=0.5)
    assert taxa.sums(p, "genus").tolist() == [[0.5, 0.0, 0.0]] and taxa.sums(p, "family").tolist() == [[0.0, 0.5]]


def test_species_answer_when_confident_and_p_venomous(taxa):
    t = Thresholds(species=0.8, genus=0.7, family=0.6)
    a = decide(row(Crotalus_atrox=0.85, Crotalus_viridis=0.05, Nerodia_sipedon=0.1), taxa, t)
    assert (a.rank[0], a.name[0], a.source[0], a.venom_status[0]) == ("species", "Crotalus atrox", "classifier", "venomous")
    assert a.score[0] == pytest.approx(0.85) and a.p_venomous[0] == pytest.approx(0.9) and a.p_unknown_venom[0] == 0
    assert a.class_index[0] == ORDER.index(405)


def test_rolls_up_to_genus_then_family_then_abstains(taxa):
    t = Thresholds(species=0.8, genus=0.7, family=0.6)
    genus = decide(row(Nerodia_sipedon=0.4, Nerodia_fasciata=0.35, Crotalus_atrox=0.25), taxa, t, venom_rule=False)
    assert (genus.rank[0], genus.name[0], genus.source[0]) == ("genus", "Nerodia", "rollup")
    assert genus.score[0] == pytest.approx(0.75)
    # Nerodia 0.5 < 0.7, Colubridae 0.5 + 0.2 = 0.7 >= 0.6
    family = decide(row(Nerodia_sipedon=0.3, Nerodia_fasciata=0.2, Pantherophis_guttatus=0.2, Crotalus_atrox=0.3), taxa, t,
                    venom_rule=False)
    assert (family.rank[0], family.name[0], family.score[0]) == ("family", "Colubridae", pytest.approx(0.7))
    none = decide(row(Nerodia_sipedon=0.25, Crotalus_atrox=0.4, Crotalus_viridis=0.1, Pantherophis_guttatus=0.25), taxa, t,
                  venom_rule=False)
    assert (none.rank[0], none.name[0], none.source[0], none.venom_status[0]) == ("", "unknown snake", "abstain", "unknown")
    assert np.isnan(none.score[0])


def test_venom_rule_never_names_a_harmless_taxon_the_costs_call_venomous(taxa):
    t = Thresholds(species=0.6, genus=0.7, family=0.6)
    p = row(Nerodia_sipedon=0.7, Crotalus_atrox=0.3)
    # calling harmless costs 0.3 * 5 = 1.5, calling Crotalus atrox 0.7 * 2 = 1.4: the costs say venomous
    a = decide(p, taxa, t, venom_weight=1.0)
    assert (a.rank[0], a.name[0], a.source[0], a.venom_status[0]) == ("", "unknown snake", "venom_rule", "unknown")
    # a fixed rank asks for a name: the venom-aware species' taxon at that rank
    fixed = decide(p, taxa, t, venom_weight=1.0, rank="genus")
    assert (fixed.rank[0], fixed.name[0], fixed.source[0]) == ("genus", "Crotalus", "venom_rule")
    # with less venomous mass (0.2 * 5 = 1.0 < 0.8 * 2) the harmless species stands
    safe = decide(row(Nerodia_sipedon=0.8, Crotalus_atrox=0.2), taxa, t, venom_weight=1.0)
    assert (safe.name[0], safe.source[0], safe.venom_status[0]) == ("Nerodia sipedon", "classifier", "harmless")
    # the thresholds' own venom weight replaces the head's: 0.2 * 5 * 2 = 2.0 > 1.6
    heavier = Thresholds(species=0.6, genus=0.7, family=0.6, venom_weight=2.0)
    assert decide(row(Nerodia_sipedon=0.8, Crotalus_atrox=0.2), taxa, heavier, venom_weight=1.0).source[0] == "venom_rule"


def test_fixed_rank_and_no_thresholds(taxa):
    p = row(Nerodia_sipedon=0.3, Nerodia_fasciata=0.25, Pantherophis_guttatus=0.45)
    assert decide(p, taxa, None).name[0] == "Pantherophis guttatus"  # no thresholds: the species argmax
    assert decide(p, taxa, Thresholds(0.99, 0.99, 0.99), rank="genus").name[0] == "Nerodia"  # 0.55 > 0.45
    assert decide(p, taxa, None, rank="family").name[0] == "Colubridae"
    with pytest.raises(SnakewebError, match="rank"):
        decide(p, taxa, None, rank="order")
    with pytest.raises(SnakewebError, match="range mode"):
        decide(p, taxa, None, range_mode="fence")


def test_range_filter_removes_species_recorded_absent_and_flags_out_of_range(taxa):
    t = Thresholds(species=0.5, genus=0.5, family=0.5)
    p = row(Crotalus_atrox=0.6, Crotalus_viridis=0.1, Nerodia_sipedon=0.3)
    # Crotalus atrox recorded as not present; Nerodia sipedon present; the rest no record
    records = np.array([[-1, 0, -1, 1, -1, -1]])
    filtered = decide(p, taxa, t, range_mode="filter", records=records, venom_rule=False)
    # atrox may not be named; viridis (0.1) and sipedon (0.3) may, with the photo's own probabilities (renormalised,
    # sipedon became 0.75 and a rattlesnake photo a water snake); genus Crotalus may be named (viridis) and keeps
    # the photo's 0.7 for it: the answer rolls up to the nearest rank that may be named
    assert (filtered.name[0], filtered.source[0]) == ("Crotalus", "range_filter")
    assert filtered.score[0] == pytest.approx(0.7) and filtered.out_of_range == [True]
    assert filtered.probabilities[0].tolist() == pytest.approx([0, 0, 0.1, 0.3, 0, 0])
    assert filtered.unconstrained_top[0] == ORDER.index(405)
    unfiltered = decide(p, taxa, t, range_mode="prior", records=records, venom_rule=False)
    assert (unfiltered.name[0], unfiltered.source[0], unfiltered.out_of_range) == ("Crotalus atrox", "classifier", [True])
    # a species the table knows nothing about is never flagged
    unknown = decide(p, taxa, t, records=np.full((1, 6), -1), venom_rule=False)
    assert unknown.out_of_range == [None]
    # a filter that would remove every species leaves the row as it is
    everything = decide(p, taxa, t, range_mode="filter", records=np.zeros((1, 6), int), venom_rule=False)
    assert (everything.name[0], everything.source[0]) == ("Crotalus atrox", "classifier")


def test_the_venom_aware_call_and_venom_shares_see_past_the_range_step(taxa):
    # both rattlesnakes recorded as not present: the filter leaves only harmless species
    p = row(Crotalus_atrox=0.7, Nerodia_sipedon=0.3)
    records = np.array([[-1, 0, 0, 1, -1, -1]])
    a = decide(p, taxa, Thresholds(0.5, 0.5, 0.5), range_mode="filter", records=records)
    # the venom-aware call was Nerodia sipedon (harmless, 100% after the filter) beside p_venomous 0.7; nothing may
    # be named (Nerodia sipedon has 0.3 of the photo's probability, and no Crotalus may be named)
    assert a.venom_aware[0] == ORDER.index(405) and a.venom_aware_score[0] == pytest.approx(0.7)
    assert a.p_venomous[0] == pytest.approx(0.7) and (a.rank[0], a.source[0]) == ("", "abstain")
    # a fixed rank: the venom-aware species may not be named where the filter removed it (it was, at 0%)...
    fixed = decide(p, taxa, None, rank="species", range_mode="filter", records=records)
    assert (fixed.name[0], fixed.source[0]) == ("unknown snake", "venom_rule") and fixed.p_venomous[0] == pytest.approx(0.7)
    # ... and where a prior all but removed it, it is named with its probability before the prior
    down = decide(p, taxa, None, rank="species", range_weights=np.array([[1, 0.02, 0.02, 1, 1, 1]]))
    assert (down.name[0], down.source[0]) == ("Crotalus atrox", "venom_rule") and down.score[0] == pytest.approx(0.7)
    # venomous 0.7 before a prior that all but removes the rattlesnakes, unknown 0.2 / 0.314 = 0.64 after it: each
    # the larger, the pair was 134%
    weights = np.array([[1, 0.02, 0.02, 1, 1, 1]])
    shares = decide(row(Crotalus_atrox=0.7, Nerodia_sipedon=0.1, class_54=0.2), taxa, None, range_weights=weights)
    assert shares.p_venomous[0] == pytest.approx(0.7) and shares.p_unknown_venom[0] == pytest.approx(0.3)
    assert shares.venom_aware[0] == ORDER.index(54)  # of unknown venom status: possibly venomous, after the filter
    # without a range step the call is the cost-aware species of the probabilities themselves
    plain = decide(row(Nerodia_sipedon=0.9, Pantherophis_guttatus=0.1), taxa, None)
    assert plain.venom_aware[0] == ORDER.index(1137) and plain.venom_aware_score[0] == pytest.approx(0.9)


def test_the_filter_never_makes_a_photo_surer_of_what_may_be_named(taxa):
    # only the garter-snake-like Nerodia fasciata is recorded; the photo gives it 2%: it was named at 100%, harmless
    p = row(Crotalus_atrox=0.15, Nerodia_sipedon=0.83, Nerodia_fasciata=0.02)
    records = np.array([[-1, 0, 0, 0, 1, 0]])
    a = decide(p, taxa, Thresholds(0.5, 0.5, 0.5), range_mode="filter", records=records)
    assert a.probabilities[0, ORDER.index(1140)] == pytest.approx(0.02) and a.name[0] != "Nerodia fasciata"
    # genus Nerodia may be named (fasciata is recorded) with the photo's 0.85 for it
    assert (a.name[0], a.score[0]) == ("Nerodia", pytest.approx(0.85)) and a.p_venomous[0] == pytest.approx(0.15)


def test_a_fixed_rank_gives_the_venom_aware_species_taxon_over_a_harmless_or_mixed_one(taxa):
    p = row(Crotalus_atrox=0.45, Nerodia_sipedon=0.55)  # Colubridae argmax; the costs say treat it as a viper
    a = decide(p, taxa, None, rank="family")
    assert (a.name[0], a.source[0], a.score[0]) == ("Viperidae", "venom_rule", pytest.approx(0.45))
    # a family of mixed venom status in the store's table (a venomous colubrid the head does not know) is no safer
    # to name: every colubrid the head knows is harmless (--rank family named Colubridae for a viper photo)
    boomslang = pd.DataFrame({"class_id": [502], "binomial_name": ["Dispholidus typus"], "genus": ["Dispholidus"],
                              "family": ["Colubridae"], "venom_status": ["venomous"]})
    mixed = Taxa.from_species(pd.concat([SPECIES, boomslang]), ORDER)
    assert mixed.status_of_taxa("family").tolist() == ["unknown", "venomous"]
    assert (decide(p, mixed, None, rank="family").name[0], decide(p, mixed, None, rank="family").source[0]) == ("Viperidae", "venom_rule")
    # where the range filter removed every viper, no family is named (Viperidae was, in a country with none)
    records = np.array([[-1, 0, 0, 1, -1, -1]])
    filtered = decide(p, taxa, None, rank="family", range_mode="filter", records=records)
    assert (filtered.name[0], filtered.source[0]) == ("unknown snake", "venom_rule") and filtered.p_venomous[0] == pytest.approx(0.45)
    # a taxon holding a venomous class the head knows is kept, whatever its status in the table (Agkistrodon is
    # "mixed" in SnakeCLEF's: it was swapped for a less likely Crotalus)
    venomous_fasciata = Taxa.from_species(SPECIES.assign(venom_status=SPECIES["venom_status"].where(SPECIES["class_id"] != 1140,
                                                                                                   "venomous")), ORDER)
    assert venomous_fasciata.status_of_taxa("genus").tolist()[1] == "unknown"  # Nerodia: mixed
    photo = row(Nerodia_sipedon=0.5, Nerodia_fasciata=0.05, Crotalus_atrox=0.45)
    assert decide(photo, taxa, None, rank="genus").name[0] == "Crotalus"  # (Nerodia all harmless: replaced)
    kept = decide(photo, venomous_fasciata, None, rank="genus")
    assert (kept.name[0], kept.source[0]) == ("Nerodia", "classifier")


def test_prior_weights_change_the_answer(taxa):
    p = row(Crotalus_atrox=0.6, Nerodia_sipedon=0.4)
    weights = np.array([[1, 0.02, 1, 1, 1, 1]])  # Crotalus atrox down-weighted
    a = decide(p, taxa, Thresholds(0.5, 0.5, 0.5), range_weights=weights, venom_rule=False)
    assert a.name[0] == "Nerodia sipedon" and a.score[0] == pytest.approx(0.4 / (0.4 + 0.012))


def test_choose_thresholds_prefers_genus_where_species_would_be_wrong(taxa):
    # 20 observations: 10 confident and right at species; 10 where the genus (Nerodia) is sure but the species a
    # coin toss (and wrong): answering those at species would fall to 50% correct, at genus they are all right
    right = [row(Crotalus_atrox=0.9, Crotalus_viridis=0.1)] * 10
    unsure = [row(Nerodia_sipedon=0.48, Nerodia_fasciata=0.47, Pantherophis_guttatus=0.05)] * 10
    probabilities = np.vstack(right + unsure)
    truth = np.array([ORDER.index(405)] * 10 + [ORDER.index(1140)] * 10)
    t = choose_thresholds(probabilities, truth, taxa, target=0.9)
    assert t.species == pytest.approx(0.9) and t.genus == pytest.approx(0.95)
    a = decide(probabilities, taxa, t, venom_rule=False)
    assert a.rank.tolist() == ["species"] * 10 + ["genus"] * 10 and correct_at_rank(a, truth, taxa).all()
    assert t.chosen_on["species"] == {"answered": 10, "precision": 1.0} and t.chosen_on["genus"]["answered"] == 10


def test_choose_thresholds_gives_none_when_no_rank_reaches_the_target(taxa):
    probabilities = np.vstack([row(Crotalus_atrox=0.5, Nerodia_sipedon=0.5)] * 20)
    truth = np.array([ORDER.index(405), ORDER.index(1137)] * 10)
    t = choose_thresholds(probabilities, truth, taxa, target=0.9)
    assert (t.species, t.genus, t.family) == (None, None, None)
    assert set(decide(probabilities, taxa, t, venom_rule=False).source) == {"abstain"}
    assert Thresholds.from_json(t.to_json()) == t


def test_answer_venom_weight_is_raised_until_validation_calls_no_venomous_snake_harmless(taxa):
    # four rattlesnakes the head thinks are 80% a water snake: at weight 1 they are answered "Nerodia sipedon" (harmless)
    probabilities = np.vstack([row(Nerodia_sipedon=0.8, Crotalus_atrox=0.2)] * 4 + [row(Crotalus_atrox=0.9, Crotalus_viridis=0.1)] * 4)
    truth = np.array([ORDER.index(405)] * 8)
    t = Thresholds(species=0.6, genus=0.6, family=0.6)
    assert called_harmless_rate(decide(probabilities, taxa, t, 1.0), truth, taxa) == 0.5
    chosen = choose_answer_venom_weight(probabilities, truth, taxa, t, start=1.0, max_rate=0.0)
    assert chosen.venom_weight == 2.0  # calling it harmless costs 0.2 * 5 * w, venomous 0.8 * 2: w must pass 1.6
    assert called_harmless_rate(decide(probabilities, taxa, chosen), truth, taxa) == 0.0
    assert chosen.chosen_on["venom_weight"]["called_harmless_by_weight"] == {"1": 0.5, "1.5": 0.5, "2": 0.0}


def test_the_range_step_never_makes_a_snake_look_safer(taxa):
    """A rattlesnake photographed where the table records no rattlesnake (an escaped pet): a water snake may be named,
    but p(venomous) stays the photo's and no harmless name is given."""
    p = row(Crotalus_atrox=0.45, Nerodia_sipedon=0.55)
    records = np.array([[-1, 0, 0, 1, -1, -1]])  # both rattlesnakes recorded as not present
    a = decide(p, taxa, Thresholds(0.5, 0.5, 0.5), venom_weight=1.0, range_mode="filter", records=records)
    assert a.p_venomous[0] == pytest.approx(0.45) and a.probabilities[0, ORDER.index(1137)] == pytest.approx(0.55)
    # (the top species, the water snake, is recorded there: not out of range)
    assert (a.name[0], a.source[0], a.venom_status[0], a.out_of_range) == ("unknown snake", "venom_rule", "unknown", [False])
    weights = np.array([[1, 0.02, 0.02, 1, 1, 1]])
    prior = decide(p, taxa, Thresholds(0.5, 0.5, 0.5), venom_weight=1.0, range_weights=weights, records=records)
    assert prior.p_venomous[0] == pytest.approx(0.45) and prior.source[0] == "venom_rule"
    p = row(Crotalus_atrox=0.6, Nerodia_sipedon=0.4)
    # without the venom rule the changed answer is reported as the range step's
    assert decide(p, taxa, Thresholds(0.5, 0.5, 0.5), range_weights=weights, venom_rule=False).source[0] == "range_filter"


def test_a_family_is_harmless_only_if_every_species_of_it_in_the_store_is():
    """The head knows only harmless colubrids, but the store's table has a venomous one (the boomslang): a
    photo rolled up to Colubridae must not be called harmless."""
    species = pd.concat([SPECIES, pd.DataFrame({"class_id": [502], "binomial_name": ["Dispholidus typus"], "genus": ["Dispholidus"],
                                                "family": ["Colubridae"], "venom_status": ["venomous"]})])
    taxa = Taxa.from_species(species, ORDER)  # 502 is not in the head
    assert taxa.status_of_taxa("family").tolist() == ["unknown", "venomous"]
    assert taxa.status_of_taxa("genus").tolist() == ["venomous", "harmless", "harmless"]
    a = decide(row(Nerodia_sipedon=0.3, Nerodia_fasciata=0.2, Pantherophis_guttatus=0.45, Crotalus_atrox=0.05), taxa,
               Thresholds(0.9, 0.9, 0.6), venom_rule=False)
    assert (a.name[0], a.venom_status[0]) == ("Colubridae", "unknown")


def test_the_all_clear_needs_a_harmless_answer_the_classifier_gave_with_confidence():
    """venom_level: green ("harmless") only for a named harmless answer of the classifier's, at a confidence its
    rank's threshold accepts, in range, like the store's snakes, and in a country the store knows."""
    from snakeweb.identification import Identification, venom_level

    decision = {"rank": "auto", "thresholds": {"species": 0.8, "genus": 0.6, "family": 0.7}}
    clear = Identification(prediction="Nerodia sipedon", prediction_rank="species", prediction_score=0.9,
                           prediction_source="classifier", venom_status="harmless", p_venomous=0.02, out_of_range=False,
                           provenance={"decision": decision})
    assert venom_level(clear) == "harmless"
    from dataclasses import replace

    assert venom_level(replace(clear, p_venomous=0.12)) == "caution"
    assert venom_level(replace(clear, p_venomous=0.3, p_unknown_venom=0.25)) == "danger"
    assert venom_level(replace(clear, prediction_source="range_filter")) == "unknown"  # the country check made it
    assert venom_level(replace(clear, out_of_range=True)) == "unknown"
    assert venom_level(replace(clear, out_of_store=True)) == "unknown"
    assert venom_level(replace(clear, country="AU", country_prior_applied=False)) == "unknown"
    forced = {"rank": "species", "thresholds": decision["thresholds"]}
    assert venom_level(replace(clear, prediction_score=0.27, provenance={"decision": forced})) == "unknown"
    assert venom_level(replace(clear, provenance={"decision": forced})) == "harmless"  # 0.9 >= 0.8
    assert venom_level(replace(clear, venom_status="unknown")) == "unknown"
    # a store that cannot tell whether the photo is like its snakes, or validation too small to choose thresholds:
    # no all-clear (a cottonmouth, a species the store lacked, was answered grass snake under a green banner)
    assert venom_level(replace(clear, out_of_store=None)) == "unknown"
    assert venom_level(replace(clear, provenance={"decision": {"rank": "auto", "thresholds": None}})) == "unknown"
    assert venom_level(replace(clear, provenance={})) == "unknown"


def test_no_all_clear_says_why_and_never_calls_a_known_status_unknown(capsys):
    """The tester's case: Pantherophis guttatus (harmless, status known) at 2% venomous on a store too small to tell
    whether the photo is like its snakes: no all-clear (right), but the words were "VENOM STATUS UNKNOWN"."""
    from dataclasses import replace

    from pipelines.reports import print_identification
    from snakeweb.identification import Identification, no_all_clear_reason, venom_headline, venom_level

    decision = {"rank": "auto", "thresholds": {"species": 0.8, "genus": 0.6, "family": 0.7}}
    clear = Identification(prediction="Pantherophis guttatus", prediction_rank="species", prediction_score=0.9,
                           prediction_source="classifier", venom_status="harmless", p_venomous=0.02, out_of_range=False,
                           out_of_store=False, provenance={"decision": decision}, inputs=["corn.jpg"])
    assert no_all_clear_reason(clear) == "" and venom_level(clear) == "harmless"
    cases = {
        "the store cannot tell whether the photo is like its snakes": replace(clear, out_of_store=None),
        "the photo is unlike every snake in this store": replace(clear, out_of_store=True),
        "the top species is not recorded in this country": replace(clear, out_of_range=True),
        "the answer was made by the country check": replace(clear, prediction_source="range_filter"),
        "records none of this store's snakes in AU": replace(clear, country="AU", country_prior_applied=False),
        "is below the 80% validation needs at species rank": replace(clear, prediction_score=0.5),
        "validation was too small to choose the confidence": replace(clear, provenance={}),
        "the answer's venom status is unknown": replace(clear, venom_status="unknown"),
    }
    for words, result in cases.items():
        assert venom_level(result) == "unknown" and words in no_all_clear_reason(result), (words, no_all_clear_reason(result))
        if result.venom_status == "harmless":
            assert "venom status" not in no_all_clear_reason(result)
    shown = replace(clear, out_of_store=None, headline=venom_headline(0.02, 0.0))
    shown.venom_level = venom_level(shown)
    print_identification(shown)
    out = capsys.readouterr().out
    assert "VENOM STATUS UNKNOWN" not in out
    assert ("  NO ALL-CLEAR: Venomous: 2% likely; the store cannot tell whether the photo is like its snakes (too few validation "
            "photos to calibrate that check), so treat it as possibly venomous") in out
    assert "harmless]" in out  # the answer's own status, known, beside it
