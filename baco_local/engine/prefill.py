"""Prefill inside the step: which prompt tokens of newly admitted requests join a step's batch.

The scheduler decodes a new request's prompt in the same ``llama_decode`` call as the running
sequences' new tokens (bench/prefill_mix.py measured that faster than a decode of its own between
steps). A step's batch holds at most ``n_batch`` tokens per model, so a long prompt is cut into
chunks over several steps. A prompt's last token (the only one whose logits are read) is decoded
in the same step on both models, so both sides' first logits rows come from one decode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .routers import Side
from .step import SIDES


@dataclass
class Fill:
    """A prompt being decoded into one sequence: each side's tokens and how many are in the cache."""

    seq: int
    tokens: dict[Side, list[int]]
    done: dict[Side, int]
    steps: int = 0  # steps that have decoded part of it

    def remaining(self, side: Side) -> int:
        return len(self.tokens[side]) - self.done[side]


@dataclass(frozen=True)
class Chunk:
    """The part of one :class:`Fill` that goes into this step's batch, per side."""

    fill: Fill
    spans: dict[Side, tuple[int, int]]  # [begin, end) of the prompt's tokens
    last: bool  # the prompt ends in this batch on both sides

    def rows(self, side: Side) -> tuple[list[int], list[int], list[int], list[bool]]:
        """(tokens, positions, sequences, wants logits) of this chunk on ``side``."""
        begin, end = self.spans[side]
        count = end - begin
        want = [False] * count
        if self.last and count:
            want[-1] = True
        return self.fill.tokens[side][begin:end], list(range(begin, end)), [self.fill.seq] * count, want


def plan_chunks(fills: Sequence[Fill], room: int) -> list[Chunk]:
    """This step's chunks of ``fills`` (in admission order) for ``room`` free batch rows per side.

    A prompt that fits on both sides is taken whole; otherwise each side takes what fits but keeps
    its last token back for a later step, so the prompt ends on both sides in the same decode."""
    budget = {side: room for side in SIDES}
    chunks = []
    for fill in fills:
        if all(budget[side] <= 0 for side in SIDES):
            break
        last = all(fill.remaining(side) <= budget[side] for side in SIDES)
        take = {side: fill.remaining(side) if last else max(0, min(budget[side], fill.remaining(side) - 1))
                for side in SIDES}
        if not any(take.values()):
            continue
        spans = {side: (fill.done[side], fill.done[side] + take[side]) for side in SIDES}
        for side in SIDES:
            budget[side] -= take[side]
        chunks.append(Chunk(fill, spans, last))
    return chunks


@dataclass
class PrefillCounts:
    """How prompts were decoded so far (tests and /stats read these)."""

    in_step: int = 0  # decodes where prompt tokens shared the batch with running sequences' tokens
    alone: int = 0  # decodes of prompt tokens only (nothing else was running)
    chunked: int = 0  # prompts decoded over more than one step
    tokens: int = 0  # prompt tokens decoded (base side; a prefix copied from another request is not counted)

    def as_dict(self) -> dict[str, int]:
        return {"in_step": self.in_step, "alone": self.alone, "chunked": self.chunked, "tokens": self.tokens}
