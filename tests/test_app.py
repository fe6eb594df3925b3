"""Every dashboard page, driven by Streamlit's AppTest on a real store built with the tiny model."""

import pytest
from streamlit.testing.v1 import AppTest

from snakeweb.auth import hash_password
from snakeweb.review import reviews
from snakeweb.store import Store
from tests.conftest import REPO, build_photo_store

APP = str(REPO / "app.py")


def app_test(monkeypatch, store_root) -> AppTest:
    monkeypatch.setenv("SNAKEWEB_STORE", str(store_root))
    # an upper bound for one script run on a busy machine (e.g. loading a model while another build runs), not a speed assertion
    return AppTest.from_file(APP, default_timeout=900)


@pytest.fixture(scope="module")
def store(tmp_path_factory, tiny_model_dir, photo_folder, species_csv):
    return build_photo_store(tmp_path_factory.mktemp("app") / "store", tiny_model_dir, photo_folder, species_csv)


def test_fresh_clone_without_store_opens_the_build_page(tmp_path, monkeypatch):
    app = app_test(monkeypatch, tmp_path / "no-store").run()
    assert not app.exception
    assert app.title[0].value == "Build a store"
    assert any("python -m pipelines build" in i.value for i in app.info)
    assert app.text_input[0].label.startswith("Image folder")


def test_build_page_refuses_an_empty_store_directory(tmp_path, monkeypatch, photo_folder):
    # Path("") is the folder the dashboard runs in: the build went there
    monkeypatch.chdir(tmp_path)
    app = app_test(monkeypatch, tmp_path / "no-store").run()
    app.text_input[0].set_value(str(photo_folder))
    app.text_input[3].set_value("  ")
    app.button[0].click().run()
    assert not app.exception
    assert [e.value for e in app.error] == ["Give a store directory."] and "build_job" not in app.session_state
    assert list(tmp_path.iterdir()) == []


def test_identify_page_identifies_an_upload(store, photo_folder, monkeypatch):
    app = app_test(monkeypatch, store).run()
    assert not app.exception and app.title[0].value == "Identify a snake"
    assert any("3 species" in m.value for m in app.sidebar.markdown)
    photo = (photo_folder / "Vipera_berus" / "04.jpg").read_bytes()
    app.file_uploader[0].set_value([("viper.jpg", photo, "image/jpeg")]).run()
    assert not app.exception
    assert any("Vipera berus" in e.value for e in app.error)  # the venomous warning names it
    table = app.table[0].value
    assert table.index[0] == "Vipera berus" and len(table) == 3
    assert sum(b.label == "Search similar" for b in app.button) == 12  # 12 neighbours, each opens Search


def test_identify_rejects_a_non_image_upload_with_a_sentence(store, monkeypatch):
    app = app_test(monkeypatch, store).run()
    app.file_uploader[0].set_value([("notes.jpg", b"<html>not an image</html>", "image/jpeg")]).run()
    assert not app.exception
    assert any("None of the photos could be read" in e.value for e in app.error)


def test_search_page_by_store_image_with_filters(store, monkeypatch):
    app = app_test(monkeypatch, store).run()
    app.switch_page("views/search.py").run()
    assert not app.exception and app.title[0].value == "Search similar images"
    app.radio[0].set_value("a store image").run()
    app.number_input[0].set_value(3).run()
    assert not app.exception
    assert any("result(s)" in c.value for c in app.caption)
    app.selectbox[0].set_value("venomous only").run()
    assert any("among 8 images passing the filters" in c.value for c in app.caption)


def test_explore_page_draws_the_map(store, monkeypatch):
    app = app_test(monkeypatch, store).run()
    app.switch_page("views/explore.py").run()
    assert not app.exception and app.title[0].value == "Explore the embedding map"
    assert any("24 points" in c.value and "All points shown" in c.value for c in app.caption)
    assert app.selectbox[0].options == ["species", "genus", "venom status", "correct / incorrect"]


def test_metrics_page_shows_official_numbers(store, monkeypatch):
    app = app_test(monkeypatch, store).run()
    app.switch_page("views/metrics.py").run()
    assert not app.exception and app.title[0].value == "Metrics"
    official = app.dataframe[0].value
    assert set(official["decision"]) == {"argmax", "venom-aware"}
    assert {"macro F1", "Track1 ↑", "Track2 ↓", "venomous→harmless %"} <= set(official.columns)
    # the venomous / harmless table: rows the true status, columns the predicted one, agreeing with PSC_total
    from snakeweb.evaluation import evaluate

    shown = next(d.value for d in app.dataframe if d.value.index.name == "truth")
    assert list(shown.index) == ["harmless", "venomous"] and list(shown.columns) == ["harmless", "venomous"]
    report = evaluate(Store(store), "test", save=False)["variants"]["argmax/prior=none"]
    c00, c01, c10, c11 = report["PSC_total"]
    assert shown.loc["harmless", "venomous"] == c01 and shown.loc["venomous", "harmless"] == c10
    truth = Store(store).query("SELECT s.venom_status, count(*) AS n FROM observations o JOIN species s USING (class_id) "
                               "WHERE o.split = 'test' GROUP BY s.venom_status").set_index("venom_status")["n"]
    assert shown.loc["venomous"].sum() == truth.get("venomous", 0) and shown.loc["harmless"].sum() == truth.get("harmless", 0)
    assert truth.get("venomous", 0) != truth.get("harmless", 0)  # so a table the wrong way round would fail the line above
    app.button[0].click().run()  # prepare the submission CSV
    assert not app.exception


def test_metrics_page_shows_the_saved_evaluation(store, tmp_path, monkeypatch):
    import shutil

    from pipelines.cli import main

    copy = shutil.copytree(store, tmp_path / "store")
    assert main(["evaluate", "--store", str(copy), "--split", "train"]) == 0
    app = app_test(monkeypatch, copy).run()
    app.switch_page("views/metrics.py").run()
    app.selectbox[0].set_value("train").run()
    assert not app.exception
    assert any("Scores saved by the evaluate stage" in c.value for c in app.caption)
    saved = Store(copy).get_meta("evaluation")["variants"]
    shown = app.dataframe[0].value.set_index("decision")
    assert shown.loc["argmax", "macro F1"] == pytest.approx(saved["argmax/prior=none"]["F1 Score"])
    # the store changes under the running dashboard (a venom status corrected): the same server must not keep
    # serving the report it cached, nor call it saved
    with Store(copy).transaction() as con:
        con.execute("UPDATE species SET venom_status = CASE WHEN venom_status = 'venomous' THEN 'harmless' ELSE 'venomous' END "
                    "WHERE class_id = (SELECT min(class_id) FROM species)")
    app.run()
    assert not app.exception and not any("Scores saved" in c.value for c in app.caption)
    assert main(["evaluate", "--store", str(copy), "--split", "train"]) == 0
    app.run()
    assert any("Scores saved by the evaluate stage" in c.value for c in app.caption)
    # the recorded country table edited in place, its time and size kept: still not the saved report's table
    import os

    from snakeweb.store import set_meta

    table = tmp_path / "Species_Relevance.csv"
    names = Store(copy).species()["binomial_name"].tolist()
    table.write_text("binomial_name;FR\n" + "".join(f"{n};1\n" for n in names))
    with Store(copy).transaction() as con:  # photo folders carry no country: the observations are given one
        set_meta(con, "country_table", str(table))
        con.execute("UPDATE observations SET country_code = 'FR'")
    assert main(["evaluate", "--store", str(copy), "--split", "train"]) == 0
    app.run()
    assert any("Scores saved by the evaluate stage" in c.value for c in app.caption)
    stat = table.stat()
    table.write_text(table.read_text().replace(";1\n", ";0\n", 1))
    os.utime(table, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    app.run()
    assert not app.exception and not any("Scores saved" in c.value for c in app.caption)
    if app.multiselect[0].options:  # a country chosen: scored now, on those observations only
        app.multiselect[0].set_value(app.multiselect[0].options[:1]).run()
        assert not app.exception and not any("Scores saved" in c.value for c in app.caption)


def test_review_page_saves_a_review_and_reads_it_back(store, monkeypatch):
    app = app_test(monkeypatch, store).run()
    app.switch_page("views/review.py").run()
    assert not app.exception and app.title[0].value == "Review predictions"
    app.text_input[0].set_value("ana").run()
    observation = app.selectbox[0].value
    app.selectbox[1].set_value(7).run()  # correct it to Zamenis longissimus
    app.button[0].click().run()
    assert not app.exception
    saved = reviews(Store(store))
    assert saved.iloc[-1]["observation_id"] == observation and saved.iloc[-1]["reviewer"] == "ana"
    assert saved.iloc[-1]["new_class_id"] == 7 and saved.iloc[-1]["new_species"] == "Zamenis longissimus"
    assert observation in app.dataframe[-1].value["observation_id"].tolist()
    # the page says so after the rerun that refreshes the queue (said before st.rerun(), it was thrown away)
    assert [s.value for s in app.success] == [f"Saved: {observation} is Zamenis longissimus."]


def test_login_gate_blocks_every_page_until_logged_in(store, monkeypatch):
    app = app_test(monkeypatch, store)
    app.secrets["reviewers"] = {"ana": hash_password("s3cret", iterations=1000)}
    app.run()
    assert not app.exception
    assert [t.value for t in app.title] == ["snakeweb"]
    assert not app.dataframe and not app.sidebar.markdown  # no store data before login
    app.text_input[0].set_value("ana")
    app.text_input[1].set_value("wrong")
    app.button[0].click().run()
    assert any("wrong password" in e.value for e in app.error) and not app.dataframe
    app.text_input[1].set_value("s3cret")
    app.button[0].click().run()
    assert app.title[0].value == "Identify a snake"
    assert any("ana" in m.value for m in app.sidebar.markdown)


def test_build_page_builds_a_store_with_live_progress(tmp_path, monkeypatch, photo_folder, species_csv):
    import time

    bound_s = 30 * 60  # a generous upper bound, so a hung build fails the test instead of hanging the suite; not a speed assertion
    target = tmp_path / "built-from-page"
    app = app_test(monkeypatch, target).run()
    app.text_input[0].set_value(str(photo_folder))
    app.text_input[1].set_value(str(species_csv))
    app.text_input[3].set_value(str(target))
    app.selectbox[0].set_value("dinov2-small-offline")
    app.button[0].click().run()  # the form's Build button: starts the real build in a child process and returns
    assert not app.exception
    job = app.session_state["build_job"]
    assert any(s.label.startswith("Building") for s in app.status) or job.done  # the live progress box
    # photos gone from the folder are removed only when asked (the checkbox, off by default: --remove-gone)
    assert app.checkbox[0].label.startswith("Remove photos gone") and not app.checkbox[0].value
    assert "--images" in job.command and "--remove-gone" not in job.command
    # poll as a browser's 1 s fragment refresh would, however long the build takes on this machine
    deadline = time.monotonic() + bound_s
    while not job.done and time.monotonic() < deadline:
        time.sleep(1)
        app.run()
        assert not app.exception
    assert job.done, f"the build did not finish within {bound_s} s; last lines: {job.tail(15)}"
    app.run()  # the first run that sees the job finished records it and reruns the whole app
    assert not app.exception
    assert job.returncode == 0, job.tail(15)
    assert [s.label for s in app.status] == ["Build finished"]
    log = "\n".join(c.value for c in app.code)
    assert "build: done" in log and "predict:" in log  # the streamed progress lines are on the page
    assert app.session_state["store_root"] == str(target)
    app.run()  # the page now shows the new store, its counts and the files it could not use
    assert any(str(target) in m.value for m in app.sidebar.markdown)
    rejected = app.dataframe[-1].value
    assert sorted(p.rsplit("/", 1)[-1] for p in rejected["path"]) == ["empty.jpg", "notes.jpg"]
