"""Scoring a trained model on test data: what ``hwr evaluate`` prints, as a Python function
(introduced in the evaluation chapter; the fine-tuning chapter scores folders with it).

Works with any model file :func:`~hwr_utils.checkpoints.load_model` opens (a checkpoint, an
ONNX or ``.pt2`` export) and any dataset spec (:mod:`hwr_utils.datasets`). Nothing here imports
the training engine.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .checkpoints import load_model, task_from_checkpoint
from .data import to_float
from .datasets import default_data, evaluation_split
from .digit_strings import TEST_SEED
from .metrics import classification_report
from .predict import predict_logits
from .runtime import pick_device


def evaluate_model(
    path: str | os.PathLike,
    data: str | None = None,
    data_dir: str | os.PathLike | None = None,
    device: str = "auto",
) -> dict[str, Any]:
    """Score the model in ``path`` on ``data`` (a dataset spec; default: the data it was trained
    on): its test split, or all of a folder without ``test/``.

    A classifier gets :func:`~hwr_utils.metrics.classification_report` (accuracy, per-class
    precision, recall and F1, the confusion matrix); a reader gets ``sequence_accuracy``,
    ``cer`` and ``accuracy_by_length``, with ``data``, ``split`` and ``strips`` (and
    ``test_seed`` for the published test strips).
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
    outputs = predict_logits(model, to_float(examples.images), device, batch_size=500)
    if task.name == "classification":
        return classification_report(examples.labels, task.decode(outputs), task.class_names)
    metrics = task.metrics(task.sums(outputs, examples.labels))
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
