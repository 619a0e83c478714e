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
