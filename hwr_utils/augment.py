"""Training-time augmentation on batches of tensors, with torchvision transforms v2 (introduced
in the training chapter).

A v2 transform called on a batch draws *one* set of random parameters for the whole batch.
Calling it once per image gives every image its own draw but costs about as long as the training
step itself. :func:`random_affine` splits the batch into small groups and draws once per group:
every image still sees a fresh random transform each epoch, at a fraction of the cost.
Randomness comes from PyTorch's global generator, whose state ``fit`` saves in every checkpoint
so a resumed run draws the same transforms.

Augment raw pixels (uint8, or floats in [0, 1]), never normalized ones: the border a rotation or
shift exposes is filled with 0, which is the black background only in pixel space.
"""

from __future__ import annotations

from functools import cache

import torch
from torchvision.transforms import v2


@cache
def affine(strength: float = 1.0) -> v2.RandomAffine:
    """Small rotations, shifts and scalings: the ways two people's "7" differ, not a 7 turned
    into a 1. Strength 1 is up to 10 degrees, 10 % shift and 10 % scaling; the ranges scale
    with ``strength``."""
    return v2.RandomAffine(
        degrees=10 * strength,
        translate=(0.1 * strength, 0.1 * strength),
        scale=(1 - 0.1 * strength, 1 + 0.1 * strength),
    )


def random_affine(images: torch.Tensor, strength: float = 1.0, group_size: int = 8) -> torch.Tensor:
    """Apply :func:`affine` to a batch (N, C, H, W), one random draw per ``group_size`` images."""
    if group_size < 1:
        raise ValueError(f"group_size must be positive, got {group_size}")
    transform = affine(float(strength))
    return torch.cat([transform(group) for group in images.split(group_size)])


def _warp(
    images: torch.Tensor,
    shear: torch.Tensor,
    stretch: torch.Tensor,
    shrink: torch.Tensor,
    shift: torch.Tensor,
) -> torch.Tensor:
    """Slant, stretch and shrink each image of a batch (N, 1, H, W), uint8, ink bright on zero,
    by its own ``shear``, horizontal ``stretch``, vertical ``shrink`` and vertical ``shift``
    (each (N,); the shift in [-1, 1] units of the height). The batch is padded first (left by
    a fifth of the height, right by a quarter of the width), so that nothing slides out of the
    frame; returns floats in [0, 1], still padded."""
    from torch.nn import functional as F

    n, _, height, width = images.shape
    left = height // 5
    x = F.pad(images.float(), (left, width // 4 + 1)) / 255.0
    padded = x.shape[-1]
    theta = torch.zeros(n, 2, 3)
    # Output (x, y) in [-1, 1] reads input (x / stretch + shear * y * H / W, y / shrink + shift);
    # the stretch is about the left edge of the text, so the line's start stays in place.
    origin = -1 + 2 * left / padded
    theta[:, 0, 0] = 1 / stretch
    theta[:, 0, 1] = shear * height / padded
    theta[:, 0, 2] = origin - origin / stretch
    theta[:, 1, 1] = 1 / shrink
    theta[:, 1, 2] = -shift / shrink
    grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _to_pixels(x: torch.Tensor) -> torch.Tensor:
    """Floats in [0, 1] -> uint8, cropped to the widest image of the batch."""
    from .lines import crop_to_widest

    return crop_to_widest((x * 255).round().clamp(0, 255).to(torch.uint8))


def augment_lines(images: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
    """Handwriting augmentation for a batch of lines (N, 1, H, W), uint8, ink bright on zero,
    each line with its own draw (Part V): slant (shear of up to 0.4 * ``strength``, a writer's
    lean), horizontal stretch and squeeze (up to 20 %: narrow and wide hands), a slightly
    smaller height with a small vertical shift (never cutting ink off: lines fill their
    height), the pen one pixel thicker for a third of the lines (a thinner pen would erase the
    thin strokes of a 40-pixel line), and fainter ink for another third. The batch is first
    padded (left by a few pixels, right by a quarter) so that nothing slides out of the frame,
    and cropped again to its widest line after."""
    from torch.nn import functional as F

    n = len(images)
    draw = torch.rand(n, 5) * 2 - 1  # five numbers in [-1, 1] per line
    shrink = 1 - 0.1 * strength * (draw[:, 2] + 1) / 2  # 0.9 to 1 of the height
    shift = (1 - shrink) * draw[:, 3]  # within the room the shrinking frees
    x = _warp(images, 0.4 * strength * draw[:, 0], 1 + 0.2 * strength * draw[:, 1], shrink, shift)
    if strength > 0:
        pen = draw[:, 4].to(x.device).view(n, 1, 1, 1)
        thicker = F.max_pool2d(x, 3, stride=1, padding=1)
        x = torch.where(pen > 1 / 3, thicker, torch.where(pen < -1 / 3, 0.6 * x, x))
    return _to_pixels(x)


def augment_strips(images: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
    """Augmentation for a batch of number strips (N, 1, H, W), uint8, ink bright on zero, each
    strip with its own draw, towards numbers written in running text by other hands (chapter
    "Reading whole numbers"): more slant (shear of up to 0.3 * ``strength`` on top of the
    strips' own), horizontal stretch and squeeze (up to 15 %), smaller digits (down to 75 % of
    the height, moved up or down in the room that frees), and the pen: thinner for a third of
    the strips (MNIST's strokes, scaled to the strip, are thicker than a ballpoint's), thicker
    for a sixth, the ink fainter for another sixth. An eighth of the strips are underlined (a
    ruled line or the writer's own stroke under the number, which is not a digit). The result
    is cropped to its widest strip and padded to a multiple of 4 columns (the reader's column
    stride)."""
    from torch.nn import functional as F

    n, _, height, _ = images.shape
    draw = torch.rand(n, 6) * 2 - 1  # six numbers in [-1, 1] per strip
    shrink = 1 - 0.25 * strength * (draw[:, 2] + 1) / 2  # 0.75 to 1 of the height
    shift = (1 - shrink) * draw[:, 3]
    x = _warp(images, 0.3 * strength * draw[:, 0], 1 + 0.15 * strength * draw[:, 1], shrink, shift)
    if strength > 0:
        pen = draw[:, 4].to(x.device).view(n, 1, 1, 1)
        # A 2x2 minimum takes about a pixel off every stroke (3x3 would erase thin ones).
        thinner = -F.max_pool2d(F.pad(-x, (0, 1, 0, 1), value=-1.0), 2, stride=1)
        thicker = F.max_pool2d(x, 3, stride=1, padding=1)
        x = torch.where(pen < -1 / 3, thinner, torch.where(pen > 2 / 3, thicker, x))
        x = torch.where((pen > 1 / 3) & (pen <= 2 / 3), 0.6 * x, x)
        x = _underline(x, draw[:, 5] > 3 / 4)
    pixels = _to_pixels(x)
    return F.pad(pixels, (0, -pixels.shape[-1] % 4))


def _underline(x: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
    """Draw a line under the ink of the images ``which`` selects (N,) in a batch of floats
    (N, 1, H, W): one pixel thick, in the bottom eighth of the height, from a little before the
    first inked column to a little after the last."""
    inked = x.amax(dim=(1, 2)) > 0.3  # (N, W)
    columns = torch.arange(x.shape[-1], device=x.device)
    first = torch.where(inked, columns, x.shape[-1]).amin(1, keepdim=True) - 2
    last = torch.where(inked, columns, -1).amax(1, keepdim=True) + 2
    row = x.shape[2] - 1 - x.shape[2] // 16
    line = (columns >= first) & (columns <= last) & which.to(x.device).view(-1, 1) & (last > first)
    x = x.clone()
    x[:, 0, row] = torch.maximum(x[:, 0, row], 0.8 * line.float())
    return x
