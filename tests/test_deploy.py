import pytest
import torch

from hwr_utils.data import to_float
from hwr_utils.deploy import inference_engines, latency_ms, predict_all
from hwr_utils.train import load_checkpoint, model_from_checkpoint

pytest.importorskip("onnxruntime")  # the deploy extra; README's test command installs it


def test_latency_percentiles_are_ordered():
    p50, p99 = latency_ms(lambda x: x * 2, torch.zeros(1, 1, 28, 28), calls=200)
    assert 0 < p50 <= p99


def test_predict_all_batches_every_image():
    logits = torch.randn(25, 10, generator=torch.Generator().manual_seed(0))
    calls = []

    def engine(x):
        calls.append(len(x))
        return x

    predictions, per_second = predict_all(engine, logits, batch_size=10)
    assert torch.equal(predictions, logits.argmax(1)) and per_second > 0
    assert calls == [10] + [10, 10, 5] * 3  # warm-up, then three timed passes


def test_every_engine_agrees_with_eager(tiny_checkpoint, mnist, tmp_path):
    checkpoint = load_checkpoint(tiny_checkpoint)
    model = model_from_checkpoint(checkpoint)
    train, test = mnist
    calibration = to_float(train.images[:256])
    images, labels = to_float(test.images[:500]), test.labels[:500]
    with torch.inference_mode():
        engines = inference_engines(tiny_checkpoint, model, tmp_path, calibration)
        reference = model(images).argmax(1)
        for name, engine in engines.items():
            predictions = engine(images).argmax(1)
            agreement = (predictions == reference).float().mean().item()
            if "int8" in name:  # quantization may flip a few close calls, no more
                assert agreement > 0.97, name
                accuracy = (predictions == labels).float().mean().item()
                assert accuracy > (reference == labels).float().mean().item() - 0.02
            else:
                assert agreement == 1.0, name
        assert engines["onnxruntime int8"](images[:1]).shape == (1, 10)  # dynamic batch
