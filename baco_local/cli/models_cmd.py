"""``baco models``: list the known pairs, pull their files, inspect a model, check a pair.

Also the two helpers ``gen``/``chat`` call before loading anything: :func:`resolve_pair_for_cli`
(``--pair NAME``: find the files, asking before a download on a terminal) and
:func:`check_memory_for_run` (print the memory estimate, refuse when it does not fit).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.prompt import Confirm
from rich.table import Table

from ..compat import check_pair
from ..errors import RegistryError
from ..gguf_file import GGUFSummary, read_gguf, read_token_texts
from ..hub import (Located, ResolvedPair, cache_dir, check_local_paths, download, locate_pair, package_installed,
                   resolve_pair)
from ..memory import MemoryEstimate, available_memory, check_memory_fits, estimate_memory, estimate_model, kv_cells
from ..registry import PairEntry, load_registry
from . import options as opt
from .console import note, stderr, stdout

models_app = typer.Typer(
    name="models",
    help="Model pairs: list them, download them, inspect a model, check that two models fit together.",
    no_args_is_help=True,
)

SamplesOpt = Annotated[int, typer.Option("-n", "--samples", help="Samples decoded in parallel (for the estimate).")]


@models_app.command("list")
def list_command() -> None:
    """The known pairs, and which of their files are already on this machine."""
    registry = load_registry()
    table = Table(box=None, header_style="bold")
    for column in ("pair", "download", "base", "aligned"):
        table.add_column(column, overflow="fold")
    for entry in registry.pairs.values():
        base, aligned = locate_pair(entry)
        table.add_row(entry.name, _download_size(entry), _cell(base), _cell(aligned))
    stdout.print(table)
    note(f"registries: {', '.join(str(p) for p in registry.files)}; Hugging Face cache: {cache_dir()}")


@models_app.command("pull")
def pull_command(name: Annotated[str, typer.Argument(help="A pair from `baco models list`.")]) -> None:
    """Download a pair's files into the Hugging Face cache, then check they share a tokenizer."""
    entry = load_registry().get(name)
    check_local_paths(entry)
    paths = []
    for side, found in zip(("base", "aligned"), locate_pair(entry, assemble=True), strict=True):
        if found.path is not None:
            note(f"{side}: already here ({found.how}): {found.path}")
            paths.append(found.path)
        else:
            note(f"{side}: downloading {found.source.describe()} into {cache_dir()}")
            paths.append(download(found.source, pair_name=name, progress=stderr.is_terminal))
    report = check_pair(paths[0], paths[1])
    for line in report.lines():
        stdout.print(line)
    if not report.ok:
        raise typer.Exit(2)


@models_app.command("info")
def info_command(
    target: Annotated[str, typer.Argument(help="A GGUF file, or a pair from `baco models list`.")],
    ctx_size: opt.CtxSizeOpt = opt.DEFAULT_CTX,
    samples: SamplesOpt = 1,
    max_tokens: opt.MaxTokensOpt = 256,
) -> None:
    """Architecture, size, tokenizer and chat template of a model (or a pair), and a memory estimate."""
    paths = _info_paths(target)
    for path in paths:
        _print_model(path)
    cells = kv_cells(ctx_size, samples, max_tokens)
    if len(paths) == 2:
        estimate = estimate_memory(paths[0], paths[1], cells, samples)
    else:
        estimate = MemoryEstimate((estimate_model(paths[0], cells, samples),), cells, samples)
    for line in estimate.lines():
        stdout.print(line)
    free = available_memory()
    if free is not None:
        verdict = "fits" if estimate.total <= free else "does NOT fit"
        stdout.print(f"available memory: {free / 1024 ** 3:.2f} GiB ({verdict})")


@models_app.command("check")
def check_command(
    base: Annotated[Path, typer.Argument(help="Base model GGUF.")],
    aligned: Annotated[Path, typer.Argument(help="Aligned model GGUF.")],
) -> None:
    """Can these two models share tokens? Exit 0 if yes, 2 if not."""
    report = check_pair(base, aligned)
    for line in report.lines():
        stdout.print(line)
    if not report.ok:
        raise typer.Exit(2)


# --- used by gen and chat ---------------------------------------------------------------------

def resolve_pair_for_cli(name: str, *, assume_yes: bool) -> ResolvedPair:
    """``--pair NAME``: the pair's files; asks before downloading on a terminal, else needs ``--yes``."""
    interactive = sys.stdin.isatty() and stderr.is_terminal
    return resolve_pair(name, allow_download=assume_yes, confirm=_ask if interactive else None,
                        progress=stderr.is_terminal)


def check_memory_for_run(base: Path, aligned: Path, *, n_cells: int, n_seq: int,
                         ignore_limit: bool = False) -> MemoryEstimate:
    """Print the memory estimate for a run, then refuse (MemoryBudgetError) if it does not fit."""
    estimate = estimate_memory(base, aligned, n_cells, n_seq)
    note(estimate.lines()[-1])
    check_memory_fits(estimate, override=ignore_limit)
    return estimate


# --- helpers ------------------------------------------------------------------------------------

def _ask(question: str) -> bool:
    return Confirm.ask(question, console=stderr, default=True)


def _cell(found: Located) -> str:
    """A file's name and where it is: 'cache, 292 MB', 'in package', 'missing'."""
    name = found.path.name if found.path is not None else found.source.file
    if found.present:
        status = f"{found.how}, {(found.size or 0) / 1e6:.0f} MB"
    else:
        status = "in package" if package_installed(found.source) else "missing"
    return f"{name}\n[dim]{status}[/dim]"


def _download_size(entry: PairEntry) -> str:
    sizes = [s for s in (entry.base.size_mb, entry.aligned.size_mb) if s is not None]
    return f"~{sum(sizes) / 1000:.1f} GB" if len(sizes) == 2 else "?"


def _info_paths(target: str) -> list[Path]:
    """A file, or a pair's two files (no download: a missing file names the pull command)."""
    path = Path(target).expanduser()
    if path.is_file():
        return [path]
    registry = load_registry()
    if target not in registry.pairs:
        raise RegistryError(f"'{target}' is neither a file nor a known pair; known pairs: "
                            f"{', '.join(sorted(registry.pairs))}")
    check_local_paths(registry.get(target))
    found = locate_pair(registry.get(target), assemble=True)
    missing = [f.source.describe() for f in found if not f.present]
    if missing:
        raise RegistryError(f"pair '{target}' is not downloaded ({', '.join(missing)}); "
                            f"run `baco models pull {target}`")
    return [f.path for f in found if f.path is not None]


def _print_model(path: Path) -> None:
    """One model's facts, as a two-column table on stdout."""
    summary = read_gguf(path)
    table = Table(show_header=False, box=None, title=str(path), title_justify="left")
    table.add_row("architecture", summary.architecture)
    table.add_row("parameters", _count(summary.n_params))
    table.add_row("quantisation", summary.quantization or "unknown")
    table.add_row("file size", f"{summary.file_size / 1e6:.0f} MB")
    table.add_row("vocabulary", f"{summary.n_vocab} tokens ({summary.tokenizer_model})")
    table.add_row("context length", str(summary.context_length))
    table.add_row("chat template", "yes" if summary.chat_template else "no")
    table.add_row("end of generation", _eog_tokens(summary) or "none stated")
    stdout.print(table)


def _eog_tokens(summary: GGUFSummary) -> str:
    """The end-of-generation tokens the file names (llama.cpp may add a few by their text)."""
    ids = dict.fromkeys(t for t in (summary.eos_id, summary.eot_id) if t is not None)
    texts = read_token_texts(summary.path) if ids else []
    return ", ".join(f"{texts[t]} ({t})" for t in ids)


def _count(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}".replace(".00", "")
    return str(n)
