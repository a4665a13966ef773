"""Semantic diversity metrics on hand-made embedding vectors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from baco_local.metrics.semantic import mean_cosine_distance, vendi_score


def test_orthogonal_vectors() -> None:
    e = np.eye(4)[:3] * np.array([[1.0], [5.0], [0.2]])  # scale must not matter
    assert vendi_score(e) == pytest.approx(3.0)
    assert mean_cosine_distance(e) == pytest.approx(1.0)


def test_identical_directions() -> None:
    e = np.array([[1.0, 2.0], [2.0, 4.0], [0.5, 1.0]])
    assert vendi_score(e) == pytest.approx(1.0)
    assert mean_cosine_distance(e) == pytest.approx(0.0, abs=1e-12)


def test_vectors_sixty_degrees_apart() -> None:
    e = np.array([[1.0, 0.0], [0.5, math.sqrt(3) / 2]])  # cos = 0.5
    assert mean_cosine_distance(e) == pytest.approx(0.5)
    # K/2 = [[.5, .25], [.25, .5]] has eigenvalues 0.75 and 0.25.
    expected = math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert vendi_score(e) == pytest.approx(expected)


def test_two_pairs_of_duplicates_count_as_two() -> None:
    e = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    assert vendi_score(e) == pytest.approx(2.0)
    # pairs: 2 identical (distance 0), 4 orthogonal (distance 1) -> 4/6
    assert mean_cosine_distance(e) == pytest.approx(4 / 6)


def test_edge_cases() -> None:
    assert vendi_score(np.array([[3.0, 4.0]])) == pytest.approx(1.0)
    assert math.isnan(mean_cosine_distance(np.array([[3.0, 4.0]])))
    assert math.isnan(vendi_score(np.zeros((0, 3))))
    assert math.isnan(vendi_score(np.array([[0.0, 0.0], [1.0, 0.0]])))  # a zero vector
    with pytest.raises(ValueError):
        vendi_score(np.zeros(3))
