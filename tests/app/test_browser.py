"""A real headless Chromium, driven by Playwright, uses the running app: upload an image, pick
a perturbation, run, and check that the four answers and the panels render."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import easy_vqa
import pytest

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: `make test` installs the chromium Debian package")
        pytest.skip(f"{CHROMIUM} is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield browser
        browser.close()


def pick(page, dropdown: str, label: str) -> None:
    page.click(f"{dropdown} input")
    page.click(f"{dropdown} li[role=option][aria-label='{label}']")


def answer(page, element: str) -> str:
    return page.input_value(f"{element} textarea")


def text_of(page, element: str) -> str:
    """An element's text, "" when Gradio has not rendered it (an empty Markdown)."""
    return page.evaluate(f"document.querySelector({element!r})?.innerText ?? ''")


def open_probe(page) -> None:
    """Open "Probe further" (closed on a first visit: its parts are mounted when it opens)."""
    if page.locator("#sweep").count() == 0:
        page.click("#probe button.label-wrap")
        page.wait_for_selector("#sweep")


def has_text(element: str, text: str) -> str:
    """A wait_for_function predicate: `element` shows `text`."""
    return f"(document.querySelector({element!r})?.innerText ?? '').includes({text!r})"


def test_side_by_side_turn_in_a_browser(browser, server, service, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 2400})
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    fonts: list[str] = []
    page.on("request", lambda request: fonts.append(request.url) if request.resource_type == "font" else None)
    page.goto(server)
    page.wait_for_selector("#run")
    assert fonts == []  # the theme's text is in the visitor's own fonts
    page.set_input_files("#query-image input[type=file]", easy_vqa.get_test_image_paths()[0])
    page.wait_for_selector("#query-image img")
    pick(page, "#visual", "Gaussian noise")
    pick(page, "#text", "Keyboard typos")
    page.click("#run")
    page.wait_for_function("document.querySelector('#vittle-perturbed textarea').value.length > 0 && "
                           "document.querySelector('#embedding-plot .js-plotly-plot') !== null", timeout=60_000)
    query = service.prepare(easy_vqa.get_test_image_paths()[0], "what color is the shape?", "gaussian_noise", 3, "char_typo", 3)
    expected = list(service.answers(query, "vittle-f"))[-1]
    assert answer(page, "#baseline-clean") == expected["baseline_clean"] == "red"
    assert answer(page, "#baseline-perturbed") == expected["baseline_perturbed"]
    assert answer(page, "#vittle-clean") == expected["vittle_clean"] == "red"  # the shipped Vittle reads colour too
    assert answer(page, "#vittle-perturbed") == expected["vittle_perturbed"]
    assert answer(page, "#perturbed-question") == query.perturbed_question
    assert "Gaussian noise (severity 3) + Keyboard typos (level 3)" in page.inner_text("#perturbation")
    assert "kept its answer" in page.inner_text("#perturbation") or "flipped" in page.inner_text("#perturbation")
    assert "Vittle (F): bottleneck after layer 3; its posterior is used." in page.inner_text("#finding")  # one plain line a model
    assert page.inner_text("#vittle-heading").strip() == "Vittle (F)"
    assert "circle, rectangle, triangle" in page.inner_text("#answerable")  # what the models can answer, under the question
    assert page.locator("#perturbed-image img").count() == 1
    shown = page.locator("#perturbed-image img").bounding_box()
    assert shown["width"] >= 150 and shown["height"] >= 150  # the 64 x 64 image is enlarged to its box
    assert page.eval_on_selector("#perturbed-image img", "img => getComputedStyle(img).imageRendering") == "pixelated"
    assert page.locator("#embedding-plot .scatterlayer .trace").count() >= 8  # 2 models x (clean, perturbed, query x 2)
    assert "Cosine distance between the clean and perturbed query" in page.inner_text("#summary")
    # the answer distributions: one chart per model, clean and perturbed bars on a 0..1 axis, and the shift's effect in numbers
    for chart in ("#baseline-distribution", "#vittle-distribution"):
        page.wait_for_selector(f"{chart} .js-plotly-plot", timeout=20_000)
        assert page.locator(f"{chart} .barlayer .trace").count() == 2
    assert "total variation between the two distributions" in page.inner_text("#distribution-effects")
    assert page.locator("#sweep").count() == 0 and page.locator("#download").count() == 0  # closed on a first visit
    open_probe(page)
    page.wait_for_selector("#download a", timeout=20_000)
    listed = page.inner_text("#download").replace("\n", "")  # the name and its extension sit in separate cells
    assert "turn.json" in listed and "perturbed.png" in listed
    assert page.locator("#download a").count() == 2  # one download link per file
    assert "example=0&" in page.get_attribute("#share-link a", "href")
    page.click("#sweep")
    page.wait_for_selector("#sweep-plot .js-plotly-plot", timeout=30_000)
    assert page.locator("#sweep-plot .scatterlayer .trace").count() == 4  # 2 models x (probability, cosine distance)
    assert "Vittle (F) (clean answer 'red'" in page.inner_text("#sweep-summary")
    page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
    for tab, selector in (("Posterior", "#variance-plot .js-plotly-plot"), ("Distances", "#distance-plot .js-plotly-plot"),
                          ("Robustness", "#robustness-table p")):
        page.get_by_role("tab", name=tab).click()
        page.wait_for_selector(selector, timeout=20_000)
    assert page.locator("#tokens span[title^='posterior variance']").count() > 5
    page.wait_for_function("document.querySelector('#status').innerText.includes('(ready)')", timeout=10_000)  # not stuck at "warming up"
    # the embedded models come from the staged study: its gates and differences, the first lab named as another protocol
    robustness = page.inner_text("#robustness-table")
    assert "The staged study" in robustness and "Vittle (F) (shown)" in robustness and "The first robustness lab" in robustness
    assert "**" not in robustness and page.locator("#robustness-table table").count() == 2  # rendered markdown: gates, differences
    assert "seeds" not in page.inner_text("#robustness-table table")  # none of the first lab's rows
    assert errors == []
    if os.environ.get("VITTLE_SCREENSHOT"):  # the whole page after a turn (docs/images/app.png is the first screen, 1400 x 900)
        shutil.copy(tmp_path / "app.png", os.environ["VITTLE_SCREENSHOT"])
    # an error empties the screen: no earlier query's answers stand next to a red message
    page.get_by_role("tab", name="Embeddings").click()
    page.fill("#question input", "")
    page.click("#run")
    page.get_by_text("question box is empty", exact=False).first.wait_for(timeout=20_000)
    page.wait_for_function("document.querySelector('#vittle-perturbed textarea').value === ''", timeout=10_000)
    assert answer(page, "#baseline-clean") == "" and page.locator("#embedding-plot .js-plotly-plot").count() == 0
    page.close()


POINT_XY = """([trace, index]) => {
    const gd = document.querySelector('#embedding-plot .js-plotly-plot');
    const data = gd._fullData[trace], xa = gd._fullLayout[data.xaxis.replace('x', 'xaxis')], ya = gd._fullLayout[data.yaxis.replace('y', 'yaxis')];
    const box = gd.getBoundingClientRect();
    return [box.left + xa._offset + xa.l2p(data.x[index]), box.top + ya._offset + ya.l2p(data.y[index])];
}"""
VISIBLE_POINTS = "document.querySelectorAll('#embedding-plot .scatterlayer .trace .points path.point').length"
TRACES_BY_PART = """(part) => document.querySelector('#embedding-plot .js-plotly-plot').data
    .map((t, i) => [i, t]).filter(([i, t]) => (t.meta || {}).part === part && t.visible !== false).map(([i, t]) => i)"""


def test_the_map_can_be_explored(browser, server, service):
    """Hover a reference point (its query, answers and two thumbnails), join the twins, filter a
    kind of question, click a point to load its query into the inputs."""
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto(server)
    page.wait_for_selector("#run")
    page.set_input_files("#query-image input[type=file]", easy_vqa.get_test_image_paths()[2])
    page.wait_for_selector("#query-image img")
    page.click("#run")
    page.wait_for_function("document.querySelector('#embedding-plot .js-plotly-plot') !== null", timeout=60_000)
    page.locator("#embedding-plot").scroll_into_view_if_needed()
    samples, _ = service.references.samples()
    kinds = [sample["kind"] for sample in samples]
    page.wait_for_function(f"{VISIBLE_POINTS} >= {4 * len(samples)}", timeout=20_000)
    assert page.evaluate(VISIBLE_POINTS) == 4 * len(samples) + 4  # 2 models x (clean, perturbed), and your star and cross
    # hover: plotly's label names the query and both models' answers; the card shows the clean and perturbed image
    points = page.evaluate(TRACES_BY_PART, "points")
    x, y = page.evaluate(POINT_XY, [points[0], 0])
    page.mouse.move(x, y)
    page.wait_for_selector("#embedding-plot .hoverlayer .hovertext", timeout=5_000)
    label = page.text_content("#embedding-plot .hoverlayer .hovertext")
    assert "→" in label and "Baseline:" in label and "Vittle (F):" in label and "click to load" in label
    index = int(label.split("#", 1)[1].split(":", 1)[0])
    assert samples[index]["question"] in label
    page.wait_for_selector("#map-hover-card img", timeout=5_000)
    assert page.locator("#map-hover-card img").count() == 2 and "Frost 3" in page.inner_text("#map-hover-card")
    # click: the point's query goes into the inputs
    page.mouse.click(x, y)
    page.wait_for_function(f"document.querySelector('#question input').value === {samples[index]['question']!r}", timeout=20_000)
    page.wait_for_selector("#query-image img", timeout=10_000)
    page.wait_for_function(has_text("#notice", "Loaded reference query #"), timeout=10_000)
    assert samples[index]["question"] in text_of(page, "#notice") and "Press Run" in text_of(page, "#notice")  # said on the page
    # the join toggle draws a segment per query and model, hidden again when off
    assert page.evaluate(TRACES_BY_PART, "join") == []
    page.click("#map-join input")
    page.wait_for_function(f"({TRACES_BY_PART})('join').length === 2 * {len(set(kinds))}", timeout=5_000)
    segments = page.evaluate("[...document.querySelectorAll('#embedding-plot .scatterlayer .trace path.js-line')]"
                             ".filter(p => (p.getAttribute('d') || '').split('M').length - 1 >= 1).length")
    assert segments >= 2 * len(set(kinds))
    # the filter: without yes/no questions, their points go
    page.click("#map-kinds label:has-text('yes/no') input")
    expected = 4 * (len(samples) - kinds.count("yes/no")) + 4
    page.wait_for_function(f"{VISIBLE_POINTS} === {expected}", timeout=5_000)
    assert page.evaluate(f"({TRACES_BY_PART})('join').length") == 2 * (len(set(kinds)) - 1)  # their segments too
    page.click("#map-kinds label:has-text('yes/no') input")
    page.wait_for_function(f"{VISIBLE_POINTS} === {4 * len(samples) + 4}", timeout=5_000)
    # the histogram: a bar's hover lists its queries
    page.get_by_role("tab", name="Distances").click()
    page.wait_for_selector("#distance-plot .barlayer .point", timeout=20_000)
    bar = page.locator("#distance-plot .barlayer .trace").first.locator(".point").first.bounding_box()
    page.mouse.move(bar["x"] + bar["width"] / 2, bar["y"] + bar["height"] - 3)
    page.wait_for_selector("#distance-plot .hoverlayer .hovertext", timeout=5_000)
    listed = page.text_content("#distance-plot .hoverlayer .hovertext")
    assert "queries" in listed and "#" in listed
    assert errors == []
    page.close()


def test_bad_upload_shows_a_message_in_the_page(browser, server, bad_files):
    page = browser.new_page()
    page.goto(server)
    page.wait_for_selector("#run")
    page.set_input_files("#query-image input[type=file]", str(bad_files["truncated"]))
    page.wait_for_timeout(500)
    page.click("#run")
    toast = page.get_by_text("damaged or truncated", exact=False)
    toast.first.wait_for(timeout=20_000)
    assert "Traceback" not in page.content()
    page.close()


def test_status_line_follows_the_warm_up(browser, free_port):
    from vittle.app.config import ServiceConfig
    from vittle.app.service import DemoService
    from vittle.app.ui import build_demo

    service = DemoService(ServiceConfig(warm_umap=False, reference_images=24, precompute=False))
    demo = build_demo(service.start())  # built while the models are still loading
    initial = service.status()
    demo.queue()
    demo.launch(server_name="127.0.0.1", server_port=free_port, prevent_thread_lock=True, quiet=True)
    try:
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{free_port}/")
        page.wait_for_selector("#status")
        page.wait_for_function("document.querySelector('#status').innerText.includes('(ready)')", timeout=120_000)
        assert "warming up" in initial and "Baseline, Vittle (F)" in page.inner_text("#status")
        page.close()
    finally:
        demo.close()


def test_on_a_phone_the_figures_fit_and_run_scrolls_to_the_answers(browser, server):
    page = browser.new_page(viewport={"width": 390, "height": 844})
    page.goto(server)
    page.wait_for_selector("#run")
    page.set_input_files("#query-image input[type=file]", easy_vqa.get_test_image_paths()[1])
    page.wait_for_selector("#query-image img")
    page.click("#run")
    page.wait_for_function("document.querySelector('#vittle-perturbed textarea').value.length > 0 && "
                           "document.querySelector('#embedding-plot .js-plotly-plot') !== null", timeout=60_000)
    page.wait_for_function("(() => { const top = document.querySelector('#perturbation').getBoundingClientRect().top; "
                           "return top >= -50 && top <= 844; })()", timeout=10_000)  # scrolled to the answers (once the turn is done)
    widths = {}
    for tab, selector in (("Embeddings", "#embedding-plot"), ("Posterior", "#variance-plot"), ("Posterior", "#overlay-plot"),
                          ("Distances", "#distance-plot")):
        page.get_by_role("tab", name=tab).click()  # every tab in the tab bar, none behind a "..." menu
        page.wait_for_selector(f"{selector} .js-plotly-plot", timeout=20_000)
        page.wait_for_timeout(300)
        widths[selector] = page.evaluate(f"document.querySelector('{selector} .main-svg').getBoundingClientRect().width")
    page.get_by_role("tab", name="Robustness").click()  # the embedded models' tab: the staged study's tables, no figure
    page.wait_for_selector("#robustness-table table", timeout=20_000)
    widths["robustness"] = page.evaluate("document.querySelector('#robustness-table').getBoundingClientRect().width")
    widths["robustness tables"] = page.evaluate(  # a wide table scrolls inside its box, the page does not
        "Math.max(...[...document.querySelectorAll('#robustness-table table')].map(t => t.parentElement.getBoundingClientRect().right))")
    widths["page"] = page.evaluate("document.documentElement.scrollWidth")
    for name, selector in (("baseline distribution", "#baseline-distribution"), ("Vittle distribution", "#vittle-distribution")):
        widths[name] = page.evaluate(f"document.querySelector('{selector} .main-svg').getBoundingClientRect().width")
    open_probe(page)
    page.click("#sweep")
    page.wait_for_selector("#sweep-plot .js-plotly-plot", timeout=30_000)
    page.wait_for_timeout(300)
    widths["sweep"] = page.evaluate("document.querySelector('#sweep-plot .main-svg').getBoundingClientRect().width")
    assert all(width <= 390 for width in widths.values()), widths
    assert page.evaluate("document.documentElement.scrollWidth") <= 400  # nothing pushes the page sideways
    page.close()


def test_a_link_reopens_its_settings(browser, server):
    page = browser.new_page()
    page.goto(server + "?example=1&question=is+there+a+blue+shape%3F&visual=zoom_blur&severity=2&text=none&level=4"
              "&vittle=vittle-l&alpha=0.3&method=pca")
    page.wait_for_selector("#run")
    page.wait_for_function("document.querySelector('#question input').value === 'is there a blue shape?'", timeout=20_000)
    page.wait_for_selector("#query-image img", timeout=20_000)
    assert page.input_value("#visual input") == "Zoom blur"
    assert page.input_value("#alpha input[type=number]") == "0.3"
    assert page.is_checked("#vittle input[value='vittle-l']")
    page.click("#run")
    page.wait_for_function("document.querySelector('#vittle-perturbed textarea').value.length > 0", timeout=60_000)
    open_probe(page)
    page.wait_for_selector("#share-link a", timeout=30_000)
    assert "alpha=0.3" in page.get_attribute("#share-link a", "href") and "example=1" in page.get_attribute("#share-link a", "href")
    page.close()


def test_the_first_screen_shows_what_the_app_is_and_run(browser, server):
    for width, height, limit in ((1400, 900, 900), (390, 844, 2 * 844)):
        page = browser.new_page(viewport={"width": width, "height": height})
        page.goto(server)
        page.wait_for_selector("#run")
        box = page.locator("#run").bounding_box()
        assert box["y"] + box["height"] <= limit, (width, box)  # without scrolling; on a phone within two screens
        intro = page.inner_text("#intro")
        assert "Vittle" in intro and "baseline" in intro.lower() and len(intro) < 400  # a title and one sentence
        assert page.locator("#try-example").is_visible()
        page.close()


SHIFTS = """() => { window.shifts = []; new PerformanceObserver((list) => { for (const entry of list.getEntries())
  for (const source of entry.sources || []) {
    const node = source.node?.nodeType === 1 ? source.node : source.node?.parentElement;
    window.shifts.push([node?.closest('#intro') ? 'intro' : (node?.id || node?.className || '?'), entry.value]);
  }
}).observe({type: 'layout-shift', buffered: true}); }"""


@pytest.mark.parametrize("width", [390, 800, 1024, 1400, 1920])
def test_the_introduction_is_drawn_before_the_app_and_nothing_moves_when_the_app_appears(browser, server, width):
    """The introduction is the page's own HTML: readable with scripts off, and with them on it
    sits exactly where Gradio's first block would (the inputs' left edge and width under it)."""
    static = browser.new_context(java_script_enabled=False, viewport={"width": width, "height": 900})
    page = static.new_page()
    page.goto(server)
    title = page.inner_text("#intro h1")
    assert title.startswith("Vittle: does an information bottleneck") and page.locator("#intro p").is_visible()
    first = page.evaluate("JSON.stringify(document.querySelector('#intro h1').getBoundingClientRect())")
    static.close()
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.add_init_script(f"({SHIFTS})()")
    page.goto(server)
    page.wait_for_selector("#run")
    page.wait_for_timeout(500)
    assert page.evaluate("JSON.stringify(document.querySelector('#intro h1').getBoundingClientRect())") == first  # unmoved
    intro, inputs = (page.locator(selector).bounding_box() for selector in ("#intro h1", "#workspace"))
    assert abs(intro["x"] - inputs["x"]) < 0.5 and abs(intro["width"] - inputs["width"]) < 0.5, (intro, inputs)
    assert 0 < inputs["y"] - (intro["y"] + intro["height"]) < 200  # the inputs right under it
    assert [shift for shift in page.evaluate("window.shifts") if shift[0] == "intro"] == []
    assert page.evaluate("getComputedStyle(document.querySelector('#intro')).color") == \
        page.evaluate("getComputedStyle(document.querySelector('#workspace')).color")  # the app's text colour
    page.close()


def test_the_inputs_row_shows_once_its_parts_are_drawn_and_nothing_in_it_moves_on_a_slow_phone(browser, server):
    """Every part the page's style waits for is on the page (else the row would show only after
    the 5 s fallback), and on a throttled phone link the row appears whole: no layout shift."""
    from vittle.app.page import FIRST_PARTS

    page = browser.new_page(viewport={"width": 412, "height": 823})
    page.add_init_script(f"({SHIFTS})()")
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 150, "downloadThroughput": 1.6e6 / 8,
                                                  "uploadThroughput": 750e3 / 8})
    cdp.send("Emulation.setCPUThrottlingRate", {"rate": 4})
    page.goto(server)
    page.wait_for_selector("#run", timeout=60_000)  # visible: the row is shown
    assert [part for part in FIRST_PARTS if page.locator(part).count() == 0] == []
    page.wait_for_timeout(1000)
    shifts = page.evaluate("window.shifts")
    assert sum(value for _, value in shifts) < 0.01, shifts
    page.close()


def test_a_dark_theme_asked_for_in_the_link_darkens_the_introduction_too(browser, server):
    page = browser.new_page(color_scheme="light")
    page.goto(server + "?__theme=dark")
    page.wait_for_selector("#run")
    colours = page.evaluate("[getComputedStyle(document.body).backgroundColor, getComputedStyle(document.querySelector('#intro')).color,"
                            " getComputedStyle(document.querySelector('#workspace')).color]")
    assert colours[0] != "rgb(255, 255, 255)" and colours[1] == colours[2], colours
    page.close()


def test_keyboard_and_alt_text(browser, server):
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    page.goto(server)
    page.wait_for_selector("#run")
    page.wait_for_function("document.querySelectorAll('img').length > 0", timeout=20_000)
    page.wait_for_timeout(500)
    assert page.evaluate("document.querySelectorAll('img:not([alt])').length") == 0
    assert page.evaluate("[...document.querySelectorAll('img[alt=\"\"]')].every(img => img.dataset.decorative === '1')")  # icons named by their button
    assert page.evaluate("[...document.querySelectorAll('img')].some(img => img.alt.startsWith('Example image'))")
    box = page.locator("#alpha input[type=number]")
    box.fill("0.3")
    box.press("Enter")  # applies the number at once, without leaving the box first
    page.wait_for_function("document.querySelector('#alpha input[type=range]').value === '0.3'", timeout=5_000)
    page.set_input_files("#query-image input[type=file]", easy_vqa.get_test_image_paths()[4])
    page.wait_for_selector("#query-image img")
    page.locator("#question input").press("Enter")  # Enter in the question runs the query
    page.wait_for_function("document.querySelector('#vittle-perturbed textarea').value.length > 0", timeout=60_000)
    page.close()


def test_a_link_with_unusable_settings_says_which_on_the_page(browser, server):
    page = browser.new_page()
    page.goto(server + "?visual=nope&severity=9&question=what+shape+is+this%3F")
    page.wait_for_function(has_text("#notice", "not used"), timeout=20_000)
    notice = text_of(page, "#notice")
    assert "Some settings in the link were not used" in notice and "visual" in notice and "severity" in notice
    assert page.input_value("#question input") == "what shape is this?"  # the usable ones were
    page.close()


def test_a_result_is_never_labelled_with_another_model(browser, server):
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    page.goto(server)
    page.wait_for_selector("#run")
    page.set_input_files("#query-image input[type=file]", easy_vqa.get_test_image_paths()[3])
    page.wait_for_selector("#query-image img")
    open_probe(page)
    page.click("#run")
    page.wait_for_function("document.querySelector('#vittle-perturbed textarea').value.length > 0", timeout=60_000)
    page.wait_for_function("document.querySelector('#download a') !== null", timeout=60_000)  # the whole turn is in
    page.wait_for_function("(document.querySelector('#stale')?.innerText ?? '').trim() === ''", timeout=10_000)
    page.wait_for_function(has_text("#vittle-heading", "Vittle (F)"), timeout=10_000)
    page.click("#vittle input[value='vittle-l']")
    page.wait_for_function(has_text("#stale", "previous settings"), timeout=10_000)
    assert "Vittle (F)" in text_of(page, "#stale")
    assert page.inner_text("#vittle-heading").strip() == "Vittle (F)"  # the model whose answers are shown, not the one chosen
    page.click("#run")
    page.wait_for_function("document.querySelector('#vittle-heading').innerText.trim() === 'Vittle (L)'", timeout=60_000)
    page.wait_for_function("(document.querySelector('#stale')?.innerText ?? '').trim() === ''", timeout=10_000)
    page.close()


def test_the_out_of_domain_badge_shows_on_a_photo_only(browser, server, service):
    import skimage

    assert service.domain_check.ready  # calibrated in the warm-up
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    page.goto(server)
    page.wait_for_selector("#run")
    open_probe(page)
    for image, outside in ((str(Path(skimage.__file__).parent / "data" / "chelsea.png"), True), (easy_vqa.get_test_image_paths()[5], False)):
        page.set_input_files("#query-image input[type=file]", image)
        page.wait_for_timeout(500)
        page.click("#run")
        page.wait_for_function("document.querySelector('#vittle-perturbed textarea').value.length > 0", timeout=60_000)
        page.wait_for_function("document.querySelector('#download a') !== null", timeout=60_000)
        if outside:
            page.wait_for_function(has_text("#domain-badge", "Outside what these models were trained on"), timeout=10_000)
            assert "the answers are guesses" in text_of(page, "#domain-badge")
        else:
            page.wait_for_timeout(1000)  # the badge follows the turn's record
            assert "Outside" not in text_of(page, "#domain-badge")
    page.close()
