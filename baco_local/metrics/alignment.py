"""Word-level sequence alignment: longest common subsequence and Levenshtein distance.

Both are the textbook O(len(a) * len(b)) dynamic programmes, computed one row at a time with
numpy: the in-row dependency of each recurrence is a running max (LCS) or a running min
(Levenshtein), so a row is a few vector operations instead of a Python loop.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def _as_ids(a: Sequence[str], b: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Map both token sequences to integer ids from one shared vocabulary."""
    vocab: dict[str, int] = {}
    ids_a = np.array([vocab.setdefault(t, len(vocab)) for t in a], dtype=np.int64)
    ids_b = np.array([vocab.setdefault(t, len(vocab)) for t in b], dtype=np.int64)
    return ids_a, ids_b


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token sequences."""
    ids_a, ids_b = _as_ids(a, b)
    row = np.zeros(len(ids_b) + 1, dtype=np.int64)
    for token in ids_a:
        # L[i][j] = max(L[i][j-1], L[i-1][j], L[i-1][j-1] + match): the first term is a cummax.
        candidate = np.maximum(row[1:], row[:-1] + (ids_b == token))
        row[1:] = np.maximum.accumulate(candidate)
    return int(row[-1])


def edit_distance(a: Sequence[str], b: Sequence[str]) -> int:
    """Levenshtein distance between two token sequences (insert, delete, substitute: cost 1)."""
    ids_a, ids_b = _as_ids(a, b)
    offsets = np.arange(len(ids_b) + 1, dtype=np.int64)
    row = offsets.copy()
    for i, token in enumerate(ids_a, start=1):
        # D[i][j] = min(D[i-1][j] + 1, D[i-1][j-1] + sub, D[i][j-1] + 1): the last is a running
        # min of (candidate - j) shifted back by j.
        candidate = np.empty_like(row)
        candidate[0] = i
        candidate[1:] = np.minimum(row[1:] + 1, row[:-1] + (ids_b != token))
        row = np.minimum.accumulate(candidate - offsets) + offsets
    return int(row[-1])
