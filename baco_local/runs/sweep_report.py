"""A sweep's results: per-point metric means, coverage and dominance per method, table and plots.

Each operating point's values are the means over prompts of its records' scores; each method's
curve is its points in grid order. Coverage and dominance come from
:func:`~baco_local.metrics.frontier.summarise_frontiers` over every (diversity, quality) plane.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from rich import box
from rich.table import Table

from ..metrics.evaluate import ModelSummary, PromptScores, summarise
from ..metrics.frontier import FrontierSummary, summarise_frontiers
from ..metrics.registry import Metric
from ..metrics.report import format_value
from .sweep import OperatingPoint
from .sweep_folder import finite_or_none

GROUPS = ("lexical", "semantic", "overall")
_SHORT = {"lexical": "lex", "semantic": "sem", "overall": "all"}
FIELDS = ("coverage", "dominance")
PLOT_METRICS = ("distinct-2", "vendi")  # the frontier figure's default panels: a lexical and a semantic metric


@dataclass(frozen=True)
class SweepResult:
    """Everything a sweep's summary is made of."""

    points: list[OperatingPoint]
    means: dict[str, ModelSummary]  # point id -> its metric means over prompts
    metrics: list[Metric]
    frontier: FrontierSummary

    @property
    def methods(self) -> dict[str, list[OperatingPoint]]:
        """Each method's points, in grid order."""
        return _group(self.points)

    def curve(self, method: str, x: str, y: str) -> np.ndarray:
        """A method's (x, y) points: ``(k, 2)``, NaN where a point has no value."""
        rows = [[self.value(p, x), self.value(p, y)] for p in self.methods[method]]
        return np.array(rows, dtype=np.float64).reshape(-1, 2)

    def value(self, point: OperatingPoint, metric: str) -> float:
        """A point's mean of one metric (NaN where it has none)."""
        means = self.means.get(point.id)
        return means.values.get(metric, math.nan) if means else math.nan


def summarise_sweep(points: list[OperatingPoint], scores: Sequence[PromptScores],
                    metrics: list[Metric]) -> SweepResult:
    """Means per point, then coverage and dominance per method in every plane."""
    means = {s.model: s for s in summarise(scores, metrics)}
    operating = {method: [means[p.id].values if p.id in means else {} for p in group]
                 for method, group in _group(points).items()}
    diversity = [m for m in metrics if m.group != "quality"]
    quality = [m for m in metrics if m.group == "quality"]
    return SweepResult(points, means, metrics, summarise_frontiers(operating, diversity, quality))


def _group(points: list[OperatingPoint]) -> dict[str, list[OperatingPoint]]:
    grouped: dict[str, list[OperatingPoint]] = {}
    for point in points:
        grouped.setdefault(point.method, []).append(point)
    return grouped


def points_document(result: SweepResult) -> dict[str, Any]:
    """Every operating point's knobs and metric means (points.json)."""
    rows = []
    for point in result.points:
        means = result.means.get(point.id)
        rows.append({"id": point.id, "method": point.method, "knobs": dict(point.knobs),
                     "prompts": means.prompts if means else 0,
                     "values": finite_or_none(means.values) if means else {}})
    return {"metrics": [_metric_entry(m) for m in result.metrics], "points": rows}


def summary_document(result: SweepResult) -> dict[str, Any]:
    """Coverage and dominance per method, averaged per group and per plane (summary.json)."""
    frontier = result.frontier
    return {
        "metrics": [_metric_entry(m) for m in result.metrics],
        "methods": {
            method: {"points": [p.id for p in group],
                     "coverage": finite_or_none(frontier.coverage[method]),
                     "dominance": finite_or_none(frontier.dominance[method])}
            for method, group in result.methods.items()
        },
        "planes": [
            {"diversity": plane.x_metric, "quality": plane.y_metric,
             "coverage": finite_or_none(plane.coverage), "dominance": finite_or_none(plane.dominance)}
            for plane in frontier.planes
        ],
    }


def _metric_entry(metric: Metric) -> dict[str, Any]:
    return {"name": metric.name, "group": metric.group, "description": metric.description,
            "direction": metric.direction}


def summary_table(result: SweepResult) -> Table:
    """Methods x coverage and dominance, averaged over the lexical, semantic and all planes."""
    table = Table(title=f"Coverage (cov) and dominance (dom) over {len(result.frontier.planes)} diversity-quality "
                        "planes, averaged per diversity group (higher = better)",
                  caption="coverage: area of the normalised plane under the method's curve; dominance: its share "
                          "of the Pareto frontier of all methods", title_justify="left", caption_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("method", no_wrap=True)
    table.add_column("points", justify="right")
    for field in FIELDS:
        for group in GROUPS:
            table.add_column(f"{field[:3]} {_SHORT[group]}", justify="right", no_wrap=True)
    for method, group in result.methods.items():
        cells = [format_value(getattr(result.frontier, field)[method][g]) for field in FIELDS for g in GROUPS]
        table.add_row(method, str(len(group)), *cells)
    return table


def plot_sweep(result: SweepResult, path_for: Callable[[Metric, bool], Path],
               plot_metrics: Sequence[str] = PLOT_METRICS) -> list[Path]:
    """The frontier figure (runs/sweep_plot.py) per quality metric, its panels the measured ones
    of ``plot_metrics``: a PNG and an SVG each."""
    from .sweep_plot import choose_plot_metrics, plot_frontier  # needs matplotlib (the eval extra)

    diversity, _missing = choose_plot_metrics(plot_metrics, result.metrics)
    quality = [m for m in result.metrics if m.group == "quality"]
    if not diversity:
        return []
    paths: list[Path] = []
    for index, metric in enumerate(quality):
        paths.extend(plot_frontier(result, metric, diversity, path_for(metric, index == 0)))
    return paths
