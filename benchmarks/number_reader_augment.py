"""The number reader's recipes, three seeds each at the default budget, scored on MNIST's hand
and on other hands. Trained by one-cycle SGD (peak 0.05): without strip augmentation
(``none``), with it (``strips``), with it on new strips every epoch (``fresh``:
``--fresh-strips``). Trained by AdamW, with strip augmentation: at the line reader's peak
(``adamw``: ``--optimizer adamw --lr 0.003``) and at twice that (``adamw_high``: ``--lr
0.006``, the default since it was chosen here).

    python benchmarks/number_reader_augment.py --json benchmarks/results/number_reader_augment.json
    python benchmarks/number_reader_augment.py --recipes strips fresh   # some of them
    python benchmarks/number_reader_augment.py --smoke      # tiny models, 1 seed: keeps it working

Each run is what ``hwr train --model crnn --seed N`` with the recipe's options runs (the default
budget: 8 epochs of 40,000 strips), saved in ``--candidates`` as ``RECIPE.seedN.pt`` and reused
when there (train them one at a time, alone on the machine, so that their training times can be
compared). The recipe is chosen on numbers of the *training* writers of *Copiste d'un jour*, cut
from their lines as the book's real-numbers set is (:mod:`hwr_utils.real_numbers`), with no crop
looked at: another hand than MNIST's, and not a test set. They are cut once, by
``--line-reader``, into ``CANDIDATES/numbers`` and reused, so that recipes compared later are
scored on the same numbers; ``--no-training-writers`` leaves them out where no line reader is at
hand. Two more sets that are no test set: the validation strips of the last epoch (MNIST's
validation digits) and strips of USPS *training* digits (other writers). The test sets are
reported beside them: the published MNIST test strips, strips of USPS test digits and the
book's real numbers (``book/real_numbers``). Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from hwr_utils.bench.engines import describe_machine, mean_and_spread
from hwr_utils.bench.numbers import cut_training_writers_numbers, score_reader
from hwr_utils.checkpoints import load_checkpoint, model_from_checkpoint
from hwr_utils.config import TrainConfig
from hwr_utils.data import CLASS_NAMES, load_mnist, load_usps, usps_as_mnist
from hwr_utils.datasets import load_dataset
from hwr_utils.digit_strings import TEST_SEED, make_number_strips, published_test_strips
from hwr_utils.train import fit

PUBLISHED = Path(__file__).parents[1] / "book" / "real_numbers"
#: The recipes compared: their settings of ``hwr train --model crnn`` (``--augment``,
#: ``--fresh-strips``, ``--optimizer``, ``--lr``), each spelt out in full so that a later change
#: of the defaults leaves them as they were run; the rest is the default budget.
SGD = {"optimizer": "sgd", "lr": 0.05}
RECIPES: dict[str, dict] = {
    "none": {"augment": 0.0, **SGD},
    "strips": {"augment": 1.0, **SGD},
    "fresh": {"augment": 1.0, "fresh_strips": True, **SGD},
    "adamw": {"augment": 1.0, "optimizer": "adamw", "lr": 0.003},
    "adamw_high": {"augment": 1.0, "optimizer": "adamw", "lr": 0.006},
}
SETS = ("training_writers", "usps_train_strips", "mnist_strips", "usps_strips", "real_numbers")


def candidate(folder: Path, recipe: str, seed: int, smoke: bool) -> dict:
    """The checkpoint of ``recipe`` and ``seed`` in ``folder``, trained first if missing."""
    path = folder / f"{recipe}.seed{seed}.pt"
    if not path.is_file():
        tiny = {"epochs": 1, "train_limit": 512, "model_config": {"width": 8, "hidden": 32}}
        config = TrainConfig(model="crnn", seed=seed, out=str(path), progress=False,
                             **RECIPES[recipe], **(tiny if smoke else {}))  # fmt: skip
        fit(config)
    return load_checkpoint(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", default="checkpoints/number_candidates")
    parser.add_argument("--line-reader", default="checkpoints/line_reader.pt")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--recipes", nargs="+", choices=RECIPES, default=list(RECIPES))
    parser.add_argument(
        "--no-training-writers",
        action="store_true",
        help="leave the choice set out (no line reader at hand to cut it): the test sets only",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny models, 1 seed, 1 epoch")
    parser.add_argument("--json", default=None, help="write the results to this file")
    args = parser.parse_args()
    print(describe_machine())
    scratch = tempfile.mkdtemp(prefix="hwr-number-candidates-") if args.smoke else None
    folder = Path(scratch or args.candidates)
    folder.mkdir(parents=True, exist_ok=True)

    _, mnist_test = load_mnist()
    count = 200 if args.smoke else None
    digits = list(CLASS_NAMES)  # the reader's alphabet, whatever digits a folder holds
    sets = {}
    if not args.no_training_writers:
        if not (folder / "numbers" / "labels.csv").is_file():  # cut once: every recipe, same ones
            cut_training_writers_numbers(args.line_reader, folder / "numbers", args.smoke)
        numbers = load_dataset(f"folder:{folder / 'numbers'}", val_size=0, alphabet=digits)
        sets["training_writers"] = numbers.train
    usps_train, usps_test = (usps_as_mnist(split) for split in load_usps())
    sets |= {
        # Other writers' digits, but USPS's training split: a second set to choose on.
        "usps_train_strips": make_number_strips(usps_train, count or 2000, seed=TEST_SEED),
        "mnist_strips": published_test_strips(mnist_test, count),
        "usps_strips": make_number_strips(usps_test, count or 2000, seed=TEST_SEED),
        "real_numbers": load_dataset(f"folder:{PUBLISHED}", val_size=0, alphabet=digits).train,
    }
    print(", ".join(f"{name} {len(split)}" for name, split in sets.items()) + " numbers")

    recipes = args.recipes
    runs = []
    for recipe in recipes:
        for seed in range(1 if args.smoke else args.seeds):
            checkpoint = candidate(folder, recipe, seed, args.smoke)
            model = model_from_checkpoint(checkpoint)
            run = {"recipe": recipe, "seed": seed, "train_seconds": checkpoint["train_seconds"]}
            run["val_accuracy"] = checkpoint["metrics"]["val"]["accuracy"]
            for name, split in sets.items():
                run.update({f"{name}_{k}": v for k, v in score_reader(model, split).items()})
            runs.append(run)
            print(json.dumps(run), flush=True)

    if "training_writers" in sets:
        written = len(sets["training_writers"])
        print(f"\ncrnn, {written} numbers of the training writers (the choice); test sets too")
    else:
        print("\ncrnn, validation strips and the test sets (no choice set: no recipe is chosen)")
    keys = ["val_accuracy"] + [f"{s}_{k}" for s in SETS if s in sets for k in ("accuracy", "cer")]
    keys += ["mnist_strips_accuracy_5"]  # the goal's figure
    keys += [f"mnist_strips_{kind}" for kind in ("substituted", "longer", "shorter")]  # misread
    for key in keys + ["train_seconds"]:
        cells = [mean_and_spread([r[key] for r in runs if r["recipe"] == rec]) for rec in recipes]
        print(
            f"  {key:26} "
            + "   ".join(f"{rec} {cell}" for rec, cell in zip(recipes, cells, strict=True))
        )
    if args.json:
        result = {
            "machine": describe_machine(),
            "line_reader": args.line_reader,
            "recipes": {name: RECIPES[name] for name in recipes},
            "sizes": {name: len(split) for name, split in sets.items()},
            "runs": runs,
        }
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    if args.smoke:
        shutil.rmtree(folder)  # the smoke run's scratch folder


if __name__ == "__main__":
    main()
