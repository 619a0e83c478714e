"""How a line is read changes what the line reader reads (Part V): greedy CER of one reader on
the validation and test lines, each line read alone with a margin of background after its ink
(what ``predict_lines``, ``hwr evaluate`` and ``hwr read`` do, with
:data:`~hwr_utils.lines.READ_MARGIN`), against reading lines in batches of similar widths, as
they were read before: each batch cropped to its widest line, a line's outputs then kept to its
own columns (``hwr evaluate``) or all of the batch's (the figures printed by training).

    python benchmarks/line_reading_margin.py                # checkpoints/line_reader.pt
    python benchmarks/line_reading_margin.py --smoke        # a tiny reader, 20 lines a split
    python benchmarks/line_reading_margin.py --json out.json

Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import torch

from hwr_utils.bench.engines import describe_machine, smoke_line_reader
from hwr_utils.checkpoints import load_model
from hwr_utils.data import to_float
from hwr_utils.datasets import load_dataset
from hwr_utils.lines import READ_MARGIN, PaddedLines
from hwr_utils.lm import cer
from hwr_utils.predict import predict_lines
from hwr_utils.tasks import LineRecognition

MARGINS = (0, 2, 4, 8, 16, 32)


@torch.no_grad()
def read_in_batches(model, lines: PaddedLines, own_columns: bool, batch_size: int = 32):
    """Per-line outputs as lines were read before: batches of ``batch_size`` lines sorted by
    width, each cropped to its widest; a line keeps its own columns, or all of its batch's."""
    order = lines.widths.argsort(stable=True)
    outputs = [torch.empty(0)] * len(lines)
    for batch in order.split(batch_size):
        widest = int(lines.widths[batch].max())
        scores = model(to_float(lines.images[batch, :, :widest])).float()
        for row, i in enumerate(batch.tolist()):
            own = round(int(lines.widths[i]) * scores.shape[1] / widest)
            outputs[i] = scores[row, : own if own_columns else None]
    return outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="checkpoints/line_reader.pt")
    parser.add_argument("--smoke", action="store_true", help="a tiny reader, 20 lines a split")
    parser.add_argument("--json", default=None, help="write the figures to this file")
    args = parser.parse_args()
    print(describe_machine())
    folder = Path(tempfile.mkdtemp(prefix="hwr-line-margin-"))
    path = Path(args.checkpoint)
    if args.smoke:
        path = smoke_line_reader(folder / "lines.pt")
    model, checkpoint = load_model(path)
    model.eval()
    texts = LineRecognition(class_names=checkpoint["class_names"]).texts
    dataset = load_dataset("copiste")
    rows = {}
    for name in ("val", "test"):
        lines = getattr(dataset, name)
        if args.smoke:
            lines = lines.subset(torch.arange(20))
        truth = list(lines.texts)

        def score(outputs, truth=truth):
            return cer([texts(o.unsqueeze(0))[0] for o in outputs], truth)

        row = {f"alone, margin {m}": score(predict_lines(model, lines.images, margin=m))
               for m in MARGINS}  # fmt: skip
        row["batches of 32, own columns"] = score(read_in_batches(model, lines, True))
        row["batches of 32, all columns"] = score(read_in_batches(model, lines, False))
        rows[name] = row
        print(f"  {name}: {len(lines)} lines done", flush=True)
    shutil.rmtree(folder)  # the smoke run's reader
    print(f"line_reader {path}, greedy CER (the library reads alone, margin {READ_MARGIN}):")
    print(f"{'reading':<30}{'validation':>12}{'test':>12}")
    for key in rows["val"]:
        print(f"{key:<30}{rows['val'][key]:12.4f}{rows['test'][key]:12.4f}")
    if args.json:
        result = {"machine": describe_machine(), "checkpoint": str(path), "cer": rows}
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
