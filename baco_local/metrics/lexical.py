"""Lexical diversity of the samples of one prompt: n-gram, BLEU, compression and alignment scores.

Every function takes the samples as a list of texts and returns one float, or NaN where the
score is undefined (no n-grams at all; a pairwise score with fewer than two samples). Texts are
tokenized by :func:`baco_local.metrics.tokens.tokenize`. The exact definitions are in each
docstring; :mod:`baco_local.metrics.registry` holds the names, descriptions and directions.
"""

from __future__ import annotations

import gzip
import math
from collections import Counter
from itertools import combinations
from typing import Callable, Sequence

import numpy as np

from .alignment import edit_distance, lcs_length
from .tokens import Ngram, ngram_counts, ngrams, tokenize

BLEU_MAX_N = 4
BLEU_EPSILON = 0.1  # Chen & Cherry (2014) smoothing method 1, as NLTK's SmoothingFunction().method1
NGRAM_DIVERSITY_MAX_N = 4


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct-n (Li et al., 2016): unique n-grams / total n-grams, pooled over all samples.

    N-grams never span two samples. NaN when no sample has ``n`` tokens.
    """
    grams = [g for text in texts for g in ngrams(tokenize(text), n)]
    return len(set(grams)) / len(grams) if grams else math.nan


def ngram_diversity(texts: Sequence[str], max_n: int = NGRAM_DIVERSITY_MAX_N) -> float:
    """N-gram diversity (Meister et al., 2023; Shaib et al., 2024): the distinct-n ratios for
    n = 1 .. ``max_n``, combined as their mean so that it lies in [0, 1] like distinct-n.

    The ``diversity`` package of Shaib et al. reports the sum, i.e. ``max_n`` times this; the
    frontier's min-max normalisation makes the two equivalent. Orders with no n-gram at all are
    left out of the mean; NaN when none has any.
    """
    values = [v for v in (distinct_n(texts, n) for n in range(1, max_n + 1)) if not math.isnan(v)]
    return float(np.mean(values)) if values else math.nan


def _max_reference_counts(references: Sequence[Sequence[str]], n: int) -> Counter[Ngram]:
    """For each n-gram, the most times it occurs in any one reference (BLEU's clipping count)."""
    best: Counter[Ngram] = Counter()
    for reference in references:
        for gram, count in ngram_counts(reference, n).items():
            best[gram] = max(best[gram], count)
    return best


def sentence_bleu(
    hypothesis: Sequence[str], references: Sequence[Sequence[str]], max_n: int = BLEU_MAX_N
) -> float:
    """Smoothed sentence BLEU-``max_n`` of one token sequence against several references.

    Same as NLTK's ``sentence_bleu`` with uniform weights and ``SmoothingFunction().method1``:
    p_n = clipped n-gram matches / max(1, hypothesis n-grams), a zero p_n replaced by
    0.1 / max(1, hypothesis n-grams); BLEU = BP * exp(mean_n log p_n), BP = exp(1 - r/c) when the
    hypothesis length c is at most the closest reference length r (ties: the shorter), else 1.
    0 when no unigram matches; NaN for an empty hypothesis (NLTK says 0 there too).
    """
    if not hypothesis:
        return math.nan
    log_precision = 0.0
    for n in range(1, max_n + 1):
        counts = ngram_counts(hypothesis, n)
        clip = _max_reference_counts(references, n)
        matches = sum(min(count, clip[gram]) for gram, count in counts.items())
        total = max(1, sum(counts.values()))
        if matches == 0 and n == 1:
            return 0.0
        log_precision += math.log((matches if matches else BLEU_EPSILON) / total) / max_n
    c = len(hypothesis)
    r = min((len(ref) for ref in references), key=lambda length: (abs(length - c), length))
    brevity = 1.0 if c > r else math.exp(1 - r / c)
    return brevity * math.exp(log_precision)


def _mean_over_pairs(items: Sequence[list[str]], score: Callable[[list[str], list[str]], float]) -> float:
    """Mean of ``score`` over all unordered pairs; NaN with fewer than two items."""
    values = [score(a, b) for a, b in combinations(items, 2)]
    return float(np.mean(values)) if values else math.nan


def self_bleu(texts: Sequence[str]) -> float:
    """Self-BLEU (Zhu et al., 2018): mean over samples of the sample's smoothed BLEU-4 against
    all the other samples as references. Empty samples are references only; NaN with fewer
    than two samples or when all are empty."""
    tokens = [tokenize(text) for text in texts]
    if len(tokens) < 2:
        return math.nan
    scores = [sentence_bleu(hyp, tokens[:i] + tokens[i + 1 :]) for i, hyp in enumerate(tokens)]
    kept = [s for s in scores if not math.isnan(s)]
    return float(np.mean(kept)) if kept else math.nan


def compression_ratio(texts: Sequence[str]) -> float:
    """Compression ratio (Shaib et al., 2024): the UTF-8 size of the samples joined by single
    spaces, divided by its gzip size (level 9). Repetitive sets compress well and score high.

    NaN when all samples are empty.
    """
    raw = " ".join(texts).encode("utf-8")
    if not raw.strip():
        return math.nan
    return len(raw) / len(gzip.compress(raw, compresslevel=9, mtime=0))


def rouge_l_f1(a: Sequence[str], b: Sequence[str]) -> float:
    """ROUGE-L F1 of two token sequences: 2 * LCS / (len(a) + len(b)); 1 when both are empty."""
    if not a and not b:
        return 1.0
    return 2 * lcs_length(a, b) / (len(a) + len(b))


def rouge_l_distance(texts: Sequence[str]) -> float:
    """Mean over sample pairs of 1 - ROUGE-L F1. NaN with fewer than two samples."""
    return _mean_over_pairs([tokenize(t) for t in texts], lambda a, b: 1 - rouge_l_f1(a, b))


def normalized_edit_distance(a: Sequence[str], b: Sequence[str]) -> float:
    """Word-level Levenshtein distance / the longer length; 0 when both are empty."""
    longest = max(len(a), len(b))
    return edit_distance(a, b) / longest if longest else 0.0


def edit_distance_diversity(texts: Sequence[str]) -> float:
    """Mean over sample pairs of the normalised word edit distance. NaN with fewer than two."""
    return _mean_over_pairs([tokenize(t) for t in texts], normalized_edit_distance)
