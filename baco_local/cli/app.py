"""The ``baco`` entry point: a table of contents of the commands, and one error handler.

Library code raises :class:`~baco_local.errors.BacoError`; this is the one place that turns it
(and click's usage errors) into a single ``Error: ...`` line on stderr and an exit code.
"""

from __future__ import annotations

import sys

import click
import typer

from ..errors import BacoError
from .chat_cmd import chat_command
from .console import error_line
from .eval_cmd import eval_command
from .gen import gen_command
from .models_cmd import models_app
from .sweep_cmd import sweep_command

# typer 0.29 vendors its own copy of click: usage errors may come from either.
_CLICK_ERRORS: tuple[type[Exception], ...] = (click.ClickException,)
try:
    from typer._click.exceptions import ClickException as _TyperClickException

    _CLICK_ERRORS += (_TyperClickException,)
except ImportError:
    pass

app = typer.Typer(
    name="baco",
    help="Base-Aligned Model Collaboration: a base and an aligned model write together, token by token.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("gen")(gen_command)
app.command("chat")(chat_command)
app.command("eval")(eval_command)
app.command("sweep")(sweep_command)
app.add_typer(models_app, name="models")


@app.callback()
def _root() -> None:
    """Base-Aligned Model Collaboration: a base and an aligned model write together, token by token."""


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns (and exits with) the exit code."""
    try:
        result = app(args=argv, standalone_mode=False)
        code = result if isinstance(result, int) else 0
    except BacoError as exc:
        error_line(str(exc))
        code = exc.exit_code
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except _CLICK_ERRORS as exc:
        message = exc.format_message()
        if message:  # `baco` alone shows the help, with nothing to add
            error_line(message)
        code = exc.exit_code if message else 0
    except (click.exceptions.Abort, KeyboardInterrupt):
        error_line("interrupted")
        code = 130
    sys.exit(code)
