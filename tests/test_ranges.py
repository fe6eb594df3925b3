"""Range records: a review team's species x country additions and removals, stored in the store's DuckDB file,
applied over the shipped table by evaluate, export and the Review page (real stores, real CSV tables)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from pipelines.cli import main
from snakeweb.countries import CountryError
from snakeweb.decisions import CountryPrior
from snakeweb.errors import SnakewebError
from snakeweb.evaluation import evaluate
from snakeweb.export import export_submission
from snakeweb.ranges import (
    LivePrior,
    add_range_override,
    current_range_overrides,
    effective_prior,
    overrides_version,
    range_override_log,
)
from snakeweb.store import Store
from tests.conftest import REPO, build_photo_store, make_photo

NAMES = ["Natrix natrix", "Vipera berus", "Zamenis longissimus"]
# the shipped table: Vipera berus recorded absent from Germany, everything else present in DE and FR
SHIPPED = "species,DE,FR\nNatrix natrix,1,1\nVipera berus,0,1\nZamenis longissimus,1,1\n"


@pytest.fixture
def store(tmp_path) -> Store:
    """An ingest-only store (species table, two photos, no embeddings): Natrix natrix 1137, Vipera berus 1740,
    Zamenis longissimus 7."""
    for i in range(2):
        make_photo(tmp_path / "photos" / "Natrix natrix" / f"{i}.jpg", (40, 160, 60), seed=i)
    species = tmp_path / "species.csv"
    species.write_text("class_id,binomial_name,MIVS\n1137,Natrix natrix,0\n1740,Vipera berus,1\n7,Zamenis longissimus,0\n")
    root = tmp_path / "store"
    assert main(["ingest", "--store", str(root), "--images", str(tmp_path / "photos"), "--species", str(species)]) == 0
    return Store(root)


@pytest.fixture
def shipped(tmp_path) -> CountryPrior:
    path = tmp_path / "relevance.csv"
    path.write_text(SHIPPED)
    return CountryPrior.from_csv(path)


def test_a_present_record_lifts_a_species_the_shipped_table_lacks_there(store, shipped):
    assert shipped.weights(NAMES, "DE").tolist() == [1.0, shipped.floor, 1.0]
    assert overrides_version(store) == 0 and effective_prior(store, shipped) is shipped
    add_range_override(store, 1740, "Germany", True, "ana", "museum specimen, Bavaria")
    assert overrides_version(store) > 0
    applied = effective_prior(store, shipped)
    assert applied.weights(NAMES, "DE").tolist() == [1.0, 1.0, 1.0]
    assert shipped.weights(NAMES, "DE").tolist() == [1.0, shipped.floor, 1.0]  # the shipped prior is not changed
    assert "1 range record" in applied.source and applied.floor == shipped.floor
    log = range_override_log(store)
    assert log.iloc[0][["binomial_name", "country_code", "country", "present", "reviewer", "note"]].tolist() == [
        "Vipera berus", "DE", "Germany", True, "ana", "museum specimen, Bavaria"]


def test_removing_a_shipped_present_record_gives_the_floor(store, shipped):
    add_range_override(store, 7, "FR", False, "bo")
    applied = effective_prior(store, shipped)
    assert applied.weights(NAMES, "FR").tolist() == [1.0, 1.0, applied.floor]
    assert applied.records(NAMES, "FR").tolist() == [1, 1, 0]


def test_the_latest_record_of_a_pair_wins(store, shipped):
    add_range_override(store, 1740, "DE", True, "ana")
    add_range_override(store, 1137, "DE", False, "ana")
    add_range_override(store, 1740, "de", False, "bo", "the Bavarian record was a misidentified Natrix")
    current = current_range_overrides(store)
    assert list(current.columns) == ["class_id", "binomial_name", "country_code", "present"]
    assert current.values.tolist() == [[1137, "Natrix natrix", "DE", False], [1740, "Vipera berus", "DE", False]]
    log = range_override_log(store)
    assert log["reviewer"].tolist() == ["bo", "ana", "ana"] and log["override_id"].is_monotonic_decreasing
    applied = effective_prior(store, shipped)
    assert applied.weights(NAMES, "DE").tolist() == [applied.floor, applied.floor, 1.0]


@pytest.mark.parametrize(("country", "reason"), [("ZZ", "unknown country"), ("Korea", "South or North Korea"),
                                                 ("Atlantis", "not a country snakeweb knows")])
def test_a_country_that_is_not_exactly_one_is_refused_with_a_sentence(store, country, reason):
    with pytest.raises(CountryError, match=reason) as refused:
        add_range_override(store, 1740, country, True, "ana")
    assert "Give an ISO code such as DE" in str(refused.value)
    assert range_override_log(store).empty


def test_an_unknown_class_an_empty_reviewer_and_a_presence_that_is_not_a_flag_are_refused(store):
    with pytest.raises(SnakewebError, match="Class id 99 is not in this store's species table; pick a species"):
        add_range_override(store, 99, "DE", True, "ana")
    for nobody in ("", "   "):
        with pytest.raises(SnakewebError, match="needs the reviewer's name"):
            add_range_override(store, 1740, "DE", True, nobody)
    with pytest.raises(SnakewebError, match="True or False"):
        add_range_override(store, 1740, "DE", "no", "ana")
    assert range_override_log(store).empty and overrides_version(store) == 0


def test_range_records_alone_make_a_prior_for_a_store_without_a_table(store):
    assert effective_prior(store, None) is None
    assert CountryPrior.from_overrides(current_range_overrides(store)) is None
    add_range_override(store, 1137, "Brazil", False, "ana")
    alone = effective_prior(store, None)
    # only removals there: no species is recorded present, so the prior must change nothing
    assert not alone.knows("BR") and alone.weights(NAMES, "BR").tolist() == [1.0, 1.0, 1.0]
    add_range_override(store, 7, "BR", True, "ana")
    alone = effective_prior(store, None)
    assert alone.knows("BR") and alone.weights(NAMES, "BR").tolist() == [alone.floor, 1.0, 1.0]
    assert alone.apply(np.array([[0.5, 0.3, 0.2]]), NAMES, ["BR"]).sum() == pytest.approx(1.0)
    assert not alone.knows("DE") and alone.source == "2 range record(s)"


def test_a_country_only_the_records_mention_becomes_known(store, shipped):
    assert not shipped.knows("BR")
    add_range_override(store, 1740, "BR", True, "ana")
    applied = effective_prior(store, shipped)
    # the species the records do not mention have no record there (unknown, not absent): they keep their weight
    assert applied.knows("BR") and applied.records(NAMES, "BR").tolist() == [-1, 1, -1]
    assert applied.weights(NAMES, "BR").tolist() == [1.0, 1.0, 1.0]
    add_range_override(store, 7, "BR", False, "ana")
    assert effective_prior(store, shipped).weights(NAMES, "BR").tolist() == [1.0, 1.0, shipped.floor]
    assert applied.weights(NAMES, "DE").tolist() == shipped.weights(NAMES, "DE").tolist()  # other countries unchanged


def test_a_live_prior_reads_new_records_when_the_version_changes(store, shipped):
    live = LivePrior(store, shipped)
    assert live.current() is shipped
    add_range_override(store, 1740, "DE", True, "ana")
    first = live.current()
    assert first.weights(NAMES, "DE")[1] == 1.0 and live.current() is first  # not re-read while nothing changed
    add_range_override(store, 1740, "DE", False, "bo")
    assert live.current().weights(NAMES, "DE")[1] == shipped.floor


# a built store: evaluate, export and the Review page -----------------------------------------------------

@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_model_dir, photo_folder, species_csv):
    """The synthetic photo store (Natrix natrix 1130, Vipera berus 1740, Zamenis longissimus 7) built with a
    shipped table where every species is present in Germany; every observation is placed in Germany."""
    folder = tmp_path_factory.mktemp("ranges")
    table = folder / "relevance.csv"
    table.write_text("species,DE,FR\nNatrix natrix,1,1\nVipera berus,1,1\nZamenis longissimus,1,0\n")
    store = Store(build_photo_store(folder / "store", tiny_model_dir, photo_folder, species_csv, "--country-table", str(table)))
    with store.connect() as con:
        con.execute("UPDATE observations SET country_code = 'DE'")
    return store, table


def test_evaluate_and_export_apply_the_store_s_range_records(built):
    store, table = built
    # floor 0: a species recorded absent can never be called there, so the effect of one record is certain
    prior = CountryPrior.from_csv(table, floor=0.0)
    before = pd.DataFrame(evaluate(store, "test", prior, save=False)["species_metrics"])
    called = before[(before["variant"] == "argmax/prior=country") & (before["recall"] > 0)]
    assert not called.empty
    target = int(called.iloc[0]["class_id"])
    assert target in set(export_submission(store, None, "argmax", prior)["class_id"])
    add_range_override(store, target, "DE", False, "ana", "not found in Germany")
    try:
        after = pd.DataFrame(evaluate(store, "test", prior, save=False)["species_metrics"])
        recall = after.set_index(["variant", "class_id"])["recall"]
        assert recall[("argmax/prior=country", target)] == 0
        assert recall[("argmax/prior=none", target)] == before.set_index(["variant", "class_id"])["recall"][("argmax/prior=none", target)]
        assert target not in set(export_submission(store, None, "argmax", prior)["class_id"])
        assert target in set(export_submission(store, None, "argmax", None)["class_id"])
    finally:  # later tests on this store start from the shipped table again
        add_range_override(store, target, "DE", True, "ana", "restored")


def test_review_page_saves_a_range_record_that_takes_effect(built, monkeypatch):
    store, table = built
    monkeypatch.setenv("SNAKEWEB_STORE", str(store.root))
    # an upper bound for one script run on a busy machine (loading the model on the first page), not a speed assertion
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=900).run()
    app.switch_page("views/review.py").run()
    assert not app.exception and any(h.value == "Species ranges" for h in app.subheader)
    app.selectbox(key="range-species").set_value(7)
    app.selectbox(key="range-country").set_value("FR").run()
    assert any("Shipped table: **recorded absent**" in m.value for m in app.markdown)
    app.button(key="range-save").click().run()  # no reviewer name yet: refused with a sentence
    assert not app.exception and any("needs the reviewer's name" in e.value for e in app.error)
    before = overrides_version(store)
    app.text_input[0].set_value("ana")
    app.radio(key="range-present").set_value("recorded present")
    app.text_input(key="range-note").set_value("photographed near Lyon")
    app.button(key="range-save").click().run()
    assert not app.exception
    assert any("Saved: Zamenis longissimus recorded present in France (FR)" in s.value for s in app.success)
    assert overrides_version(store) > before
    newest = range_override_log(store).iloc[0]
    assert (newest["class_id"], newest["country_code"], newest["present"], newest["reviewer"], newest["note"]) == (
        7, "FR", True, "ana", "photographed near Lyon")
    assert effective_prior(store, CountryPrior.from_csv(table)).records(NAMES, "FR").tolist() == [1, 1, 1]
    assert any("range record in effect: present (by ana" in m.value for m in app.markdown)
    shown = next(d.value for d in app.dataframe if "override_id" in d.value.columns)
    assert shown.iloc[0]["binomial_name"] == "Zamenis longissimus" and shown.iloc[0]["country"] == "France"
