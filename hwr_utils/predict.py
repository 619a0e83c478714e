"""Inference: logits for a batch of images, and digits predicted from image files.

Works with anything :func:`hwr_utils.checkpoints.load_model` returns (a checkpoint's model, an
ONNX or ``.pt2`` export): every one takes pixels in [0, 1] and normalizes inside. Nothing here
imports the training engine. Introduced in the preprocessing chapter.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .ctc import best_path_confidence
from .data import to_float
from .digit_strings import segment_strip
from .errors import first_line
from .lines import READ_MARGIN, ink_widths
from .preprocess import ImageError, load_image, preprocess_number_photo, preprocess_photo
from .tasks import Classification, CTCRecognition


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    images: torch.Tensor,
    device: torch.device | str = "cpu",
    batch_size: int = 1000,
) -> torch.Tensor:
    """Outputs of ``model`` (eval mode) for ``images`` (pixels in [0, 1]), in batches of
    ``batch_size`` on ``device``, returned as float32 on the CPU."""
    if len(images) == 0:
        raise ValueError("predict_logits needs at least one image")
    model.eval()
    return torch.cat(
        [
            model(images[i : i + batch_size].to(device)).float().cpu()
            for i in range(0, len(images), batch_size)
        ]
    )


def photo_to_tensor(image28: np.ndarray | torch.Tensor) -> torch.Tensor:
    """A 28x28 uint8 MNIST-style image -> float tensor (1, 1, 28, 28) of pixels in [0, 1]."""
    return to_float(torch.as_tensor(image28).unsqueeze(0))


@torch.no_grad()
def predict_files(
    model: nn.Module,
    paths: list[str | os.PathLike],
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
        digit = _preprocessed(path, preprocess_photo, results)
        if digit is None:
            continue
        probabilities = torch.softmax(model(photo_to_tensor(digit)).float(), dim=1)[0]
        values, indices = probabilities.topk(min(top, len(class_names)))
        ranked = [
            {"label": class_names[i], "probability": round(float(v), 6)}
            for v, i in zip(values, indices, strict=True)
        ]
        results.append({"path": str(path), **ranked[0], "top3": ranked})
    return results


def _preprocessed(path, preprocess, results: list[dict[str, Any]]) -> np.ndarray | None:
    """``preprocess(load_image(path))``, or None after appending ``{"path", "error"}``."""
    try:
        return preprocess(load_image(path))
    except ImageError as error:
        results.append({"path": str(path), "error": str(error)})
    except Exception as error:  # an odd file must not stop the others: report it, go on
        results.append({"path": str(path), "error": f"could not be processed: {first_line(error)}"})
    return None


@torch.no_grad()
def read_files(
    model: nn.Module,
    paths: list[str | os.PathLike],
    class_names: list[str],
    preprocess: Callable[[np.ndarray], Any] = preprocess_number_photo,
    decoder: Callable[[torch.Tensor], list[str]] | None = None,
    margin: int | None = None,
) -> list[dict[str, Any]]:
    """Read the text in each file with a sequence model: a number (chapter "Reading whole
    numbers", ``preprocess_number_photo``; the image read as it is) or a line of handwriting
    (Part V, with the line reader's preprocessing, its language-model ``decoder`` and a
    ``margin``, :data:`~hwr_utils.lines.READ_MARGIN`: the line is read as :func:`predict_lines`
    reads the lines of ``hwr evaluate``, up to its last ink and ``margin`` columns of background
    after it); a bad file yields ``{"path", "error"}`` and the rest go on.

    Each good file yields ``{"path", "text", "confidence"}``: the reading (greedy CTC, or
    ``decoder``'s) and the probability of the network's best path, a lower bound on how sure
    it is. Results keep input order.
    """
    model.eval()
    if decoder is None:  # greedy
        decoder = CTCRecognition(class_names=class_names).texts
    results: list[dict[str, Any]] = []
    for path in paths:
        image = _preprocessed(path, preprocess, results)
        if image is None:
            continue
        pixels = torch.as_tensor(np.asarray(image)).unsqueeze(0)
        if margin is None:
            outputs = model(to_float(pixels)).float()
        else:
            outputs = predict_lines(model, pixels, margin=margin)[0].unsqueeze(0)
        text = decoder(outputs)[0]
        confidence = round(float(best_path_confidence(outputs)[0]), 6)
        results.append({"path": str(path), "text": text, "confidence": confidence})
    return results


@torch.no_grad()
def predict_lines(
    model: nn.Module,
    images: torch.Tensor,
    widths: torch.Tensor | None = None,
    device: torch.device | str = "cpu",
    margin: int = READ_MARGIN,
) -> list[torch.Tensor]:
    """Per-column outputs of a line reader for padded lines (uint8 (N, H, W_max), or pixels in
    [0, 1] (N, 1, H, W_max)): one (T_i, C) float32 tensor per line, in input order.

    Each line is read alone, over its ``widths`` (default: up to its last ink,
    :func:`~hwr_utils.lines.ink_widths`) and ``margin`` columns of background after them
    (:data:`~hwr_utils.lines.READ_MARGIN`), as ``hwr read`` reads a photo of one line:
    training's validation and ``hwr evaluate`` give the figures a user gets. In a batch the
    shorter lines would be padded to the widest, and the recurrent layers, which read the
    padding too, would read them otherwise."""
    model.eval()
    # At least one column of the reader's (4 pixels): a blank line read with no margin.
    spans = ((ink_widths(images) if widths is None else widths) + margin).clamp(min=4)
    outputs = []
    for line, span in zip(images, spans.tolist(), strict=True):
        x = line[..., :span]
        x = F.pad(x, (0, span - x.shape[-1])).unsqueeze(0)  # background after the array's end
        x = to_float(x) if x.dtype == torch.uint8 else x
        outputs.append(model(x.to(device)).float().cpu()[0])
    return outputs


@torch.no_grad()
def read_by_segmentation(
    model: nn.Module, strips: torch.Tensor, class_names: list[str]
) -> list[str]:
    """The segmentation baseline: cut each uint8 strip (N, H, W) into digits at its pieces of
    ink (:func:`~hwr_utils.digit_strings.segment_strip`) and classify each with a one-digit
    ``model``. Chapter "Reading whole numbers", against the CTC reader."""
    model.eval()
    task = Classification(class_names=class_names)
    texts = []
    for strip in strips.numpy():
        digits = segment_strip(strip)
        if not digits:
            texts.append("")
            continue
        logits = model(to_float(torch.from_numpy(np.stack(digits)))).float()
        texts.append("".join(task.texts(logits)))
    return texts
