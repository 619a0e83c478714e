import pytest
import torch

from hwr_utils.data import MNISTSplit
from hwr_utils.errors import ConfigError
from hwr_utils.models import NORMALIZATIONS, HwrNet, build_model
from hwr_utils.tasks import Classification
from hwr_utils.train import fit, make_optimizer, prepare_training, train_one_epoch


def test_short_run_learns(tmp_path, tiny_config):
    checkpoint = fit(tiny_config(tmp_path, epochs=3))
    history = checkpoint["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["val_accuracy"] > 0.8  # chance is 0.1
    assert checkpoint["metrics"]["test"]["accuracy"] > 0.8


def test_resume_equals_uninterrupted(tmp_path, tiny_config, killed_and_resumed, assert_same_run):
    whole = fit(tiny_config(tmp_path / "whole", epochs=3))
    resumed = killed_and_resumed(tiny_config(tmp_path / "parts", epochs=3), epoch=3)
    assert resumed["epoch"] == 3
    assert_same_run(whole, resumed)


def test_resume_refuses_other_settings(tmp_path, tiny_config):
    fit(tiny_config(tmp_path, epochs=1))
    with pytest.raises(ConfigError, match="other settings"):
        fit(tiny_config(tmp_path, epochs=1, lr=0.5, resume=True))


def test_same_seed_same_numbers(tmp_path, tiny_config):
    a = fit(tiny_config(tmp_path / "a", epochs=1, train_limit=500))
    b = fit(tiny_config(tmp_path / "b", epochs=1, train_limit=500))
    c = fit(tiny_config(tmp_path / "c", epochs=1, train_limit=500, seed=1))
    assert a["history"][0]["train_loss"] == b["history"][0]["train_loss"]
    assert a["history"][0]["train_loss"] != c["history"][0]["train_loss"]


def test_class_weights_shift_the_predictions(tmp_path, tiny_config, mnist):
    train = mnist[0]
    zeros_and_ones = train.labels < 2
    split = MNISTSplit(train.images[zeros_and_ones][:600], train.labels[zeros_and_ones][:600])
    outputs = {}
    for name, weights in {"equal": [1.0] * 10, "ones": [0.01, 1.0] + [1.0] * 8}.items():
        config = tiny_config(tmp_path / name, epochs=1, class_weights=weights, augment=False)
        checkpoint = fit(config, train=split)
        # trained on 0s and 1s only: the test set's other digits cannot be right
        assert checkpoint["metrics"]["test"]["accuracy"] < 0.25
        outputs[name] = checkpoint["history"][-1]["val_accuracy"]
    # A weight of 0.01 on the 0s all but drops them from the loss: the model says "1" for them.
    assert outputs["ones"] < outputs["equal"]
    with pytest.raises(ConfigError, match="cannot be resumed"):
        fit(tiny_config(tmp_path, epochs=1, resume=True), train=split)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_weight_decay_only_on_weights(tiny_config, tmp_path, optimizer):
    config = tiny_config(tmp_path, optimizer=optimizer, weight_decay=5e-4)
    model = build_model("hwrnet", width=8)
    built, _ = make_optimizer(model, config, steps_per_epoch=5)
    decays = {id(p): group["weight_decay"] for group in built.param_groups for p in group["params"]}
    for name, parameter in model.named_parameters():
        expected = 5e-4 if parameter.ndim > 1 else 0.0  # biases and batch-norm scales: none
        assert decays[id(parameter)] == expected, name
    assert isinstance(built, torch.optim.SGD if optimizer == "sgd" else torch.optim.AdamW)


@pytest.mark.parametrize("schedule", ["onecycle", "constant"])
def test_schedules(tmp_path, tiny_config, schedule):
    config = tiny_config(tmp_path, schedule=schedule, lr=0.01)
    opt, scheduler = make_optimizer(build_model("hwrnet", width=8), config, steps_per_epoch=5)
    for _ in range(4):
        opt.step()
        scheduler.step()
    lr = opt.param_groups[0]["lr"]
    assert (lr == pytest.approx(0.01)) == (schedule == "constant")


@pytest.mark.parametrize("normalization", sorted(NORMALIZATIONS))
def test_augmentation_keeps_the_background_black(tmp_path, tiny_config, normalization):
    # Augmentation shifts and rotates the image and fills the exposed border. In pixel space
    # the fill is the black background; on normalized images it would be the mean's grey.
    blank = MNISTSplit(torch.zeros(256, 28, 28, dtype=torch.uint8), torch.zeros(256).long())
    config = tiny_config(tmp_path, normalization=normalization, batch_size=64)
    setup = prepare_training(config, train=blank)
    model = setup.model
    for images, _ in setup.batches:
        assert images.dtype == torch.float32 and torch.count_nonzero(images) == 0
        seen = model.normalize(images)
        assert torch.equal(seen, model.normalize(torch.zeros_like(images)))


def test_the_model_is_fed_pixels_and_normalizes_them(tmp_path, tiny_config, mnist):
    setup = prepare_training(tiny_config(tmp_path, augment=False))
    images, _ = next(iter(setup.batches))
    assert 0 <= images.min() and images.max() <= 1 and images.max() > 0.9
    mean, std = NORMALIZATIONS["mnist"]
    torch.testing.assert_close(setup.model.normalize(images), (images - mean) / std)


def test_bf16_only_where_native(tmp_path, tiny_config, monkeypatch):
    monkeypatch.setattr("hwr_utils.train.bf16_supported", lambda device: False)
    with pytest.warns(UserWarning, match="bfloat16"):
        setup = prepare_training(tiny_config(tmp_path, bf16=True))
    assert setup.bf16 is False


def test_train_one_epoch_under_bf16_autocast():
    # Autocast works on any CPU (emulated where not native); the loss comes back as float32.
    torch.manual_seed(0)
    model = HwrNet(width=4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    batches = [(torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,)))]
    stats = train_one_epoch(
        model, Classification(), optimizer, batches, torch.device("cpu"), progress=False, bf16=True
    )
    assert 0 < stats["loss"] < 10 and 0 <= stats["accuracy"] <= 1


def test_a_log_file_gets_epoch_lines_not_bar_redraws(tmp_path, tiny_config, capfd):
    fit(tiny_config(tmp_path, epochs=2, train_limit=512, val_size=100, progress=True))
    out, err = capfd.readouterr()
    assert out.count("epoch ") == 2 and "\r" not in err and "\r" not in out
