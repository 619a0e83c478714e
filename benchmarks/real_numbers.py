"""The number reader on real handwritten numbers: zero-shot, and after ``hwr finetune`` on
numbers cut from the *training* writers' lines, alone or mixed with MNIST strips, with several
seeds.

    python benchmarks/real_numbers.py --json benchmarks/results/real_numbers.json
    python benchmarks/real_numbers.py --smoke      # small models, 1 seed: keeps it from rotting

The test set is the book's real-numbers set (``book/real_numbers``: numbers of the validation
and test writers of *Copiste d'un jour*, each crop looked at). The fine-tuning numbers are cut
the same way (:mod:`hwr_utils.real_numbers`) from the lines of the training writers,
with no crop looked at, so they are noisier. Each seed runs what ``hwr finetune --checkpoint
checkpoints/crnn.pt --data folder:DIR --seed S`` runs (its defaults; validation: one in ten
of the numbers, drawn with the seed), then is scored on the real numbers and on the published
MNIST test strips (what fine-tuning may cost the reader on the hand it learnt first). The second
recipe adds as many strips of MNIST *training* digits to the folder (one draw, seed 0), the usual
remedy against forgetting the first hand. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from PIL import Image

from hwr_utils.bench.engines import describe_machine, mean_and_spread
from hwr_utils.bench.numbers import cut_training_writers_numbers, score_reader
from hwr_utils.checkpoints import model_from_checkpoint
from hwr_utils.config import TrainConfig
from hwr_utils.data import load_mnist
from hwr_utils.datasets import load_dataset
from hwr_utils.digit_strings import make_number_strips, published_test_strips
from hwr_utils.teaching.notebooks import load_or_train
from hwr_utils.train import fit

PUBLISHED = Path(__file__).parents[1] / "book" / "real_numbers"
RECIPES = ("real numbers", "real numbers + MNIST strips")


def add_mnist_strips(source: Path, out: Path, count: int) -> None:
    """A copy of the folder ``source`` with ``count`` strips of MNIST training digits added, dark
    ink on white as the crops are, listed in its labels (writer ``MNIST``)."""
    shutil.copytree(source, out)
    train_digits, _ = load_mnist()
    strips = make_number_strips(train_digits, count, seed=0)
    with open(out / "labels.csv", "a", newline="", encoding="utf-8") as handle:
        table = csv.writer(handle)
        for i, (image, text) in enumerate(zip(strips.images, strips.texts(), strict=True)):
            name = f"mnist-{i:05d}.png"
            Image.fromarray(255 - image.numpy()).save(out / name)
            table.writerow([name, text, "MNIST"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="checkpoints/crnn.pt")
    parser.add_argument("--line-reader", default="checkpoints/line_reader.pt")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="small models, 1 seed, 1 epoch")
    parser.add_argument("--json", default=None, help="write the results to this file")
    args = parser.parse_args()
    print(describe_machine())
    scratch = Path(tempfile.mkdtemp(prefix="hwr-real-numbers-"))
    reader, reader_checkpoint = load_or_train(args.checkpoint, smoke=args.smoke, model="crnn")
    tuning_folder = scratch / "train_numbers"
    written, lines, unaligned = cut_training_writers_numbers(
        args.line_reader, tuning_folder, args.smoke
    )
    print(f"{written} numbers cut from {lines} training lines ({unaligned} unaligned)")
    folders = {RECIPES[0]: tuning_folder, RECIPES[1]: scratch / "mixed"}
    add_mnist_strips(tuning_folder, folders[RECIPES[1]], written)

    alphabet = reader_checkpoint["class_names"]  # a reader keeps its alphabet
    test = load_dataset(f"folder:{PUBLISHED}", val_size=0, alphabet=alphabet).train
    _, mnist_test = load_mnist()
    strips = published_test_strips(mnist_test, 200 if args.smoke else 2000)
    zero_shot = {"real": score_reader(reader, test), "mnist_strips": score_reader(reader, strips)}
    print(f"zero-shot: real numbers {zero_shot['real']}, MNIST strips {zero_shot['mnist_strips']}")
    runs = []
    for seed in range(1 if args.smoke else args.seeds):
        for recipe, folder in folders.items():
            config = TrainConfig(
                model="crnn", data=f"folder:{folder}", init_from=reader_checkpoint["path"],
                seed=seed, out=str(scratch / f"tuned{seed}.pt"), progress=False,
                **({"epochs": 1} if args.smoke else {}),
            )  # fmt: skip
            tic = time.perf_counter()
            tuned = model_from_checkpoint(fit(config))
            run = {"recipe": recipe, "seed": seed, "seconds": time.perf_counter() - tic}
            run.update({f"real_{k}": v for k, v in score_reader(tuned, test).items()})
            run.update({f"mnist_strips_{k}": v for k, v in score_reader(tuned, strips).items()})
            runs.append(run)
            print(f"  {recipe}, seed {seed}: " + json.dumps(run), flush=True)
    for recipe in RECIPES:
        mine = [r for r in runs if r["recipe"] == recipe]
        print(f"\ncrnn on {len(test)} real numbers, fine-tuned on {recipe} ({len(mine)} seeds):")
        for key in ("real_accuracy", "real_cer", "mnist_strips_accuracy", "mnist_strips_cer"):
            before = zero_shot[key.rsplit("_", 1)[0]][key.rsplit("_", 1)[1]]
            after = mean_and_spread([r[key] for r in mine])
            print(f"  {key:24} zero-shot {before:.4f}   fine-tuned {after}")
        print(f"  seconds a run {statistics.mean(r['seconds'] for r in mine):.0f}")
    if args.json:
        result = {
            "machine": describe_machine(),
            "checkpoint": args.checkpoint,
            "line_reader": args.line_reader,
            "test_numbers": len(test),
            "tuning_numbers": written,
            "mnist_strips_added": written,
            "mnist_strips": len(strips),
            "zero_shot": zero_shot,
            "runs": runs,
        }
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    shutil.rmtree(scratch)  # the fine-tuned checkpoints and the folders


if __name__ == "__main__":
    main()
