"""The ``hwr`` command line: ``hwr train | evaluate | predict | read | export``.

Only ``hwr train`` imports the training engine (when it runs); predicting, evaluating and
exporting need the model, not the means to train it. Errors a user can fix
(:class:`~hwr_utils.errors.HwrError`) print one line and exit with status 2; anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from . import __version__
from .checkpoints import load_model, task_from_checkpoint
from .config import config_from_args, get_args_parser
from .data import load_mnist, to_float
from .digit_strings import TEST_SEED, published_test_strips
from .errors import ConfigError, HwrError, ProcessLostError
from .export import FORMATS, export_model
from .metrics import classification_report, format_report
from .predict import predict_files, predict_logits, read_files
from .runtime import pick_device


def cmd_train(args: argparse.Namespace) -> int:
    from .distributed import process_group
    from .train import fit

    config = config_from_args(args)
    tic = time.perf_counter()
    # Under torchrun every process runs this; rank 0 speaks for the run.
    with process_group(pick_device(config.device)) as world:
        checkpoint = fit(config)
    if not world.is_main:
        return 0
    wall = time.perf_counter() - tic
    test = checkpoint["metrics"]["test"]
    score = f"test accuracy {test['accuracy']:.4f}"
    if config.task == "ctc":
        score = f"test sequence accuracy {test['accuracy']:.4f}, CER {test['cer']:.4f}"
    print(
        f"{config.model}: {score} (loss {test['loss']:.4f}) after "
        f"{checkpoint['epoch']} epochs; training took {checkpoint['train_seconds']:.0f} s "
        f"({wall:.0f} s in all this run); saved {config.out}"
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    model, checkpoint = load_model(args.checkpoint)
    # An exported model runs where it was built for (ONNX Runtime, or the CPU); a checkpoint
    # goes to the chosen device.
    exported = Path(args.checkpoint).suffix in (".onnx", ".pt2")
    device = torch.device("cpu") if exported else pick_device(args.device)
    model = model.to(device)
    _, test = load_mnist(args.data_dir)
    if checkpoint["task"] == "ctc":
        return _evaluate_reader(model, checkpoint, test, device, args.json)
    logits = predict_logits(model, to_float(test.images), device)
    report = classification_report(test.labels, logits.argmax(1), checkpoint["class_names"])
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def _evaluate_reader(model, checkpoint, test, device, as_json: bool) -> int:
    # The number reader is scored on the published test strips, written with MNIST's test digits.
    strips = published_test_strips(test)
    outputs = predict_logits(model, to_float(strips.images), device, batch_size=500)
    task = task_from_checkpoint(checkpoint)
    metrics = task.metrics(task.sums(outputs, strips.labels))
    lengths = sorted(int(k.split("_")[1]) for k in metrics if k.startswith("accuracy_"))
    report = {
        "strips": len(strips),
        "test_seed": TEST_SEED,
        "sequence_accuracy": metrics["accuracy"],
        "cer": metrics["cer"],
        "accuracy_by_length": {str(n): metrics[f"accuracy_{n}"] for n in lengths},
    }
    if as_json:
        print(json.dumps(report, indent=2))
        return 0
    print(
        f"sequence accuracy {report['sequence_accuracy']:.4f}, character error rate "
        f"{report['cer']:.4f} on {len(strips)} test strips (MNIST test digits, seed {TEST_SEED})"
    )
    print("length  " + "".join(f"{n:>8}" for n in lengths))
    print("accuracy" + "".join(f"{metrics[f'accuracy_{n}']:8.4f}" for n in lengths))
    return 0


def cmd_read(args: argparse.Namespace) -> int:
    model, checkpoint = load_model(args.checkpoint)
    if checkpoint["task"] != "ctc":
        raise ConfigError(
            f"{args.checkpoint} recognizes single digits ({checkpoint['task']}); "
            "use 'hwr predict', or a number reader (hwr train --model crnn)"
        )
    results = read_files(model, args.images, checkpoint["class_names"])
    return _report_files(results, args.json, lambda r: f"{r['text']} ({r['confidence']:.3f})")


def cmd_predict(args: argparse.Namespace) -> int:
    model, checkpoint = load_model(args.checkpoint)
    if checkpoint["task"] != "classification":
        raise ConfigError(f"{args.checkpoint} reads whole numbers; use 'hwr read'")
    results = predict_files(model, args.images, checkpoint["class_names"])

    def line(result: dict) -> str:
        others = ", ".join(f"{t['label']} {t['probability']:.3f}" for t in result["top3"][1:])
        return f"{result['label']} ({result['probability']:.3f}; then {others})"

    return _report_files(results, args.json, line)


def _report_files(results: list[dict], as_json: bool, line) -> int:
    """Print per-file results (JSON, or ``path: line(result)`` / ``path: error: ...``); the
    exit status is 1 when any file failed."""
    if as_json:
        print(json.dumps(results, indent=2))
    else:
        for result in results:
            outcome = f"error: {result['error']}" if "error" in result else line(result)
            print(f"{result['path']}: {outcome}")
    return 1 if any("error" in r for r in results) else 0


def cmd_export(args: argparse.Namespace) -> int:
    out, difference = export_model(args.checkpoint, args.format, args.out)
    print(
        f"exported {args.checkpoint} to {out} ({args.format}); parity with the eager model: "
        f"max |logit difference| {difference:.1e}, same predictions"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hwr", description="Handwritten digit recognition.")
    parser.add_argument("--version", action="version", version=f"hwr_utils {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser(
        "train", parents=[get_args_parser(add_help=False)], help="train a model on MNIST"
    )
    train.set_defaults(run=cmd_train)

    evaluate = commands.add_parser(
        "evaluate", help="evaluate a checkpoint on MNIST's test set (numbers: its test strips)"
    )
    evaluate.add_argument("--checkpoint", required=True, help="a .pt checkpoint, .onnx or .pt2")
    evaluate.add_argument("--data-dir", default=None, help="folder holding MNIST/raw/")
    evaluate.add_argument("--device", default="auto")
    evaluate.add_argument("--json", action="store_true", help="print JSON")
    evaluate.set_defaults(run=cmd_evaluate)

    predict = commands.add_parser("predict", help="predict the digit in image files")
    predict.add_argument("--checkpoint", required=True, help="a .pt checkpoint, .onnx or .pt2")
    predict.add_argument("images", nargs="+", metavar="IMAGE")
    predict.add_argument("--json", action="store_true", help="print a JSON list, one per image")
    predict.set_defaults(run=cmd_predict)

    read = commands.add_parser("read", help="read the whole number written in image files")
    read.add_argument("--checkpoint", required=True, help="a number reader: .pt, .onnx or .pt2")
    read.add_argument("images", nargs="+", metavar="IMAGE")
    read.add_argument("--json", action="store_true", help="print a JSON list, one per image")
    read.set_defaults(run=cmd_read)

    export = commands.add_parser("export", help="export a checkpoint to ONNX or torch.export")
    export.add_argument("--checkpoint", required=True)
    export.add_argument("--format", required=True, choices=FORMATS)
    export.add_argument("--out", default=None, help="default: the checkpoint's name, new suffix")
    export.set_defaults(run=cmd_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except HwrError as error:
        # Errors the user can fix get one clear message, not a traceback.
        hint = ""
        if isinstance(error, ProcessLostError):
            hint = "; the last finished epoch is saved: run the same command with --resume"
        print(f"hwr {args.command}{_rank_tag()}: error: {error}{hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = (
            "; the last finished epoch is saved, continue with --resume"
            if args.command == "train"
            else ""
        )
        print(f"\nhwr {args.command}: interrupted{hint}", file=sys.stderr)
        return 130


def _rank_tag() -> str:
    # Under torchrun every process prints its own errors; say which process speaks.
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return f" (rank {os.environ.get('RANK', '?')})"
    return ""


if __name__ == "__main__":
    sys.exit(main())
