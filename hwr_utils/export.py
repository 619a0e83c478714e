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

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoints import atomic_path, load_checkpoint, model_from_checkpoint, task_from_checkpoint
from .errors import CheckpointError, ConfigError, HwrError, first_line, require
from .tasks import Task

#: Largest difference in logits allowed between an export and the eager model.
PARITY_ATOL = 1e-4
FORMATS = ("onnx", "pt2")
METADATA_KEY = "hwr"  # ONNX metadata property / .pt2 extra file holding task, classes, shape


class ParityError(HwrError, RuntimeError):
    """An exported model disagrees with the eager model it came from."""


def _require_onnx():
    purpose = "ONNX export and inference"
    return require("onnx", purpose), require("onnxruntime", purpose)


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


class OnnxModel(nn.Module):
    """An ONNX file run by ONNX Runtime, callable like the PyTorch model it came from."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        super().__init__()
        _, onnxruntime = _require_onnx()
        options = onnxruntime.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        self.session = onnxruntime.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name
        properties = self.session.get_modelmeta().custom_metadata_map
        self.metadata = json.loads(properties[METADATA_KEY]) if METADATA_KEY in properties else {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (logits,) = self.session.run(None, {self.input_name: x.detach().cpu().numpy()})
        return torch.from_numpy(logits)


class ProgramModel(nn.Module):
    """A loaded ``torch.export`` program, callable like the model it came from.

    The program's graph module refuses ``.train()``/``.eval()`` (it is frozen in the mode it
    was exported in, eval), so it is kept out of this module's children.
    """

    def __init__(self, program: torch.export.ExportedProgram, metadata: dict[str, Any]) -> None:
        super().__init__()
        self.__dict__["program"] = program.module()  # not a child: eval() must not reach it
        self.metadata = metadata

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.program(x)


def _metadata(checkpoint: dict[str, Any]) -> dict[str, Any]:
    keys = ("model", "model_config", "task", "task_config", "class_names", "input_shape")
    return {k: checkpoint[k] for k in keys} | {"normalization": "inside the model"}


def _example_batch(task: Task, size: int = 256) -> torch.Tensor:
    """Real MNIST test digits, or test strips of whole numbers for the number reader (pixels in
    [0, 1]) when the data is here (parity on real inputs means something); otherwise a seeded
    random batch of the task's input shape."""
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
    return torch.export.export(model, (example,), dynamic_shapes=_dynamic_shapes(task))


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
        _require_onnx()  # fail before any work when the extra is missing
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


def _write_onnx(
    model: nn.Module, example: torch.Tensor, task: Task, path: Path, metadata: str
) -> None:
    onnx, _ = _require_onnx()
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
    onnx.helper.set_model_props(proto, {METADATA_KEY: metadata})
    onnx.save(proto, str(path))


def load_exported(path: str | os.PathLike, fmt: str | None = None) -> nn.Module:
    """Load an exported model (``.onnx`` or ``.pt2``) as a callable module in eval mode.

    Its ``metadata`` attribute holds the task, class names and input shape saved with it.
    A file that is not such a model raises :class:`~hwr_utils.errors.CheckpointError`.
    """
    path = Path(path)
    fmt = fmt or path.suffix.lstrip(".")
    if not path.is_file():
        raise CheckpointError(f"exported model not found: {path}")
    if fmt == "onnx":
        _require_onnx()
        try:
            model = OnnxModel(path).eval()
        except Exception as error:  # onnxruntime raises its own kinds for a foreign file
            raise CheckpointError(
                f"{path} is not a readable ONNX model: {first_line(error)}"
            ) from None
    elif fmt == "pt2":
        extra = {METADATA_KEY: ""}
        try:
            program = torch.export.load(path, extra_files=extra)
        except Exception as error:
            raise CheckpointError(
                f"{path} is not a readable torch.export program: {first_line(error)}"
            ) from None
        metadata = json.loads(extra[METADATA_KEY]) if extra[METADATA_KEY] else {}
        model = ProgramModel(program, metadata).eval()
    else:
        raise CheckpointError(f"{path}: unknown model format {fmt!r}; expected .onnx, .pt2 or .pt")
    if model.metadata and "task" not in model.metadata:
        # Exported before normalization moved inside the model: it expects normalized input.
        raise CheckpointError(
            f"{path} was exported by an older hwr_utils; export it again from its checkpoint"
        )
    return model
