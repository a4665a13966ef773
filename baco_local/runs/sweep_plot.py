"""The sweep's frontier figure: small multiples of diversity-quality planes, and coverage/dominance bars.

One figure per quality metric (``frontier.png`` and ``frontier.svg`` for the first, else
``frontier-NAME.*``):

- top row: one panel per chosen diversity metric (``--plot-metrics``; by default a lexical and a
  semantic one) against the quality metric. Each method is one colour and marker, BACo routers
  in solid lines with filled markers in cool colours, baselines dashed with hollow markers in
  greys and warm colours; each method's points are joined in knob order and labelled with their
  knob (γ, T, w, p, n) in small type; the dashed black staircase is the Pareto frontier pooled
  over all methods. Axes where lower is better are reversed, so up and right are always better;
- bottom row: each method's coverage and dominance, averaged over the lexical planes, the
  semantic planes and all planes (the summary table's numbers, as the paper reports them).

The legend sits outside the axes, on the right. matplotlib's object API with the Agg canvas (no
pyplot, no display).
"""

from __future__ import annotations

from itertools import groupby
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import OutputFileError
from ..metrics.extras import require
from ..metrics.frontier import orient, pareto_mask
from ..metrics.registry import Metric
from .sweep import KNOB_SYMBOLS, OperatingPoint, is_baco, method_label
from .sweep_report import FIELDS, GROUPS, SweepResult

FIGSIZE = (14.0, 9.0)  # inches: 1400 x 900 pixels at DPI, readable at 100% on a laptop screen
DPI = 100
BACO_COLOURS = ("#1f4e9c", "#2a9df4", "#0f9b8e", "#2ca02c", "#6a3d9a", "#17becf", "#5e60ce", "#74a9cf")
BACO_MARKERS = ("o", "s", "D", "^", "v", "P", "X", "h")
BASELINE_STYLE = {  # colour, marker
    "aligned": ("#222222", "o"), "base": ("#8c8c8c", "s"), "nudging": ("#8c564b", "D"),
    "ensemble": ("#a6a600", "^"), "prompting": ("#e6550d", "v"), "prompting-seq": ("#c51b1b", "<"),
    "xtc": ("#d6338a", ">"), "top-nsigma": ("#b8860b", "*"),
}
GROUP_COLOURS = {"lexical": "#9ecae1", "semantic": "#4292c6", "overall": "#08306b"}


def method_style(methods: Sequence[str]) -> dict[str, dict[str, object]]:
    """Line and marker keywords per method: BACo routers solid and filled, baselines dashed and hollow."""
    styles: dict[str, dict[str, object]] = {}
    baco = [m for m in methods if is_baco(m)]
    for index, method in enumerate(baco):
        colour = BACO_COLOURS[index % len(BACO_COLOURS)]
        styles[method] = dict(color=colour, marker=BACO_MARKERS[index % len(BACO_MARKERS)], linestyle="-",
                              markerfacecolor=colour, linewidth=1.8)
    for method in methods:
        if method not in styles:
            colour, marker = BASELINE_STYLE.get(method, ("#555555", "o"))
            styles[method] = dict(color=colour, marker=marker, linestyle=(0, (4, 2)), markerfacecolor="white",
                                  linewidth=1.4)
    return styles


def knob_label(point: OperatingPoint, varying: set[str]) -> str:
    """A point's knob values in short form (only the knobs that vary within its method)."""
    return ", ".join(f"{KNOB_SYMBOLS.get(name, name)}={value:g}" for name, value in point.knobs if name in varying)


def plot_frontier(result: SweepResult, quality: Metric, diversity: Sequence[Metric], png: Path) -> list[Path]:
    """Write the figure of the module docstring as ``png`` and the same name with ``.svg``."""
    require("matplotlib", "plotting")
    from matplotlib import rc_context
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    figure = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    methods = list(result.methods)
    styles = method_style(methods)
    top, bottom = figure.add_gridspec(2, 1, height_ratios=(1.25, 1.0))
    planes = top.subgridspec(1, max(len(diversity), 1))
    for index, metric in enumerate(diversity):
        _plane(figure.add_subplot(planes[0, index]), result, metric, quality, styles)
    bars = bottom.subgridspec(1, len(FIELDS))
    for index, field in enumerate(FIELDS):
        _bars(figure.add_subplot(bars[0, index]), result, field, styles)
    handles = [Line2D([], [], **styles[m], markersize=7, label=method_label(m)) for m in methods]
    handles.append(Line2D([], [], color="black", linestyle="--", linewidth=1, label="Pareto frontier (all methods)"))
    handles.append(Line2D([], [], linestyle="", label=" "))
    handles.extend(Patch(color=GROUP_COLOURS[g], label=f"bars: {g} planes" if g != "overall" else "bars: all planes")
                   for g in GROUPS)
    figure.legend(handles=handles, loc="outside right upper", fontsize=9, frameon=False,
                  title="BACo routers (solid)\nbaselines (dashed, hollow)", title_fontsize=9)
    figure.suptitle(f"{quality.name} against diversity: {len(result.points)} operating points of "
                    f"{len(methods)} methods", fontsize=12)
    svg = png.with_suffix(".svg")
    try:
        figure.savefig(png, format="png")
        with rc_context({"svg.fonttype": "none"}):  # text stays text: searchable, and smaller
            figure.savefig(svg, format="svg")
    except OSError as exc:
        raise OutputFileError(f"cannot write plot {png}: {exc.strerror or exc}") from exc
    return [png, svg]


def _plane(axes, result: SweepResult, x_metric: Metric, y_metric: Metric, styles: dict[str, dict[str, object]]) -> None:
    """One diversity-quality panel: every method's points joined in knob order, labelled, and the frontier."""
    flip = (x_metric.higher_is_better, y_metric.higher_is_better)
    pooled = []
    for method, points in result.methods.items():
        style = styles[method]
        varying = {name for name, _ in points[0].knobs if len({dict(p.knobs)[name] for p in points}) > 1}
        varying = varying or {name for name, _ in points[0].knobs[:1]}  # one point: still say its knob
        for _, group in groupby(sorted(points, key=_knob_order), key=lambda p: _knob_order(p)[0]):
            line = list(group)
            xy = np.array([[result.value(p, x_metric.name), result.value(p, y_metric.name)] for p in line],
                          dtype=np.float64).reshape(-1, 2)
            keep = ~np.isnan(xy).any(axis=1)
            if not keep.any():
                continue
            axes.plot(xy[keep, 0], xy[keep, 1], markersize=6, alpha=0.95, **style)
            pooled.append(xy[keep])
            for point, (x, y) in zip([p for p, k in zip(line, keep) if k], xy[keep]):
                label = knob_label(point, varying)
                if label:
                    axes.annotate(label, (x, y), xytext=(4, 3), textcoords="offset points", fontsize=6.5,
                                  color=style["color"], alpha=0.9)
    if pooled:
        everything = np.concatenate(pooled)
        front = everything[pareto_mask(orient(everything, *flip))]
        front = front[np.argsort(orient(front, *flip)[:, 0], kind="stable")]
        axes.plot(front[:, 0], front[:, 1], color="black", linestyle="--", linewidth=1, drawstyle="steps-pre",
                  zorder=0)
    if not x_metric.higher_is_better:
        axes.invert_xaxis()
    if not y_metric.higher_is_better:
        axes.invert_yaxis()
    axes.set_xlabel(f"{x_metric.name} ({x_metric.group} diversity, {x_metric.direction})", fontsize=10)
    axes.set_ylabel(f"{y_metric.name} (quality, {y_metric.direction})", fontsize=10)
    axes.set_title(f"{y_metric.name} vs {x_metric.name}", fontsize=11)
    axes.tick_params(labelsize=9)
    axes.grid(True, alpha=0.3)


def _knob_order(point: OperatingPoint) -> tuple[tuple[float, ...], float]:
    """Sort key: the knobs after the first (one line per combination of them), then the first."""
    values = [value for _, value in point.knobs]
    return tuple(values[1:]), (values[0] if values else 0.0)


def _bars(axes, result: SweepResult, field: str, styles: dict[str, dict[str, object]]) -> None:
    """Horizontal bars of one of coverage/dominance per method, one bar per diversity group."""
    methods = list(result.methods)
    values = getattr(result.frontier, field)
    height = 0.8 / len(GROUPS)
    positions = np.arange(len(methods))
    for offset, group in enumerate(GROUPS):
        numbers = np.array([values[m][group] for m in methods], dtype=np.float64)
        if np.isnan(numbers).all():
            continue
        axes.barh(positions + (offset - 1) * height, np.nan_to_num(numbers), height=height,
                  color=GROUP_COLOURS[group], label=group)
    axes.set_yticks(positions, [method_label(m) for m in methods], fontsize=8.5)
    for tick, method in zip(axes.get_yticklabels(), methods):
        tick.set_color(styles[method]["color"])
    axes.invert_yaxis()  # the grid's first method on top
    axes.set_xlim(0, 1)
    axes.set_xlabel(f"{field} (higher = better)", fontsize=10)
    what = "area under the method's Pareto staircase" if field == "coverage" else "share of the pooled frontier"
    axes.set_title(f"{field.capitalize()}: {what}", fontsize=11)
    axes.tick_params(axis="x", labelsize=9)
    axes.grid(True, axis="x", alpha=0.3)


def choose_plot_metrics(names: Sequence[str], measured: Sequence[Metric]) -> tuple[list[Metric], list[str]]:
    """The measured diversity metrics among ``names``, and the names not measured in this run."""
    by_name = {m.name: m for m in measured if m.group != "quality"}
    return [by_name[n] for n in names if n in by_name], [n for n in names if n not in by_name]

