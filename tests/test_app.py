"""The dashboard, driven by Streamlit's AppTest on a real (tiny-model) store."""

import pytest
from streamlit.testing.v1 import AppTest

from pipelines.cli import main
from tests.conftest import REPO


def test_fresh_clone_without_store_says_how_to_build(tmp_path, monkeypatch):
    monkeypatch.setenv("SNAKEWEB_STORE", str(tmp_path / "no-store"))
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=60).run()
    assert not app.exception
    assert "build a store first" in app.title[0].value
    assert "python -m pipelines build" in app.code[0].value


@pytest.fixture(scope="module")
def store(tmp_path_factory, tiny_model_dir, photo_folder, species_csv):
    root = tmp_path_factory.mktemp("app") / "store"
    assert main(["build", "--store", str(root), "--images", str(photo_folder), "--species", str(species_csv),
                 "--model", str(tiny_model_dir), "--skip-project"]) == 0
    return root


def test_identify_page_renders_with_a_store(store, monkeypatch):
    monkeypatch.setenv("SNAKEWEB_STORE", str(store))
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    assert not app.exception
    assert app.title[0].value == "Identify a snake"
    assert any("Upload one or more photos" in i.value for i in app.info)
    assert any("3 species" in m.value for m in app.sidebar.markdown)
