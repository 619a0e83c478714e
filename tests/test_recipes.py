import pytest
import torch
import torchvision

from hwr_utils.data import to_float
from hwr_utils.models import HwrNet, build_model, count_parameters
from hwr_utils.recipes import (
    ARTICLE_TRANSFORM,
    EXAMPLES_TRANSFORM,
    article_recipe,
    examples_recipe,
    hwr_recipe,
    mnist_loader,
    race,
)
from hwr_utils.train import (
    NORMALIZATIONS,
    bf16_supported,
    fit,
    make_optimizer,
    train_one_epoch,
)
from tests.conftest import tiny_config


def test_article_transform_is_in_memory_normalization(mnist_root, mnist):
    # Grayscale and Resize((28, 28)) are no-ops on MNIST: the per-image pipeline computes
    # exactly what one tensor operation on the whole set computes.
    dataset = torchvision.datasets.MNIST(mnist_root, train=True, transform=ARTICLE_TRANSFORM)
    expected = to_float(mnist[0].images[:16], *NORMALIZATIONS["article"])
    got = torch.stack([dataset[i][0] for i in range(16)])
    torch.testing.assert_close(got, expected)
    dataset.transform = EXAMPLES_TRANSFORM
    got = torch.stack([dataset[i][0] for i in range(16)])
    torch.testing.assert_close(got, to_float(mnist[0].images[:16]))


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


def test_race_records_each_evaluation_and_target(tmp_path, mnist_root, mnist):
    config = tiny_config(tmp_path, mnist_root, epochs=1)  # 2,000 images, batch 64
    result = race(hwr_recipe(config), mnist[1].labels, (0.0, 1.01), eval_every=500)
    assert [p["images"] for p in result.curve] == [512, 1024, 1536, 1984]  # 31 full batches
    seconds = [p["seconds"] for p in result.curve]
    assert seconds == sorted(seconds) and result.images_per_second > 0
    assert result.time_to[0.0] == seconds[0]  # reached at the first measurement
    assert result.time_to[1.01] is None  # never


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


@pytest.mark.parametrize(
    "optimizer, schedule, kind",
    [("sgd", "onecycle", torch.optim.SGD), ("adam", "constant", torch.optim.AdamW)],
)
def test_make_optimizer_options(tmp_path, mnist_root, optimizer, schedule, kind):
    config = tiny_config(tmp_path, mnist_root, optimizer=optimizer, schedule=schedule, lr=0.01)
    opt, scheduler = make_optimizer(build_model("hwrnet", width=8), config, steps_per_epoch=5)
    assert isinstance(opt, kind)
    for _ in range(4):
        opt.step()
        scheduler.step()
    lr = opt.param_groups[0]["lr"]
    assert (lr == pytest.approx(0.01)) == (schedule == "constant")


def test_unknown_options_fail(tmp_path, mnist_root):
    for bad in ({"optimizer": "sgdd"}, {"schedule": "cosine"}, {"normalization": "z"}):
        with pytest.raises(ValueError, match="unknown"):
            fit(tiny_config(tmp_path, mnist_root, epochs=1, **bad))


def test_normalization_is_stored_for_prediction(tmp_path, mnist_root):
    checkpoint = fit(tiny_config(tmp_path, mnist_root, epochs=1, normalization="none"))
    assert checkpoint["normalization"] == {"mean": 0.0, "std": 1.0}


def test_bf16_only_where_native(tmp_path, mnist_root):
    cpu = torch.device("cpu")
    assert isinstance(bf16_supported(cpu), bool)
    if bf16_supported(cpu):
        pytest.skip("this CPU has native bf16; the fallback is not exercised")
    with pytest.warns(UserWarning, match="bfloat16"):
        fit(tiny_config(tmp_path, mnist_root, epochs=1, bf16=True))


def test_train_one_epoch_under_bf16_autocast():
    # Autocast works on any CPU (emulated where not native); the loss comes back as float32.
    torch.manual_seed(0)
    model = HwrNet(width=4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    batches = [(torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,)))]
    stats = train_one_epoch(
        model, torch.nn.CrossEntropyLoss(), optimizer, batches, torch.device("cpu"),
        progress=False, bf16=True,
    )  # fmt: skip
    assert 0 < stats["loss"] < 10
