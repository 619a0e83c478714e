import pytest
import torch
from torch import nn

from hwr_utils.errors import ConfigError
from hwr_utils.models import (
    MODEL_TASKS,
    MODELS,
    NORMALIZATIONS,
    ArticleNet,
    Normalize,
    build_model,
    count_parameters,
    layer_summary,
)
from hwr_utils.tasks import TASKS


def example_input(name: str) -> torch.Tensor:
    """Three inputs of the shape the model's task takes (digits 28x28, or number strips)."""
    task = TASKS[MODEL_TASKS.get(name, "classification")]
    return torch.rand(3, *task.input_shape, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_output_shape(name):
    model = build_model(name).eval()
    x = example_input(name)
    # Readers: columns x (symbols + blank); the line reader's default alphabet is a placeholder.
    expected = {"crnn": (3, x.shape[-1] // 4, 11), "line_reader": (3, x.shape[-1] // 4, 81)}
    assert model(x).shape == expected.get(name, (3, 10))


@pytest.mark.parametrize("recurrent", [True, False])
def test_number_reader_reads_any_width_in_columns_of_four_pixels(recurrent):
    model = build_model("crnn", recurrent=recurrent).eval()
    for width in (8, 64, 192, 300):
        assert model(torch.rand(2, 1, 32, width)).shape == (2, width // 4, 11)


def test_hwrnet_width_scales_parameters():
    assert count_parameters(build_model("hwrnet", width=8)) < count_parameters(
        build_model("hwrnet", width=16)
    )


def test_article_classifier_as_written_does_not_fit_28x28():
    # The article's fc1 expects 32*56*56 features; a 28x28 image yields 32*14*14.
    model = ArticleNet()
    model.fc1 = nn.Linear(32 * 56 * 56, 128)
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        model(torch.zeros(1, 1, 28, 28))
    assert ArticleNet().fc1.in_features == 32 * 14 * 14


def test_unknown_model_name():
    with pytest.raises(ConfigError, match="hwrnet"):
        build_model("resnet")
    with pytest.raises(ConfigError, match="normalization"):
        build_model("hwrnet", normalization="imagenet")


def test_count_trainable_only():
    model = build_model("article")
    model.conv1.requires_grad_(False)
    frozen = sum(p.numel() for p in model.conv1.parameters())
    assert count_parameters(model, trainable_only=True) == count_parameters(model) - frozen


def test_layer_summary_counts():
    rows = layer_summary(ArticleNet())
    assert [r["name"] for r in rows] == ["conv1", "fc1", "fc2"]
    conv1, fc1, fc2 = rows
    assert conv1["output"] == (32, 28, 28) and conv1["macs"] == 32 * 28 * 28 * 9
    assert fc1["macs"] == 32 * 14 * 14 * 128 and fc2["macs"] == 128 * 10
    assert sum(r["params"] for r in rows) == count_parameters(ArticleNet())
    # functional pooling (article2) is no obstacle
    assert [r["output"] for r in layer_summary(build_model("article2"))][1] == (64, 14, 14)


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("normalization", sorted(NORMALIZATIONS))
def test_models_take_pixels_and_normalize_inside(name, normalization):
    # The same weights, fed pixels in [0, 1], give what the weights alone give on
    # (x - mean) / std: normalization is the model's first layer, saved with it.
    torch.manual_seed(0)
    model = build_model(name, normalization=normalization).eval()
    mean, std = NORMALIZATIONS[normalization]
    assert model.state_dict()["normalize.mean"].item() == pytest.approx(mean)
    bare = build_model(name, normalization="none").eval()
    bare.load_state_dict(
        {k: v for k, v in model.state_dict().items() if not k.startswith("normalize.")},
        strict=False,
    )
    x = example_input(name)
    with torch.no_grad():
        torch.testing.assert_close(model(x), bare((x - mean) / std))


def test_normalize_has_no_parameters():
    layer = Normalize("article")
    assert list(layer.parameters()) == [] and "mean=0.5000" in repr(layer)
    torch.testing.assert_close(layer(torch.tensor([0.0, 0.5, 1.0])), torch.tensor([-1.0, 0, 1]))
