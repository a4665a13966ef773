"""``baco sweep``: a grid of methods and knob values on one loaded pair, scored, summarised and plotted.

The run folder's layout is described in :mod:`baco_local.runs.sweep_folder`. Three phases: generate
the records not yet in the folder (prompt by prompt, every operating point in turn), score the
records not yet scored, then write the per-point means, the coverage/dominance summary and the
plots, and print the summary table.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Annotated, Any, Union

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..errors import UsageError
from ..runs.jsonl_file import JsonlWriter
from ..models.gguf_file import read_gguf
from ..engine.loop import Engine
from ..metrics.embed import DEFAULT_EMBEDDER
from ..metrics.evaluate import Evaluator, PromptScores
from ..metrics.extras import INSTALL_HINT, PLOT_MODULES, available
from ..metrics.generations import read_generations
from ..metrics.judge import JudgeScorer
from ..metrics.likelihood import LikelihoodScorer
from ..metrics.report import write_json
from ..engine.pair import ModelPair
from ..runs.prompt_file import PromptItem, id_key, read_prompts
from ..engine.backend import check_sequences
from ..engine.prompts import Message
from ..runs.records import RESUME_KEYS, prompt_record
from ..runs.sweep import BASELINES, KnobLists, OperatingPoint, Task, build_grid, pending_tasks
from ..runs.sweep_folder import RunFolder, score_line
from ..runs.sweep_prompting import point_record_extra, point_samples
from ..metrics.registry import METRICS
from ..runs.sweep_report import PLOT_METRICS, SweepResult, plot_sweep, points_document, summarise_sweep, summary_document, summary_table
from . import options as opt
from .console import note, show_progress, stderr, stdout
from .scoring import EmbedderOpt, JudgeOpt, SemanticOpt, choose_embedder, open_judge
from .setup import ResolvedChoice, model_files, open_engine, prepare_run, resolve_run, settings_record, settle_seed

GRID = opt.GRID
Scorer = Union[LikelihoodScorer, JudgeScorer]
_DEFAULT = KnobLists()


def _joined(values: tuple) -> str:
    return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def _list_option(flag: str, help_text: str) -> Any:
    return typer.Option(flag, help=help_text, rich_help_panel=GRID)


RoutersOpt = Annotated[str, _list_option("--routers", "BACo routers to sweep, comma-separated, or 'none'.")]
GammasOpt = Annotated[str, _list_option("--gammas", "γ values for the probability routers (p, p-punc, p-fc, random).")]
EntropyGammasOpt = Annotated[str, _list_option("--entropy-gammas", "γ values (nats) for the entropy routers (h, h-punc).")]
BaselinesOpt = Annotated[str, _list_option("--baselines", f"Baselines to sweep: {', '.join(BASELINES)}, or 'none'.")]
TempsOpt = Annotated[str, _list_option("--temps", "Temperatures for the aligned-only, base-only and prompting "
                                       "baselines (the other methods sample with --temp and --min-p).")]
MinPsOpt = Annotated[str, _list_option("--min-ps", "Min-p values for the aligned-only and base-only baselines "
                                       "(each with every temperature).")]
NudgingGammasOpt = Annotated[str, _list_option("--nudging-gammas", "γ values for Nudging.")]
XtcProbabilitiesOpt = Annotated[str, _list_option("--xtc-probabilities", "XTC probabilities for the xtc baseline "
                                                  "(the aligned model, at --xtc-threshold).")]
TopNSigmasOpt = Annotated[str, _list_option("--top-nsigmas", "n values for the top-nsigma baseline (the aligned model).")]
PlotMetricsOpt = Annotated[str, typer.Option(
    "--plot-metrics", help="Diversity metrics of the frontier figure's panels, comma-separated (each against the "
    "quality metric).", rich_help_panel=opt.EVALUATION)]
WeightsOpt = Annotated[str, _list_option("--ensemble-weights", "Weights w of the ensemble w·P_base + (1 − w)·P_aligned.")]


def parse_names(text: str, option: str) -> tuple[str, ...]:
    """A comma-separated list of names; 'none' is the empty list."""
    if text.strip().lower() == "none":
        return ()
    names = tuple(part.strip() for part in text.split(","))
    if not all(names):
        raise UsageError(f"{option}: expected a comma-separated list without empty items (or 'none')")
    return names


def parse_floats(text: str, option: str) -> tuple[float, ...]:
    """A comma-separated list of numbers."""
    parts = [part.strip() for part in text.split(",")]
    try:
        return tuple(float(part) for part in parts)
    except ValueError:
        raise UsageError(f"{option}: expected comma-separated numbers, got {text!r}") from None


SWEEP_HELPS = {"draft": "Fixed draft length K for draft-and-verify (default: the step loop, faster for "
                         "several samples).",
               "seed": "Random seed (-1 = random, recorded in sweep.json); sample i of every point uses seed + i."}


@opt.with_run_options(routing=False, helps=SWEEP_HELPS)
def sweep_command(
    prompt_file: opt.PromptFileOpt,
    run_dir: Annotated[Path, typer.Option("--output", "-o", help="Run folder (made if missing); running the same "
                                          "command again continues where it stopped.")],
    n: Annotated[int, typer.Option("-n", "--samples", help="Samples per prompt and operating point "
                                   "(at least 2: diversity compares them).")] = 4,
    routers: RoutersOpt = _joined(_DEFAULT.routers),
    gammas: GammasOpt = _joined(_DEFAULT.gammas),
    entropy_gammas: EntropyGammasOpt = _joined(_DEFAULT.entropy_gammas),
    baselines: BaselinesOpt = _joined(_DEFAULT.baselines),
    temps: TempsOpt = _joined(_DEFAULT.temps),
    min_ps: MinPsOpt = _joined(_DEFAULT.min_ps),
    nudging_gammas: NudgingGammasOpt = _joined(_DEFAULT.nudging_gammas),
    ensemble_weights: WeightsOpt = _joined(_DEFAULT.ensemble_weights),
    xtc_probabilities: XtcProbabilitiesOpt = _joined(_DEFAULT.xtc_probabilities),
    top_nsigmas: TopNSigmasOpt = _joined(_DEFAULT.top_nsigmas),
    semantic: SemanticOpt = None,
    embedder: EmbedderOpt = DEFAULT_EMBEDDER,
    judge: JudgeOpt = None,
    plot_metrics: PlotMetricsOpt = ",".join(PLOT_METRICS),
    *,
    run: opt.RunOptions,
) -> None:
    """Sweep a grid of methods and report their diversity-quality frontier.

    Runs every method of the grid on the prompts (models loaded once), scores each operating point
    with the metrics `baco eval --help` lists, and reports each method's coverage and dominance of
    the diversity-quality frontier. The quality axis is aligned-loglik, and judge with --judge.
    """
    if n < 2:
        raise UsageError(f"-n must be at least 2 (diversity compares a prompt's samples), got {n}")
    check_sequences(n)
    plan, shared = prepare_run(run)
    knobs = KnobLists(
        routers=parse_names(routers, "--routers"), gammas=parse_floats(gammas, "--gammas"),
        entropy_gammas=parse_floats(entropy_gammas, "--entropy-gammas"),
        baselines=parse_names(baselines, "--baselines"), temps=parse_floats(temps, "--temps"),
        min_ps=parse_floats(min_ps, "--min-ps"), nudging_gammas=parse_floats(nudging_gammas, "--nudging-gammas"),
        ensemble_weights=parse_floats(ensemble_weights, "--ensemble-weights"),
        xtc_probabilities=parse_floats(xtc_probabilities, "--xtc-probabilities"),
        top_nsigmas=parse_floats(top_nsigmas, "--top-nsigmas"))
    build_grid(knobs, shared)  # refuse a bad grid now; it is built below with the seed settled
    panels = parse_plot_metrics(plot_metrics)
    assert prompt_file is not None  # a required option: typer refuses the command without it
    items = read_prompts(prompt_file, sys.stdin.buffer)
    chosen_embedder = choose_embedder(semantic, embedder)  # fail now rather than after generating
    if judge is not None:
        read_gguf(judge)  # a missing or malformed judge file shows before the models are looked for
    resolved = resolve_run(plan, run)
    folder = RunFolder(run_dir)
    points = build_grid(knobs, settle_seed(shared, run, folder.recorded_settings(), folder.spec))
    files = model_files(resolved.spec)
    record_settings = {p.id: point_settings(p, resolved, n, files) for p in points}
    with closing(folder):  # the folder stays locked until the sweep ends
        folder.open(grid_spec(record_settings, resolved))
        if not available(PLOT_MODULES):
            note(f"plots skipped: {INSTALL_HINT}")
        done = folder.done(items)
        tasks = pending_tasks(items, points, done)
        if done:
            note(f"resuming: {len(points) * len(items) - len(tasks)} of {len(points) * len(items)} records "
                 f"already in {folder.generations}")
        scorers: list[Scorer] = []
        engine = open_engine(resolved, run, n_seq=n)
        try:
            scorers.append(likelihood_scorer(engine.pair, run.threads))
            judge_scorer = open_judge(judge, gpu_layers=run.gpu_layers, threads=run.threads,
                                      ctx_size=resolved.ctx_size or opt.DEFAULT_CTX)
            scorers.extend([judge_scorer] if judge_scorer else [])
            with closing(folder.appender(folder.generations)) as writer:
                generate(engine, tasks, n, record_settings, writer)
            engine.close()  # free the generation contexts before scoring
            evaluator = Evaluator(chosen_embedder, scorers)
            scores = score(folder, items, points, evaluator, judge)
        finally:
            for scorer in scorers:
                scorer.close()  # before the models they run on
            engine.close()
            engine.pair.close()
        report(folder, summarise_sweep(points, scores, evaluator.metrics), panels)


def point_settings(point: OperatingPoint, resolved: ResolvedChoice, n: int,
                   files: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The settings written into each of a point's records (``files``: the model files' identity)."""
    return {**settings_record(point.settings, resolved, n, files=files), "model": f"{point.id}:{resolved.label}",
            "point": point.id, "method": point.method, "knobs": dict(point.knobs),
            "ensemble": point.settings.ensemble, **point_record_extra(point)}


def grid_spec(record_settings: dict[str, dict[str, Any]], resolved: ResolvedChoice) -> dict[str, Any]:
    """What a run folder must have been started with for a rerun to continue it."""
    keys = [k for k in RESUME_KEYS if k not in ("model", "model_files")]
    files = next(iter(record_settings.values()))["model_files"]
    return {"models": resolved.label, "model_files": files, "base_template": resolved.spec.base_template,
            "points": {point: {k: settings[k] for k in [*keys, "prompting"] if k in settings}
                       for point, settings in record_settings.items()}}


def likelihood_scorer(pair: ModelPair, threads: int | None) -> LikelihoodScorer:
    """The aligned-likelihood scorer on the sweep's own aligned model."""
    return LikelihoodScorer(pair.aligned, lambda prompt: pair.aligned_prompt([Message("user", prompt)]),
                            threads=threads)


def generate(engine: Engine, tasks: list[Task], n: int, record_settings: dict[str, dict[str, Any]],
             writer: JsonlWriter) -> None:
    """Generate and append one record per task, with a progress bar (samples, tokens/s)."""
    if not tasks:
        return
    with progress_bar() as progress:
        bar = progress.add_task("generating", total=len(tasks) * n, rate="")
        started = time.perf_counter()
        counted = [0]

        def on_token() -> None:
            counted[0] += 1

        for task in tasks:
            progress.update(bar, description=escape(f"{task.point.id} · prompt {task.item.id}"))
            samples = point_samples(engine, task.point, task.item.prompt, n, on_token)
            rate = counted[0] / max(time.perf_counter() - started, 1e-9)
            writer.write(prompt_record(task.item, task.point.id, samples, record_settings[task.point.id]))
            progress.update(bar, advance=n, rate=f"{rate:.1f} tok/s")


def scorer_signature(evaluator: Evaluator, judge: Path | None) -> str:
    """A short hash of what scores records (metrics, embedder, judge): cached values are reused only
    under the same one."""
    described = json.dumps({"metrics": [m.name for m in evaluator.metrics],
                            "embedder": evaluator.embedder.name if evaluator.embedder else None,
                            "judge": str(judge) if judge else None})
    return hashlib.sha256(described.encode("utf-8")).hexdigest()[:16]


def score(folder: RunFolder, items: list[PromptItem], points: list[OperatingPoint], evaluator: Evaluator,
          judge: Path | None) -> list[PromptScores]:
    """Every current record's metric values: cached ones from scores.jsonl, the others computed and
    appended there."""
    wanted = {(p.id, id_key(item.id)) for p in points for item in items}
    records = [r for r in read_generations(folder.generations) if (r.model, r.id) in wanted]
    signature = scorer_signature(evaluator, judge)
    cached = folder.cached_scores(signature)
    scores = []
    with progress_bar() as progress, closing(folder.appender(folder.scores)) as writer:
        bar = progress.add_task("scoring", total=len(records), rate="")
        for record in records:
            key = (record.model, record.id)
            if key not in cached:
                cached[key] = evaluator.score(record).values
                writer.write(score_line(key, signature, cached[key]))
            scores.append(PromptScores(record, cached[key]))
            progress.advance(bar)
    return scores


def parse_plot_metrics(text: str) -> tuple[str, ...]:
    """``--plot-metrics``: diversity metrics by name."""
    names = parse_names(text, "--plot-metrics")
    for name in names:
        metric = METRICS.get(name)
        if metric is None or metric.group == "quality":
            choices = ", ".join(m.name for m in METRICS.values() if m.group != "quality")
            raise UsageError(f"--plot-metrics: '{name}' is not a diversity metric; choose from {choices}")
    if not names:
        raise UsageError("--plot-metrics needs at least one metric")
    return names


def report(folder: RunFolder, result: SweepResult, panels: tuple[str, ...] = PLOT_METRICS) -> None:
    """Write points.json, summary.json and the plots; print the summary table."""
    write_json(folder.points, points_document(result))
    write_json(folder.summary, summary_document(result))
    stdout.print(summary_table(result))
    if available(PLOT_MODULES):
        measured = {m.name for m in result.metrics}
        missing = [name for name in panels if name not in measured]
        if missing:
            note(f"plot: {', '.join(missing)} not measured in this run (semantic metrics need the embedder): "
                 "no panel for it")
        for path in plot_sweep(result, lambda metric, primary: folder.plot(metric.name, primary), panels):
            note(f"plot: {path}")
    note(f"results in {folder.path}: generations.jsonl, points.json, summary.json")


def progress_bar() -> Progress:
    """A progress bar on stderr; silent when stderr is not a terminal, or with -q."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), console=stderr,
                    disable=not show_progress())
