"""``baco gen --parallel P``: every prompt's samples through one :class:`Scheduler`, records written
as each prompt's last sample finishes (so they may come out of input order); and the default P."""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Sequence

from ..engine.concurrent import ChoiceCache
from ..engine.loop import GenerationSettings
from ..engine.pair import ModelPair
from ..engine.prompts import Message
from ..engine.scheduler import Request, RequestFailed, SampleFinished, Scheduler
from ..engine.step import Sample, TokenEvent
from ..engine.backend import MAX_SEQUENCES, check_sequences
from ..errors import BacoError, ContextOverflowError, UsageError
from ..models.memory import kv_cells, largest_fitting
from ..runs.prompt_file import PromptItem, id_key
from .console import note
from .options import DEFAULT_CTX, RunOptions
from .setup import ResolvedChoice

DEFAULT_PARALLEL = 8  # sequences decoded together when --parallel is left out (bench/parallel.py)


def check_parallel(n: int, parallel: int) -> int:
    """``--parallel`` as given, if it is 1 (one prompt at a time) or holds every sample of a prompt,
    within llama.cpp's limit (LLAMA_MAX_SEQ); otherwise UsageError."""
    check_sequences(parallel, "--parallel")
    if parallel != 1 and not n <= parallel:
        also = "; --parallel 1 runs one prompt at a time" if n > 1 else ""
        raise UsageError(f"--parallel must be between -n ({n}) and {MAX_SEQUENCES}, got {parallel}{also}")
    return parallel


def context_size(resolved: ResolvedChoice, run: RunOptions) -> int:
    """The context each sequence gets: -c capped by the models, else the default."""
    return resolved.ctx_size or run.ctx_size or DEFAULT_CTX


def default_parallel(resolved: ResolvedChoice, run: RunOptions, n: int, n_prompts: int) -> int:
    """P when ``--parallel`` is left out: 1 (one prompt at a time: draft-and-verify, faster for a
    lone sequence) for one prompt of one sample or a fixed ``--draft K``; otherwise
    :data:`DEFAULT_PARALLEL` sequences, no more than the prompts' samples, at least ``n``, and as
    many as the memory estimate fits (a note says so when it caps P)."""
    wanted = max(n, min(DEFAULT_PARALLEL, n * n_prompts))
    if wanted == 1 or run.draft is not None:
        return 1
    spec = resolved.spec
    if run.ignore_memory or spec.base_gpu_layers != 0 or spec.aligned_gpu_layers != 0:
        return wanted
    fitting = largest_fitting(spec.base_path, spec.aligned_path, context_size(resolved, run), run.max_tokens,
                              n, wanted)
    if fitting < wanted:
        note(f"--parallel {fitting}, not {wanted}: the memory estimate fits no more sequences "
             "(give --parallel P to choose)")
    return fitting


def open_scheduler(resolved: ResolvedChoice, run: RunOptions, parallel: int) -> Scheduler:
    """Check memory for ``parallel`` sequences, then load the pair and make its scheduler."""
    from ..catalog.hub import baco_cache_dir
    from .models_cmd import check_memory_for_run

    spec = resolved.spec
    ctx_size = context_size(resolved, run)
    n_cells = kv_cells(ctx_size, parallel, run.max_tokens)
    offloaded = spec.base_gpu_layers != 0 or spec.aligned_gpu_layers != 0
    check_memory_for_run(spec.base_path, spec.aligned_path, n_cells=n_cells, n_seq=parallel,
                         ignore_limit=run.ignore_memory or offloaded)
    pair = ModelPair(spec)
    try:
        return Scheduler(pair, parallel=parallel, ctx_size=ctx_size, n_cells=n_cells, threads=run.threads,
                         concurrency=run.concurrency, threads_base=run.threads_base,
                         threads_aligned=run.threads_aligned,
                         choice_cache=ChoiceCache(baco_cache_dir() / "concurrency.json"))
    except BaseException:
        pair.close()
        raise


def run_parallel(scheduler: Scheduler, items: Sequence[PromptItem], n: int, settings: GenerationSettings,
                 prefix: list[Message], write: Callable[[PromptItem, list[Sample]], None],
                 on_token: Callable[[], None], on_sample: Callable[[], None]) -> None:
    """Generate ``n`` samples of every item; ``write`` gets each prompt's samples as soon as they are done.

    A prompt that cannot run, or a ``write`` that fails (a full disk), ends the run after that step
    with its error; records already written stay.
    """
    failures: list[BacoError] = []

    def handler(item: PromptItem) -> Callable[[object], None]:
        finished: list[Sample] = []

        def on_event(event: object) -> None:
            if isinstance(event, TokenEvent):
                on_token()
            elif isinstance(event, SampleFinished):
                finished.append(event.sample)
                on_sample()
                if event.error:
                    failures.append(ContextOverflowError(f"prompt {item.id}: {event.error}"))
                elif len(finished) == n:
                    try:  # the scheduler would only cancel this request: the run must stop
                        write(item, sorted(finished, key=lambda s: s.index))
                    except BacoError as exc:
                        failures.append(exc)
            elif isinstance(event, RequestFailed):
                failures.append(ContextOverflowError(f"prompt {item.id}: {event.message}"))
        return on_event

    for item in items:
        item_settings = dataclasses.replace(settings, prompt_key=id_key(item.id))  # the seed rule of engine/seeds.py
        scheduler.submit(Request([*prefix, Message("user", item.prompt)], item_settings, n), handler(item))
    while scheduler.step():
        if failures:
            raise failures[0]
    if failures:
        raise failures[0]


class Rate:
    """Tokens per second since the start, for the progress bar."""

    def __init__(self) -> None:
        self.tokens, self.started = 0, time.perf_counter()

    def tick(self) -> bool:
        """Count one token; True every 16 tokens (time to refresh the display)."""
        self.tokens += 1
        return self.tokens % 16 == 0

    def text(self) -> str:
        return f"{self.tokens / max(time.perf_counter() - self.started, 1e-9):.1f} tok/s"
