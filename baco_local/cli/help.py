"""How ``--help`` reads: the command classes every baco command and group is made with.

Typer writes a type after every option, ``<bool>`` even after a flag, and braces around required
argument names in the usage line. Here flags show no type and arguments read as in most tools:
``baco eval [OPTIONS] OUTPUT.jsonl``.
"""

from __future__ import annotations

import re
from typing import Any

from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

_LIST_TYPE = re.compile(r"<list\[(\w+)\]>")


def _tidy(params: list[Any]) -> None:
    """No type column for flags (``--yes``, ``--no-draft``, ``--help``); ``<path>...`` rather than
    ``<list[Path]>`` for an argument that takes several values."""
    for param in params:
        if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
            param.metavar = ""
        elif isinstance(param, TyperArgument) and param.nargs != 1 and "display_type_rich" not in vars(param):
            shown = param.display_type_rich
            param.display_type_rich = lambda ctx, shown=shown: _LIST_TYPE.sub(
                lambda m: f"<{m.group(1).lower()}>...", shown(ctx))


class _TidyHelp:
    """Mixed into typer's command classes (which provide the methods used here)."""

    def get_params(self, ctx: Any) -> list[Any]:
        params: list[Any] = super().get_params(ctx)  # type: ignore[misc]
        _tidy(params)  # the help and completion options are added late: tidy them here
        return params

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        metavar = getattr(self, "options_metavar", None)
        pieces = [metavar] if metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                name = param.display_name_raw + ("..." if param.nargs != 1 else "")
                pieces.append(name if param.required else f"[{name}]")
            else:
                pieces.extend(param.get_usage_pieces(ctx))
        subcommand = getattr(self, "subcommand_metavar", None)  # a group's "COMMAND [ARGS]..."
        return [*pieces, subcommand] if subcommand else pieces


class BacoCommand(_TidyHelp, TyperCommand):
    """A command whose help shows flags without a type and arguments without braces."""


class BacoGroup(_TidyHelp, TyperGroup):
    """A command group with the same help conventions as :class:`BacoCommand`."""
