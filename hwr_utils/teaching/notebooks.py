"""Running the book's chapters: a strict papermill runner, the smoke switch, and
:func:`load_or_train`, which gives every chapter after the training chapter its model.

Every chapter has a papermill ``parameters`` cell of literals with full-size defaults, one of
them ``SMOKE = False``. CI runs each chapter small, either through papermill
(``run_notebook(path, {"SMOKE": True})``) or under nbval, which cannot inject parameters and
so passes the switch through the environment (``HWR_SMOKE=1``); :func:`smoke_mode` reads both.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from torch import nn

from ..checkpoints import load_checkpoint, model_from_checkpoint
from ..config import TrainConfig
from ..errors import ConfigError, require


def smoke_mode(smoke: bool = False) -> bool:
    """True when the ``SMOKE`` parameter is set or the environment has ``HWR_SMOKE=1``."""
    return bool(smoke) or os.environ.get("HWR_SMOKE", "0") not in ("", "0", "false", "False")


def run_notebook(
    path: str | os.PathLike,
    parameters: dict[str, Any] | None = None,
    output: str | os.PathLike | None = None,
    cwd: str | os.PathLike | None = None,
) -> Path:
    """Execute a notebook with papermill, refusing parameters it does not declare.

    papermill only warns about an unknown parameter and then runs the notebook with its
    defaults -- a misspelt ``SMOKE`` would silently run the full-size chapter. Here it fails.
    """
    papermill = require("papermill", "Running a chapter")
    parameters = dict(parameters or {})
    path = Path(path)
    declared = papermill.inspect_notebook(str(path))
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        raise ConfigError(
            f"{path.name} has no parameter(s) {', '.join(unknown)}; "
            f"it declares: {', '.join(declared) or 'none'}"
        )
    output = Path(output) if output is not None else path.with_suffix(".out.ipynb")
    papermill.execute_notebook(
        str(path),
        str(output),
        parameters=parameters,
        cwd=str(cwd or path.parent),
        progress_bar=False,
        kernel_name="python3",
    )
    return output


def load_or_train(
    path: str | os.PathLike, smoke: bool = False, **overrides: Any
) -> tuple[nn.Module, dict[str, Any]]:
    """The model saved at ``path`` if there is one; otherwise train it first (with ``overrides``
    of :class:`~hwr_utils.config.TrainConfig`). In smoke mode a missing model is trained small
    (one epoch on 2,000 images, or the ``train_limit`` asked for if smaller) and saved beside
    ``path`` as ``NAME.smoke.pt``, never in its place. Returns the model (eval mode) and its
    checkpoint, whose ``"path"`` says which file it is.
    """
    path = Path(path)
    smoke_path = path.with_name(f"{path.stem}.smoke.pt")
    for candidate in [path, smoke_path] if smoke else [path]:
        if candidate.is_file():
            checkpoint = load_checkpoint(candidate)
            checkpoint["path"] = str(candidate)  # which file it was, for the caller
            return model_from_checkpoint(checkpoint), checkpoint
    from ..train import fit  # only when there is something to train

    config = TrainConfig(out=str(path), **overrides)
    if smoke:
        limit = min(2000, config.train_limit or 2000)  # fewer if the chapter asks
        config = dataclasses.replace(
            config, epochs=1, train_limit=limit, out=str(smoke_path), progress=False
        )
    # A chapter opened on its own (Colab) gets here: say why it waits, and where the model goes.
    print(
        f"No model at {path}: training it first ({config.epochs} epoch(s), saved as {config.out})."
    )
    checkpoint = fit(config)
    checkpoint["path"] = config.out
    return model_from_checkpoint(checkpoint), checkpoint


def reading_minutes(chapter: str | os.PathLike, words_per_minute: int = 200) -> int:
    """Minutes to read a chapter's prose: the words of the markdown cells a reader sees (not
    the Colab badge, which the book removes) at ``words_per_minute``, rounded up. Code,
    formulas and figures take longer and are not counted (the introduction's table)."""
    import math
    import re

    nbformat = require("nbformat", "Reading a chapter")
    cells = nbformat.read(chapter, as_version=4).cells
    words = sum(
        len(re.findall(r"\S+", cell.source))
        for cell in cells
        if cell.cell_type == "markdown" and "remove-cell" not in cell.metadata.get("tags", [])
    )
    return math.ceil(words / words_per_minute)


def main(argv: list[str] | None = None) -> int:
    """``python -m hwr_utils.teaching.notebooks NOTEBOOK [-p NAME VALUE]... [--out PATH]``."""
    import argparse

    yaml = require("yaml", "Reading -p values")

    parser = argparse.ArgumentParser(description="Run a chapter with checked parameters.")
    parser.add_argument("notebook")
    parser.add_argument("-p", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    parameters = {name: yaml.safe_load(value) for name, value in args.p}
    try:
        print(run_notebook(args.notebook, parameters, args.out))
    except ValueError as error:
        parser.exit(2, f"error: {error}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
