"""Connectionist temporal classification (Graves et al., 2006) around PyTorch's ``F.ctc_loss``:
the loss on a model's per-column outputs, decoding (greedy, and a prefix beam search), and the
edit distance behind the character error rate. Introduced in the chapter "Reading whole numbers".

A sequence model emits, for each of T columns of a strip, scores over the symbols plus one
*blank*. An alignment is one symbol or blank per column; collapsing repeats and then removing
blanks turns it into a text ("33-3" -> "33", "-3-3" -> "33", "333" -> "3"). CTC's probability of
a text is the sum over all its alignments; the loss is minus its logarithm. Here the blank is
the last output unit, so digit d is unit d.
"""

from __future__ import annotations

from collections import defaultdict

import torch
import torch.nn.functional as F


def ctc_loss(outputs: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """CTC loss of ``outputs`` (N, T, C) logits, blank the last unit, against ``targets``
    (N, L) symbol indices padded with -1. ``"mean"`` divides each strip's loss by its length
    and averages (PyTorch's convention); ``"sum"`` adds the strips' losses. Impossible
    alignments (a text longer than T allows) count as zero rather than infinity."""
    log_probs = outputs.float().log_softmax(2).transpose(0, 1)  # (T, N, C)
    lengths = (targets >= 0).sum(1)
    input_lengths = torch.full((outputs.shape[0],), outputs.shape[1], dtype=torch.long)
    return F.ctc_loss(
        log_probs,
        targets[targets >= 0],
        input_lengths,
        lengths.cpu(),
        blank=outputs.shape[2] - 1,
        reduction=reduction,
        zero_infinity=True,
    )


def greedy_decode(outputs: torch.Tensor) -> list[list[int]]:
    """Best path: the most likely unit in each column, repeats collapsed, blanks removed.
    ``outputs`` (N, T, C) logits or probabilities; returns one list of symbols per strip."""
    blank = outputs.shape[2] - 1
    texts = []
    for path in outputs.argmax(2).tolist():
        text, previous = [], blank
        for unit in path:
            if unit != previous and unit != blank:
                text.append(unit)
            previous = unit
        texts.append(text)
    return texts


def best_path_confidence(outputs: torch.Tensor) -> torch.Tensor:
    """The probability of the greedy (best) path, one per strip: the product over columns of
    the winning unit's probability. A lower bound on the decoded text's probability."""
    return outputs.float().softmax(2).amax(2).log().sum(1).exp()


def beam_search(outputs: torch.Tensor, beam: int = 8) -> list[tuple[list[int], float]]:
    """Prefix beam search: the ``beam`` most probable *texts* kept after each column, each
    with its probability summed over the alignments seen, blank-ending and not apart (so "3-3"
    and "33" stay different texts). Returns the best text and its probability per strip.

    Greedy decoding takes the best alignment; this sums alignments, so a text spread over many
    nearly-as-good alignments can win. ``outputs`` (N, T, C) logits, blank the last unit.
    """
    blank = outputs.shape[2] - 1
    results = []
    for probs in outputs.double().softmax(2).tolist():
        # prefix -> (probability ending in blank, probability ending in its last symbol)
        beams: dict[tuple[int, ...], tuple[float, float]] = {(): (1.0, 0.0)}
        for column in probs:
            grown: dict[tuple[int, ...], list[float]] = defaultdict(lambda: [0.0, 0.0])
            for prefix, (p_blank, p_symbol) in beams.items():
                total = p_blank + p_symbol
                grown[prefix][0] += total * column[blank]
                for unit, p in enumerate(column[:blank]):
                    if prefix and unit == prefix[-1]:
                        grown[prefix][1] += p_symbol * p  # a repeat collapses
                        grown[(*prefix, unit)][1] += p_blank * p  # "3-3": a second 3
                    else:
                        grown[(*prefix, unit)][1] += total * p
            ranked = sorted(grown.items(), key=lambda item: -(item[1][0] + item[1][1]))
            beams = {prefix: (pb, ps) for prefix, (pb, ps) in ranked[:beam]}
        best, (p_blank, p_symbol) = max(beams.items(), key=lambda item: sum(item[1]))
        results.append((list(best), p_blank + p_symbol))
    return results


def edit_distance(a: list[int] | str, b: list[int] | str) -> int:
    """Levenshtein distance: the fewest insertions, deletions and substitutions from a to b."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (x != y))
    return row[-1]


def text_of(targets: torch.Tensor) -> list[list[int]]:
    """Rows of -1-padded symbol indices as lists of symbols."""
    return [[int(s) for s in row if s >= 0] for row in targets.tolist()]


def sequence_sums(
    decoded: list[list[int]], targets: torch.Tensor, by_length: bool = True
) -> dict[str, float]:
    """Totals that add up over batches: strips, exact matches, edits, reference symbols, and
    (``by_length``) strips and exact matches per reference length."""
    sums: dict[str, float] = defaultdict(float)
    for guess, truth in zip(decoded, text_of(targets), strict=True):
        exact = guess == truth
        sums["count"] += 1
        sums["exact"] += exact
        sums["edits"] += edit_distance(guess, truth)
        sums["symbols"] += len(truth)
        if by_length:
            sums[f"count_{len(truth)}"] += 1
            sums[f"exact_{len(truth)}"] += exact
    return dict(sums)


def sequence_metrics(sums: dict[str, float]) -> dict[str, float]:
    """Sequence accuracy (exact match), character error rate (edits / reference symbols), and
    accuracy per length (``accuracy_L``) from summed :func:`sequence_sums`."""
    metrics = {
        "accuracy": sums.get("exact", 0) / max(sums.get("count", 0), 1),
        "cer": sums.get("edits", 0) / max(sums.get("symbols", 0), 1),
    }
    for key, count in sums.items():
        if key.startswith("count_") and count:
            length = key.removeprefix("count_")
            metrics[f"accuracy_{length}"] = sums.get(f"exact_{length}", 0) / count
    return metrics


def forced_alignment(outputs: torch.Tensor, target: list[int]) -> list[int]:
    """The most probable alignment of one known text: for each of the T columns of ``outputs``
    (T, C) logits (blank the last unit), the position in ``target`` of the symbol it emits, or
    -1 for a blank. It collapses to ``target``, and no other such alignment is more probable
    (the Viterbi path through CTC's states: blank, symbol, blank, ..., symbol, blank).

    Where a symbol sits in the image: the columns emitting it. Part V uses it to find the numbers
    inside written lines. Raises ``ValueError`` when no alignment exists (T is too short).
    """
    log_probs = outputs.double().log_softmax(-1)
    blank = outputs.shape[-1] - 1
    states = [blank]
    for symbol in target:
        states += [symbol, blank]
    units = torch.tensor(states)
    count, columns = len(states), len(log_probs)
    # A symbol state may be entered from two states back when the symbol in between is a
    # blank and the symbols differ (two equal symbols need a blank between them).
    skip = torch.zeros(count, dtype=torch.bool)
    skip[2:] = (units[2:] != blank) & (units[2:] != units[:-2])
    score = torch.full((count,), -torch.inf, dtype=torch.float64)
    score[:2] = log_probs[0, units[:2]]
    back = torch.zeros((columns, count), dtype=torch.long)
    positions = torch.arange(count)
    for t in range(1, columns):
        shifted = torch.cat([score.new_full((2,), -torch.inf), score])  # score two states back
        jump = torch.where(skip, shifted[:count], -torch.inf)
        best = torch.stack([score, shifted[1 : count + 1], jump])  # stay, one state on, two
        choice = best.argmax(0)
        score = best.max(0).values + log_probs[t, units]
        back[t] = positions - choice
    end = count - 1 if count == 1 or score[-1] >= score[-2] else count - 2
    if torch.isinf(score[end]):
        raise ValueError(f"no alignment of {len(target)} symbols in {columns} columns")
    path = [end]
    for t in range(columns - 1, 0, -1):
        path.append(int(back[t, path[-1]]))
    path.reverse()
    return [(state - 1) // 2 if state % 2 else -1 for state in path]
