"""hwr_utils.bench: the recipe race and the inference engines (their figures are not tested;
what they measure is: every engine agrees with eager, the race records what it says)."""

import pytest
import torch
import torchvision

from hwr_utils.bench.numbers import misreadings
from hwr_utils.bench.recipes import (
    ARTICLE_NORMALIZATION,
    ARTICLE_TRANSFORM,
    EXAMPLES_TRANSFORM,
    article_recipe,
    examples_recipe,
    hwr_recipe,
    mnist_loader,
    race,
)
from hwr_utils.checkpoints import load_checkpoint, model_from_checkpoint
from hwr_utils.data import MNIST_MEAN, MNIST_STD, to_float
from hwr_utils.models import HwrNet, build_model, count_parameters


def test_article_transform_is_in_memory_normalization(mnist_root, mnist):
    # Grayscale and Resize((28, 28)) are no-ops on MNIST: the per-image pipeline computes
    # exactly what one tensor operation on the whole set computes.
    dataset = torchvision.datasets.MNIST(mnist_root, train=True, transform=ARTICLE_TRANSFORM)
    expected = to_float(mnist[0].images[:16], *ARTICLE_NORMALIZATION)
    got = torch.stack([dataset[i][0] for i in range(16)])
    torch.testing.assert_close(got, expected)
    dataset.transform = EXAMPLES_TRANSFORM
    got = torch.stack([dataset[i][0] for i in range(16)])
    torch.testing.assert_close(got, to_float(mnist[0].images[:16], MNIST_MEAN, MNIST_STD))


def test_mnist_loader_is_seeded(mnist_root):
    first = next(iter(mnist_loader(True, EXAMPLES_TRANSFORM, 8, seed=3, data_dir=mnist_root)))
    again = next(iter(mnist_loader(True, EXAMPLES_TRANSFORM, 8, seed=3, data_dir=mnist_root)))
    other = next(iter(mnist_loader(True, EXAMPLES_TRANSFORM, 8, seed=4, data_dir=mnist_root)))
    assert torch.equal(first[1], again[1]) and not torch.equal(first[1], other[1])


def test_examples_net_has_the_published_size():
    # pytorch/examples' MNIST network: 320 + 18,496 + 1,179,776 + 1,290 parameters.
    assert count_parameters(build_model("examples")) == 320 + 18_496 + 1_179_776 + 1_290


def test_hwrnet_without_batch_norm():
    model = HwrNet(width=8, batch_norm=False)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(conv.bias is not None for conv in convs)
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_race_records_each_evaluation_and_target(tmp_path, tiny_config, mnist):
    config = tiny_config(tmp_path, epochs=1)  # 2,000 images, batch 64
    result = race(hwr_recipe(config), mnist[1].labels, (0.0, 1.01), eval_every=500)
    assert [p["images"] for p in result.curve] == [512, 1024, 1536, 1984]  # 31 full batches
    seconds = [p["seconds"] for p in result.curve]
    assert seconds == sorted(seconds) and result.images_per_second > 0
    assert result.time_to[0.0] == seconds[0]  # reached at the first measurement
    assert result.time_to[1.01] is None  # never


def test_race_trains_the_way_fit_does(tmp_path, tiny_config, mnist):
    # One training step for both: the race's model ends where fit's does, bit for bit.
    from hwr_utils.train import fit

    config = tiny_config(tmp_path, epochs=1, train_limit=640)
    recipe = hwr_recipe(config)
    race(recipe, mnist[1].labels, (), eval_every=10**9, progress=False)
    fitted = fit(config)["state_dict"]
    for key, value in recipe.model.state_dict().items():
        assert torch.equal(value, fitted[key]), key


def test_race_stops_at_the_time_limit(mnist_root, mnist):
    recipe = article_recipe(epochs=3, data_dir=mnist_root, limit=640)
    result = race(recipe, mnist[1].labels, (1.01,), eval_every=64, time_limit=0.0)
    assert len(result.curve) == 1 and result.curve[0]["images"] == 64


def test_race_rejects_a_bad_interval(mnist_root, mnist):
    recipe = article_recipe(epochs=1, data_dir=mnist_root, limit=64)
    with pytest.raises(ValueError, match="eval_every"):
        race(recipe, mnist[1].labels, eval_every=0)


def test_examples_recipe_steps_its_schedule_per_epoch(mnist_root, mnist):
    recipe = examples_recipe(epochs=2, data_dir=mnist_root, limit=128)
    race(recipe, mnist[1].labels, (1.01,), eval_every=10**9, progress=False)
    assert recipe.optimizer.param_groups[0]["lr"] == pytest.approx(0.7**2)


def test_latency_percentiles_come_from_the_calls():
    from hwr_utils.bench.engines import latency_ms

    delays = iter([0.0] * 10 + [0.001] * 98 + [0.02] * 2)  # warm-up, then 100 timed calls

    def engine(x):
        import time

        time.sleep(next(delays))

    p50, p99 = latency_ms(engine, torch.zeros(1), calls=100)
    assert 1.0 <= p50 < 5.0 and p99 >= 20.0  # milliseconds: the two slow calls are the tail


def test_predict_all_batches_every_image():
    from hwr_utils.bench.engines import predict_all

    logits = torch.randn(25, 10, generator=torch.Generator().manual_seed(0))
    calls = []

    def engine(x):
        calls.append(len(x))
        return x

    predictions, per_second = predict_all(engine, logits, batch_size=10)
    assert torch.equal(predictions, logits.argmax(1)) and per_second > 0
    assert calls == [10] + [10, 10, 5] * 3  # warm-up, then three timed passes


@pytest.mark.slow
def test_every_engine_agrees_with_eager(tiny_checkpoint, mnist, tmp_path):
    pytest.importorskip("onnxruntime")  # the deploy extra; README's test command installs it
    from hwr_utils.bench.engines import inference_engines

    model = model_from_checkpoint(load_checkpoint(tiny_checkpoint))
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


def test_figures_over_seeds_print_the_mean_and_the_sample_spread():
    from hwr_utils.bench.engines import mean_and_spread

    assert mean_and_spread([0.25, 0.5, 0.75]) == "0.5000 +- 0.2500"  # sample std: n - 1
    assert mean_and_spread([0.9]) == "0.9000 +- 0.0000"


def test_misreadings_sort_each_wrong_number_by_its_length():
    truths = [[1, 9, 9, 0], [1, 9, 9, 0], [7], [4, 2], [3, 3]]
    readings = [[1, 9, 9, 0], [1, 9, 9, 2], [7, 1], [4], [3, 8, 3]]
    assert misreadings(readings, truths) == {"substituted": 1, "longer": 2, "shorter": 1}
    with pytest.raises(ValueError):
        misreadings(readings[:2], truths)
