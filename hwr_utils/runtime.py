"""Where and how a run executes: seeds, the device, native bfloat16, ``torch.compile``, and
whether progress bars suit the output. Introduced in the training chapter (PyTorch 2 section).
"""

from __future__ import annotations

import random
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import ConfigError


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (CPU and all GPUs)."""
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 -- seeds the legacy global RNG that user code may use
    torch.manual_seed(seed)


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` means CUDA if present, else Apple's MPS, else the CPU."""
    if name != "auto":
        try:
            device = torch.device(name)
        except RuntimeError:
            raise ConfigError(
                f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps"
            ) from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError("--device cuda was asked for, but CUDA is not available here")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux reports them in ``/proc/cpuinfo`` (empty elsewhere)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return frozenset()
    for line in lines:
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def bf16_supported(device: torch.device) -> bool:
    """Whether bfloat16 autocast runs natively here: a GPU with bf16, or a CPU with AVX512-BF16
    or AMX. Elsewhere PyTorch emulates bf16 with conversions, which is slower than float32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        # Older PyTorch builds had private probes; newer ones dropped them, so the operating
        # system's list of CPU features is asked as well.
        cpu = getattr(torch._C, "_cpu", None)
        probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        if any(getattr(cpu, name, lambda: False)() for name in probes):
            return True
        return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())
    return False


def maybe_compile(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """``torch.compile`` the model; fall back to eager, with a warning, if compiling fails.

    Compilation is lazy, so one forward pass on ``example`` (a batch of the training shape, so
    the first real batch does not compile again) forces it here, where a failure can be caught.
    That pass leaves no trace: batch-norm statistics and random-number state are put back, so
    the compiled run starts exactly where an eager one would. (Its fused kernels still round
    differently, so its numbers are close to, not identical with, an eager run's.)
    """
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    devices = [example.device] if example.device.type == "cuda" else []
    try:
        compiled = torch.compile(model)
        with torch.random.fork_rng(devices=devices):
            compiled(example)
        return compiled
    except Exception as error:  # the failure modes of inductor are many (no compiler, ...)
        warnings.warn(f"torch.compile failed, training eagerly instead: {error}", stacklevel=2)
        return model
    finally:
        model.load_state_dict(saved)


def live_progress() -> bool:
    """Whether redrawn progress bars suit the output: a terminal or a notebook. Written to a
    log file, every redraw would stay as a line; there, per-epoch lines are enough."""
    if sys.stderr.isatty():
        return True
    ipython = sys.modules.get("IPython")  # never imported outside IPython and Jupyter
    shell = ipython.get_ipython() if ipython is not None else None
    return type(shell).__name__ == "ZMQInteractiveShell"  # a Jupyter kernel
