"""Reading speed of the line reader (Part V): the time to read one line, eager PyTorch and ONNX
Runtime, and what decoding adds (greedy, and the language model).

    python benchmarks/line_reader_speed.py                  # checkpoints/line_reader.pt
    python benchmarks/line_reader_speed.py --smoke          # a tiny reader, 20 lines
    python benchmarks/line_reader_speed.py --json out.json

Every test line is read alone, at its own width and a margin of background after its ink
(:data:`~hwr_utils.lines.READ_MARGIN`), as ``hwr read`` reads a file: the network's
forward pass (after a warm-up of a few lines), its median and 99th percentile over the lines;
then the median time each decoding adds to a line, and the CER of each engine's readings, which
must agree. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from hwr_utils.bench.engines import describe_machine, median_and_p99, smoke_line_reader
from hwr_utils.checkpoints import load_model
from hwr_utils.data import to_float
from hwr_utils.datasets import load_dataset
from hwr_utils.errors import HwrError
from hwr_utils.lines import READ_MARGIN, ink_widths
from hwr_utils.lm import LineDecoder, cer
from hwr_utils.tasks import LineRecognition


def milliseconds(function, inputs: list) -> tuple[list[float], list]:
    """Each call's wall time in milliseconds and its result, one input at a time."""
    times, results = [], []
    for x in inputs:
        tic = time.perf_counter_ns()
        results.append(function(x))
        times.append((time.perf_counter_ns() - tic) / 1e6)
    return times, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="checkpoints/line_reader.pt")
    parser.add_argument("--smoke", action="store_true", help="a tiny reader, 20 test lines")
    parser.add_argument("--json", default=None, help="write the figures to this file")
    args = parser.parse_args()
    print(describe_machine())
    folder = Path(tempfile.mkdtemp(prefix="hwr-line-speed-"))
    path = Path(args.checkpoint)
    if args.smoke:
        path = smoke_line_reader(folder / "lines.pt")
    model, checkpoint = load_model(path)
    test = load_dataset("copiste").test
    if args.smoke:
        test = test.subset(torch.arange(20))
    padded = F.pad(test.images, (0, READ_MARGIN))  # background after the widest line too
    spans = (ink_widths(test.images) + READ_MARGIN).tolist()
    lines = [to_float(padded[i : i + 1, :, :span]) for i, span in enumerate(spans)]
    engines = {"eager": model}
    try:
        from hwr_utils.export import export_model

        onnx_path, _ = export_model(path, "onnx", folder / "lines.onnx")
        engines["onnxruntime"] = load_model(onnx_path)[0]
    except HwrError as error:  # without the deploy extra: eager only
        print(f"(no ONNX Runtime row: {error})")
    greedy = LineRecognition(class_names=checkpoint["class_names"]).texts
    decoder = LineDecoder.from_state(checkpoint["decoder"])
    truth = list(test.texts)
    rows = []
    with torch.inference_mode():
        for name, engine in engines.items():
            milliseconds(engine, lines[:5])  # warm-up
            forward_times, outputs = milliseconds(engine, lines)
            greedy_times, greedy_texts = milliseconds(lambda o: greedy(o)[0], outputs)
            lm_times, lm_texts = milliseconds(lambda o: decoder(o)[0], outputs)
            median, p99 = median_and_p99(forward_times)
            rows.append({
                "engine": name,
                "forward_ms": median,
                "forward_p99_ms": p99,
                "greedy_ms": statistics.median(greedy_times),
                "lm_ms": statistics.median(lm_times),
                "cer_greedy": cer(greedy_texts, truth),
                "cer": cer(lm_texts, truth),
            })  # fmt: skip
    shutil.rmtree(folder)  # the export (and the smoke run's reader)
    widths = test.widths.float()
    print(f"{len(lines)} test lines, read one at a time (widths {int(widths.min())} to "
          f"{int(widths.max())} px, median {int(widths.median())}); per line:")  # fmt: skip
    header = ("network ms", "p99 ms", "+ greedy ms", "+ LM ms", "CER greedy", "CER LM")
    print(f"{'engine':<26}" + "".join(f"{h:>12}" for h in header))
    for r in rows:
        values = (r["forward_ms"], r["forward_p99_ms"], r["greedy_ms"], r["lm_ms"])
        print(f"{'line_reader, ' + r['engine']:<26}" + "".join(f"{v:12.2f}" for v in values)
              + f"{r['cer_greedy']:12.4f}{r['cer']:12.4f}")  # fmt: skip
    if args.json:
        result = {"machine": describe_machine(), "lines": len(lines), "rows": rows}
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
