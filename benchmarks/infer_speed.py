"""Inference speed of the book's model through every engine, with its test-set predictions.

    python benchmarks/infer_speed.py               # checkpoints/hwrnet.pt (trained if absent)
    python benchmarks/infer_speed.py --smoke       # seconds: keeps the script from rotting
    python benchmarks/infer_speed.py --checkpoint PATH --json out.json

For each engine: batch-1 latency (median and 99th percentile of single-image calls) and batched
throughput (the whole MNIST test set in batches of ``--batch-size``), and how many of the
10,000 test predictions differ from the eager model's. Engines: eager PyTorch (NCHW and
channels-last), ``torch.compile``, the ``torch.export`` program that ``hwr export`` writes,
ONNX Runtime (default threads and one thread), and ONNX Runtime on an int8 model quantized
statically (calibrated on training images, never on test images). The int8 row reports its own
test accuracy: quantization is allowed to change predictions, the others are not. Figures are
printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from hwr_utils.bench.engines import describe_machine, inference_engines, latency_ms, predict_all
from hwr_utils.data import load_mnist, to_float
from hwr_utils.teaching.notebooks import load_or_train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="checkpoints/hwrnet.pt")
    parser.add_argument("--smoke", action="store_true", help="few calls, 1,000 test images")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--json", default=None, help="write the results to this file")
    args = parser.parse_args()

    print(describe_machine())
    model, checkpoint = load_or_train(args.checkpoint, smoke=args.smoke)
    print(f"model: {checkpoint['path']} ({checkpoint['model']})")
    train, test = load_mnist()
    images = to_float(test.images)  # pixels in [0, 1]: every engine normalizes inside
    labels = test.labels
    if args.smoke:
        images, labels = images[:1000], labels[:1000]
    calibration = to_float(train.images[:512])  # training images, never test ones
    calls = 50 if args.smoke else 2000

    results = {}
    with tempfile.TemporaryDirectory() as folder, torch.inference_mode():
        built = inference_engines(Path(checkpoint["path"]), model, Path(folder), calibration)
        reference = None
        for name, engine in built.items():
            predictions, per_second = predict_all(engine, images, args.batch_size)
            reference = predictions if reference is None else reference
            p50, p99 = latency_ms(engine, images[:1], calls)
            results[name] = {
                "p50_ms": p50,
                "p99_ms": p99,
                "images_per_second": per_second,
                "differ": int((predictions != reference).sum()),
                "accuracy": (predictions == labels).float().mean().item(),
            }

    print(
        f"\n{'engine':<24}{'p50 ms':>8}{'p99 ms':>8}{'images/s':>10}"
        f"{'differ':>8}{'accuracy':>10}   (batch {args.batch_size}; {len(images):,} test images)"
    )
    for name, r in results.items():
        print(
            f"{name:<24}{r['p50_ms']:8.3f}{r['p99_ms']:8.3f}{r['images_per_second']:10,.0f}"
            f"{r['differ']:8}{r['accuracy']:10.4f}"
        )
    exact = {n: r for n, r in results.items() if r["differ"] == 0}
    fastest = min(exact, key=lambda n: exact[n]["p50_ms"])
    widest = max(exact, key=lambda n: exact[n]["images_per_second"])
    print(
        f"\nidentical predictions, lowest batch-1 latency: {fastest} "
        f"({exact[fastest]['p50_ms']:.3f} ms p50); highest throughput: {widest} "
        f"({exact[widest]['images_per_second']:,.0f} images/s)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
