"""The models of the book, each buildable by name with :func:`build_model`.

* ``article``  -- the first article's one-convolution network, with its classifier resized for
  the 28x28 images it is actually fed (the article's ``fc1`` fits a 112x112 input only).
* ``article2`` -- the second article's two-convolution network (it forgot to import
  ``torch.nn.functional``; here it is imported).
* ``examples`` -- the network of pytorch/examples' MNIST script, the usual point of comparison.
* ``hwrnet``   -- the book's own model: small, batch-normalized, fast on a laptop CPU.
* ``crnn``     -- the number reader: a whole strip of digits in, per-column scores for CTC out.
* ``line_reader`` -- the line reader: a handwritten line of text in, per-column scores for CTC out.

Every model takes raw pixels in [0, 1] and normalizes them itself, in a first :class:`Normalize`
layer whose mean and standard deviation are buffers: they are saved with the weights, travel
into exported ONNX and ``.pt2`` files, and no caller normalizes by hand. Introduced in the
preprocessing chapter (why normalize) and the training chapter (the models).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .data import MNIST_MEAN, MNIST_STD
from .errors import ConfigError

#: (mean, std) subtracted from and divided into pixels scaled to [0, 1].
NORMALIZATIONS: dict[str, tuple[float, float]] = {
    "mnist": (MNIST_MEAN, MNIST_STD),  # MNIST's statistics: zero mean, unit variance
    "article": (0.5, 0.5),  # the article's Normalize((0.5,), (0.5,)): pixels in [-1, 1]
    "none": (0.0, 1.0),  # pixels left in [0, 1]
}


class Normalize(nn.Module):
    """``(x - mean) / std`` with ``mean`` and ``std`` stored as buffers (saved, exported, never
    trained). ``normalization`` names a row of :data:`NORMALIZATIONS`."""

    def __init__(self, normalization: str = "mnist") -> None:
        super().__init__()
        if normalization not in NORMALIZATIONS:
            raise ConfigError(
                f"unknown normalization {normalization!r}; use {', '.join(NORMALIZATIONS)}"
            )
        mean, std = NORMALIZATIONS[normalization]
        self.register_buffer("mean", torch.tensor(mean))
        self.register_buffer("std", torch.tensor(std))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.item():.4f}, std={self.std.item():.4f}"


class ArticleNet(nn.Module):
    """The first article's model. Only ``fc1``'s input size differs: ``32 * 14 * 14``.

    One 3x3 convolution keeps 28x28, one 2x2 max pool halves it to 14x14, so the flattened
    feature map has 32 * 14 * 14 = 6,272 values, not the article's 32 * 56 * 56 (a 56x56 map:
    a 112x112 input halved once; its own 224x224 preprocessing would give 32 * 112 * 112).
    """

    head = "fc2"

    def __init__(
        self, input_size: int = 28, num_classes: int = 10, normalization: str = "mnist"
    ) -> None:
        super().__init__()
        self.normalize = Normalize(normalization)
        self.conv1 = nn.Conv2d(1, 32, kernel_size=3, stride=1, padding=1)
        self.relu = nn.ReLU()
        self.max_pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.fc1 = nn.Linear(32 * (input_size // 2) ** 2, 128)
        self.fc2 = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.conv1(self.normalize(x)))
        x = self.max_pool(x)
        x = x.view(x.size(0), -1)
        x = self.relu(self.fc1(x))
        return self.fc2(x)


class Article2Net(nn.Module):
    """The second article's model, as written, with ``F`` (``torch.nn.functional``) imported."""

    head = "fc2"

    def __init__(self, num_classes: int = 10, normalization: str = "mnist") -> None:
        super().__init__()
        self.normalize = Normalize(normalization)
        self.conv1 = nn.Conv2d(1, 32, kernel_size=3, stride=1, padding=1)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3, stride=1, padding=1)
        self.fc1 = nn.Linear(7 * 7 * 64, 128)
        self.fc2 = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(self.normalize(x)))
        x = F.max_pool2d(x, 2, 2)
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2, 2)
        x = x.view(-1, 7 * 7 * 64)
        x = F.relu(self.fc1(x))
        return self.fc2(x)


class ExamplesNet(nn.Module):
    """pytorch/examples' MNIST network: two unpadded 3x3 convolutions (32, 64 channels), one
    2x2 max pool, dropout 0.25 and 0.5 around a 128-unit hidden layer. It returns logits; the
    original returns ``log_softmax`` and uses ``nll_loss``, which together are the same loss."""

    head = "fc2"

    def __init__(self, num_classes: int = 10, normalization: str = "mnist") -> None:
        super().__init__()
        self.normalize = Normalize(normalization)
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)  # 64 channels x 12 x 12 after the pool
        self.fc2 = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(self.normalize(x)))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(self.dropout1(x), 1)
        x = self.dropout2(F.relu(self.fc1(x)))
        return self.fc2(x)


def conv_bn_relu(in_channels: int, out_channels: int, batch_norm: bool = True) -> nn.Sequential:
    """3x3 convolution, batch norm, ReLU. With batch norm the convolution has no bias (batch
    norm's shift replaces it); without (an ablation in the training chapter) it has one."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=not batch_norm)
    norm = nn.BatchNorm2d(out_channels) if batch_norm else nn.Identity()
    return nn.Sequential(conv, norm, nn.ReLU(inplace=True))


class HwrNet(nn.Module):
    """The book's model: three stages of 3x3 conv-BN-ReLU blocks, then a linear classifier.

    28x28 -> (conv) -> pool -> 14x14 -> (conv, conv) -> pool -> 7x7 -> (conv) -> pool -> 3x3
    -> flatten -> dropout -> linear, after a :class:`Normalize` layer. ``width`` scales every
    layer's channel count; ``batch_norm=False`` drops the batch norms (to measure what they buy).
    """

    channels_last = True  # fit() stores it NHWC; the article models' .view() needs NCHW
    head = "classifier.2"  # the last linear layer, which reset_classifier replaces

    def __init__(
        self,
        width: int = 16,
        dropout: float = 0.1,
        batch_norm: bool = True,
        num_classes: int = 10,
        normalization: str = "mnist",
    ) -> None:
        super().__init__()
        w, bn = width, batch_norm
        self.normalize = Normalize(normalization)
        self.features = nn.Sequential(
            conv_bn_relu(1, w, bn),
            nn.MaxPool2d(2),
            conv_bn_relu(w, 2 * w, bn),
            conv_bn_relu(2 * w, 2 * w, bn),
            nn.MaxPool2d(2),
            conv_bn_relu(2 * w, 4 * w, bn),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(4 * w * 3 * 3, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.normalize(x)))


class CRNN(nn.Module):
    """The number reader: convolutional features over columns, a bidirectional GRU along them,
    and per-column scores over ``num_classes`` symbols (the 10 digits) plus the CTC blank (the
    last unit).

    A strip of height 32 and width W -> (conv) -> pool -> 16 x W/2 -> (conv) -> pool -> 8 x W/4
    -> (conv, conv) -> pool the rows only -> 4 x W/4: each of the T = W/4 columns is then a
    vector of ``4 * 4 * width`` features, projected to ``hidden``. The GRU reads the columns
    both ways (``recurrent=False`` puts two 1-D convolutions over 5 columns in its place, to
    measure what recurrence buys). Returns (N, T, num_classes + 1) logits; any width divisible
    by 4 works.
    Introduced in the chapter "Reading whole numbers".
    """

    channels_last = True
    head = "classifier"
    extra_outputs = 1  # the blank

    def __init__(
        self,
        width: int = 16,
        hidden: int = 96,
        recurrent: bool = True,
        dropout: float = 0.1,
        num_classes: int = 10,
        normalization: str = "mnist",
    ) -> None:
        super().__init__()
        w = width
        self.normalize = Normalize(normalization)
        self.features = nn.Sequential(
            conv_bn_relu(1, w),
            nn.MaxPool2d(2),
            conv_bn_relu(w, 2 * w),
            nn.MaxPool2d(2),
            conv_bn_relu(2 * w, 4 * w),
            conv_bn_relu(4 * w, 4 * w),
            nn.MaxPool2d((2, 1)),
        )
        self.project = nn.Sequential(nn.Linear(16 * w, hidden), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(dropout)
        if recurrent:
            self.context = nn.GRU(hidden, hidden // 2, batch_first=True, bidirectional=True)
        else:
            self.context = nn.Sequential(
                nn.Conv1d(hidden, hidden, 5, padding=2),
                nn.ReLU(inplace=True),
                nn.Conv1d(hidden, hidden, 5, padding=2),
                nn.ReLU(inplace=True),
            )
        self.classifier = nn.Linear(hidden, num_classes + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.features(self.normalize(x))  # (N, C, 4, T)
        columns = self.project(features.permute(0, 3, 1, 2).flatten(2))  # (N, T, hidden)
        columns = self.dropout(columns)
        if isinstance(self.context, nn.GRU):
            columns = self.context(columns)[0]
        else:
            columns = self.context(columns.transpose(1, 2)).transpose(1, 2)
        return self.classifier(self.dropout(columns))


#: The recurrent layers a :class:`LineReader` can read its columns with.
RECURRENT_CELLS: dict[str, type[nn.RNNBase]] = {"gru": nn.GRU, "lstm": nn.LSTM}


class LineReader(nn.Module):
    """The line reader (Part V): a line of handwriting, height 40 and any width, in; per-column
    scores over the alphabet plus the CTC blank (the last unit) out.

    Five 3x3 convolutions with batch norm take a 40 x W line to 5 x W/4 (pools of 2, 2, then
    the rows only), each of the T = W/4 columns is projected to ``hidden`` features, and
    ``layers`` bidirectional recurrent layers (``cell``: ``"gru"`` or ``"lstm"``) read the
    columns both ways. On CPU, PyTorch runs an LSTM through oneDNN's fused kernel and a GRU one
    step at a time: on the CPU measured, an LSTM of the same size trained faster despite its
    fourth gate (``benchmarks/line_reader_threads.py``). In training mode the model also
    returns a *shortcut*: per-column scores straight from the convolutional features, to which
    the task gives a small CTC loss of its own (Retsinas et al., 2022). It hands the
    convolutions a direct training signal while the recurrent layers are still near random,
    which is when a CTC reader otherwise sits for epochs emitting nothing but blanks.
    In eval mode (prediction, export) it returns the (N, T, num_classes + 1) logits only.
    """

    channels_last = True
    head = "classifier"
    extra_outputs = 1  # the blank

    def __init__(
        self,
        width: int = 16,
        hidden: int = 256,
        layers: int = 2,
        dropout: float = 0.2,
        num_classes: int = 80,
        normalization: str = "mnist",
        cell: str = "gru",
    ) -> None:
        super().__init__()
        if cell not in RECURRENT_CELLS:
            raise ConfigError(f"unknown cell {cell!r}; use {' or '.join(RECURRENT_CELLS)}")
        w = width
        self.normalize = Normalize(normalization)
        self.features = nn.Sequential(
            conv_bn_relu(1, w),
            nn.MaxPool2d(2),
            conv_bn_relu(w, 2 * w),
            nn.MaxPool2d(2),
            conv_bn_relu(2 * w, 3 * w),
            conv_bn_relu(3 * w, 3 * w),
            nn.MaxPool2d((2, 1)),
            conv_bn_relu(3 * w, 4 * w),
        )
        self.project = nn.Sequential(nn.Linear(4 * w * 5, hidden), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(dropout)
        self.context = RECURRENT_CELLS[cell](
            hidden, hidden // 2, num_layers=layers, batch_first=True, bidirectional=True,
            dropout=dropout if layers > 1 else 0.0,
        )  # fmt: skip
        self.shortcut = nn.Linear(hidden, num_classes + 1)
        self.classifier = nn.Linear(hidden, num_classes + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        features = self.features(self.normalize(x))  # (N, C, 5, T)
        columns = self.project(features.permute(0, 3, 1, 2).flatten(2))  # (N, T, hidden)
        context = self.context(self.dropout(columns))[0]
        logits = self.classifier(self.dropout(context))
        if self.training:
            return logits, self.shortcut(columns)
        return logits


#: Model names ``--model`` accepts, and the functions that build them.
MODELS: dict[str, Callable[..., nn.Module]] = {
    "article": ArticleNet,
    "article2": Article2Net,
    "examples": ExamplesNet,
    "hwrnet": HwrNet,
    "crnn": CRNN,
    "line_reader": LineReader,
}


#: What each model learns when it is not a one-digit classifier (see :mod:`hwr_utils.tasks`).
MODEL_TASKS: dict[str, str] = {"crnn": "ctc", "line_reader": "lines"}


def build_model(name: str, **config) -> nn.Module:
    """Build a model by name (a key of :data:`MODELS`) with keyword ``config``."""
    try:
        factory = MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}") from None
    return factory(**config)


def model_settings(name: str) -> list[str]:
    """The settings of model ``name`` a run may choose (``TrainConfig.model_config``, ``hwr train
    --model-kwargs``): its constructor's parameters but those the data and the recipe decide
    (``num_classes``, ``normalization``)."""
    parameters = inspect.signature(MODELS[name]).parameters
    return [p for p in parameters if p not in ("num_classes", "normalization")]


def num_classes_of(model: nn.Module) -> int:
    """How many classes (or symbols, for a reader) ``model`` scores: its last linear layer's
    outputs, less the CTC blank of a reader."""
    return model.get_submodule(model.head).out_features - getattr(model, "extra_outputs", 0)


def reset_classifier(model: nn.Module, num_classes: int) -> nn.Module:
    """Replace the model's last linear layer (its ``head``) by a freshly initialized one for
    ``num_classes`` classes (a reader: symbols, the blank added), as timm's
    ``reset_classifier`` does: fine-tuning onto a new set of classes. Its weights are drawn from
    PyTorch's global generator: seed it for a reproducible head."""
    parent_name, _, name = model.head.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = getattr(parent, name)
    outputs = num_classes + getattr(model, "extra_outputs", 0)
    setattr(parent, name, nn.Linear(old.in_features, outputs).to(old.weight.device))
    return model


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
