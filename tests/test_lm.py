"""Language-model decoding: the Kneser-Ney character model's probabilities, and the fused beam
search against the plain one, greedy decoding, and brute force over every alignment."""

import io
import itertools
import math
import random

import pytest
import torch
import torch.nn.functional as F

from hwr_utils import ctc
from hwr_utils.lm import END, CharNgram, beam_search_lm, cer, tune_fusion, wer

FRENCH = [
    "le chat dort sur le lit",
    "le chien mange le pain",
    "il mange le pain",
    "le petit chat et le chien",
    "elle lit le livre",
    "le soleil se couche",
    "je vois le chat",
    "le temps est beau",
    "il est dans le jardin",
    "le lait est chaud",
    "le matin le chat mange",
    "la maison est belle",
]


@pytest.fixture(scope="module")
def french() -> CharNgram:
    return CharNgram.fit(FRENCH, order=4)


@pytest.mark.parametrize("context", ["", "le ch", "le chat dort sur le lit", "zzq", "é", "xx le"])
def test_ngram_probabilities_sum_to_one_after_any_context(french, context):
    total = sum(math.exp(french.log_prob(symbol, context)) for symbol in french.symbols)
    assert total == pytest.approx(1.0, abs=1e-12)
    assert french.symbols[-1] == END


def test_ngram_gives_an_unseen_character_its_floor_and_an_alphabet_character_more(french):
    assert french.log_prob("é", "le ") == math.log(french.floor)
    with_alphabet = CharNgram.fit(FRENCH, order=4, alphabet=["é"])
    assert math.log(french.floor) < with_alphabet.log_prob("é", "le ") < math.log(0.01)
    assert sum(math.exp(with_alphabet.log_prob(s, "le ")) for s in with_alphabet.symbols) == (
        pytest.approx(1.0, abs=1e-12)
    )


def test_shorter_contexts_count_contexts_not_occurrences():
    # "y" is ten times as frequent as "z" but, like it, follows one character only ("x", the
    # start): Kneser-Ney gives them the same probability where the context does not help.
    lm = CharNgram.fit(["xy"] * 10 + ["z"], order=2)
    assert lm.log_prob("y", "q") == pytest.approx(lm.log_prob("z", "q"), abs=1e-15)
    assert lm.log_prob("y", "x") > lm.log_prob("z", "x")


def test_ngram_prefers_seen_text_to_scrambled_text(french):
    rng = random.Random(0)
    for text in FRENCH:
        scrambled = "".join(rng.sample(text, len(text)))
        assert french.score(text) > french.score(scrambled)
    shuffled = ["".join(rng.sample(text, len(text))) for text in FRENCH]
    assert french.perplexity(FRENCH) < french.perplexity(shuffled)
    assert french.log_prob("e", "le chat dort sur l") > french.log_prob("o", "le chat dort sur l")


def test_ngram_state_survives_a_weights_only_checkpoint(french):
    buffer = io.BytesIO()
    torch.save({"lm": french.to_state()}, buffer)
    buffer.seek(0)
    loaded = CharNgram.from_state(torch.load(buffer, weights_only=True)["lm"])
    assert loaded.symbols == french.symbols and loaded.order == french.order
    for context in ["", "le ch", "zzq", "il est dans le j"]:
        for symbol in [*french.symbols, "é"]:
            assert loaded.log_prob(symbol, context) == french.log_prob(symbol, context)


@pytest.mark.parametrize("seed", range(5))
def test_without_a_language_model_it_is_the_plain_beam_search(seed):
    torch.manual_seed(seed)
    steps, units = 8 + seed, 5 + seed % 2
    alphabet = list("abcdef"[: units - 1])
    logits = 2 * torch.randn(3, steps, units, dtype=torch.float64)
    ours = beam_search_lm(logits, alphabet, None, beam=8, alpha=0.0, beta=0.0)
    theirs = ctc.beam_search(logits, beam=8)
    for (text, score), (symbols, probability) in zip(ours, theirs, strict=True):
        assert text == "".join(alphabet[s] for s in symbols)
        assert math.exp(score) == pytest.approx(probability, rel=1e-9)


def test_a_peaked_output_decodes_as_greedy():
    torch.manual_seed(0)
    paths = torch.randint(0, 6, (4, 30))  # blank (5) among them
    logits = 12 * F.one_hot(paths, 6).double() + torch.randn(4, 30, 6, dtype=torch.float64)
    alphabet = list("abcde")
    greedy = ["".join(alphabet[s] for s in text) for text in ctc.greedy_decode(logits)]
    assert [t for t, _ in beam_search_lm(logits, alphabet, None, alpha=0, beta=0)] == greedy


def collapse(path, blank):
    text, previous = [], blank
    for unit in path:
        if unit != previous and unit != blank:
            text.append(unit)
        previous = unit
    return tuple(text)


def brute_force(log_probs, alphabet, lm, alpha, beta):
    """Every alignment's probability summed per text, then each text's fused score: the best."""
    blank = log_probs.shape[1] - 1
    probability: dict[tuple, float] = {}
    for path in itertools.product(range(blank + 1), repeat=log_probs.shape[0]):
        p = math.exp(sum(log_probs[t, u].item() for t, u in enumerate(path)))
        probability[collapse(path, blank)] = probability.get(collapse(path, blank), 0.0) + p
    scores = {}
    for symbols, p in probability.items():
        text = "".join(alphabet[s] for s in symbols)
        fused = math.log(p) + beta * len(text)
        if lm is not None:
            fused += alpha * (lm.score(text))  # each character given the ones before, and END
        scores[text] = fused
    best = max(scores, key=scores.get)
    return best, scores[best]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("with_lm", [False, True])
def test_a_wide_beam_finds_what_brute_force_finds(seed, with_lm):
    torch.manual_seed(seed)
    steps, units = 4 + seed % 2, 3 + seed % 2
    alphabet = list("abc"[: units - 1])
    lm = CharNgram.fit(["ab", "aab", "ba", "abab", "b"], order=3) if with_lm else None
    alpha, beta = (0.8, 0.3) if with_lm else (0.0, 0.5)
    log_probs = (2 * torch.randn(steps, units, dtype=torch.float64)).log_softmax(1)
    text, score = brute_force(log_probs, alphabet, lm, alpha, beta)
    for prune in (-math.inf, -10.0):  # every text is kept: 400 > all texts of <= 5 symbols
        ((found, found_score),) = beam_search_lm(log_probs, alphabet, lm, 400, alpha, beta, prune)
        assert found == text
        assert found_score == pytest.approx(score, rel=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_pruning_unlikely_characters_changes_nothing_on_small_cases(seed, french):
    torch.manual_seed(seed)
    alphabet = sorted(set("".join(FRENCH)))
    logits = 8 * torch.randn(2, 25, len(alphabet) + 1, dtype=torch.float64)
    assert (logits.log_softmax(2) < -10).float().mean() > 0.5  # most characters are pruned
    pruned = beam_search_lm(logits, alphabet, french, prune=-10.0)
    for (text, score), (full_text, full_score) in zip(
        pruned, beam_search_lm(logits, alphabet, french, prune=-math.inf), strict=True
    ):
        assert text == full_text
        assert score == pytest.approx(full_score, rel=1e-6)


def ambiguous_line(text: str, alphabet: list[str], at: int, instead: str) -> torch.Tensor:
    """Log-probabilities spelling ``text`` one character per column, blanks between, where the
    column of ``text[at]`` gives ``instead`` slightly more than the true character."""
    blank = len(alphabet)
    columns = []
    for i, char in enumerate(text):
        column = torch.full((blank + 1,), 0.001)
        if i == at:
            column[alphabet.index(instead)], column[alphabet.index(char)] = 0.52, 0.46
        else:
            column[alphabet.index(char)] = 0.98
        columns += [column, torch.full((blank + 1,), 0.001).index_fill(0, torch.tensor(blank), 1)]
    probs = torch.stack(columns).double()
    return (probs / probs.sum(1, keepdim=True)).log()


def test_the_language_model_reads_le_where_the_ink_says_lo(french):
    alphabet = sorted(set("".join(FRENCH)) | {"o"})
    line = ambiguous_line("le chat mange", alphabet, at=1, instead="o")
    ((plain, _),) = beam_search_lm(line, alphabet, None, alpha=0.0, beta=0.0)
    ((fused, _),) = beam_search_lm(line, alphabet, french, alpha=0.8, beta=0.5)
    assert plain == "lo chat mange"
    assert fused == "le chat mange"
    alpha, _, table = tune_fusion([line], ["le chat mange"], alphabet, french, (0.0, 0.8), (0.5,))
    assert alpha == 0.8 and [row[2] for row in table] == [1 / 13, 0.0]


def test_cer_and_wer_by_hand():
    assert cer(["la chat"], ["le chat"]) == pytest.approx(1 / 7)
    assert wer(["la chat"], ["le chat"]) == pytest.approx(1 / 2)
    # totals, not means per line: 0 + 3 edits over 7 + 2 characters; 0 + 1 words over 2 + 1
    assert cer(["le chat", "abc"], ["le chat", "ab"]) == pytest.approx(1 / 9)
    assert cer(["le chat", ""], ["le chat", "ab"]) == pytest.approx(2 / 9)
    assert wer(["le chat", "un  chien"], ["le chat", "un"]) == pytest.approx(1 / 3)
    assert cer([""], [""]) == 0.0 and wer([""], [""]) == 0.0
