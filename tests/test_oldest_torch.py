"""The oldest PyTorch that ``pyproject.toml`` allows still trains, saves, loads and exports
every model (ONNX with a parity check, ``torch.export``, whose refusal of a reader's dynamic
width is shown on the number reader).

The lower bounds are what this test installs: raise them together. It builds a virtual
environment of its own with those versions (every other package at the lock's version) and
runs the library there, so it needs the package index (or its local copy), like README's
commands. About two minutes, most of it installing.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def lower_bound(name: str) -> str:
    """The version after ``>=`` in the project's requirement on ``name``."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"]:
        found = re.fullmatch(rf"{name}>=([\w.]+)", requirement)
        if found:
            return found.group(1)
    raise AssertionError(f"no lower bound on {name} in pyproject.toml")


OLDEST = {"torch": lower_bound("torch"), "torchvision": lower_bound("torchvision")}

# Run inside the old environment: every model, trained a few steps, saved, loaded, exported.
SCRIPT = textwrap.dedent(
    """
    import sys, tempfile, torch
    from pathlib import Path
    from hwr_utils.checkpoints import load_model
    from hwr_utils.config import TrainConfig
    from hwr_utils.errors import ConfigError
    from hwr_utils.export import export_model
    from hwr_utils.models import MODELS
    from hwr_utils.train import fit

    # torch.export refuses a GRU with a dynamic width after a minute of trying; the number
    # reader shows that refusal, so the line reader, the same layers, is exported to ONNX only.
    FORMATS = {"line_reader": ("onnx",)}
    print("torch", torch.__version__)
    folder = Path(tempfile.mkdtemp())
    for name in MODELS:
        limit = {"crnn": 64, "line_reader": 32}.get(name, 512)
        # The line reader is the number reader's layers at another size: a tiny one will do.
        size = {"width": 8, "hidden": 32} if name == "line_reader" else {}
        config = TrainConfig(model=name, epochs=1, batch_size=32, train_limit=limit,
                             val_size=100, out=str(folder / f"{name}.pt"), progress=False,
                             device="cpu", model_config=size)
        fit(config)
        load_model(config.out)
        for fmt in FORMATS.get(name, ("onnx", "pt2")):
            try:
                out, difference = export_model(config.out, fmt)
            except ConfigError as error:  # the one refusal the library documents
                print(name, fmt, "refused", str(error).splitlines()[0])
                continue
            load_model(out)
            print(name, fmt, f"{difference:.1e}")
    """
)


def test_the_oldest_supported_torch_trains_and_exports_every_model(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    # The lock pins everything else; torch, torchvision and what only they need are left out.
    lock = (ROOT / "requirements-lock.txt").read_text().splitlines()
    skip = re.compile(r"(torch|torchvision|triton|nvidia-.*|cuda-.*)==", re.IGNORECASE)
    constraints = tmp_path / "constraints.txt"
    # "===": exactly that version of the index's default build (a local "+cpu" build of torch
    # would not fit the index's torchvision).
    pins = [f"{name}==={version}" for name, version in OLDEST.items()]
    constraints.write_text("\n".join([*(line for line in lock if not skip.match(line)), *pins]))
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "-c", str(constraints),
         *pins, "-e", f"{ROOT}[deploy]"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-3000:]
    run = subprocess.run(
        [str(python), "-c", SCRIPT], capture_output=True, text=True, cwd=tmp_path, timeout=900
    )
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    assert lines[0].startswith(f"torch {OLDEST['torch']}")
    results = {tuple(line.split()[:2]): line for line in lines[1:]}
    from hwr_utils.models import MODEL_TASKS, MODELS

    expected = {(name, fmt) for name in MODELS for fmt in ("onnx", "pt2")}
    assert set(results) == expected - {("line_reader", "pt2")}
    refused = {key for key, line in results.items() if " refused " in line}
    # Only a reader's dynamic width may be refused by torch.export, with a pointer to ONNX.
    assert refused <= {(name, "pt2") for name in MODEL_TASKS}, refused
    assert all("use --format onnx" in results[key] for key in refused)
