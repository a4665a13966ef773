"""``baco eval``: diversity metrics of a generations file, and quality metrics when scorers are named."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Callable, Optional, Sequence

import typer
from rich.progress import track

from ..engine.backend import LoadedModel
from ..engine.chat_prompt import ChatPrompter
from ..metrics.embed import DEFAULT_EMBEDDER
from ..metrics.evaluate import Evaluator, ModelSummary, QualityScorer, summarise
from ..metrics.generations import read_generations
from ..metrics.likelihood import LikelihoodScorer
from ..metrics.report import overall_table, prompt_table, report_document, write_json
from ..engine.prompts import Message
from . import options as opt
from .console import print_json, set_verbosity, show_progress, stderr, stdout
from .scoring import (EVALUATION, LIKELIHOOD_HELP, EmbedderOpt, JudgeOpt, SemanticOpt, choose_embedder,
                      lists_metrics, open_judge)
from .setup import ModelChoice, _read_chat_template, resolve_models

QualityFactory = Callable[[], Sequence[QualityScorer]]
STDOUT = "-"  # --json's value for standard output (what a bare --json means: see app.py)


def run_eval(
    path: Path,
    *,
    semantic: bool | None = None,
    embedder: str = DEFAULT_EMBEDDER,
    quality_scorers: QualityFactory = tuple,
    json_path: Path | None = None,
) -> list[ModelSummary]:
    """Score every record of ``path``, print the tables, optionally write JSON; return the means.

    The file is read (and checked) before any embedding or quality model is loaded.
    """
    records = read_generations(path)
    chosen = choose_embedder(semantic, embedder)
    evaluator = Evaluator(chosen, quality_scorers())
    scoring = track(records, description="Scoring", console=stderr, transient=True, disable=not show_progress())
    scores = [evaluator.score(r) for r in scoring]
    summaries = summarise(scores, evaluator.metrics)
    to_stdout = json_path is not None and str(json_path) == STDOUT
    if not to_stdout:  # JSON on stdout comes alone, for a pipe
        stdout.print(prompt_table(scores, evaluator.metrics))
        stdout.print(overall_table(summaries, evaluator.metrics))
    if json_path is not None:
        document = report_document(path, scores, summaries, evaluator.metrics, chosen.name if chosen else None)
        if to_stdout:
            print_json(document)
        else:
            write_json(json_path, document)
    return summaries


def open_likelihood(choice: ModelChoice, threads: int | None) -> LikelihoodScorer | None:
    """The aligned-likelihood scorer for ``--aligned PATH`` or ``--pair NAME``; None without either."""
    if choice.pair is not None:
        spec = resolve_models(choice).spec  # refuses --pair together with --aligned
        path, template = spec.aligned_path, spec.chat_template
    elif choice.aligned is not None:
        path, template = choice.aligned, _read_chat_template(choice.chat_template_file)
    else:
        return None
    model = LoadedModel(path, n_gpu_layers=choice.gpu_layers)
    prompter = ChatPrompter(model, template)
    return LikelihoodScorer(model, lambda prompt: prompter([Message("user", prompt)]), threads=threads)


@lists_metrics
def eval_command(
    output: Annotated[Path, typer.Argument(
        help="JSONL written by 'baco gen' or 'baco sweep' (NoveltyBench format: id, prompt, model, generations).",
        metavar="OUTPUT.jsonl", show_default=False)],
    json_path: Annotated[Optional[Path], typer.Option(
        "--json", help="Also write every value (per prompt and overall) to this JSON file; with no file (or '-'), "
        "print only the JSON, on stdout.", metavar="[FILE]", show_default=False)] = None,
    semantic: SemanticOpt = None,
    embedder: EmbedderOpt = DEFAULT_EMBEDDER,
    aligned: Annotated[Optional[Path], typer.Option(
        "--aligned", help=f"The aligned (instruct) model GGUF the responses were written for; {LIKELIHOOD_HELP}.",
        show_default=False, rich_help_panel=EVALUATION)] = None,
    pair: Annotated[Optional[str], typer.Option(
        "--pair", help="A pair from models.toml: as --aligned, with the pair's aligned model.",
        show_default=False, rich_help_panel=EVALUATION)] = None,
    chat_template_file: opt.ChatTemplateOpt = None,
    judge: JudgeOpt = None,
    yes: opt.YesOpt = False,
    gpu_layers: opt.GpuLayersOpt = 0,
    threads: opt.ThreadsOpt = None,
    verbose: opt.VerboseOpt = False,
    quiet: opt.QuietOpt = False,
) -> None:
    """Diversity (and with --aligned, --pair or --judge, quality) of each prompt's samples, per prompt and per model."""
    set_verbosity(verbose=verbose, quiet=quiet)
    choice = ModelChoice(None, aligned, pair, chat_template_file, None, gpu_layers, yes)

    def quality() -> list[QualityScorer]:
        scorers = [open_likelihood(choice, threads), open_judge(judge, gpu_layers=gpu_layers, threads=threads)]
        return [s for s in scorers if s is not None]

    run_eval(output, semantic=semantic, embedder=embedder, quality_scorers=quality, json_path=json_path)
