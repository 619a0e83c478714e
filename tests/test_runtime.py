from pathlib import Path

import pytest
import torch

from hwr_utils import runtime
from hwr_utils.errors import ConfigError
from hwr_utils.runtime import (
    bf16_supported,
    cpu_flags,
    live_progress,
    maybe_compile,
    pick_device,
    set_seed,
)


def test_compile_failure_falls_back_to_eager(monkeypatch):
    def broken(model):
        raise RuntimeError("no C compiler")

    monkeypatch.setattr(runtime.torch, "compile", broken)
    model = torch.nn.Linear(2, 2)
    with pytest.warns(UserWarning, match="no C compiler"):
        assert maybe_compile(model, torch.zeros(1, 2)) is model


def test_compile_warmup_leaves_no_trace(monkeypatch):
    # Stand in for torch.compile with the identity: the warm-up forward then runs the real
    # model in train mode, which would update batch-norm statistics and draw dropout masks.
    monkeypatch.setattr(runtime.torch, "compile", lambda model: model)
    model = torch.nn.Sequential(torch.nn.BatchNorm1d(3), torch.nn.Dropout(0.5)).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    example = torch.randn(8, 3) * 5 + 2
    rng_before = torch.get_rng_state()
    assert maybe_compile(model, example) is model
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert torch.equal(torch.get_rng_state(), rng_before)


def test_pick_device():
    assert pick_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="unknown device"):
        pick_device("gpu please")
    if not torch.cuda.is_available():
        assert pick_device("auto").type in ("cpu", "mps")
        with pytest.raises(ConfigError, match="CUDA is not available"):
            pick_device("cuda")


def test_set_seed_repeats_every_generator():
    set_seed(3)
    first = (torch.rand(2), __import__("random").random())
    set_seed(3)
    assert torch.equal(first[0], torch.rand(2)) and first[1] == __import__("random").random()


def test_bf16_probe_answers_for_every_device_type():
    assert isinstance(bf16_supported(torch.device("cpu")), bool)
    assert bf16_supported(torch.device("meta")) is False


def test_bf16_probe_reads_the_cpu_flags(monkeypatch):
    # PyTorch's private probes are gone from newer builds: the CPU's own flags decide.
    monkeypatch.setattr(torch._C, "_cpu", None, raising=False)
    monkeypatch.setattr(
        "hwr_utils.runtime.cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"})
    )
    assert bf16_supported(torch.device("cpu")) is True
    monkeypatch.setattr("hwr_utils.runtime.cpu_flags", lambda: frozenset({"avx512f"}))
    assert bf16_supported(torch.device("cpu")) is False


def test_cpu_flags_match_the_operating_system():
    flags = cpu_flags()
    assert isinstance(flags, frozenset)
    if Path("/proc/cpuinfo").is_file():
        assert flags and all(flag == flag.strip() for flag in flags)


def test_live_progress_follows_the_output(monkeypatch):
    class Stream:
        def __init__(self, tty):
            self.tty = tty

        def isatty(self):
            return self.tty

    monkeypatch.delitem(__import__("sys").modules, "IPython", raising=False)
    monkeypatch.setattr(runtime.sys, "stderr", Stream(False))
    assert live_progress() is False
    monkeypatch.setattr(runtime.sys, "stderr", Stream(True))
    assert live_progress() is True


def test_live_progress_in_a_jupyter_kernel(monkeypatch):
    class ZMQInteractiveShell:  # what IPython's get_ipython() returns inside a kernel
        pass

    class IPython:
        @staticmethod
        def get_ipython():
            return ZMQInteractiveShell()

    monkeypatch.setattr(runtime.sys.stderr, "isatty", lambda: False, raising=False)
    monkeypatch.setitem(__import__("sys").modules, "IPython", IPython)
    assert live_progress() is True
