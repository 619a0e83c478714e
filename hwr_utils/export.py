"""Exporting a trained model for deployment, and loading it back for prediction.

Two formats, both with a dynamic batch dimension:

* ``onnx`` -- through PyTorch's current exporter (``torch.onnx.export(..., dynamo=True)``), run
  by ONNX Runtime. Needs the ``deploy`` extra: ``pip install -e ".[deploy]"``.
* ``pt2``  -- a ``torch.export`` program saved with ``torch.export.save``: plain PyTorch, no
  Python class of ours needed to load it.

Every export is checked against the eager model before it is kept: on a batch of real test
digits the largest logit difference must be at most :data:`PARITY_ATOL` and every predicted
class the same; otherwise :class:`ParityError` is raised and nothing is written. The
normalization and class names travel inside the file, so ``hwr predict`` needs nothing else.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoints import (
    atomic_path,
    load_checkpoint,
    model_card,
    model_from_checkpoint,
    task_from_checkpoint,
)
from .errors import ConfigError, HwrError, first_line
from .exported import METADATA_KEY, OnnxModel, load_exported, require_onnx
from .tasks import Task

#: Largest difference in logits allowed between an export and the eager model.
PARITY_ATOL = 1e-4
FORMATS = ("onnx", "pt2")


class ParityError(HwrError, RuntimeError):
    """An exported model disagrees with the eager model it came from."""


def check_parity(
    reference: torch.Tensor, candidate: torch.Tensor, atol: float = PARITY_ATOL
) -> float:
    """Raise :class:`ParityError` unless the logits agree within ``atol`` with the same argmax.

    Returns the largest absolute difference.
    """
    difference = (reference - candidate).abs().max().item()
    same_class = torch.equal(reference.argmax(-1), candidate.argmax(-1))  # per column for CTC
    if difference > atol or not same_class:
        raise ParityError(
            f"exported model disagrees with the eager model: max |logit difference| "
            f"{difference:.2e} (allowed {atol:.0e}), same predicted classes: {same_class}"
        )
    return difference


def _metadata(checkpoint: dict[str, Any]) -> dict[str, Any]:
    keys = ("model", "model_config", "task", "task_config", "class_names", "input_shape")
    meta = {k: checkpoint[k] for k in keys} | {"normalization": "inside the model"}
    if checkpoint.get("decoder"):  # a line reader's language model: exports decode as it does
        meta["decoder"] = checkpoint["decoder"]
    return meta | {"card": model_card(checkpoint)}


def _example_batch(task: Task, size: int = 256) -> torch.Tensor:
    """Real MNIST test digits, test strips of whole numbers for the number reader, or validation
    lines for the line reader (pixels in [0, 1]) when the data is here (parity on real inputs
    means something); otherwise a seeded random batch of the task's input shape."""
    from .data import DataNotFoundError, load_mnist, to_float

    try:
        _, test = load_mnist(download=False)
    except DataNotFoundError:
        test = None
    if test is not None and tuple(task.input_shape) == (1, 28, 28):
        return to_float(test.images[:size])
    if test is not None and task.name == "ctc":
        from .digit_strings import published_test_strips

        return to_float(published_test_strips(test, size // 4).images)
    if task.name == "lines":  # validation lines of the line data, when it is here
        from .datasets import load_dataset

        try:
            val = load_dataset("copiste", val_size=0).val
        except DataNotFoundError:
            val = None
        if val is not None:
            return to_float(val.subset(range(size // 16)).images)
    return torch.rand(size, *task.input_shape, generator=torch.Generator().manual_seed(0))


def _dynamic_shapes(task: Task) -> tuple[dict[int, Any]]:
    # The task says which dimensions of its one input vary (the batch, for a classifier).
    dims = {
        i: torch.export.Dim(name, min=low, max=65536)
        for i, (name, low) in task.dynamic_dims.items()
    }
    return (dims,)


def _export_program(
    model: nn.Module, example: torch.Tensor, task: Task
) -> torch.export.ExportedProgram:
    """``torch.export`` with the task's dynamic dimensions. A reader's GRU cannot keep the
    width dynamic under ``torch.export`` on the PyTorch releases tested (2.14, 2.15): that is a
    one-line error pointing to ONNX, which can."""
    try:
        return torch.export.export(model, (example,), dynamic_shapes=_dynamic_shapes(task))
    except Exception as error:  # torch.export raises several kinds for an unexportable model
        dims = ", ".join(name for name, _ in task.dynamic_dims.values())
        raise ConfigError(
            f"torch.export on PyTorch {torch.__version__} cannot export this model with a "
            f"dynamic {dims} ({first_line(error)[:100]}); use --format onnx"
        ) from None


def export_model(
    checkpoint_path: str | os.PathLike,
    fmt: str,
    out: str | os.PathLike | None = None,
    example: torch.Tensor | None = None,
) -> tuple[Path, float]:
    """Export the model in ``checkpoint_path`` to ``fmt`` (``onnx`` or ``pt2``).

    The file goes to ``out`` (default: the checkpoint's path with the format's suffix), written
    to a temporary name and renamed only once parity holds. Returns the path and the largest
    logit difference on ``example`` (default: the first 256 MNIST test digits).
    """
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; use {' or '.join(FORMATS)}")
    if fmt == "onnx":
        require_onnx()  # fail before any work when the extra is missing
    checkpoint = load_checkpoint(checkpoint_path)
    model, task = model_from_checkpoint(checkpoint), task_from_checkpoint(checkpoint)
    example = _example_batch(task) if example is None else example
    out = Path(out) if out is not None else Path(checkpoint_path).with_suffix(f".{fmt}")
    with torch.no_grad():
        reference = model(example)
    metadata = json.dumps(_metadata(checkpoint))
    # The temporary name keeps the format's suffix: torch.export.load insists on ".pt2".
    with atomic_path(out, suffix=f".tmp.{fmt}") as tmp:
        if fmt == "pt2":
            program = _export_program(model, example, task)
            torch.export.save(program, tmp, extra_files={METADATA_KEY: metadata})
            exported = load_exported(tmp, fmt="pt2")
        else:
            _write_onnx(model, example, task, tmp, metadata)
            exported = OnnxModel(tmp)
        with torch.no_grad():
            difference = check_parity(reference, exported(example))
    return out, difference


class ExportFallbackWarning(UserWarning):
    """PyTorch's current ONNX exporter failed and the TorchScript exporter was used instead."""


def _write_onnx(
    model: nn.Module, example: torch.Tensor, task: Task, path: Path, metadata: str
) -> None:
    """Write ``model`` as ONNX with PyTorch's current exporter (``dynamo=True``). Where that
    exporter cannot convert the model on the installed PyTorch (some releases fail on a GRU),
    fall back to the TorchScript exporter, with the same dynamic dimensions, and say so with an
    :class:`ExportFallbackWarning`; the parity check that follows holds either way."""
    onnx, _ = require_onnx()
    try:
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            input_names=["images"],
            output_names=["logits"],
            dynamic_shapes=_dynamic_shapes(task),
            verbose=False,
        )
        proto = program.model_proto
    except Exception as error:  # the exporter raises many kinds; the fallback is checked anyway
        warnings.warn(
            f"PyTorch {torch.__version__}'s ONNX exporter failed ({first_line(error)[:120]}); "
            "used the TorchScript exporter instead",
            ExportFallbackWarning,
            stacklevel=3,
        )
        proto = _torchscript_onnx(onnx, model, example, task)
    onnx.helper.set_model_props(proto, {METADATA_KEY: metadata})
    onnx.save(proto, str(path))


def _torchscript_onnx(onnx: Any, model: nn.Module, example: torch.Tensor, task: Task) -> Any:
    """The model as an ONNX ``ModelProto`` from the TorchScript exporter (``dynamo=False``)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # its deprecation notice is said once, above
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            buffer,
            dynamo=False,
            input_names=["images"],
            output_names=["logits"],
            dynamic_axes={
                "images": {i: name for i, (name, _) in task.dynamic_dims.items()},
                "logits": dict(task.output_dynamic_dims),
            },
        )
    return onnx.load_from_string(buffer.getvalue())
