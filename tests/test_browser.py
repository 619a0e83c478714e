"""The built book in a real browser (Chromium, driven by Playwright), served over HTTP: every
page loads offline without console errors, with its math typeset and its images loaded; the
page "Draw a digit" reads traced MNIST test digits, as the Python code would.

Skipped, with the reason shown in pytest's summary, where no Chromium or Playwright is found
(see README: Debian's ``chromium`` package, or ``HWR_CHROMIUM``).
"""

from __future__ import annotations

import io
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
import torch
from PIL import Image

from hwr_utils.ctc import greedy_decode
from hwr_utils.export import OnnxModel
from hwr_utils.preprocess import mnist_convention, preprocess_number_photo
from hwr_utils.teaching import browser
from hwr_utils.teaching.web_demo import DEMO

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "book" / "_build" / "html"
CHROMIUM, WHY_NOT = browser.find_chromium()
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason=f"browser tests skipped: {WHY_NOT}"),
    pytest.mark.slow,  # pytest -m "not slow" leaves it out
]

TRACED_PER_CLASS = 2  # MNIST test digits traced per class (the first ones of each class)
NUMBERS = 5  # whole numbers written on the number canvas


@pytest.fixture(scope="module")
def site(built_book):
    assert built_book.returncode == 0, built_book.stdout[-3000:]
    with browser.serve(HTML) as base:
        yield base


@pytest.fixture(scope="module")
def chromium():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield instance
        instance.close()


class PageWatch:
    """A page whose console errors, uncaught exceptions, failed requests and requests outside
    the site are recorded; requests outside the site are refused (the book reads offline)."""

    def __init__(self, chromium, base: str) -> None:
        self.page = chromium.new_page()
        self.problems: list[str] = []
        host = urlsplit(base).netloc
        page = self.page

        def route(r):
            if urlsplit(r.request.url).netloc == host or r.request.url.startswith("data:"):
                r.continue_()
            else:
                self.problems.append(f"request outside the site: {r.request.url}")
                r.abort()

        page.route("**/*", route)
        page.on("console", lambda m: m.type == "error" and self.problems.append(m.text))
        page.on("pageerror", lambda e: self.problems.append(f"uncaught: {e}"))
        page.on(
            "response",
            lambda r: r.status >= 400 and self.problems.append(f"HTTP {r.status}: {r.url}"),
        )


@pytest.fixture(scope="module")
def demo(chromium, site):
    watch = PageWatch(chromium, site)
    watch.page.goto(f"{site}/demo.html")
    watch.page.wait_for_function(
        "window.hwrDemo && (window.hwrDemo.error || "
        "(window.hwrDemo.digit.ready && window.hwrDemo.number.ready))",
        timeout=60_000,
    )
    assert watch.page.evaluate("window.hwrDemo.error") is None
    yield watch
    watch.page.close()


def test_every_page_loads_offline_cleanly_with_math_and_images(chromium, site):
    pages = sorted(p.name for p in HTML.glob("*.html"))
    assert "demo.html" in pages and "reading_numbers.html" in pages
    for name in pages:
        watch = PageWatch(chromium, site)
        watch.page.goto(f"{site}/{name}", wait_until="load")
        if name == "index.html":  # the book's front door sends the reader to the introduction
            watch.page.wait_for_url("**/intro.html")
            name = "intro.html"
        html = (HTML / name).read_text()
        if 'class="math' in html:  # MathJax typesets, from the build's own copy
            watch.page.wait_for_function(
                "document.querySelectorAll('mjx-container').length > 0", timeout=20_000
            )
            assert watch.page.locator("mjx-merror").count() == 0, name
        broken = watch.page.evaluate(
            "[...document.images].filter(i => !i.complete || i.naturalWidth === 0)"
            ".map(i => i.getAttribute('src'))"
        )
        assert broken == [], (name, broken)
        watch.page.wait_for_timeout(200)  # late console messages
        assert watch.problems == [], (name, watch.problems)
        watch.page.close()


def traced(digit: np.ndarray, page) -> None:
    page.click('[data-hwr="clear"]')
    browser.draw_strokes(page, browser.CANVAS, browser.digit_strokes(digit), scale=10)
    browser.settle(page)


def canvas_gray(page, hook: str) -> np.ndarray:
    # The drawing's own pixels (a screenshot would be at the size the page shows it); the ink
    # is white on black, so the red channel is all there is.
    width, height, red = page.evaluate(
        f"""() => {{ const c = document.querySelector('[data-hwr="{hook}"]');
        const rgba = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        return [c.width, c.height, Array.from(rgba.filter((_, i) => i % 4 === 0))]; }}"""
    )
    return np.array(red, dtype=np.uint8).reshape(height, width)


def test_the_page_reads_traced_test_digits_as_python_would(demo, mnist):
    page = demo.page
    assert page.text_content('[data-hwr="prediction"]') == ""  # no ink, no answer
    model = OnnxModel(DEMO / "hwrnet.onnx")
    _, test = mnist
    picks = [int(i) for d in range(10) for i in np.flatnonzero(test.labels == d)[:TRACED_PER_CLASS]]
    right, largest_difference = 0, 0
    for index in picks:
        traced(test.images[index].numpy(), page)
        shown = page.text_content('[data-hwr="prediction"]')
        right += shown == str(int(test.labels[index]))
        # Parity: the browser's 28x28 against the Python function on the same drawing.
        in_browser = np.array(page.evaluate("Array.from(window.hwrDemo.digit.lastInput)"))
        in_python = mnist_convention(canvas_gray(page, browser.CANVAS)).astype(int)
        difference = np.abs(in_browser.reshape(28, 28) - in_python)
        largest_difference = max(largest_difference, int(difference.max()))
        python_answer = model(_as_batch(in_python)).argmax(1).item()
        assert shown == str(python_answer), index
    assert largest_difference <= 1  # grey levels of 255: float rounding, truncated to uint8
    assert right / len(picks) >= 0.95, f"{right} of {len(picks)} traced digits read right"
    page.click('[data-hwr="clear"]')
    browser.settle(page)
    assert page.text_content('[data-hwr="prediction"]') == ""
    assert page.evaluate("window.hwrDemo.digit.lastInput") is None
    assert demo.problems == []


def _as_batch(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image.astype(np.float32) / 255).reshape(1, 1, 28, 28)


def test_the_page_reads_whole_numbers_as_hwr_read_would(demo, mnist):
    page = demo.page
    model = OnnxModel(DEMO / "crnn.onnx")
    _, test = mnist
    rng = np.random.default_rng(0)
    agree = right = 0
    for _ in range(NUMBERS):
        picks = rng.integers(0, len(test), size=int(rng.integers(3, 6)))
        page.click('[data-hwr="number-clear"]')
        for k, index in enumerate(picks):  # MNIST frames at 4.5x, a digit every 105 pixels
            strokes = browser.digit_strokes(test.images[int(index)].numpy())
            browser.draw_strokes(page, browser.NUMBER_CANVAS, strokes, 4.5, (15 + 105 * k, 12))
        browser.settle(page, "number")
        truth = "".join(str(int(test.labels[i])) for i in picks)
        shown = page.text_content('[data-hwr="number-reading"]')
        photo = canvas_gray(page, browser.NUMBER_CANVAS)
        strip = preprocess_number_photo(photo)
        logits = model(torch.from_numpy(strip.astype(np.float32) / 255)[None, None])
        in_python = "".join(str(s) for s in greedy_decode(logits)[0])
        agree += shown == in_python
        right += shown == truth
    assert agree >= NUMBERS - 1, f"browser and Python agree on {agree} of {NUMBERS} numbers"
    assert right >= NUMBERS - 2, f"{right} of {NUMBERS} numbers read right"
    assert demo.problems == []


def test_a_canvas_screenshot_is_what_the_page_drew(demo):
    # The drawing is white ink on black: what the preprocessing expects.
    page = demo.page
    page.click('[data-hwr="clear"]')
    browser.draw_strokes(page, browser.CANVAS, [[(14, 4), (14, 24)]], scale=10)
    browser.settle(page)
    image = np.asarray(Image.open(io.BytesIO(page.locator('[data-hwr="canvas"]').screenshot())))
    assert image[..., :3].max() == 255 and np.median(image[..., :3]) == 0
    assert page.text_content('[data-hwr="prediction"]') == "1"
