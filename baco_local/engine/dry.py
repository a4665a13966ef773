"""DRY ("don't repeat yourself"): llama.cpp's penalty on tokens that would continue a repetition.

For a sequence's last tokens (prompt and generated, ``--dry-penalty-last-n`` of them; -1 = all),
every earlier place where the text so far ends the same way as it does now ("a b c ... a b c")
is a repeat of length L (how many tokens match, counted back from there and from the end). The
token that followed that earlier place would extend the repeat; if L >= ``--dry-allowed-length``,
its logit is lowered by ``multiplier · base^(L − allowed_length)`` (L: the longest repeat it would
extend; the exponent capped so the penalty stays a finite float32).

Sequence breakers (llama.cpp's defaults: newline, ``:``, ``"``, ``*``) cut repeats: no repeat
reaches back past the most recent breaker, and a token that is itself a breaker is never
penalised. A breaker string matches a token whose text contains it, or a token whose text ends
with the start of it followed by the tokens of the rest (llama.cpp's "head and tail" sequences).

This is a port of llama.cpp's ``llama_sampler_dry`` (src/llama-sampling.cpp, itself from
koboldcpp); ``tests/test_samplers_llama_cpp.py`` checks the penalties against it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

DEFAULT_BREAKERS = ("\n", ":", "\"", "*")  # llama.cpp's common_params_sampling.dry_sequence_breakers
_MAX_BREAKER_CHARS = 40  # llama.cpp truncates longer breakers
_MAX_TAIL_TOKENS = 20
_FLOAT_MAX_LOG = 88.7228391


@dataclass(frozen=True)
class Breakers:
    """Processed sequence breakers: head token -> the token tails that complete a breaker after it
    (an empty tail: the head token alone is a breaker)."""

    tails: dict[int, tuple[tuple[int, ...], ...]]

    def is_single_token(self, token: int) -> bool:
        """Whether ``token`` is a breaker by itself (never penalised)."""
        return () in self.tails.get(token, ())


def process_breakers(breakers: Sequence[str], pieces: Sequence[bytes],
                     tokenize: Callable[[str], list[int]]) -> Breakers:
    """The head/tail sequences of ``breakers`` over a vocabulary (``pieces[t]``: token t's bytes;
    ``tokenize``: text to ids without special tokens), as llama.cpp's get_overlapping_token_sequences."""
    tails: dict[int, list[tuple[int, ...]]] = {}
    for breaker in breakers:
        text = breaker.encode("utf-8")[:_MAX_BREAKER_CHARS]
        if not text:
            continue
        head = text[:1]
        for token, word in enumerate(pieces):
            if head not in word:
                continue
            found = tails.setdefault(token, [])
            if text in word:
                found.append(())
                continue
            for start in _overlap_starts(word, text):
                rest = text[len(word) - start:]
                tail = tuple(tokenize(rest.decode("utf-8", errors="replace")))[:_MAX_TAIL_TOKENS]
                if tail not in found:
                    found.append(tail)
    return Breakers({token: tuple(found) for token, found in tails.items() if found})


def _overlap_starts(word: bytes, text: bytes) -> list[int]:
    """Positions in ``word`` from which the rest of ``word`` is a proper prefix of ``text``."""
    starts = []
    position = word.find(text[:1])
    while position >= 0:
        if text.startswith(word[position:]):
            starts.append(position)
        position = word.find(text[:1], position + 1)
    return starts


def dry_penalties(history: np.ndarray, *, multiplier: float, base: float, allowed_length: int,
                  penalty_last_n: int, breakers: Breakers) -> dict[int, float]:
    """Token id -> the amount DRY subtracts from its logit after ``history`` (prompt + generated)."""
    if multiplier == 0 or base < 1 or penalty_last_n == 0:
        return {}
    window = history if penalty_last_n < 0 else history[-penalty_last_n:]
    n = int(window.shape[0])
    if n <= allowed_length:
        return {}
    limit = _repeat_limit(window, breakers)
    if limit < allowed_length:
        return {}
    counts = _suffix_matches(window, limit)  # counts[i]: repeat length ending at window[i]
    longest: dict[int, int] = {}
    for end in np.flatnonzero(counts[:-1] >= allowed_length):
        token, length = int(window[end + 1]), int(counts[end])
        if longest.get(token, -1) < length:
            longest[token] = length
    max_exponent = int(_FLOAT_MAX_LOG / math.log(base)) if base > 1.000001 else 0
    penalties = {}
    for token, length in longest.items():
        if breakers.is_single_token(token):
            continue
        exponent = length - allowed_length
        if max_exponent > 0:
            exponent = min(exponent, max_exponent)
        # As llama.cpp: float multiplier times std::pow(float base, int exponent), which is a double.
        penalties[token] = float(np.float32(float(np.float32(multiplier)) * float(np.float32(base)) ** exponent))
    return penalties


def _repeat_limit(window: np.ndarray, breakers: Breakers) -> int:
    """How far back a repeat may reach: up to the most recent complete breaker sequence."""
    n = int(window.shape[0])
    for back in range(n):  # back tokens from the end
        tails = breakers.tails.get(int(window[n - 1 - back]))
        if not tails:
            continue
        longest = -1
        for tail in tails:
            if longest < len(tail) <= back and all(int(window[n - back + offset]) == t
                                                   for offset, t in enumerate(tail)):
                longest = len(tail)
        if longest >= 0:
            return back - longest
    return n


def _suffix_matches(window: np.ndarray, limit: int) -> np.ndarray:
    """For each position i, how many tokens ending at i equal the tokens ending at the last
    position (capped at ``limit``; 0 for the last position itself)."""
    n = int(window.shape[0])
    counts = np.zeros(n, dtype=np.int64)
    alive = np.flatnonzero(window[:-1] == window[-1])  # end positions matching the last token
    length = 1
    while alive.size and length <= limit:  # longer matches count as ``limit`` anyway
        # alive positions match the last ``length`` tokens; try one more back
        ok = alive - length >= 0
        extends = np.zeros(alive.shape, dtype=bool)
        extends[ok] = window[alive[ok] - length] == window[n - 1 - length]
        counts[alive[~extends]] = length
        alive = alive[extends]
        length += 1
    counts[alive] = length
    return np.minimum(counts, limit)
