"""Family and genus of every class from the real Reptile Database snake checklist (serpentes.csv), and edge cases
in small tables written here."""

from __future__ import annotations

import json
import logging

import pandas as pd
import pytest

from pipelines.cli import main
from snakeweb.build_job import build_command
from snakeweb.errors import SnakewebError
from snakeweb.integrity import check_store
from snakeweb.species import SPECIES_COLUMNS
from snakeweb.store import Store
from snakeweb.taxonomy import TAXONOMY_ENV, TAXONOMY_SUMMARY, UNKNOWN_FAMILY, Taxonomy, TaxonRecord, assign_taxonomy, taxonomy_path
from tests.conftest import SYNTHETIC_SPECIES, build_photo_store, make_photo, shared


@pytest.fixture(scope="module")
def serpentes_csv():
    return shared("taxonomy", "serpentes.csv")


@pytest.fixture(scope="module")
def serpentes(serpentes_csv) -> Taxonomy:
    return Taxonomy.from_csv(serpentes_csv)


def test_the_real_table_has_the_documented_species_genera_and_families(serpentes, caplog):
    assert len(serpentes.species) == 4186 and len(serpentes.genera) == 548
    families = {family for family, _ in serpentes.genera.values()}
    assert len(families) == 33 and "Elapoidea" in families  # the superfamily label is kept as the table gives it
    assert serpentes.classify("Buhoma marlieri") == TaxonRecord("Elapoidea", "Buhoma", "taxonomy")


def test_no_genus_of_the_real_table_is_under_two_families(serpentes_csv, caplog):
    with caplog.at_level(logging.WARNING, logger="snakeweb.taxonomy"):
        Taxonomy.from_csv(serpentes_csv)
    assert not caplog.records


@pytest.mark.parametrize("name, record", [
    ("Crotalus atrox", TaxonRecord("Viperidae", "Crotalus", "taxonomy")),
    ("crotalus_atrox", TaxonRecord("Viperidae", "Crotalus", "taxonomy")),  # a folder name
    ("Crotalus atrox Baird & Girard, 1853", TaxonRecord("Viperidae", "Crotalus", "taxonomy")),
    ("Natrix natrix", TaxonRecord("Colubridae", "Natrix", "taxonomy")),  # the table keeps Natrix in Colubridae
    ("Natrix natrix helvetica", TaxonRecord("Colubridae", "Natrix", "taxonomy")),  # a trinomial is its species
    ("Virginia striatula", TaxonRecord("Colubridae", "Virginia", "taxonomy")),
    # a synonym of Virginia striatula; the table has no genus Haldea
    ("Haldea striatula", TaxonRecord(UNKNOWN_FAMILY, "Haldea", "binomial")),
    ("haldea_striatula", TaxonRecord(UNKNOWN_FAMILY, "Haldea", "binomial")),
    # not a species in the table, but its genus is
    ("Pantherophis spiloides", TaxonRecord("Colubridae", "Pantherophis", "genus")),
    ("class 17", TaxonRecord(UNKNOWN_FAMILY, None, "binomial")),  # a placeholder class has no genus
    ("", TaxonRecord(UNKNOWN_FAMILY, None, "binomial")),
    (None, TaxonRecord(UNKNOWN_FAMILY, None, "binomial")),
])
def test_classify_real_names(serpentes, name, record):
    assert serpentes.classify(name) == record


def test_hackerearth_folder_names_33_by_binomial_and_2_not(serpentes):
    names = sorted(p.name for p in shared("hackerearth-35").iterdir() if p.is_dir())
    assert len(names) == 35
    records = {name: serpentes.classify(name) for name in names}
    assert sum(r.source == "taxonomy" for r in records.values()) == 33
    assert sorted(n for n, r in records.items() if r.source != "taxonomy") == ["Haldea striatula", "Pantherophis spiloides"]
    frame = assign_taxonomy(pd.DataFrame({"class_id": range(35), "binomial_name": names, "genus": None, "venom_status": "unknown"}),
                            serpentes)
    summary = frame.attrs[TAXONOMY_SUMMARY]
    assert summary == {"species_matched": 33, "genus_only": 1, "family_unknown": 1, "unnamed": 0, "unmatched_total": 2,
                       "unmatched": ["Haldea striatula", "Pantherophis spiloides"]}


def test_assign_taxonomy_adds_family_and_never_touches_ids_names_or_venom_status(serpentes):
    species = pd.DataFrame({
        "class_id": [7, 1130, 1740, 3, 12],
        "binomial_name": ["Crotalus atrox", "Natrix natrix", "Haldea striatula", "class 3", "Pantherophis spiloides"],
        "genus": ["crotalus", None, None, None, "Pantherophis"],
        "venom_status": ["harmless", "venomous", "unknown", "unknown", "harmless"],  # deliberately odd: family must not change it
    })
    result = assign_taxonomy(species, serpentes)
    assert result[["class_id", "binomial_name", "venom_status"]].equals(species[["class_id", "binomial_name", "venom_status"]])
    assert result["family"].tolist() == ["Viperidae", "Colubridae", UNKNOWN_FAMILY, UNKNOWN_FAMILY, "Colubridae"]
    # the table's genus where the binomial was found; elsewhere the frame's own, else the binomial's first word
    assert result["genus"].tolist() == ["Crotalus", "Natrix", "Haldea", None, "Pantherophis"]
    assert result.attrs[TAXONOMY_SUMMARY]["unnamed"] == 1
    assert "family" not in species  # the caller's frame is not changed

    without = assign_taxonomy(species, None)
    assert without["family"].eq(UNKNOWN_FAMILY).all() and without["genus"].tolist() == ["crotalus", "Natrix", "Haldea", None, "Pantherophis"]
    assert without.attrs[TAXONOMY_SUMMARY]["species_matched"] == 0


def test_a_genus_under_two_families_takes_the_one_most_of_its_species_have(tmp_path, caplog):
    table = tmp_path / "taxa.csv"
    table.write_text("family,genus,species,subspecies,species_author\n"
                     "Colubridae,Oddus,Oddus alpha,,A\n"
                     "Colubridae,Oddus,Oddus beta,,B\n"
                     "Natricidae,Oddus,Oddus gamma,Oddus gamma gamma,C\n"
                     "Natricidae,Oddus,Oddus gamma,Oddus gamma delta,C\n"  # subspecies rows are one species, one vote
                     "Natricidae,Oddus,Oddus gamma,Oddus gamma epsilon,C\n")
    with caplog.at_level(logging.WARNING, logger="snakeweb.taxonomy"):
        taxa = Taxonomy.from_csv(table)
    assert "genus Oddus under 2 families" in caplog.text
    assert taxa.classify("Oddus novus") == TaxonRecord("Colubridae", "Oddus", "genus")
    assert taxa.classify("Oddus gamma delta") == TaxonRecord("Natricidae", "Oddus", "taxonomy")  # its own row wins


def test_a_semicolon_table_with_other_headers_is_read(tmp_path):
    table = tmp_path / "taxa.csv"
    table.write_text("Family;Genus;Binomial\nViperidae;Vipera;Vipera berus\n", encoding="utf-8-sig")
    assert Taxonomy.from_csv(table).classify("Vipera_berus") == TaxonRecord("Viperidae", "Vipera", "taxonomy")


@pytest.mark.parametrize("text, message", [
    ("genus,species\nVipera,Vipera berus\n", "has no family column"),
    ("family,genus,species\n,Vipera,Vipera berus\n", "1 row(s) have no family (line 2: '')"),
    ("family,genus,species\n", "has a header but no rows"),
])
def test_an_unusable_taxonomy_table_is_one_sentence(tmp_path, text, message):
    table = tmp_path / "taxa.csv"
    table.write_text(text)
    with pytest.raises(SnakewebError, match="taxonomy table") as error:
        Taxonomy.from_csv(table)
    assert message in str(error.value)


def test_taxonomy_path_is_the_explicit_one_else_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(TAXONOMY_ENV, raising=False)
    assert taxonomy_path(None) is None
    monkeypatch.setenv(TAXONOMY_ENV, str(tmp_path / "env.csv"))
    assert taxonomy_path(None) == tmp_path / "env.csv"
    assert taxonomy_path(tmp_path / "given.csv") == tmp_path / "given.csv"


def _families(store: Store) -> dict[str, str]:
    return dict(zip(store.species()["binomial_name"], store.species()["family"]))


def test_ingest_with_taxonomy_stores_families_and_a_later_one_fills_an_old_store(photo_folder, species_csv, serpentes_csv, tmp_path,
                                                                                  capsys, monkeypatch):
    monkeypatch.delenv(TAXONOMY_ENV, raising=False)
    store = Store(tmp_path / "store")
    assert main(["ingest", "--store", str(store.root), "--images", str(photo_folder), "--species", str(species_csv)]) == 0
    assert "3 of 3 named class(es) have family unknown (no taxonomy table was given)" in capsys.readouterr().out  # how to give them
    before = store.species()[SPECIES_COLUMNS]
    assert set(_families(store).values()) == {UNKNOWN_FAMILY} and store.get_meta("taxonomy") is None

    # families are derived data: a re-ingest with the taxonomy fills them for classes already in the store
    assert main(["ingest", "--store", str(store.root), "--images", str(photo_folder), "--species", str(species_csv),
                 "--taxonomy", str(serpentes_csv)]) == 0
    assert "taxonomy serpentes.csv: 3 of 3 species found" in capsys.readouterr().out
    assert _families(store) == {"Zamenis longissimus": "Colubridae", "Natrix natrix": "Colubridae", "Vipera berus": "Viperidae"}
    after = store.species()
    assert after[SPECIES_COLUMNS].equals(before)  # ids, names, genus and venom status exactly as they were
    assert dict(zip(after["class_id"], after["binomial_name"])) == {v: k for k, v in SYNTHETIC_SPECIES.items()}
    assert after.set_index("binomial_name").loc["Vipera berus", "venom_status"] == "venomous"
    recorded = store.get_meta("taxonomy")
    assert recorded["path"] == str(serpentes_csv.resolve()) and len(recorded["sha256"]) == 64
    assert (recorded["species_matched"], recorded["genus_only"], recorded["unmatched"]) == (3, 0, [])
    verdict = {v.name: v for v in check_store(store)}["taxonomy"]
    assert verdict.ok and verdict.detail.startswith("3 of 3 named classes have a family (2 families")


def test_a_re_ingest_without_taxonomy_counts_the_stores_families(serpentes_csv, tmp_path, capsys, monkeypatch):
    """A store built with --taxonomy and ingested again without it keeps its families, and the line says so with the
    store's counts (named classes, as check counts them), not '26 of 1784 ... no taxonomy table was given'."""
    import re

    monkeypatch.delenv(TAXONOMY_ENV, raising=False)
    photos = tmp_path / "photos"
    for name in ("Crotalus_atrox", "Haldea_striatula"):
        make_photo(photos / name / "0.jpg", (90, 90, 90), seed=1)
    classes = shared("snakeclef", "class_list.csv")
    store = Store(tmp_path / "store")
    ingest = ["ingest", "--store", str(store.root), "--images", str(photos)]
    assert main([*ingest, "--species", str(classes), "--taxonomy", str(serpentes_csv)]) == 0
    families = dict(zip(store.species()["class_id"], store.species()["family"]))
    capsys.readouterr()
    assert main(ingest) == 0
    out = capsys.readouterr().out
    said = [line for line in out.splitlines() if "named class(es) have family unknown" in line]
    # the harmless ones of unknown family are the named ones too; the 'class N' placeholders are counted apart
    harmless = next(line for line in out.splitlines() if "flagged harmless have family unknown" in line)
    unnamed = int((store.species()["binomial_name"].str.startswith("class ")).sum())
    assert harmless.startswith("ingest: 7 class(es) flagged harmless") and f"({unnamed} more flagged harmless have no name" in harmless
    assert dict(zip(store.species()["class_id"], store.species()["family"])) == families  # kept
    verdict = {v.name: v for v in check_store(store)}["taxonomy"].detail
    known, named = map(int, re.match(r"(\d+) of (\d+) named classes have a family", verdict).groups())
    unknown = named - known
    assert 0 < unknown < named < len(store.species())  # class_list.csv has unnamed classes too: they are not counted
    assert said == [f"ingest: {unknown} of {named} named class(es) have family unknown (the families from serpentes.csv, given at "
                    "an earlier ingest, are kept; these are names it does not know)."]
    assert "no taxonomy table was given" not in said[0]

    make_photo(photos / "Unknownia incerta" / "0.jpg", (90, 90, 90), seed=2)  # a class new in this ingest: look it up
    assert main(ingest) == 0
    said = [line for line in capsys.readouterr().out.splitlines() if "named class(es) have family unknown" in line]
    assert said == [f"ingest: {unknown + 1} of {named + 1} named class(es) have family unknown (the families from serpentes.csv, "
                    f"given at an earlier ingest, are kept); 1 of them are new in this ingest: give --taxonomy "
                    f"{serpentes_csv.resolve()} again to look them up."]


def test_ingest_reads_the_taxonomy_from_the_environment_and_keeps_unknown_names(serpentes_csv, tmp_path, capsys, monkeypatch):
    from tests.conftest import make_photo

    photos = tmp_path / "photos"
    for name in ("Crotalus_atrox", "Haldea_striatula", "Pantherophis spiloides", "Natrix natrix helvetica"):
        make_photo(photos / name / "0.jpg", (90, 90, 90), seed=1)
    monkeypatch.setenv(TAXONOMY_ENV, str(serpentes_csv))
    store = Store(tmp_path / "store")
    assert main(["ingest", "--store", str(store.root), "--images", str(photos)]) == 0
    species = store.species().set_index("binomial_name")
    assert species["family"].to_dict() == {"Crotalus atrox": "Viperidae", "Haldea striatula": UNKNOWN_FAMILY,
                                           "Natrix natrix": "Colubridae", "Pantherophis spiloides": "Colubridae"}
    assert species.loc["Haldea striatula", "genus"] == "Haldea" and set(species["venom_status"]) == {"unknown"}
    assert store.get_meta("taxonomy")["unmatched"] == ["Haldea striatula", "Pantherophis spiloides"]
    verdict = {v.name: v for v in check_store(store)}["taxonomy"]
    assert verdict.ok and "1 family unknown (Haldea striatula)" in verdict.detail


def test_an_unreadable_taxonomy_stops_ingest_before_the_store_is_made(photo_folder, tmp_path, capsys):
    store = Store(tmp_path / "store")
    assert main(["ingest", "--store", str(store.root), "--images", str(photo_folder), "--taxonomy", str(tmp_path / "none.csv")]) == 2
    assert "Cannot read the taxonomy table" in capsys.readouterr().err and not store.exists()


def test_a_store_without_the_family_column_is_migrated(photo_folder, species_csv, serpentes_csv, tmp_path, monkeypatch):
    monkeypatch.delenv(TAXONOMY_ENV, raising=False)
    store = Store(tmp_path / "store")
    assert main(["ingest", "--store", str(store.root), "--images", str(photo_folder), "--species", str(species_csv)]) == 0
    with store.connect() as con:  # as a store made before families
        con.execute("ALTER TABLE species DROP COLUMN family")
    before = store.species()
    assert "family" not in before
    store.require()
    assert store.species()["family"].tolist() == [UNKNOWN_FAMILY] * 3  # NULL, read as unknown
    assert store.query("SELECT count(*) AS n FROM species WHERE family IS NULL")["n"][0] == 3
    assert main(["ingest", "--store", str(store.root), "--images", str(photo_folder), "--taxonomy", str(serpentes_csv)]) == 0
    after = store.species()
    assert after[SPECIES_COLUMNS].equals(before[SPECIES_COLUMNS]) and set(after["family"]) == {"Colubridae", "Viperidae"}


def test_build_command_passes_the_taxonomy():
    command = build_command("store", "photos", taxonomy="serpentes.csv")
    assert command[command.index("--taxonomy") + 1] == "serpentes.csv"
    assert "--taxonomy" not in build_command("store", "photos")


def test_a_viper_or_elapid_a_species_table_flags_harmless_is_venomous(photo_folder, tmp_path, capsys, serpentes_csv):
    """SnakeCLEF's MIVS column flags medically important species only: read as a venom flag it made 190 vipers and
    elapids harmless, and a Florida cottonmouth was answered harmless under a green all-clear. A harmless colubrid,
    and a class of unknown family, keep the table's flag; `score` reads its venomous list as given."""
    species = tmp_path / "mivs.csv"  # the synthetic folders' species; Vipera berus flagged as SnakeCLEF flags A. conanti
    species.write_text("class_id,binomial_name,MIVS\n1130,Natrix natrix,0\n1740,Vipera berus,0\n1741,Zamenis longissimus,0\n"
                       "28,Agkistrodon conanti,0\n2000,Unknownia incerta,0\n2001,Homoroselaps lacteus,0\n2002,Pelamis platura,0\n")
    store = tmp_path / "store"
    assert main(["ingest", "--store", str(store), "--images", str(photo_folder), "--species", str(species),
                 "--taxonomy", str(serpentes_csv)]) == 0
    said = capsys.readouterr().out
    assert "3 species of front-fanged families flagged harmless in the species table are treated as venomous" in said
    assert "Agkistrodon conanti (Viperidae), Homoroselaps lacteus (Atractaspididae), Vipera berus (Viperidae)" in said
    # a sea snake under an older name the taxonomy lacks has no family: said, since the rule cannot reach it
    assert "class(es) flagged harmless have family unknown (e.g. Pelamis platura, Unknownia incerta)" in said
    assert "name them as the taxonomy table does" in said
    status = dict(zip(Store(store).species()["binomial_name"], Store(store).species()["venom_status"]))
    assert status == {"Natrix natrix": "harmless", "Vipera berus": "venomous", "Zamenis longissimus": "harmless",
                      "Agkistrodon conanti": "venomous", "Unknownia incerta": "harmless", "Homoroselaps lacteus": "venomous",
                      "Pelamis platura": "harmless"}
    assert Store(store).get_meta("venomous_by_family") == [28, 1740, 2001]
    # the same table again: nothing left to change, and the record stays
    assert main(["ingest", "--store", str(store), "--images", str(photo_folder), "--species", str(species)]) == 0
    assert "front-fanged" not in capsys.readouterr().out and Store(store).get_meta("venomous_by_family") == [28, 1740, 2001]
    # without a taxonomy the family is unknown, and ingest says what that leaves harmless
    assert main(["ingest", "--store", str(tmp_path / "bare"), "--images", str(photo_folder), "--species", str(species)]) == 0
    said = capsys.readouterr().out
    assert "flagged harmless have family unknown" in said and "give a taxonomy with --taxonomy" in said


def test_evaluate_scores_track_figures_with_the_tables_own_flags_as_score_does(tiny_model_dir, serpentes_csv, tmp_path, capsys,
                                                                           monkeypatch):
    """A viper the species table flags harmless is venomous in the store (for the answers), but the official metric
    weighs venomous<->harmless confusions by the organisers' flags: evaluate's Track figures must be what `score` gives
    the submission `export` writes, with the table as the venomous list; the store's figures are reported beside them.
    Natrix and Vipera photos share one colour, so the head confuses them and the two sets of flags give other figures."""
    photos = tmp_path / "photos"
    colours = {"Natrix natrix": (120, 110, 60), "Vipera berus": (120, 110, 60), "Zamenis longissimus": (50, 60, 170)}
    for k, (name, colour) in enumerate(colours.items()):
        for i in range(10):
            make_photo(photos / name.replace(" ", "_") / f"{i:02d}.jpg", colour, seed=100 * k + i)
    table = tmp_path / "mivs.csv"  # Vipera berus flagged 0, as SnakeCLEF's MIVS flags vipers not medically important
    table.write_text("class_id,binomial_name,MIVS\n1130,Natrix natrix,0\n1740,Vipera berus,0\n7,Zamenis longissimus,0\n")
    store = build_photo_store(tmp_path / "store", tiny_model_dir, photos, table, "--taxonomy", str(serpentes_csv), "--epochs", "30")
    assert Store(store).get_meta("venomous_by_family") == [1740]
    capsys.readouterr()
    assert main(["evaluate", "--store", str(store), "--split", "test", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    flags = report["venom_flags"]
    assert flags["promoted_to_venomous"] == 1 and flags["promoted_examples"] == ["Vipera berus"]
    assert flags["observations_of_promoted_classes"] >= 1
    truth = tmp_path / "truth.csv"
    Store(store).query("SELECT observation_id, class_id FROM observations WHERE split = 'test'").to_csv(truth, index=False)
    as_stored = tmp_path / "store_flags.csv"  # the store's flags as a venomous list: Vipera berus venomous
    as_stored.write_text("class_id,MIVS\n1130,0\n1740,1\n7,0\n")
    for decision in ("argmax", "cost"):
        submission = tmp_path / f"{decision}.csv"
        assert main(["export", "--store", str(store), "--out", str(submission), "--split", "test", "--decision", decision]) == 0
        capsys.readouterr()
        assert main(["score", "--metadata", str(truth), "--predictions", str(submission), "--venomous", str(table), "--json"]) == 0
        official = json.loads(capsys.readouterr().out)
        evaluated = report["variants"][f"{decision}/prior=none"]
        assert {k: evaluated[k] for k in official} == official  # Track1, Track2, PSC, F1, accuracy: all as `score` gives them
        assert main(["score", "--metadata", str(truth), "--predictions", str(submission), "--venomous", str(as_stored), "--json"]) == 0
        safety = json.loads(capsys.readouterr().out)
        assert {k: flags["variants_under_store_flags"][f"{decision}/prior=none"][k] for k in safety} == safety
    # the constructed confusion makes the two sets of flags disagree: evaluate once gave the store-flag figure
    assert report["variants"]["argmax/prior=none"]["Track1 Metric"] != flags["variants_under_store_flags"]["argmax/prior=none"]["Track1 Metric"]
    assert main(["evaluate", "--store", str(store), "--split", "test"]) == 0
    said = capsys.readouterr().out
    assert "the figures above use the species table's own flags, as `score` does; 1 class(es) it flags harmless are venomous" in said
    # the Metrics page says which flags its official table uses, and names the promoted species
    from tests.test_app import app_test

    app = app_test(monkeypatch, store).run()
    app.switch_page("views/metrics.py").run()
    assert not app.exception
    assert any("species table's own venom flags" in c.value and "Vipera berus" in c.value for c in app.caption)
