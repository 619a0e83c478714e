import json
import sys

import pytest
import torch

from hwr_utils import export as export_module
from hwr_utils.checkpoints import load_checkpoint, load_model, model_from_checkpoint
from hwr_utils.data import to_float
from hwr_utils.errors import CheckpointError, ConfigError
from hwr_utils.export import ParityError, check_parity, export_model, load_exported

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
    for key in ("task", "task_config", "class_names", "input_shape"):
        assert model.metadata[key] == checkpoint[key], key
    for batch in (1, 7, 1000):  # the batch dimension is dynamic
        x = to_float(mnist[1].images[:batch])  # pixels: the file normalizes inside
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


def test_cli_export_then_predict_and_evaluate(tiny_checkpoint, photos, tmp_path, run_cli):
    folder, good = photos
    paths = [p for p, _ in good]
    _, from_checkpoint, _ = run_cli(["predict", "--checkpoint", tiny_checkpoint, "--json", *paths])
    _, report, _ = run_cli(["evaluate", "--checkpoint", tiny_checkpoint, "--json"])
    for fmt in ("onnx", "pt2"):
        out = tmp_path / f"m.{fmt}"
        code, printed, _ = run_cli(
            ["export", "--checkpoint", tiny_checkpoint, "--format", fmt, "--out", out]
        )
        assert code == 0 and out.is_file() and "same predictions" in printed
        code, predicted, _ = run_cli(["predict", "--checkpoint", out, "--json", *paths])
        assert code == 0
        mine, theirs = json.loads(predicted), json.loads(from_checkpoint)
        assert [r["label"] for r in mine] == [r["label"] for r in theirs]
        for a, b in zip(mine, theirs, strict=True):
            assert a["probability"] == pytest.approx(b["probability"], abs=1e-4)
        code, evaluated, _ = run_cli(["evaluate", "--checkpoint", out, "--json"])
        assert json.loads(evaluated) == json.loads(report)  # identical predictions on MNIST test


def test_default_out_path_and_bad_format(tiny_checkpoint, tmp_path, run_cli, capsys):
    copy = tmp_path / "model.pt"
    copy.write_bytes(tiny_checkpoint.read_bytes())
    out, _ = export_model(copy, "pt2")
    assert out == tmp_path / "model.pt2"
    with pytest.raises(SystemExit) as exit_info:  # argparse rejects it
        run_cli(["export", "--checkpoint", copy, "--format", "tflite"])
    assert exit_info.value.code == 2 and "invalid choice" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="onnx or pt2"):
        export_model(copy, "tflite")


def test_missing_onnx_says_how_to_install(tiny_checkpoint, tmp_path, monkeypatch, run_cli):
    for name in ("onnx", "onnxruntime"):
        monkeypatch.setitem(sys.modules, name, None)  # "import onnx" now fails
    code, _, err = run_cli(
        ["export", "--checkpoint", tiny_checkpoint, "--format", "onnx", "--out", tmp_path / "m"]
    )
    assert code == 2 and 'pip install -e ".[deploy]"' in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_load_model_rejects_foreign_files(tmp_path):
    bad = tmp_path / "x.pt2"
    bad.write_bytes(b"not a program")
    with pytest.raises(CheckpointError, match="torch.export"):
        load_model(bad)
    bad_onnx = tmp_path / "x.onnx"
    bad_onnx.write_text("not a model")
    with pytest.raises(CheckpointError, match="not a readable ONNX model"):
        load_model(bad_onnx)
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "missing.onnx")


def test_an_export_from_before_normalization_moved_inside_is_refused(tiny_checkpoint, tmp_path):
    # Such a file expects normalized input; fed pixels it would answer wrongly, silently.
    out, _ = export_model(tiny_checkpoint, "pt2", tmp_path / "new.pt2")
    old_metadata = {"model": "hwrnet", "normalization": {"mean": 0.1307, "std": 0.3081}}
    old = tmp_path / "old.pt2"
    extra = {export_module.METADATA_KEY: json.dumps(old_metadata)}
    torch.export.save(torch.export.load(out), old, extra_files=extra)
    with pytest.raises(CheckpointError, match="older hwr_utils"):
        load_model(old)


def test_every_missing_extra_gets_the_same_one_line_hint(monkeypatch):
    from hwr_utils.errors import MissingDependencyError, require

    for module, extra in (("sklearn.datasets", "book"), ("papermill", "book"), ("onnx", "deploy")):
        monkeypatch.setitem(sys.modules, module, None)
        with pytest.raises(MissingDependencyError) as info:
            require(module, "Something")
        assert str(info.value).endswith(f'pip install -e ".[{extra}]"'), str(info.value)


def test_onnx_export_falls_back_to_the_torchscript_exporter(
    tiny_checkpoint, tmp_path, monkeypatch, run_cli
):
    # Some PyTorch releases' dynamo exporter cannot convert a GRU: the export must still work,
    # checked for parity like any other, and say in one line which exporter wrote it.
    real_export = torch.onnx.export
    used = []

    def failing_dynamo(*args, dynamo=True, **kwargs):
        used.append(dynamo)
        if dynamo:
            raise RuntimeError("\x1b[96mFailed to decompose the FX graph\x1b[0m\nmore detail")
        return real_export(*args, dynamo=dynamo, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", failing_dynamo)
    out = tmp_path / "m.onnx"
    code, stdout, stderr = run_cli(["export", "--checkpoint", tiny_checkpoint, "--format", "onnx",
                                    "--out", out])  # fmt: skip
    assert code == 0 and used == [True, False]
    assert stderr.strip().count("\n") == 0
    assert "note: PyTorch" in stderr and "(Failed to decompose the FX graph); used the" in stderr
    model = load_exported(out)
    assert model.metadata["class_names"] == load_checkpoint(tiny_checkpoint)["class_names"]
    eager = model_from_checkpoint(load_checkpoint(tiny_checkpoint))
    x = torch.rand(5, 1, 28, 28)  # the batch stays dynamic in the fallback too
    with torch.no_grad():
        torch.testing.assert_close(model(x), eager(x), atol=1e-4, rtol=0)
