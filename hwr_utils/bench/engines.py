"""Inference engines side by side: their latency and throughput, and int8 quantization with
ONNX Runtime. ``benchmarks/infer_speed.py`` and the deployment chapter both use these."""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ..export import OnnxModel, export_model, load_exported
from ..runtime import bf16_supported

Engine = Callable[[torch.Tensor], torch.Tensor]


def latency_ms(engine: Engine, image: torch.Tensor, calls: int) -> tuple[float, float]:
    """Median and 99th-percentile wall time of ``calls`` single-image calls, in milliseconds."""
    for _ in range(max(10, calls // 10)):
        engine(image)
    times = []
    for _ in range(calls):
        tic = time.perf_counter_ns()
        engine(image)
        times.append((time.perf_counter_ns() - tic) / 1e6)
    return median_and_p99(times)


def median_and_p99(times: list[float]) -> tuple[float, float]:
    """The median and the 99th percentile (the nearest rank at or below it) of ``times``."""
    ordered = sorted(times)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def predict_all(
    engine: Engine, images: torch.Tensor, batch_size: int
) -> tuple[torch.Tensor, float]:
    """Predicted classes for ``images`` and the throughput in images per second (best of 3)."""
    best, predictions = float("inf"), None
    engine(images[:batch_size])  # warm-up (and, for torch.compile, compilation)
    for _ in range(3):
        tic = time.perf_counter()
        outputs = [engine(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
        best = min(best, time.perf_counter() - tic)
        predictions = torch.cat(outputs).argmax(1)
    return predictions, len(images) / best


def quantize_int8(onnx_path: Path, calibration: torch.Tensor, out: Path) -> Path:
    """Static int8 quantization with ONNX Runtime, calibrated on ``calibration`` images."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(calibration.split(64))

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {"images": batch.numpy()}

    prepared = out.with_name("prepared.onnx")
    quant_pre_process(str(onnx_path), str(prepared))
    quantize_static(
        str(prepared),
        str(out),
        Reader(),
        quant_format=QuantFormat.QOperator,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
    )
    return out


def inference_engines(
    checkpoint_path: Path, model: torch.nn.Module, folder: Path, calibration: torch.Tensor
) -> dict[str, Engine]:
    """Every engine the book compares, built from one checkpoint (exports go to ``folder``).

    ``model`` is the checkpoint's eager model, the reference; ``calibration`` holds *training*
    images (pixels in [0, 1], as every engine takes them) for int8 quantization.
    """
    onnx_path, _ = export_model(checkpoint_path, "onnx", folder / "model.onnx")
    pt2_path, _ = export_model(checkpoint_path, "pt2", folder / "model.pt2")
    int8_path = quantize_int8(onnx_path, calibration, folder / "model.int8.onnx")
    channels_last = copy.deepcopy(model).to(memory_format=torch.channels_last)
    return {
        "eager": model,  # the reference: every other engine's predictions are compared with it
        "eager, channels-last": channels_last,
        "torch.compile": torch.compile(model),
        "torch.export (.pt2)": load_exported(pt2_path),
        "onnxruntime": OnnxModel(onnx_path),
        "onnxruntime, 1 thread": OnnxModel(onnx_path, threads=1),
        "onnxruntime int8": OnnxModel(int8_path),
    }


def mean_and_spread(values: list[float]) -> str:
    """``"mean +- sample standard deviation"`` of figures over seeds, to four decimals (the
    spread is 0 for a single value): how the seed benchmarks print a result."""
    import statistics

    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} +- {spread:.4f}"


def describe_machine() -> str:
    """CPU model, cores, threads, PyTorch version and CPU features: what benchmark figures need
    beside them to mean anything."""
    import os
    import platform

    name = platform.processor() or platform.machine()
    try:  # Linux names the CPU model here; elsewhere keep platform's answer
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{name}, {os.cpu_count()} CPUs, {torch.get_num_threads()} PyTorch threads, "
        f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
        f"native bf16: {bf16_supported(torch.device('cpu'))}"
    )


def smoke_line_reader(out: Path) -> Path:
    """A tiny line reader (width 8, hidden 32) trained for one epoch on 32 lines into ``out``:
    what the line benchmarks read in their ``--smoke`` runs, in seconds."""
    from ..config import TrainConfig
    from ..train import fit

    fit(TrainConfig(model="line_reader", model_config={"width": 8, "hidden": 32}, epochs=1,
                    train_limit=32, progress=False, out=str(out)))  # fmt: skip
    return out
