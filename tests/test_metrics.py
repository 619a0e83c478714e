import pytest
import torch

from hwr_utils.metrics import (
    classification_report,
    confusion_matrix,
    format_report,
    per_class_metrics,
)


def test_confusion_matrix_by_hand():
    targets = torch.tensor([0, 0, 1, 1, 1, 2])
    predictions = torch.tensor([0, 1, 1, 1, 0, 1])
    expected = torch.tensor([[1, 1, 0], [1, 2, 0], [0, 1, 0]])
    assert torch.equal(confusion_matrix(targets, predictions, 3), expected)


def test_per_class_by_hand():
    matrix = torch.tensor([[1, 1, 0], [1, 2, 0], [0, 1, 0]])
    metrics = per_class_metrics(matrix)
    # class 0: tp 1, predicted 2, actual 2; class 1: tp 2, predicted 4, actual 3;
    # class 2: never predicted
    torch.testing.assert_close(
        metrics["precision"], torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64)
    )
    torch.testing.assert_close(
        metrics["recall"], torch.tensor([0.5, 2 / 3, 0.0], dtype=torch.float64)
    )
    f1_class1 = 2 * 0.5 * (2 / 3) / (0.5 + 2 / 3)
    torch.testing.assert_close(
        metrics["f1"], torch.tensor([0.5, f1_class1, 0.0], dtype=torch.float64)
    )
    assert metrics["support"].tolist() == [2, 3, 1]


def test_report_and_text():
    report = classification_report(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 0]), ["a", "b"])
    assert report["accuracy"] == pytest.approx(2 / 3)
    assert report["per_class"]["b"]["recall"] == pytest.approx(0.5)
    assert report["confusion_matrix"] == [[1, 0], [1, 1]]
    text = format_report(report)
    assert "accuracy 0.6667 on 3 images" in text and "macro" in text


def test_shape_mismatch():
    with pytest.raises(ValueError, match="shapes differ"):
        confusion_matrix(torch.tensor([0, 1]), torch.tensor([0]), 2)
