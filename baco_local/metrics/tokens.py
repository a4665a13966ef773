"""The word tokenizer every lexical metric shares, and n-gram counting.

A token is a run of word characters (letters, digits, underscore, any script), optionally joined
by apostrophes (``don't``, ``o'clock``), or a single character that is neither a word character
nor whitespace (punctuation, symbols, emoji). Text is lowercased first. So
``"Don't stop, Maui!"`` becomes ``["don't", "stop", ",", "maui", "!"]``.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache
from typing import Sequence

TOKEN_PATTERN = re.compile(r"\w+(?:['’]\w+)*|[^\w\s]")

Ngram = tuple[str, ...]


@lru_cache(maxsize=4096)
def _tokenize_cached(text: str) -> tuple[str, ...]:
    return tuple(TOKEN_PATTERN.findall(text.lower()))


def tokenize(text: str) -> list[str]:
    """Lowercased word and punctuation tokens of ``text`` (see the module docstring)."""
    return list(_tokenize_cached(text))


def ngrams(tokens: Sequence[str], n: int) -> list[Ngram]:
    """The n-grams of one token sequence, in order (none when it is shorter than ``n``)."""
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def ngram_counts(tokens: Sequence[str], n: int) -> Counter[Ngram]:
    """How often each n-gram occurs in one token sequence."""
    return Counter(ngrams(tokens, n))
