"""End to end in a real headless browser: `streamlit run app.py` on a free local port, a real photo
uploaded, species names and neighbour images seen on the page. Screenshots land in artifacts/screenshots/."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import REPO, shared

pytestmark = pytest.mark.integration
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOTS = REPO / "artifacts" / "screenshots"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(imagenet_store):
    port = free_port()
    env = {**os.environ, "SNAKEWEB_STORE": str(imagenet_store)}
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.address", "127.0.0.1",
         "--server.headless", "true"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url + "/_stcore/health", timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        process.kill()
        pytest.fail("streamlit did not start: " + process.stdout.read().decode()[-2000:])
    yield url
    process.terminate()
    process.wait(timeout=20)


@pytest.fixture(scope="module")
def page(server):
    if CHROMIUM is None:
        pytest.skip("Debian chromium is not installed (.ci/run installs it)")
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        page.set_default_timeout(120_000)
        yield page
        browser.close()


def wait_until_idle(page) -> None:
    """Streamlit shows a running indicator while a script run is in flight; wait for it to go."""
    page.wait_for_timeout(300)
    page.locator("[data-testid=stStatusWidget]").wait_for(state="hidden")


def identify_in_browser(page, server, photo, expected_caption: str) -> float:
    """Seconds from choosing the file to the photo's own neighbour caption drawn (the grid is drawn last)."""
    page.goto(server + "/")
    page.get_by_text("Upload one or more photos").wait_for()
    started = time.perf_counter()
    page.locator("input[type=file]").set_input_files(str(photo))
    page.get_by_text(expected_caption).wait_for()
    elapsed = time.perf_counter() - started
    page.locator("[data-testid=stImage] img").nth(11).wait_for()
    wait_until_idle(page)
    return elapsed


def test_upload_a_real_photo_and_see_species_and_neighbours(server, page):
    photos = shared("images", "imagenet-snakes")
    # warm-up: the first identification loads the model once in the server process
    identify_in_browser(page, server, photos / "n01755581_diamondback.JPEG", "Crotalus adamanteus ☠️ · 1.000")
    round_trip = identify_in_browser(page, server, photos / "n01728572_thunder_snake.JPEG", "Carphophis amoenus · 1.000")
    print(f"identify round trip in the browser (model loaded): {round_trip:.2f} s")
    page.screenshot(path=str(SCREENSHOTS / "identify.png"), full_page=True)
    assert page.get_by_role("heading", name="Carphophis amoenus").count() == 1  # the verdict
    assert page.get_by_text("Carphophis amoenus · 1.000").count() == 1  # the photo itself is its nearest neighbour
    assert page.locator("[data-testid=stImage] img").count() == 12  # the 12 nearest reference images
    assert page.locator("[data-testid=stException]").count() == 0


@pytest.mark.parametrize("path, text", [  # Identify is the default page, served at /
    ("search", "Search similar images"), ("explore", "Explore the embedding map"), ("metrics", "Metrics"),
    ("review", "Review predictions"), ("build", "Build a store"),
])
def test_every_page_renders_in_the_browser(server, page, path, text):
    page.goto(f"{server}/{path}")
    page.get_by_role("heading", name=text).first.wait_for()
    wait_until_idle(page)
    assert page.locator("[data-testid=stException]").count() == 0
    page.screenshot(path=str(SCREENSHOTS / f"{path}.png"), full_page=True)
