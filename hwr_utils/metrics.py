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
