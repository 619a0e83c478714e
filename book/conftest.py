"""nbval runs the chapters under pytest; it cannot inject papermill parameters, so the smoke
switch reaches the kernels through the environment (set HWR_SMOKE=0 for a full-size check)."""

import os

import pytest

os.environ.setdefault("HWR_SMOKE", "1")


def pytest_collection_modifyitems(items):
    # Executing a chapter takes seconds to minutes: `pytest -m "not slow"` leaves them out.
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.slow)
