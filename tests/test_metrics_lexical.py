"""Lexical diversity metrics on small sets whose values are worked out by hand."""

from __future__ import annotations

import gzip
import math
import random

import pytest

from baco_local.metrics.alignment import edit_distance, lcs_length
from baco_local.metrics.lexical import (
    compression_ratio,
    distinct_n,
    edit_distance_diversity,
    ngram_diversity,
    rouge_l_distance,
    self_bleu,
    sentence_bleu,
)
from baco_local.metrics.tokens import tokenize

IDENTICAL = ["The cat sat on the mat"] * 3  # 6 tokens each; "the" twice
DISJOINT = ["a b c d", "e f g h"]
ONE_APART = ["a b c d", "a b c e"]  # the last word differs


def test_tokenizer_lowercases_and_splits_punctuation() -> None:
    assert tokenize("Don't stop, Maui!") == ["don't", "stop", ",", "maui", "!"]
    assert tokenize("  ") == []


def test_identical_samples() -> None:
    # 1-grams: {the, cat, sat, on, mat} = 5 unique of 18; 2-grams: 5 of 15; 3: 4 of 12; 4: 3 of 9.
    assert distinct_n(IDENTICAL, 1) == pytest.approx(5 / 18)
    assert distinct_n(IDENTICAL, 2) == pytest.approx(1 / 3)
    assert distinct_n(IDENTICAL, 3) == pytest.approx(1 / 3)
    assert ngram_diversity(IDENTICAL) == pytest.approx((5 / 18 + 1 / 3 + 1 / 3 + 1 / 3) / 4)
    assert self_bleu(IDENTICAL) == pytest.approx(1.0)
    assert rouge_l_distance(IDENTICAL) == 0.0
    assert edit_distance_diversity(IDENTICAL) == 0.0


def test_disjoint_samples() -> None:
    for n in (1, 2, 3):
        assert distinct_n(DISJOINT, n) == 1.0
    assert ngram_diversity(DISJOINT) == 1.0
    assert self_bleu(DISJOINT) == 0.0  # no unigram in common
    assert rouge_l_distance(DISJOINT) == 1.0
    assert edit_distance_diversity(DISJOINT) == 1.0


def test_samples_one_word_apart() -> None:
    # 1-grams: a b c d e = 5 of 8; 2-grams: ab bc cd ce = 4 of 6; 3-grams: 3 of 4; 4-grams: 2 of 2.
    assert distinct_n(ONE_APART, 1) == pytest.approx(5 / 8)
    assert distinct_n(ONE_APART, 2) == pytest.approx(4 / 6)
    assert distinct_n(ONE_APART, 3) == pytest.approx(3 / 4)
    assert ngram_diversity(ONE_APART) == pytest.approx((5 / 8 + 4 / 6 + 3 / 4 + 1) / 4)
    # BLEU either way: p1 = 3/4, p2 = 2/3, p3 = 1/2, p4 = 0 -> smoothed 0.1/1; equal lengths, BP = 1.
    assert self_bleu(ONE_APART) == pytest.approx((0.75 * (2 / 3) * 0.5 * 0.1) ** 0.25)
    # LCS = 3: F1 = 2*3/(4+4) = 0.75. One substitution in four words: 0.25.
    assert rouge_l_distance(ONE_APART) == pytest.approx(0.25)
    assert edit_distance_diversity(ONE_APART) == pytest.approx(0.25)


def test_bleu_brevity_penalty_and_lengths() -> None:
    short, long = ["a b c d", "a b c d e f"]
    # short vs long: every n-gram matches, c = 4 < r = 6 -> BP = exp(1 - 6/4).
    assert sentence_bleu(tokenize(short), [tokenize(long)]) == pytest.approx(math.exp(-0.5))
    # long vs short: p = 4/6, 3/5, 2/4, 1/3; c > r -> BP = 1.
    assert sentence_bleu(tokenize(long), [tokenize(short)]) == pytest.approx((1 / 15) ** 0.25)
    assert self_bleu([short, long]) == pytest.approx((math.exp(-0.5) + (1 / 15) ** 0.25) / 2)
    assert rouge_l_distance([short, long]) == pytest.approx(1 - 2 * 4 / 10)
    assert edit_distance_diversity([short, long]) == pytest.approx(2 / 6)


def test_bleu_clips_to_the_best_reference() -> None:
    # "the the the the": 4 unigrams, "the" occurs at most twice in one reference -> p1 = 2/4.
    hyp = tokenize("the the the the")
    refs = [tokenize("the cat the dog"), tokenize("a the b c")]
    p = [2 / 4, 0.1 / 3, 0.1 / 2, 0.1 / 1]  # no higher-order match: smoothed
    assert sentence_bleu(hyp, refs) == pytest.approx(math.prod(p) ** 0.25)


def test_single_sample_and_empty_texts() -> None:
    one = ["just one sample here"]
    assert distinct_n(one, 1) == 1.0
    for pairwise in (self_bleu, rouge_l_distance, edit_distance_diversity):
        assert math.isnan(pairwise(one))
    empty = ["", ""]
    assert math.isnan(distinct_n(empty, 1))
    assert math.isnan(ngram_diversity(empty))
    assert math.isnan(self_bleu(empty))
    assert math.isnan(compression_ratio(empty))
    assert rouge_l_distance(empty) == 0.0  # two empty samples are identical
    assert edit_distance_diversity(empty) == 0.0
    assert rouge_l_distance(["", "a b"]) == 1.0
    assert self_bleu(["", "a b"]) == 0.0  # the empty sample is only a reference
    assert math.isnan(distinct_n([], 1))


def test_short_samples_leave_higher_orders_out_of_ngram_diversity() -> None:
    # Two 1-token samples: only distinct-1 (2 of 2) is defined.
    assert ngram_diversity(["yes", "no"]) == 1.0
    assert math.isnan(distinct_n(["yes", "no"], 2))


def test_compression_ratio_definition_and_direction() -> None:
    texts = ["the cat sat on the mat", "a dog ran in the park"]
    raw = " ".join(texts).encode()
    assert compression_ratio(texts) == pytest.approx(len(raw) / len(gzip.compress(raw, 9)))
    repetitive = ["the same long sentence about the sea"] * 20
    varied = [f"sample {i}: {' '.join(random.Random(i).sample(list('abcdefghijklmnopqrstuvwxyz'), 20))}"
              for i in range(20)]
    assert compression_ratio(repetitive) > compression_ratio(varied)


def _lcs_reference(a: list[str], b: list[str]) -> int:
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a, 1):
        for j, y in enumerate(b, 1):
            table[i][j] = table[i - 1][j - 1] + 1 if x == y else max(table[i - 1][j], table[i][j - 1])
    return table[-1][-1]


def _levenshtein_reference(a: list[str], b: list[str]) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def test_alignment_known_values_and_against_plain_dp() -> None:
    assert lcs_length(list("ABCBDAB"), list("BDCABA")) == 4
    assert edit_distance(list("kitten"), list("sitting")) == 3
    assert lcs_length([], ["a"]) == 0 and edit_distance([], ["a", "b"]) == 2
    rng = random.Random(7)
    for _ in range(200):
        a = [rng.choice("abc") for _ in range(rng.randint(0, 9))]
        b = [rng.choice("abc") for _ in range(rng.randint(0, 9))]
        assert lcs_length(a, b) == _lcs_reference(a, b)
        assert edit_distance(a, b) == _levenshtein_reference(a, b)
