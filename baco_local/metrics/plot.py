"""A PNG of one diversity-quality plane: each method's curve and the pooled Pareto frontier.

Uses matplotlib's object API with the Agg canvas (no pyplot, no display, no global backend
change). Axes keep the metrics' own units; an axis where lower is better is drawn reversed, so
that up and right are always better.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from ..errors import OutputFileError
from .extras import require
from .frontier import orient, pareto_mask
from .registry import Metric

FIGSIZE = (6.4, 4.8)
DPI = 120


def plot_plane(
    curves: Mapping[str, np.ndarray],
    path: Path,
    *,
    x_metric: Metric,
    y_metric: Metric,
    title: str | None = None,
) -> Path:
    """Draw each method's (diversity, quality) points and the pooled frontier into a PNG."""
    require("matplotlib", "plotting")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=FIGSIZE, dpi=DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    flip = (x_metric.higher_is_better, y_metric.higher_is_better)
    pooled = []
    for method, points in curves.items():
        raw = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        raw = raw[~np.isnan(raw).any(axis=1)]
        pooled.append(raw)
        order = np.argsort(orient(raw, *flip)[:, 0], kind="stable")
        axes.plot(raw[order, 0], raw[order, 1], marker="o", label=method)
    pooled_raw = np.concatenate(pooled + [np.zeros((0, 2))])
    if len(pooled_raw):
        oriented = orient(pooled_raw, *flip)
        front = pooled_raw[pareto_mask(oriented)]
        front = front[np.argsort(orient(front, *flip)[:, 0], kind="stable")]
        # In the oriented plane, quality falls as diversity rises along the frontier: the
        # staircase holds each point's quality back to the previous point ("steps-pre").
        axes.plot(front[:, 0], front[:, 1], color="black", linestyle="--", linewidth=1,
                  drawstyle="steps-pre", label="Pareto frontier (all methods)")
    if not x_metric.higher_is_better:
        axes.invert_xaxis()
    if not y_metric.higher_is_better:
        axes.invert_yaxis()
    axes.set_xlabel(f"{x_metric.name} ({x_metric.direction})")
    axes.set_ylabel(f"{y_metric.name} ({y_metric.direction})")
    axes.set_title(title or f"{y_metric.name} vs {x_metric.name}")
    axes.grid(True, alpha=0.3)
    if curves:
        axes.legend(fontsize="small")
    figure.tight_layout()
    try:
        figure.savefig(path, format="png")
    except OSError as exc:
        raise OutputFileError(f"cannot write plot {path}: {exc.strerror or exc}") from exc
    return path
