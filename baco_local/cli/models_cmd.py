"""``baco models``: list the known pairs, pull their files, inspect a model, check a pair.

Also the helpers ``gen``/``chat``/``sweep`` call before loading anything: :func:`resolve_pair_for_cli`
(``--pair NAME``: find the files, asking before a download on a terminal), :func:`context_for`
(the context the models allow) and :func:`check_memory_for_run` (print the memory estimate,
refuse when it does not fit). ``--json`` on list, info and check prints stable keys instead.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Sequence

import typer
from rich.prompt import Confirm
from rich.table import Table

from ..models.compat import CompatReport, Vocabulary, check_pair
from ..errors import RegistryError
from ..models.gguf_file import GGUFSummary, read_gguf, read_token_texts
from ..catalog.hub import (Located, ResolvedPair, cache_dir, check_local_paths, download, locate_pair, package_installed,
                   resolve_pair)
from ..models.memory import (MemoryEstimate, available_memory, check_ctx_size, check_memory_fits, effective_context,
                      estimate_memory, estimate_model, kv_cells)
from ..catalog.registry import PairEntry, load_registry
from . import options as opt
from .console import note, print_json, stderr, stdout
from .help import BacoCommand, BacoGroup

models_app = typer.Typer(
    name="models",
    cls=BacoGroup,
    help="Model pairs: list them, download them, inspect a model, check that two models fit together.",
    no_args_is_help=True,
)

SamplesOpt = Annotated[int, typer.Option("-n", "--samples", help="Samples decoded in parallel (for the estimate).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (stable keys) instead of tables.")]


@models_app.command("list", cls=BacoCommand)
def list_command(as_json: JsonOpt = False) -> None:
    """The known pairs, which of their files are already on this machine, and what is left to download."""
    registry = load_registry()
    located = {name: locate_pair(entry) for name, entry in registry.pairs.items()}
    if as_json:
        print_json({"registries": [str(p) for p in registry.files], "cache": str(cache_dir()),
                    "pairs": [_pair_document(entry, located[entry.name]) for entry in registry.pairs.values()]})
        return
    table = Table(box=None, header_style="bold")
    for column in ("pair", "download", "base", "aligned"):
        table.add_column(column, overflow="fold")
    for entry in registry.pairs.values():
        base, aligned = located[entry.name]
        table.add_row(entry.name, _download_size((base, aligned)), _cell(base), _cell(aligned))
    stdout.print(table)
    note(f"registries: {', '.join(str(p) for p in registry.files)}; Hugging Face cache: {cache_dir()}")


@models_app.command("pull", cls=BacoCommand)
def pull_command(name: Annotated[str, typer.Argument(help="A pair from `baco models list`.", metavar="NAME")]) -> None:
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


@models_app.command("info", cls=BacoCommand)
def info_command(
    target: Annotated[str, typer.Argument(help="A GGUF file, or a pair from `baco models list`.",
                                          metavar="FILE|PAIR", show_default=False)],
    samples: SamplesOpt = 1,
    max_tokens: opt.MaxTokensOpt = 256,
    ctx_size: opt.CtxSizeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Architecture, size, tokenizer and chat template of a model (or a pair), and a memory estimate."""
    if ctx_size is not None:
        check_ctx_size(ctx_size)
    paths = _info_paths(target)
    cells = kv_cells(context_for(ctx_size, paths), samples, max_tokens)
    if len(paths) == 2:
        estimate = estimate_memory(paths[0], paths[1], cells, samples)
    else:
        estimate = MemoryEstimate((estimate_model(paths[0], cells, samples),), cells, samples)
    free = available_memory()
    if as_json:
        print_json({"models": [_model_document(read_gguf(path)) for path in paths],
                    "memory": _memory_document(estimate, free)})
        return
    for path in paths:
        _print_model(path)
    for line in estimate.lines():
        stdout.print(line)
    if free is not None:
        verdict = "fits" if estimate.total <= free else "does NOT fit"
        stdout.print(f"available memory: {free / 1024 ** 3:.2f} GiB ({verdict})")


@models_app.command("check", cls=BacoCommand)
def check_command(
    base: Annotated[Path, typer.Argument(help="Base model GGUF.", metavar="BASE.gguf", show_default=False)],
    aligned: Annotated[Path, typer.Argument(help="Aligned model GGUF.", metavar="ALIGNED.gguf", show_default=False)],
    as_json: JsonOpt = False,
) -> None:
    """Can these two models share tokens? Exit 0 if yes, 2 if not."""
    report = check_pair(base, aligned)
    if as_json:
        print_json(_report_document(report))
    else:
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


def context_for(requested: int | None, paths: Sequence[Path]) -> int:
    """The context a run of these models gets: ``requested`` (default 4096), capped by their training
    lengths; a ``requested`` value that was capped is said once on stderr."""
    effective = effective_context(requested or opt.DEFAULT_CTX, *(read_gguf(path) for path in paths))
    if requested is not None and effective < requested:
        note(f"--ctx-size {requested} is more than the model{'s were' if len(paths) > 1 else ' was'} "
             f"trained for: using {effective}")
    return effective


def check_memory_for_run(base: Path, aligned: Path, *, n_cells: int, n_seq: int,
                         ignore_limit: bool = False) -> MemoryEstimate:
    """Print the memory estimate for a run, then refuse (MemoryBudgetError) if it does not fit."""
    estimate = estimate_memory(base, aligned, n_cells, n_seq)
    note(estimate.lines()[-1])
    check_memory_fits(estimate, override=ignore_limit)
    return estimate


# --- helpers ------------------------------------------------------------------------------------


def _ask(question: str) -> bool:
    """Ask on the terminal; Ctrl-D (no answer) is a no."""
    try:
        return Confirm.ask(question, console=stderr, default=True)
    except EOFError:
        stderr.print()
        return False


def _cell(found: Located) -> str:
    """A file's name and where it is: 'cache, 292 MB', 'in package', 'missing'."""
    name = found.path.name if found.path is not None else found.source.file
    if found.present:
        status = f"{found.how}, {(found.size or 0) / 1e6:.0f} MB"
    else:
        status = "in package" if package_installed(found.source) else "missing"
    return f"{name}\n[dim]{status}[/dim]"


def _to_download(found: Located) -> bool:
    """Whether a file still has to come from the hub (not here, not in an installed package)."""
    return not found.present and found.source.repo is not None and not package_installed(found.source)


def _download_bytes(located: Sequence[Located]) -> int | None:
    """Bytes left to download for these files (0 when none), None when a size is unknown."""
    sizes = [found.source.size_mb for found in located if _to_download(found)]
    return None if None in sizes else round(sum(size or 0 for size in sizes) * 1e6)


def _download_size(located: Sequence[Located]) -> str:
    left = _download_bytes(located)
    if left is None:
        return "?"
    if left == 0:
        return "none"
    return f"~{left / 1e9:.1f} GB" if left >= 1e9 else f"~{left / 1e6:.0f} MB"


def _file_document(found: Located) -> dict[str, Any]:
    return {"source": found.source.describe(), "file": found.path.name if found.path else found.source.file,
            "where": found.how if found.present else ("package" if package_installed(found.source) else "missing"),
            "path": str(found.path) if found.path else None, "size_bytes": found.size,
            "to_download": _to_download(found)}


def _pair_document(entry: PairEntry, located: Sequence[Located]) -> dict[str, Any]:
    return {"name": entry.name, "description": entry.description, "router": entry.router, "gamma": entry.gamma,
            "download_bytes": _download_bytes(located), "base": _file_document(located[0]),
            "aligned": _file_document(located[1])}


def _model_document(summary: GGUFSummary) -> dict[str, Any]:
    return {"path": str(summary.path), "architecture": summary.architecture, "parameters": summary.n_params,
            "quantization": summary.quantization, "file_size": summary.file_size, "n_vocab": summary.n_vocab,
            "tokenizer": summary.tokenizer_model, "context_length": summary.context_length,
            "chat_template": summary.chat_template is not None,
            "end_of_generation": [{"id": token, "text": text} for token, text in _eog_list(summary)]}


def _memory_document(estimate: MemoryEstimate, free: int | None) -> dict[str, Any]:
    return {"kv_cells": estimate.n_ctx, "samples": estimate.n_seq, "total_bytes": estimate.total,
            "models": [{"path": str(m.path), "weights_bytes": m.weights, "kv_cache_bytes": m.kv_cache,
                        "compute_bytes": m.compute, "total_bytes": m.total} for m in estimate.models],
            "available_bytes": free, "fits": None if free is None else estimate.total <= free}


def _report_document(report: CompatReport) -> dict[str, Any]:
    def side(vocabulary: Vocabulary) -> dict[str, Any]:
        return {"path": str(vocabulary.path), "tokenizer": vocabulary.tokenizer_model, "n_vocab": len(vocabulary.texts)}

    b, a = report.base, report.aligned
    return {"base": side(b), "aligned": side(a), "shared_ids": min(len(b.texts), len(a.texts)),
            "extra_ids": abs(len(b.texts) - len(a.texts)), "compatible": report.ok, "problems": list(report.problems)}


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


def _eog_list(summary: GGUFSummary) -> list[tuple[int, str]]:
    """The end-of-generation tokens the file names (llama.cpp may add a few by their text)."""
    ids = dict.fromkeys(t for t in (summary.eos_id, summary.eot_id) if t is not None)
    texts = read_token_texts(summary.path) if ids else []
    return [(t, texts[t]) for t in ids]


def _eog_tokens(summary: GGUFSummary) -> str:
    return ", ".join(f"{text} ({token})" for token, text in _eog_list(summary))


def _count(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}".replace(".00", "")
    return str(n)
