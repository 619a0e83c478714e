import pytest
import torch
from torch import nn

from hwr_utils.models import MODELS, ArticleNet, build_model, count_parameters, layer_summary


@pytest.mark.parametrize("name", sorted(MODELS))
def test_output_shape(name):
    model = build_model(name).eval()
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


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
    with pytest.raises(ValueError, match="hwrnet"):
        build_model("resnet")


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
