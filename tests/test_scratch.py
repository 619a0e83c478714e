"""Each from-scratch piece against PyTorch, in the manner of micrograd's tests."""

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from hwr_utils.models import build_model
from hwr_utils.teaching import scratch


@pytest.mark.parametrize("stride,padding", [(1, 0), (1, 1), (2, 0), (2, 1), (3, 2)])
def test_conv2d_matches_pytorch(stride, padding):
    torch.manual_seed(0)
    x, w, b = torch.randn(2, 3, 9, 8), torch.randn(4, 3, 3, 3), torch.randn(4)
    expected = F.conv2d(x, w, b, stride=stride, padding=padding)
    assert_close(scratch.conv2d_loops(x, w, b, stride, padding), expected)
    assert_close(scratch.conv2d_im2col(x, w, b, stride, padding), expected)


@pytest.mark.parametrize(
    "size,kernel,stride,padding", [(28, 3, 1, 1), (28, 5, 1, 0), (28, 3, 2, 1), (7, 2, 2, 0)]
)
def test_output_size_formula(size, kernel, stride, padding):
    x = torch.zeros(1, 1, size, size)
    out = F.conv2d(x, torch.zeros(1, 1, kernel, kernel), stride=stride, padding=padding)
    assert out.shape[-1] == scratch.conv_output_size(size, kernel, stride, padding)


def test_fft_convolution_equals_direct_and_flip():
    torch.manual_seed(1)
    image, kernel = torch.randn(12, 10, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    direct = scratch.conv2d_full_direct(image, kernel)
    assert_close(scratch.conv2d_fft(image, kernel), direct)
    # PyTorch's "convolution" is cross-correlation: without the flip the results differ.
    unflipped = F.conv2d(image[None, None], kernel[None, None], padding=(2, 3))[0, 0]
    assert not torch.allclose(unflipped, direct)


def test_pooling_matches_pytorch():
    torch.manual_seed(2)
    x = torch.randn(2, 3, 8, 8)
    assert_close(scratch.max_pool2d(x, 2), F.max_pool2d(x, 2))
    assert_close(scratch.max_pool2d(x, 3, 2), F.max_pool2d(x, 3, 2))
    assert_close(scratch.min_pool2d(x, 2), -F.max_pool2d(-x, 2))


def test_softmax_and_log_softmax():
    z = torch.tensor([[1.0, 2.0, 3.0], [1000.0, 1001.0, 1002.0]])
    assert_close(scratch.softmax(z), torch.softmax(z, dim=1))
    assert_close(scratch.log_softmax(z), torch.log_softmax(z, dim=1))
    assert torch.isnan(scratch.softmax_naive(z)[1]).all()  # exp(1000) overflows


def test_cross_entropy_and_gradient():
    torch.manual_seed(3)
    logits = torch.randn(5, 10, requires_grad=True)
    targets = torch.randint(0, 10, (5,))
    loss = scratch.cross_entropy(logits, targets)
    assert_close(loss, F.cross_entropy(logits, targets))
    loss.backward()
    assert_close(scratch.cross_entropy_grad(logits.detach(), targets), logits.grad)


def rosenbrock(p):
    return (1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2


@pytest.mark.parametrize(
    "ours,theirs,kwargs",
    [
        (scratch.SGD, torch.optim.SGD, {"lr": 1e-3}),
        (scratch.SGD, torch.optim.SGD, {"lr": 1e-3, "momentum": 0.9}),
        (scratch.RMSprop, torch.optim.RMSprop, {"lr": 1e-2, "alpha": 0.9}),
        (scratch.Adam, torch.optim.Adam, {"lr": 1e-2, "betas": (0.8, 0.99)}),
    ],
)
def test_optimizer_steps_match_pytorch(ours, theirs, kwargs):
    a = torch.tensor([-1.5, 2.0], dtype=torch.float64, requires_grad=True)
    b = a.detach().clone().requires_grad_(True)
    mine, reference = ours([a], **kwargs), theirs([b], **kwargs)
    for _ in range(50):
        for p, opt in ((a, mine), (b, reference)):
            opt.zero_grad()
            rosenbrock(p).backward()
            opt.step()
        assert_close(a, b)
    assert not torch.equal(a.detach(), torch.tensor([-1.5, 2.0], dtype=torch.float64))


def test_receptive_field_formula_matches_autograd():
    torch.manual_seed(4)
    stack = torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(2, 2, 5, padding=2),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(2, 2, 3, padding=1),
    )
    expected = scratch.receptive_field([(3, 1), (2, 2), (5, 1), (2, 2), (3, 1)])
    assert expected == 1 + 2 + 1 + 4 * 2 + 1 * 2 + 2 * 4 * 1  # 22, by hand
    assert scratch.measured_receptive_field(stack) == expected
    assert isinstance(stack[1], torch.nn.ReLU)  # the model itself is left as it was
    hwrnet = build_model("hwrnet").features
    layers = [(3, 1), (2, 2), (3, 1), (3, 1), (2, 2), (3, 1), (2, 2)]
    assert scratch.measured_receptive_field(hwrnet) == scratch.receptive_field(layers)


def test_backpropagation_by_hand_is_autograds():
    torch.manual_seed(0)
    x, targets = torch.randn(8, 20, dtype=torch.float64), torch.randint(0, 5, (8,))
    params = {
        "W1": torch.randn(20, 16, dtype=torch.float64, requires_grad=True),
        "b1": torch.randn(16, dtype=torch.float64, requires_grad=True),
        "W2": torch.randn(16, 5, dtype=torch.float64, requires_grad=True),
        "b2": torch.randn(5, dtype=torch.float64, requires_grad=True),
    }
    logits, saved = scratch.mlp_forward(x, params)
    assert_close(logits, F.relu(x @ params["W1"] + params["b1"]) @ params["W2"] + params["b2"])
    F.cross_entropy(logits, targets).backward()
    by_hand = scratch.mlp_backward(logits.detach(), targets, saved, params)
    for name, value in params.items():
        assert_close(by_hand[name], value.grad, msg=name)


def test_nearest_neighbour_is_scikit_learns():
    neighbors = pytest.importorskip("sklearn.neighbors")
    torch.manual_seed(0)
    train_x, train_y = torch.rand(300, 1, 6, 6), torch.randint(0, 10, (300,))
    query = torch.rand(57, 1, 6, 6)
    reference = neighbors.KNeighborsClassifier(n_neighbors=1).fit(train_x.flatten(1), train_y)
    expected = torch.from_numpy(reference.predict(query.flatten(1)))
    assert torch.equal(scratch.nearest_neighbour(train_x, train_y, query, chunk=10), expected)
