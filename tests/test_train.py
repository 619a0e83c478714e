import pickle

import pytest
import torch

from hwr_utils import train as train_module
from hwr_utils.train import (
    TrainConfig,
    config_from_args,
    fit,
    get_args_parser,
    load_checkpoint,
    maybe_compile,
    model_from_checkpoint,
    pick_device,
    save_checkpoint,
)
from tests.conftest import tiny_config


def test_short_run_learns(tmp_path, mnist_root):
    checkpoint = fit(tiny_config(tmp_path, mnist_root, epochs=3))
    history = checkpoint["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["val_accuracy"] > 0.8  # chance is 0.1
    assert checkpoint["metrics"]["test"]["accuracy"] > 0.8


def test_checkpoint_round_trip(tiny_checkpoint):
    checkpoint = load_checkpoint(tiny_checkpoint)  # weights_only=True inside
    for key in ("model", "model_config", "normalization", "class_names", "metrics", "versions"):
        assert key in checkpoint
    model = model_from_checkpoint(checkpoint)
    assert not model.training
    x = torch.randn(4, 1, 28, 28)
    again = model_from_checkpoint(torch.load(tiny_checkpoint, weights_only=True))
    torch.testing.assert_close(model(x), again(x))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # the malicious file's own
def test_checkpoint_refuses_arbitrary_pickles(tmp_path):
    path = tmp_path / "evil.pt"

    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    path.write_bytes(pickle.dumps({"format": 1, "x": Payload()}))
    with pytest.raises(ValueError, match="not a readable hwr checkpoint"):
        load_checkpoint(path)


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "model.pt"
    save_checkpoint({"format": 1, "value": torch.ones(2)}, path)

    def crash(obj, file):
        file.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module.torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"format": 1, "value": torch.zeros(2)}, path)
    assert torch.equal(load_checkpoint(path)["value"], torch.ones(2))
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_resume_equals_uninterrupted(tmp_path, mnist_root, monkeypatch):
    whole = fit(tiny_config(tmp_path / "whole", mnist_root, epochs=3))

    calls = {"n": 0}
    real_train_one_epoch = train_module.train_one_epoch

    def interrupted_after_two(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_train_one_epoch(*args, **kwargs)

    config = tiny_config(tmp_path / "parts", mnist_root, epochs=3)
    monkeypatch.setattr(train_module, "train_one_epoch", interrupted_after_two)
    with pytest.raises(KeyboardInterrupt):
        fit(config)
    assert load_checkpoint(config.out)["epoch"] == 2
    monkeypatch.setattr(train_module, "train_one_epoch", real_train_one_epoch)
    torch.manual_seed(999)  # whatever happened in between must not matter
    config.resume = True
    resumed = fit(config)

    assert resumed["epoch"] == 3
    for key, value in whole["state_dict"].items():
        torch.testing.assert_close(resumed["state_dict"][key], value, rtol=0, atol=0)
    assert resumed["metrics"] == whole["metrics"]
    strip = [{k: v for k, v in row.items() if k != "seconds"} for row in whole["history"]]
    assert [{k: v for k, v in row.items() if k != "seconds"} for row in resumed["history"]] == strip


def test_resume_refuses_other_settings(tmp_path, mnist_root):
    fit(tiny_config(tmp_path, mnist_root, epochs=1))
    with pytest.raises(ValueError, match="other settings"):
        fit(tiny_config(tmp_path, mnist_root, epochs=1, lr=0.5, resume=True))


def test_same_seed_same_numbers(tmp_path, mnist_root):
    a = fit(tiny_config(tmp_path / "a", mnist_root, epochs=1))
    b = fit(tiny_config(tmp_path / "b", mnist_root, epochs=1))
    c = fit(tiny_config(tmp_path / "c", mnist_root, epochs=1, seed=1))
    assert a["history"][0]["train_loss"] == b["history"][0]["train_loss"]
    assert a["history"][0]["train_loss"] != c["history"][0]["train_loss"]


def test_compile_failure_falls_back_to_eager(monkeypatch):
    def broken(model):
        raise RuntimeError("no C compiler")

    monkeypatch.setattr(train_module.torch, "compile", broken)
    model = torch.nn.Linear(2, 2)
    with pytest.warns(UserWarning, match="no C compiler"):
        assert maybe_compile(model, torch.zeros(1, 2)) is model


def test_pick_device():
    assert pick_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert pick_device("auto").type in ("cpu", "mps")
        with pytest.raises(ValueError, match="CUDA is not available"):
            pick_device("cuda")


def test_argument_parser_matches_config():
    args = get_args_parser().parse_args(["--model", "article", "--epochs", "3", "--no-augment"])
    config = config_from_args(args)
    assert config == TrainConfig(
        model="article", epochs=3, augment=False, out="checkpoints/article.pt"
    )
    with pytest.raises(SystemExit):
        get_args_parser().parse_args(["--epochs", "three"])


def test_bad_settings_rejected(tmp_path, mnist_root):
    with pytest.raises(ValueError, match="epochs"):
        fit(tiny_config(tmp_path, mnist_root, epochs=0))
    with pytest.raises(ValueError, match="train_limit"):
        fit(tiny_config(tmp_path, mnist_root, train_limit=0))
    with pytest.raises(ValueError, match="unknown device"):
        pick_device("gpu please")


def test_compile_warmup_leaves_no_trace(monkeypatch):
    # Stand in for torch.compile with the identity: the warm-up forward then runs the real
    # model in train mode, which would update batch-norm statistics and draw dropout masks.
    monkeypatch.setattr(train_module.torch, "compile", lambda model: model)
    model = torch.nn.Sequential(torch.nn.BatchNorm1d(3), torch.nn.Dropout(0.5)).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    example = torch.randn(8, 3) * 5 + 2
    rng_before = torch.get_rng_state()
    assert maybe_compile(model, example) is model
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert torch.equal(torch.get_rng_state(), rng_before)


def test_fit_on_a_split_of_its_own_with_class_weights(tmp_path, mnist_root, mnist):
    train = mnist[0]
    only_two_digits = train.labels < 2
    split = type(train)(train.images[only_two_digits][:600], train.labels[only_two_digits][:600])
    weights = [1.0] * 10
    checkpoint = fit(
        tiny_config(tmp_path, mnist_root, epochs=1, class_weights=weights), train=split
    )
    # trained on 0s and 1s only: the test set's other digits cannot be right
    assert checkpoint["metrics"]["test"]["accuracy"] < 0.25
    with pytest.raises(ValueError, match="cannot be resumed"):
        fit(tiny_config(tmp_path, mnist_root, epochs=1, resume=True), train=split)
