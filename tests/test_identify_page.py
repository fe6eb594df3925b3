"""The Identify page, driven by Streamlit's AppTest through app.py on a real store built with the tiny model.
Expected numbers and sentences come from `Identifier.identify` on the same photo: the page must show the
library's answer, not its own."""

import pytest
from streamlit.testing.v1 import AppTest

from snakeweb.identify import Identifier
from snakeweb.ranges import add_range_override
from snakeweb.store import Store
from tests.conftest import REPO, SYNTHETIC_SPECIES, build_photo_store

APP = str(REPO / "app.py")


@pytest.fixture(scope="module")
def species_with_unknown(tmp_path_factory):
    """Natrix natrix without a venom record: its photos must never get a green banner."""
    path = tmp_path_factory.mktemp("species-unknown") / "species.csv"
    flags = {"Natrix natrix": "", "Vipera berus": "1", "Zamenis longissimus": "0"}
    path.write_text("class_id,binomial_name,MIVS\n" + "".join(f"{i},{n},{flags[n]}\n" for n, i in SYNTHETIC_SPECIES.items()))
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory, tiny_model_dir, photo_folder, species_with_unknown):
    # no species x country table: the country picker must wait for range records
    return build_photo_store(tmp_path_factory.mktemp("identify-page") / "store", tiny_model_dir, photo_folder, species_with_unknown)


@pytest.fixture(scope="module")
def identifier(store):
    return Identifier(Store(store))


def page(monkeypatch, store_root) -> AppTest:
    monkeypatch.setenv("SNAKEWEB_STORE", str(store_root))
    # an upper bound for one script run on a busy machine, not a speed assertion
    return AppTest.from_file(APP, default_timeout=900).run()


def upload(app: AppTest, photo_folder, species: str) -> AppTest:
    photo = (photo_folder / species.replace(" ", "_") / "04.jpg").read_bytes()
    return app.file_uploader[0].set_value([("snake.jpg", photo, "image/jpeg")]).run()


def expected(identifier, photo_folder, species: str, **options):
    return identifier.identify([("snake.jpg", photo_folder / species.replace(" ", "_") / "04.jpg")], **options)


def test_controls_before_an_upload(store, monkeypatch):
    app = page(monkeypatch, store)
    assert not app.exception and app.title[0].value == "Identify a snake"
    country, rank = app.selectbox
    assert country.disabled and country.value is None  # neither a country table nor range records yet
    assert any("no species x country table" in c.value and "no range records" in c.value for c in app.caption)
    assert app.radio[0].label == "Range check" and app.radio[0].options == ["down-weight species not recorded there",
                                                                             "only species recorded there"]
    assert app.radio[0].disabled  # no country, nothing to check
    assert rank.label == "Answer at" and rank.value is None
    assert rank.options == ["auto (as precise as validation allows)", "species", "genus", "family"]
    assert not app.slider  # the validation thresholds replaced the old "uncertain below" slider
    assert any("Upload one or more photos" in i.value for i in app.info)


def test_venomous_photo_gets_the_red_banner_first(store, photo_folder, identifier, monkeypatch):
    app = upload(page(monkeypatch, store), photo_folder, "Vipera berus")
    assert not app.exception
    want = expected(identifier, photo_folder, "Vipera berus")
    assert want.p_venomous >= 0.5 and want.prediction == "Vipera berus"
    assert len(app.error) == 1 and not app.success
    banner = app.error[0].value
    assert banner.startswith(f"**☠️ {want.headline} — keep away, treat as dangerous.**")
    assert f"Venomous candidates: Vipera berus ({want.species[0].probability:.0%})" in banner
    assert app.subheader[0].value == f"*Vipera berus* · {want.prediction_score:.0%} · ☠️ VENOMOUS"
    assert any(m.value == want.answer_text for m in app.markdown)
    assert [s.value for s in app.subheader[1:]] == ["Top 5 from the classifier", "Nearest reference images"]
    table = app.table[0].value
    assert table.index.tolist() == [c.binomial_name for c in want.raw_top_k] and len(table) == 3
    assert table.columns.tolist() == ["family", "probability", "venom status"]
    assert table.loc["Vipera berus", "venom status"] == "☠️ VENOMOUS"
    assert table.loc["Natrix natrix", "venom status"] == "❓ venom status unknown"
    assert table.loc["Vipera berus", "probability"] == f"{want.raw_top_k[0].probability:.1%}"
    assert sum(b.label == "Search similar" for b in app.button) == 12


def test_unknown_venom_status_is_never_green(store, photo_folder, identifier, monkeypatch):
    app = upload(page(monkeypatch, store), photo_folder, "Natrix natrix")
    want = expected(identifier, photo_folder, "Natrix natrix")
    assert want.prediction == "Natrix natrix" and want.p_unknown_venom >= 0.5 and want.p_venomous < 0.5
    assert not app.exception and not app.success
    banner = app.error[0].value
    assert banner.startswith(f"**☠️ Possibly venomous — keep away, treat as dangerous.** {want.headline}")
    assert "Venom status unknown: Natrix natrix" in banner
    assert app.subheader[0].value == f"*Natrix natrix* · {want.prediction_score:.0%} · ❓ venom status unknown"


def test_a_harmless_answer_from_a_store_too_small_to_vouch_for_it_is_no_all_clear(store, photo_folder, identifier, monkeypatch):
    """The tiny store's validation is too small to choose thresholds or to tell a photo unlike its snakes, so a
    harmless answer at a low p(venomous) gets no green banner (a cottonmouth, a species such a store lacked, was
    answered grass snake under the all-clear). The green banner itself: test_the_banner_names_every_..."""
    app = upload(page(monkeypatch, store), photo_folder, "Zamenis longissimus")
    want = expected(identifier, photo_folder, "Zamenis longissimus")
    assert want.venom_status == "harmless" and want.p_venomous + want.p_unknown_venom < 0.1
    assert want.out_of_store is None and want.venom_level == "unknown"
    assert not app.exception and not app.error and not app.success
    assert app.warning[0].value.startswith(f"**❓ {want.headline} — not enough to call it harmless: treat as possibly venomous.**")
    # why, and not in words that call the known (harmless) status unknown
    assert "No all-clear: the store cannot tell whether the photo is like its snakes" in app.warning[0].value
    assert "venom status" not in app.warning[0].value.split("No all-clear:")[1].split("  \n")[0]
    app.selectbox[1].set_value("genus").run()
    genus = expected(identifier, photo_folder, "Zamenis longissimus", rank="genus")
    assert genus.prediction_rank == "genus" and genus.prediction == "Zamenis"
    assert app.subheader[0].value == "Genus *Zamenis*: species uncertain · harmless"
    assert any(m.value == genus.answer_text for m in app.markdown)
    with_provenance = [e for e in app.expander if e.label == "Where this answer came from"]
    assert len(with_provenance) == 1
    text = "\n".join(m.value for m in with_provenance[0].markdown)
    assert f"`{genus.provenance['head_id']}`" in text and f"`{Store(store).get_meta('store_id')}`" in text
    assert "**Answer rank** genus" in text and "**Range check** prior · country not given" in text
    assert f"**snakeweb** {genus.provenance['snakeweb_version']}" in text


def test_range_records_enable_the_country_check_and_flag_out_of_range(store, photo_folder, monkeypatch):
    records = Store(store)
    add_range_override(records, SYNTHETIC_SPECIES["Zamenis longissimus"], "GB", False, "ana")
    for name in ("Vipera berus", "Natrix natrix"):
        add_range_override(records, SYNTHETIC_SPECIES[name], "GB", True, "ana")
    identifier = Identifier(records)  # a fresh one: the records are part of what it answers with
    assert identifier.ranges.current() is not None and identifier.base_prior is None
    app = page(monkeypatch, store)
    assert not app.selectbox[0].disabled
    app.selectbox[0].set_value("GB").run()
    assert not app.radio[0].disabled
    app = upload(app, photo_folder, "Zamenis longissimus")
    want = expected(identifier, photo_folder, "Zamenis longissimus", country="GB")
    assert want.out_of_range is True and want.unconstrained_top.binomial_name == "Zamenis longissimus"
    assert not app.exception
    assert any(w.icon == "📍" and w.value == "Zamenis longissimus is outside its known range in United Kingdom: a possible escaped pet or range "
               "extension — worth a review." for w in app.warning)
    headings = [s.value for s in app.subheader]
    assert headings[1:3] == ["Top 5 from the classifier", "After the range check in United Kingdom"]
    raw, adjusted = app.table[0].value, app.table[1].value
    assert raw.index.tolist() == [c.binomial_name for c in want.raw_top_k]
    assert adjusted.loc["Zamenis longissimus", "probability"] == next(
        f"{c.probability:.1%}" for c in want.species if c.binomial_name == "Zamenis longissimus")

    app.radio[0].set_value("filter").run()  # the filter: Zamenis cannot be the answer in GB
    filtered = expected(identifier, photo_folder, "Zamenis longissimus", country="GB", range_mode="filter")
    assert filtered.prediction != "Zamenis longissimus" and filtered.out_of_range is True
    assert not app.exception
    assert app.subheader[0].value.startswith(f"*{filtered.prediction}*")
    assert any(m.value == filtered.answer_text for m in app.markdown)
    possibly = filtered.p_venomous + filtered.p_unknown_venom
    banner = (app.error if possibly >= 0.5 else app.warning)[0].value
    assert filtered.headline in banner
    provenance = "\n".join(m.value for e in app.expander for m in e.markdown)
    assert "**Range check** filter · country United Kingdom (GB)" in provenance


def test_every_page_url_resolves_without_a_store(tmp_path, monkeypatch):
    app = page(monkeypatch, tmp_path / "no-store")
    assert not app.exception and app.title[0].value == "Build a store"  # "/" forwards to Build
    app.switch_page("views/identify.py").run()  # a bookmarked /identify: a sentence and a link, not an error
    assert not app.exception and app.title[0].value == "Identify"
    assert any("There is no store at" in i.value and "build one first" in i.value for i in app.info)


def test_a_venomous_species_the_filter_removed_is_still_named_in_the_danger_banner(store, photo_folder, monkeypatch):
    # the banner listed venomous candidates after the filter, where the viper had 0%: "keep away" with no name
    records = Store(store)
    add_range_override(records, SYNTHETIC_SPECIES["Vipera berus"], "FR", False, "ana")
    for name in ("Zamenis longissimus", "Natrix natrix"):
        add_range_override(records, SYNTHETIC_SPECIES[name], "FR", True, "ana")
    identifier = Identifier(records)
    want = expected(identifier, photo_folder, "Vipera berus", country="FR", range_mode="filter")
    viper = next(c for c in want.raw_top_k if c.binomial_name == "Vipera berus")
    assert want.p_venomous >= 0.5 and all(c.probability == 0 for c in want.species if c.binomial_name == "Vipera berus")
    app = page(monkeypatch, store)
    app.selectbox[0].set_value("FR").run()
    app.radio[0].set_value("filter").run()
    app = upload(app, photo_folder, "Vipera berus")
    assert not app.exception
    assert f"Venomous candidates: Vipera berus ({viper.probability:.0%})" in app.error[0].value


def _banner_of_a_result(level: str) -> None:
    """AppTest script: the venom banner of a made-up result at `level` (a viper sixth at 7%, a species of unknown status at 6%)."""
    from snakeweb.identification import Identification, SpeciesCandidate
    from views.answer_parts import venom_banner

    result = Identification(venom_level=level, headline="Venomous: 13% likely", p_venomous=0.13, possibly_venomous=[
        SpeciesCandidate(415, "Crotalus horridus", 0.07, "venomous", True),
        SpeciesCandidate(999, "Oddus gamma", 0.06, "unknown", None)])
    venom_banner(result)


@pytest.mark.parametrize("level, element", [("danger", "error"), ("caution", "warning"), ("unknown", "warning"),
                                            ("harmless", "success")])
def test_the_banner_names_every_possibly_venomous_species_at_every_level(level, element):
    # the caution banner named none: a viper sixth at 7% was on no part of the page (the tables show the top 5)
    app = AppTest.from_function(_banner_of_a_result, args=(level,), default_timeout=900).run()
    assert not app.exception
    text = getattr(app, element)[0].value
    assert "Venomous candidates: Crotalus horridus (7%)." in text and "Venom status unknown: Oddus gamma (6%)." in text
