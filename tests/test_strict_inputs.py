"""No silent wrong answers: every table a user hands in is read strictly, and unknown is never harmless.

Each numbered example of the issue is a test here with the right value (the files are in ../shared/cases),
followed by more cases of the same kinds: headers, delimiters, encodings, flags, ids, countries, arguments.
"""

import codecs
import json
from pathlib import Path

import pandas as pd
import pytest

from pipelines.cli import main
from snakeweb.countries import CountryError, resolve_country
from snakeweb.decisions import CountryPrior, cost_aware_choice
from snakeweb.errors import SnakewebError
from snakeweb.species import possibly_venomous_mask, read_species_table
from snakeweb.store import Store
from snakeweb.tables import read_table
from tests.conftest import SHARED, make_photo, shared

CASES = SHARED.parent / "cases"


def case(*parts: str):
    path = CASES.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"case files not found at {path}")
    return path


def write(path, text: str, encoding: str = "utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


# 1. a species table whose header has a space after each comma ---------------------------------------------

def test_example_1_header_with_spaces_keeps_the_rattlesnake_venomous(tmp_path, capsys):
    store = Store(tmp_path / "store")
    code = main(["ingest", "--store", str(store.root), "--images", str(case("1-header-spaces", "photos")),
                 "--species", str(case("1-header-spaces", "species_spaces.csv"))])
    assert code == 0
    species = store.species().set_index("binomial_name")
    assert species.loc["Crotalus atrox", "class_id"] == 405 and species.loc["Crotalus atrox", "venom_status"] == "venomous"
    assert species.loc["Natrix natrix", "class_id"] == 1137 and species.loc["Natrix natrix", "venom_status"] == "harmless"
    assert len(species) == 2  # no fresh ids


SPECIES_ROWS = [(405, "Crotalus atrox", "venomous"), (1137, "Natrix natrix", "harmless"), (29, "Agkistrodon contortrix", "venomous")]


@pytest.mark.parametrize("header, delimiter, encoding, spelling", [
    ("class_id, binomial_name, MIVS", ",", "utf-8", {"venomous": "1", "harmless": "0"}),
    ("Class ID;Binomial Name;Venomous", ";", "utf-8-sig", {"venomous": "TRUE", "harmless": "FALSE"}),
    ("CLASS_ID\tSPECIES\tmivs", "\t", "utf-8", {"venomous": "yes", "harmless": "no"}),
    ("class-id;scientific name;is venomous", ";", "cp1252", {"venomous": "Y", "harmless": "n"}),
    ('"class_id","binomial_name","venom_status"', ",", "utf-16", {"venomous": "venomous", "harmless": "harmless"}),
    (" classid , name , MIVS ", ",", "utf-8", {"venomous": "1.0", "harmless": "0.0"}),
])
def test_species_tables_as_spreadsheets_save_them(tmp_path, header, delimiter, encoding, spelling):
    lines = [header] + [delimiter.join([str(i), n, spelling[v]]) for i, n, v in SPECIES_ROWS]
    table = read_species_table([write(tmp_path / "species.csv", "\r\n".join(lines) + "\r\n", encoding)]).set_index("class_id")
    assert table["venom_status"].to_dict() == {405: "venomous", 1137: "harmless", 29: "venomous"}
    assert table.loc[1137, "binomial_name"] == "Natrix natrix"


def test_excel_sep_line_and_windows_1252_names(tmp_path, caplog):
    text = "sep=;\nclass_id;binomial_name;MIVS\n7;Hydrophis Ã©legans;0\n8;Dendrelaphis caudolineolatus;1\n"
    path = write(tmp_path / "s.csv", text.replace("Ã©", "é"), "cp1252")
    table = read_species_table([path]).set_index("class_id")
    assert table.loc[7, "binomial_name"] == "Hydrophis élegans" and table.loc[8, "venom_status"] == "venomous"
    assert "Windows-1252" in caplog.text


@pytest.mark.parametrize("cell", ["maybe", "2", "mildly", "venomous?", "ja"])
def test_a_flag_snakeweb_cannot_read_is_refused_with_file_column_line_and_accepted_values(tmp_path, cell, capsys):
    path = write(tmp_path / "species.csv", f"class_id,binomial_name,MIVS\n405,Crotalus atrox,{cell}\n1137,Natrix natrix,0\n")
    with pytest.raises(SnakewebError) as error:
        read_species_table([path])
    message = str(error.value)
    assert str(path) in message and "column venomous" in message and "line 2" in message and repr(cell) in message
    assert "1/0, true/false, yes/no" in message


@pytest.mark.parametrize("cell", ["", "NA", "unknown", "?"])
def test_an_empty_or_unknown_flag_is_unknown_never_harmless(tmp_path, cell):
    path = write(tmp_path / "species.csv", f"class_id,binomial_name,MIVS\n405,Crotalus atrox,{cell}\n1137,Natrix natrix,0\n")
    assert read_species_table([path]).set_index("class_id")["venom_status"].to_dict() == {405: "unknown", 1137: "harmless"}


def test_a_table_without_a_venom_column_gives_unknown_status(tmp_path):
    path = write(tmp_path / "names.csv", "class_id,binomial_name\n405,Crotalus atrox\n")
    assert read_species_table([path])["venom_status"].tolist() == ["unknown"]


@pytest.mark.parametrize("cell, words", [("405.5", "not whole numbers"), ("abc", "not whole numbers"), ("", "have no class_id"),
                                         ("4e2", "not whole numbers"), ("10000000000000000000000000", "too many digits to be class ids"),
                                         ("-9223372036854775809", "too many digits to be class ids")])
def test_class_ids_that_are_not_whole_numbers_are_refused_never_cast(tmp_path, cell, words):
    path = write(tmp_path / "species.csv", f"class_id,binomial_name,MIVS\n{cell},Crotalus atrox,1\n1137,Natrix natrix,0\n")
    with pytest.raises(SnakewebError, match=words):
        read_species_table([path])


def test_a_class_id_past_int64_in_any_of_the_three_files_is_a_sentence_and_exit_2(tmp_path, capsys):
    # it was an OverflowError traceback (exit 1) from score, whichever of the three files held it
    huge = "10000000000000000000000000"
    files = {"truth": "observation_id,class_id\n1,405\n2,1137\n", "submission": "observation_id,class_id\n1,405\n2,1137\n",
             "venomous": "class_id,MIVS\n405,1\n1137,0\n"}
    for spoiled in files:
        paths = {name: write(tmp_path / f"{name}.csv", text.replace("1137", huge) if name == spoiled else text)
                 for name, text in files.items()}
        assert main(["score", "--metadata", str(paths["truth"]), "--predictions", str(paths["submission"]),
                     "--venomous", str(paths["venomous"])]) == 2, spoiled
        assert "too many digits to be class ids" in capsys.readouterr().err


def test_two_tables_that_disagree_about_a_venom_flag_are_refused(tmp_path):
    names = write(tmp_path / "names.csv", "class_id,binomial_name,MIVS\n405,Crotalus atrox,1\n")
    flags = write(tmp_path / "flags.csv", "class_id,MIVS\n405,0\n")
    with pytest.raises(SnakewebError, match="disagree about class 405"):
        read_species_table([names, flags])


def test_two_headers_meaning_one_column_are_refused(tmp_path):
    path = write(tmp_path / "species.csv", "class_id,venomous,MIVS\n405,1,0\n")
    with pytest.raises(SnakewebError, match="all mean venomous"):
        read_species_table([path])


def test_a_species_table_matching_none_of_the_folders_is_refused_at_ingest(tmp_path, capsys):
    photos = tmp_path / "photos"
    make_photo(photos / "Crotalus atrox" / "a.jpg", (120, 80, 40), seed=1)
    table = write(tmp_path / "species.csv", "class_id,binomial_name,MIVS\n1,Naja naja,1\n2,Python regius,0\n")
    assert main(["ingest", "--store", str(tmp_path / "s"), "--images", str(photos), "--species", str(table)]) == 2
    err = capsys.readouterr().err
    assert "None of the 1 species name" in err and "Traceback" not in err
    assert not (tmp_path / "s" / "snakeweb.duckdb").exists()


def test_unmatched_folders_get_unknown_status_and_subspecies_are_kept_in_the_store(tmp_path):
    photos = tmp_path / "photos"
    for folder in ["crotalus_atrox (western diamondback)", "Natrix natrix helvetica", "Bothrops mystery"]:
        make_photo(photos / folder / "a.jpg", (120, 80, 40), seed=len(folder))
    table = write(tmp_path / "species.csv", "class_id,binomial_name,MIVS\n405,Crotalus atrox,1\n1137,Natrix natrix,0\n")
    store = Store(tmp_path / "s")
    assert main(["ingest", "--store", str(store.root), "--images", str(photos), "--species", str(table)]) == 0
    species = store.species().set_index("binomial_name")
    assert species["venom_status"].to_dict() == {"Crotalus atrox": "venomous", "Natrix natrix": "harmless", "Bothrops mystery": "unknown"}
    assert species.loc["Bothrops mystery", "class_id"] == 1138
    observations = store.query("SELECT class_id, subspecies FROM observations ORDER BY class_id")
    assert observations["subspecies"].tolist()[1] == "Natrix natrix helvetica"


# 2. ground truth with an empty class_id ----------------------------------------------------------------

def test_example_2_an_unlabelled_ground_truth_row_is_left_out_and_said_so(capsys):
    folder = case("2-truth-empty-class-id")
    code = main(["score", "--metadata", str(folder / "truth.csv"), "--predictions", str(folder / "submission.csv"),
                 "--venomous", str(folder / "venomous.csv"), "--json"])
    out = capsys.readouterr()
    assert code == 0
    scores = json.loads(out.out)
    assert scores["Accuracy"] == 100.0 and scores["PSC_total"] == [0, 0, 0, 0] and scores["Track2 Metric"] == 0
    assert "1 ground-truth observation(s) have no class_id" in out.err


@pytest.mark.parametrize("truth, submission, venomous, words", [
    ("observation_id,class_id\n1,405\n2,abc\n", "observation_id,class_id\n1,405\n2,405\n", "class_id,MIVS\n405,1\n", "not whole numbers"),
    ("observation_id,class_id\n1,405\n", "observation_id,class_id\n1,\n", "class_id,MIVS\n405,1\n", "have no class_id"),
    ("observation_id,class_id\n1,405\n", "observation_id,class_id\n1,405.7\n", "class_id,MIVS\n405,1\n", "not whole numbers"),
    ("observation_id,class_id\n1,405\n", "observation_id,class_id\n1,405\n", "class_id,MIVS\n405,maybe\n", "not a flag"),
    ("observation_id,class_id\n1,405\n", "observation_id,class_id\n1,405\n", "class_id,MIVS\n405,\n", "use 1 or 0"),
    ("observation_id,class_id\n1,\n", "observation_id,class_id\n1,405\n", "class_id,MIVS\n405,1\n", "nothing to score"),
])
def test_score_refuses_what_it_cannot_interpret(tmp_path, capsys, truth, submission, venomous, words):
    paths = [write(tmp_path / name, text) for name, text in
             (("truth.csv", truth), ("sub.csv", submission), ("venomous.csv", venomous))]
    assert main(["score", "--metadata", str(paths[0]), "--predictions", str(paths[1]), "--venomous", str(paths[2])]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err


def test_score_reads_semicolons_bom_and_excel_flags_and_names_unlisted_classes(tmp_path, capsys):
    truth = write(tmp_path / "truth.csv", "Observation ID;Class ID\n1;405\n2;NA\n3;7\n", "utf-8-sig")
    submission = write(tmp_path / "sub.csv", "observation_id,class_id\n1,405.0\n2,1\n3,7\n")
    venomous = write(tmp_path / "venomous.csv", "class_id\tMIVS\n405\tTRUE\n1\tFALSE\n")
    assert main(["score", "--metadata", str(truth), "--predictions", str(submission), "--venomous", str(venomous), "--json"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["Accuracy"] == 100.0
    assert "not in the venomous list (e.g. 7)" in out.err
    assert "if one is venomous, calling it harmless is not counted as a venom error" in out.err


# 3. countries: no fuzzy match ever picks one for the user ------------------------------------------------

@pytest.mark.parametrize("text, code", [
    ("NA", "NA"), ("na", "NA"), ("Namibia", "NA"), ("NAM", "NA"), ("Republic of Korea", "KR"), ("South Korea", "KR"),
    ("UK", "GB"), ("Great Britain", "GB"), ("United Kingdom", "GB"), ("USA", "US"), ("united states", "US"),
    ("Germany", "DE"), (" deu ", "DE"), ("Côte d'Ivoire", "CI"), ("Ivory Coast", "CI"), ("Czech Republic", "CZ"),
    ("Russia", "RU"), ("Kosovo", "XK"), ("XK", "XK"), ("Viet Nam", "VN"), ("St Lucia", "LC"), ("Türkiye", "TR"),
])
def test_countries_by_code_name_and_documented_alias(text, code):
    assert resolve_country(text) == code


@pytest.mark.parametrize("text, candidates", [
    ("ZZ", []), ("YU", ["RS", "ME"]), ("CS", ["RS", "CZ"]), ("AN", ["CW"]), ("EU", ["DE"]), ("Korea", ["KR", "KP"]),
    ("Congo", ["CG", "CD"]), ("Germny", ["DE"]), ("Atlantis", []), ("Yugoslavia", []), ("", []),
])
def test_reserved_withdrawn_ambiguous_and_unknown_countries_are_refused_with_candidates(text, candidates):
    with pytest.raises(CountryError) as error:
        resolve_country(text)
    assert all(c in str(error.value) for c in candidates)
    if text in ("ZZ", "YU"):  # what fuzzy matching used to pick
        assert "Italy" not in str(error.value) and "Uganda" not in str(error.value)


def test_the_real_species_x_country_table_matches_all_but_one_country_name():
    prior = CountryPrior.from_csv(shared("snakeclef", "Species_Relevance.csv"))
    assert prior.unmatched_countries == ["n cyprus"]  # Northern Cyprus has no ISO code
    assert {"NA", "KR", "KP", "XK", "CD", "CG", "CI", "GB", "RU"} <= set(prior.presence.columns)


def test_metadata_keeps_namibia_and_refuses_a_country_that_is_not_one(tmp_path, capsys):
    root = tmp_path / "images"
    for name in ["a.jpg", "b.jpg", "c.jpg"]:
        make_photo(root / name, (90, 90, 40), seed=len(name))
    metadata = write(tmp_path / "meta.csv", "observation_id,image_path,class_id,binomial_name,code\n"
                                            "1,a.jpg,405,Crotalus atrox,NA\n2,b.jpg,405,Crotalus atrox,unknown\n3,c.jpg,1137,Natrix natrix,\n")
    store = Store(tmp_path / "s")
    assert main(["ingest", "--store", str(store.root), "--metadata", str(metadata), "--image-root", str(root)]) == 0
    codes = store.query("SELECT observation_id, country_code FROM observations ORDER BY 1")["country_code"]
    assert codes.iloc[0] == "NA" and codes.iloc[1:].isna().all()
    bad = write(tmp_path / "bad.csv", "observation_id,image_path,class_id,code\n1,a.jpg,405,US\n2,b.jpg,405,ZZ\n3,c.jpg,405,YU\n")
    assert main(["ingest", "--store", str(tmp_path / "s2"), "--metadata", str(bad), "--image-root", str(root)]) == 2
    err = capsys.readouterr().err
    assert "2 row(s) have a country" in err and "line 3: 'ZZ'" in err and "line 4: 'YU'" in err


def test_metadata_names_without_class_ids_and_bad_ids_are_read_strictly(tmp_path, capsys):
    root = tmp_path / "images"
    for name in ["a.jpg", "b.jpg"]:
        make_photo(root / name, (90, 90, 40), seed=len(name))
    species = write(tmp_path / "species.csv", "class_id,binomial_name,MIVS\n405,Crotalus atrox,1\n")
    names_only = write(tmp_path / "names.csv", "Observation_ID;Image Path;Species\n1;a.jpg;crotalus_atrox\n2;b.jpg;Crotalus atrox\n")
    store = Store(tmp_path / "s")
    assert main(["ingest", "--store", str(store.root), "--metadata", str(names_only), "--image-root", str(root),
                 "--species", str(species)]) == 0
    assert store.query("SELECT class_id FROM observations")["class_id"].tolist() == [405, 405]
    bad = write(tmp_path / "bad.csv", "observation_id,image_path,class_id\n1,a.jpg,405\n2,b.jpg,cobra\n")
    assert main(["ingest", "--store", str(tmp_path / "s2"), "--metadata", str(bad), "--image-root", str(root)]) == 2
    assert "line 3: 'cobra'" in capsys.readouterr().err
    elsewhere = write(tmp_path / "elsewhere.csv", "observation_id,image_path\n1,x/a.jpg\n")
    assert main(["ingest", "--store", str(tmp_path / "s3"), "--metadata", str(elsewhere), "--image-root", str(root)]) == 2
    assert "check --image-root" in capsys.readouterr().err


def test_a_country_table_matching_none_of_the_store_species_is_refused_at_ingest(tmp_path, capsys):
    photos = tmp_path / "photos"
    make_photo(photos / "Crotalus atrox" / "a.jpg", (120, 80, 40), seed=1)
    table = write(tmp_path / "relevance.csv", ";germany;italy\nVipera aspis;0;1\n")
    assert main(["ingest", "--store", str(tmp_path / "s"), "--images", str(photos), "--country-table", str(table)]) == 2
    assert "None of the 1 species in this store is in the species x country table" in capsys.readouterr().err
    no_countries = write(tmp_path / "nocountry.csv", "species;alpha;beta\nCrotalus atrox;0;1\n")
    assert main(["ingest", "--store", str(tmp_path / "s"), "--images", str(photos), "--country-table", str(no_countries)]) == 2
    assert "none of its column headers is a country" in capsys.readouterr().err


def test_a_country_table_cell_that_is_not_a_flag_is_refused(tmp_path):
    table = write(tmp_path / "relevance.csv", ";germany;italy\nVipera aspis;0;maybe\n")
    with pytest.raises(SnakewebError, match="line 2: 'maybe'.*present/absent"):
        CountryPrior.from_csv(table)


# the reader itself ---------------------------------------------------------------------------------------

def test_iso_codes_and_other_strings_are_never_read_as_missing(tmp_path):
    path = write(tmp_path / "t.csv", "observation_id,code,note\n1,NA,None\n2,N/A,null\n")
    table = read_table(path, "metadata")
    assert table.frame["code"].tolist() == ["NA", "N/A"] and table.frame["note"].tolist() == ["None", "null"]


@pytest.mark.parametrize("raw, words", [
    (b"", "is empty"), (b"\n\n  \n", "is empty"), (b"\x00\x01\x02binary", "not a text table"),
    (b"a,b\n1,2,3\n", "3 cells on line 2"), ("a,b\n\x81\x8d,1\n".encode("latin-1"), "neither UTF-8 nor Windows-1252"),
])
def test_unreadable_tables_are_one_sentence(tmp_path, raw, words):
    path = tmp_path / "t.csv"
    path.write_bytes(raw)
    with pytest.raises(SnakewebError, match=words):
        read_table(path, "species table")


def test_utf16_excel_unicode_text_is_read(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes(codecs.BOM_UTF16_LE + "class_id\tbinomial_name\n405\tCrotalus atrox\n".encode("utf-16-le"))
    assert read_table(path, "species table").frame.to_dict("list") == {"class_id": ["405"], "binomial_name": ["Crotalus atrox"]}


# unknown venom status: never harmless in the decision --------------------------------------------------

def test_unknown_status_is_possibly_venomous_in_the_cost_rule():
    species = pd.DataFrame({"class_id": [1, 2, 3], "venom_status": ["harmless", "unknown", "venomous"]}).set_index("class_id")
    mask = possibly_venomous_mask(species, [1, 2, 3, 99])
    assert mask.tolist() == [False, True, True, True]  # 99 is in no table: unknown
    # harmless 0.55 vs unknown 0.45: the cost rule calls the unknown species, as it would a venomous one
    assert cost_aware_choice(pd.DataFrame([[0.55, 0.45, 0.0]]).to_numpy(), mask[:3]).tolist() == [1]


# the review export, read back ----------------------------------------------------------------------------

def reviewable_stores(tmp_path, count: int = 2) -> list[Store]:
    """`count` stores ingested from the same photos (Natrix natrix/0.jpg and 1.jpg, Crotalus atrox/0.jpg) and
    species table (Natrix natrix 1137 harmless, Crotalus atrox 405 venomous)."""
    photos = tmp_path / "photos"
    for i in range(2):
        make_photo(photos / "Natrix natrix" / f"{i}.jpg", (40, 160, 60), seed=i)
    make_photo(photos / "Crotalus atrox" / "0.jpg", (140, 100, 60), seed=3)
    species = write(tmp_path / "species.csv", "class_id,binomial_name,MIVS\n1137,Natrix natrix,0\n405,Crotalus atrox,1\n")
    stores = [Store(tmp_path / f"store{i}") for i in range(count)]
    for store in stores:
        assert main(["ingest", "--store", str(store.root), "--images", str(photos), "--species", str(species)]) == 0
    return stores


def exported_review(tmp_path, note: str) -> tuple[Store, Path]:
    """A second store and the Review-page export of the first, holding one review by ana: Natrix natrix/0.jpg is
    Crotalus atrox (405), with `note`."""
    from snakeweb.review import add_review, reviews

    source, target = reviewable_stores(tmp_path)
    add_review(source, "Natrix natrix/0.jpg", "ana", 405, note)
    exported = tmp_path / "reviews.csv"
    reviews(source).to_csv(exported, index=False)
    return target, exported


def test_a_review_export_round_trips_and_bad_rows_are_refused(tmp_path):
    from snakeweb.review import import_reviews, reviews

    target, exported = exported_review(tmp_path, "a rattlesnake, by the tail")
    assert import_reviews(target, exported) == {"added": 1, "already_present": 0, "untimed_already_present": 0}
    assert import_reviews(target, exported) == {"added": 0, "already_present": 1, "untimed_already_present": 0}
    back = reviews(target).iloc[0]
    assert (back["reviewer"], back["new_class_id"], back["note"]) == ("ana", 405, "a rattlesnake, by the tail")
    wrong = write(tmp_path / "wrong.csv", "observation_id,reviewer,new_class_id\nNatrix natrix/1.jpg,bo,99\n")
    with pytest.raises(SnakewebError, match="class id"):
        import_reviews(target, wrong)
    assert main(["import-reviews", "--store", str(target.root), str(wrong)]) == 2


def test_metadata_subsets_test_and_unknown_values(tmp_path, capsys, caplog):
    root = tmp_path / "images"
    rows = ["observation_id,image_path,class_id,binomial_name,subset"]
    for i, subset in enumerate(["train", "Train", "val", "test", "training", "validation"]):
        make_photo(root / f"{i}.jpg", (90, 90, 40), seed=i)
        rows.append(f"{i},{i}.jpg,405,Crotalus atrox,{subset}")
    metadata = write(tmp_path / "meta.csv", "\n".join(rows) + "\n")
    store = Store(tmp_path / "s")
    assert main(["ingest", "--store", str(store.root), "--metadata", str(metadata), "--image-root", str(root)]) == 0
    splits = store.query("SELECT observation_id, split FROM observations ORDER BY observation_id")["split"].tolist()
    assert splits == ["train", "train", "val", "test", "train", "val"]
    odd = write(tmp_path / "odd.csv", "\n".join(rows[:2] + ["9,1.jpg,405,Crotalus atrox,holdout"]) + "\n")
    assert main(["ingest", "--store", str(tmp_path / "s2"), "--metadata", str(odd), "--image-root", str(root)]) == 2
    assert "line 3: 'holdout'" in capsys.readouterr().err
    # subsets with no validation rows cannot be the split: said, and the stratified split is made instead
    only_test = write(tmp_path / "only_test.csv", "\n".join([rows[0], *(r.rsplit(",", 1)[0] + ",test" for r in rows[1:])]) + "\n")
    assert main(["ingest", "--store", str(tmp_path / "s3"), "--metadata", str(only_test), "--image-root", str(root)]) == 0
    assert "The subsets given (test) lack a train or a validation subset, so they are not used" in caplog.text
    assert Store(tmp_path / "s3").query("SELECT split FROM observations")["split"].value_counts().to_dict() == {"train": 4, "test": 1, "val": 1}


def test_no_later_ingest_moves_an_observation_of_an_officially_split_store(tmp_path, capsys, caplog):
    """New photos of stored observations once re-split the whole store (test photos into training, exit 0)."""
    root = tmp_path / "images"
    header = "observation_id,image_path,class_id,binomial_name,subset"
    first, later, moving = [header], [header], [header]
    for i, subset in enumerate(["train", "train", "val", "test"] * 2):
        for name in (f"{i}a.jpg", f"{i}b.jpg", f"{i}c.jpg"):
            make_photo(root / name, (90, 90, 40), seed=hash(name) % 1000)
        first.append(f"o{i},{i}a.jpg,405,Crotalus atrox,{subset}")
        later.append(f"o{i},{i}b.jpg,405,Crotalus atrox,{subset if i % 2 else ''}")  # the same subset, or none
        moving.append(f"o{i},{i}c.jpg,405,Crotalus atrox,{'train' if subset == 'test' else subset}")
    store = Store(tmp_path / "s")
    ingest = ["ingest", "--store", str(store.root), "--image-root", str(root), "--metadata"]
    assert main([*ingest, str(write(tmp_path / "first.csv", "\n".join(first) + "\n"))]) == 0
    splits = store.query("SELECT observation_id, split FROM observations ORDER BY 1")
    assert main([*ingest, str(write(tmp_path / "later.csv", "\n".join(later) + "\n"))]) == 0
    assert store.query("SELECT observation_id, split FROM observations ORDER BY 1").equals(splits)
    assert store.query("SELECT count(*) AS n FROM images i JOIN observations o USING (observation_id) "
                       "WHERE i.split <> o.split")["n"][0] == 0 and len(store.query("SELECT * FROM images")) == 16
    capsys.readouterr()
    assert main([*ingest, str(write(tmp_path / "moving.csv", "\n".join(moving) + "\n"))]) == 2
    err = capsys.readouterr().err
    assert "2 observation(s) already in the store are given another subset by their new photos (observation o3 (in test, " \
           "now given train)" in err and "one observation stays in one split" in err
    assert len(store.query("SELECT * FROM images")) == 16  # nothing of the refused ingest was kept
    # a photo folder added to a store split by subsets: its observations are trained on, and the ingest says so
    make_photo(tmp_path / "more" / "Crotalus atrox" / "x.jpg", (90, 90, 40), seed=5)
    assert main(["ingest", "--store", str(store.root), "--images", str(tmp_path / "more")]) == 0
    assert "1 new observation(s) have no subset in a store split by the metadata's subsets; they are trained on" in caplog.text
    # one metadata file giving one observation two subsets
    twice = write(tmp_path / "twice.csv", "\n".join([header, "p1,0a.jpg,405,Crotalus atrox,train", "p1,1a.jpg,405,Crotalus atrox,test",
                                                      "p2,2a.jpg,405,Crotalus atrox,val"]) + "\n")
    assert main(["ingest", "--store", str(tmp_path / "s2"), "--image-root", str(root), "--metadata", str(twice)]) == 2
    assert "1 observation(s) have photos with different subset values, e.g. observation p1" in capsys.readouterr().err
    # found by the next helper: an empty subset after a given one, one observation across two files, a stored photo
    # listed again with another subset
    trailing = write(tmp_path / "trailing.csv", "\n".join([header, "q1,0a.jpg,405,Crotalus atrox,test", "q1,1a.jpg,405,Crotalus atrox,",
                                                          "q2,2a.jpg,405,Crotalus atrox,train", "q3,3a.jpg,405,Crotalus atrox,val"]) + "\n")
    fresh = Store(tmp_path / "s3")
    assert main(["ingest", "--store", str(fresh.root), "--image-root", str(root), "--metadata", str(trailing)]) == 0
    assert dict(fresh.query("SELECT observation_id, split FROM observations").itertuples(index=False)) == {"q1": "test", "q2": "train",
                                                                                                            "q3": "val"}
    one = write(tmp_path / "one.csv", "\n".join([header, "r1,0a.jpg,405,Crotalus atrox,train", "r2,2a.jpg,405,Crotalus atrox,val"]) + "\n")
    other = write(tmp_path / "other.csv", "\n".join([header, "r1,1a.jpg,405,Crotalus atrox,test"]) + "\n")
    assert main(["ingest", "--store", str(tmp_path / "s4"), "--image-root", str(root), "--metadata", str(one), str(other)]) == 2
    assert "1 observation(s) are given two subsets across the metadata files (e.g. observation r1: test and train)" in capsys.readouterr().err
    relisted = write(tmp_path / "relisted.csv", first[0] + "\n" + "\n".join(r.replace(",test", ",train") for r in first[1:]) + "\n")
    assert main([*ingest, str(relisted)]) == 2
    err = capsys.readouterr().err
    assert "photo(s) already in the store would get another split" in err and "does not move stored photos between splits" in err
    # a stored photo listed again with an empty class says nothing new: its observation's class (the same ingest run
    # again must change nothing); the advice fits what would change (reviews change classes only)
    before = store.query("SELECT * FROM images ORDER BY image_id")
    emptied = write(tmp_path / "emptied.csv", "\n".join([header, "o0,0a.jpg,,,train"]) + "\n")
    assert main([*ingest, str(emptied)]) == 0 and store.query("SELECT * FROM images ORDER BY image_id").equals(before)
    capsys.readouterr()
    moved = write(tmp_path / "moved.csv", "\n".join([header, "x9,0a.jpg,405,Crotalus atrox,train"]) + "\n")
    assert main([*ingest, str(moved)]) == 2
    err = capsys.readouterr().err
    assert "0a.jpg: o0 -> x9); snakeweb does not change a stored photo's observation: give it its stored one" in err
    assert "review" not in err
    # a new photo of a stored observation showing another species (it was stored under the observation, exit 0)
    make_photo(root / "other.jpg", (20, 90, 140), seed=77)
    species = write(tmp_path / "species.csv", "class_id,binomial_name,MIVS\n405,Crotalus atrox,1\n1130,Natrix natrix,0\n")
    mixed = write(tmp_path / "mixed.csv", "\n".join([header, "o0,other.jpg,1130,Natrix natrix,"]) + "\n")
    assert main([*ingest, str(mixed), "--species", str(species)]) == 2
    assert "1 observation(s) already in the store are given new photos of another species or country (e.g. observation o0: " \
           "class 405 in the store, class 1130 now)" in capsys.readouterr().err
    # ... and across the metadata files of one ingest (the observation kept the first file's class, unsaid)
    atrox = write(tmp_path / "atrox.csv", "\n".join([header, "c1,0a.jpg,405,Crotalus atrox,"]) + "\n")
    natrix = write(tmp_path / "natrix.csv", "\n".join([header, "c1,1a.jpg,1130,Natrix natrix,"]) + "\n")
    assert main(["ingest", "--store", str(tmp_path / "s5"), "--image-root", str(root), "--metadata", str(atrox), str(natrix),
                 "--species", str(species)]) == 2
    assert "1 observation(s) are given two class ids across the metadata files (e.g. observation c1: 1130 and 405)" \
        in capsys.readouterr().err and not (tmp_path / "s5" / "snakeweb.duckdb").exists()


# cases found by a fresh tester trying to break the above ---------------------------------------------------

def test_one_name_under_two_class_ids_is_refused_within_and_across_tables(tmp_path):
    one = write(tmp_path / "one.csv", "class_id,binomial_name,MIVS\n405,Crotalus atrox,1\n406,crotalus_atrox,0\n")
    with pytest.raises(SnakewebError, match="Crotalus atrox more than one class id: class 405 .venomous"):
        read_species_table([one])
    first = write(tmp_path / "first.csv", "class_id,binomial_name,MIVS\n405,Crotalus atrox,1\n")
    other = write(tmp_path / "other.csv", "class_id,binomial_name,MIVS\n5000,Crotalus atrox,0\n")
    for order in ([first, other], [other, first]):
        with pytest.raises(SnakewebError, match="more than one class id"):
            read_species_table(order)


def test_a_names_only_table_takes_the_ids_other_tables_give(tmp_path):
    ids = write(tmp_path / "ids.csv", "class_id,binomial_name\n405,Crotalus atrox\n1137,Natrix natrix\n")
    flags = write(tmp_path / "flags.csv", "Species,Venomous\nCrotalus atrox,yes\nNatrix natrix,no\nNaja naja,yes\n")
    table = read_species_table([flags, ids]).set_index("binomial_name")
    assert table.loc["Crotalus atrox", "class_id"] == 405 and table.loc["Crotalus atrox", "venom_status"] == "venomous"
    assert table.loc["Naja naja", "class_id"] == 1138 and table.loc["Naja naja", "venom_status"] == "venomous"
    alone = read_species_table([flags]).set_index("binomial_name")
    assert alone["venom_status"].to_dict() == {"Crotalus atrox": "venomous", "Naja naja": "venomous", "Natrix natrix": "harmless"}


@pytest.mark.parametrize("header", ["Venomous?", "Venomous (Y/N)", "venomous (1 = yes)", "isVenomous", "MIVS "])
def test_venom_headers_with_punctuation_or_a_note_are_read(tmp_path, header):
    path = write(tmp_path / "s.csv", f"class_id,binomial_name,{header}\n405,Crotalus atrox,1\n1137,Natrix natrix,0\n")
    assert read_species_table([path])["venom_status"].tolist() == ["venomous", "harmless"]


def test_a_venom_column_snakeweb_cannot_name_is_refused_and_a_short_row_too(tmp_path):
    german = write(tmp_path / "g.csv", "class_id;binomial_name;giftig\n405;Crotalus atrox;ja\n")
    with pytest.raises(SnakewebError, match="'giftig' looks like a venom flag"):
        read_species_table([german])
    short = write(tmp_path / "short.csv", "class_id,binomial_name,MIVS\n405,Crotalus atrox\n1137,Natrix natrix,0\n")
    with pytest.raises(SnakewebError, match="2 cells on line 2 but 3 headers"):
        read_species_table([short])


@pytest.mark.parametrize("header", ["ObservationId,ClassId", "observationID,classID", "Observation ID;Class ID"])
def test_camel_case_and_spaced_id_headers(tmp_path, header):
    delimiter = ";" if ";" in header else ","
    truth = write(tmp_path / "t.csv", header + "\n" + "\n".join(f"{i}{delimiter}{c}" for i, c in ((1, 405), (2, 7))) + "\n")
    submission = write(tmp_path / "s.csv", "observation_id,class_id\n1.0,405\n2.0,7,0\n".replace(",0\n", "\n"))
    from snakeweb.scoring import official_scores, read_submission, read_truth

    assert official_scores(read_truth(truth), read_submission(submission), {405})["Accuracy"] == 100.0


def test_a_ground_truth_observation_with_two_classes_is_refused(tmp_path, capsys):
    truth = write(tmp_path / "t.csv", "observation_id,class_id\n101,405\n101,1137\n102,7\n")
    submission = write(tmp_path / "s.csv", "observation_id,class_id\n101,405\n102,7\n")
    venomous = write(tmp_path / "v.csv", "class_id,MIVS\n405,1\n7,0\n1137,0\n99,0\n")
    assert main(["score", "--metadata", str(truth), "--predictions", str(submission), "--venomous", str(venomous)]) == 2
    assert "observation 101" in capsys.readouterr().err
    odd = write(tmp_path / "odd.csv", "observation_id,class_id\n102,-1\n")
    assert main(["score", "--metadata", str(write(tmp_path / "t2.csv", "observation_id,class_id\n102,7\n")),
                 "--predictions", str(odd), "--venomous", str(venomous)]) == 0
    assert "1 predicted class id(s), in 1 row(s), are not in the venomous list (e.g. -1)" in capsys.readouterr().err


def test_metadata_observations_with_two_classes_or_countries_and_negative_ids_are_refused(tmp_path, capsys):
    root = tmp_path / "images"
    for name in ["a.jpg", "b.jpg"]:
        make_photo(root / name, (90, 90, 40), seed=len(name))
    cases = {
        "observation_id,image_path,class_id\n1,a.jpg,405\n1,b.jpg,1137\n": "different class_id values",
        "observation_id,image_path,class_id,code\n1,a.jpg,405,US\n1,b.jpg,405,MX\n": "different country_code values",
        "observation_id,image_path,class_id\n1,a.jpg,405\n2,b.jpg,-1\n": "leave the cell empty",
        "observation_id,image_path,code,country\n1,a.jpg,US,Mexico\n": "give a code and a country that differ",
    }
    for i, (text, words) in enumerate(cases.items()):
        metadata = write(tmp_path / f"m{i}.csv", text)
        assert main(["ingest", "--store", str(tmp_path / f"s{i}"), "--metadata", str(metadata), "--image-root", str(root)]) == 2
        assert words in capsys.readouterr().err, text
    both = write(tmp_path / "both.csv", "observation_id,image_path,class_id,country,code\n1,a.jpg,405,United States,US\n2,b.jpg,405,Namibia,\n")
    store = Store(tmp_path / "both")
    assert main(["ingest", "--store", str(store.root), "--metadata", str(both), "--image-root", str(root)]) == 0
    assert store.query("SELECT country_code FROM observations ORDER BY observation_id")["country_code"].tolist() == ["US", "NA"]


@pytest.mark.parametrize("text, code", [
    ("Curacao", "CW"), ("Reunion", "RE"), ("México", "MX"), ("Perú", "PE"), ("Brasil", "BR"), ("Republic of Ireland", "IE"),
    ("Bosnia", "BA"), ("UAE", "AE"), ("Macau", "MO"), ("US Virgin Islands", "VI"), ("Congo (Kinshasa)", "CD"),
    ("Bolivia (Plurinational State of)", "BO"), ("Trinidad", "TT"), ("Antigua", "AG"), ("Deutschland", "DE"),
    ("Saint Martin", "MF"), ("Iran, Islamic Republic of", "IR"), ("Islamic Republic of Iran", "IR"),
    ("Cote d\u2019Ivoire", "CI"), ("British Virgin Islands", "VG"),
])
def test_more_real_country_spellings(text, code):
    assert resolve_country(text) == code


def test_country_tables_with_marks_trinomials_and_repeated_rows_or_columns(tmp_path, caplog):
    table = write(tmp_path / "r.csv", "species;Namibia;NA;Mexico;Congo (Kinshasa)\nCrotalus atrox;absent;;x;\n"
                                      "Naja nigricollis nigricincta;present;0;;1\nNaja nigricollis;0;0;0;0\n")
    prior = CountryPrior.from_csv(table)
    assert prior.presence.loc["naja nigricollis", "NA"] == 1 and prior.presence.loc["naja nigricollis", "CD"] == 1
    assert prior.presence.loc["crotalus atrox", "MX"] == 1 and prior.presence.loc["crotalus atrox", "NA"] == 0
    assert "more than one column for NA" in caplog.text and "more than one row for 1 species" in caplog.text
    assert prior.note("GB", ["Crotalus atrox"]).startswith("The species x country table has no records for")
    assert "None of this store's species is recorded in Namibia" in prior.note("NA", ["Crotalus atrox"])
    assert prior.note("MX", ["Crotalus atrox"]) is None
    # a table recorded at ingest said its notes there: read again (identify, export), they are info lines, not
    # two warnings on every identification
    caplog.clear()
    with caplog.at_level("INFO", logger="snakeweb.decisions"):
        again = CountryPrior.from_csv(table, notes=False)
    assert again.presence.equals(prior.presence) and "more than one row for 1 species" in caplog.text
    assert {r.levelname for r in caplog.records} == {"INFO"}


@pytest.mark.parametrize("text, words", [
    ("observation_id,reviewer,new_class_id,reviewed_at\nNatrix natrix/0.jpg,ana,405,03/04/2024 14:05\n", "not an ISO date"),
    ("observation_id,reviewer,new_class_id,reviewed_at\nNatrix natrix/0.jpg,ana,405,2024-04-03 14:05\n"
     "Natrix natrix/0.jpg,bo,1137,2024-04-03 14:05\n", "different classes"),
])
def test_review_exports_with_ambiguous_dates_or_clashing_rows_are_refused(tmp_path, text, words):
    from snakeweb.review import import_reviews, reviews

    (store,) = reviewable_stores(tmp_path, count=1)
    with pytest.raises(SnakewebError, match=words):
        import_reviews(store, write(tmp_path / "r.csv", text))
    # a review made on another label (another store's numbering, or a hand edit) would relabel the wrong species
    other_store = write(tmp_path / "o.csv", "observation_id,reviewer,new_class_id,old_class_id,reviewed_at\n"
                                            "Natrix natrix/0.jpg,ana,405,29,2024-04-03T14:05:00Z\n")
    with pytest.raises(SnakewebError, match="made on another label than this store's"):
        import_reviews(store, other_store)
    good = write(tmp_path / "g.csv", "observation_id,reviewer,new_class_id,old_class_id,reviewed_at\n"
                                     "Natrix natrix/0.jpg,ana,405,1137,2024-04-03T14:05:00Z\n"
                                     "Natrix natrix/0.jpg,bo,1137,405,2024-04-04T09:00:00Z\n")
    assert import_reviews(store, good)["added"] == 2 and import_reviews(store, good)["added"] == 0
    assert reviews(store)["old_class_id"].tolist() == [1137, 405]


def test_a_store_path_that_is_a_file_is_a_sentence(tmp_path, capsys):
    photos = tmp_path / "photos"
    make_photo(photos / "Natrix natrix" / "0.jpg", (40, 160, 60), seed=0)
    not_a_folder = write(tmp_path / "notes.pdf", "%PDF-1.4")
    assert main(["ingest", "--store", str(not_a_folder), "--images", str(photos)]) == 2
    err = capsys.readouterr().err
    assert "is a file; a store is a folder (the one holding snakeweb.duckdb)" in err and "Traceback" not in err
    # the store's own database file, given for the store: every command names the folder to give instead
    store = tmp_path / "store"
    assert main(["ingest", "--store", str(store), "--images", str(photos)]) == 0
    for argv in (["ingest", "--images", str(photos)], ["check"], ["evaluate"], ["identify", str(photos / "Natrix natrix" / "0.jpg")]):
        assert main([argv[0], "--store", str(store / "snakeweb.duckdb"), *argv[1:]]) == 2
        err = capsys.readouterr().err
        assert f"names the store's database file; give its folder: --store {store}" in err and "Traceback" not in err, argv
    # a store ingested but not embedded: the stages after embed say to embed (train gave a traceback, project
    # "0 points" with exit 0)
    for stage in ("train", "project"):
        assert main([stage, "--store", str(store)]) == 2
        err = capsys.readouterr().err
        assert "has no embeddings yet; run `python -m pipelines embed --store" in err and "Traceback" not in err, stage
    # ... and where there is no store yet: no folder named snakeweb.duckdb is made
    spaced = tmp_path / "new store"
    assert main(["ingest", "--store", str(spaced / "snakeweb.duckdb"), "--images", str(photos)]) == 2
    assert f"give its folder: --store '{spaced}'" in capsys.readouterr().err and not spaced.exists()


def test_decimal_commas_and_float_observation_ids(tmp_path):
    path = write(tmp_path / "s.csv", "class_id;binomial_name;MIVS\n405,0;Crotalus atrox;1,0\n")
    with pytest.raises(SnakewebError, match="not a flag"):  # '1,0' is not a flag spelling; the id '405,0' is fine
        read_species_table([path])
    path = write(tmp_path / "s2.csv", "class_id;binomial_name;MIVS\n405,0;Crotalus atrox;1\n")
    assert read_species_table([path])["class_id"].tolist() == [405]


# second round of a fresh tester's cases -------------------------------------------------------------------

def test_a_subspecies_row_is_its_species_row_so_its_flag_cannot_contradict(tmp_path):
    class_list = write(tmp_path / "ids.csv", "class_id,binomial_name,MIVS\n405,Crotalus atrox,1\n")
    names_only = write(tmp_path / "sub.csv", "species,venomous\nCrotalus atrox atrox,0\n")
    with pytest.raises(SnakewebError, match="disagree about class 405"):
        read_species_table([class_list, names_only])
    own_id = write(tmp_path / "own.csv", "class_id,binomial_name,MIVS\n405,Crotalus atrox,1\n406,Crotalus atrox atrox,0\n")
    with pytest.raises(SnakewebError, match="more than one class id"):
        read_species_table([own_id])
    agreeing = write(tmp_path / "agree.csv", "species,venomous\nCrotalus atrox atrox,1\nCrotalus atrox,yes\n")
    assert read_species_table([class_list, agreeing]).to_dict("records") == [
        {"class_id": 405, "binomial_name": "Crotalus atrox", "genus": "Crotalus", "venom_status": "venomous"}]


@pytest.mark.parametrize("header", ["id", "ID", "label", "species_id", "taxon_id", "No.", "#"])
def test_a_names_table_with_an_id_looking_column_is_refused_not_renumbered(tmp_path, header):
    path = write(tmp_path / "s.csv", f"{header},species,MIVS\n405,Crotalus atrox,1\n1137,Natrix natrix,0\n")
    with pytest.raises(SnakewebError, match="holds whole numbers but snakeweb reads class ids only from a column named class_id"):
        read_species_table([path])


@pytest.mark.parametrize("name", ["Crotalus atrox Baird & Girard, 1853", "Crotalus atrox (Baird & Girard, 1853)",
                                  "Crotalus atrox subsp. atrox", "Crotalus atrox ssp. atrox", "Crotalus Atrox",
                                  "Crotalus atrox (Western diamondback) (juvenile)", "CROTALUS ATROX"])
def test_author_citations_rank_words_and_several_parentheticals_still_match(name):
    from snakeweb.taxon_match import match_taxa

    table = pd.DataFrame({"class_id": [405], "binomial_name": ["Crotalus atrox"], "genus": ["Crotalus"], "venom_status": ["venomous"]})
    matched = match_taxa([name], table)
    assert matched.classes == {name: 405} and not matched.unmatched


@pytest.mark.parametrize("cell, status", [("Non venomous", "harmless"), ("not-venomous", "harmless"), ("NON_VENOMOUS", "harmless"),
                                          ("#N/A", "unknown"), ("Venomous", "venomous"), (" - ", "unknown")])
def test_more_flag_spellings(tmp_path, cell, status):
    path = write(tmp_path / "s.csv", f"class_id,binomial_name,MIVS\n405,Crotalus atrox,{cell}\n")
    assert read_species_table([path])["venom_status"].tolist() == [status]


def test_metadata_giving_a_known_species_another_class_id_is_refused(tmp_path, capsys):
    root = tmp_path / "images"
    for name in ["a.jpg", "b.jpg"]:
        make_photo(root / name, (90, 90, 40), seed=len(name))
    species = write(tmp_path / "species.csv", "class_id,binomial_name,MIVS\n405,Crotalus atrox,1\n")
    metadata = write(tmp_path / "m.csv", "observation_id,image_path,class_id,binomial_name\n1,a.jpg,405,Crotalus atrox\n"
                                         "2,b.jpg,99999,Crotalus atrox\n")
    assert main(["ingest", "--store", str(tmp_path / "s"), "--metadata", str(metadata), "--image-root", str(root),
                 "--species", str(species)]) == 2
    assert "Crotalus atrox more than one class id" in capsys.readouterr().err


def test_a_country_column_of_zeros_and_a_country_without_the_store_species_change_nothing(tmp_path):
    table = write(tmp_path / "r.csv", ";NA;MX\nCrotalus atrox;0;1\nNatrix natrix;0;0\n")
    prior = CountryPrior.from_csv(table)
    names = ["Crotalus atrox", "Natrix natrix", "Crotalus ruber"]  # the last is not in the table
    assert not prior.knows("NA") and prior.weights(names, "NA").tolist() == [1, 1, 1]
    assert prior.weights(["Natrix natrix", "Crotalus ruber"], "MX").tolist() == [1, 1]  # none of these is recorded in MX
    assert "None of this store's species is recorded in Mexico" in prior.note("MX", ["Natrix natrix", "Crotalus ruber"])
    assert prior.weights(names, "MX").tolist() == [1, prior.floor, 1]


def test_a_review_export_edited_by_name_is_refused_and_notes_keep_their_line_breaks(tmp_path):
    from snakeweb.review import import_reviews, reviews

    target, exported = exported_review(tmp_path, "tail rattle seen\nsecond line")
    edited = write(tmp_path / "edited.csv", exported.read_text().replace("Crotalus atrox", "Natrix natrix"))
    with pytest.raises(SnakewebError, match="new_species that is not the species of their new_class_id"):
        import_reviews(target, edited)
    assert import_reviews(target, exported)["added"] == 1
    assert reviews(target).iloc[0]["note"] == "tail rattle seen\nsecond line"


# third round: a second ingest into an existing store ---------------------------------------------------------

@pytest.fixture
def built_with_table(tmp_path):
    photos = tmp_path / "photos"
    for i in range(3):
        make_photo(photos / "Crotalus atrox" / f"{i}.jpg", (140, 100, 60), seed=i)
        make_photo(photos / "Natrix natrix" / f"{i}.jpg", (40, 160, 60), seed=10 + i)
    table = write(tmp_path / "class_list.csv", "class_id,binomial_name,MIVS\n405,Crotalus atrox,1\n415,Crotalus horridus,1\n"
                                               "1137,Natrix natrix,0\n")
    store = Store(tmp_path / "store")
    assert main(["ingest", "--store", str(store.root), "--images", str(photos), "--species", str(table)]) == 0
    return store, table


def test_a_second_ingest_matches_names_to_the_store_s_own_classes(built_with_table, tmp_path):
    store, table = built_with_table
    more = tmp_path / "more"
    make_photo(more / "crotalus_atrox (Western diamondback)" / "new.jpg", (150, 100, 60), seed=7)
    make_photo(more / "Natrix natrix helvetica" / "new.jpg", (40, 150, 60), seed=8)
    make_photo(more / "Crotalus horridus" / "new.jpg", (130, 110, 60), seed=9)
    make_photo(more / "Bothrops mystery" / "new.jpg", (130, 110, 90), seed=10)
    assert main(["ingest", "--store", str(store.root), "--images", str(more)]) == 0  # no table this time
    species = store.species().set_index("binomial_name")
    # the store kept the table it was built with: Crotalus horridus is 415 and venomous without giving it again,
    # and a name no table knows gets an id above the store's, never 0
    assert species["class_id"].to_dict() == {"Crotalus atrox": 405, "Natrix natrix": 1137, "Crotalus horridus": 415,
                                             "Bothrops mystery": 1138}
    assert species.loc["Crotalus horridus", "venom_status"] == "venomous"
    assert species.loc["Bothrops mystery", "venom_status"] == "unknown"
    observations = store.query("SELECT class_id, subspecies FROM observations WHERE observation_id LIKE '%new.jpg'")
    assert sorted(observations["class_id"]) == [405, 415, 1137, 1138]
    assert main(["ingest", "--store", str(store.root), "--images", str(more), "--species", str(table)]) == 0  # the same again


def test_a_second_species_table_that_contradicts_the_store_is_refused(built_with_table, tmp_path, capsys):
    store, _ = built_with_table
    photos = tmp_path / "photos"
    harmless = write(tmp_path / "t1.csv", "class_id,binomial_name,MIVS\n405,Crotalus atrox,0\n")
    names = write(tmp_path / "t2.csv", "species,venomous\nCrotalus atrox,no\n")
    for table in (harmless, names):
        assert main(["ingest", "--store", str(store.root), "--images", str(photos), "--species", str(table)]) == 2
        assert "disagree about class 405" in capsys.readouterr().err
    assert store.species().set_index("class_id")["venom_status"].to_dict() == {405: "venomous", 415: "venomous", 1137: "harmless"}
    filling = write(tmp_path / "t3.csv", "species,venomous\nCrotalus atrox,yes\nNatrix natrix,no\n")
    assert main(["ingest", "--store", str(store.root), "--images", str(photos), "--species", str(filling)]) == 0


def test_a_store_built_without_a_table_cannot_silently_take_another_numbering(tmp_path, capsys):
    photos = tmp_path / "photos"
    make_photo(photos / "Crotalus atrox" / "0.jpg", (140, 100, 60), seed=1)
    store = Store(tmp_path / "store")
    assert main(["ingest", "--store", str(store.root), "--images", str(photos)]) == 0
    assert store.species()["venom_status"].tolist() == ["unknown"]
    table = write(tmp_path / "t.csv", "class_id,binomial_name,MIVS\n405,Crotalus atrox,1\n")
    assert main(["ingest", "--store", str(store.root), "--images", str(photos), "--species", str(table)]) == 2
    assert "build a new store" in capsys.readouterr().err
    flags = write(tmp_path / "flags.csv", "species,venomous\nCrotalus atrox,1\n")  # no ids: fills in the status
    assert main(["ingest", "--store", str(store.root), "--images", str(photos), "--species", str(flags)]) == 0
    assert store.species()[["class_id", "venom_status"]].values.tolist() == [[0, "venomous"]]


def test_reingesting_metadata_that_relabels_stored_photos_is_refused(tmp_path, capsys):
    root = tmp_path / "images"
    for name in ["a.jpg", "b.jpg"]:
        make_photo(root / name, (90, 90, 40), seed=len(name))
    first = write(tmp_path / "m1.csv", "observation_id,image_path,class_id,code\n1,a.jpg,405,US\n2,b.jpg,405,CA\n")
    store = Store(tmp_path / "s")
    assert main(["ingest", "--store", str(store.root), "--metadata", str(first), "--image-root", str(root)]) == 0
    assert main(["ingest", "--store", str(store.root), "--metadata", str(first), "--image-root", str(root)]) == 0  # the same again
    for text, what in (("1,a.jpg,1137,US\n2,b.jpg,405,CA\n", "another class id"), ("1,a.jpg,405,DE\n2,b.jpg,405,CA\n", "another country"),
                       ("1,a.jpg,405,US\n1,b.jpg,405,US\n", "another observation")):
        again = write(tmp_path / "m2.csv", "observation_id,image_path,class_id,code\n" + text)
        assert main(["ingest", "--store", str(store.root), "--metadata", str(again), "--image-root", str(root)]) == 2
        assert what in capsys.readouterr().err


def test_json_errors_reach_stdout_as_json_and_check_reports_an_ingest_only_store(built_with_table, capsys):
    store, _ = built_with_table
    assert main(["identify", "--store", str(store.root) + "-missing", "x.jpg", "--json"]) == 2
    assert "No store at" in json.loads(capsys.readouterr().out)["error"]
    assert main(["check", "--store", str(store.root)]) == 1
    out = capsys.readouterr().out
    assert "venom status: 2 venomous, 1 harmless, 0 unknown" in out and "nothing embedded yet" in out
    with pytest.raises(CountryError, match="CY"):
        resolve_country("Northern Cyprus")


@pytest.mark.parametrize("header, candidates", [("namibai", ["NA (Namibia)"]), ("Congo", ["CG", "CD"]), ("ZZ", []), ("atlantis", [])])
def test_a_country_table_header_that_names_no_one_country_is_refused_with_candidates(tmp_path, header, candidates):
    """A typo of 'namibia' as a column header left Namibia without its prior, with only a warning: refused now,
    like the same value anywhere else. Northern Cyprus (no ISO code) and an empty trailing column still pass."""
    table = tmp_path / "table.csv"
    table.write_text(f"binomial_name;france;{header}\nNaja nigricollis;0;1\n")
    with pytest.raises(SnakewebError) as error:
        CountryPrior.from_csv(table)
    assert repr(header) in str(error.value) and all(c in str(error.value) for c in candidates)
    table.write_text("binomial_name;france;n cyprus;\nNaja nigricollis;0;1;\n")
    assert CountryPrior.from_csv(table).unmatched_countries == ["n cyprus", "(empty header of column 4)"]


# a number where a taxon name belongs: never a species called '12', never read as a folder named by class id -------

@pytest.mark.parametrize("cell", ["12", "3.0", "0405", "-1", "1e3"])
def test_a_numeric_binomial_name_in_metadata_names_the_table_column_and_line(tmp_path, capsys, cell):
    root = tmp_path / "images"
    for name in ["a.jpg", "b.jpg"]:
        make_photo(root / name, (90, 90, 40), seed=len(name))
    metadata = write(tmp_path / "meta.csv", f"observation_id,image_path,binomial_name\n1,a.jpg,Crotalus atrox\n2,b.jpg,{cell}\n")
    species = write(tmp_path / "species.csv", "class_id,binomial_name,MIVS\n12,Crotalus atrox,1\n")
    assert main(["ingest", "--store", str(tmp_path / "s"), "--metadata", str(metadata), "--image-root", str(root),
                 "--species", str(species)]) == 2
    err = capsys.readouterr().err
    assert f"The metadata {metadata}: its 'binomial_name' column holds 1 number(s)" in err
    assert f"line 3: '{cell}'" in err and "'Genus species'" in err and "class_id column" in err
    assert "Folder" not in err and "Traceback" not in err
    assert not (tmp_path / "s").exists()


def test_a_numeric_name_beside_a_class_id_is_refused_not_stored_as_a_species_called_12(tmp_path, capsys):
    root = tmp_path / "images"
    make_photo(root / "a.jpg", (90, 90, 40), seed=1)
    metadata = write(tmp_path / "meta.csv", "observation_id;image_path;class_id;Species\n1;a.jpg;405;12\n")
    assert main(["ingest", "--store", str(tmp_path / "s"), "--metadata", str(metadata), "--image-root", str(root)]) == 2
    err = capsys.readouterr().err
    assert "its 'Species' column holds 1 number(s)" in err and "line 2: '12'" in err  # the header as the file wrote it
    assert not (tmp_path / "s").exists()


def test_numbers_for_names_in_species_taxonomy_country_and_review_tables_are_refused(tmp_path):
    from snakeweb.taxonomy import Taxonomy

    with pytest.raises(SnakewebError, match=r"'binomial_name' column holds 1 number.*line 3: '3\.0'.*class_id column"):
        read_species_table([write(tmp_path / "s.csv", "class_id,binomial_name,MIVS\n405,Crotalus atrox,1\n406,3.0,0\n")])
    with pytest.raises(SnakewebError, match=r"'name' column holds 2 number.*class_id column"):  # names only: ids unnamed
        read_species_table([write(tmp_path / "n.csv", "name,venomous\n12,1\n13,0\n")])
    with pytest.raises(SnakewebError, match=r"'genus' column holds 1 number.*line 2: '7'"):
        read_species_table([write(tmp_path / "g.csv", "class_id,binomial_name,genus\n405,Crotalus atrox,7\n")])
    with pytest.raises(SnakewebError, match=r"taxonomy table .*'species' column holds 1 number.*line 2: '42'.*taxon's name"):
        Taxonomy.from_csv(write(tmp_path / "t.csv", "family,genus,species\nViperidae,Crotalus,42\n"))
    with pytest.raises(SnakewebError, match=r"species x country table .*holds 1 number.*line 3: '405'"):
        CountryPrior.from_csv(write(tmp_path / "c.csv", "binomial_name,US,MX\nCrotalus atrox,1,1\n405,1,0\n"))
    # the real tables hold no number where a name belongs
    assert len(read_species_table([shared("snakeclef", "class_list.csv")])) == 1784


def test_a_review_export_with_a_number_for_new_species_points_at_new_class_id(tmp_path):
    from snakeweb.review import import_reviews, reviews

    target, exported = exported_review(tmp_path, "")
    numbered = write(tmp_path / "numbered.csv", exported.read_text().replace("Crotalus atrox", "405"))
    with pytest.raises(SnakewebError, match=r"'new_species' column holds 1 number.*'405'.*new_class_id column"):
        import_reviews(target, numbered)
    assert reviews(target).empty
