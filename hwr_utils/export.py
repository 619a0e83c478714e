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
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .train import load_checkpoint, model_from_checkpoint

PARITY_ATOL = 1e-4
FORMATS = ("onnx", "pt2")
METADATA_KEY = "hwr"  # ONNX metadata property / .pt2 extra file holding normalization, classes


class ParityError(RuntimeError):
    """An exported model disagrees with the eager model it came from."""


class MissingDependencyError(ImportError):
    """An optional dependency (the ``deploy`` extra) is not installed."""


def _require_onnx():
    try:
        import onnx
        import onnxruntime
    except ImportError as error:
        raise MissingDependencyError(
            f"ONNX export and inference need the deploy extra ({error.name} is missing): "
            'pip install -e ".[deploy]"'
        ) from None
    return onnx, onnxruntime


def check_parity(
    reference: torch.Tensor, candidate: torch.Tensor, atol: float = PARITY_ATOL
) -> float:
    """Raise :class:`ParityError` unless the logits agree within ``atol`` with the same argmax.

    Returns the largest absolute difference.
    """
    difference = (reference - candidate).abs().max().item()
    same_class = torch.equal(reference.argmax(1), candidate.argmax(1))
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
    keys = ("model", "model_config", "normalization", "class_names", "input_size")
    return {k: checkpoint[k] for k in keys}


def _example_batch(normalization: dict[str, float], size: int = 256) -> torch.Tensor:
    """Real MNIST test digits, normalized as the model expects, if the data is here (parity on
    real inputs means something); otherwise a seeded random batch."""
    from .data import DataNotFoundError, load_mnist, to_float

    try:
        _, test = load_mnist(download=False)
        return to_float(test.images[:size], normalization["mean"], normalization["std"])
    except DataNotFoundError:
        return torch.randn(size, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def _dynamic_batch() -> tuple[dict[int, Any]]:
    # Dimension 0 of the one input, the batch, stays free in both formats.
    return ({0: torch.export.Dim("batch", min=1, max=65536)},)


def _export_program(model: nn.Module, example: torch.Tensor) -> torch.export.ExportedProgram:
    return torch.export.export(model, (example,), dynamic_shapes=_dynamic_batch())


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
        raise ValueError(f"unknown export format {fmt!r}; use {' or '.join(FORMATS)}")
    if fmt == "onnx":
        _require_onnx()  # fail before any work when the extra is missing
    checkpoint = load_checkpoint(checkpoint_path)
    model = model_from_checkpoint(checkpoint)
    example = _example_batch(checkpoint["normalization"]) if example is None else example
    out = Path(out) if out is not None else Path(checkpoint_path).with_suffix(f".{fmt}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        reference = model(example)
    metadata = json.dumps(_metadata(checkpoint))
    # The temporary name keeps the format's suffix: torch.export.load insists on ".pt2".
    handle, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=f".tmp.{fmt}")
    os.close(handle)
    try:
        if fmt == "pt2":
            program = _export_program(model, example)
            torch.export.save(program, tmp, extra_files={METADATA_KEY: metadata})
            exported = load_exported(tmp, fmt="pt2")
        else:
            _write_onnx(model, example, tmp, metadata)
            exported = OnnxModel(tmp)
        with torch.no_grad():
            difference = check_parity(reference, exported(example))
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return out, difference


def _write_onnx(model: nn.Module, example: torch.Tensor, path: str, metadata: str) -> None:
    onnx, _ = _require_onnx()
    program = torch.onnx.export(
        model,
        (example,),
        dynamo=True,
        input_names=["images"],
        output_names=["logits"],
        dynamic_shapes=_dynamic_batch(),
        verbose=False,
    )
    proto = program.model_proto
    onnx.helper.set_model_props(proto, {METADATA_KEY: metadata})
    onnx.save(proto, path)


def load_exported(path: str | os.PathLike, fmt: str | None = None) -> nn.Module:
    """Load an exported model (``.onnx`` or ``.pt2``) as a callable module in eval mode.

    Its ``metadata`` attribute holds the normalization and class names saved with it.
    """
    path = Path(path)
    fmt = fmt or path.suffix.lstrip(".")
    if not path.is_file():
        raise FileNotFoundError(f"exported model not found: {path}")
    if fmt == "onnx":
        _require_onnx()
        try:
            return OnnxModel(path).eval()
        except Exception as error:  # onnxruntime raises its own kinds for a foreign file
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise ValueError(f"{path} is not a readable ONNX model: {first_line}") from None
    if fmt == "pt2":
        extra = {METADATA_KEY: ""}
        try:
            program = torch.export.load(path, extra_files=extra)
        except Exception as error:
            raise ValueError(f"{path} is not a readable torch.export program: {error}") from None
        metadata = json.loads(extra[METADATA_KEY]) if extra[METADATA_KEY] else {}
        return ProgramModel(program, metadata).eval()
    raise ValueError(f"{path}: unknown model format {fmt!r}; expected .onnx, .pt2 or .pt")


def load_model(path: str | os.PathLike) -> tuple[nn.Module, dict[str, Any]]:
    """A checkpoint (``.pt``) or an exported model (``.onnx``, ``.pt2``), ready to predict.

    Returns the model in eval mode and its metadata: ``normalization`` and ``class_names``
    (and, for checkpoints, everything else the checkpoint holds).
    """
    if Path(path).suffix in (".onnx", ".pt2"):
        model = load_exported(path)
        if not model.metadata:
            raise ValueError(f"{path} carries no hwr metadata; export it with 'hwr export'")
        return model, model.metadata
    checkpoint = load_checkpoint(path)
    return model_from_checkpoint(checkpoint), checkpoint
