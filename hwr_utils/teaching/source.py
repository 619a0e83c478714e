"""Showing the library's real source in a chapter (every chapter).

A chapter that explains a function shows it with ``show_source(function)``: the code comes from
the installed module at run time, so the text beside it and the code that runs cannot drift,
and nbval (the cell is tagged ``nbval-check-output``) fails when the stored output no longer
matches the source. The result renders as a highlighted code block in Jupyter, Colab and the
HTML book alike, unlike Sphinx's ``literalinclude``, which a running notebook shows as raw text.
"""

from __future__ import annotations

import inspect
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Source:
    """Python source with the file it comes from; displays as a fenced code block."""

    code: str
    origin: str

    def _repr_markdown_(self) -> str:
        return f"`{self.origin}`\n\n```python\n{self.code}\n```"

    def __repr__(self) -> str:
        return f"# {self.origin}\n{self.code}"


def show_source(obj: Any) -> Source:
    """The source of a function, class or module of ``hwr_utils``, for display in a notebook.

    >>> from hwr_utils.train import train_step
    >>> show_source(train_step).code.startswith("def train_step(")
    True
    """
    try:
        code = inspect.getsource(obj)
        path = Path(inspect.getsourcefile(obj) or "")
    except (TypeError, OSError) as error:
        raise TypeError(f"no Python source for {obj!r}: {error}") from None
    package = Path(__file__).resolve().parents[1]  # hwr_utils/
    try:
        origin = path.resolve().relative_to(package.parent).as_posix()
    except ValueError:
        origin = path.name
    return Source(textwrap.dedent(code).rstrip("\n"), origin)
