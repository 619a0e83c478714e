"""Candidate recipes for the line reader (Part V), compared the way a default should be chosen:
each trained with several seeds, scored on validation only.

    python benchmarks/line_reader_candidates.py \\
        --json benchmarks/results/line_reader_candidates.json
    python benchmarks/line_reader_candidates.py --budget full \\
        --json benchmarks/results/line_reader_candidates_full.json
    python benchmarks/line_reader_candidates.py --budget full --only \
        "28 epochs, batch 32, peak lr 0.003, LSTM"        # some candidates only
    python benchmarks/line_reader_candidates.py --smoke    # 16 lines, 1 epoch, 1 seed

``--budget short``: every candidate trains ``--epochs`` epochs (4: minutes a run).
``--budget full``: every candidate is a whole recipe, epochs included, sized to the hour of
training on two cores that the book allows the line reader; the comparison that decides.
Each run is ``hwr train --data copiste --seed S`` plus the candidate's options, in a process of
its own with one thread (``--jobs`` of them at a time: on two cores, two runs side by side train
faster in all than one run on two threads; the figures compared do not depend on the threads,
the times printed do). A run's checkpoint and log go to ``--folder``; a finished one is
collected as it is and an interrupted one resumed, so the script can be run again after a stop
(or the runs made by hand, by the same commands, into the same files). The figure compared is
the greedy validation CER after the last epoch (the test split is not looked at to choose); the
spread is over seeds. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TextIO

from hwr_utils.bench.engines import describe_machine, mean_and_spread
from hwr_utils.checkpoints import load_checkpoint

#: The candidates of each budget: ``hwr train`` options added to the defaults. Each names every
#: setting it is about, so that it keeps its meaning when the defaults change; the short budget
#: adds ``--epochs``.
CANDIDATES: dict[str, dict[str, list[str]]] = {
    "short": {
        # The first default's batch, at its peak rate and at twice it.
        "peak lr 0.0015 (batch 16)": ["--batch-size", "16", "--lr", "0.0015"],
        "peak lr 0.003 (batch 16)": ["--batch-size", "16", "--lr", "0.003"],
    },
    "full": {
        # The book's first line reader's recipe, whose hour was measured on one thread.
        "16 epochs, batch 16, peak lr 0.0015": ["--epochs", "16", "--batch-size", "16",
                                                "--lr", "0.0015"],
        # Two threads at batch 32 train more lines a second than one thread at batch 16
        # (line_reader_threads.py): the same hour holds more epochs; the peak rate grows with
        # the batch.
        "28 epochs, batch 32, peak lr 0.003": ["--epochs", "28", "--batch-size", "32",
                                               "--lr", "0.003"],
        # The same with an LSTM reading the columns: oneDNN's fused LSTM trained faster than the
        # GRU on the CPU measured (line_reader_threads.py), so the same epochs may fit the hour
        # where the GRU's do not. Its time is the recipe's only when run alone on two threads.
        "28 epochs, batch 32, peak lr 0.003, LSTM": ["--epochs", "28", "--batch-size", "32",
                                                     "--lr", "0.003", "--model-kwargs",
                                                     "cell=lstm"],
    },
}  # fmt: skip
#: Where each budget's runs go unless ``--folder`` says otherwise.
FOLDERS = {"short": "checkpoints/candidates", "full": "checkpoints/line_candidates"}


def run_name(candidates: dict[str, list[str]], candidate: str, seed: int) -> str:
    return f"{list(candidates).index(candidate)}.seed{seed}"


def command(options: list[str], seed: int, out: Path, smoke: bool) -> list[str]:
    """The ``hwr train`` command of one run (with ``--resume`` when a checkpoint is there)."""
    argv = [sys.executable, "-m", "hwr_utils", "train", "--data", "copiste", "--seed", str(seed),
            "--out", str(out), *options]  # fmt: skip
    if smoke:
        argv += ["--epochs", "1", "--train-limit", "16", "--no-progress"]
    if out.is_file():
        argv.append("--resume")
    return argv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", choices=tuple(CANDIDATES), default="short")
    parser.add_argument("--epochs", type=int, default=4, help="the short budget's epochs")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time, one thread each")
    parser.add_argument("--folder", default=None, help="default: by budget, under checkpoints/")
    parser.add_argument("--smoke", action="store_true", help="16 lines, 1 epoch, 1 seed")
    parser.add_argument("--only", nargs="+", metavar="CANDIDATE",
                        help="these candidates only (--json then holds only them)")  # fmt: skip
    parser.add_argument("--json", default=None, help="write the results to this file")
    args = parser.parse_args()
    print(describe_machine())
    candidates = CANDIDATES[args.budget]
    unknown = set(args.only or ()) - set(candidates)
    if unknown:
        parser.error(f"not a {args.budget} candidate: {', '.join(sorted(unknown))}")
    seeds = 1 if args.smoke else args.seeds
    epochs = ["--epochs", str(args.epochs)] if args.budget == "short" else []
    if args.smoke:
        folder = Path(tempfile.mkdtemp(prefix="hwr-candidates-"))
    else:
        folder = Path(args.folder or FOLDERS[args.budget])
    folder.mkdir(parents=True, exist_ok=True)
    todo = []
    for seed in range(seeds):
        for candidate in args.only or candidates:
            out = folder / f"{run_name(candidates, candidate, seed)}.pt"
            done = out.is_file() and "val" in load_checkpoint(out).get("metrics", {})
            if not done:
                todo.append((candidate, seed, out))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    running: list[tuple[subprocess.Popen, Path, TextIO]] = []
    tic = time.perf_counter()
    while todo or running:
        while todo and len(running) < args.jobs:
            candidate, seed, out = todo.pop(0)
            log = open(out.with_suffix(".log"), "a")  # noqa: SIM115 - closed when the run ends
            argv = command([*epochs, *candidates[candidate]], seed, out, args.smoke)
            running.append((subprocess.Popen(argv, stdout=log, stderr=log, env=env), out, log))
            print(f"  started {candidate}, seed {seed} ({time.perf_counter() - tic:.0f} s)")
        time.sleep(1 if args.smoke else 10)
        for process, out, log in list(running):
            if process.poll() is not None:
                running.remove((process, out, log))
                log.close()
                if process.returncode != 0:
                    raise SystemExit(f"{out.with_suffix('.log')}: the run failed")
    results = {}
    budget = f"{args.epochs} epochs" if args.budget == "short" else "the full budget"
    print(f"line_reader candidates, {budget}, {seeds} seeds each, greedy validation CER:")
    for candidate in args.only or candidates:
        runs = []
        for seed in range(seeds):
            checkpoint = load_checkpoint(folder / f"{run_name(candidates, candidate, seed)}.pt")
            runs.append({
                "seed": seed,
                "epochs": checkpoint["epoch"],
                "val_cer_greedy": checkpoint["metrics"]["val"]["cer"],
                "val_cer_by_epoch": [row["val_cer"] for row in checkpoint["history"]],
                "train_seconds": checkpoint["train_seconds"],
            })  # fmt: skip
        results[candidate] = runs
        cers = [r["val_cer_greedy"] for r in runs]
        seconds = sum(r["train_seconds"] for r in runs) / len(runs)
        print(f"  {candidate:42} val CER {mean_and_spread(cers)}  "
              f"(seeds: {', '.join(f'{c:.4f}' for c in cers)}; {seconds:.0f} s a run)")  # fmt: skip
    if args.smoke:
        shutil.rmtree(folder)  # the smoke runs' readers and logs
    if args.json:
        result = {"machine": describe_machine(), "budget": args.budget, "jobs": args.jobs,
                  "epochs": args.epochs if args.budget == "short" else None,
                  "options": {c: candidates[c] for c in results}, "runs": results}  # fmt: skip
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
