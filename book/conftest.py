"""nbval runs the chapters under pytest; it cannot inject papermill parameters, so the smoke
switch reaches the kernels through the environment (set HWR_SMOKE=0 for a full-size check)."""

import os

os.environ.setdefault("HWR_SMOKE", "1")
