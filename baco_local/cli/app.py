"""The ``baco`` entry point: a table of contents of the commands, and one error handler.

Library code raises :class:`~baco_local.errors.BacoError`; this is the one place that turns it
(and click's usage errors) into a single ``Error: ...`` line on stderr and an exit code. Also
``baco --version`` and shell completion (``baco --install-completion``, as typer offers).
"""

from __future__ import annotations

import sys
from importlib import metadata
from typing import Annotated, Sequence

import click
import typer

from .. import __version__
from ..engine.backend import llama_build
from ..errors import BacoError
from .chat_cmd import chat_command
from .console import error_line, stdout
from .eval_cmd import STDOUT, eval_command
from .gen import gen_command
from .help import BacoCommand, BacoGroup
from .merge_cmd import merge_command
from .models_cmd import models_app
from .serve_cmd import serve_command
from .sweep_cmd import sweep_command

# typer 0.29 vendors its own copy of click: usage errors may come from either.
_CLICK_ERRORS: tuple[type[Exception], ...] = (click.ClickException,)
try:
    from typer._click.exceptions import ClickException as _TyperClickException

    _CLICK_ERRORS += (_TyperClickException,)
except ImportError:
    pass

PROG = "baco"
# Options whose value may be left out, and what they mean then (typer's parser always wants one).
OPTIONAL_VALUES = {("eval", "--json"): STDOUT}

app = typer.Typer(
    name=PROG,
    cls=BacoGroup,
    help="Base-Aligned Model Collaboration: a base and an aligned model write together, token by token.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command("gen", cls=BacoCommand)(gen_command)
app.command("chat", cls=BacoCommand)(chat_command)
app.command("eval", cls=BacoCommand)(eval_command)
app.command("sweep", cls=BacoCommand)(sweep_command)
app.command("merge", cls=BacoCommand)(merge_command)
app.command("serve", cls=BacoCommand)(serve_command)
app.add_typer(models_app, name="models")


def version_lines() -> list[str]:
    """baco's version, and the llama.cpp it runs on."""
    try:
        version = metadata.version("baco-local")
    except metadata.PackageNotFoundError:  # run from a source tree without installing
        version = __version__
    build = llama_build()
    return [f"baco-local {version}", f"llama-cpp-python {build['llama-cpp-python']} (llama.cpp {build['llama.cpp']})",
            f"llama.cpp system: {build['system']}"]


def _show_version(value: bool) -> None:
    if value:
        for line in version_lines():
            stdout.print(line)
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", "-V", help="Show baco's and llama.cpp's versions and exit.",
                                          callback=_show_version, is_eager=True)] = False,
) -> None:
    """Base-Aligned Model Collaboration: a base and an aligned model write together, token by token."""


def fill_optional_values(argv: Sequence[str]) -> list[str]:
    """``argv`` with the value of an :data:`OPTIONAL_VALUES` option filled in where it was left out
    (the option is last, or another option follows it)."""
    words = list(argv)
    command = next((word for word in words if not word.startswith("-")), None)
    filled: list[str] = []
    for i, word in enumerate(words):
        filled.append(word)
        if word == "--":
            return filled + words[i + 1:]
        implied = OPTIONAL_VALUES.get((command or "", word))
        following = words[i + 1] if i + 1 < len(words) else None
        if implied is not None and (following is None or (following.startswith("-") and following != STDOUT)):
            filled.append(implied)
    return filled


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns (and exits with) the exit code."""
    try:
        args = fill_optional_values(sys.argv[1:] if argv is None else argv)
        result = app(args=args, prog_name=PROG, standalone_mode=False)
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
    except (click.exceptions.Abort, typer.Abort, KeyboardInterrupt):  # typer that vendors click raises its own
        error_line("interrupted")
        code = 130
    sys.exit(code)
