"""``baco eval``: diversity (and, when scorers are given, quality) metrics of a generations file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional, Sequence

import typer
from rich.markup import escape
from rich.progress import track

from ..metrics.embed import DEFAULT_EMBEDDER, Embedder, embedder_requirements, load_embedder
from ..metrics.evaluate import Evaluator, ModelSummary, QualityScorer, summarise
from ..metrics.extras import EXTRA, INSTALL_HINT, available
from ..metrics.generations import read_generations
from ..metrics.report import overall_table, prompt_table, report_document, write_json
from .console import note, stderr, stdout


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


def run_eval(
    path: Path,
    *,
    semantic: bool | None = None,
    embedder: str = DEFAULT_EMBEDDER,
    quality_scorers: Sequence[QualityScorer] = (),
    json_path: Path | None = None,
) -> list[ModelSummary]:
    """Score every record of ``path``, print the tables, optionally write JSON; return the means.

    The file is read (and checked) before any embedding model is loaded.
    """
    records = read_generations(path)
    chosen = choose_embedder(semantic, embedder)
    evaluator = Evaluator(chosen, quality_scorers)
    scoring = track(records, description="Scoring", console=stderr, transient=True,
                    disable=not stderr.is_terminal)
    scores = [evaluator.score(r) for r in scoring]
    summaries = summarise(scores, evaluator.metrics)
    stdout.print(prompt_table(scores, evaluator.metrics))
    stdout.print(overall_table(summaries, evaluator.metrics))
    if json_path is not None:
        write_json(json_path, report_document(path, scores, summaries, evaluator.metrics,
                                              chosen.name if chosen else None))
    return summaries


def eval_command(
    output: Annotated[Path, typer.Argument(
        help="JSONL written by 'baco gen' (NoveltyBench format: id, prompt, model, generations).",
        metavar="OUTPUT.jsonl", show_default=False)],
    json_path: Annotated[Optional[Path], typer.Option(
        "--json", help="Also write every value (per prompt and overall) to this JSON file.",
        show_default=False)] = None,
    semantic: Annotated[Optional[bool], typer.Option(
        "--semantic/--no-semantic",
        help=escape(f"Embedding-based metrics. Default: on when '{EXTRA}' is installed."),
        show_default=False)] = None,
    embedder: Annotated[str, typer.Option(
        "--embedder", help="'minilm' (all-MiniLM-L6-v2), a .gguf embedding model, or a "
                           "sentence-transformers directory.")] = DEFAULT_EMBEDDER,
) -> None:
    """Diversity of each prompt's samples, per prompt and averaged per model."""
    # Quality scorers (the aligned model's log-likelihood, ...) are to be built from options here.
    run_eval(output, semantic=semantic, embedder=embedder, quality_scorers=(), json_path=json_path)
