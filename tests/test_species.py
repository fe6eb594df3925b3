import pandas as pd
import pytest

from snakeweb.errors import SnakewebError
from snakeweb.species import LabelMap, normalise_name, read_species_table, species_for_names
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


def test_folder_names_get_table_ids_and_unknown_names_new_ids_above_the_table(caplog):
    table = pd.DataFrame({"class_id": [5, 900], "binomial_name": ["Natrix natrix", "Vipera berus"],
                          "genus": ["Natrix", "Vipera"], "venomous": [False, True]})
    rows = species_for_names(["natrix_natrix", "Vipera berus", "Zzz unknown", "Aaa unknown"], table).set_index("binomial_name")
    assert rows.loc["Natrix natrix", "class_id"] == 5
    assert bool(rows.loc["Vipera berus", "venomous"]) is True
    assert rows.loc["Aaa unknown", "class_id"] == 901 and rows.loc["Zzz unknown", "class_id"] == 902
    assert "not in the species table" in caplog.text


def test_ids_without_table_are_deterministic():
    first = species_for_names(["b_b", "a a", "c"], None)
    second = species_for_names(["c", "a a", "b_b"], None)
    assert first.equals(second) and first["class_id"].tolist() == [0, 1, 2]


def test_real_class_list_and_venomous_list_merge():
    table = read_species_table([shared("snakeclef", "class_list.csv"), shared("snakeclef", "venomous_status_list.csv")])
    assert len(table) == 1784 and table["class_id"].is_unique
    assert int(table["venomous"].sum()) == 285
    assert table.set_index("class_id").loc[0, "binomial_name"] == "Acanthophis antarcticus"
    unnamed = table[table["binomial_name"].str.startswith("class ")]
    assert len(unnamed) == 19


def test_species_table_without_class_id_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("name,MIVS\nx,1\n")
    with pytest.raises(SnakewebError, match="no class_id column"):
        read_species_table([bad])
