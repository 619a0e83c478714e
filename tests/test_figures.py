"""The teaching figures draw what PyTorch computes: each helper's arrays checked against PyTorch
and the from-scratch code, each figure against its helper."""

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from hwr_utils import ctc
from hwr_utils.errors import ConfigError
from hwr_utils.models import build_model
from hwr_utils.teaching import figures, scratch

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
plt = pytest.importorskip("matplotlib.pyplot")


@pytest.fixture
def close_figures():
    yield
    plt.close("all")


def written(figure) -> list[str]:
    """Every string a figure writes inside its axes (cell values, bar labels)."""
    return [t.get_text() for ax in figure.axes for t in ax.texts]


# --- convolution ----------------------------------------------------------------------------


@pytest.mark.parametrize("padding,stride", [(0, 1), (1, 1), (1, 2), (2, 3)])
def test_convolution_panel_is_conv2d_and_the_formula(padding, stride):
    torch.manual_seed(0)
    image, kernel = torch.randint(0, 4, (6, 6)), torch.randint(-2, 3, (3, 3))
    panel = figures.convolution_panel(image, kernel, padding, stride)
    x, w = image.double()[None, None], kernel.double()[None, None]
    assert_close(panel.output, scratch.conv2d_loops(x, w, None, stride, padding)[0, 0])
    assert_close(panel.output, F.conv2d(x, w, stride=stride, padding=padding)[0, 0])
    assert panel.output.shape == (panel.size, panel.size)
    assert panel.size == (6 + 2 * padding - 3) // stride + 1
    assert_close(panel.padded[padding : padding + 6, padding : padding + 6], image.double())
    assert panel.padded.abs().sum() == image.abs().sum()  # the frame is zeros


def test_each_framed_window_makes_its_output_cell():
    torch.manual_seed(1)
    image, kernel = torch.randint(0, 4, (6, 6)), torch.randint(-2, 3, (3, 3))
    panel = figures.convolution_panel(image, kernel, 1, 2)
    windows = panel.windows(3)
    assert windows[0] == (0, 0) and windows[-1] == (panel.size - 1, panel.size - 1)
    for i, j in windows:
        window = panel.padded[i * 2 : i * 2 + 3, j * 2 : j * 2 + 3]
        assert_close((window * kernel.double()).sum(), panel.output[i, j])


def test_the_convolution_figure_writes_the_computed_outputs(close_figures):
    image, kernel = torch.arange(25).reshape(5, 5) % 4, torch.tensor([[1, 0], [0, -1]])
    settings = [(0, 1), (1, 2)]
    figure = figures.draw_convolution(image, kernel, settings)
    assert len(figure.axes) == 1 + 2 * len(settings)  # the kernel, then input and output each
    texts = written(figure)
    for padding, stride in settings:
        panel = figures.convolution_panel(image, kernel, padding, stride)
        for value in panel.output.flatten().tolist():
            assert f"{value:.0f}" in texts
        title = f"⌊(5 + 2·{padding} − 2) / {stride}⌋ + 1 = {panel.size}"
        assert any(title in ax.get_title() for ax in figure.axes)


# --- pooling --------------------------------------------------------------------------------


@pytest.mark.parametrize("size,kernel", [(6, 2), (7, 2), (6, 3)])
def test_pooling_panel_is_max_and_average_pooling(size, kernel):
    torch.manual_seed(2)
    image = torch.randn(size, size, dtype=torch.float64)
    panel = figures.pooling_panel(image, kernel)
    x = image[None, None]
    assert_close(panel.maximum, scratch.max_pool2d(x, kernel)[0, 0])
    assert_close(panel.maximum, F.max_pool2d(x, kernel)[0, 0])
    windows = x.unfold(2, kernel, kernel).unfold(3, kernel, kernel)[0, 0]
    assert_close(panel.average, windows.mean(dim=(-2, -1)))
    for (i, j), (row, column) in zip(
        torch.cartesian_prod(*(torch.arange(panel.maximum.shape[0]),) * 2).tolist(),
        panel.argmax.reshape(-1, 2).tolist(),
        strict=True,
    ):
        assert i * kernel <= row < (i + 1) * kernel and j * kernel <= column < (j + 1) * kernel
        assert image[row, column] == panel.maximum[i, j]


def test_the_pooling_figure_frames_each_maximum(close_figures):
    torch.manual_seed(3)
    image = torch.randint(0, 10, (6, 6))
    figure = figures.draw_pooling(image)
    assert len(figure.axes) == 3
    panel = figures.pooling_panel(image)
    framed = [p for p in figure.axes[0].patches if not p.get_fill()]
    assert sorted((round(p.get_y() + 0.5), round(p.get_x() + 0.5)) for p in framed) == sorted(
        map(tuple, panel.argmax.reshape(-1, 2).tolist())
    )
    averages = [t.get_text() for t in figure.axes[2].texts]
    assert averages == [figures._number(v) for v in panel.average.flatten().tolist()]


# --- receptive field ------------------------------------------------------------------------


def test_receptive_fields_follow_the_model_and_the_recurrence():
    features = build_model("hwrnet").features
    steps = figures.receptive_fields(features)
    layers = [m for m in features.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.MaxPool2d))]
    assert len(steps) == len(layers)
    for count, step in enumerate(steps, start=1):
        assert step.field == scratch.receptive_field([(s.kernel, s.stride) for s in steps[:count]])
    x = torch.zeros(1, 1, 28, 28)
    for step, layer in zip(steps, layers, strict=True):
        x = layer(x)
        assert step.size == x.shape[-1]
    assert steps[-1].field == scratch.measured_receptive_field(features)
    for inner, outer in zip(steps, steps[1:], strict=False):  # each field inside the next
        assert outer.first <= inner.first and inner.last <= outer.last


@pytest.mark.parametrize(
    "features",
    [
        build_model("hwrnet").features,
        torch.nn.Sequential(
            torch.nn.Conv2d(1, 2, 5, stride=2, padding=2),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(3, stride=2),
            torch.nn.Conv2d(2, 3, 3, dilation=2),
        ),  # fmt: skip
    ],
    ids=["hwrnet", "strided-dilated"],
)
def test_the_formula_agrees_with_autograd_at_every_layer(features):
    torch.manual_seed(4)
    steps = figures.receptive_fields(features, image_size=28)
    gradients = figures.field_gradients(features, steps, image_size=28)
    for step, gradient in zip(steps, gradients, strict=True):
        first, last = max(step.first, 0), min(step.last, 27)  # the image clips the field
        assert figures.nonzero_extent(gradient) == (first, last, first, last), step


def test_a_layer_that_is_not_square_is_refused():
    with pytest.raises(ConfigError, match="not square"):
        figures.receptive_fields(torch.nn.Sequential(torch.nn.MaxPool2d((2, 1))))


def test_the_receptive_field_figure(close_figures):
    features = build_model("hwrnet").features
    figure = figures.draw_receptive_field(features, torch.rand(28, 28))
    assert len(figure.axes) == 2
    steps = figures.receptive_fields(features)
    squares = [p for p in figure.axes[0].patches if p.get_width() != 28]
    assert sorted(p.get_width() for p in squares) == sorted(s.field for s in steps)


# --- softmax --------------------------------------------------------------------------------


def test_softmax_rows_are_torch_softmax_and_sum_to_one():
    torch.manual_seed(5)
    scores = torch.randn(10) * 3
    rows = figures.softmax_rows(scores, (1.0, 0.5, 2.0))
    assert rows.shape == (3, 10)
    assert_close(rows.sum(1), torch.ones(3, dtype=torch.float64))
    assert_close(rows[0], scratch.softmax(scores.double()))
    for row, t in zip(rows, (1.0, 0.5, 2.0), strict=True):
        assert_close(row, torch.softmax(scores.double() / t, dim=0))
        assert torch.equal(row.argsort(), scores.argsort())  # the same order
    assert rows[1].max() > rows[0].max() > rows[2].max()  # colder is sharper


def test_the_softmax_figure_labels_its_bars(close_figures):
    scores = torch.tensor([2.0, 1.0, 0.1, -1.0])
    figure = figures.draw_softmax(scores, (1.0, 2.0))
    assert len(figure.axes) == 3
    rows = figures.softmax_rows(scores, (1.0, 2.0))
    for ax, values in zip(figure.axes, [scores.double(), *rows], strict=True):
        assert [t.get_text() for t in ax.texts] == [f"{v:.2f}" for v in values.tolist()]


# --- CTC alignments -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "label,columns,symbols", [([0, 1], 4, 2), ([0, 0], 5, 2), ([1], 3, 3), ([2, 0, 2], 6, 3)]
)
def test_the_alignments_are_those_the_forward_algorithm_counts(label, columns, symbols):
    alignments = figures.ctc_alignments(label, columns, symbols)
    assert len(set(alignments)) == len(alignments)
    assert all(len(path) == columns for path in alignments)
    # With every unit equally likely in every column (zero logits), each alignment has the
    # probability (C + 1) ** -T, so CTC's probability of the label times (C + 1) ** T counts them.
    logits = torch.zeros(1, columns, symbols + 1, dtype=torch.float64)
    loss = ctc.ctc_loss(logits, torch.tensor([label]), reduction="sum")
    count = torch.exp(-loss.double()) * (symbols + 1) ** columns
    assert_close(count, torch.tensor(len(alignments), dtype=torch.float64), rtol=1e-4, atol=0)
    by_scratch = scratch.ctc_forward(logits[0].log_softmax(1), label, blank=symbols)
    assert_close(
        torch.exp(-by_scratch) * (symbols + 1) ** columns, count.double(), rtol=1e-4, atol=0
    )


def test_a_double_symbol_needs_a_blank_between_its_copies():
    blank = 2
    for path in figures.ctc_alignments([0, 0], 5, 2):
        first = [t for t, unit in enumerate(path) if unit == 0]
        gaps = [t for t in range(first[0], first[-1]) if path[t] == blank]
        assert gaps, path
    assert (0, 0, 0, 0, 0) not in figures.ctc_alignments([0, 0], 5, 2)


def test_the_ctc_figure_draws_every_alignment(close_figures):
    figure = figures.draw_ctc_alignments(["33", "35"], 4, "35")
    assert len(figure.axes) == 2
    for ax, label in zip(figure.axes, ([0, 0], [0, 1]), strict=True):
        alignments = figures.ctc_alignments(label, 4, 2)
        rows = [
            "".join(t.get_text() for t in ax.texts[r * 4 : r * 4 + 4])
            for r in range(len(alignments))
        ]
        assert rows == ["".join("35-"[u] for u in path) for path in alignments]
    with pytest.raises(ConfigError, match="not in the alphabet"):
        figures.draw_ctc_alignments(["37"], 4, "35")
