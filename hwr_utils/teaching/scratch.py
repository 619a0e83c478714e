"""From-scratch versions of what PyTorch does for us, for the book to teach and the tests to
check against PyTorch (``torch.testing.assert_close``). Clear rather than fast.

Preliminaries: :func:`mlp_forward`, :func:`mlp_backward` (backpropagation by hand through a
two-layer network), :func:`nearest_neighbour` (the pixel-distance baseline).
Convolution and pooling: :func:`conv_output_size`, :func:`conv2d_loops`, :func:`conv2d_im2col`,
:func:`conv2d_fft`, :func:`max_pool2d`, :func:`min_pool2d`. Softmax and loss:
:func:`softmax_naive`, :func:`softmax`, :func:`log_softmax`, :func:`cross_entropy`,
:func:`cross_entropy_grad`. Optimizers: :class:`SGD`, :class:`Adam`, :class:`RMSprop`. Sequences:
:func:`ctc_forward`, the CTC loss by the forward (alpha) recursion.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
import torch.nn.functional as F

# --- preliminaries: backpropagation by hand, a baseline -------------------------------------


def mlp_forward(
    x: torch.Tensor, params: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Logits of a two-layer network, ``relu(x W1 + b1) W2 + b2``, for ``x`` (N, D), and what the
    backward pass needs (the chapter "Preliminaries"). ``params``: ``W1`` (D, H), ``b1`` (H,),
    ``W2`` (H, C), ``b2`` (C,)."""
    z = x @ params["W1"] + params["b1"]  # (N, H): before the ReLU
    h = z.clamp(min=0)  # (N, H): after it
    logits = h @ params["W2"] + params["b2"]  # (N, C)
    return logits, {"x": x, "z": z, "h": h}


def mlp_backward(
    logits: torch.Tensor,
    targets: torch.Tensor,
    saved: dict[str, torch.Tensor],
    params: dict[str, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """The gradients of the mean cross-entropy of ``logits`` with respect to every parameter of
    :func:`mlp_forward`, by the chain rule, one layer at a time from the loss back to the input:
    what ``loss.backward()`` computes. Checked against autograd."""
    g_logits = cross_entropy_grad(logits, targets)  # (p - t) / N: the loss is a batch mean
    g_w2 = saved["h"].T @ g_logits  # logits = h W2 + b2
    g_b2 = g_logits.sum(0)
    g_h = g_logits @ params["W2"].T
    g_z = g_h * (saved["z"] > 0)  # the ReLU passes the gradient where it passed the input
    g_w1 = saved["x"].T @ g_z  # z = x W1 + b1
    g_b1 = g_z.sum(0)
    return {"W1": g_w1, "b1": g_b1, "W2": g_w2, "b2": g_b2}


def nearest_neighbour(
    train_x: torch.Tensor, train_y: torch.Tensor, query: torch.Tensor, chunk: int = 1000
) -> torch.Tensor:
    """The label of each ``query`` row's nearest ``train_x`` row (Euclidean distance over the
    pixels; rows are flattened images). Distances come from
    ``|q - t|^2 = |q|^2 - 2 q.t + |t|^2``, one matrix product per ``chunk`` of queries."""
    train_x = train_x.flatten(1).float()
    squared = (train_x * train_x).sum(1)
    labels = []
    for part in query.flatten(1).float().split(chunk):
        # |q|^2 is the same for every training row: it does not change which one is nearest.
        distances = squared - 2 * part @ train_x.T
        labels.append(train_y[distances.argmin(1)])
    return torch.cat(labels)


# --- convolution and pooling ----------------------------------------------------------------


def conv_output_size(
    size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1
) -> int:
    """Output length of a convolution or pooling along one dimension:
    ``floor((size + 2 * padding - dilation * (kernel - 1) - 1) / stride) + 1``."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def conv2d_loops(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int = 1,
    padding: int = 0,
) -> torch.Tensor:
    """Cross-correlation, as ``F.conv2d`` computes it, with explicit loops over output pixels.

    ``x``: (N, C_in, H, W); ``weight``: (C_out, C_in, kH, kW). Each output pixel is the sum of
    the window under the kernel times the kernel -- no flip (that would be a true convolution).
    """
    n, _, height, width = x.shape
    c_out, _, kh, kw = weight.shape
    x = F.pad(x, (padding, padding, padding, padding))
    out_h = conv_output_size(height, kh, stride, padding)
    out_w = conv_output_size(width, kw, stride, padding)
    out = x.new_zeros(n, c_out, out_h, out_w)
    for i in range(out_h):
        for j in range(out_w):
            window = x[:, :, i * stride : i * stride + kh, j * stride : j * stride + kw]
            # (N, 1, C_in, kH, kW) * (1, C_out, C_in, kH, kW), summed over C_in, kH, kW
            out[:, :, i, j] = (window.unsqueeze(1) * weight.unsqueeze(0)).sum(dim=(2, 3, 4))
    if bias is not None:
        out += bias.view(1, -1, 1, 1)
    return out


def conv2d_im2col(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int = 1,
    padding: int = 0,
) -> torch.Tensor:
    """The same cross-correlation as one matrix product: ``F.unfold`` lays every window out as a
    column (im2col), and the kernels, flattened to rows, multiply all columns at once."""
    n, _, height, width = x.shape
    c_out, _, kh, kw = weight.shape
    columns = F.unfold(x, (kh, kw), padding=padding, stride=stride)  # (N, C_in*kH*kW, L)
    out = weight.view(c_out, -1) @ columns  # (N, C_out, L)
    if bias is not None:
        out += bias.view(1, -1, 1)
    out_h = conv_output_size(height, kh, stride, padding)
    out_w = conv_output_size(width, kw, stride, padding)
    return out.view(n, c_out, out_h, out_w)


def conv2d_fft(image: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """True 2-D convolution ("full" output) of one image with one kernel through the FFT.

    The convolution theorem: the Fourier transform of a convolution is the product of the
    transforms. Zero-padding both to the full output size makes the FFT's circular convolution
    equal the linear one.
    """
    h = image.shape[0] + kernel.shape[0] - 1
    w = image.shape[1] + kernel.shape[1] - 1
    spectrum = torch.fft.rfft2(image, s=(h, w)) * torch.fft.rfft2(kernel, s=(h, w))
    return torch.fft.irfft2(spectrum, s=(h, w))


def conv2d_full_direct(image: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """True 2-D convolution ("full" output) done directly: cross-correlate with the kernel
    flipped in both directions, after padding by ``kernel size - 1``."""
    kh, kw = kernel.shape
    flipped = torch.flip(kernel, dims=(0, 1))
    out = F.conv2d(image[None, None], flipped[None, None], padding=(kh - 1, kw - 1))
    return out[0, 0]


def _pool_windows(x: torch.Tensor, kernel: int, stride: int | None) -> torch.Tensor:
    stride = stride or kernel
    return x.unfold(2, kernel, stride).unfold(3, kernel, stride)  # (N, C, oH, oW, k, k)


def max_pool2d(x: torch.Tensor, kernel: int = 2, stride: int | None = None) -> torch.Tensor:
    """Max pooling: the largest value of each window (``F.max_pool2d`` without padding)."""
    return _pool_windows(x, kernel, stride).amax(dim=(-2, -1))


def min_pool2d(x: torch.Tensor, kernel: int = 2, stride: int | None = None) -> torch.Tensor:
    """Min pooling, as the article defines pooling: the smallest value of each window."""
    return _pool_windows(x, kernel, stride).amin(dim=(-2, -1))


# --- softmax and cross-entropy --------------------------------------------------------------


def softmax_naive(z: torch.Tensor) -> torch.Tensor:
    """``exp(z) / sum(exp(z))`` exactly as written: overflows to ``inf / inf = nan`` for big z."""
    e = torch.exp(z)
    return e / e.sum(dim=-1, keepdim=True)


def log_softmax(z: torch.Tensor) -> torch.Tensor:
    """``z - logsumexp(z)``, with the log-sum-exp trick: subtracting ``max(z)`` first keeps every
    exponent at most 0, so nothing overflows, and the result is mathematically unchanged."""
    m = z.amax(dim=-1, keepdim=True)
    return z - m - torch.log(torch.exp(z - m).sum(dim=-1, keepdim=True))


def softmax(z: torch.Tensor) -> torch.Tensor:
    """Numerically stable softmax: ``exp(log_softmax(z))``."""
    return torch.exp(log_softmax(z))


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean of ``-log p[target]`` over the batch, from logits (as ``nn.CrossEntropyLoss``)."""
    return -log_softmax(logits).gather(1, targets.view(-1, 1)).mean()


def cross_entropy_grad(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Gradient of :func:`cross_entropy` with respect to the logits: ``(p - t) / N``, where
    ``p`` is the softmax and ``t`` the one-hot target."""
    p = softmax(logits)
    t = F.one_hot(targets, logits.shape[1]).to(p.dtype)
    return (p - t) / logits.shape[0]


# --- optimizers -----------------------------------------------------------------------------


class _Optimizer:
    def __init__(self, params: Iterable[torch.Tensor]) -> None:
        self.params = list(params)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None


class SGD(_Optimizer):
    """Stochastic gradient descent, optionally with (heavy-ball) momentum, as ``torch.optim.SGD``:

    ``u <- momentum * u + g`` (``u = g`` on the first step); ``w <- w - lr * u``.
    """

    def __init__(self, params, lr: float, momentum: float = 0.0) -> None:
        super().__init__(params)
        self.lr, self.momentum = lr, momentum
        self.velocity: list[torch.Tensor | None] = [None] * len(self.params)

    @torch.no_grad()
    def step(self) -> None:
        for i, p in enumerate(self.params):
            g = p.grad
            if self.momentum:
                u = self.velocity[i]
                self.velocity[i] = g.clone() if u is None else self.momentum * u + g
                g = self.velocity[i]
            p -= self.lr * g


class RMSprop(_Optimizer):
    """RMSprop, as ``torch.optim.RMSprop``: divide the gradient by a running RMS of its history.

    ``s <- alpha * s + (1 - alpha) * g^2``; ``w <- w - lr * g / (sqrt(s) + eps)``.
    """

    def __init__(self, params, lr: float = 0.01, alpha: float = 0.99, eps: float = 1e-8) -> None:
        super().__init__(params)
        self.lr, self.alpha, self.eps = lr, alpha, eps
        self.square_avg = [torch.zeros_like(p) for p in self.params]

    @torch.no_grad()
    def step(self) -> None:
        for p, s in zip(self.params, self.square_avg, strict=True):
            s.mul_(self.alpha).add_((1 - self.alpha) * p.grad**2)
            p -= self.lr * p.grad / (s.sqrt() + self.eps)


class Adam(_Optimizer):
    """Adam, as ``torch.optim.Adam``: momentum (``m``) and RMS scaling (``v``), both
    bias-corrected for their zero start.

    ``m <- b1 m + (1 - b1) g``; ``v <- b2 v + (1 - b2) g^2``;
    ``w <- w - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)``.
    """

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8) -> None:
        super().__init__(params)
        self.lr, (self.b1, self.b2), self.eps = lr, betas, eps
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.t = 0

    @torch.no_grad()
    def step(self) -> None:
        self.t += 1
        for p, m, v in zip(self.params, self.m, self.v, strict=True):
            m.mul_(self.b1).add_((1 - self.b1) * p.grad)
            v.mul_(self.b2).add_((1 - self.b2) * p.grad**2)
            m_hat = m / (1 - self.b1**self.t)
            v_hat = v / (1 - self.b2**self.t)
            p -= self.lr * m_hat / (v_hat.sqrt() + self.eps)


# --- receptive field -------------------------------------------------------------------------


def receptive_field(layers: list[tuple[int, int]]) -> int:
    """Receptive field of a stack of convolutions and poolings, each given as (kernel, stride):
    every layer widens it by ``(kernel - 1) * jump``, where ``jump`` is the product of the
    strides before it (how far apart neighbouring units of its input are, in input pixels)."""
    field, jump = 1, 1
    for kernel, stride in layers:
        field += (kernel - 1) * jump
        jump *= stride
    return field


def linearized(features: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``features``, in evaluation mode, in which ReLUs become identities and max
    poolings average poolings of the same geometry: every input pixel under a unit's windows
    then moves that unit, so the gradient shows its whole receptive field."""
    probe = copy.deepcopy(features).eval()
    for name, module in list(probe.named_modules()):
        if isinstance(module, torch.nn.ReLU):
            replacement: torch.nn.Module = torch.nn.Identity()
        elif isinstance(module, torch.nn.MaxPool2d):
            replacement = torch.nn.AvgPool2d(module.kernel_size, module.stride, module.padding)
        else:
            continue
        parent = probe.get_submodule(name.rpartition(".")[0]) if "." in name else probe
        setattr(parent, name.rpartition(".")[2], replacement)
    return probe


def measured_receptive_field(features: torch.nn.Module, size: int = 64) -> int:
    """The receptive field found by autograd: the width of the input region whose pixels change
    the centre unit of the output map, for an input of ``size`` x ``size``.

    Measured on :func:`linearized` ``features``: otherwise units that happen to be switched
    off, or not the maximum, hide part of the field from the gradient.
    """
    probe = linearized(features)
    x = torch.randn(1, 1, size, size, requires_grad=True)
    out = probe(x)
    out[0, :, out.shape[2] // 2, out.shape[3] // 2].sum().backward()
    columns = (x.grad[0, 0].abs() > 0).any(dim=0).nonzero()
    return int(columns.max() - columns.min() + 1)


# --- CTC ------------------------------------------------------------------------------------


def ctc_forward(log_probs: torch.Tensor, target: list[int], blank: int) -> torch.Tensor:
    """Minus the log probability CTC gives ``target`` under ``log_probs`` (T, C), log-softmaxed
    per column: the forward (alpha) recursion of Graves et al. (2006), in log space.

    The target is spread out with blanks, ``l' = (-, l1, -, l2, ..., -)`` (length 2L + 1);
    ``alpha[t, s]`` is the log probability of all alignment prefixes of length t + 1 that end in
    ``l'[s]``. Each step may stay on ``s``, come from ``s - 1``, or skip a blank from ``s - 2``
    when ``l'[s]`` is a symbol different from ``l'[s - 2]`` (two equal symbols need the blank
    between them). The answer sums the two ends, ``alpha[T-1, -1]`` and ``alpha[T-1, -2]``.
    Autograd gives the gradient (what the backward, beta, recursion computes by hand).
    Chapter "Reading whole numbers"; checked against ``F.ctc_loss``.
    """
    extended = [blank]
    for symbol in target:
        extended += [symbol, blank]
    # None marks a state no alignment prefix reaches yet (log probability minus infinity;
    # leaving it out keeps logsumexp's gradient free of 0/0).
    alpha: list[torch.Tensor | None] = [None] * len(extended)
    alpha[0] = log_probs[0, blank]
    if len(extended) > 1:
        alpha[1] = log_probs[0, extended[1]]
    for t in range(1, log_probs.shape[0]):
        previous, alpha = alpha, []
        for s, unit in enumerate(extended):
            ways = [previous[s]]
            if s >= 1:
                ways.append(previous[s - 1])
            if s >= 2 and unit != blank and unit != extended[s - 2]:
                ways.append(previous[s - 2])
            ways = [w for w in ways if w is not None]
            reached = torch.logsumexp(torch.stack(ways), 0) if ways else None
            alpha.append(None if reached is None else reached + log_probs[t, unit])
    ends = [a for a in alpha[-2:] if a is not None]
    if not ends:  # the target needs more columns than there are
        return torch.tensor(float("inf"), dtype=log_probs.dtype)
    return -torch.logsumexp(torch.stack(ends), 0)
