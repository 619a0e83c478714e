"""Classification metrics: confusion matrix and per-class precision, recall and F1."""

from __future__ import annotations

import torch


def confusion_matrix(
    targets: torch.Tensor, predictions: torch.Tensor, num_classes: int
) -> torch.Tensor:
    """``matrix[t, p]`` counts the examples of true class ``t`` predicted as ``p``."""
    targets, predictions = torch.as_tensor(targets), torch.as_tensor(predictions)
    if targets.shape != predictions.shape:
        raise ValueError(
            f"shapes differ: targets {tuple(targets.shape)}, predictions {tuple(predictions.shape)}"
        )
    flat = targets.long() * num_classes + predictions.long()
    return torch.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)


def per_class_metrics(matrix: torch.Tensor) -> dict[str, torch.Tensor]:
    """Precision, recall, F1 and support of each class from a confusion matrix.

    A class never predicted has precision 0 (not NaN), a class absent from the targets recall 0:
    the same convention as scikit-learn's ``zero_division=0``.
    """
    matrix = matrix.double()
    true_positives = matrix.diag()
    predicted = matrix.sum(0)
    support = matrix.sum(1)
    precision = torch.where(predicted > 0, true_positives / predicted.clamp(min=1), 0.0)
    recall = torch.where(support > 0, true_positives / support.clamp(min=1), 0.0)
    denominator = precision + recall
    f1 = torch.where(denominator > 0, 2 * precision * recall / denominator.clamp(min=1e-12), 0.0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support.long()}


def classification_report(
    targets: torch.Tensor, predictions: torch.Tensor, class_names: list[str]
) -> dict:
    """Accuracy, macro averages, per-class metrics and the confusion matrix as plain Python."""
    matrix = confusion_matrix(targets, predictions, len(class_names))
    per_class = per_class_metrics(matrix)
    total = int(matrix.sum())
    return {
        "accuracy": float(matrix.diag().sum()) / max(total, 1),
        "count": total,
        "macro": {k: float(per_class[k].mean()) for k in ("precision", "recall", "f1")},
        "per_class": {
            name: {k: (int(v[i]) if k == "support" else float(v[i])) for k, v in per_class.items()}
            for i, name in enumerate(class_names)
        },
        "confusion_matrix": matrix.tolist(),
    }


def format_report(report: dict) -> str:
    """A plain-text table of :func:`classification_report`'s result, for the terminal."""
    lines = [
        f"accuracy {report['accuracy']:.4f} on {report['count']} images",
        "",
        f"{'class':>6} {'precision':>9} {'recall':>7} {'f1':>7} {'support':>8}",
    ]
    for name, row in report["per_class"].items():
        scores = "".join(
            f"{row[k]:>{w}.4f}" for k, w in (("precision", 10), ("recall", 8), ("f1", 8))
        )
        lines.append(f"{name:>6}{scores} {row['support']:>8}")
    macro = report["macro"]
    lines.append(
        f"{'macro':>6} {macro['precision']:>9.4f} {macro['recall']:>7.4f} {macro['f1']:>7.4f}"
    )
    lines += ["", "confusion matrix (rows: true class, columns: predicted)"]
    names = list(report["per_class"])
    lines.append("      " + "".join(f"{n:>6}" for n in names))
    for name, row in zip(names, report["confusion_matrix"], strict=True):
        lines.append(f"{name:>6}" + "".join(f"{v:>6}" for v in row))
    return "\n".join(lines)


def reliability_bins(probabilities: torch.Tensor, targets: torch.Tensor, bins: int = 15) -> dict:
    """Confidence against accuracy in equal-width confidence bins, for a reliability diagram.

    ``probabilities``: (N, C) softmax outputs. Returns per bin the mean confidence (the top
    probability), the accuracy of the top prediction, and the count (empty bins: count 0).
    """
    confidence, predictions = probabilities.max(dim=1)
    correct = (predictions == targets).double()
    index = torch.clamp((confidence * bins).long(), max=bins - 1)  # confidence 1.0: last bin
    count = torch.bincount(index, minlength=bins).double()
    mean_confidence = torch.bincount(index, confidence.double(), minlength=bins) / count.clamp(
        min=1
    )
    mean_accuracy = torch.bincount(index, correct, minlength=bins) / count.clamp(min=1)
    return {"confidence": mean_confidence, "accuracy": mean_accuracy, "count": count.long()}


def expected_calibration_error(
    probabilities: torch.Tensor, targets: torch.Tensor, bins: int = 15
) -> float:
    """ECE: the mean gap between accuracy and confidence over the bins, weighted by bin size."""
    table = reliability_bins(probabilities, targets, bins)
    weights = table["count"].double() / len(targets)
    return float((weights * (table["accuracy"] - table["confidence"]).abs()).sum())


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor, steps: int = 100) -> float:
    """The temperature T > 0 minimizing the cross-entropy of ``softmax(logits / T)`` on held-out
    data (Guo et al., 2017). One scalar: it changes confidences, never the predicted class.
    Optimized over log T with L-BFGS, so T stays positive."""
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    logits, targets = logits.double(), targets.long()
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits / log_t.exp(), targets)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp())
