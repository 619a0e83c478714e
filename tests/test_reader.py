"""The number reader end to end: ``hwr train --model crnn``, ``hwr evaluate`` on the test
strips, ``hwr read`` on photos of numbers (good and broken), export, and exact resume."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hwr_utils import digit_strings
from hwr_utils.checkpoints import load_checkpoint
from hwr_utils.config import TrainConfig
from hwr_utils.digit_strings import render_number
from hwr_utils.errors import ConfigError
from hwr_utils.teaching.synthetic import make_photo

SMALL_TEST = 300  # test strips in these runs (the published set has TEST_COUNT)


def reader_config(folder: Path, mnist_root: Path, **overrides) -> TrainConfig:
    values = dict(model="crnn", model_config={"width": 8, "hidden": 32}, epochs=1,
                  train_limit=256, val_size=500, data_dir=str(mnist_root), progress=False,
                  device="cpu", out=str(folder / "crnn.pt"))  # fmt: skip
    return TrainConfig(**{**values, **overrides})


@pytest.fixture(scope="module")
def small_test_set():
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(digit_strings, "TEST_COUNT", SMALL_TEST)
        yield


@pytest.fixture(scope="module")
def reader(tmp_path_factory, mnist_root, small_test_set) -> Path:
    from hwr_utils.train import fit

    config = reader_config(tmp_path_factory.mktemp("reader"), mnist_root, epochs=2)
    fit(config)
    return Path(config.out)


@pytest.fixture(scope="module")
def number_photos(tmp_path_factory, mnist):
    folder = tmp_path_factory.mktemp("numbers")
    _, test = mnist
    rng = np.random.default_rng(0)
    good = []
    for i, picks in enumerate([[0, 1, 2], [3, 4, 5, 6, 7]]):
        strip = render_number([test.images[k].numpy() for k in picks], rng)
        path = folder / f"number_{i}.jpg"
        photo = make_photo(strip, size=(300, 60 * len(picks) + 100), digit_height=120, seed=i)
        Image.fromarray(photo).save(path)
        good.append(path)
    Image.new("L", (400, 120), 235).save(folder / "blank.png")
    (folder / "notes.txt").write_text("not a picture")
    return good, [folder / "blank.png", folder / "notes.txt", folder / "missing.png"]


def test_crnn_has_its_own_defaults():
    config = TrainConfig(model="crnn")
    assert config.task == "ctc" and config.label_smoothing == 0 and config.augment == 1
    assert config.out == "checkpoints/crnn.pt" and TrainConfig().label_smoothing > 0
    with pytest.raises(ConfigError, match="CTC"):
        TrainConfig(model="crnn", label_smoothing=0.1)


def test_the_reader_trains_on_augmented_strips(tmp_path, mnist_root, small_test_set, monkeypatch):
    import hwr_utils.train as train_module
    from hwr_utils.augment import augment_strips

    widths = []

    def spy(images, strength):
        out = augment_strips(images, strength)
        widths.append(out.shape[-1])
        return out

    monkeypatch.setattr(train_module, "augment_strips", spy)
    train_module.fit(reader_config(tmp_path, mnist_root, augment=1.0, train_limit=64))
    assert len(widths) == 1 and widths[0] % 4 == 0  # one batch of 64 strips, each its own draw


def test_training_records_sequence_metrics(reader):
    checkpoint = load_checkpoint(reader)
    assert checkpoint["task"] == "ctc" and checkpoint["input_shape"] == [1, 32, 192]
    test = checkpoint["metrics"]["test"]
    assert {"accuracy", "cer", "loss"} <= set(test) and 0 <= test["accuracy"] <= 1
    assert {f"accuracy_{n}" for n in range(1, 9)} <= set(test)
    assert checkpoint["history"][-1]["val_cer"] >= 0


def test_evaluate_reports_the_test_strips(reader, run_cli):
    code, out, _ = run_cli(["evaluate", "--checkpoint", reader, "--json"])
    report = json.loads(out)
    assert code == 0 and report["strips"] == SMALL_TEST
    expected = load_checkpoint(reader)["metrics"]["test"]
    assert report["sequence_accuracy"] == pytest.approx(expected["accuracy"], abs=1e-6)
    assert report["cer"] == pytest.approx(expected["cer"], abs=1e-6)
    assert set(report["accuracy_by_length"]) == {str(n) for n in range(1, 9)}
    code, out, _ = run_cli(["evaluate", "--checkpoint", reader])
    assert code == 0 and out.startswith("sequence accuracy") and "length" in out


def test_read_keeps_order_and_reports_bad_files(reader, number_photos, run_cli):
    good, bad = number_photos
    paths = [good[0], *bad, good[1]]
    code, out, err = run_cli(["read", "--checkpoint", reader, "--json", *paths])
    results = json.loads(out)
    assert code == 1 and [r["path"] for r in results] == [str(p) for p in paths]
    for result in (results[0], results[-1]):
        assert set(result) == {"path", "text", "confidence"}
        assert set(result["text"]) <= set("0123456789") and 0 <= result["confidence"] <= 1
    errors = results[1:-1]
    assert all(set(r) == {"path", "error"} and "\n" not in r["error"] for r in errors)
    assert "Traceback" not in err
    code, _, _ = run_cli(["read", "--checkpoint", reader, *good])
    assert code == 0


def test_each_command_refuses_the_other_kind_of_model(reader, tiny_checkpoint, number_photos,
                                                      run_cli):  # fmt: skip
    good, _ = number_photos
    code, _, err = run_cli(["read", "--checkpoint", tiny_checkpoint, good[0]])
    assert code == 2 and "hwr predict" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(["predict", "--checkpoint", reader, good[0]])
    assert code == 2 and "hwr read" in err


@pytest.mark.slow
def test_exported_reader_reads_the_same_at_any_width(reader, number_photos, run_cli, tmp_path):
    pytest.importorskip("onnxruntime")
    from hwr_utils.checkpoints import load_model
    from hwr_utils.export import export_model

    onnx_path, difference = export_model(reader, "onnx", tmp_path / "crnn.onnx")
    assert difference <= 1e-4
    exported, _ = load_model(onnx_path)
    model, _ = load_model(reader)
    for width in (8, 100, 192, 400):
        x = torch.rand(3, 1, 32, width)
        with torch.no_grad():
            assert torch.allclose(exported(x), model(x), atol=1e-4), width
    good, _ = number_photos
    _, out_pt, _ = run_cli(["read", "--checkpoint", reader, "--json", *good])
    _, out_onnx, _ = run_cli(["read", "--checkpoint", onnx_path, "--json", *good])
    texts = [[r["text"] for r in json.loads(out)] for out in (out_pt, out_onnx)]
    assert texts[0] == texts[1]


@pytest.mark.slow
@pytest.mark.parametrize("fresh_strips", [False, True])
def test_resume_ends_where_an_uninterrupted_run_ends(
    tmp_path, mnist_root, small_test_set, killed_and_resumed, assert_same_run, fresh_strips
):
    from hwr_utils import train as train_module

    settings = dict(epochs=2, fresh_strips=fresh_strips)
    whole = train_module.fit(reader_config(tmp_path / "whole", mnist_root, **settings))
    resumed = killed_and_resumed(reader_config(tmp_path / "parts", mnist_root, **settings), epoch=2)
    assert_same_run(whole, resumed)


def test_fresh_strips_are_new_every_epoch(tmp_path, mnist_root, small_test_set, monkeypatch):
    from hwr_utils import train as train_module

    seen, real = [], train_module.train_one_epoch

    def recording(model, task, optimizer, batches, *args, **kwargs):
        stats = real(model, task, optimizer, batches, *args, **kwargs)
        seen.append((batches.images.clone(), batches.targets.clone()))  # what the epoch read
        return stats

    monkeypatch.setattr(train_module, "train_one_epoch", recording)
    config = reader_config(tmp_path, mnist_root, epochs=3, train_limit=64, fresh_strips=True)
    train_module.fit(config)
    (first, first_labels), (second, second_labels), (third, _) = seen
    assert first.shape == second.shape == (64, 1, 32, digit_strings.STRIP_WIDTH)
    assert not torch.equal(first_labels, second_labels) and not torch.equal(second, third)
    # The first epoch trains on the strips a run without fresh strips has for every epoch.
    usual = train_module.prepare_training(reader_config(tmp_path, mnist_root, train_limit=64))
    assert torch.equal(first, usual.batches.images)
    with pytest.raises(ConfigError, match="given split"):
        train_module.fit(config, train=usual.dataset.train)
