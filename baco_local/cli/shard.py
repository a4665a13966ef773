"""``baco gen --shard I/N``: the prompts of one shard (the rule is in :mod:`baco_local.engine.seeds`)."""

from __future__ import annotations

from ..engine.seeds import parse_shard, shard_of
from ..errors import UsageError
from ..runs.prompt_file import PromptItem, id_key
from .console import note


def select_shard(items: list[PromptItem], shard: str | None) -> list[PromptItem]:
    """``items`` (in file order) whose id falls in shard ``"I/N"``; all of them without ``--shard``."""
    if shard is None:
        return items
    try:
        index, count = parse_shard(shard)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    chosen = [item for item in items if shard_of(id_key(item.id), count) == index]
    note(f"shard {index}/{count}: {len(chosen)} of {len(items)} prompts")
    return chosen
