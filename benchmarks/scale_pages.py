"""Every dashboard page on a store, in a real headless browser: first render (cold, then warm) and one typical
interaction per page. The browser half of benchmarks/scale.py (issue 17); alone, on any built store:

    python benchmarks/scale_pages.py --store DIR --upload photo.jpg [--repeats 3]

`measure_pages` starts `streamlit run app.py` on the store (SNAKEWEB_STORE, headless, no file watcher, each
script run's seconds logged: benchmarks/explore_scale.py's server), drives Debian chromium through Playwright
(as tests/test_browser.py does) and, page by page (identify, search, explore, metrics, review):

- first render, cold: the page's first visit after the server started (its caches empty; the first page opened
  also pays for app.py loading the model, head and index), then warm, the median of `repeats` visits in a new
  session: in a fresh browser context (`*_first_render_new_browser_s`: nothing cached in the browser) and in a
  new tab of the browser that had the page open (`*_first_render_s`: the app's scripts cached). Timed from the
  navigation to the page heading and its last element drawn (Explore: the map's first WebGL draw rasterised)
  and the script runs over (Streamlit's run state on the page back to notRunning);
- one interaction, from the user's action to its result drawn and the script run finished: Identify: upload
  the photo -> the answer, top 5 and every neighbour image drawn (the first upload of the process apart:
  `page_identify_first_upload_s`); Search: the photo uploaded (`page_search_upload_s`), then a species picked in
  the Filters expander -> the filtered results drawn; Explore: a box over part of the map -> "N selected
  image(s)" and its images (explore_scale's box_select); Metrics: a click on the per-species table's f1 header
  -> the table re-sorted (in the browser), and a genus typed in "Search species" -> the table filtered; Review:
  the current label chosen in "Species" and "Save review" clicked -> the success message drawn (or, where the
  page never shows one, the review in "Reviews so far"). Saving files `repeats` reviews into the store, each
  confirming an observation's current label (reviewer "scale-benchmark").

Each figure goes to `emit(name, value, unit, **fields)` (the row shape of explore_scale.py: runs, the server's
script seconds, the load average, target, note). Nothing is asserted about time and every wait is bounded
(`timeout_s`), so a slow machine gets slow figures, not a failure; what is missing or raised on a page (a
timeout, `[data-testid=stException]`) comes back as one sentence per failure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.explore_scale import (  # noqa: E402 - the repository root is on sys.path first, when run alone
    CHARTS,
    CHROMIUM,
    DRAW_LOG,
    DRAWN,
    REGIONS,
    SCRIPT_LOG,
    box_select,
    script_runs,
    start_server,
)

PAGES = ("identify", "search", "explore", "metrics", "review")
TITLES = {"identify": "Identify a snake", "search": "Search similar images", "explore": "Explore the embedding map",
          "metrics": "Metrics", "review": "Review predictions"}
# the last thing each page draws on a first visit (any one of these texts in the main area)
LAST_DRAWN = {"identify": ["Upload one or more photos of the same snake."],
              "search": ["Upload a photo to find similar ones.", "result(s)"],
              "explore": ["Select a region of the map", "No map yet"],
              "metrics": ["Prepare submission CSV", "no labelled observations"],
              "review": ["Export reviews (CSV)"]}
VIEWPORT = {"width": 1400, "height": 1800}
REVIEWER = "scale-benchmark"
FIRST_RENDER, INTERACTION = "<= 2 s", "<= 1 s"  # issue 17's targets, once the store is loaded

# page time (ms from the navigation) once the heading and the page's last element are drawn; Explore: and the map
DRAWN_PAGE = """([title, last, map]) => {
  if (![...document.querySelectorAll('h1')].some(h => h.textContent.includes(title))) return null;
  const main = document.querySelector('[data-testid=stMain]');
  const text = main ? main.textContent : '';
  if (!last.some(t => text.includes(t))) return null;
  if (map && !text.includes('No map yet') && !($DRAWN)(0) && !small()) return null;
  return performance.now();
  // a map whose traces all hold under 50 points (a tiny store) is not in the draw log: drawn once Plotly has its canvas
  function small() {
    const plot = document.querySelector('[data-testid=stPlotlyChart] .js-plotly-plot');
    return !!(plot && plot._fullData && plot._fullData.length && plot._fullData.every(t => (t.x || []).length < 50)
              && plot.querySelector('canvas'));
  }
}""".replace("$DRAWN", DRAWN)
# every image of the main area loaded, at least `wanted` of them
IMAGES = """(wanted) => {
  const images = [...document.querySelectorAll('[data-testid=stMain] [data-testid=stImage] img')];
  return images.length >= wanted && images.every(i => i.complete && i.naturalWidth > 0);
}"""
ANSWERED = """([wanted]) => {
  const main = document.querySelector('[data-testid=stMain]');
  const heads = main ? [...main.querySelectorAll('h3')].map(h => h.textContent) : [];
  if (!heads.some(t => t.includes('Nearest reference images')) || !main.textContent.includes('Where this answer came from')) return null;
  return ($IMAGES)(wanted) || null;
}""".replace("$IMAGES", IMAGES)
# the results caption once it says `has` and differs from `before`, with the result images loaded
RESULTS = """([before, has, wanted]) => {
  const caption = [...document.querySelectorAll('[data-testid=stCaptionContainer]')].map(c => c.textContent)
    .find(t => t.includes('result(s)'));
  if (!caption || caption === before || !caption.includes(has)) return null;
  return ($IMAGES)(wanted) ? caption : null;
}""".replace("$IMAGES", IMAGES)
CAPTION = """() => [...document.querySelectorAll('[data-testid=stCaptionContainer]')].map(c => c.textContent)
  .find(t => t.includes('result(s)')) || null"""
# the accessible table of the first dataframe after the h3 `heading` (glide-data-grid keeps one beside its canvas):
# [rows (aria-rowcount, header included), column titles, the visible rows' cells]
TABLE = """(heading) => {
  const h = [...document.querySelectorAll('h3')].find(h => h.textContent.includes(heading));
  if (!h) return null;
  const frame = [...document.querySelectorAll('[data-testid=stDataFrame]')]
    .find(d => h.compareDocumentPosition(d) & Node.DOCUMENT_POSITION_FOLLOWING);
  const table = frame && frame.querySelector('table');
  if (!table) return null;
  return [parseInt(table.getAttribute('aria-rowcount')), [...table.querySelectorAll('th')].map(th => th.textContent),
          [...table.querySelectorAll('tbody tr')].map(r => [...r.querySelectorAll('td')].map(td => td.textContent))];
}"""
# the per-species table filtered: every visible row's name contains `term` (and the table is not what it was)
FILTERED = """([term, before]) => {
  const t = ($TABLE)('Per species');
  if (!t || JSON.stringify(t) === before) return null;
  const column = t[1].findIndex(c => c.replace(/^[↑↓] /, '') === 'binomial_name');
  return t[2].every(r => (r[column] || '').toLowerCase().includes(term.toLowerCase())) ? t[0] : null;
}""".replace("$TABLE", TABLE)
SNAPSHOT = """(heading) => JSON.stringify(($TABLE)(heading))""".replace("$TABLE", TABLE)
# the per-species table's `column` title changed (sorted the other way: its arrow turns)
SORTED = """([column, before]) => {
  const t = ($TABLE)('Per species');
  return t && t[1][column] !== before ? t[1][column] : null;
}""".replace("$TABLE", TABLE)
# a review saved: the success message drawn or one more row in "Reviews so far". The previous save's message stays
# drawn until the next script run, and choosing the label an observation already has starts none: only a message
# other than the one on the page before the click counts.
SAVED = """([before, shownBefore]) => {
  const saved = [...document.querySelectorAll('[data-testid=stAlert]')].map(a => a.innerText).find(t => t.includes('Saved:'));
  if (saved && saved !== shownBefore) return 'message';
  const t = ($TABLE)('Reviews so far');
  return t && t[0] > before ? 'reviews table' : null;
}""".replace("$TABLE", TABLE)
SHOWN_SAVED = """() => [...document.querySelectorAll('[data-testid=stAlert]')].map(a => a.innerText).find(t => t.includes('Saved:')) || ''"""


# Streamlit's run state (`data-test-script-state` on stApp): the page time of its last change to notRunning, kept
# by an observer from the page's start
RUN_STATE = """(() => {
  window.__idleAt = null;
  const note = (app) => {
    const idle = app.getAttribute('data-test-script-state') === 'notRunning';
    if (idle && window.__idleAt === null) window.__idleAt = performance.now();
    if (!idle) window.__idleAt = null;
  };
  const finder = new MutationObserver(() => {
    const app = document.querySelector('[data-testid=stApp]');
    if (!app) return;
    finder.disconnect();
    note(app);
    new MutationObserver(() => note(app)).observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
  });
  finder.observe(document, {subtree: true, childList: true});
})();"""
# script runs over: not running, and still so 150 ms later (st.rerun starts a second run)
SETTLED = """() => window.__idleAt !== null && performance.now() - window.__idleAt >= 150 ? window.__idleAt : null"""


def settle(page) -> float:
    """Page time (ms from the navigation) at which the app's script runs were over."""
    return page.wait_for_function(SETTLED, polling="raf").json_value()


def server_runs(since: float, expected: bool) -> list[float]:
    """The server's script seconds since `since` (time.time()); its log line is written just after the run's
    end reaches the page, so a run that `expected` is waited for a moment."""
    deadline = time.time() + 2
    while True:
        runs = script_runs(SCRIPT_LOG, since)
        if runs or not expected or time.time() > deadline:
            return runs
        time.sleep(0.05)


def first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__


def timed(page, act: Callable[[], None], ready: str, arg=None, runs: bool = True) -> dict:
    """Seconds from `act()` to `ready` true in the page and the script runs it started (`runs`) over: the later of
    the two (the page drawn may wait on the server, and the server may still be sending what is drawn)."""
    origin = page.evaluate("performance.now()")
    since, started = time.time(), time.perf_counter()
    act()
    value = page.wait_for_function(ready, arg=arg, polling="raf").json_value()
    shown = time.perf_counter() - started
    finished = (settle(page) - origin) / 1000 if runs else 0.0
    return {"s": max(shown, finished), "shown_s": shown, "value": value, "server_s": server_runs(since, runs)}


class Pages:
    """One server, one browser; each measurement's figures go to `emit`, what went wrong to `failures`."""

    def __init__(self, browser, url: str, emit: Callable[..., None], timeout_s: float, facts: dict):
        self.browser, self.url, self.emit, self.timeout_ms, self.facts = browser, url, emit, timeout_s * 1000, facts
        self.failures: list[str] = []
        self.started = False  # whether a page has run yet (app.py loads the model, head and index on the first)

    # -- helpers ------------------------------------------------------------------------------------------------

    def open(self, name: str, context=None) -> tuple[dict, object]:
        """/name in a new tab of `context`, else of a fresh browser context; seconds to the page drawn and its
        script run finished."""
        page = (context or self.browser.new_context(viewport=VIEWPORT)).new_page()
        page.set_default_timeout(self.timeout_ms)
        page.add_init_script(RUN_STATE)
        if name == "explore":
            page.add_init_script(DRAW_LOG)
        since = time.time()
        page.goto(f"{self.url}/{name}")
        drawn = page.wait_for_function(DRAWN_PAGE, arg=[TITLES[name], LAST_DRAWN[name], name == "explore"], polling="raf").json_value()
        finished = settle(page)  # page times count from the navigation's start
        return {"s": max(drawn, finished) / 1000, "drawn_s": drawn / 1000, "server_s": server_runs(since, True)}, page

    def row(self, name: str, runs: list[dict], **fields) -> None:
        """The median run's seconds, every run's, and the server's script seconds in the median run."""
        ordered = sorted(runs, key=lambda r: r["s"])
        middle = ordered[len(ordered) // 2]
        self.emit(name, round(middle["s"], 3), "s", runs=[round(r["s"], 3) for r in runs], server_script_s=middle.get("server_s"),
                  load=round(os.getloadavg()[0], 2), **fields)

    def fail(self, page_name: str, what: str, exc: BaseException | None = None) -> None:
        reason = f" ({first_line(exc)})" if exc is not None and first_line(exc) else ""
        self.failures.append(f"{page_name.capitalize()}: {what}{reason}.")

    def exceptions(self, page, page_name: str) -> None:
        """A traceback drawn on the page is a failure (once per page)."""
        shown = page.locator("[data-testid=stException]")
        if shown.count() and not any(f.startswith(page_name.capitalize() + ": an exception") for f in self.failures):
            self.fail(page_name, "an exception was shown: " + " ".join(shown.first.inner_text().split())[:300])

    # -- each page ----------------------------------------------------------------------------------------------

    def measure(self, name: str, repeats: int) -> None:
        """First render: cold (a fresh browser context), then `repeats` times in a fresh context and in a new tab
        of the cold one (the browser's cache of the app's scripts kept); then the interaction on the last tab."""
        context = None
        try:
            first, self.started = not self.started, True
            cold, page = self.open(name)
            context = page.context
            note = ("the first page opened after the server started: includes app.py loading the model, head and index"
                    if first else "the page's first visit after the server started (its caches empty)")
            self.emit(f"page_{name}_first_render_cold_s", round(cold["s"], 3), "s", drawn_s=round(cold["drawn_s"], 3),
                      server_script_s=cold["server_s"], load=round(os.getloadavg()[0], 2), note=note)
            self.exceptions(page, name)
            what = ("navigation -> heading and the page's last element drawn" + (" (the map's first WebGL draw rasterised)"
                    if name == "explore" else "") + ", script run finished; a new session, the server's caches warm")
            fresh = []
            for _ in range(repeats):
                seconds, other = self.open(name)
                fresh.append(seconds)
                self.exceptions(other, name)
                other.context.close()
            self.row(f"page_{name}_first_render_new_browser_s", fresh, target=FIRST_RENDER,
                     note=f"median; {what}; in a fresh browser context (nothing cached in the browser)")
            tabs = []
            for _ in range(repeats):
                page.close()
                seconds, page = self.open(name, context)
                tabs.append(seconds)
                self.exceptions(page, name)
            self.row(f"page_{name}_first_render_s", tabs, target=FIRST_RENDER,
                     note=f"median; {what}; in a new tab of the browser that had the page open (its cache kept)")
        except Exception as exc:  # noqa: BLE001 - a page that does not open is reported, the others still measured
            self.fail(name, f"the page was not drawn within {self.timeout_ms / 1000:.0f} s", exc)
            if context is not None:
                context.close()
            return
        try:
            page = getattr(self, name)(page, repeats) or page
            self.exceptions(page, name)
        except Exception as exc:  # noqa: BLE001 - e.g. a page that did not open again between two uploads
            self.fail(name, "the interaction stopped", exc)
        finally:
            context.close()

    def identify(self, page, repeats: int):
        """Returns the page it ended on (each upload after the first is in a new session)."""
        upload, wanted = self.facts["upload"], self.facts["neighbours"]

        def once(page) -> dict:
            return timed(page, lambda: page.locator("input[type=file]").set_input_files(str(upload)), ANSWERED, [wanted])

        try:
            first = once(page)
        except Exception as exc:  # noqa: BLE001
            self.fail("identify", f"no answer with {wanted} neighbour image(s) drawn after uploading {upload.name}", exc)
            return page
        self.emit("page_identify_first_upload_s", round(first["s"], 3), "s", server_script_s=first["server_s"],
                  load=round(os.getloadavg()[0], 2), note="the process's first identification: the model's first inference "
                  "(the model, head and index were loaded by app.py on the first page); upload -> answer and neighbours drawn")
        runs = []
        for _ in range(repeats):
            self.exceptions(page, "identify")
            page.close()  # a new session (a new tab): the uploader empty again
            _, page = self.open("identify", page.context)
            try:
                runs.append(once(page))
            except Exception as exc:  # noqa: BLE001
                self.fail("identify", f"no answer drawn after a second upload of {upload.name}", exc)
                break
        if runs:
            self.row("page_identify_upload_s", runs, target=INTERACTION, photo=upload.name,
                     note="median; photo chosen -> venom banner, answer, top 5 and the 12 nearest images drawn, script run finished")
        return page

    def search(self, page, repeats: int) -> None:
        upload, wanted = self.facts["upload"], self.facts["neighbours"]
        try:
            uploaded = timed(page, lambda: page.locator("input[type=file]").set_input_files(str(upload)), RESULTS, [None, "result", wanted])
        except Exception as exc:  # noqa: BLE001
            return self.fail("search", f"no results drawn after uploading {upload.name}", exc)
        self.row("page_search_upload_s", [uploaded], target=INTERACTION,
                 note="photo chosen -> its nearest images drawn (embedded in the page's script run)")
        runs = []
        try:
            page.locator("[data-testid=stExpander] summary").filter(has_text="Filters").click()
            for name in self.facts["species"][:repeats]:
                choose(page, page.locator("[data-testid=stMultiSelect]").filter(has_text="Species").first, name)
                before = page.evaluate(CAPTION)
                runs.append(timed(page, page.get_by_role("option", name=name, exact=True).first.click, RESULTS,
                                  [before, "passing the filters", 1]))
                page.keyboard.press("Escape")
        except Exception as exc:  # noqa: BLE001
            self.fail("search", "the results were not redrawn after picking a species in the Filters expander", exc)
        if runs:
            self.row("page_search_species_filter_s", runs, target=INTERACTION, species=self.facts["species"][:len(runs)],
                     captions=[r["value"] for r in runs],
                     note="median; a species picked in Filters (one more each run) -> the filtered results drawn, script run "
                          "finished")

    def explore(self, page, repeats: int) -> None:
        runs = []
        for box in (REGIONS * repeats)[:repeats]:
            since = time.time()  # the drag starts no run: the runs after it are the selection's
            try:
                selected = box_select(page, CHARTS["plotly"], box)
                settle(page)
            except Exception as exc:  # noqa: BLE001
                self.fail("explore", f"no selection drawn after a box over {box} of the map", exc)
                continue
            runs.append({"s": selected["shown_s"], "server_s": server_runs(since, True), "heading": selected["heading"]})
        if runs:
            self.row("page_explore_select_s", runs, target=INTERACTION, selected=[r["heading"] for r in runs],
                     points=self.facts["points"], note="median; a box dragged over part of the map, mouse released -> "
                     "\"N selected image(s)\", its species and images drawn")

    def metrics(self, page, repeats: int) -> None:
        try:  # the grid's accessible table comes a moment after the page's last element
            table = page.wait_for_function(TABLE, arg="Per species", polling="raf").json_value()
        except Exception as exc:  # noqa: BLE001
            return self.fail("metrics", "no per-species table was drawn", exc)
        runs = []
        try:
            x, column = self.header_x(page, "f1")
            for _ in range(repeats):
                before = page.evaluate(TABLE, "Per species")[1][column]
                runs.append(timed(page, lambda: page.mouse.click(*x), SORTED, [column, before], runs=False))
        except Exception as exc:  # noqa: BLE001
            self.fail("metrics", "the per-species table was not sorted by a click on its f1 header", exc)
        if runs:
            self.row("page_metrics_sort_s", runs, target=INTERACTION, rows=table[0] - 1, headers=[r["value"] for r in runs],
                     note="median; a click on the per-species table's f1 header -> the table re-sorted (in the browser, no script run)")
        runs = []
        try:
            field = page.get_by_label("Search species")
            for term in self.facts["genera"][:repeats]:
                before = page.evaluate(SNAPSHOT, "Per species")

                def search(term=term) -> None:
                    field.fill(term)
                    field.press("Enter")

                runs.append(timed(page, search, FILTERED, [term, before]) | {"term": term})
        except Exception as exc:  # noqa: BLE001
            self.fail("metrics", "the per-species table was not filtered after a search in \"Search species\"", exc)
        if runs:
            self.row("page_metrics_search_s", runs, target=INTERACTION, terms=[r["term"] for r in runs],
                     rows=[r["value"] - 1 for r in runs], note="median; a genus typed in \"Search species\", Enter -> the "
                     "per-species table filtered, the page's script run (every section of the page) finished")

    def header_x(self, page, title: str) -> tuple[tuple[float, float], int]:
        """Where to click on the per-species table to sort it by `title`, and that column's index. The header is
        drawn on a canvas: its columns are found by the separator lines in one row of its pixels; the click goes
        near a column's left end (the right end of a hovered header is its column menu's button)."""
        from io import BytesIO

        from PIL import Image

        frame = page.locator("[data-testid=stDataFrame]").nth(page.evaluate(
            """() => { const h = [...document.querySelectorAll('h3')].find(h => h.textContent.includes('Per species'));
                return [...document.querySelectorAll('[data-testid=stDataFrame]')]
                  .findIndex(d => h.compareDocumentPosition(d) & Node.DOCUMENT_POSITION_FOLLOWING); }"""))
        canvas = frame.locator("canvas").first
        canvas.scroll_into_view_if_needed()
        area = canvas.bounding_box()
        page.mouse.move(area["x"] - 50, area["y"] - 50)  # no header hovered (a hovered one is shaded)
        page.wait_for_timeout(200)
        titles = [t.replace("↑ ", "").replace("↓ ", "") for t in page.evaluate(TABLE, "Per species")[1]]
        wanted = titles.index(title)
        strip = Image.open(BytesIO(page.screenshot(clip={"x": area["x"], "y": area["y"] + 4, "width": area["width"], "height": 1})))
        pixels = strip.convert("RGB").tobytes()
        row = [pixels[i] + pixels[i + 1] + pixels[i + 2] for i in range(0, len(pixels), 3)]
        background = sorted(row)[len(row) // 2]  # most of the strip is the header's background
        lines = [x for x in range(1, len(row)) if row[x] < background - 20 and row[x - 1] >= background - 20]
        edges = [0, *lines]
        if len(edges) <= wanted:
            raise RuntimeError(f"{len(lines)} column separators found in the header, {wanted + 1} needed")
        left = edges[wanted] + min(12.0, ((edges[wanted + 1] if wanted + 1 < len(edges) else area["width"]) - edges[wanted]) / 4)
        scale = area["width"] / len(row)  # screenshot pixels to page pixels
        spot = (area["x"] + left * scale, area["y"] + 17)
        for _ in range(2):  # a first click on the grid may only focus it; then the click that sorts (untimed)
            page.mouse.click(*spot)
            page.wait_for_timeout(300)
            if page.evaluate(TABLE, "Per species")[1][wanted][:2] in ("↑ ", "↓ "):
                return spot, wanted
        raise RuntimeError(f"two clicks at {left:.0f} px of the header sorted no column")

    def review(self, page, repeats: int) -> None:
        name = page.get_by_label("Your name (stored with each review and range record)")
        if name.count():
            name.fill(REVIEWER)
            name.press("Enter")
            page.wait_for_timeout(300)
            settle(page)
        runs, by_message = [], []
        for _ in range(repeats):
            if page.get_by_role("button", name="Save review").count() == 0:
                break  # the queue is empty
            step = "no \"Current label\" caption under the queue"
            try:
                caption = page.get_by_text("Current label:").or_(page.get_by_text("No label yet")).first.inner_text()
                species = (caption.split("Current label: ", 1)[1] if "Current label:" in caption
                           else caption.split("most likely species is ", 1)[1].split(")")[0]).strip()
                step = f"{species} could not be chosen in \"Species\""
                choose(page, page.locator("[data-testid=stSelectbox]").filter(has_text="Species").first, species)
                page.get_by_role("option").filter(has_text=f"{species} (").first.click()
                page.wait_for_timeout(300)  # the run that choice starts (if it changed the value)
                settle(page)
                step = "a review was not shown as saved after \"Save review\""
                reviews = page.evaluate(TABLE, "Reviews so far")
                saved = timed(page, page.get_by_role("button", name="Save review").click, SAVED,
                              [reviews[0] if reviews else 1, page.evaluate(SHOWN_SAVED)])
            except Exception as exc:  # noqa: BLE001
                alerts = " ".join(page.locator("[data-testid=stAlert]").all_inner_texts())[:200]
                self.fail("review", step + (f" (the page says: {alerts})" if alerts else ""), exc)
                break
            # what the reviewer is left looking at once the runs are over (a message only flashed does not count)
            by_message.append(page.get_by_text("Saved:").count() > 0)
            runs.append(saved | {"species": species, "value": "message" if by_message[-1] else "reviews table"})
        if runs:
            self.row("page_review_save_s", runs, target=INTERACTION, species=[r["species"] for r in runs],
                     shown=[r["value"] for r in runs], note="median; the current label chosen in Species, \"Save review\" "
                     "clicked -> the success message (else the review in \"Reviews so far\") drawn, script runs over; "
                     "shown: what stays on the page")
        if runs and not any(by_message):
            self.fail("review", "\"Save review\" saved the review but no success message was drawn (views/review.py calls "
                                "st.success and then st.rerun(), which discards it)")


def choose(page, widget, text: str) -> None:
    """Click a selectbox or multiselect and fill its search field with `text` until the matching option stays listed
    (a long list opening after the click empties the field: what was typed meanwhile is lost)."""
    widget.click()
    field, option = widget.locator("input"), page.get_by_role("option").filter(has_text=text).first
    for _ in range(10):
        field.fill(text)
        page.wait_for_timeout(300)
        if field.input_value() == text and option.is_visible():
            return
    option.wait_for(timeout=1)  # raises, saying which option was never listed


def store_facts(store_root: Path, upload: Path, repeats: int) -> dict:
    """What the interactions need from the store, read before the server starts (a connection held by this process
    would block the page's review writes): neighbour count, the biggest species and genera, map points."""
    from snakeweb.store import Store

    store = Store(store_root)
    counts = store.query("SELECT (SELECT count(*) FROM images WHERE status = 'ok') AS images, "
                         "(SELECT count(*) FROM projection) AS points")
    species = store.query("SELECT s.binomial_name, s.genus, count(*) AS n FROM images i JOIN species s USING (class_id) "
                          "WHERE i.status = 'ok' AND s.binomial_name IS NOT NULL GROUP BY ALL ORDER BY n DESC, s.binomial_name")
    genera = species.groupby("genus", sort=False)["n"].count().sort_values(ascending=False, kind="stable").index
    return {"upload": Path(upload), "neighbours": min(12, int(counts["images"][0])), "points": int(counts["points"][0]),
            "species": species["binomial_name"].head(max(repeats, 1)).tolist(), "genera": [g for g in genera if g][:max(repeats, 1)]}


def measure_pages(store_root: Path, upload: Path, emit: Callable[..., None], repeats: int = 3, timeout_s: float = 240,
                  pages: tuple[str, ...] = PAGES) -> list[str]:
    """Time every page of the dashboard on `store_root` (see the module's docstring); `emit(name, value, unit,
    **fields)` gets each figure; `timeout_s` bounds each wait. Returns the failures, one sentence each (empty: every
    page and interaction drawn). `pages`: a subset, in PAGES' order (the first one opened pays for the model load)."""
    if CHROMIUM is None:
        return ["Pages: Debian chromium is not installed (`apt-get install chromium`), so no page was opened."]
    from playwright.sync_api import sync_playwright

    facts = store_facts(Path(store_root), Path(upload), repeats)
    try:
        process, url = start_server("app.py", Path(store_root))
    except RuntimeError as exc:
        return [f"Pages: {exc}."]
    measured = None
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            measured = Pages(browser, url, emit, timeout_s, facts)
            for name in pages:
                measured.measure(name, repeats)
            browser.close()
        return measured.failures
    except Exception as exc:  # noqa: BLE001 - the browser itself failed: say so, with what was measured before
        return [*(measured.failures if measured else []), f"Pages: the browser stopped ({first_line(exc)})."]
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except Exception:  # noqa: BLE001 - a server that ignores SIGTERM is killed
            process.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, required=True, help="a built store (embeddings, index, head, predictions, map)")
    parser.add_argument("--upload", type=Path, required=True, help="a photo (JPEG) to upload on Identify and Search")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=240, help="seconds any one wait may take before it is a failure")
    parser.add_argument("--pages", default=",".join(PAGES), help="comma-separated subset of " + ",".join(PAGES))
    args = parser.parse_args(argv)

    def emit(name: str, value, unit: str, **fields) -> None:
        print(json.dumps({"name": name, "value": value, "unit": unit, **fields}), flush=True)

    failures = measure_pages(args.store, args.upload, emit, args.repeats, args.timeout, tuple(args.pages.split(",")))
    for failure in failures:
        print(failure, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
