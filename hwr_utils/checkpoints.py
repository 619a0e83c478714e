"""Checkpoints: written atomically, loaded safely, turned back into models; and the one loader
for anything ``hwr predict`` and ``hwr evaluate`` accept (a checkpoint or an exported model).

A checkpoint is a dict of tensors and plain Python values, loaded with ``weights_only=True``
(nothing in it can run code). It records the model (name, config with its normalization,
weights), the task (name and config: class names, loss settings), the input shape, the
training configuration and history, and what ``--resume`` needs. Nothing here imports the
training engine. Introduced in the training chapter.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import CheckpointError
from .exported import load_exported
from .models import NORMALIZATIONS, build_model
from .tasks import Task, build_task

# 1: normalization applied by the caller; 2: normalization inside the model, task recorded.
CHECKPOINT_FORMAT = 2


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path beside ``path``, renamed to ``path`` when the block succeeds and
    removed when it fails: a run killed mid-write leaves the previous file intact, never a
    truncated one. ``suffix`` keeps a format's extension where a writer insists on it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(handle)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def save_checkpoint(checkpoint: dict[str, Any], path: str | os.PathLike) -> None:
    """Write ``checkpoint`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as file:
        torch.save(checkpoint, file)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint safely (``weights_only=True``: tensors and plain Python values only).

    Anything that is not an hwr checkpoint raises :class:`~hwr_utils.errors.CheckpointError`
    with one line naming the file and what it is not.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        # PyTorch's own message suggests weights_only=False, i.e. running the file's code.
        raise CheckpointError(
            f"{path} is not an hwr checkpoint: it holds Python objects a safe load refuses"
        ) from None
    except Exception:
        raise CheckpointError(
            f"{path} is not an hwr checkpoint: not a readable PyTorch file "
            "(empty, truncated or another format)"
        ) from None
    if not isinstance(checkpoint, dict) or "format" not in checkpoint:
        raise CheckpointError(f"{path} is not an hwr checkpoint: a PyTorch file of another kind")
    if checkpoint["format"] > CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} was written by a newer hwr_utils (checkpoint format {checkpoint['format']}); "
            "upgrade hwr_utils"
        )
    return _upgrade(checkpoint, path)


def _upgrade(checkpoint: dict, path: Path) -> dict:
    """Bring a format-1 checkpoint (normalization outside the model) to the current format."""
    if checkpoint["format"] == CHECKPOINT_FORMAT:
        return checkpoint
    norm = checkpoint.get("normalization", {})
    names = [k for k, v in NORMALIZATIONS.items() if v == (norm.get("mean"), norm.get("std"))]
    if not names:
        raise CheckpointError(
            f"{path} is an old checkpoint with an unknown normalization; retrain it"
        )
    checkpoint = dict(checkpoint)
    checkpoint["model_config"] = {**checkpoint["model_config"], "normalization": names[0]}
    mean, std = NORMALIZATIONS[names[0]]
    checkpoint["state_dict"] = {
        **checkpoint["state_dict"],
        "normalize.mean": torch.tensor(mean),
        "normalize.std": torch.tensor(std),
    }
    checkpoint.update(
        format=CHECKPOINT_FORMAT,
        normalization={"name": names[0], "mean": mean, "std": std},
        task="classification",
        task_config={"class_names": list(checkpoint["class_names"])},
        input_shape=[1, 28, 28],
    )
    return checkpoint


def model_from_checkpoint(checkpoint: dict) -> nn.Module:
    """Rebuild the model a checkpoint describes and load its weights, in eval mode."""
    model = build_model(checkpoint["model"], **checkpoint["model_config"])
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()


def task_from_checkpoint(checkpoint: dict) -> Task:
    """The task a checkpoint (or an exported model's metadata) was trained for."""
    return build_task(checkpoint["task"], **checkpoint["task_config"])


#: What a model takes, by task: the pixels and the preprocessing that makes them from a file.
INPUT_CONTRACTS = {
    "classification": "28x28 pixels in [0, 1], white ink on black, the digit's longer side in "
    "a 20x20 box centred by mass (MNIST's conventions; hwr_utils.preprocess.preprocess_photo "
    "makes this from a photo)",
    "ctc": "a strip 32 pixels high of any width divisible by 4, pixels in [0, 1], white ink on "
    "black (hwr_utils.preprocess.preprocess_number_photo makes this from a photo)",
    "lines": "a line of handwriting 40 pixels high of any width, pixels in [0, 1], white ink on "
    "black (hwr_utils.datasets.copiste.preprocess_line_photo makes this from a photo or scan "
    "of one line)",
}


def model_card(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """What a model is, in plain values: task, classes (or alphabet), the input it takes, its
    normalization, the data it was trained on (with checksums), what it started from, its
    metrics and the versions that made it. Exports carry it; ``hwr`` never needs more."""
    return {
        "model": checkpoint["model"],
        "task": checkpoint["task"],
        "class_names": task_from_checkpoint(checkpoint).class_names,
        "input": {
            "shape": checkpoint["input_shape"],
            "contract": INPUT_CONTRACTS[checkpoint["task"]],
        },  # fmt: skip
        "normalization": checkpoint.get("normalization"),
        "data": checkpoint.get("data", {"spec": "mnist"}),  # older checkpoints: MNIST
        "init_from": checkpoint.get("init_from"),
        "metrics": checkpoint.get("metrics", {}),
        "versions": checkpoint.get("versions", {}),
    }


def load_model(path: str | os.PathLike) -> tuple[nn.Module, dict[str, Any]]:
    """A checkpoint (``.pt``) or an exported model (``.onnx``, ``.pt2``), ready to predict.

    Returns the model in eval mode, taking pixels in [0, 1], and its metadata: ``task``,
    ``task_config``, ``class_names``, ``input_shape`` (and, for checkpoints, everything else
    the checkpoint holds).
    """
    if Path(path).suffix in (".onnx", ".pt2"):
        model = load_exported(path)
        if not model.metadata:
            raise CheckpointError(f"{path} carries no hwr metadata; export it with 'hwr export'")
        return model, model.metadata
    checkpoint = load_checkpoint(path)
    return model_from_checkpoint(checkpoint), checkpoint
