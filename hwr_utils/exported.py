"""Loading exported models (``.onnx``, ``.pt2``) back as callable modules: the read side of
:mod:`hwr_utils.export`, kept below the checkpoints so that loading any model file never
imports the exporters (and ONNX Runtime only when an ONNX file is loaded). Introduced in the
deployment chapter.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import CheckpointError, first_line, require

METADATA_KEY = "hwr"  # ONNX metadata property / .pt2 extra file holding task, classes, card


def require_onnx():
    """``onnx`` and ``onnxruntime``, or the one line that installs them (the deploy extra)."""
    purpose = "ONNX export and inference"
    return require("onnx", purpose), require("onnxruntime", purpose)


class OnnxModel(nn.Module):
    """An ONNX file run by ONNX Runtime, callable like the PyTorch model it came from."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        super().__init__()
        _, onnxruntime = require_onnx()
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
        require_onnx()
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
