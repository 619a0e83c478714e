"""Language-model decoding for a CTC line reader: a character n-gram model (:class:`CharNgram`),
a CTC prefix beam search that consults it (:func:`beam_search_lm`), character and word error
rates, and a grid search of the two fusion weights on validation lines (:func:`tune_fusion`).

The reader sees a few columns of ink at a time; it cannot know that French writes "le chat" far
more often than "lo chat". A language model estimated on the training transcripts knows, and
*shallow fusion* lets it vote: each time the beam search extends a text by a character c, the
text's score gains ``alpha * log P_lm(c | text) + beta``. ``alpha`` weighs the language model
against the network; ``beta`` pays per character, because every language-model factor is below
one and, unpaid, the search would prefer dropping characters. Blank is the last output unit,
as in :mod:`hwr_utils.ctc`, and symbol u is ``alphabet[u]``, one character.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .ctc import edit_distance

END = "\n"  # ends every line, and pads its start: a line begins after the previous one's end
_CACHE_SIZE = 50_000  # distributions kept (per model, per search); cleared when full: memory


class CharNgram:
    """A character n-gram model with interpolated Kneser-Ney smoothing (Chen & Goodman, 1999).

    Kneser-Ney is the n-gram smoothing that works best in practice, and it fits in two ideas:
    every count seen after a context gives up a discount ``D`` (below one), and what is given up
    goes to the next shorter context's distribution, down to a uniform one, so that every
    symbol of the vocabulary keeps some probability after any context and the probabilities
    sum to one. The shorter contexts count *in how many different contexts* a gram ends rather
    than how often, since they only matter where the longer context was not conclusive.

    ``symbols`` is the vocabulary: the training texts' characters (and ``alphabet``'s, if given
    to :meth:`fit`), then ``END``. A character outside it gets the fixed probability
    ``floor`` after any context, so decoding never meets log(0); giving the reader's alphabet
    to :meth:`fit` keeps its rare characters inside the normalized vocabulary instead.
    """

    def __init__(
        self,
        order: int,
        symbols: list[str],
        discounts: list[float],
        counts: list[dict[str, int]],
        floor: float = 1e-6,
    ):
        self.order = order
        self.symbols = symbols
        self.discounts = discounts  # one per context length 0 .. order-1
        self.counts = counts  # per context length k: gram (k+1 characters) -> count
        self.floor = floor
        self.index = {symbol: i for i, symbol in enumerate(symbols)}
        # Per context length: context -> (indices of the symbols seen after it, their counts).
        self._followers: list[dict[str, tuple[list[int], list[int]]]] = []
        for grams in counts:
            table: dict[str, tuple[list[int], list[int]]] = {}
            for gram, count in grams.items():
                indices, values = table.setdefault(gram[:-1], ([], []))
                indices.append(self.index[gram[-1]])
                values.append(count)
            self._followers.append(table)
        self._cache: dict[str, np.ndarray] = {}

    @classmethod
    def fit(
        cls,
        texts: Sequence[str],
        order: int = 6,
        discount: float | None = None,
        alphabet: Sequence[str] = (),
        floor: float = 1e-6,
    ) -> CharNgram:
        """Counts ``order``-grams of characters (the last one predicted from the ``order - 1``
        before it) in ``texts``, one line each. ``discount`` None estimates one per context
        length, Ney's ``n1 / (n1 + 2 n2)`` from the numbers of grams seen once and twice."""
        if order < 1 or any(END in text for text in texts):
            raise ValueError(f"order must be >= 1 and texts single lines without {END!r}")
        symbols = sorted((set("".join(texts)) | set(alphabet)) - {END}) + [END]
        longest: Counter[str] = Counter()
        for text in texts:
            padded = END * (order - 1) + text + END
            for i in range(order - 1, len(padded)):
                longest[padded[i - order + 1 : i + 1]] += 1
        counts = [dict(longest)]
        for _ in range(order - 1):  # shorter grams: how many different characters precede them
            counts.insert(0, dict(Counter(gram[1:] for gram in counts[0])))
        discounts = [discount if discount is not None else _ney_discount(c) for c in counts]
        return cls(order, symbols, discounts, counts, floor)

    def context(self, text: str) -> str:
        """The part of ``text`` the model looks at: its last ``order - 1`` characters, padded
        with ``END`` at the start of a line."""
        padded = END * (self.order - 1) + text
        return padded[len(padded) - self.order + 1 :]

    def distribution(self, text: str) -> np.ndarray:
        """P(symbol | text) for every symbol of ``symbols`` (read-only; it is cached)."""
        return self._distribution(self.context(text))

    def _distribution(self, context: str) -> np.ndarray:
        probs = self._cache.get(context)
        if probs is not None:
            return probs
        if context:
            shorter = self._distribution(context[1:])
        else:
            shorter = np.full(len(self.symbols), 1 / len(self.symbols))
        seen = self._followers[len(context)].get(context)
        if seen is None:  # never seen: the shorter context speaks alone
            probs = shorter
        else:
            indices, counts = np.array(seen[0]), np.array(seen[1], dtype=np.float64)
            total, discount = counts.sum(), self.discounts[len(context)]
            # What the discounts took from the seen symbols is shared as the shorter context says.
            probs = shorter * (discount * len(indices) / total)
            probs[indices] += (counts - discount) / total
        probs.setflags(write=False)
        if len(self._cache) >= _CACHE_SIZE:
            self._cache.clear()
        self._cache[context] = probs
        return probs

    def log_prob(self, next_char: str, context: str) -> float:
        """log P(next_char | context), natural log; ``context`` is the line so far and
        ``next_char`` a character or ``END``."""
        index = self.index.get(next_char)
        if index is None:
            return math.log(self.floor)
        return math.log(self.distribution(context)[index])

    def score(self, text: str) -> float:
        """log P(text as a whole line): each character given the ones before, then the end."""
        return sum(self.log_prob(c, text[:i]) for i, c in enumerate(text)) + self.log_prob(
            END, text
        )

    def perplexity(self, texts: Sequence[str]) -> float:
        """exp of minus the mean log probability per predicted symbol (ends included): the
        number of equally likely choices the model is as unsure as, at each character."""
        total = sum(self.score(text) for text in texts)
        return math.exp(-total / sum(len(text) + 1 for text in texts))

    def to_state(self) -> dict:
        """Plain lists, strings and numbers, for a checkpoint read with ``weights_only=True``."""
        return {
            "order": self.order,
            "symbols": list(self.symbols),
            "discounts": [float(d) for d in self.discounts],
            "floor": float(self.floor),
            "grams": [list(grams) for grams in self.counts],
            "counts": [list(grams.values()) for grams in self.counts],
        }

    @classmethod
    def from_state(cls, state: dict) -> CharNgram:
        counts = [
            dict(zip(grams, values, strict=True))
            for grams, values in zip(state["grams"], state["counts"], strict=True)
        ]
        return cls(state["order"], state["symbols"], state["discounts"], counts, state["floor"])


def _ney_discount(counts: dict[str, int]) -> float:
    """Ney's estimate ``n1 / (n1 + 2 n2)``, kept within [0.1, 0.9] so that every context
    leaves some probability to the shorter ones and keeps some for what it saw."""
    n1 = sum(count == 1 for count in counts.values())
    n2 = sum(count == 2 for count in counts.values())
    return min(max(n1 / (n1 + 2 * n2), 0.1), 0.9) if n1 + n2 else 0.5


def beam_search_lm(
    log_probs: torch.Tensor,
    alphabet: Sequence[str],
    lm: CharNgram | None = None,
    beam: int = 16,
    alpha: float = 0.5,
    beta: float = 1.0,
    prune: float = -10.0,
) -> list[tuple[str, float]]:
    """CTC prefix beam search with shallow fusion, in log space. ``log_probs`` (T, C) or
    (N, T, C) logits or log-probabilities, blank the last unit and unit u ``alphabet[u]``.

    Like :func:`hwr_utils.ctc.beam_search`, it keeps the ``beam`` best texts after each column,
    each with its alignments' probability summed, blank-ending and not apart; a text's score is
    that log probability plus, per character c, ``alpha * log P_lm(c | text before) + beta``,
    and at the end ``alpha * log P_lm(END | text)``. A column extends texts only by characters
    whose log probability there exceeds ``prune``: a trained reader gives most characters far
    less in most columns, and skipping them is most of the speed (``-math.inf`` prunes nothing).
    Returns the best text and its score per line.
    """
    scores = log_probs.detach().double().cpu().log_softmax(-1)
    lines = scores.unsqueeze(0) if scores.dim() == 2 else scores
    if lines.shape[-1] != len(alphabet) + 1 or any(len(symbol) != 1 for symbol in alphabet):
        raise ValueError(f"{lines.shape[-1]} units for {len(alphabet)} characters and a blank")
    lm_scores = _LanguageScores(lm, alphabet)
    return [
        _decode_line(columns, alphabet, lm_scores, beam, alpha, beta, prune)
        for columns in lines.numpy()
    ]


class _LanguageScores:
    """log P_lm(symbol | text) for every symbol of the alphabet, and log P_lm(END | text),
    computed once per language-model context (texts share their last characters often)."""

    def __init__(self, lm: CharNgram | None, alphabet: Sequence[str]):
        self.lm = lm
        self.none = (np.zeros(len(alphabet)), 0.0)
        if lm is not None:
            self.where = np.array([lm.index.get(c, -1) for c in alphabet])
        self.known: dict[str, tuple[np.ndarray, float]] = {}

    def __call__(self, text: str) -> tuple[np.ndarray, float]:
        if self.lm is None:
            return self.none
        context = self.lm.context(text)
        found = self.known.get(context)
        if found is None:
            probs = self.lm.distribution(context)
            symbols = np.where(self.where >= 0, probs[self.where], self.lm.floor)
            if len(self.known) >= _CACHE_SIZE:
                self.known.clear()
            found = self.known[context] = (np.log(symbols), math.log(probs[-1]))
        return found


def _decode_line(
    columns: np.ndarray,
    alphabet: Sequence[str],
    lm_scores: _LanguageScores,
    beam: int,
    alpha: float,
    beta: float,
    prune: float,
) -> tuple[str, float]:
    blank = columns.shape[1] - 1
    unit_of = {symbol: u for u, symbol in enumerate(alphabet)}
    # The beam: texts, and the scores of their alignments ending in a blank or in a symbol.
    texts = [""]
    ends_blank, ends_symbol = np.array([0.0]), np.array([-np.inf])
    for column in columns:
        keep = np.flatnonzero(column[:blank] > prune)  # the characters this column may add
        slot = np.full(blank + 1, -1)  # unit -> its place among ``keep`` (-1: not kept)
        slot[keep] = np.arange(len(keep))
        last = np.array([unit_of[text[-1]] if text else blank for text in texts])
        total = np.logaddexp(ends_blank, ends_symbol)
        # Staying the same text: a blank, or the last symbol again (repeats collapse).
        stay_blank = total + column[blank]
        stay_symbol = ends_symbol + column[last]
        # Growing by a kept character; repeating the last one needs a blank between ("l-l").
        start = np.repeat(total[:, None], len(keep), axis=1)
        repeats = np.flatnonzero(slot[last] >= 0)
        start[repeats, slot[last[repeats]]] = ends_blank[repeats]
        fusion = np.stack([lm_scores(text)[0][keep] for text in texts])
        grow = start + column[keep] + alpha * fusion + beta
        # A grown text that the beam holds already ("" + "l" when "l" is there) joins it.
        place = {text: i for i, text in enumerate(texts)}
        for i, text in enumerate(texts):
            parent = place.get(text[:-1]) if text else None
            if parent is not None and slot[last[i]] >= 0:
                stay_symbol[i] = np.logaddexp(stay_symbol[i], grow[parent, slot[last[i]]])
                grow[parent, slot[last[i]]] = -np.inf
        candidates = np.concatenate([np.logaddexp(stay_blank, stay_symbol), grow.ravel()])
        best = np.arange(len(candidates))
        if len(candidates) > beam:  # the ``beam`` best, in no particular order: no full sort
            best = np.argpartition(-candidates, beam - 1)[:beam]
        best = best[candidates[best] > -np.inf]
        new_texts, new_blank, new_symbol = [], [], []
        for i in best.tolist():
            if i < len(texts):
                new_texts.append(texts[i])
                new_blank.append(stay_blank[i])
                new_symbol.append(stay_symbol[i])
            else:
                parent, k = divmod(i - len(texts), len(keep))
                new_texts.append(texts[parent] + alphabet[keep[k]])
                new_blank.append(-np.inf)
                new_symbol.append(grow[parent, k])
        texts, ends_blank, ends_symbol = new_texts, np.array(new_blank), np.array(new_symbol)
    final = np.logaddexp(ends_blank, ends_symbol)
    final += alpha * np.array([lm_scores(text)[1] for text in texts])
    best_line = int(np.argmax(final))
    return texts[best_line], float(final[best_line])


def cer(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """Character error rate: total edits over total reference characters."""
    edits = sum(edit_distance(h, r) for h, r in zip(hyps, refs, strict=True))
    return edits / max(sum(len(r) for r in refs), 1)


def wer(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """Word error rate: words split on whitespace, total word edits over total reference words."""
    pairs = [(h.split(), r.split()) for h, r in zip(hyps, refs, strict=True)]
    return sum(edit_distance(h, r) for h, r in pairs) / max(sum(len(r) for _, r in pairs), 1)


def tune_fusion(
    log_probs_list: Sequence[torch.Tensor],
    refs: Sequence[str],
    alphabet: Sequence[str],
    lm: CharNgram | None,
    alphas: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0),
    betas: Sequence[float] = (0.0, 0.5, 1.0, 2.0),
    beam: int = 16,
) -> tuple[float, float, list[tuple[float, float, float]]]:
    """Grid search of ``alpha`` and ``beta`` on validation lines (each item of
    ``log_probs_list`` one line (T, C) or a batch (N, T, C), in the order of ``refs``).
    Returns the pair of least CER (the first such in grid order) and every
    ``(alpha, beta, cer)``."""
    table = []
    for alpha in alphas:
        for beta in betas:
            hyps = [
                text
                for log_probs in log_probs_list
                for text, _ in beam_search_lm(log_probs, alphabet, lm, beam, alpha, beta)
            ]
            table.append((alpha, beta, cer(hyps, refs)))
    alpha, beta, _ = min(table, key=lambda row: row[2])
    return alpha, beta, table


@dataclass
class LineDecoder:
    """How a line reader's outputs become text: the language model and the fusion weights
    (``alpha``, ``beta``) and ``beam`` of :func:`beam_search_lm`. A checkpoint of a line reader
    keeps one (``"decoder"``: :meth:`to_state`); ``hwr read`` and ``hwr evaluate`` decode with it
    unless told to decode greedily."""

    lm: CharNgram
    alphabet: list[str]
    alpha: float = 0.5
    beta: float = 1.0
    beam: int = 16

    def __call__(self, outputs: torch.Tensor) -> list[str]:
        """Texts of (N, T, C) logits, one per line."""
        found = beam_search_lm(outputs, self.alphabet, self.lm, self.beam, self.alpha, self.beta)
        return [text for text, _ in found]

    def to_state(self) -> dict:
        """Plain values only, for a checkpoint loaded with ``weights_only=True``."""
        return {"lm": self.lm.to_state(), "alphabet": list(self.alphabet), "alpha": self.alpha,
                "beta": self.beta, "beam": self.beam}  # fmt: skip

    @classmethod
    def from_state(cls, state: dict) -> LineDecoder:
        return cls(CharNgram.from_state(state["lm"]), list(state["alphabet"]), state["alpha"],
                   state["beta"], state["beam"])  # fmt: skip
