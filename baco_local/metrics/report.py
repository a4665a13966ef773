"""Present evaluation results: rich tables for the terminal and a JSON document for files."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

from rich import box
from rich.table import Table

from ..errors import OutputFileError
from .evaluate import ModelSummary, PromptScores
from .registry import Metric

MISSING = "–"


def format_value(value: float) -> str:
    """Three decimals, or a dash for an undefined (NaN) value."""
    return MISSING if math.isnan(value) else f"{value:.3f}"


def prompt_table(scores: Sequence[PromptScores], metrics: Sequence[Metric]) -> Table:
    """One row per record: id, model (when there are several), number of samples, then every
    metric under its short header (the overall table gives each header's full name)."""
    several_models = len({s.record.model for s in scores}) > 1
    table = Table(title="Per prompt", title_justify="left", box=box.SIMPLE_HEAD,
                  padding=0, pad_edge=False)
    table.add_column("id", overflow="fold", min_width=2)
    if several_models:
        table.add_column("model", overflow="fold", min_width=5)
    table.add_column("n", justify="right", no_wrap=True)
    for m in metrics:
        table.add_column(m.header, justify="right", no_wrap=True)
    for s in scores:
        model = [s.record.model] if several_models else []
        table.add_row(s.record.id, *model, str(len(s.record.generations)),
                      *(format_value(s.values.get(m.name, math.nan)) for m in metrics))
    return table


def overall_table(summaries: Sequence[ModelSummary], metrics: Sequence[Metric]) -> Table:
    """One row per metric, one column per model (means over its prompts), then the metric's
    description; ↑ marks metrics where higher is more diverse (or better), ↓ lower."""
    table = Table(title="Overall (mean over prompts; ↑ higher / ↓ lower = more diverse)",
                  title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False)
    table.add_column("metric", no_wrap=True)
    for s in summaries:
        table.add_column(f"{s.model or 'model'}\n{s.prompts} prompts", justify="right")
    table.add_column("description", overflow="fold", ratio=1)
    for m in metrics:
        name = m.name if m.header == m.name else f"{m.name} ({m.header})"
        table.add_row(f"{name} {m.arrow}", *(format_value(s.values[m.name]) for s in summaries),
                      m.description)
    return table


def _number(value: float) -> float | None:
    return None if math.isnan(value) else value


def report_document(
    source: Path,
    scores: Sequence[PromptScores],
    summaries: Sequence[ModelSummary],
    metrics: Sequence[Metric],
    embedder: str | None,
) -> dict[str, Any]:
    """Everything ``baco eval`` computed, as plain JSON data (undefined values are null)."""
    return {
        "source": str(source),
        "embedder": embedder,
        "metrics": [
            {"name": m.name, "group": m.group, "description": m.description,
             "direction": m.direction, "higher_is_better": m.higher_is_better}
            for m in metrics
        ],
        "prompts": [
            {"id": s.record.id, "model": s.record.model, "line": s.record.line,
             "n_generations": len(s.record.generations),
             "values": {k: _number(v) for k, v in s.values.items()}}
            for s in scores
        ],
        "overall": [
            {"model": s.model, "prompts": s.prompts,
             "values": {k: _number(v) for k, v in s.values.items()}}
            for s in summaries
        ],
    }


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Write the document as indented UTF-8 JSON."""
    try:
        path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    except OSError as exc:
        raise OutputFileError(f"cannot write {path}: {exc.strerror or exc}") from exc
