"""Where the CLI writes: results to stdout, everything for a person (progress, notes) to stderr.

``-q/--quiet`` silences the notes and progress bars (errors still print); ``-v/--verbose`` lets
llama.cpp's own log through to stderr (as ``BACO_LLAMA_LOG=1`` does).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.markup import escape

stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False)


@dataclass
class _Verbosity:
    quiet: bool = False


_VERBOSITY = _Verbosity()


def set_verbosity(*, verbose: bool = False, quiet: bool = False) -> None:
    """Apply -v/--verbose and -q/--quiet for the rest of the command."""
    _VERBOSITY.quiet = quiet
    if verbose:
        from ..engine.backend import echo_llama_log  # loads llama.cpp: only when asked for

        echo_llama_log(True)


def is_quiet() -> bool:
    """True under -q/--quiet."""
    return _VERBOSITY.quiet


def show_progress() -> bool:
    """Whether progress bars and spinners go to stderr: on a terminal, unless -q."""
    return stderr.is_terminal and not _VERBOSITY.quiet


def note(message: str) -> None:
    """A dim informational line on stderr (none under -q), never broken (a terminal wraps it itself;
    a log file keeps paths and commands whole)."""
    if not _VERBOSITY.quiet:
        stderr.print(f"[dim]{escape(message)}[/dim]", soft_wrap=True)


def error_line(message: str) -> None:
    """The single ``Error: ...`` line for a failure."""
    stderr.print(f"[bold red]Error:[/bold red] {escape(message)}", highlight=False, soft_wrap=True)


def use_plain() -> None:
    """No colours or styles on either stream from now on (``--plain``), whatever the terminal can show."""
    for console in (stdout, stderr):
        console._color_system = None  # what color_system=None does at creation; rich has no public setter


def print_json(document: Any) -> None:
    """A JSON document on stdout (indented, non-ASCII as is), for ``--json``."""
    sys.stdout.write(json.dumps(document, ensure_ascii=False, indent=2) + "\n")
    sys.stdout.flush()
