"""How fast the line reader trains on this machine's cores, arranged in different ways: one or
two threads, batches of 16 or 32 lines, one process or two under ``torchrun``, a GRU or an LSTM
reading the columns, float32 or bfloat16 autocast (``--bf16``, where the CPU has it natively).

    python benchmarks/line_reader_threads.py --json benchmarks/results/line_reader_threads.json
    python benchmarks/line_reader_threads.py --only "1 process x 2 threads, batch 32" \\
        "1 process x 2 threads, batch 32, LSTM"      # some arrangements only
    python benchmarks/line_reader_threads.py --only "1 process x 2 threads, batch 32" \\
        "1 process x 2 threads, batch 32, bf16"      # bfloat16 autocast against float32
    python benchmarks/line_reader_threads.py --smoke    # 32 lines, three arrangements, once

Each run is one epoch of ``hwr train --data copiste --train-limit N`` in processes of its own;
the figure is training lines a second (``N`` over the checkpoint's ``train_seconds``, which
leaves out loading and the validation pass); an ``N`` past the training split (``--lines
100000``) times whole epochs. The arrangements run one after the other, ``--repeats`` rounds
of them interleaved, so a slow spell of the machine touches them all. Run it alone: anything
else on the cores changes every figure. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from hwr_utils.bench.engines import describe_machine
from hwr_utils.checkpoints import load_checkpoint

LSTM = ["--model-kwargs", "cell=lstm"]

#: name: (processes, threads each, lines a step over all processes, more ``hwr train`` options).
ARRANGEMENTS: dict[str, tuple[int, int, int, list[str]]] = {
    "1 process x 1 thread, batch 16": (1, 1, 16, []),
    "1 process x 2 threads, batch 16": (1, 2, 16, []),
    "1 process x 1 thread, batch 32": (1, 1, 32, []),
    "1 process x 2 threads, batch 32": (1, 2, 32, []),
    "2 processes x 1 thread, batch 16": (2, 1, 16, []),
    "2 processes x 1 thread, batch 32": (2, 1, 32, []),
    # PyTorch runs an LSTM on CPU through oneDNN's fused kernel, a GRU one step at a time.
    "1 process x 2 threads, batch 32, LSTM": (1, 2, 32, LSTM),
    # Autocast runs the convolutions, the recurrent layers and the linear layers in bfloat16 (the
    # CTC loss in float32); hwr train falls back to float32, with a warning, where the CPU has
    # no native bfloat16.
    "1 process x 2 threads, batch 32, bf16": (1, 2, 32, ["--bf16"]),
    "1 process x 2 threads, batch 32, LSTM, bf16": (1, 2, 32, [*LSTM, "--bf16"]),
}


def lines_per_second(arrangement: str, lines: int, out: Path) -> tuple[float, int]:
    """One epoch of ``hwr train`` on the first ``lines`` training lines, in ``arrangement``:
    training lines a second, and how many lines the epoch held."""
    processes, threads, batch, options = ARRANGEMENTS[arrangement]
    launcher = [sys.executable, "-m", "hwr_utils"]
    if processes > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node",
                    str(processes), "-m", "hwr_utils"]  # fmt: skip
    argv = [*launcher, "train", "--data", "copiste", "--epochs", "1", "--train-limit", str(lines),
            "--batch-size", str(batch), "--no-progress", "--out", str(out), *options]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    result = subprocess.run(argv, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise SystemExit(f"{arrangement}: hwr train failed\n{result.stderr[-2000:]}")
    checkpoint = load_checkpoint(out)
    out.unlink()
    # --train-limit past the training split trains on all of it.
    trained = min(lines, checkpoint["data"]["sizes"]["train"])
    return trained / checkpoint["train_seconds"], trained


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=960, help="training lines of each epoch")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="32 lines, three set arrangements")
    parser.add_argument("--only", nargs="+", choices=list(ARRANGEMENTS),
                        help="these arrangements; the first is the others' baseline")  # fmt: skip
    parser.add_argument("--json", default=None, help="write the figures to this file")
    args = parser.parse_args()
    print(describe_machine())
    names = args.only or list(ARRANGEMENTS)
    if args.smoke:  # both launchers, both cells, both precisions
        names = ["1 process x 1 thread, batch 16", "2 processes x 1 thread, batch 32",
                 "1 process x 2 threads, batch 32, LSTM, bf16"]  # fmt: skip
    lines, repeats = (32, 1) if args.smoke else (args.lines, args.repeats)
    folder = Path(tempfile.mkdtemp(prefix="hwr-line-threads-"))
    rates: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(repeats):
        for name in names:
            rate, trained = lines_per_second(name, lines, folder / "run.pt")
            rates[name].append(rate)
            print(f"  {name}: {rates[name][-1]:.1f} lines/s", flush=True)
    shutil.rmtree(folder)
    baseline = statistics.mean(rates[names[0]])
    print(f"line_reader, one epoch of {trained} lines, training lines a second ({repeats} runs):")
    for name in names:
        mean = statistics.mean(rates[name])
        spread = f"{min(rates[name]):.1f} to {max(rates[name]):.1f}"
        print(f"  {name:38} {mean:6.1f}  ({spread}; x{mean / baseline:.2f})")
    if args.json:
        result = {"machine": describe_machine(), "lines": trained, "lines_per_second": rates}
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
