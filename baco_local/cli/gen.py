"""``baco gen``: N routed samples for every prompt of a file, appended to JSONL as each prompt ends."""

from __future__ import annotations

import sys
import time
from contextlib import ExitStack, closing
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..jsonl_file import JsonlWriter, is_regular_output
from ..prompt_file import PromptItem, id_key, read_prompt_file
from ..prompts import Message
from ..records import GEN_HINT, check_resumable, prompt_record, read_existing
from ..run_lock import RunLock
from . import options as opt
from .console import note, stderr
from .setup import open_engine, prepare_run, settings_record


@opt.with_run_options()
def gen_command(
    prompt_file: opt.PromptFileOpt,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="JSONL output, appended per prompt; "
                                                   "a rerun resumes (default: stdout).")] = None,
    n: Annotated[int, typer.Option("-n", "--samples", help="Samples per prompt, decoded in parallel.")] = 1,
    system: Annotated[Optional[str], typer.Option("--system", help="System prompt for every prompt.",
                                                  rich_help_panel=opt.MODEL)] = None,
    *,
    run: opt.RunOptions,
) -> None:
    """Generate N samples per prompt with a router, writing NoveltyBench-style JSONL."""
    if n < 1:
        raise typer.BadParameter("must be at least 1", param_hint="-n")
    resolved, settings = prepare_run(run)
    items = read_prompt_file(prompt_file)
    record_settings = settings_record(settings, resolved, n, run.ctx_size, system)
    with ExitStack() as stack:
        writer, done = _open_output(output, items, record_settings, stack)
        todo = [item for item in items if id_key(item.id) not in done]
        if done:
            note(f"resuming: {len(items) - len(todo)} of {len(items)} prompts already in {output}")
        if not todo:
            return
        engine = open_engine(resolved, run, n_seq=n)
        stack.callback(engine.pair.close)
        stack.callback(engine.close)
        messages_prefix = [Message("system", system)] if system else []
        with _progress() as progress:
            task = progress.add_task("generating", total=len(todo) * n, rate="")
            tokens, started = 0, time.perf_counter()
            for item in todo:
                generation = engine.generate([*messages_prefix, Message("user", item.prompt)], n, settings)
                for _event in generation:
                    tokens += 1
                    if tokens % 16 == 0:
                        rate = tokens / max(time.perf_counter() - started, 1e-9)
                        progress.update(task, rate=f"{rate:.1f} tok/s")
                finished = generation.samples
                writer.write(prompt_record(item, record_settings["model"], finished, record_settings))
                progress.advance(task, n)


def _open_output(output: Path | None, items: list[PromptItem], record_settings: dict,
                 stack: ExitStack) -> tuple[JsonlWriter, set[str]]:
    """The writer for the run and the ids already done. A file output is locked for the whole run
    (``OUTPUT.lock``), checked to hold the same run, and created only at its first record."""
    if output is None:
        return JsonlWriter(None, stream=sys.stdout), set()
    if is_regular_output(output):
        stack.enter_context(RunLock(output.with_name(output.name + ".lock"), output, GEN_HINT))
    existing = read_existing(output)
    check_resumable(output, existing, record_settings, items)
    writer = stack.enter_context(closing(JsonlWriter(output, valid_bytes=existing.valid_bytes)))
    return writer, existing.done

def _progress() -> Progress:
    """A progress bar on stderr (prompts x samples, tokens/s); silent when stderr is not a terminal."""
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(), console=stderr, transient=False, disable=not stderr.is_terminal,
    )
