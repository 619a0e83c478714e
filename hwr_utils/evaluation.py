"""Scoring a model: :func:`evaluate`, the task's metrics on a batch of tensors (what
:func:`~hwr_utils.train.fit` measures on validation every epoch), and :func:`evaluate_model`,
what ``hwr evaluate`` prints, as a Python function (introduced in the evaluation chapter; the
fine-tuning chapter scores folders with it).

:func:`evaluate_model` works with any model file :func:`~hwr_utils.checkpoints.load_model`
opens (a checkpoint, an ONNX or ``.pt2`` export) and any dataset spec
(:mod:`hwr_utils.datasets`). Nothing here imports the training engine: the engine imports this.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoints import load_model, task_from_checkpoint
from .data import to_float
from .datasets import default_data, evaluation_split
from .digit_strings import TEST_SEED
from .distributed import broadcast_buffers, current_world, sum_over_processes
from .lm import LineDecoder, cer, wer
from .metrics import classification_report
from .predict import predict_lines, predict_logits
from .runtime import pick_device
from .tasks import Classification, LineRecognition, Task


@torch.no_grad()
def evaluate(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    device: torch.device,
    task: Task | None = None,
    batch_size: int = 1000,
) -> dict[str, float]:
    """The task's metrics of ``model`` (eval mode) on ``images`` (pixels in [0, 1]), in batches
    of ``batch_size``; for a classifier the plain cross-entropy ``loss`` and the ``accuracy``.
    Lines (a task of ``variable_width``) are read one at a time, each over its own width
    (:func:`~hwr_utils.predict.predict_lines`), as ``hwr evaluate`` reads them; its figures
    differ only where a transcript holds a symbol outside the alphabet, which it counts as an
    error and the labels here cannot hold.

    In data-parallel training each process scores every world-size-th image with rank 0's
    weights and buffers, and the totals are added up: every image counted once."""
    task = Classification() if task is None else task
    model.eval()
    world = current_world()
    broadcast_buffers(model)
    images, targets = images[world.rank :: world.size], targets[world.rank :: world.size]
    sums = Counter()
    if task.variable_width:  # lines: each read alone, as predict_lines reads it
        for outputs, target in zip(
            predict_lines(model, images, None, device), targets, strict=True
        ):
            sums.update(task.sums(outputs.unsqueeze(0), target.unsqueeze(0)))
        return task.metrics(sum_over_processes(sums))
    for i in range(0, len(targets), batch_size):
        outputs = model(images[i : i + batch_size].to(device)).float().cpu()
        sums.update(task.sums(outputs, targets[i : i + batch_size]))
    return task.metrics(sum_over_processes(sums))


def evaluate_model(
    path: str | os.PathLike,
    data: str | None = None,
    data_dir: str | os.PathLike | None = None,
    device: str = "auto",
    greedy: bool = False,
) -> dict[str, Any]:
    """Score the model in ``path`` on ``data`` (a dataset spec; default: the data it was trained
    on): its test split, or all of a folder without ``test/``.

    A classifier gets :func:`~hwr_utils.metrics.classification_report` (accuracy, per-class
    precision, recall and F1, the confusion matrix); a reader gets ``sequence_accuracy``,
    ``cer`` and ``accuracy_by_length``, with ``data``, ``split`` and ``strips`` (and
    ``test_seed`` for the published test strips). A line reader gets :func:`line_report`
    (decoded with its language model unless ``greedy``).
    """
    model, checkpoint = load_model(path)
    # An exported model runs where it was built for (ONNX Runtime, or the CPU); a checkpoint
    # goes to the chosen device.
    exported = Path(path).suffix in (".onnx", ".pt2")
    device = torch.device("cpu") if exported else pick_device(device)
    model = model.to(device)
    task = task_from_checkpoint(checkpoint)
    spec = data or checkpoint.get("data", {}).get("spec") or default_data(checkpoint["model"])
    examples, split = evaluation_split(spec, data_dir, task.class_names, task.name)
    if task.name == "lines":
        state = None if greedy else checkpoint.get("decoder")
        decoder = LineDecoder.from_state(state) if state else None
        outputs = predict_lines(model, examples.images, None, device)
        return {
            "data": spec,
            "split": split,
            **line_report(outputs, examples, task.class_names, decoder),
        }
    images = to_float(examples.images)
    if task.name == "classification":
        outputs = predict_logits(model, images, device, batch_size=500)
        return classification_report(examples.labels, task.decode(outputs), task.class_names)
    metrics = evaluate(model, images, examples.labels, device, task, batch_size=500)
    lengths = sorted(int(k.split("_")[1]) for k in metrics if k.startswith("accuracy_"))
    report = {
        "data": spec,
        "split": split,
        "strips": len(examples),
        "sequence_accuracy": metrics["accuracy"],
        "cer": metrics["cer"],
        "accuracy_by_length": {str(n): metrics[f"accuracy_{n}"] for n in lengths},
    }
    if spec == "strips":  # the published test strips
        report["test_seed"] = TEST_SEED
    return report


def line_report(
    outputs: list[torch.Tensor], lines, alphabet: list[str], decoder: LineDecoder | None
) -> dict[str, Any]:
    """What ``hwr evaluate`` says of a line reader, from its per-line ``outputs`` on ``lines``
    (:class:`~hwr_utils.lines.PaddedLines`): character and word error rates (``cer``,
    ``wer``) of the default decoding (``decoding``: the language model, else greedy) and of
    greedy decoding, the same without the lines of the consent paragraph many writers copied
    (the fair figure: the test writers' own texts are new to the model), and the CER of each
    writer. Rates are computed on the transcripts as written, symbols the model cannot write
    included."""
    greedy = LineRecognition(class_names=alphabet).texts
    greedy_texts = [greedy(o.unsqueeze(0))[0] for o in outputs]
    texts = greedy_texts if decoder is None else [decoder(o.unsqueeze(0))[0] for o in outputs]
    refs = list(lines.texts)
    own = [i for i, consent in enumerate(lines.consent.tolist()) if not consent]
    by_writer: dict[str, list[int]] = {}
    for i, writer in enumerate(lines.writers):
        by_writer.setdefault(writer, []).append(i)
    return {
        "lines": len(refs),
        "decoding": "greedy" if decoder is None else "language model",
        "cer": cer(texts, refs),
        "wer": wer(texts, refs),
        "cer_greedy": cer(greedy_texts, refs),
        "wer_greedy": wer(greedy_texts, refs),
        "lines_without_consent": len(own),
        "cer_without_consent": cer([texts[i] for i in own], [refs[i] for i in own]),
        "wer_without_consent": wer([texts[i] for i in own], [refs[i] for i in own]),
        "cer_greedy_without_consent": cer([greedy_texts[i] for i in own], [refs[i] for i in own]),
        "wer_greedy_without_consent": wer([greedy_texts[i] for i in own], [refs[i] for i in own]),
        "per_writer_cer": {
            writer: cer([texts[i] for i in index], [refs[i] for i in index])
            for writer, index in sorted(by_writer.items())
        },
        "readings": [{"text": t, "truth": r} for t, r in zip(texts, refs, strict=True)],
    }
