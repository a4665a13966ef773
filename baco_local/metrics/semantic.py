"""Semantic diversity of the samples of one prompt, from their sentence embeddings.

Both functions take an ``(n, d)`` array, one embedding per sample, and compare samples by cosine
similarity, so the embeddings' scale does not matter. A zero row has no direction: the score is
then NaN.
"""

from __future__ import annotations

import math

import numpy as np


def cosine_similarity_matrix(embeddings: np.ndarray) -> np.ndarray | None:
    """The ``(n, n)`` cosine similarities of the rows, or None if a row is all zeros."""
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be an (n, d) array, got shape {x.shape}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if np.any(norms == 0):
        return None
    unit = x / norms
    return np.clip(unit @ unit.T, -1.0, 1.0)


def mean_cosine_distance(embeddings: np.ndarray) -> float:
    """Mean over sample pairs (i < j) of 1 - cos(e_i, e_j); in [0, 2]. NaN with fewer than two."""
    sim = cosine_similarity_matrix(embeddings)
    n = 0 if sim is None else len(sim)
    if sim is None or n < 2:
        return math.nan
    upper = np.triu_indices(n, k=1)
    return float(np.mean(1.0 - sim[upper]))


def vendi_score(embeddings: np.ndarray) -> float:
    """Vendi score (Friedman & Dieng, 2023) with the cosine-similarity kernel.

    exp(-sum_i l_i log l_i) over the eigenvalues l_i of K / n, where K is the ``(n, n)`` cosine
    similarity matrix (K_ii = 1, so the l_i sum to 1). The effective number of distinct samples:
    1 when all are identical, n when all are orthogonal. NaN with no samples.
    """
    sim = cosine_similarity_matrix(embeddings)
    if sim is None or len(sim) == 0:
        return math.nan
    eigenvalues = np.linalg.eigvalsh(sim / len(sim))
    eigenvalues = eigenvalues[eigenvalues > 1e-12]  # drop round-off negatives; 0 log 0 = 0
    return float(np.exp(-np.sum(eigenvalues * np.log(eigenvalues))))
