"""Drawing on the book's page "Draw a digit" from Python, in a real browser: the built book
served over HTTP, Chromium driven by Playwright, and MNIST digits traced as pen strokes.
Used by ``tests/test_browser.py`` and ``benchmarks/browser_demo.py``.

Playwright's own browser download needs the internet; Debian's ``chromium`` package (or any
Chromium named by ``$HWR_CHROMIUM``) is used instead. :func:`find_chromium` says why none can
be used, so that tests can skip with that reason.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import threading
from collections.abc import Iterator

import numpy as np

#: The ``data-hwr`` hooks of the page's two canvases (the others: see ``demo.mjs``).
CANVAS, NUMBER_CANVAS = "canvas", "number-canvas"


def find_chromium() -> tuple[str | None, str]:
    """The Chromium executable to drive and Playwright's availability: ``(path, "")``, or
    ``(None, reason)`` when browser tests cannot run here."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return None, "Playwright is not installed (pip install -e '.[test]')"
    path = os.environ.get("HWR_CHROMIUM") or shutil.which("chromium")
    if not path:
        return None, "no Chromium found (apt-get install chromium, or set HWR_CHROMIUM)"
    return path, ""


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    # Module scripts and WebAssembly need their own types; Python's table may lack them.
    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".mjs": "text/javascript",
        ".wasm": "application/wasm",
    }

    def log_message(self, format, *args) -> None:  # noqa: A002 (the base class's name)
        pass


@contextlib.contextmanager
def serve(folder: str | os.PathLike) -> Iterator[str]:
    """Serve ``folder`` over HTTP on a free local port for the ``with`` block; yields the base
    URL. (Browsers load neither WebAssembly nor module scripts from ``file://`` pages.)"""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def thin(ink: np.ndarray) -> np.ndarray:
    """The skeleton of a binary image (Zhang and Suen, 1984): strokes worn down to one pixel
    wide, keeping their shape and connections. ``ink``: bool (H, W); returns bool (H, W)."""
    image = np.pad(ink.astype(bool), 1)
    changed = True
    while changed:
        changed = False
        for step in (0, 1):
            p = [np.roll(np.roll(image, -dy, 0), -dx, 1) for dy, dx in _NEIGHBOURS]
            count = sum(n.astype(int) for n in p)
            ring = p + p[:1]
            transitions = sum((~a & b).astype(int) for a, b in zip(ring, ring[1:], strict=False))
            p2, p4, p6, p8 = p[0], p[2], p[4], p[6]
            if step == 0:
                first, second = p2 & p4 & p6, p4 & p6 & p8
            else:
                first, second = p2 & p4 & p8, p2 & p6 & p8
            remove = image & (count >= 2) & (count <= 6) & (transitions == 1) & ~first & ~second
            if remove.any():
                image &= ~remove
                changed = True
    return image[1:-1, 1:-1]


# P2..P9 of Zhang and Suen: north, then clockwise.
_NEIGHBOURS = [(-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1)]


def digit_strokes(digit: np.ndarray, level: int = 128) -> list[list[tuple[int, int]]]:
    """Pen strokes that trace a white-on-black digit image: its skeleton (pixels of at least
    ``level``, thinned) walked as polylines of ``(x, y)`` pixel positions, each edge between
    neighbouring skeleton pixels drawn once. Strokes start at a loose end where there is one."""
    skeleton = thin(np.asarray(digit) >= level)
    points = {(int(x), int(y)) for y, x in zip(*np.nonzero(skeleton), strict=True)}
    edges = {
        frozenset((a, (a[0] + dx, a[1] + dy)))
        for a in points
        for dy, dx in _NEIGHBOURS
        if (a[0] + dx, a[1] + dy) in points
    }

    def neighbours(point):
        return [q for e in edges if point in e for q in e if q != point]

    strokes = []
    while edges:
        ends = sorted(p for p in points if len(neighbours(p)) % 2 == 1)
        start = ends[0] if ends else sorted(p for e in edges for p in e)[0]
        stroke = [start]
        while following := neighbours(stroke[-1]):
            nxt = min(following)
            edges.discard(frozenset((stroke[-1], nxt)))
            stroke.append(nxt)
        strokes.append(stroke)
    if not strokes and points:  # a lone dot
        strokes = [[min(points)]]
    return strokes


def draw_strokes(page, hook: str, strokes, scale: float, offset=(0.0, 0.0), steps: int = 1):
    """Draw ``strokes`` (pixel positions of the traced image) with the mouse on the canvas
    ``[data-hwr=hook]`` of a Playwright ``page``: each position is multiplied by ``scale``
    and moved by ``offset`` (canvas pixels), pixel centres at +0.5."""
    canvas = page.locator(f'[data-hwr="{hook}"]')
    canvas.scroll_into_view_if_needed()  # the mouse can only draw on what is on screen
    box = canvas.bounding_box()
    width = page.evaluate(f"document.querySelector('[data-hwr=\"{hook}\"]').width")
    ratio = box["width"] / width  # shown size / drawing size

    def at(point):
        x, y = ((point[0] + 0.5) * scale + offset[0], (point[1] + 0.5) * scale + offset[1])
        return box["x"] + x * ratio, box["y"] + y * ratio

    for stroke in strokes:
        page.mouse.move(*at(stroke[0]))
        page.mouse.down()
        for point in stroke[1:]:
            page.mouse.move(*at(point), steps=steps)
        page.mouse.up()


def settle(page, part: str = "digit") -> None:
    """Wait until the page has answered the last ink drawn on its ``part`` ("digit" or
    "number"): two animation frames for the pending update to start, then until it is done."""
    page.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    page.wait_for_function(f"!window.hwrDemo.{part}.busy")
