"""Fine-tuning the number reader on strips of USPS digits, against reading them zero-shot, with
several seeds: does it pay, and by more than the spread between seeds?

    python benchmarks/reader_finetune.py            # 3 seeds, 300 steps of 64 strips each
    python benchmarks/reader_finetune.py --smoke    # 1 seed, 5 steps: keeps it from rotting
    python benchmarks/reader_finetune.py --json out.json

Each seed draws its own training strips from USPS's training digits and its own batches, then
fine-tunes ``checkpoints/crnn.pt`` with :func:`hwr_utils.finetune.finetune` under the CTC task:
``full`` (everything trains, the convolutional backbone at a tenth of the rate) and ``head``
(the backbone frozen), batch-norm statistics frozen in both. All are scored on the same strips
of USPS *test* digits (seed ``TEST_SEED``) as the chapter "Reading whole numbers". Figures are
printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from hwr_utils import ctc
from hwr_utils.bench.engines import describe_machine
from hwr_utils.data import load_usps, to_float, usps_as_mnist
from hwr_utils.digit_strings import TEST_SEED, make_number_strips
from hwr_utils.finetune import finetune
from hwr_utils.predict import predict_logits
from hwr_utils.tasks import CTCRecognition
from hwr_utils.teaching.notebooks import load_or_train

#: The recipes compared: :func:`finetune` settings, each with frozen batch-norm statistics.
RECIPES = {
    "full": {"method": "full", "lr": 1e-3, "backbone_lr_factor": 0.1},
    "head": {"method": "head", "lr": 1e-3},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="checkpoints/crnn.pt")
    parser.add_argument("--smoke", action="store_true", help="one seed, a few steps")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--test-strips", type=int, default=2000)
    parser.add_argument("--json", default=None, help="write the results to this file")
    args = parser.parse_args()

    print(describe_machine())
    reader, _ = load_or_train(args.checkpoint, smoke=args.smoke, model="crnn")
    seeds = [0] if args.smoke else [0, 1, 2]
    steps = 5 if args.smoke else args.steps
    usps_train, usps_test = load_usps()
    test = make_number_strips(
        usps_as_mnist(usps_test), 100 if args.smoke else args.test_strips, seed=TEST_SEED
    )

    def score(model) -> dict[str, float]:
        outputs = predict_logits(model, to_float(test.images), batch_size=500)
        metrics = ctc.sequence_metrics(ctc.sequence_sums(ctc.greedy_decode(outputs), test.labels))
        return {key: metrics.get(key, float("nan")) for key in ("accuracy", "accuracy_5", "cer")}

    zero_shot = score(reader)
    print(
        f"crnn zero-shot on {len(test)} USPS test strips: sequence accuracy "
        f"{zero_shot['accuracy']:.4f}, 5 digits {zero_shot['accuracy_5']:.4f}, "
        f"CER {zero_shot['cer']:.4f}"
    )
    runs = []
    for seed in seeds:
        tuning = make_number_strips(usps_as_mnist(usps_train), 64 * steps, seed=seed)
        images = to_float(tuning.images)
        for name, settings in RECIPES.items():
            tic = time.perf_counter()
            tuned = finetune(
                reader, **settings, images=images, labels=tuning.labels, build=None,
                steps=steps, batch_size=64, seed=seed, freeze_bn_stats=True,
                task=CTCRecognition(),
            )  # fmt: skip
            run = {"recipe": name, "seed": seed, **score(tuned)}
            run["seconds"] = time.perf_counter() - tic
            runs.append(run)
            print(
                f"crnn {name:5} seed {seed}: sequence accuracy {run['accuracy']:.4f}, "
                f"5 digits {run['accuracy_5']:.4f}, CER {run['cer']:.4f} ({run['seconds']:.0f} s)"
            )
    for name in RECIPES:
        accuracies = [r["accuracy"] for r in runs if r["recipe"] == name]
        gains = [a - zero_shot["accuracy"] for a in accuracies]
        print(
            f"{name}: gain over zero-shot {statistics.mean(gains):+.4f} on average, "
            f"from {min(gains):+.4f} to {max(gains):+.4f} across {len(gains)} seeds"
        )
    if args.json:
        result = {
            "machine": describe_machine(),
            "checkpoint": args.checkpoint,
            "steps": steps,
            "test_strips": len(test),
            "zero_shot": zero_shot,
            "runs": runs,
        }
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
