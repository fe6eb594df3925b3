"""End to end in a real headless browser: `streamlit run app.py` on a free local port, a real photo
uploaded, species names and neighbour images seen on the page. Screenshots land in artifacts/screenshots/."""

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import CHROMIUM, NO_CHROMIUM, REPO, shared

# skipped before any fixture runs (the store build and the server would be wasted); the summary line says so too
pytestmark = [pytest.mark.integration, pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)]
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
         "--server.headless", "true",
         # no file watcher: an edit to any source file during the run would put a "File change, Rerun" notice in the
         # status widget, which wait_until_idle would wait on in vain
         "--server.fileWatcherType", "none"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
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


def assert_no_exception(page) -> None:
    """No traceback on the page; when there is one, its text is the failure message (CI logs keep only that)."""
    shown = page.locator("[data-testid=stException]")
    assert shown.count() == 0, "the page shows an exception:\n" + "\n".join(shown.all_inner_texts())


def main_text(page) -> str:
    return page.locator("[data-testid=stMain]").inner_text()


def test_upload_a_real_photo_and_see_species_and_neighbours(server, page):
    photos = shared("images", "imagenet-snakes")
    # warm-up: the first identification loads the model once in the server process
    identify_in_browser(page, server, photos / "n01755581_diamondback.JPEG", "Crotalus adamanteus ☠️ · 1.000")
    round_trip = identify_in_browser(page, server, photos / "n01728572_thunder_snake.JPEG", "Carphophis amoenus · 1.000")
    print(f"identify round trip in the browser (model loaded): {round_trip:.2f} s")
    assert page.get_by_role("heading", name="Carphophis amoenus").count() == 1  # the answer
    assert page.get_by_text("Carphophis amoenus · 1.000").count() == 1  # the photo itself is its nearest neighbour
    assert page.locator("[data-testid=stImage] img").count() == 12  # the 12 nearest reference images
    assert_no_exception(page)


def test_identify_opens_from_its_own_url_and_reads_in_one_glance(server, page):
    """/identify opened directly (a bookmark, a shared link): the page itself, not "Page not found"; after an
    upload the venom banner comes first, then the answer at its rank, then the classifier's top 5."""
    page.goto(server + "/identify")
    page.get_by_role("heading", name="Identify a snake").wait_for()
    wait_until_idle(page)
    assert page.get_by_text("Page not found").count() == 0 and page.url.endswith("/identify")
    page.locator("input[type=file]").set_input_files(str(shared("images", "imagenet-snakes") / "n01755581_diamondback.JPEG"))
    # bounded poll (the page's default timeout), whatever this machine's speed: the banner, then the last neighbour image
    page.locator("[data-testid=stAlert]").filter(has_text="Venomous:").first.wait_for()
    page.locator("[data-testid=stImage] img").nth(11).wait_for()
    wait_until_idle(page)
    text = main_text(page)
    (SCREENSHOTS / "identify.txt").write_text(text)
    page.screenshot(path=str(SCREENSHOTS / "identify.png"), full_page=True)
    print(text)
    banner = page.locator("[data-testid=stAlert]").first.inner_text()
    assert "Venomous:" in banner and "% likely" in banner  # the banner is the first alert on the page
    answer = page.get_by_role("heading").filter(has_text="Crotalus adamanteus")
    assert answer.count() == 1 and "VENOMOUS" in answer.inner_text()  # the answer line, at species rank
    assert "Top 5 from the classifier" in text and "Where this answer came from" in text
    assert text.index("Venomous:") < text.index("Crotalus adamanteus") < text.index("Top 5 from the classifier")
    assert_no_exception(page)


def test_root_lands_on_identify(server, page):
    page.goto(server + "/")
    page.get_by_role("heading", name="Identify a snake").wait_for()
    wait_until_idle(page)
    assert page.url.rstrip("/").endswith("/identify")  # "/" forwards, so the address bar shows the page's own URL
    assert page.get_by_text("Page not found").count() == 0


@pytest.mark.parametrize("path, text", [
    ("identify", "Identify a snake"), ("search", "Search similar images"), ("explore", "Explore the embedding map"),
    ("metrics", "Metrics"), ("review", "Review predictions"), ("build", "Build a store"),
])
def test_every_page_opens_from_its_own_url(server, page, path, text):
    page.goto(f"{server}/{path}")
    page.get_by_role("heading", name=text).first.wait_for()
    wait_until_idle(page)
    # a page served only at "/" answers its own URL with a "Page not found" dialog and falls back to the first page
    assert page.get_by_text("Page not found").count() == 0 and page.url.endswith(f"/{path}")
    assert_no_exception(page)
    if path != "identify":  # identify.png is the screenshot after an upload
        page.screenshot(path=str(SCREENSHOTS / f"{path}.png"), full_page=True)


def test_explore_select_a_region_and_see_its_images(server, page):
    """The map drawn whole; a box dragged over all of it selects every image and shows them with their species."""
    page.goto(f"{server}/explore")
    drag = page.locator("[data-testid=stPlotlyChart] .nsewdrag").first
    drag.wait_for()
    wait_until_idle(page)
    drawn = int(re.search(r"([\d,]+) points", main_text(page)).group(1).replace(",", ""))
    area = drag.bounding_box()
    page.mouse.move(area["x"] + 2, area["y"] + 2)
    page.mouse.down()
    page.mouse.move(area["x"] + area["width"] - 2, area["y"] + area["height"] - 2, steps=5)
    page.mouse.up()
    page.get_by_role("heading", name=re.compile("selected image")).wait_for()
    page.locator("[data-testid=stImage] img").nth(min(drawn, 24) - 1).wait_for()
    wait_until_idle(page)
    text = main_text(page)
    page.screenshot(path=str(SCREENSHOTS / "explore-selection.png"), full_page=True)
    assert f"{drawn} selected image(s)" in text  # every point of the map
    assert page.locator("[data-testid=stImage] img").count() == min(drawn, 24)
    assert "Crotalus adamanteus ☠️" in text  # image captions name the species, venomous ones marked
    assert_no_exception(page)
