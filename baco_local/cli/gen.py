"""``baco gen``: N routed samples for every prompt of a file, appended to JSONL as each prompt ends."""

from __future__ import annotations

import dataclasses
import sys
import time
from contextlib import ExitStack, closing
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..errors import ContextOverflowError, UsageError
from ..runs.jsonl_file import JsonlWriter, is_regular_output
from ..runs.prompt_file import PromptItem, id_key, read_prompts, single_prompt
from ..engine.backend import check_sequences
from ..engine.prompts import Message
from ..engine.seeds import SEED_RULE
from .shard import select_shard
from ..runs.records import GEN_HINT, ExistingOutput, check_resumable, prompt_record, read_existing
from ..runs.run_lock import RunLock
from . import options as opt
from .console import note, show_progress, stderr
from .gen_parallel import Rate, check_parallel, default_parallel, open_scheduler, run_parallel
from .gen_ray import RayJob, generate_on_ray
from ..runs.ray_gen import PoolShape, idle_actors
from .setup import open_engine, option_text, prepare_run, resolve_run, settings_record, settle_seed


@opt.with_run_options()
def gen_command(
    prompt_file: opt.PromptFileOpt = None,
    prompt: Annotated[Optional[str], typer.Option("--prompt", "-p", help="A single prompt, instead of -f (its id "
                                                  "is 1).", rich_help_panel=opt.PROMPTS)] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="JSONL output, appended per prompt; "
                                                   "a rerun resumes (default: stdout).")] = None,
    n: Annotated[int, typer.Option("-n", "--samples", help="Samples per prompt, decoded in parallel (the number "
                                   "of samples, as in the OpenAI API and NoveltyBench; llama.cpp's -n is "
                                   "--max-tokens here).")] = 1,
    system: opt.SystemOpt = None,
    shard: Annotated[Optional[str], typer.Option("--shard", metavar="I/N", help="Only the prompts of shard I of N "
                                                 "(1..N, by a hash of the id; for Slurm arrays, then baco merge).",
                                                 rich_help_panel=opt.PROMPTS)] = None,
    parallel: Annotated[Optional[int], typer.Option("--parallel", "-np", help="Decode up to P sequences of "
                                                    "different prompts together (continuous batching); "
                                                    "records come out as prompts finish. 1: one prompt at "
                                                    "a time. Default: 8, capped by the memory check, at least "
                                                    "-n; 1 for a lone prompt with -n 1 or with --draft K.",
                                                    show_default=False)] = None,
    ray: Annotated[Optional[str], typer.Option("--ray", metavar="ADDRESS", help="Run on a Ray cluster (Ray Data): "
                                               "auto (the running one), local (start one here), ray://HOST:PORT "
                                               "or HOST:PORT; records are appended here as they arrive.",
                                               rich_help_panel=opt.RAY)] = None,
    ray_actors: Annotated[int, typer.Option("--ray-actors", help="Ray actors, each loading the pair once.",
                                            rich_help_panel=opt.RAY)] = 1,
    ray_cpus: Annotated[float, typer.Option("--ray-cpus", help="CPUs per actor (its threads, unless -t).",
                                            rich_help_panel=opt.RAY)] = 1.0,
    ray_gpus: Annotated[float, typer.Option("--ray-gpus", help="GPUs per actor (with -ngl).",
                                            rich_help_panel=opt.RAY)] = 0.0,
    ray_batch_size: Annotated[int, typer.Option("--ray-batch-size", help="Prompts per Ray batch (the unit that "
                                                "is retried and comes back at once).", rich_help_panel=opt.RAY)] = 16,
    *,
    run: opt.RunOptions,
) -> None:
    """Generate N samples per prompt with a router, writing NoveltyBench-style JSONL."""
    if n < 1:
        raise typer.BadParameter("must be at least 1", param_hint="-n")
    check_sequences(n)
    if parallel is not None:
        check_parallel(n, parallel)
        if parallel > 1 and run.draft is not None:
            raise UsageError("--draft K drafts one prompt at a time and --parallel above 1 runs the step loop: "
                             "give one of them")
    plan, settings = prepare_run(run)
    system = option_text(run, system, "--system")
    items = select_shard(_prompts(prompt_file, prompt), shard)
    with ExitStack() as stack:
        existing = _lock_and_read(output, stack)
        resolved = resolve_run(plan, run)
        recorded = existing.settings[0] if existing and existing.settings else None
        settings = settle_seed(settings, run, recorded, output)
        record_settings = {**settings_record(settings, resolved, n, system), "seed_rule": SEED_RULE}
        writer, done = _writer(output, existing, items, record_settings, stack)
        todo = [item for item in items if id_key(item.id) not in done]
        if done:
            note(f"resuming: {len(items) - len(todo)} of {len(items)} prompts already in {output}")
        if not todo:
            return
        if ray is not None:
            ray_parallel = max(n, parallel or n)
            _generate_ray(ray, PoolShape(ray_actors, ray_cpus, ray_gpus, ray_batch_size),
                          RayJob(resolved, run, settings, n, ray_parallel, system,
                                 {**record_settings, "parallel": ray_parallel}), todo, writer)
            return
        if parallel is None:
            parallel = default_parallel(resolved, run, n, len(items))  # the same P when a rerun resumes
        record_settings = {**record_settings, "parallel": parallel}  # how many ran together: not compared on resume
        if parallel > 1:
            _generate_parallel(resolved, run, settings, todo, n, parallel, system, writer, record_settings)
            return
        engine = open_engine(resolved, run, n_seq=n)
        stack.callback(engine.pair.close)
        stack.callback(engine.close)
        messages_prefix = [Message("system", system)] if system else []
        _check_prompts(engine.check_prompt, messages_prefix, todo)
        with _progress() as progress:
            task = progress.add_task("generating", total=len(todo) * n, rate="")
            tokens, started = 0, time.perf_counter()
            for item in todo:
                generation = engine.generate([*messages_prefix, Message("user", item.prompt)], n,
                                             dataclasses.replace(settings, prompt_key=id_key(item.id)))
                for _event in generation:
                    tokens += 1
                    if tokens % 16 == 0:
                        rate = tokens / max(time.perf_counter() - started, 1e-9)
                        progress.update(task, rate=f"{rate:.1f} tok/s")
                finished = generation.samples
                ran = {**record_settings, "concurrency": engine.concurrency.record()}  # never changes tokens
                writer.write(prompt_record(item, record_settings["model"], finished, ran))
                progress.advance(task, n)


def _generate_parallel(resolved, run: opt.RunOptions, settings, todo: list[PromptItem], n: int, parallel: int,
                       system: str | None, writer: JsonlWriter, record_settings: dict) -> None:
    """The prompts through one scheduler of ``parallel`` sequences (``--parallel``)."""
    check_parallel(n, parallel)
    scheduler = open_scheduler(resolved, run, parallel)
    prefix = [Message("system", system)] if system else []
    try:
        _check_prompts(scheduler.check_prompt, prefix, todo)
        with _progress() as progress:
            task = progress.add_task("generating", total=len(todo) * n, rate="")
            rate = Rate()

            def on_token() -> None:
                if rate.tick():
                    progress.update(task, rate=rate.text())

            def write(item: PromptItem, samples: list) -> None:
                ran = {**record_settings, "concurrency": scheduler.concurrency.record()}  # never changes tokens
                writer.write(prompt_record(item, record_settings["model"], samples, ran))

            run_parallel(scheduler, todo, n, settings, prefix, write, on_token, lambda: progress.advance(task, 1))
    finally:
        scheduler.close()
        scheduler.pair.close()


def _check_prompts(check: Callable[[list[Message]], object], prefix: list[Message], todo: list[PromptItem]) -> None:
    """Refuse a prompt too long for the context before any is generated, naming it."""
    for item in todo:
        try:
            check([*prefix, Message("user", item.prompt)])
        except ContextOverflowError as exc:
            raise ContextOverflowError(f"prompt {item.id}: {exc}") from None


def _generate_ray(address: str, shape: PoolShape, job: RayJob, todo: list[PromptItem], writer: JsonlWriter) -> None:
    """The prompts on a Ray cluster (``--ray``); records appended here as they come back."""
    if idle := idle_actors(len(todo), shape):
        note(idle)
    with _progress() as progress:
        task = progress.add_task("generating on Ray", total=len(todo), rate="")
        tokens, started = 0, time.perf_counter()

        def on_prompt(count: int) -> None:
            nonlocal tokens
            tokens += count
            rate = tokens / max(time.perf_counter() - started, 1e-9)
            progress.update(task, advance=1, rate=f"{rate:.1f} tok/s across the cluster")

        generate_on_ray(address, shape, job, todo, writer.write, on_prompt)


def _lock_and_read(output: Path | None, stack: ExitStack) -> ExistingOutput | None:
    """What a file output already holds; the file is locked for the whole run (``OUTPUT.lock``)."""
    if output is None:
        return None
    if is_regular_output(output):
        stack.enter_context(RunLock(output.with_name(output.name + ".lock"), output, GEN_HINT))
    return read_existing(output)


def _writer(output: Path | None, existing: ExistingOutput | None, items: list[PromptItem], record_settings: dict,
            stack: ExitStack) -> tuple[JsonlWriter, set[str]]:
    """The writer for the run and the ids already done. A file output is checked to hold the same
    run, and created only at its first record."""
    if output is None or existing is None:
        return JsonlWriter(None, stream=sys.stdout), set()
    check_resumable(output, existing, record_settings, items)
    writer = stack.enter_context(closing(JsonlWriter(output, valid_bytes=existing.valid_bytes)))
    return writer, existing.done


def _prompts(prompt_file: Path | None, prompt: str | None) -> list[PromptItem]:
    """The prompts of ``-f FILE`` (``-f -``: standard input) or ``-p TEXT``: exactly one of them."""
    if (prompt_file is None) == (prompt is None):
        raise UsageError("give the prompts with -f FILE (-f - reads standard input) or one prompt with -p TEXT")
    if prompt is not None:
        return single_prompt(prompt)
    return read_prompts(prompt_file, sys.stdin.buffer)


def _progress() -> Progress:
    """A progress bar on stderr (prompts x samples, tokens/s); silent when stderr is not a terminal or with -q."""
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(), console=stderr, transient=False, disable=not show_progress(),
    )
