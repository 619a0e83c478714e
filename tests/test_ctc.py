"""CTC: the from-scratch forward algorithm against ``F.ctc_loss`` (values and gradients), and the
decoders against brute force over every alignment."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from hwr_utils import ctc
from hwr_utils.tasks import CTCRecognition, build_task
from hwr_utils.teaching import scratch


@pytest.mark.parametrize("target", [[1, 2, 2, 3], [], [3], [0, 0, 0], [1, 1, 1, 1, 1, 1]])
def test_scratch_ctc_forward_matches_pytorch(target):
    torch.manual_seed(len(target))
    steps, units = 12, 5
    logits = torch.randn(steps, units, dtype=torch.float64, requires_grad=True)
    ours = scratch.ctc_forward(logits.log_softmax(1), target, blank=units - 1)
    theirs = F.ctc_loss(
        logits.log_softmax(1).unsqueeze(1),
        torch.tensor([target], dtype=torch.long).view(1, -1),
        torch.tensor([steps]),
        torch.tensor([len(target)]),
        blank=units - 1,
        reduction="sum",
    )
    ours_grad, theirs_grad = (torch.autograd.grad(v, logits)[0] for v in (ours, theirs))
    assert_close(ours, theirs)
    assert_close(ours_grad, theirs_grad)


def test_scratch_ctc_forward_too_long_a_target_is_impossible():
    log_probs = torch.zeros(3, 4).log_softmax(1)
    assert scratch.ctc_forward(log_probs, [1, 1, 1], blank=3) == math.inf  # needs 5 columns


def collapse(path, blank):
    text, previous = [], blank
    for unit in path:
        if unit != previous and unit != blank:
            text.append(unit)
        previous = unit
    return tuple(text)


def exact_text_probabilities(probs: torch.Tensor) -> dict[tuple, float]:
    """Every alignment's probability, summed per text: what CTC defines, by brute force."""
    blank = probs.shape[1] - 1
    texts: dict[tuple, float] = {}
    for path in itertools.product(range(probs.shape[1]), repeat=probs.shape[0]):
        p = math.prod(probs[t, u].item() for t, u in enumerate(path))
        texts[collapse(path, blank)] = texts.get(collapse(path, blank), 0.0) + p
    return texts


@pytest.mark.parametrize("seed", range(5))
def test_beam_search_finds_the_most_probable_text(seed):
    torch.manual_seed(seed)
    logits = 2 * torch.randn(1, 5, 4, dtype=torch.float64)
    exact = exact_text_probabilities(logits[0].softmax(1))
    best = max(exact, key=exact.get)
    ((text, probability),) = ctc.beam_search(logits, beam=64)  # wide enough to keep every text
    assert tuple(text) == best
    assert probability == pytest.approx(exact[best], rel=1e-9)
    # ... and its probability is what the CTC loss of that text says.
    target = torch.tensor([list(best)], dtype=torch.long).view(1, -1)
    loss = ctc.ctc_loss(logits, target, reduction="sum") if best else None
    if loss is not None:
        assert math.exp(-loss.item()) == pytest.approx(exact[best], rel=1e-6)


@pytest.mark.parametrize("target", [[0, 1], [1, 1], [], [2, 0, 2], [0, 0, 0]])
def test_forced_alignment_is_the_most_probable_alignment_of_the_text(target):
    torch.manual_seed(len(target) + sum(target))
    columns, units = 6, 4
    logits = 2 * torch.randn(columns, units, dtype=torch.float64)
    log_probs = logits.log_softmax(1)
    blank = units - 1
    best = max(
        (sum(log_probs[t, u].item() for t, u in enumerate(path)), path)
        for path in itertools.product(range(units), repeat=columns)
        if collapse(path, blank) == tuple(target)
    )
    alignment = ctc.forced_alignment(logits, target)
    units_of = [target[i] if i >= 0 else blank for i in alignment]
    assert collapse(units_of, blank) == tuple(target)
    # Positions, not symbols: a symbol's columns say where that occurrence of it is.
    assert [i for k, i in enumerate(alignment) if i >= 0 and (k == 0 or alignment[k - 1] != i)] == (
        list(range(len(target)))
    )
    score = sum(log_probs[t, u].item() for t, u in enumerate(units_of))
    assert score == pytest.approx(best[0], abs=1e-9)


def test_forced_alignment_refuses_a_text_too_long_for_the_columns():
    with pytest.raises(ValueError, match="no alignment"):
        ctc.forced_alignment(torch.zeros(4, 3), [1, 1, 1])  # needs 5 columns: 1 - 1 - 1


def test_greedy_decode_collapses_repeats_then_drops_blanks():
    blank = 10
    paths = [[3, 3, blank, 3], [blank, 3, blank, 3], [3, 3, 3, 3], [blank] * 4, [1, 2, 2, blank]]
    logits = F.one_hot(torch.tensor(paths), 11).float()
    assert ctc.greedy_decode(logits) == [[3, 3], [3, 3], [3], [], [1, 2]]
    assert ctc.best_path_confidence(10 * logits).min() > 0.99


def test_edit_distance():
    assert ctc.edit_distance("kitten", "sitting") == 3
    assert ctc.edit_distance([], [1, 2]) == 2 and ctc.edit_distance([1, 2], [1, 2]) == 0
    assert ctc.edit_distance([1, 2, 3], [1, 3]) == 1 and ctc.edit_distance("ab", "ba") == 2


def test_sequence_metrics_add_up_over_batches():
    targets = torch.tensor([[1, 2, -1], [3, 3, 3], [4, -1, -1]])
    guesses = [[1, 2], [3, 3], [5]]
    whole = ctc.sequence_sums(guesses, targets)
    halves = ctc.sequence_sums(guesses[:1], targets[:1])
    for key, value in ctc.sequence_sums(guesses[1:], targets[1:]).items():
        halves[key] = halves.get(key, 0) + value
    assert whole == halves
    metrics = ctc.sequence_metrics(whole)
    assert metrics["accuracy"] == pytest.approx(1 / 3)
    assert metrics["cer"] == pytest.approx(2 / 6)  # one deletion, one substitution, 6 digits
    assert metrics["accuracy_2"] == 1 and metrics["accuracy_3"] == 0 and metrics["accuracy_1"] == 0


def test_ctc_task_round_trips_through_its_config():
    task = build_task("ctc", **CTCRecognition().config())
    logits = F.one_hot(torch.tensor([[1, 10, 1, 2], [10, 10, 10, 10]]), 11).float() * 20
    targets = torch.tensor([[1, 1, 2], [-1, -1, -1]])
    assert task.decode(logits).tolist() == [[1, 1, 2, -1], [-1, -1, -1, -1]]
    metrics = task.metrics(task.sums(logits, targets))
    assert metrics["accuracy"] == 1 and metrics["cer"] == 0 and metrics["loss"] < 1e-3
