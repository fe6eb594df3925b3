import pandas as pd
import pytest

from snakeweb.errors import SnakewebError
from snakeweb.label_map import LabelMap
from snakeweb.species import normalise_name, read_species_table, taxon_key
from snakeweb.taxon_match import match_taxa
from tests.conftest import shared


def test_label_map_round_trip_with_non_contiguous_ids():
    ids = [1740, 7, 1130, 7, 55]
    label_map = LabelMap.from_labels(ids)
    assert label_map.class_ids == (7, 55, 1130, 1740)
    indices = label_map.to_indices(ids)
    assert indices.tolist() == [3, 0, 2, 0, 1]
    assert label_map.to_class_ids(indices).tolist() == ids
    assert LabelMap.from_json(label_map.to_json()) == label_map


def test_label_map_refuses_unknown_class_id():
    label_map = LabelMap.from_labels([7, 1130])
    with pytest.raises(KeyError, match="500"):
        label_map.to_indices([7, 500])


def test_normalise_name():
    assert normalise_name("natrix_natrix ") == "Natrix natrix"
    assert normalise_name("Crotalus  ATROX") == "Crotalus atrox"
    assert normalise_name("crotalus-atrox (Western diamondback)") == "Crotalus atrox"


@pytest.mark.parametrize("name", ["Crotalus atrox", "crotalus_atrox", "CROTALUS-ATROX", " Crotalus   atrox ",
                                  "Crotalus atrox (Western Diamondback Rattlesnake)", "crotalus_atrox_(western_diamondback)"])
def test_taxon_keys_ignore_case_separators_and_a_trailing_common_name(name):
    assert taxon_key(name) == "crotalus atrox"


TABLE = pd.DataFrame({"class_id": [5, 900], "binomial_name": ["Natrix natrix", "Vipera berus"],
                      "genus": ["Natrix", "Vipera"], "venom_status": ["harmless", "venomous"]})


def test_folder_names_get_table_ids_and_unknown_names_new_ids_with_unknown_venom_status(caplog):
    matched = match_taxa(["natrix_natrix", "Vipera berus", "Zzz unknown", "Aaa unknown"], TABLE)
    rows = matched.species.set_index("binomial_name")
    assert matched.classes["natrix_natrix"] == 5 and matched.classes["Vipera berus"] == 900
    assert rows.loc["Vipera berus", "venom_status"] == "venomous" and rows.loc["Natrix natrix", "venom_status"] == "harmless"
    assert rows.loc["Aaa unknown", "class_id"] == 901 and rows.loc["Zzz unknown", "class_id"] == 902
    # a name no table knows is never harmless
    assert rows.loc["Aaa unknown", "venom_status"] == rows.loc["Zzz unknown", "venom_status"] == "unknown"
    assert matched.unmatched == ["Aaa unknown", "Zzz unknown"]
    assert "venom status unknown" in caplog.text


def test_a_subspecies_maps_to_its_species_and_is_kept():
    matched = match_taxa(["Vipera berus bosniensis", "vipera_berus", "Natrix natrix helvetica (barred grass snake)"], TABLE)
    assert matched.classes == {"Vipera berus bosniensis": 900, "vipera_berus": 900, "Natrix natrix helvetica (barred grass snake)": 5}
    assert matched.subspecies == {"Vipera berus bosniensis": "Vipera berus bosniensis",
                                  "Natrix natrix helvetica (barred grass snake)": "Natrix natrix helvetica"}
    # without a table the subspecies still joins its species' class (one class per species)
    alone = match_taxa(["Vipera berus bosniensis", "Vipera berus"], None)
    assert alone.classes["Vipera berus bosniensis"] == alone.classes["Vipera berus"]
    assert alone.species["venom_status"].tolist() == ["unknown"]


@pytest.mark.parametrize("folder, species_class, raised_class", [
    ("Macrovipera lebetinus schweizeri", 998, 999),  # SnakeCLEF: M. lebetinus MIVS 0, M. schweizeri MIVS 1
    ("Natrix natrix helvetica", 1137, 1135),
    ("Agkistrodon contortrix laticinctus", 29, 31),
])
def test_a_subspecies_whose_epithet_the_table_has_as_a_species_is_refused(folder, species_class, raised_class):
    """Such a folder went, with exit 0 and no note, to the binomial's class: a viper the table calls venomous under
    its raised name was stored harmless. Which one is meant decides the class and the venom flag: a sentence."""
    table = read_species_table([shared("snakeclef", "class_list.csv")])
    with pytest.raises(SnakewebError) as error:
        match_taxa([folder, "Crotalus atrox"], table)
    said = str(error.value)
    assert f"The name {folder!r} could be read as a subspecies of" in said and f"(class {species_class})" in said
    assert f"(class {raised_class})" in said and "rename it to the binomial you mean" in said
    # the trinomial of a species whose epithet is no species of its genus still goes to its species, kept
    matched = match_taxa(["Crotalus atrox atrox"], table)
    assert matched.classes == {"Crotalus atrox atrox": 405} and matched.subspecies == {"Crotalus atrox atrox": "Crotalus atrox atrox"}


def test_a_whole_number_folder_name_is_a_class_id_of_the_table():
    assert match_taxa(["900", "Natrix natrix"], TABLE).classes == {"900": 900, "Natrix natrix": 5}


def test_a_table_that_matches_none_of_the_folders_is_refused():
    with pytest.raises(SnakewebError, match="None of the 2 species name"):
        match_taxa(["Crotalus atrox", "Naja naja"], TABLE)


def test_ids_without_table_are_deterministic():
    first = match_taxa(["b_b", "a a", "c"], None).species
    second = match_taxa(["c", "a a", "b_b"], None).species
    assert first.equals(second) and first["class_id"].tolist() == [0, 1, 2]


def test_real_class_list_and_venomous_list_merge():
    table = read_species_table([shared("snakeclef", "class_list.csv"), shared("snakeclef", "venomous_status_list.csv")])
    assert len(table) == 1784 and table["class_id"].is_unique
    assert int((table["venom_status"] == "venomous").sum()) == 285 and int((table["venom_status"] == "harmless").sum()) == 1499
    assert table.set_index("class_id").loc[0, "binomial_name"] == "Acanthophis antarcticus"
    unnamed = table[table["binomial_name"].str.startswith("class ")]
    assert len(unnamed) == 19


def test_species_table_without_class_id_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("label,MIVS\nx,1\n")
    with pytest.raises(SnakewebError, match="neither a class_id nor a binomial_name column"):
        read_species_table([bad])
