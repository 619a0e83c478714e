"""Predicting digits in image files with a trained checkpoint."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch import nn

from .data import to_float
from .preprocess import ImageError, load_image, preprocess_photo


def photo_to_tensor(image28: np.ndarray | torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """A 28x28 uint8 MNIST-style image -> normalized float tensor (1, 1, 28, 28)."""
    return to_float(torch.as_tensor(image28).unsqueeze(0), mean, std)


@torch.no_grad()
def predict_files(
    model: nn.Module,
    paths: list[str | os.PathLike],
    normalization: dict[str, float],
    class_names: list[str],
    top: int = 3,
) -> list[dict[str, Any]]:
    """Predict each file independently; a bad file yields ``{"path", "error"}`` and the rest go on.

    Each good file yields ``{"path", "label", "probability", "top3"}``, where ``top3`` lists the
    ``top`` most likely classes as ``{"label", "probability"}`` pairs. Results keep input order.
    """
    model.eval()
    results: list[dict[str, Any]] = []
    for path in paths:
        try:
            digit = preprocess_photo(load_image(path))
        except ImageError as error:
            results.append({"path": str(path), "error": str(error)})
            continue
        except Exception as error:  # an odd file must not stop the others: report it, go on
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            results.append({"path": str(path), "error": f"could not be processed: {first_line}"})
            continue
        x = photo_to_tensor(digit, normalization["mean"], normalization["std"])
        probabilities = torch.softmax(model(x).float(), dim=1)[0]
        values, indices = probabilities.topk(min(top, len(class_names)))
        ranked = [
            {"label": class_names[i], "probability": round(float(v), 6)}
            for v, i in zip(values, indices, strict=True)
        ]
        results.append({"path": str(path), **ranked[0], "top3": ranked})
    return results
