"""What counts as a taxon name: its first word a genus (or family) in Latin letters, and nothing Python's float() reads
as a number. 'NaN' was stored as species 'Nan', 'inf' as 'Inf', '١٢' as a species, '12 13' with genus '12'; every name
of the real tables is still read."""

import os

import pytest

from pipelines.cli import main
from snakeweb.errors import SnakewebError
from snakeweb.species import read_species_table
from snakeweb.tables import is_taxon_name, read_table
from tests.conftest import make_photo, shared

NOT_NAMES = ["NaN", "nan", "inf", "-inf", "Infinity", "١٢", "12 13", "1_000", "0x1F", "1/2", "12", "3,0"]
NAMES = ["Vipera berus", "Natrix_natrix", "Guinean Egg Eater", "Colubridae", "Hierophis (Dolichophis) caspius",
         "Crotalus atrox Baird & Girard, 1853", "Bothrops jararaca-like", "× Genus hybrid", "Nanus minor"]


@pytest.mark.parametrize("cell", NOT_NAMES)
def test_a_species_table_refuses_what_is_no_taxon_name(tmp_path, cell):
    path = tmp_path / "species.csv"
    path.write_text(f"class_id,binomial_name,MIVS\n405,Crotalus atrox,1\n406,{cell if ',' not in cell else repr(cell)},0\n"
                    .replace("'", '"'))
    with pytest.raises(SnakewebError) as error:
        read_species_table([path])
    message = str(error.value)
    assert f"The species table {path}: its 'binomial_name' column holds 1 " in message and "line 3: " in message
    assert "class_id column" in message and "\n" not in message
    assert is_taxon_name(cell) is False


@pytest.mark.parametrize("cell", NOT_NAMES[:6])
def test_a_genus_column_refuses_them_too(tmp_path, cell):
    path = tmp_path / "species.csv"
    path.write_text(f"class_id,binomial_name,genus\n405,Crotalus atrox,{cell}\n")
    with pytest.raises(SnakewebError, match=r"'genus' column holds 1 "):
        read_species_table([path])


@pytest.mark.parametrize("name", NAMES)
def test_real_name_forms_are_read(tmp_path, name):
    path = tmp_path / "species.csv"
    path.write_text(f'class_id,binomial_name,MIVS\n405,"{name}",1\n')
    assert len(read_species_table([path])) == 1 and is_taxon_name(name)


@pytest.mark.parametrize("folder", ["NaN", "inf", "١٢", "1_000", "0x1F"])
def test_a_folder_named_by_no_taxon_and_no_class_id_is_refused(tmp_path, capsys, folder):
    root = tmp_path / "photos"
    make_photo(root / "Natrix natrix" / "a.jpg", (40, 160, 60), seed=1)
    make_photo(root / folder / "b.jpg", (90, 90, 40), seed=2)
    assert main(["ingest", "--store", str(tmp_path / "s"), "--images", str(root)]) == 2
    err = capsys.readouterr().err
    assert f"Folder {folder} is named neither by a class id nor by a taxon name" in err and "Traceback" not in err
    if (tmp_path / "s" / "snakeweb.duckdb").exists():  # refused before any species was stored
        from snakeweb.store import Store

        assert Store(tmp_path / "s").query("SELECT count(*) AS n FROM species")["n"][0] == 0


def test_every_name_of_the_real_tables_is_read():
    from snakeweb.decisions import CountryPrior
    from snakeweb.taxon_match import match_taxa
    from snakeweb.taxonomy import Taxonomy

    classes = shared("snakeclef", "class_list.csv")
    species = read_species_table([classes, shared("snakeclef", "venomous_status_list.csv")])
    assert len(species) == 1784 and len(read_species_table([classes])) == 1784
    for name in ("SnakeCLEF2023-TrainMetadata-HM.csv", "SnakeCLEF2023-ValMetadata.csv"):
        table = read_table(shared("snakeclef", name), "metadata")
        assert table.taxon_names("binomial_name").notna().all()
    Taxonomy.from_csv(shared("taxonomy", "serpentes.csv"))
    CountryPrior.from_csv(shared("snakeclef", "Species_Relevance.csv"))
    folders = os.listdir(shared("hackerearth-35"))
    assert len(folders) == 35 and len(match_taxa(folders, species).classes) == 35
