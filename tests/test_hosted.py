"""Hosted mode: nothing from the store reaches a client that has not logged in; only the store's own files
are served; secrets stay out of pages and logs."""

import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from streamlit.testing.v1 import AppTest

from snakeweb.auth import hash_password
from tests.conftest import REPO, build_photo_store

PASSWORD = "correct-horse-battery"
PAGES = ["views/identify.py", "views/search.py", "views/explore.py", "views/metrics.py", "views/review.py", "views/build.py"]


@pytest.fixture(scope="module")
def store(tmp_path_factory, tiny_model_dir, photo_folder, species_csv):
    return build_photo_store(tmp_path_factory.mktemp("hosted") / "store", tiny_model_dir, photo_folder, species_csv)


def gated_app(store, monkeypatch) -> AppTest:
    monkeypatch.setenv("SNAKEWEB_STORE", str(store))
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=900)
    app.secrets["reviewers"] = {"ana": hash_password(PASSWORD, iterations=1000)}
    return app


def rendered_text(app: AppTest) -> str:
    parts = [e.value for kind in ("title", "markdown", "caption", "info", "error", "warning", "success", "code", "text")
             for e in getattr(app, kind)]
    parts += [str(e.value) for e in app.dataframe] + [str(e.value) for e in app.table]
    return "\n".join(map(str, parts))


@pytest.mark.parametrize("page", PAGES)
def test_no_page_shows_store_data_before_login(store, monkeypatch, page):
    app = gated_app(store, monkeypatch)
    app.switch_page(page).run()
    assert not app.exception
    text = rendered_text(app)
    for secret_or_data in ("Natrix", "Vipera", "Zamenis", str(store), "photos", PASSWORD, "pbkdf2"):
        assert secret_or_data not in text
    assert not app.dataframe and not app.table and not app.file_uploader and not app.sidebar.markdown


def test_failed_login_never_echoes_the_password(store, monkeypatch):
    app = gated_app(store, monkeypatch).run()
    app.text_input[0].set_value("ana")
    app.text_input[1].set_value("a-guess-" + PASSWORD)
    app.button[0].click().run()
    assert "wrong password" in rendered_text(app) and PASSWORD not in rendered_text(app)


def test_search_refuses_image_ids_outside_the_store(store, monkeypatch):
    monkeypatch.setenv("SNAKEWEB_STORE", str(store))
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=900).run()
    app.switch_page("views/search.py").run()
    app.radio[0].set_value("a store image").run()
    app.number_input[0].set_value(999_999).run()
    assert any("is not in this store" in e.value for e in app.error) and not app.exception


@pytest.fixture(scope="module")
def gated_server(store, tmp_path_factory):
    """`streamlit run app.py` with a reviewers list, from a folder holding the secrets (as an operator would)."""
    home = tmp_path_factory.mktemp("operator")
    (home / ".streamlit").mkdir()
    shutil.copy(REPO / ".streamlit" / "config.toml", home / ".streamlit" / "config.toml")
    (home / ".streamlit" / "secrets.toml").write_text(f'[reviewers]\nana = "{hash_password(PASSWORD, iterations=1000)}"\n')
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = home / "server.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"), "--server.port", str(port), "--server.address", "127.0.0.1"],
        cwd=home, env={**os.environ, "SNAKEWEB_STORE": str(store), "PYTHONPATH": str(REPO)},
        stdout=open(log, "w"), stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            urllib.request.urlopen(url + "/_stcore/health", timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    yield url, log
    process.terminate()
    process.wait(timeout=20)


def fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.mark.parametrize("path", ["/", "/identify", "/search", "/metrics", "/review", "/build", "/media/x.jpg",
                                  "/app/static/../../etc/passwd", "/media/..%2F..%2Fetc%2Fpasswd", "/_stcore/health"])
def test_plain_http_gets_no_store_data(gated_server, store, path):
    url, _ = gated_server
    status, body = fetch(url + path)
    assert status in (200, 400, 403, 404)
    for data in (b"Natrix", b"Vipera", str(store).encode(), b"root:x:0:0"):
        assert data not in body


def test_secrets_stay_out_of_the_server_log(gated_server):
    url, log = gated_server
    fetch(url + "/")
    text = log.read_text()
    assert PASSWORD not in text and "pbkdf2_sha256$" not in text


def test_hosted_build_page_offers_no_build_or_store_switch(store, monkeypatch):
    app = gated_app(store, monkeypatch).run()
    app.text_input[0].set_value("ana")
    app.text_input[1].set_value(PASSWORD)
    app.button[0].click().run()
    app.switch_page("views/build.py").run()
    assert not app.exception
    assert any("hosted with logins" in i.value for i in app.info)
    assert not app.text_input  # no folder or store path can be typed in
    assert any("index" in s.value for s in app.success)  # the integrity verdicts are shown
