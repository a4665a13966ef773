"""Coverage and dominance on hand-made point sets (areas worked out in the comments)."""

from __future__ import annotations

import numpy as np
import pytest

from baco_local.metrics.frontier import (
    dominated_area,
    evaluate_plane,
    normalise,
    pareto_mask,
    summarise_frontiers,
)
from baco_local.metrics.registry import Metric, get_metric

QUALITY = Metric("q", "quality", "a made-up quality score", True)


def test_pareto_mask() -> None:
    points = np.array([[0.2, 0.9], [0.6, 0.6], [0.3, 0.3], [0.6, 0.6], [0.6, 0.5]])
    # (0.3, 0.3) is dominated by (0.6, 0.6); (0.6, 0.5) too (equal x, lower y); duplicates survive.
    assert pareto_mask(points).tolist() == [True, True, False, True, False]


def test_dominated_area_is_the_staircase_area() -> None:
    points = np.array([[0.2, 0.9], [0.6, 0.6], [0.9, 0.1], [0.3, 0.3]])
    # 0.2 * 0.9 + (0.6 - 0.2) * 0.6 + (0.9 - 0.6) * 0.1 = 0.18 + 0.24 + 0.03; (0.3, 0.3) adds nothing.
    assert dominated_area(points) == pytest.approx(0.45)
    assert dominated_area(np.array([[1.0, 1.0]])) == 1.0
    assert dominated_area(np.zeros((0, 2))) == 0.0


def test_normalise_min_max_and_flat_axis() -> None:
    pooled = np.array([[0.0, 3.0], [2.0, 3.0], [1.0, 3.0]])
    assert normalise(pooled, pooled).tolist() == [[0.0, 1.0], [1.0, 1.0], [0.5, 1.0]]


CURVES = {
    # raw (diversity, quality); pooled ranges x [0, 2], y [0, 10]
    "A": np.array([[0.0, 10.0], [2.0, 0.0]]),  # normalised (0, 1) and (1, 0): the two extremes
    "B": np.array([[1.0, 5.0], [0.5, 2.0]]),  # normalised (0.5, 0.5) and (0.25, 0.2)
}


def test_coverage_and_dominance_in_one_plane() -> None:
    result = evaluate_plane(CURVES)
    # A's staircase has zero area; B's (0.5, 0.5) dominates 0.25 and hides (0.25, 0.2).
    assert result.coverage == pytest.approx({"A": 0.0, "B": 0.25})
    # Pooled frontier: (0, 1), (1, 0) from A and (0.5, 0.5) from B.
    assert result.dominance == pytest.approx({"A": 2 / 3, "B": 1 / 3})
    assert result.on_frontier["B"].tolist() == [True, False]


def test_lower_is_better_axes_are_flipped() -> None:
    flipped = {m: np.column_stack([5 - p[:, 0], -p[:, 1]]) for m, p in CURVES.items()}
    result = evaluate_plane(flipped, x_higher_better=False, y_higher_better=False)
    assert result.coverage == pytest.approx({"A": 0.0, "B": 0.25})
    assert result.dominance == pytest.approx({"A": 2 / 3, "B": 1 / 3})


def test_affine_rescaling_changes_nothing() -> None:
    scaled = {m: p * np.array([10.0, 0.5]) + np.array([3.0, -7.0]) for m, p in CURVES.items()}
    assert evaluate_plane(scaled).coverage == pytest.approx(evaluate_plane(CURVES).coverage)


def test_nan_points_are_left_out() -> None:
    curves = {**CURVES, "C": np.array([[np.nan, 1.0]])}
    result = evaluate_plane(curves)
    assert result.coverage["C"] == 0.0 and result.dominance["C"] == 0.0
    assert result.coverage["B"] == pytest.approx(0.25)


def test_flat_quality_axis() -> None:
    # Every point has quality 3: y maps to 1, so coverage is the best normalised x.
    result = evaluate_plane({"A": np.array([[0.0, 3.0], [2.0, 3.0]]), "B": np.array([[1.0, 3.0]])})
    assert result.coverage == pytest.approx({"A": 1.0, "B": 0.5})
    assert result.dominance == pytest.approx({"A": 1.0, "B": 0.0})


def test_summary_averages_over_lexical_and_semantic_planes() -> None:
    points = {
        "A": [{"self-bleu": 0.8, "vendi": 1.0, "q": 1.0}, {"self-bleu": 0.2, "vendi": 3.0, "q": 0.0}],
        "B": [{"self-bleu": 0.5, "vendi": 2.5, "q": 0.5}],
    }
    summary = summarise_frontiers(points, [get_metric("self-bleu"), get_metric("vendi")], [QUALITY])
    # self-BLEU plane (lower is better): A at x = 0 and 1, B at x = 0.5, y = 0.5 -> area 0.25.
    # Vendi plane: B at x = (2.5 - 1) / 2 = 0.75, y = 0.5 -> area 0.375. A: 0 in both.
    assert [(p.x_metric, p.y_metric) for p in summary.planes] == [("self-bleu", "q"), ("vendi", "q")]
    assert summary.coverage["B"] == pytest.approx({"lexical": 0.25, "semantic": 0.375,
                                                   "overall": 0.3125})
    assert summary.coverage["A"] == pytest.approx({"lexical": 0.0, "semantic": 0.0, "overall": 0.0})
    assert summary.dominance["A"]["overall"] == pytest.approx(2 / 3)


def test_summary_skips_planes_without_values() -> None:
    points = {"A": [{"self-bleu": 0.5, "q": 1.0}]}
    summary = summarise_frontiers(points, [get_metric("self-bleu"), get_metric("vendi")], [QUALITY])
    assert len(summary.planes) == 1
    assert np.isnan(summary.coverage["A"]["semantic"])
