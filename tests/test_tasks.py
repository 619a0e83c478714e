import pytest
import torch
import torch.nn.functional as F

from hwr_utils.errors import ConfigError
from hwr_utils.tasks import Classification, CTCRecognition, LineRecognition, build_task


def logits_and_labels(n=50, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 10, generator=generator), torch.randint(0, 10, (n,), generator=generator)


def test_loss_is_pytorchs_cross_entropy_with_its_options():
    logits, labels = logits_and_labels()
    weights = [float(i + 1) for i in range(10)]
    task = Classification(label_smoothing=0.1, class_weights=weights)
    expected = F.cross_entropy(logits, labels, weight=torch.tensor(weights), label_smoothing=0.1)
    torch.testing.assert_close(task.loss(logits, labels), expected)
    assert not torch.allclose(expected, Classification().loss(logits, labels))


def test_sums_over_batches_give_the_whole_sets_metrics():
    logits, labels = logits_and_labels(103)
    task = Classification(label_smoothing=0.1)  # evaluation ignores the smoothing
    totals = {"loss": 0.0, "correct": 0, "count": 0}
    for part_logits, part_labels in zip(logits.split(10), labels.split(10), strict=True):
        for key, value in task.sums(part_logits, part_labels).items():
            totals[key] += value
    metrics = task.metrics(totals)
    assert metrics["loss"] == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-6)
    correct = (logits.argmax(1) == labels).sum().item()
    assert metrics["accuracy"] == correct / 103 and correct > 0
    assert torch.equal(task.decode(logits), logits.argmax(1))


def test_config_rebuilds_the_task():
    task = Classification(label_smoothing=0.2, class_weights=[1.0] * 10)
    assert build_task(task.name, **task.config()) == task
    with pytest.raises(ConfigError, match="unknown task"):
        build_task("translation")
    with pytest.raises(ConfigError, match="class_weights"):
        Classification(class_weights=[1.0, 2.0])


def test_texts_are_what_a_person_reads():
    names = ["zéro", "un", "deux"]
    logits = torch.tensor([[0.1, 2.0, 0.3], [5.0, 0.0, 0.0]])
    assert Classification(class_names=names).texts(logits) == ["un", "zéro"]
    # Columns: a, a, blank, a, b, b -> "aab" (repeats collapse unless a blank separates them).
    path = [0, 0, 2, 0, 1, 1]
    outputs = F.one_hot(torch.tensor([path]), 3).float()
    reader = CTCRecognition(class_names=["a", "b"])
    assert reader.texts(outputs) == ["aab"]
    assert reader.texts(torch.tensor([[1, 0, -1]])) == ["ba"]  # targets: padded with -1
    lines = LineRecognition(class_names=["a", "b"])
    assert lines.texts(outputs) == reader.texts(outputs)
