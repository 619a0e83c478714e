"""Reading speed of the number reader: batch-1 latency and strips per second, eager PyTorch and
ONNX Runtime, beside the segmentation baseline (cut into digits, then hwrnet on each piece).

    python benchmarks/reader_speed.py            # checkpoints/crnn.pt, hwrnet.pt (trained first
                                                 # if absent)
    python benchmarks/reader_speed.py --smoke    # seconds: keeps the script from rotting
    python benchmarks/reader_speed.py --json out.json

Latency: median and 99th percentile of single-strip calls (32x192, the model alone, no
decoding). Throughput: the test strips read end to end (model and greedy decoding) in batches of
``--batch-size``, best of 3; the sequence accuracy of each engine's readings is printed beside
it. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

from hwr_utils import ctc
from hwr_utils.bench.engines import describe_machine, latency_ms
from hwr_utils.data import load_mnist, to_float
from hwr_utils.digit_strings import published_test_strips
from hwr_utils.errors import HwrError
from hwr_utils.predict import read_by_segmentation
from hwr_utils.teaching.notebooks import load_or_train


def best_of_three(read) -> tuple[list[str], float]:
    """``read()``'s texts and the best of three wall times, in seconds."""
    best, texts = float("inf"), []
    for _ in range(3):
        tic = time.perf_counter()
        texts = read()
        best = min(best, time.perf_counter() - tic)
    return texts, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="checkpoints/crnn.pt")
    parser.add_argument("--digit-checkpoint", default="checkpoints/hwrnet.pt")
    parser.add_argument("--smoke", action="store_true", help="few calls, 200 strips")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--json", default=None, help="write the results to this file")
    args = parser.parse_args()

    print(describe_machine())
    reader, checkpoint = load_or_train(args.checkpoint, smoke=args.smoke, model="crnn")
    digits, digit_checkpoint = load_or_train(args.digit_checkpoint, smoke=args.smoke)
    _, test = load_mnist()
    strips = published_test_strips(test, 200 if args.smoke else 2000)
    truth, images = strips.texts(), to_float(strips.images)
    calls = 50 if args.smoke else 2000

    engines = {"eager": reader}
    folder = Path(tempfile.mkdtemp(prefix="hwr-reader-speed-"))
    try:
        from hwr_utils.export import OnnxModel, export_model

        onnx_path, _ = export_model(checkpoint["path"], "onnx", folder / "crnn.onnx")
        engines["onnxruntime"] = OnnxModel(onnx_path)
    except HwrError as error:  # without the deploy extra: eager only
        print(f"(no ONNX Runtime row: {error})")

    names = checkpoint["class_names"]

    def row(engine: str, latency: tuple[float, float] | None, seconds: float, texts: list[str]):
        right = sum(a == b for a, b in zip(texts, truth, strict=True))
        median, p99 = latency or (None, None)
        return {
            "engine": engine,
            "latency_ms": median,
            "p99_ms": p99,
            "strips_per_second": len(images) / seconds,
            "accuracy": right / len(truth),
        }

    rows = []
    with torch.inference_mode():
        for name, engine in engines.items():
            latency = latency_ms(engine, images[:1], calls)

            def read(engine=engine):
                texts = []
                for i in range(0, len(images), args.batch_size):
                    outputs = engine(images[i : i + args.batch_size])
                    texts += ["".join(names[u] for u in t) for t in ctc.greedy_decode(outputs)]
                return texts

            texts, seconds = best_of_three(read)
            rows.append(row(f"crnn, {name}", latency, seconds, texts))
        texts, seconds = best_of_three(
            lambda: read_by_segmentation(digits, strips.images, digit_checkpoint["class_names"])
        )
        rows.append(row("cut + hwrnet, eager", None, seconds, texts))
    shutil.rmtree(folder)

    print(f"{len(images)} test strips, batches of {args.batch_size}; latency: one 32x192 strip")
    print(f"{'engine':<22}{'median ms':>10}{'p99 ms':>9}{'strips/s':>11}{'accuracy':>10}")
    for result in rows:
        latency = (
            ""
            if result["latency_ms"] is None
            else (f"{result['latency_ms']:10.3f}{result['p99_ms']:9.3f}")
        )
        print(f"{result['engine']:<22}{latency:>19}{result['strips_per_second']:11,.0f}"
              f"{result['accuracy']:10.4f}")  # fmt: skip
    if args.json:
        Path(args.json).write_text(
            json.dumps({"machine": describe_machine(), "rows": rows}, indent=2)
        )


if __name__ == "__main__":
    main()
