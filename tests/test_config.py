import pytest

from hwr_utils.config import TrainConfig, config_from_args, default_out, get_args_parser
from hwr_utils.errors import ConfigError, HwrError


def test_argument_parser_matches_config():
    args = get_args_parser().parse_args(["--model", "article", "--epochs", "3", "--no-augment"])
    config = config_from_args(args)
    assert config == TrainConfig(model="article", epochs=3, augment=False)
    assert config.out == default_out("article") == "checkpoints/article.pt"
    with pytest.raises(SystemExit):
        get_args_parser().parse_args(["--epochs", "three"])


def test_augmentation_strength_option():
    assert config_from_args(get_args_parser().parse_args(["--augment", "0.5"])).augment == 0.5
    assert TrainConfig(augment=True).augment == 1.0 and TrainConfig(augment=False).augment == 0
    with pytest.raises(SystemExit):
        get_args_parser().parse_args(["--augment", "0.5", "--no-augment"])
    with pytest.raises(ConfigError, match="augment"):
        TrainConfig(augment=-1)


def test_every_parser_default_is_the_config_default():
    parsed = config_from_args(get_args_parser().parse_args([]))
    assert parsed == TrainConfig()


@pytest.mark.parametrize(
    "bad, says",
    [
        ({"epochs": 0}, "epochs"),
        ({"train_limit": 0}, "train_limit"),
        ({"batch_size": -1}, "batch_size"),
        ({"lr": 0.0}, "lr"),
        ({"optimizer": "sgdd"}, "unknown optimizer"),
        ({"schedule": "cosine"}, "unknown schedule"),
        ({"normalization": "z"}, "unknown normalization"),
        ({"model": "resnet"}, "unknown model"),
        ({"label_smoothing": 1.0}, "label_smoothing"),
        ({"weight_decay": -1.0}, "weight_decay"),
        ({"val_size": -5}, "val_size"),
        ({"model_config": {"normalization": "none"}}, "its own option"),
    ],
)
def test_bad_settings_fail_when_the_config_is_made(bad, says):
    with pytest.raises(ConfigError, match=says) as info:
        TrainConfig(**bad)
    assert isinstance(info.value, HwrError) and "\n" not in str(info.value)


def test_adam_is_another_name_for_adamw():
    assert TrainConfig(optimizer="adam").optimizer == "adamw"
    args = get_args_parser().parse_args(["--optimizer", "adam"])
    assert config_from_args(args).optimizer == "adamw"


def test_fingerprint_ignores_what_does_not_change_the_numbers():
    a = TrainConfig(out="a.pt", device="cpu", progress=False)
    b = TrainConfig(out="b.pt", device="auto", compile=True)
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != TrainConfig(lr=0.2).fingerprint()


def test_a_later_setting_at_its_default_leaves_the_fingerprint_as_it_was():
    # Checkpoints written before fresh_strips existed must still resume.
    usual = TrainConfig(model="crnn")
    assert "fresh_strips" not in usual.fingerprint() and "seed" in usual.fingerprint()
    fresh = TrainConfig(model="crnn", fresh_strips=True)
    assert fresh.fingerprint() == {**usual.fingerprint(), "fresh_strips": True}
    parsed = config_from_args(get_args_parser().parse_args(["--model", "crnn", "--fresh-strips"]))
    assert parsed.fresh_strips


def test_fresh_strips_need_strips():
    with pytest.raises(ConfigError, match="--data strips"):
        TrainConfig(model="crnn", data="mnist", fresh_strips=True)
    with pytest.raises(ConfigError, match="--data strips"):
        TrainConfig(fresh_strips=True)  # hwrnet reads MNIST digits


def test_the_line_data_picks_the_line_reader():
    parsed = config_from_args(get_args_parser().parse_args(["--data", "copiste"]))
    assert parsed.model == "line_reader" and parsed.task == "lines" and parsed.epochs == 28
    assert config_from_args(get_args_parser().parse_args([])).model == "hwrnet"
    # An explicit model is kept, and a model that cannot read lines is told so when it trains.
    assert (
        config_from_args(
            get_args_parser().parse_args(["--model", "hwrnet", "--data", "copiste"])
        ).model
        == "hwrnet"
    )


def test_model_kwargs_set_the_model_s_own_settings():
    args = ["--data", "copiste", "--model-kwargs", "cell=lstm", "hidden=64", "dropout=0.1"]
    parsed = config_from_args(get_args_parser().parse_args(args))
    assert parsed.model_config == {"cell": "lstm", "hidden": 64, "dropout": 0.1}
    assert config_from_args(get_args_parser().parse_args([])).model_config == {}
    # A setting the model does not have is named, with those it has, before any data loads.
    with pytest.raises(ConfigError, match="line_reader has no setting cells; its settings: width"):
        TrainConfig(model="line_reader", model_config={"cells": "lstm"})
    with pytest.raises(ConfigError, match="hwrnet has no setting cell"):
        TrainConfig(model_config={"cell": "lstm"})
    with pytest.raises(ConfigError, match="article2 has no setting width; it has none"):
        TrainConfig(model="article2", model_config={"width": 8})
    # Values are checked too: their type against the default's, then by building the model.
    for model, bad, match in (
        ("crnn", {"recurrent": "false"}, "recurrent must be bool, got 'false'"),
        ("line_reader", {"width": 16.0}, "width must be int, got 16.0"),
        ("line_reader", {"hidden": True}, "hidden must be int, got True"),
        ("line_reader", {"cell": "rnn"}, "unknown cell 'rnn'"),
        ("hwrnet", {"width": -4}, "cannot be built"),
    ):
        with pytest.raises(ConfigError, match=match):
            TrainConfig(model=model, model_config=bad)
    assert TrainConfig(model="line_reader", model_config={"dropout": 0}).model_config


def test_every_model_builds_with_each_of_its_settings_given():
    import inspect

    from hwr_utils.models import MODELS, model_settings

    for model in MODELS:
        parameters = inspect.signature(MODELS[model]).parameters
        for name in model_settings(model):
            config = TrainConfig(model=model, model_config={name: parameters[name].default})
            assert config.model_config == {name: parameters[name].default}


def test_model_kwargs_add_up_and_a_name_given_twice_is_refused():
    args = ["--model-kwargs", "cell=lstm", "--model-kwargs", "hidden=64", "recurrent=false"]
    parsed = get_args_parser().parse_args(args)
    assert parsed.model_config == [("cell", "lstm"), ("hidden", 64), ("recurrent", False)]
    twice = get_args_parser().parse_args(["--model-kwargs", "hidden=64", "hidden=32"])
    with pytest.raises(ConfigError, match="gives hidden more than once"):
        config_from_args(twice)


def test_a_model_kwarg_must_read_name_equals_value(capsys):
    for bad in ("cell", "=lstm", "two words=1"):
        with pytest.raises(SystemExit):
            get_args_parser().parse_args(["--model-kwargs", bad])
        assert "is not NAME=VALUE" in capsys.readouterr().err
