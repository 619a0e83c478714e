"""Perturbations of test images, for robustness curves (the article's FAQ on noisy and deformed
handwriting). Each takes a batch of MNIST images as floats in [0, 1], (N, 1, 28, 28), and a
strength; strength 0 returns the images unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF


def gaussian_noise(images: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    """Add Gaussian noise of standard deviation ``sigma`` (in units of full white), clipped."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(images.shape, generator=generator) * sigma
    return (images + noise).clamp(0, 1)


def blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of standard deviation ``sigma`` pixels (torchvision's, kernel 4 sigma + 1)."""
    if sigma == 0:
        return images
    kernel = 2 * int(2 * sigma) + 1
    return TF.gaussian_blur(images, [kernel, kernel], [sigma, sigma])


def rotate(images: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate every image by ``degrees`` counter-clockwise about its centre (torchvision)."""
    return TF.rotate(images, degrees, interpolation=TF.InterpolationMode.BILINEAR)


def thickness(images: torch.Tensor, steps: int) -> torch.Tensor:
    """Thicken strokes ``steps`` times (3x3 dilation: a max filter), or thin them for negative
    ``steps`` (3x3 erosion: a min filter)."""
    for _ in range(abs(steps)):
        if steps > 0:
            images = F.max_pool2d(images, 3, stride=1, padding=1)
        else:
            images = -F.max_pool2d(-images, 3, stride=1, padding=1)
    return images


PERTURBATIONS: dict[str, tuple[Callable[[torch.Tensor, float], torch.Tensor], list[float]]] = {
    "Gaussian noise (sigma)": (gaussian_noise, [0, 0.1, 0.2, 0.3, 0.4, 0.5]),
    "blur (sigma, pixels)": (blur, [0, 0.5, 1.0, 1.5, 2.0, 2.5]),
    "rotation (degrees)": (rotate, [0, 10, 20, 30, 45, 60]),
    "stroke thickness (3x3 steps)": (thickness, [-1, 0, 1, 2]),
}
