"""The page "Draw a digit" in headless Chromium: how long its models take to load, how long
each answer takes while a digit is drawn (preprocessing + inference, measured in the page),
how many traced MNIST test digits it reads right, and what the demo adds to the built book.

    python benchmarks/browser_demo.py            # 10 traced test digits per class
    python benchmarks/browser_demo.py --smoke    # 1 per class
    python benchmarks/browser_demo.py --json out.json

Needs the built book (``jupyter-book build book/``) and Chromium (see README); without
Chromium it says so and exits. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from hwr_utils.bench.engines import describe_machine
from hwr_utils.data import load_mnist
from hwr_utils.teaching import browser

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--html", type=Path, default=ROOT / "book" / "_build" / "html")
    parser.add_argument("--smoke", action="store_true", help="one traced digit per class")
    parser.add_argument("--json", default=None, help="write the results to this file")
    args = parser.parse_args()

    print(describe_machine())
    chromium, why_not = browser.find_chromium()
    if chromium is None:
        print(f"hwrnet in the browser: not measured ({why_not})")
        return
    if not (args.html / "demo.html").is_file():
        raise SystemExit(f"no built book in {args.html}: run jupyter-book build book/ first")
    per_class = 1 if args.smoke else 10
    _, test = load_mnist()
    picks = [int(i) for d in range(10) for i in np.flatnonzero(test.labels == d)[:per_class]]

    from playwright.sync_api import sync_playwright

    with browser.serve(args.html) as site, sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = instance.new_page()
        tic = time.perf_counter()
        page.goto(f"{site}/demo.html")
        page.wait_for_function(
            "window.hwrDemo && (window.hwrDemo.error || "
            "(window.hwrDemo.digit.ready && window.hwrDemo.number.ready))",
            timeout=60_000,
        )
        ready_s = time.perf_counter() - tic
        right = 0
        for index in picks:
            page.click('[data-hwr="clear"]')
            strokes = browser.digit_strokes(test.images[index].numpy())
            browser.draw_strokes(page, browser.CANVAS, strokes, scale=10)
            browser.settle(page)
            right += page.text_content('[data-hwr="prediction"]') == str(int(test.labels[index]))
        state = page.evaluate("window.hwrDemo")
        instance.close()

    timings = state["digit"]["timings"]
    demo_files = [p for p in (args.html / "_static" / "demo").rglob("*") if p.is_file()]
    result = {
        "machine": describe_machine(),
        "ready_s": ready_s,
        "session_ms": {"hwrnet": state["digit"]["sessionMs"], "crnn": state["number"]["sessionMs"]},
        "updates": len(timings),
        "update_median_ms": statistics.median(timings),
        "update_p90_ms": float(np.percentile(timings, 90)),
        "traced_digits": len(picks),
        "traced_right": right,
        "demo_bytes": sum(p.stat().st_size for p in demo_files)
        + (args.html / "demo.html").stat().st_size,
    }
    print(
        f"page ready in {ready_s:.2f} s; sessions: hwrnet {result['session_ms']['hwrnet']:.0f} ms, "
        f"crnn {result['session_ms']['crnn']:.0f} ms"
    )
    print(
        f"hwrnet in the browser: {len(timings)} answers while drawing, preprocessing + inference "
        f"median {result['update_median_ms']:.2f} ms, "
        f"90th percentile {result['update_p90_ms']:.2f} ms"
    )
    print(f"traced MNIST test digits read right: {right} of {len(picks)}")
    print(f"the demo adds {result['demo_bytes'] / 1e6:.1f} MB to the built book")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
