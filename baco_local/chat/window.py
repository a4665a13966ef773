"""Keeping a conversation inside the context window by leaving out its oldest exchanges.

The system prompt and the newest message always stay. When the conversation no longer fits
(prompt + room for the reply), the oldest exchanges are left out; a quarter of the context more
is freed at the same time, so that the caches (whose common prefix the cut destroys) are rebuilt
only now and then rather than on every turn.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..errors import ContextOverflowError


@dataclass(frozen=True)
class ContextBudget:
    """How many tokens a prompt may take."""

    ctx_size: int
    reply_room: int  # tokens kept free for the reply
    slack: int  # extra tokens freed when exchanges have to be left out

    @classmethod
    def of(cls, ctx_size: int, max_tokens: int) -> ContextBudget:
        """Room for a reply of ``max_tokens``, but never more than half the context."""
        return cls(ctx_size, max(1, min(max_tokens, ctx_size // 2)), ctx_size // 4)

    def fits(self, prompt_tokens: int, *, roomy: bool = False) -> bool:
        """Whether a prompt this long leaves the reply (and, if ``roomy``, the slack) free."""
        return prompt_tokens + self.reply_room + (self.slack if roomy else 0) <= self.ctx_size


def window_start(length: Callable[[int], int], start: int, end: int, budget: ContextBudget) -> int:
    """The first exchange to keep, at or after ``start``; ``length(i)`` is the prompt length
    when exchanges ``i`` onwards are kept (``end``: none of them).

    Raises ContextOverflowError when even the system prompt and the newest message do not fit.
    """
    if budget.fits(length(start)):
        return start
    strict = next((i for i in range(start + 1, end + 1) if budget.fits(length(i))), None)
    if strict is None:
        raise ContextOverflowError(
            f"this message makes a prompt of {length(end)} tokens, but the context holds "
            f"{budget.ctx_size} and {budget.reply_room} must stay free for the reply; "
            "shorten it or raise --ctx-size")
    return next((i for i in range(strict, end + 1) if budget.fits(length(i), roomy=True)), strict)
