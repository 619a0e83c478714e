"""The one error family the ``hwr`` command line turns into a one-line message.

Everything a user can cause and fix (data not found, a file that is not a checkpoint, a bad
option, a missing optional package, an export that disagrees with its model) raises a subclass
of :class:`HwrError`. The CLI catches only these: any other exception is a bug, and keeps its
traceback. Each subclass also derives from the built-in exception it refines, so code that
catches ``ValueError`` or ``FileNotFoundError`` keeps working.
"""

from __future__ import annotations

import importlib
import re
from types import ModuleType


class HwrError(Exception):
    """An error the user can fix; its message is one line that says how."""


class ConfigError(HwrError, ValueError):
    """A setting that cannot work: an unknown model, a non-positive number of epochs, ..."""


class CheckpointError(HwrError, ValueError):
    """A file that is not a usable checkpoint or exported model (missing, truncated, foreign)."""


class ProcessLostError(HwrError, RuntimeError):
    """In data-parallel training, another process died, hung or was killed."""


class MissingDependencyError(HwrError, ImportError):
    """An optional dependency is not installed."""


# Which extra of pyproject.toml brings each optional package.
EXTRAS = {
    "onnx": "deploy",
    "onnxscript": "deploy",
    "onnxruntime": "deploy",
    "sklearn": "book",
    "papermill": "book",
    "matplotlib": "book",
    "yaml": "book",
}


def require(module: str, purpose: str) -> ModuleType:
    """Import the optional ``module`` or raise :class:`MissingDependencyError` with the one line
    that installs it, e.g. ``require("onnxruntime", "ONNX inference")``."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        extra = EXTRAS.get(module.split(".")[0], "book")
        missing = error.name or module
        raise MissingDependencyError(
            f'{purpose} needs the {extra} extra ({missing} is missing): pip install -e ".[{extra}]"'
        ) from None


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none), without
    the terminal colour codes some libraries put in their messages."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip()
    return (text.splitlines() or [type(error).__name__])[0]
