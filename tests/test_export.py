import builtins
import json

import pytest
import torch

from hwr_utils import export as export_module
from hwr_utils.data import to_float
from hwr_utils.export import (
    ParityError,
    check_parity,
    export_model,
    load_exported,
    load_model,
)
from hwr_utils.train import load_checkpoint, model_from_checkpoint
from tests.test_cli import photos, run_cli  # noqa: F401 -- photos is a fixture

pytest.importorskip("onnxruntime")  # the deploy extra; README's test command installs it


@pytest.fixture(scope="module")
def exported(tiny_checkpoint, tmp_path_factory):
    folder = tmp_path_factory.mktemp("exported")
    formats = ("onnx", "pt2")
    return {fmt: export_model(tiny_checkpoint, fmt, folder / f"m.{fmt}")[0] for fmt in formats}


@pytest.mark.parametrize("fmt", ["onnx", "pt2"])
def test_export_matches_eager_on_the_test_set(fmt, exported, tiny_checkpoint, mnist):
    checkpoint = load_checkpoint(tiny_checkpoint)
    eager = model_from_checkpoint(checkpoint)
    model = load_exported(exported[fmt])
    assert model.metadata["normalization"] == checkpoint["normalization"]
    assert model.metadata["class_names"] == checkpoint["class_names"]
    for batch in (1, 7, 1000):  # the batch dimension is dynamic
        x = to_float(mnist[1].images[:batch])
        with torch.no_grad():
            torch.testing.assert_close(model(x), eager(x), atol=1e-4, rtol=0)


def test_parity_check_fails_loudly():
    logits = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert check_parity(logits, logits + 5e-5) == pytest.approx(5e-5)
    with pytest.raises(ParityError, match="1.00e-03"):
        check_parity(logits, logits + 1e-3)
    with pytest.raises(ParityError, match="same predicted classes: False"):
        check_parity(logits, logits.flip(1), atol=10)


def test_a_failed_parity_check_writes_nothing(tiny_checkpoint, tmp_path, monkeypatch):
    real = export_module.check_parity
    # A negative tolerance: no export can pass.
    monkeypatch.setattr(export_module, "check_parity", lambda a, b: real(a, b, atol=-1.0))
    with pytest.raises(ParityError):
        export_model(tiny_checkpoint, "pt2", tmp_path / "m.pt2")
    assert list(tmp_path.iterdir()) == []  # neither the file nor its temporary


def test_cli_export_then_predict_and_evaluate(tiny_checkpoint, photos, tmp_path, capsys):  # noqa: F811
    folder, good = photos
    paths = [p for p, _ in good]
    _, from_checkpoint, _ = run_cli(
        ["predict", "--checkpoint", tiny_checkpoint, "--json", *paths], capsys
    )
    _, report, _ = run_cli(["evaluate", "--checkpoint", tiny_checkpoint, "--json"], capsys)
    for fmt in ("onnx", "pt2"):
        out = tmp_path / f"m.{fmt}"
        code, printed, _ = run_cli(
            ["export", "--checkpoint", tiny_checkpoint, "--format", fmt, "--out", out], capsys
        )
        assert code == 0 and out.is_file() and "same predictions" in printed
        code, predicted, _ = run_cli(["predict", "--checkpoint", out, "--json", *paths], capsys)
        assert code == 0
        mine, theirs = json.loads(predicted), json.loads(from_checkpoint)
        assert [r["label"] for r in mine] == [r["label"] for r in theirs]
        for a, b in zip(mine, theirs, strict=True):
            assert a["probability"] == pytest.approx(b["probability"], abs=1e-4)
        code, evaluated, _ = run_cli(["evaluate", "--checkpoint", out, "--json"], capsys)
        assert json.loads(evaluated) == json.loads(report)  # identical predictions on MNIST test


def test_default_out_path_and_bad_format(tiny_checkpoint, tmp_path, capsys):
    copy = tmp_path / "model.pt"
    copy.write_bytes(tiny_checkpoint.read_bytes())
    out, _ = export_model(copy, "pt2")
    assert out == tmp_path / "model.pt2"
    with pytest.raises(SystemExit) as exit_info:  # argparse rejects it
        run_cli(["export", "--checkpoint", copy, "--format", "tflite"], capsys)
    assert exit_info.value.code == 2 and "invalid choice" in capsys.readouterr().err
    with pytest.raises(ValueError, match="onnx or pt2"):
        export_model(copy, "tflite")


def test_missing_onnx_says_how_to_install(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    real_import = builtins.__import__

    def no_onnx(name, *args, **kwargs):
        if name.startswith("onnx"):
            raise ImportError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    code, _, err = run_cli(
        ["export", "--checkpoint", tiny_checkpoint, "--format", "onnx", "--out", tmp_path / "m"],
        capsys,
    )
    assert code == 2 and 'pip install -e ".[deploy]"' in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_load_model_rejects_foreign_files(tmp_path):
    bad = tmp_path / "x.pt2"
    bad.write_bytes(b"not a program")
    with pytest.raises(ValueError, match="torch.export"):
        load_model(bad)
    bad_onnx = tmp_path / "x.onnx"
    bad_onnx.write_text("not a model")
    with pytest.raises(ValueError, match="not a readable ONNX model"):
        load_model(bad_onnx)
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.onnx")
