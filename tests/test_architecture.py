"""The layering README's architecture section describes: inference never imports training."""

import subprocess
import sys

import pytest

INFERENCE_MODULES = ["export", "predict", "checkpoints", "cli", "preprocess", "metrics"]


@pytest.mark.parametrize("module", INFERENCE_MODULES)
def test_inference_does_not_import_the_training_engine(module):
    code = (
        f"import sys, hwr_utils.{module}; "
        "print(sorted(m for m in ('hwr_utils.train', 'hwr_utils.finetune', 'onnxruntime', "
        "'hwr_utils.bench', 'hwr_utils.teaching') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_predict_and_evaluate_on_an_export_do_not_import_training(tiny_checkpoint, tmp_path):
    pytest.importorskip("onnxruntime")
    from hwr_utils.export import export_model

    onnx_path, _ = export_model(tiny_checkpoint, "onnx", tmp_path / "m.onnx")
    code = (
        "import sys; from hwr_utils.cli import main; "
        f"main(['predict', '--checkpoint', {str(onnx_path)!r}, 'missing.png']); "
        f"main(['evaluate', '--checkpoint', {str(onnx_path)!r}]); "
        "print('TRAIN' if 'hwr_utils.train' in sys.modules else 'CLEAN')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip().splitlines()[-1] == "CLEAN", result.stderr[-2000:]
