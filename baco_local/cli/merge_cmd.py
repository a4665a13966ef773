"""``baco merge``: join the outputs of ``baco gen --shard I/N`` runs into one JSONL file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..runs.merge import merge
from ..runs.prompt_file import read_prompts
from .console import error_line, note

SHOWN_MISSING = 5


def merge_command(
    output: Annotated[Path, typer.Argument(metavar="OUT.jsonl", help="The merged JSONL file (must not exist yet).")],
    shards: Annotated[list[Path], typer.Argument(metavar="SHARD.jsonl", help="Shard outputs of baco gen --shard, or folders of them "
                                                 "(their *.jsonl files).")],
    prompt_file: Annotated[Optional[Path], typer.Option(
        "--prompt-file", "-f", help="The prompts the shards ran on: records are written in its order, and "
        "ids that no shard holds are reported (exit status 1).")] = None,
) -> None:
    """Merge shard outputs: same settings in all, each prompt id once; in prompt-file order with -f."""
    items = read_prompts(prompt_file, sys.stdin.buffer) if prompt_file is not None else None
    merged = merge(output, shards, items)
    note(f"merged {merged.records} records into {output}")
    if merged.missing:
        shown = ", ".join(repr(i) for i in merged.missing[:SHOWN_MISSING])
        more = f" and {len(merged.missing) - SHOWN_MISSING} more" if len(merged.missing) > SHOWN_MISSING else ""
        error_line(f"{len(merged.missing)} of {len(items or [])} prompt ids are in no shard: {shown}{more} "
                   "(rerun their shards, then merge again into a new file)")
        raise typer.Exit(1)
