"""Where the CLI writes: results to stdout, everything for a person (progress, notes) to stderr."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False)


def note(message: str) -> None:
    """A dim informational line on stderr."""
    stderr.print(f"[dim]{escape(message)}[/dim]")


def error_line(message: str) -> None:
    """The single ``Error: ...`` line for a failure."""
    stderr.print(f"[bold red]Error:[/bold red] {escape(message)}", highlight=False, soft_wrap=True)


def use_plain() -> None:
    """No colours or styles on either stream from now on (``--plain``), whatever the terminal can show."""
    for console in (stdout, stderr):
        console._color_system = None  # what color_system=None does at creation; rich has no public setter
