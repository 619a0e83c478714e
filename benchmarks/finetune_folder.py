"""``hwr finetune`` on a folder of real handwriting, timed, against the model zero-shot, with
several seeds: USPS digits written out as image files stand in for a reader's own scans.

    python benchmarks/finetune_folder.py            # 3 seeds, 100 digits a class, USPS test set
    python benchmarks/finetune_folder.py --smoke    # 1 seed, 10 a class, 1 epoch: keeps it alive
    python benchmarks/finetune_folder.py --json out.json

USPS's digits (real scans of ZIP codes, 16x16) are written as enlarged, dark-on-light PNGs in
class folders (:func:`hwr_utils.datasets.folders.write_class_folder`): ``--per-class`` training
digits of every class (the first ones of USPS's training set) and USPS's whole test set, each
twice: with the class names ``0``..``9``, which the base model knows (its trained outputs are
kept), and with French number words (``zéro``..``neuf``: new classes, a new last layer). Each
seed runs ``hwr finetune`` (its defaults) as a user would, in a fresh process, and
``hwr evaluate --data folder:TEST --json`` scores the result. Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from hwr_utils.bench.engines import describe_machine
from hwr_utils.data import load_usps
from hwr_utils.datasets.folders import write_class_folder
from hwr_utils.teaching.notebooks import load_or_train

DIGITS = [str(d) for d in range(10)]
FRENCH = ["zéro", "un", "deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf"]


def hwr(*args: str) -> tuple[str, float]:
    """Run ``hwr`` in a fresh process; its standard output and wall-clock seconds."""
    tic = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "hwr_utils", *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"hwr {' '.join(args)} failed: {done.stderr.strip()[-2000:]}")
    return done.stdout, time.perf_counter() - tic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="checkpoints/hwrnet.pt")
    parser.add_argument("--smoke", action="store_true", help="one seed, a few digits, 1 epoch")
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--json", default=None, help="write the results to this file")
    args = parser.parse_args()

    print(describe_machine())
    base = load_or_train(args.checkpoint, smoke=args.smoke)[1]["path"]  # smoke: maybe a small one
    seeds = [0] if args.smoke else [0, 1, 2]
    per_class = 10 if args.smoke else args.per_class
    train, test = load_usps()
    chosen = torch.cat([torch.nonzero(train.labels == d).flatten()[:per_class] for d in range(10)])
    if args.smoke:
        test = type(test)(test.images[:200], test.labels[:200])
    work = Path(tempfile.mkdtemp(prefix="hwr-finetune-"))
    folders = {}
    for naming, names in (("digits", DIGITS), ("french", FRENCH)):
        folders[naming] = (
            write_class_folder(train.images[chosen], train.labels[chosen], names,
                               work / naming / "train"),
            write_class_folder(test.images, test.labels, names, work / naming / "test"),
        )  # fmt: skip
    print(f"{len(chosen)} USPS training digits, {len(test)} test digits, written to {work}")

    def accuracy(checkpoint: str | Path, folder: Path) -> float:
        out, _ = hwr("evaluate", "--checkpoint", str(checkpoint), "--data", f"folder:{folder}",
                     "--json")  # fmt: skip
        return json.loads(out)["accuracy"]

    zero_shot = accuracy(base, folders["digits"][1])
    print(f"zero-shot: accuracy {zero_shot:.4f} on the USPS test folder")
    runs = []
    for seed in seeds:
        for naming, (train_folder, test_folder) in folders.items():
            out = work / f"{naming}-{seed}.pt"
            extra = ["--epochs", "1"] if args.smoke else []
            _, seconds = hwr("finetune", "--checkpoint", base, "--data",
                             f"folder:{train_folder}", "--out", str(out), "--seed", str(seed),
                             "--no-progress", *extra)  # fmt: skip
            run = {"naming": naming, "seed": seed, "accuracy": accuracy(out, test_folder),
                   "finetune_seconds": seconds}  # fmt: skip
            runs.append(run)
            print(f"{naming:6} seed {seed}: accuracy {run['accuracy']:.4f} "
                  f"(hwr finetune took {seconds:.0f} s)")  # fmt: skip
    for naming in folders:
        scores = [r["accuracy"] for r in runs if r["naming"] == naming]
        print(
            f"{naming}: {statistics.mean(scores):.4f} on average, {min(scores):.4f} to "
            f"{max(scores):.4f} across {len(scores)} seeds (zero-shot {zero_shot:.4f})"
        )
    if args.json:
        result = {
            "machine": describe_machine(),
            "checkpoint": base,
            "train_digits": len(chosen),
            "test_digits": len(test),
            "zero_shot": zero_shot,
            "runs": runs,
        }
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
