"""Coverage and dominance of methods in diversity-quality planes.

Each method (Base, Aligned, Nudging, BACo with some router, ...) gives a curve of operating
points, e.g. one per γ of a sweep; a point is (diversity, quality), each the mean over prompts.
In one plane (one diversity metric against one quality metric):

1. **Orient**: a metric where lower is better (self-BLEU, compression ratio) is negated, so that
   up and right are better on both axes.
2. **Normalise**: min-max over the points of *all* methods together, per axis, onto [0, 1]. The
   origin is then the pooled worst point on both axes and (1, 1) the (usually unreached) ideal.
   An axis on which all points are equal carries no trade-off and maps to 1.
3. **Coverage** of a method: the area of the normalised plane its points dominate, i.e. the union
   of the rectangles [0, x] x [0, y] over its points (the hypervolume with respect to the origin).
   It equals the area under the method's Pareto staircase and lies in [0, 1].
4. **Dominance** of a method: its share of the pooled Pareto frontier, i.e. of the points of all
   methods that no other point dominates (another point at least as good on both axes and better
   on one). Identical points do not dominate each other; the shares add up to 1.

Points with a NaN coordinate are left out. Averages over planes: ``lexical`` and ``semantic`` are
the means over the planes whose diversity metric is in that group, ``overall`` the mean over all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import product
from typing import Mapping, Sequence

import numpy as np

from .registry import Metric

Curves = Mapping[str, np.ndarray]  # method -> (k, 2) array of (diversity, quality) points


def orient(points: np.ndarray, x_higher_better: bool, y_higher_better: bool) -> np.ndarray:
    """Negate the axes where lower is better, so that higher is better on both."""
    return np.asarray(points, dtype=np.float64).reshape(-1, 2) * np.array(
        [1.0 if x_higher_better else -1.0, 1.0 if y_higher_better else -1.0]
    )


def normalise(points: np.ndarray, pooled: np.ndarray) -> np.ndarray:
    """Min-max scale ``points`` per axis by the range of ``pooled``; a zero range maps to 1."""
    lo, hi = pooled.min(axis=0), pooled.max(axis=0)
    span = hi - lo
    safe = np.where(span > 0, span, 1.0)
    return np.where(span > 0, (points - lo) / safe, 1.0)


def pareto_mask(points: np.ndarray) -> np.ndarray:
    """True for the points that no other point dominates (maximising both coordinates)."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    at_least = (p[:, None, :] >= p[None, :, :]).all(axis=-1)  # [i, j]: i >= j on both axes
    better = (p[:, None, :] > p[None, :, :]).any(axis=-1)  # [i, j]: i > j on some axis
    return ~np.any(at_least & better, axis=0)


def dominated_area(points: np.ndarray) -> float:
    """Area of the union of the rectangles [0, x] x [0, y] (points in the normalised plane)."""
    p = np.clip(np.asarray(points, dtype=np.float64).reshape(-1, 2), 0.0, None)
    if len(p) == 0:
        return 0.0
    front = p[pareto_mask(p)]
    front = front[np.lexsort((-front[:, 1], front[:, 0]))]  # x up; y then goes down
    widths = np.diff(front[:, 0], prepend=0.0)
    return float(np.sum(widths * front[:, 1]))


@dataclass(frozen=True)
class PlaneResult:
    """Coverage and dominance of every method in one diversity-quality plane."""

    x_metric: str
    y_metric: str
    coverage: dict[str, float]
    dominance: dict[str, float]
    normalised: dict[str, np.ndarray]  # method -> its valid points in the normalised plane
    on_frontier: dict[str, np.ndarray]  # method -> bool mask over those points


def evaluate_plane(
    curves: Curves,
    *,
    x_higher_better: bool = True,
    y_higher_better: bool = True,
    x_metric: str = "diversity",
    y_metric: str = "quality",
) -> PlaneResult:
    """Coverage and dominance of each method's curve in one plane (see the module docstring)."""
    valid = {}
    for method, points in curves.items():
        p = orient(points, x_higher_better, y_higher_better)
        valid[method] = p[~np.isnan(p).any(axis=1)]
    pooled = np.concatenate([p for p in valid.values()] + [np.zeros((0, 2))])
    if len(pooled) == 0:
        zeros = {m: 0.0 for m in curves}
        empty = {m: np.zeros((0, 2)) for m in curves}
        return PlaneResult(x_metric, y_metric, zeros, dict(zeros), empty,
                           {m: np.zeros(0, bool) for m in curves})
    norm = {m: normalise(p, pooled) for m, p in valid.items()}
    pooled_norm = normalise(pooled, pooled)
    front = pareto_mask(pooled_norm)
    masks, start = {}, 0
    for method, p in norm.items():
        masks[method] = front[start : start + len(p)]
        start += len(p)
    n_front = int(front.sum())
    return PlaneResult(
        x_metric,
        y_metric,
        coverage={m: dominated_area(p) for m, p in norm.items()},
        dominance={m: int(masks[m].sum()) / n_front for m in norm},
        normalised=norm,
        on_frontier=masks,
    )


@dataclass(frozen=True)
class FrontierSummary:
    """Coverage and dominance per plane, and their averages per method and metric group."""

    planes: list[PlaneResult]
    coverage: dict[str, dict[str, float]]  # method -> {"lexical", "semantic", "overall"} -> mean
    dominance: dict[str, dict[str, float]]


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def summarise_frontiers(
    operating_points: Mapping[str, Sequence[Mapping[str, float]]],
    diversity_metrics: Sequence[Metric],
    quality_metrics: Sequence[Metric],
) -> FrontierSummary:
    """Every (diversity, quality) plane, then the lexical, semantic and overall averages.

    ``operating_points`` maps a method to its operating points, each a mapping from metric name
    to value (such as the overall means of one ``baco eval`` run). A metric missing from a point
    counts as NaN; a plane where no point has both values is skipped.
    """
    planes: list[PlaneResult] = []
    groups: list[str] = []
    for d, q in product(diversity_metrics, quality_metrics):
        curves = {
            method: np.array([[p.get(d.name, math.nan), p.get(q.name, math.nan)] for p in points],
                             dtype=np.float64).reshape(-1, 2)
            for method, points in operating_points.items()
        }
        if all(np.isnan(c).any(axis=1).all() for c in curves.values()):
            continue
        planes.append(evaluate_plane(curves, x_higher_better=d.higher_is_better,
                                     y_higher_better=q.higher_is_better,
                                     x_metric=d.name, y_metric=q.name))
        groups.append(d.group)

    def average(field: str) -> dict[str, dict[str, float]]:
        out = {}
        for method in operating_points:
            per_plane = [(g, getattr(pl, field)[method]) for g, pl in zip(groups, planes, strict=True)]
            out[method] = {
                "lexical": _mean([v for g, v in per_plane if g == "lexical"]),
                "semantic": _mean([v for g, v in per_plane if g == "semantic"]),
                "overall": _mean([v for _, v in per_plane]),
            }
        return out

    return FrontierSummary(planes, average("coverage"), average("dominance"))
