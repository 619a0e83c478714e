"""The ``hwr`` command line: ``hwr train | finetune | evaluate | predict | read | export``.

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
import warnings

from . import __version__
from .checkpoints import load_checkpoint, load_model, task_from_checkpoint
from .config import (
    DATA_HELP,
    FINETUNE_DEFAULTS,
    FINETUNE_METHODS,
    TrainConfig,
    add_recipe_options,
    config_from_args,
    default_data,
    get_args_parser,
)
from .errors import ConfigError, HwrError, ProcessLostError
from .evaluation import evaluate_model
from .export import FORMATS, ExportFallbackWarning, export_model
from .metrics import format_report
from .predict import predict_files, read_files
from .runtime import pick_device


def cmd_train(args: argparse.Namespace) -> int:
    return _train(config_from_args(args))


def cmd_finetune(args: argparse.Namespace) -> int:
    base = load_checkpoint(args.checkpoint)
    names = {"epochs", "batch_size", "lr", "augment", "val_size", "seed", "device", "data_dir",
             "resume", "progress", "data", "method", "out"}  # fmt: skip
    settings = {k: v for k, v in vars(args).items() if k in names}
    return _train(TrainConfig(model=base["model"], init_from=args.checkpoint, **settings))


def _train(config: TrainConfig) -> int:
    from .distributed import process_group
    from .train import fit

    tic = time.perf_counter()
    # Under torchrun every process runs this; rank 0 speaks for the run.
    with process_group(pick_device(config.device)) as world:
        checkpoint = fit(config)
    if not world.is_main:
        return 0
    wall = time.perf_counter() - tic
    split = "test" if "test" in checkpoint["metrics"] else "val"
    scores = checkpoint["metrics"][split]
    score = f"{split} accuracy {scores['accuracy']:.4f}"
    if config.task == "ctc":
        score = f"{split} sequence accuracy {scores['accuracy']:.4f}, CER {scores['cer']:.4f}"
    elif config.task == "lines":
        score = f"{split} CER {scores['cer']:.4f}, WER {scores['wer']:.4f} (greedy)"
    what = config.model
    if config.init_from or config.data != default_data(config.model):  # say what was learnt
        classes = checkpoint["class_names"]
        shown = ", ".join(classes[:12]) + (", ..." if len(classes) > 12 else "")
        started = f" from {config.init_from} ({config.method})" if config.init_from else ""
        kind = "classes" if config.task == "classification" else "symbols"
        what += f"{started} on {config.data} ({len(classes)} {kind}: {shown})"
    print(
        f"{what}: {score} "
        f"(loss {scores['loss']:.4f}) after {checkpoint['epoch']} epochs; training took "
        f"{checkpoint['train_seconds']:.0f} s ({wall:.0f} s in all this run); saved {config.out}"
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    report = evaluate_model(args.checkpoint, args.data, args.data_dir, args.device, args.greedy)
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    elif "per_writer_cer" in report:  # a line reader
        writers = report["per_writer_cer"]
        print(
            f"{report['data']}, {report['split']}: {report['lines']} lines by {len(writers)} "
            f"writers, decoded with {report['decoding']}\n"
            f"  CER {report['cer']:.4f}, WER {report['wer']:.4f} (greedy: CER "
            f"{report['cer_greedy']:.4f}, WER {report['wer_greedy']:.4f})\n"
            f"  without the consent paragraph ({report['lines_without_consent']} lines): CER "
            f"{report['cer_without_consent']:.4f}, WER {report['wer_without_consent']:.4f}\n"
            f"  CER per writer: {min(writers.values()):.4f} to {max(writers.values()):.4f}"
        )
    elif "sequence_accuracy" not in report:
        scored = f"{args.data}: " if args.data else ""  # what was scored, when the user chose
        print(scored + format_report(report))
    else:
        where = f"{report['data']}, {report['split']}"
        if "test_seed" in report:
            where = f"MNIST test digits, seed {report['test_seed']}"
        print(
            f"sequence accuracy {report['sequence_accuracy']:.4f}, character error rate "
            f"{report['cer']:.4f} on {report['strips']} test strips ({where})"
        )
        by_length = report["accuracy_by_length"]
        print("length  " + "".join(f"{n:>8}" for n in by_length))
        print("accuracy" + "".join(f"{a:8.4f}" for a in by_length.values()))
    return 0


def cmd_read(args: argparse.Namespace) -> int:
    model, checkpoint = load_model(args.checkpoint)
    if checkpoint["task"] not in ("ctc", "lines"):
        raise ConfigError(
            f"{args.checkpoint} recognizes single digits ({checkpoint['task']}); "
            "use 'hwr predict', a number reader (hwr train --model crnn) or a line reader"
        )
    class_names = task_from_checkpoint(checkpoint).class_names
    if checkpoint["task"] == "lines":
        from .datasets.copiste import preprocess_line_photo
        from .lines import READ_MARGIN
        from .lm import LineDecoder

        state = None if args.greedy else checkpoint.get("decoder")
        decoder = LineDecoder.from_state(state) if state else None
        results = read_files(
            model, args.images, class_names, preprocess_line_photo, decoder, READ_MARGIN
        )
    else:
        results = read_files(model, args.images, class_names)
    return _report_files(results, args.json, lambda r: f"{r['text']} ({r['confidence']:.3f})")


def cmd_predict(args: argparse.Namespace) -> int:
    model, checkpoint = load_model(args.checkpoint)
    if checkpoint["task"] != "classification":
        raise ConfigError(f"{args.checkpoint} reads whole numbers; use 'hwr read'")
    results = predict_files(model, args.images, task_from_checkpoint(checkpoint).class_names)

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
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ExportFallbackWarning)
        out, difference = export_model(args.checkpoint, args.format, args.out)
    for warning in caught:  # a fallback is one line of note; anything else as Python shows it
        if issubclass(warning.category, ExportFallbackWarning):
            print(f"hwr export: note: {warning.message}", file=sys.stderr)
        else:
            warnings.showwarning(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    print(
        f"exported {args.checkpoint} to {out} ({args.format}); parity with the eager model: "
        f"max |logit difference| {difference:.1e}, same predictions"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hwr", description="Handwriting recognition: train, fine-tune, evaluate, predict, "
        "read, export.", allow_abbrev=False,
    )  # fmt: skip
    parser.add_argument("--version", action="version", version=f"hwr_utils {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, **kwargs) -> argparse.ArgumentParser:
        return commands.add_parser(name, allow_abbrev=False, **kwargs)

    train = command(
        "train", parents=[get_args_parser(add_help=False)], help="train a model from scratch"
    )
    train.set_defaults(run=cmd_train)

    finetune = command(
        "finetune",
        help="fine-tune a trained model on your own data (a folder of images)",
        description="Start from a trained checkpoint and train it further on --data (the same "
        "training as hwr train). The classes the base model knows keep their trained outputs; "
        "new ones get new outputs. The result is a checkpoint like any other.",
    )
    finetune.add_argument("--checkpoint", required=True, help="the trained model to start from")
    finetune.add_argument("--data", required=True, help=DATA_HELP)
    finetune.add_argument("--out", required=True, help="the fine-tuned checkpoint's path")
    finetune.add_argument(
        "--method",
        default="full",
        choices=FINETUNE_METHODS,
        help="full: train every layer (default); head: only the last layer",
    )
    add_recipe_options(finetune, lambda name: f"default {FINETUNE_DEFAULTS[name]}")
    finetune.set_defaults(run=cmd_finetune)

    evaluate = command(
        "evaluate",
        help="score a model on test data (default: the test split of the data it was trained on)",
    )
    evaluate.add_argument("--checkpoint", required=True, help="a .pt checkpoint, .onnx or .pt2")
    evaluate.add_argument(
        "--data",
        default=None,
        help=f"{DATA_HELP}; a folder's test/ when it has one, else all of it",
    )
    evaluate.add_argument("--data-dir", default=None, help="folder holding MNIST/ and USPS/")
    evaluate.add_argument("--device", default="auto")
    evaluate.add_argument("--json", action="store_true", help="print JSON")
    evaluate.add_argument("--greedy", action="store_true", help="lines: no language model")
    evaluate.set_defaults(run=cmd_evaluate)

    predict = command("predict", help="predict the class (digit) of the image in each file")
    predict.add_argument("--checkpoint", required=True, help="a .pt checkpoint, .onnx or .pt2")
    predict.add_argument("images", nargs="+", metavar="IMAGE")
    predict.add_argument("--json", action="store_true", help="print a JSON list, one per image")
    predict.set_defaults(run=cmd_predict)

    read = command("read", help="read the number, or the line of handwriting, in image files")
    read.add_argument("--checkpoint", required=True, help="a reader: .pt, .onnx, .pt2")
    read.add_argument("images", nargs="+", metavar="IMAGE")
    read.add_argument("--json", action="store_true", help="print a JSON list, one per image")
    read.add_argument("--greedy", action="store_true", help="lines: no language model")
    read.set_defaults(run=cmd_read)

    export = command("export", help="export a checkpoint to ONNX or torch.export")
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
