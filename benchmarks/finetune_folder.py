"""``hwr finetune`` on a folder of real handwriting, timed, against the model zero-shot, with
several seeds: USPS digits written out as image files stand in for a reader's own scans.

    python benchmarks/finetune_folder.py            # 5 seeds, 100 digits a class, USPS test set
    python benchmarks/finetune_folder.py --smoke    # 1 seed, 10 a class, 1 epoch: keeps it alive
    python benchmarks/finetune_folder.py --json out.json

USPS's digits (real scans of ZIP codes, 16x16) are written as enlarged, dark-on-light PNGs in
class folders (:func:`hwr_utils.datasets.folders.write_class_folder`): ``--per-class`` training
digits of every class, drawn anew for every seed (:func:`hwr_utils.finetune.stratified_split`:
which digits are labelled varies as much as the training's own randomness), and USPS's whole
test set, each twice: with the class names ``0``..``9``, which the base model knows (its
trained outputs are kept), and with French number words (``zéro``..``neuf``: new classes, a
new last layer). Each seed runs ``hwr finetune`` (its defaults) as a user would, in a fresh
process, and
``hwr evaluate --data folder:TEST --json`` scores the result. Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hwr_utils.bench.engines import describe_machine
from hwr_utils.data import load_usps
from hwr_utils.datasets.folders import write_class_folder
from hwr_utils.finetune import stratified_split
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
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--json", default=None, help="write the results to this file")
    args = parser.parse_args()

    print(describe_machine())
    _, checkpoint = load_or_train(args.checkpoint, smoke=args.smoke)  # smoke: maybe a small one
    base = checkpoint["path"]
    print(f"base model: {checkpoint['model']} from {base}")
    seeds = [0] if args.smoke else list(range(args.seeds))
    per_class = 10 if args.smoke else args.per_class
    train, test = load_usps()
    if args.smoke:
        test = type(test)(test.images[:200], test.labels[:200])
    work = Path(tempfile.mkdtemp(prefix="hwr-finetune-"))
    tests = {naming: write_class_folder(test.images, test.labels, names, work / naming / "test")
             for naming, names in (("digits", DIGITS), ("french", FRENCH))}  # fmt: skip
    print(f"{per_class} USPS training digits a class, drawn per seed; {len(test)} test digits")

    def accuracy(checkpoint: str | Path, folder: Path) -> float:
        out, _ = hwr("evaluate", "--checkpoint", str(checkpoint), "--data", f"folder:{folder}",
                     "--json")  # fmt: skip
        return json.loads(out)["accuracy"]

    zero_shot = accuracy(base, tests["digits"])
    print(f"zero-shot: accuracy {zero_shot:.4f} on the USPS test folder")
    runs = []
    for seed in seeds:
        chosen = stratified_split(train.labels, per_class, seed=seed)
        for naming, names in (("digits", DIGITS), ("french", FRENCH)):
            train_folder = write_class_folder(train.images[chosen], train.labels[chosen], names,
                                              work / naming / f"train-{seed}")  # fmt: skip
            out = work / f"{naming}-{seed}.pt"
            extra = ["--epochs", "1"] if args.smoke else []
            _, seconds = hwr("finetune", "--checkpoint", base, "--data",
                             f"folder:{train_folder}", "--out", str(out), "--seed", str(seed),
                             "--no-progress", *extra)  # fmt: skip
            run = {"naming": naming, "seed": seed, "accuracy": accuracy(out, tests[naming]),
                   "finetune_seconds": seconds}  # fmt: skip
            runs.append(run)
            print(f"{naming:6} seed {seed}: accuracy {run['accuracy']:.4f} "
                  f"(hwr finetune took {seconds:.0f} s)")  # fmt: skip
    shutil.rmtree(work)  # the folders written and the fine-tuned checkpoints
    for naming in tests:
        scores = [r["accuracy"] for r in runs if r["naming"] == naming]
        print(
            f"{naming}: {statistics.mean(scores):.4f} on average, {min(scores):.4f} to "
            f"{max(scores):.4f} across {len(scores)} seeds (zero-shot {zero_shot:.4f})"
        )
    if args.json:
        result = {
            "machine": describe_machine(),
            "checkpoint": base,
            "train_digits": 10 * per_class,
            "train_draw": "stratified_split(seed) per seed",
            "test_digits": len(test),
            "zero_shot": zero_shot,
            "runs": runs,
        }
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
