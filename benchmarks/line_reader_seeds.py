"""The line reader's default recipe over several seeds (Part V): validation and test CER and WER,
greedy and with the language model, with and without the consent lines, and what decoding costs
per line.

    python benchmarks/line_reader_seeds.py --json benchmarks/results/line_reader_seeds.json
    python benchmarks/line_reader_seeds.py --model-kwargs cell=lstm --seeds 0 1 \\
        --json benchmarks/results/line_reader_seeds_lstm.json    # the LSTM, two seeds
    python benchmarks/line_reader_seeds.py --bf16 --seeds 0 \\
        --json benchmarks/results/line_reader_seeds_bf16.json    # bfloat16 autocast, one seed
    python benchmarks/line_reader_seeds.py --smoke      # a tiny reader on 48 lines, 1 seed

Seed ``s`` trains ``hwr train --data copiste --seed s`` (plus ``--model-kwargs``, if given) into
``FOLDER/line_reader.seed{s}.pt`` (``line_reader.cell-lstm.seed{s}.pt`` with ``cell=lstm``,
``line_reader.bf16.seed{s}.pt`` with ``--bf16``, only where the CPU has native bfloat16):
about an hour a seed on 2 CPU cores. A finished checkpoint there is scored as it is and an
interrupted one is resumed, so the seeds can be trained one at a time, on other machines, or
beside other work (``OMP_NUM_THREADS=1``), and the script run again to collect them. ``--json``
keeps the seeds a file already holds for the same settings: seeds scored in different sessions
add up there (checkpoints need not survive between them), each with the machine that scored it.
The time per line is the model's forward pass over the test lines, one at a time as ``hwr
evaluate`` reads them, then each decoding of its outputs. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from hwr_utils.bench.engines import describe_machine, mean_and_spread
from hwr_utils.checkpoints import load_checkpoint, load_model
from hwr_utils.config import TrainConfig, parse_model_kwarg
from hwr_utils.datasets import load_dataset
from hwr_utils.evaluation import line_report
from hwr_utils.lm import LineDecoder
from hwr_utils.predict import predict_lines
from hwr_utils.runtime import bf16_supported
from hwr_utils.train import fit

#: The figures kept per seed, from :func:`hwr_utils.evaluation.line_report` on the test lines.
TEST_KEYS = tuple(
    f"{rate}{decoding}{lines}"
    for lines in ("", "_without_consent")
    for decoding in ("", "_greedy")
    for rate in ("cer", "wer")
)


def checkpoint_name(seed: int, model_config: dict[str, Any], bf16: bool = False) -> str:
    """``line_reader.seed0.pt``; with model settings, ``line_reader.cell-lstm.seed0.pt``; with
    bfloat16 autocast, ``line_reader.bf16.seed0.pt``."""
    settings = "".join(f".{name}-{value}" for name, value in model_config.items())
    settings += ".bf16" if bf16 else ""
    return f"line_reader{settings}.seed{seed}.pt"


def train_seed(
    seed: int, folder: Path, model_config: dict[str, Any], bf16: bool, smoke: bool
) -> Path:
    """The default recipe's checkpoint for ``seed`` (with ``model_config``, under bfloat16
    autocast if ``bf16``): trained, resumed, or found finished."""
    out = folder / checkpoint_name(seed, model_config, bf16)
    values = {"model": "line_reader", "seed": seed, "out": str(out), "progress": not smoke,
              "model_config": model_config, "bf16": bf16}  # fmt: skip
    if smoke:
        values.update(epochs=1, train_limit=48,
                      model_config={"width": 8, "hidden": 32, **model_config})  # fmt: skip
    config = TrainConfig(**values)
    if out.is_file():
        done = load_checkpoint(out)
        if done["epoch"] >= config.epochs and "test" in done.get("metrics", {}):
            return out
        config = TrainConfig(**values, resume=True)
    fit(config)
    return out


def score_seed(path: Path, smoke: bool) -> dict[str, float]:
    """Validation CER (greedy, from training), the test figures of ``TEST_KEYS`` and the time
    per line of the forward pass, greedy decoding and decoding with the language model."""
    model, checkpoint = load_model(path)  # the checkpoint too: one read of the file
    test = load_dataset("copiste").test
    if smoke:
        test = test.subset(torch.arange(20))
    device = torch.device("cpu")
    tic = time.perf_counter()
    outputs = predict_lines(model, test.images, None, device)
    forward = time.perf_counter() - tic
    tic = time.perf_counter()
    line_report(outputs, test, checkpoint["class_names"], None)
    greedy_time = time.perf_counter() - tic
    tic = time.perf_counter()
    decoder = LineDecoder.from_state(checkpoint["decoder"])
    report = line_report(outputs, test, checkpoint["class_names"], decoder)
    # line_report decodes greedily inside too: the language model's own cost is the difference.
    lm_time = time.perf_counter() - tic - greedy_time
    return {
        "seed": checkpoint["train_config"]["seed"],
        "epochs": checkpoint["epoch"],
        "train_seconds": checkpoint["train_seconds"],
        "val_cer_greedy": checkpoint["metrics"]["val"]["cer"],
        "alpha": decoder.alpha,
        "beta": decoder.beta,
        **{f"test_{key}": report[key] for key in TEST_KEYS},
        "test_lines": len(test),
        "ms_per_line_forward": 1000 * forward / len(test),
        "ms_per_line_greedy": 1000 * greedy_time / len(test),
        "ms_per_line_lm": 1000 * lm_time / len(test),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--model-kwargs", nargs="+", type=parse_model_kwarg, default=[],
                        metavar="NAME=VALUE", help="as hwr train's, e.g. cell=lstm")  # fmt: skip
    parser.add_argument("--bf16", action="store_true",
                        help="bfloat16 autocast (only where the CPU has it natively)")  # fmt: skip
    parser.add_argument("--folder", default="checkpoints", help="where the seeds' checkpoints go")
    parser.add_argument("--smoke", action="store_true", help="a tiny reader on 48 lines, 1 seed")
    parser.add_argument("--json", default=None, help="the seeds' figures go (are added) here")
    args = parser.parse_args()
    print(describe_machine())
    model_config = dict(args.model_kwargs)
    if args.bf16 and not bf16_supported(torch.device("cpu")):
        parser.error("--bf16: this CPU has no native bfloat16 (hwr train would use float32)")
    folder = Path(tempfile.mkdtemp(prefix="hwr-line-seeds-")) if args.smoke else Path(args.folder)
    seeds = args.seeds[:1] if args.smoke else args.seeds
    earlier = []
    if args.json and Path(args.json).is_file():
        stored = json.loads(Path(args.json).read_text())
        if (stored.get("model_config", {}), stored.get("bf16", False)) != (model_config, args.bf16):
            parser.error(f"{args.json} holds seeds with the model settings "
                         f"{stored.get('model_config', {})}, bf16 {stored.get('bf16', False)}, "
                         f"not {model_config}, bf16 {args.bf16}")  # fmt: skip
        # Older files name one machine for all their runs, at the top.
        earlier = [{"machine": stored.get("machine"), **run} for run in stored["runs"]
                   if run["seed"] not in seeds]  # fmt: skip
    runs = []
    for seed in seeds:
        path = train_seed(seed, folder, model_config, args.bf16, args.smoke)
        runs.append({**score_seed(path, args.smoke), "machine": describe_machine()})
        print(f"  seed {seed}: " + json.dumps(runs[-1]), flush=True)
    if args.smoke:
        shutil.rmtree(folder)  # the smoke run's reader
    runs = sorted(earlier + runs, key=lambda run: run["seed"])
    settings = f"{model_config or ''}{' bf16' if args.bf16 else ''}"
    print(f"\nline_reader {settings}, seeds {', '.join(str(r['seed']) for r in runs)}, "
          f"test lines: {runs[0]['test_lines']}")  # fmt: skip
    for key in ("val_cer_greedy", *(f"test_{k}" for k in TEST_KEYS)):
        print(f"  {key:34}{mean_and_spread([r[key] for r in runs]):>18}")
    for key in ("ms_per_line_forward", "ms_per_line_greedy", "ms_per_line_lm", "train_seconds"):
        print(f"  {key:34}{statistics.mean(r[key] for r in runs):>12.1f}")
    if args.json:
        machines = sorted({run["machine"] for run in runs if run["machine"]})
        result = {"machines": machines, "model_config": model_config, "bf16": args.bf16,
                  "runs": runs}  # fmt: skip
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
