"""Options and builders for what scores generations, shared by ``baco eval`` and ``baco sweep``:
the semantic metrics' embedder and the quality scorers (aligned likelihood, local judge)."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Callable, Optional, TypeVar

import typer
from rich.markup import escape

from ..metrics.embed import DEFAULT_EMBEDDER, Embedder, embedder_requirements, load_embedder
from ..metrics.extras import EXTRA, INSTALL_HINT, available
from ..metrics.judge import JUDGE, JudgeScorer
from ..metrics.likelihood import LIKELIHOOD
from ..metrics.registry import METRICS, Metric
from . import options as opt
from .console import note

EVALUATION = opt.EVALUATION
Command = TypeVar("Command", bound=Callable[..., None])


def metric_help(metric: Metric) -> str:
    """``name: what it measures (direction)`` for option help texts."""
    return escape(f"{metric.name}: {metric.description} ({metric.direction})")


SemanticOpt = Annotated[Optional[bool], typer.Option(
    "--semantic/--no-semantic", help=escape(f"Embedding-based metrics. Default: on when '{EXTRA}' is installed."),
    show_default=False, rich_help_panel=EVALUATION)]
EmbedderOpt = Annotated[str, typer.Option(
    "--embedder", help="'minilm' (all-MiniLM-L6-v2), a .gguf embedding model, or a sentence-transformers "
    "directory.", rich_help_panel=EVALUATION)]
JudgeOpt = Annotated[Optional[Path], typer.Option(
    "--judge", help=f"An instruct GGUF that rates every response; adds the quality metric {metric_help(JUDGE)}.",
    show_default=False, rich_help_panel=EVALUATION)]
LIKELIHOOD_HELP = f"adds the quality metric {metric_help(LIKELIHOOD)}"


def lists_metrics(command: Command) -> Command:
    """Append every registered metric (what it measures, its direction) to a command's help text."""
    listed = "\n\n".join(f"{m.arrow} {metric_help(m)}" for m in METRICS.values())
    command.__doc__ = f"{inspect.cleandoc(command.__doc__ or '')}\n\nMetrics:\n\n{listed}"
    return command


def choose_embedder(semantic: bool | None, spec: str) -> Embedder | None:
    """The embedder for the semantic metrics, or None when they are off.

    Unset ``semantic`` means on when the default embedder's packages are installed (else a note
    says they were skipped), and always on when another embedder was named.
    """
    if semantic is False:
        return None
    if semantic is None and spec == DEFAULT_EMBEDDER and not available(embedder_requirements(spec)):
        note(f"semantic metrics skipped: {INSTALL_HINT}")
        return None
    return load_embedder(spec)


def open_judge(path: Path | None, *, gpu_layers: int, threads: int | None,
               ctx_size: int = opt.DEFAULT_CTX) -> JudgeScorer | None:
    """The judge scorer for ``--judge PATH``, or None without it."""
    if path is None:
        return None
    return JudgeScorer(path, n_ctx=ctx_size, n_gpu_layers=gpu_layers, threads=threads)
