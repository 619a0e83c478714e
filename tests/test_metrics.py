import pytest
import torch

from hwr_utils.metrics import (
    classification_report,
    confusion_matrix,
    expected_calibration_error,
    fit_temperature,
    format_report,
    per_class_metrics,
    reliability_bins,
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


def test_reliability_bins_and_ece_by_hand():
    # Two confident right answers (0.9), two half-sure answers (0.6), one right one wrong.
    probabilities = torch.tensor([[0.9, 0.1], [0.1, 0.9], [0.6, 0.4], [0.6, 0.4]])
    targets = torch.tensor([0, 1, 0, 1])
    table = reliability_bins(probabilities, targets, bins=10)
    assert table["count"].tolist() == [0, 0, 0, 0, 0, 0, 2, 0, 0, 2]
    assert table["accuracy"][6] == pytest.approx(0.5) and table["accuracy"][9] == pytest.approx(1.0)
    # |0.5 - 0.6| * 2/4 + |1.0 - 0.9| * 2/4 = 0.1
    assert expected_calibration_error(probabilities, targets, bins=10) == pytest.approx(0.1)


def test_temperature_recovers_a_known_scale():
    torch.manual_seed(0)
    true_logits = torch.randn(4000, 10) * 2
    targets = torch.distributions.Categorical(logits=true_logits).sample()
    # an overconfident model: its logits are the calibrated ones times 3
    temperature = fit_temperature(true_logits * 3, targets)
    assert temperature == pytest.approx(3.0, rel=0.1)
    scaled = torch.softmax(true_logits * 3 / temperature, dim=1)
    assert expected_calibration_error(scaled, targets) < expected_calibration_error(
        torch.softmax(true_logits * 3, dim=1), targets
    )
