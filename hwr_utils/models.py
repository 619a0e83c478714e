"""The models of the book, each buildable by name with :func:`build_model`.

* ``article``  -- the first article's one-convolution network, with its classifier resized for
  the 28x28 images it is actually fed (the article sizes ``fc1`` for 224x224 input).
* ``article2`` -- the second article's two-convolution network (it forgot to import
  ``torch.nn.functional``; here it is imported).
* ``hwrnet``   -- the book's own model: small, batch-normalized, fast on a laptop CPU.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


class ArticleNet(nn.Module):
    """The first article's model. Only ``fc1``'s input size differs: ``32 * 14 * 14``.

    One 3x3 convolution keeps 28x28, one 2x2 max pool halves it to 14x14, so the flattened
    feature map has 32 * 14 * 14 = 6,272 values, not the article's 32 * 56 * 56 (which is
    what a 112x112 map would give, i.e. a 224x224 input halved once).
    """

    def __init__(self, input_size: int = 28) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, kernel_size=3, stride=1, padding=1)
        self.relu = nn.ReLU()
        self.max_pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.fc1 = nn.Linear(32 * (input_size // 2) ** 2, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.conv1(x))
        x = self.max_pool(x)
        x = x.view(x.size(0), -1)
        x = self.relu(self.fc1(x))
        return self.fc2(x)


class Article2Net(nn.Module):
    """The second article's model, as written, with ``F`` (``torch.nn.functional``) imported."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, kernel_size=3, stride=1, padding=1)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3, stride=1, padding=1)
        self.fc1 = nn.Linear(7 * 7 * 64, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(x, 2, 2)
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2, 2)
        x = x.view(-1, 7 * 7 * 64)
        x = F.relu(self.fc1(x))
        return self.fc2(x)


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 convolution (no bias: batch norm's shift replaces it), batch norm, ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class HwrNet(nn.Module):
    """The book's model: three stages of 3x3 conv-BN-ReLU blocks, then a linear classifier.

    28x28 -> (conv) -> pool -> 14x14 -> (conv, conv) -> pool -> 7x7 -> (conv) -> pool -> 3x3
    -> flatten -> dropout -> linear. ``width`` scales every layer's channel count.
    """

    channels_last = True  # fit() stores it NHWC; the article models' .view() needs NCHW

    def __init__(self, width: int = 16, dropout: float = 0.1) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            conv_bn_relu(1, w),
            nn.MaxPool2d(2),
            conv_bn_relu(w, 2 * w),
            conv_bn_relu(2 * w, 2 * w),
            nn.MaxPool2d(2),
            conv_bn_relu(2 * w, 4 * w),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(4 * w * 3 * 3, 10)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


MODELS: dict[str, Callable[..., nn.Module]] = {
    "article": ArticleNet,
    "article2": Article2Net,
    "hwrnet": HwrNet,
}


def build_model(name: str, **config) -> nn.Module:
    """Build a model by name (``article``, ``article2``, ``hwrnet``) with keyword ``config``."""
    try:
        factory = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}") from None
    return factory(**config)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (optionally only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def layer_summary(model: nn.Module, input_shape: tuple[int, ...] = (1, 1, 28, 28)) -> list[dict]:
    """One row per convolution and linear layer: name, output shape, parameters, multiply-adds.

    Multiply-adds (MACs) per image: a convolution does ``C_in/groups * kH * kW`` of them for
    each output value, a linear layer ``in_features`` for each output. Found with forward
    hooks, so functional calls (``F.max_pool2d``) need no special handling.
    """
    rows: list[dict] = []

    def hook(module: nn.Module, inputs, output) -> None:
        per_image = output[0].numel()
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            macs = per_image * module.in_channels // module.groups * kh * kw
        else:
            macs = per_image * module.in_features
        rows.append(
            {
                "name": names[module],
                "output": tuple(output.shape[1:]),
                "params": sum(p.numel() for p in module.parameters()),
                "macs": macs,
            }
        )

    names = {m: n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    handles = [m.register_forward_hook(hook) for m in names]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(input_shape))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return rows
