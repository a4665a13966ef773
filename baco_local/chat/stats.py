"""What a chat has cost and who wrote it: per-reply and per-session numbers.

Decode work is read from the engine's two contexts (``n_evaluated`` tokens, ``decode_seconds``)
as differences between snapshots, so the numbers stay right when the engine recreates a context.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..engine.loop import SIDES, Engine
from ..engine.routers import Side

SIDE_NAMES: dict[Side, str] = {"B": "base", "A": "aligned"}


@dataclass(frozen=True)
class DecodeWork:
    """Tokens one context decoded, and the seconds llama.cpp spent on them."""

    tokens: int = 0
    seconds: float = 0.0

    def __add__(self, other: DecodeWork) -> DecodeWork:
        return DecodeWork(self.tokens + other.tokens, self.seconds + other.seconds)

    def __sub__(self, other: DecodeWork) -> DecodeWork:
        return DecodeWork(self.tokens - other.tokens, self.seconds - other.seconds)

    @property
    def rate(self) -> float | None:
        """Tokens per second, or None before anything was timed."""
        return self.tokens / self.seconds if self.seconds > 0 else None


@dataclass(frozen=True)
class DecodeSnapshot:
    """Each context's counters at one moment (with the context object, to notice a new one)."""

    contexts: dict[Side, object]
    work: dict[Side, DecodeWork]

    @classmethod
    def take(cls, engine: Engine) -> DecodeSnapshot:
        """Read both contexts' counters (zero for a context not made yet)."""
        contexts: dict[Side, object] = {side: engine.contexts.get(side) for side in SIDES}
        work = {side: DecodeWork(getattr(ctx, "n_evaluated", 0), getattr(ctx, "decode_seconds", 0.0))
                for side, ctx in contexts.items()}
        return cls(contexts, work)

    def since(self, earlier: DecodeSnapshot) -> dict[Side, DecodeWork]:
        """The work done between ``earlier`` and this snapshot, per side."""
        return {side: self.work[side] - earlier.work[side]
                if self.contexts[side] is earlier.contexts[side] else self.work[side] for side in SIDES}


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


@dataclass(frozen=True)
class ReplyStats:
    """One reply: its length, who wrote it, how long it took and what each context decoded."""

    tokens: int
    base_tokens: int
    seconds: float  # from the first token to the end of the reply
    finish_reason: str
    prompt_tokens: dict[Side, int]  # each model's prompt this turn
    prompt_decoded: dict[Side, int]  # the prompt tokens decoded this turn (the rest came from the cache)
    decoded: dict[Side, DecodeWork]  # everything each context decoded this turn

    @property
    def base_share(self) -> float:
        """Share of the reply's tokens written by the base model."""
        return _share(self.base_tokens, self.tokens)

    @property
    def rate(self) -> float | None:
        """Reply tokens per second (None for a reply too short to time)."""
        return self.tokens / self.seconds if self.seconds > 0 and self.tokens > 1 else None

    def summary(self) -> str:
        """The status line shown after a reply: tokens, tokens/s, base share, why it ended."""
        rate = f"{self.rate:.1f} tok/s" if self.rate is not None else "- tok/s"
        parts = [f"{self.tokens} tokens", rate, f"{self.base_share:.0%} base"]
        ending = {"interrupted": "stopped", "length": "reached --max-tokens", "context": "context full"}
        if self.finish_reason in ending:
            parts.append(ending[self.finish_reason])
        return " · ".join(parts)


@dataclass
class SessionStats:
    """Totals over a chat session (kept across /reset and /undo: they count work done)."""

    replies: int = 0
    tokens: int = 0
    base_tokens: int = 0
    decoded: dict[Side, DecodeWork] = field(default_factory=lambda: {side: DecodeWork() for side in SIDES})
    last: ReplyStats | None = None

    def add(self, reply: ReplyStats) -> None:
        """Count one finished reply."""
        self.replies += 1
        self.tokens += reply.tokens
        self.base_tokens += reply.base_tokens
        self.decoded = {side: self.decoded[side] + reply.decoded[side] for side in SIDES}
        self.last = reply

    @property
    def base_share(self) -> float:
        """Share of all reply tokens written by the base model."""
        return _share(self.base_tokens, self.tokens)

    def lines(self) -> list[str]:
        """The /stats report (without the settings line)."""
        if self.last is None:
            return ["no replies yet"]
        last = self.last
        replies = f"{self.replies} {'reply' if self.replies == 1 else 'replies'}"
        lines = [f"last reply: {last.summary()}",
                 f"session: {replies} · {self.tokens} tokens · {self.base_share:.0%} base"]
        for side in SIDES:  # base first
            work = self.decoded[side]
            rate = f"{work.rate:.0f} tok/s" if work.rate is not None else "- tok/s"
            decoded, total = last.prompt_decoded[side], last.prompt_tokens[side]
            lines.append(f"{SIDE_NAMES[side]} model: {work.tokens} tokens decoded · {rate} · last prompt: "
                         f"{decoded} of {total} tokens decoded, {max(0, total - decoded)} reused from the cache")
        return lines
