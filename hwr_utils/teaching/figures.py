"""Figures that teach: a kernel sliding over an image with padding and stride, pooling, the
receptive field growing layer by layer, softmax turning scores into probabilities, and the CTC
alignments of a short text.

Each figure is drawn by matplotlib from arrays that PyTorch computes, through a helper that
returns them, so that the tests can check every number a figure shows against PyTorch and the
from-scratch code of :mod:`~hwr_utils.teaching.scratch`:

* convolution chapter: :func:`draw_convolution` (:func:`convolution_panel`),
  :func:`draw_pooling` (:func:`pooling_panel`), :func:`draw_receptive_field`
  (:func:`receptive_fields`, :func:`field_gradients`, :func:`nonzero_extent`);
* softmax chapter: :func:`draw_softmax` (:func:`softmax_rows`);
* "Reading whole numbers": :func:`draw_ctc_alignments` (:func:`ctc_alignments`).

The draw functions return the figure; a chapter shows it with ``plt.show()``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from .. import ctc
from ..errors import ConfigError
from .scratch import conv_output_size, linearized

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# Frames around the kernel's windows, and the output cells they make, in the same order.
WINDOW_COLOURS = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd")


def _number(value: float) -> str:
    """A value as a figure writes it: integers without a decimal point, others to two places."""
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.2f}"


def _grid(ax: Axes, values: torch.Tensor, colours: list[list[str]], size: float = 9) -> None:
    """A grid of cells, each filled with its colour, its value written in it; row 0 on top."""
    from matplotlib.patches import Rectangle

    rows, columns = values.shape
    for i in range(rows):
        for j in range(columns):
            ax.add_patch(
                Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor=colours[i][j], edgecolor="#909090",
                          linewidth=0.6)
            )  # fmt: skip
            ax.text(j, i, _number(values[i, j].item()), ha="center", va="center", fontsize=size)
    ax.set_xlim(-0.6, columns - 0.4)
    ax.set_ylim(rows - 0.4, -0.6)
    ax.set_aspect("equal")
    ax.set_xticks([]), ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _shades(values: torch.Tensor, cmap: str = "RdBu_r") -> list[list[str]]:
    """Pale colours for values, symmetric around zero (zero white), so the numbers stay legible."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    limit = values.abs().max().item() or 1.0
    scale = colormaps[cmap]
    return [[to_hex(scale(0.5 + 0.3 * v / limit)) for v in row] for row in values.tolist()]


def _frame(ax: Axes, row: float, column: float, size: float, colour: str, width: float = 2.5):
    from matplotlib.patches import Rectangle

    ax.add_patch(
        Rectangle((column - 0.5, row - 0.5), size, size, fill=False, edgecolor=colour,
                  linewidth=width)
    )  # fmt: skip


# --- convolution ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ConvolutionPanel:
    """One square image cross-correlated with one square kernel (``F.conv2d``), and the size
    the output-size formula predicts for it."""

    padded: torch.Tensor  #: (n + 2p, n + 2p): the image inside its frame of zeros
    output: torch.Tensor  #: (m, m): what ``F.conv2d`` computes
    padding: int
    stride: int
    size: int  #: m by :func:`~hwr_utils.teaching.scratch.conv_output_size`

    def windows(self, kernel: int) -> list[tuple[int, int]]:
        """The output positions whose windows a figure frames: the first, the next one along
        the row (one stride on), and the last, without repeats."""
        last = self.size - 1
        positions = [(0, 0), (0, min(1, last)), (last, last)]
        return list(dict.fromkeys(positions))


def convolution_panel(
    image: torch.Tensor, kernel: torch.Tensor, padding: int, stride: int
) -> ConvolutionPanel:
    """``F.conv2d`` of one image (n, n) with one kernel (k, k), in double precision, with its
    zero-padded input and the formula's output size."""
    x = image.to(torch.float64)
    w = kernel.to(torch.float64)
    output = F.conv2d(x[None, None], w[None, None], padding=padding, stride=stride)[0, 0]
    size = conv_output_size(x.shape[-1], w.shape[-1], stride, padding)
    return ConvolutionPanel(F.pad(x, (padding,) * 4), output, padding, stride, size)


def draw_convolution(
    image: torch.Tensor,
    kernel: torch.Tensor,
    settings: Sequence[tuple[int, int]] = ((0, 1), (1, 1), (1, 2)),
) -> Figure:
    """The kernel (top left), then one column per (padding, stride) in ``settings``: above, the
    padded image, its zero padding shaded, with the kernel's window framed at its first
    position, one stride along the row, and its last; below, the output, each cell's value
    written in it and the cells those windows make framed in the same colours. The output's
    title works out its size by the formula floor((n + 2p - k) / s) + 1."""
    import matplotlib.pyplot as plt

    n, k = image.shape[-1], kernel.shape[-1]
    panels = [convolution_panel(image, kernel, p, s) for p, s in settings]
    fig, axes = plt.subplots(
        2, len(panels) + 1, figsize=(3.1 * (len(panels) + 1), 6.4), layout="constrained",
        gridspec_kw={"height_ratios": [n + 2 * max(p for p, _ in settings), n]},
    )  # fmt: skip
    _grid(axes[0, 0], kernel.to(torch.float64), _shades(kernel.to(torch.float64)))
    axes[0, 0].set_title(f"kernel, {k}x{k}", fontsize=10)
    axes[1, 0].remove()
    for column, panel in enumerate(panels, start=1):
        p, s = panel.padding, panel.stride
        inside = torch.zeros_like(panel.padded, dtype=torch.bool)
        inside[p : p + n, p : p + n] = True
        colours = [
            ["#ffffff" if i else "#d9d9d9" for i in row] for row in inside.tolist()
        ]  # padding grey, the image white
        _grid(axes[0, column], panel.padded, colours, size=8)
        axes[0, column].set_title(
            f"padding {p}, stride {s}\ninput {n}x{n}"
            + (f", padded {n + 2 * p}x{n + 2 * p}" if p else ", no padding"),
            fontsize=10,
        )
        _grid(axes[1, column], panel.output, _shades(panel.output))
        for (i, j), colour in zip(panel.windows(k), WINDOW_COLOURS, strict=False):
            _frame(axes[0, column], i * s, j * s, k, colour)
            _frame(axes[1, column], i, j, 1, colour)
        axes[1, column].set_title(
            f"output: ⌊({n} + 2·{p} − {k}) / {s}⌋ + 1 = {panel.size}", fontsize=10
        )
    fig.suptitle("A kernel sliding over an image: each framed window makes the framed output cell")
    return fig


# --- pooling --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PoolingPanel:
    """Max and average pooling of one image, windows of ``kernel`` x ``kernel``, stride
    ``kernel``, and where each window's maximum lies."""

    maximum: torch.Tensor  #: (m, m): ``F.max_pool2d``
    average: torch.Tensor  #: (m, m): ``F.avg_pool2d``
    argmax: torch.Tensor  #: (m, m, 2): row and column, in the image, of each window's maximum
    kernel: int


def pooling_panel(image: torch.Tensor, kernel: int = 2) -> PoolingPanel:
    """``F.max_pool2d`` (with the indices of the maxima) and ``F.avg_pool2d`` of one image
    (H, W), in double precision."""
    x = image.to(torch.float64)[None, None]
    maximum, flat = F.max_pool2d(x, kernel, return_indices=True)
    average = F.avg_pool2d(x, kernel)
    width = image.shape[-1]
    argmax = torch.stack((flat // width, flat % width), dim=-1)[0, 0]
    return PoolingPanel(maximum[0, 0], average[0, 0], argmax, kernel)


def draw_pooling(image: torch.Tensor, kernel: int = 2) -> Figure:
    """Three grids: the image, each pooling window in a colour of its own and its maximum
    framed; the max-pooled map and the average-pooled map, each cell in its window's colour."""
    import matplotlib.pyplot as plt
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    panel = pooling_panel(image, kernel)
    rows, columns = panel.maximum.shape
    pastel = colormaps["Pastel1"]
    window = [[to_hex(pastel((i * columns + j) % 9)) for j in range(columns)] for i in range(rows)]
    colours = [
        [window[i // kernel][j // kernel] if i // kernel < rows and j // kernel < columns
         else "#ffffff" for j in range(image.shape[-1])]
        for i in range(image.shape[-2])
    ]  # fmt: skip
    fig, axes = plt.subplots(
        1, 3, figsize=(10, 3.8), layout="constrained",
        gridspec_kw={"width_ratios": [image.shape[-1], columns, columns]},
    )  # fmt: skip
    _grid(axes[0], image.to(torch.float64), colours)
    for i, j in panel.argmax.reshape(-1, 2).tolist():
        _frame(axes[0], i, j, 1, "#202020", width=2)
    axes[0].set_title(f"image {image.shape[-2]}x{image.shape[-1]}, {kernel}x{kernel} windows",
                      fontsize=10)  # fmt: skip
    _grid(axes[1], panel.maximum, window)
    axes[1].set_title(f"max pooling: {rows}x{columns}", fontsize=10)
    _grid(axes[2], panel.average, window)
    axes[2].set_title(f"average pooling: {rows}x{columns}", fontsize=10)
    fig.suptitle(f"{kernel}x{kernel} pooling, stride {kernel}: one number per window "
                 "(the maximum framed)")  # fmt: skip
    return fig


# --- receptive field ------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldStep:
    """One convolution or pooling of a stack, and the receptive field of one unit of its output
    map, by the formula. Rows and columns alike: the stack's layers are square."""

    name: str  #: the module's name in the stack
    kind: str  #: "conv" or "pool"
    kernel: int
    stride: int
    padding: int
    size: int  #: the output map's height and width
    field: int  #: receptive field, in input pixels
    jump: int  #: input pixels between neighbouring units of the output map
    unit: int  #: the unit followed (its row, and its column)
    first: int  #: the input pixel where its field begins (below 0: in the padding)

    @property
    def last(self) -> int:
        """The input pixel where the field ends (past the image: in the padding)."""
        return self.first + self.field - 1


def _square(value: int | tuple[int, ...], module: torch.nn.Module) -> int:
    values = value if isinstance(value, tuple) else (value,)
    if len(set(values)) != 1:
        raise ConfigError(f"{module} is not square; the figure follows square layers only")
    return int(values[0])


def receptive_fields(features: torch.nn.Module, image_size: int = 28) -> list[FieldStep]:
    """The receptive field after each ``Conv2d`` and pooling of ``features`` (in the order
    they run), for a square input of ``image_size``, by the recurrence

    ``field += (kernel - 1) * dilation * jump``, ``first -= padding * jump``, ``jump *= stride``

    (the jump read before the layer multiplies it). The unit followed is the centre of the last
    map, and in each map below it the unit at the centre of the window the unit above reads,
    so that each field lies inside the next."""
    kinds = {torch.nn.Conv2d: "conv", torch.nn.MaxPool2d: "pool", torch.nn.AvgPool2d: "pool"}
    field, jump, first, size = 1, 1, 0, image_size
    found = []  # (name, kind, kernel, stride, padding, dilation, input size, output size, ...)
    for name, module in features.named_modules():
        kind = kinds.get(type(module))
        if kind is None:
            continue
        k, s, p = (
            _square(getattr(module, a), module) for a in ("kernel_size", "stride", "padding")
        )
        d = _square(getattr(module, "dilation", 1), module)
        field += (k - 1) * d * jump
        first -= p * jump
        jump *= s
        before, size = size, conv_output_size(size, k, s, p, d)
        found.append((name, kind, k, s, p, d, before, size, field, jump, first))
    steps: list[FieldStep] = []
    unit = size // 2
    for name, kind, k, s, p, d, before, after, field, jump, first in reversed(found):
        steps.append(FieldStep(name, kind, k, s, p, after, field, jump, unit, first + unit * jump))
        unit = min(max(unit * s - p + d * ((k - 1) // 2), 0), before - 1)
    return steps[::-1]


def field_gradients(
    features: torch.nn.Module, steps: list[FieldStep], image_size: int = 28
) -> list[torch.Tensor]:
    """For each step, the gradient's magnitude (image_size, image_size) of its unit (summed over
    channels) with respect to the input, by autograd in double precision through
    :func:`~hwr_utils.teaching.scratch.linearized` ``features``: nonzero exactly on the pixels
    that move it."""
    probe = linearized(features).double()
    layers = {name: module for name, module in probe.named_modules()}
    outputs: dict[str, torch.Tensor] = {}
    hooks = [
        layers[step.name].register_forward_hook(
            lambda _module, _input, output, name=step.name: outputs.__setitem__(name, output)
        )
        for step in steps
    ]
    try:
        # the probe is affine: its gradient is the same at every input
        x = torch.zeros(1, 1, image_size, image_size, dtype=torch.float64, requires_grad=True)
        probe(x)
    finally:
        for hook in hooks:
            hook.remove()
    gradients = []
    for step in steps:
        unit = outputs[step.name][0, :, step.unit, step.unit].sum()
        (gradient,) = torch.autograd.grad(unit, x, retain_graph=True)
        gradients.append(gradient[0, 0].abs())
    return gradients


def nonzero_extent(gradient: torch.Tensor) -> tuple[int, int, int, int]:
    """First and last row, first and last column, of the nonzero pixels of ``gradient``."""
    rows = gradient.abs().sum(1).nonzero()
    columns = gradient.abs().sum(0).nonzero()
    return int(rows.min()), int(rows.max()), int(columns.min()), int(columns.max())


def draw_receptive_field(
    features: torch.nn.Module, image: torch.Tensor | None = None, image_size: int = 28
) -> Figure:
    """Left: on the input (``image`` if given), one square per convolution and pooling of
    ``features``, the receptive field of one unit of its map (:func:`receptive_fields`), each
    inside the next; a field may run past the image into the padding. Right: the input pixels
    whose gradient moves the last layer's unit (:func:`field_gradients`), with the formula's
    square on top."""
    import matplotlib.pyplot as plt
    from matplotlib import colormaps

    steps = receptive_fields(features, image_size)
    gradient = field_gradients(features, steps[-1:], image_size)[0]
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.2), layout="constrained")
    low = min(0, *(s.first for s in steps)) - 1.5
    high = max(image_size - 1, *(s.last for s in steps)) + 1.5
    if image is not None:
        axes[0].imshow(image.detach().cpu().numpy(), cmap="gray_r", alpha=0.35)
    axes[1].imshow((gradient > 0).numpy(), cmap="Blues", vmin=0, vmax=2)
    colours = colormaps["viridis"]
    for index, step in enumerate(steps):
        colour = colours(index / max(len(steps) - 1, 1) * 0.9)
        label = (
            f"{step.kind} {step.kernel}x{step.kernel}, stride {step.stride}: map {step.size}x"
            f"{step.size}, field {step.field}x{step.field}, jump {step.jump}"
        )
        _frame(axes[0], step.first, step.first, step.field, colour, width=2)
        axes[0].plot([], [], color=colour, linewidth=2, label=label)
    _frame(axes[1], steps[-1].first, steps[-1].first, steps[-1].field, "#d62728", width=2)
    for ax in axes:
        _frame(ax, 0, 0, image_size, "#000000", width=1)
        ax.set_xlim(low, high), ax.set_ylim(high, low)
        ax.set_xticks([0, image_size - 1]), ax.set_yticks([0, image_size - 1])
    axes[0].legend(loc="upper center", bbox_to_anchor=(0.5, -0.06), fontsize=8, frameon=False)
    axes[0].set_title("the field of one unit of each layer's map (the formula)", fontsize=10)
    axes[1].set_title(
        f"pixels that move the last unit (autograd, blue),\nthe formula's {steps[-1].field}x"
        f"{steps[-1].field} field (red)", fontsize=10,
    )  # fmt: skip
    fig.suptitle(f"Receptive fields on a {image_size}x{image_size} input: each layer sees more")
    return fig


# --- softmax --------------------------------------------------------------------------------


def softmax_rows(scores: torch.Tensor, temperatures: Sequence[float] = (1.0,)) -> torch.Tensor:
    """``torch.softmax(scores / T)`` for each temperature T: (len(temperatures), C), each row
    positive and summing to one. T = 1 is the softmax itself."""
    z = scores.to(torch.float64)
    return torch.stack([torch.softmax(z / t, dim=-1) for t in temperatures])


def draw_softmax(
    scores: torch.Tensor,
    temperatures: Sequence[float] = (1.0,),
    names: Sequence[str] | None = None,
) -> Figure:
    """A bar per class: the logits ``scores`` (C,) in the first panel, then their softmax at
    each temperature (:func:`softmax_rows`), each bar's value written on it."""
    import matplotlib.pyplot as plt

    z = scores.to(torch.float64)
    probabilities = softmax_rows(z, temperatures)
    names = list(names) if names is not None else [str(k) for k in range(len(z))]
    fig, axes = plt.subplots(
        1, 1 + len(temperatures), figsize=(3.6 * (1 + len(temperatures)), 3.4),
        layout="constrained",
    )  # fmt: skip
    rows = [("logits z", z, "#7f7f7f")]
    for t, p in zip(temperatures, probabilities, strict=True):
        what = "softmax(z)" if t == 1 else f"softmax(z / {t:g})"
        rows.append((f"{what}: sum {p.sum().item():.2f}", p, "#1f77b4"))
    for ax, (title, values, colour) in zip(axes, rows, strict=True):
        bars = ax.bar(names, values.tolist(), color=colour)
        ax.bar_label(bars, labels=[f"{v:.2f}" for v in values.tolist()], fontsize=7, padding=1)
        ax.axhline(0, color="#404040", linewidth=0.8)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("class")
        ax.margins(y=0.15)
    for ax in axes[1:]:
        ax.set_ylim(0, 1.08)
    fig.suptitle("Softmax: the same order, positive, summing to one")
    return fig


# --- CTC alignments -------------------------------------------------------------------------


def ctc_alignments(label: Sequence[int], columns: int, symbols: int) -> list[tuple[int, ...]]:
    """Every alignment of ``columns`` units that reads as ``label``, by brute force: all
    (symbols + 1) ** columns paths, symbols 0 to symbols - 1 and the blank last (unit
    ``symbols``, as in :mod:`hwr_utils.ctc`), each read as the reader reads its outputs, by
    :func:`~hwr_utils.ctc.greedy_decode` (repeats collapse, then blanks go). Small sizes only."""
    paths = list(itertools.product(range(symbols + 1), repeat=columns))
    texts = ctc.greedy_decode(F.one_hot(torch.tensor(paths), symbols + 1))
    return [path for path, text in zip(paths, texts, strict=True) if text == list(label)]


def _label_positions(path: tuple[int, ...], blank: int) -> list[int | None]:
    """For each column, which symbol of the text it writes (None for a blank)."""
    positions: list[int | None] = []
    index, previous = -1, blank
    for unit in path:
        if unit != blank and unit != previous:
            index += 1
        positions.append(index if unit != blank else None)
        previous = unit
    return positions


def draw_ctc_alignments(texts: Sequence[str], columns: int, alphabet: str) -> Figure:
    """One panel per text: every alignment of ``columns`` columns that reads as it
    (:func:`ctc_alignments` over ``alphabet`` and the blank, written "-"), one row each; each
    cell coloured by the symbol of the text it writes, blanks grey."""
    import matplotlib.pyplot as plt

    unknown = {c for text in texts for c in text} - set(alphabet)
    if unknown:
        raise ConfigError(f"symbols {sorted(unknown)} are not in the alphabet {alphabet!r}")
    blank = len(alphabet)
    found = [ctc_alignments([alphabet.index(c) for c in t], columns, blank) for t in texts]
    height = max(len(a) for a in found)
    fig, axes = plt.subplots(
        1, len(texts), figsize=(2.6 * len(texts) + 1, 0.21 * height + 1.4), layout="constrained",
        squeeze=False,
    )  # fmt: skip
    palette = ("#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94")
    for ax, text, alignments in zip(axes[0], texts, found, strict=True):
        for row, path in enumerate(alignments):
            for t, (unit, position) in enumerate(zip(path, _label_positions(path, blank),
                                                     strict=True)):  # fmt: skip
                colour = "#e6e6e6" if position is None else palette[position % len(palette)]
                ax.add_patch(plt.Rectangle((t - 0.5, row - 0.5), 1, 1, facecolor=colour,
                                           edgecolor="white", linewidth=1))  # fmt: skip
                symbol = "-" if unit == blank else alphabet[unit]
                ax.text(t, row, symbol, ha="center", va="center", fontsize=9, family="monospace")
        ax.set_xlim(-0.5, columns - 0.5), ax.set_ylim(height - 0.5, -0.5)
        ax.set_xticks(range(columns), [str(t + 1) for t in range(columns)])
        ax.set_yticks([])
        ax.set_xlabel("column t")
        ax.set_title(f'"{text}": {len(alignments)} alignments', fontsize=10)
        for spine in ax.spines.values():
            spine.set_visible(False)
    fig.suptitle(f"Every alignment of {columns} columns that reads as each text", fontsize=10)
    return fig
