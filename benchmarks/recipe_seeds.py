"""The default recipe decided on validation with seeds: each candidate trained with several
seeds, validation accuracy as mean and standard deviation, test accuracy reported beside it.

    python benchmarks/recipe_seeds.py --json benchmarks/results/recipe_seeds.json   # full
    python benchmarks/recipe_seeds.py --smoke                                       # tiny

Candidates: augmentation strength (0 = off; 1 = +-10 degrees, +-10 % shift and scale) at six
epochs, then twelve epochs at strength 1 (twice the training, still within a 3-minute budget
on 2 CPU cores).
``--only`` runs some candidates; ``--json`` adds them to the file, keeping the others.
Decisions read the validation column; a difference smaller than the spread between seeds is no
difference. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
from pathlib import Path

from hwr_utils.bench.engines import describe_machine, mean_and_spread
from hwr_utils.config import TrainConfig
from hwr_utils.train import fit

CANDIDATES = {
    "augment 0 (off), 6 epochs": {"augment": 0.0},
    "augment 0.5, 6 epochs": {"augment": 0.5},
    "augment 1, 6 epochs": {"augment": 1.0},
    "augment 1.5, 6 epochs": {"augment": 1.5},
    "augment 1, 12 epochs": {"augment": 1.0, "epochs": 12},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="1 seed, 1 epoch on 500 images")
    parser.add_argument("--only", nargs="*", default=None, help="candidate names to run")
    parser.add_argument(
        "--json", default=None, help="add every run's figures to this file (kept: other candidates)"
    )
    args = parser.parse_args()
    print(describe_machine())
    folder = Path(tempfile.mkdtemp(prefix="hwr-seeds-"))
    seeds = 1 if args.smoke else args.seeds
    results: dict[str, list[dict[str, float]]] = {}
    for name, change in CANDIDATES.items():
        if args.only and name not in args.only:
            continue
        runs = []
        for seed in range(seeds):
            values = {"seed": seed, "progress": False, "out": str(folder / "run.pt"), **change}
            if args.smoke:
                values.update(epochs=1, train_limit=500)
            checkpoint = fit(TrainConfig(**values))
            runs.append(
                {
                    "seed": seed,
                    "val_accuracy": checkpoint["history"][-1]["val_accuracy"],
                    "test_accuracy": checkpoint["metrics"]["test"]["accuracy"],
                    "train_seconds": checkpoint["train_seconds"],
                }
            )
            print(f"  {name}, seed {seed}: {runs[-1]}", flush=True)
        results[name] = runs
    shutil.rmtree(folder)  # the runs' checkpoints; the figures are printed
    print(f"\n{'candidate':28}{'validation':>18}{'test':>18}{'train s':>9}")
    for name, runs in results.items():
        val = mean_and_spread([r["val_accuracy"] for r in runs])
        test = mean_and_spread([r["test_accuracy"] for r in runs])
        seconds = statistics.mean(r["train_seconds"] for r in runs)
        print(f"{name:28}{val:>18}{test:>18}{seconds:9.0f}")
    print("hwrnet")  # tests/test_benchmarks.py looks for the model's name
    if args.json:
        path = Path(args.json)
        kept = json.loads(path.read_text()) if path.is_file() else {}
        path.write_text(json.dumps({**kept, **results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
