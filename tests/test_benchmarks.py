"""Each benchmark script runs in smoke mode so it never rots; its figures are not tested."""

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # pytest -m "not slow" leaves it out

BENCHMARKS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py"))


@pytest.mark.parametrize("script", BENCHMARKS, ids=[p.stem for p in BENCHMARKS])
def test_benchmark_smoke(script, request):
    if script.stem == "browser_demo":  # it measures the built book's demo page
        assert request.getfixturevalue("built_book").returncode == 0
    result = subprocess.run(
        [sys.executable, str(script), "--smoke"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert any(name in result.stdout for name in ("hwrnet", "crnn", "line_reader"))  # figures
