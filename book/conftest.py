"""nbval runs the chapters under pytest; it cannot inject papermill parameters, so the smoke
switch reaches the kernels through the environment (set HWR_SMOKE=0 for a full-size check)."""

import os
import shutil
import tempfile

import pytest

os.environ.setdefault("HWR_SMOKE", "1")
# Chapters write scratch files in the temporary folder; the kernels started here inherit a
# folder of their own, removed when the session ends, so test runs leave nothing in /tmp.
CHAPTERS_TMP = tempfile.mkdtemp(prefix="hwr-chapters-")
os.environ["TMPDIR"] = CHAPTERS_TMP


def pytest_collection_modifyitems(items):
    # Executing a chapter takes seconds to minutes: `pytest -m "not slow"` leaves them out.
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.slow)


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(CHAPTERS_TMP, ignore_errors=True)
