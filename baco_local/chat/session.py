"""A conversation with a base/aligned pair: turns, live settings, statistics. No terminal here.

Each turn the whole kept conversation goes to the engine: the aligned model sees it through its
chat template, the base model as a plain-text transcript. The engine keeps what each context
holds between turns and decodes only the tokens after the common prefix, so a turn costs only
its new tokens. The reply (as far as it was written, also when stopped) joins the conversation
and so both models' next prompts.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import UsageError
from ..engine.samplers import describe_extra
from ..engine.loop import Engine, Generation, GenerationSettings, Sample, TokenEvent
from ..engine.prompts import Message
from ..engine.routers import ALIGNED, BASE, DEFAULT_ENTROPY_GAMMA, DEFAULT_GAMMA, Side, get_router
from .stats import DecodeSnapshot, ReplyStats, SessionStats
from .window import ContextBudget, window_start

if TYPE_CHECKING:  # transcript.py imports this module
    from .transcript import Transcript


@dataclass(frozen=True)
class Reply:
    """What the models wrote for one user message, token by token, and under which settings."""

    text: str
    tokens: tuple[int, ...]
    sources: str  # one character per token: "A" aligned, "B" base
    pieces: tuple[str, ...]  # the text each token completed; they join to ``text``
    finish_reason: str  # "stop", "length", "context" or "interrupted"
    router: str
    gamma: float
    temperature: float
    seed: int

    @property
    def base_share(self) -> float:
        """Share of the reply's tokens written by the base model."""
        return self.sources.count(BASE) / len(self.sources) if self.sources else 0.0

    def runs(self) -> list[tuple[Side, str]]:
        """The text cut into stretches written by one model: [(side, text), ...]."""
        runs: list[tuple[Side, str]] = []
        for side, piece in zip(self.sources, self.pieces):
            if runs and runs[-1][0] == side:
                runs[-1] = (side, runs[-1][1] + piece)
            else:
                runs.append((side, piece))  # type: ignore[arg-type]
        return runs


@dataclass(frozen=True)
class Exchange:
    """One user message and the reply to it."""

    user: str
    reply: Reply


class ChatSession:
    """A conversation, the settings its next reply uses, and its statistics."""

    def __init__(self, engine: Engine, settings: GenerationSettings, *, system: str | None = None,
                 gamma_defaults: tuple[float, float] = (DEFAULT_GAMMA, DEFAULT_ENTROPY_GAMMA)) -> None:
        self.engine = engine
        self.settings = settings
        # γ per kind (probability, entropy nats): what /router switches to, so h never runs at p's 0.3
        self._gammas = {"probability": gamma_defaults[0], "entropy": gamma_defaults[1]}
        self._remember_gamma()
        self.system = system or None
        self.exchanges: list[Exchange] = []
        self.dropped = 0  # the oldest exchanges, left out of the prompts to fit the context
        self.stats = SessionStats()
        self._overflow_told = False
        self._turns = 0  # replies started: turn k samples with seed + k

    # --- the conversation ---------------------------------------------------------------------

    def messages(self, user: str | None = None, *, start: int | None = None) -> list[Message]:
        """The conversation the models see: system prompt, exchanges from ``start``, new message."""
        first = self.dropped if start is None else start
        messages = [Message("system", self.system)] if self.system else []
        for exchange in self.exchanges[first:]:
            messages += [Message("user", exchange.user), Message("assistant", exchange.reply.text)]
        if user is not None:
            messages.append(Message("user", user))
        return messages

    def prompt_lengths(self, messages: Sequence[Message]) -> dict[Side, int]:
        """Tokens of each model's prompt for ``messages``."""
        pair = self.engine.pair
        return {BASE: len(pair.base_prompt(messages)), ALIGNED: len(pair.aligned_prompt(messages))}

    def prompt_length(self, messages: Sequence[Message]) -> int:
        """Tokens of the longer of the two prompts for ``messages``."""
        return max(self.prompt_lengths(messages).values())

    def ask(self, user: str) -> PendingReply:
        """Start the reply to ``user``: iterate the result for tokens, then ``finish()`` it.

        Leaves out the oldest exchanges if the conversation would overflow the context;
        raises ContextOverflowError (and changes nothing) when the message alone is too long.
        """
        if not user.strip():
            raise UsageError("the message is empty")
        budget = ContextBudget.of(self.engine.ctx_size, self.settings.max_tokens)
        start = window_start(lambda i: self.prompt_length(self.messages(user, start=i)), self.dropped,
                             len(self.exchanges), budget)
        messages = self.messages(user, start=start)
        settings = dataclasses.replace(self.settings, seed=self.settings.seed + self._turns)
        generation = self.engine.generate(messages, 1, settings)
        notice = self._overflow_notice() if start > self.dropped else None
        self.dropped = start
        self._turns += 1
        return PendingReply(self, user, generation, self.prompt_lengths(messages), notice)

    def _overflow_notice(self) -> str | None:
        """What to tell the user the first time exchanges are left out (None afterwards)."""
        if self._overflow_told:
            return None
        self._overflow_told = True
        return (f"the conversation outgrew the context ({self.engine.ctx_size} tokens): "
                "the oldest exchanges are left out from now on (the system prompt stays)")

    def add(self, exchange: Exchange, stats: ReplyStats) -> None:
        """Append a finished exchange (PendingReply.finish calls this)."""
        self.exchanges.append(exchange)
        self.stats.add(stats)

    def undo(self) -> Exchange:
        """Drop the last exchange and return it; exchanges left out to fit the context come back
        into the prompts as far as they fit again."""
        if not self.exchanges:
            raise UsageError("nothing to undo")
        exchange = self.exchanges.pop()
        self.dropped = min(self.dropped, len(self.exchanges))
        budget = ContextBudget.of(self.engine.ctx_size, self.settings.max_tokens)
        self.dropped = next((start for start in range(self.dropped + 1)
                             if budget.fits(self.prompt_length(self.messages(start=start)))), self.dropped)
        return exchange

    def load(self, transcript: Transcript) -> None:
        """Go on with a saved conversation: its exchanges and system prompt replace this one's
        (the settings and statistics stay)."""
        self.exchanges = list(transcript.exchanges)
        self.system = transcript.system or None
        self.dropped = 0  # this context may hold more (or fewer) of them: the next turn decides
        self._overflow_told = False

    def reset(self) -> None:
        """Forget every exchange (the system prompt, settings and statistics stay); the next
        overflow is told again."""
        self.exchanges.clear()
        self.dropped = 0
        self._overflow_told = False

    # --- settings -----------------------------------------------------------------------------

    def set_system(self, text: str | None) -> None:
        """Replace the system prompt (None or empty: no system prompt)."""
        self.system = text or None

    def set_router(self, name: str) -> None:
        """Route the next replies with another router, at the γ of its kind: the last one set for a
        router of that kind, else the default (a router without γ keeps the current one)."""
        router = get_router(name)
        gamma = self._gammas.get(router.gamma_kind, self.settings.gamma)
        self.settings = dataclasses.replace(self.settings, router=router, gamma=gamma)

    def set_gamma(self, gamma: float) -> None:
        """Change the router threshold γ."""
        self.settings = dataclasses.replace(self.settings, gamma=gamma)
        self._remember_gamma()

    def _remember_gamma(self) -> None:
        if self.settings.router.gamma_kind in self._gammas:
            self._gammas[self.settings.router.gamma_kind] = self.settings.gamma

    def set_temperature(self, temperature: float) -> None:
        """Change the sampling temperature (0 = greedy)."""
        sampling = dataclasses.replace(self.settings.sampling, temperature=temperature)
        self.settings = dataclasses.replace(self.settings, sampling=sampling)

    def describe_settings(self) -> str:
        """The current settings in one line."""
        s, p = self.settings, self.settings.sampling
        extra = "".join(f" · {part}" for part in describe_extra(p))
        return (f"router {s.router.name} · γ {s.gamma:g} · temp {p.temperature:g} · top-k {p.top_k} · "
                f"top-p {p.top_p:g} · min-p {p.min_p:g}{extra} · max {s.max_tokens} tokens")

    def context_usage(self) -> str:
        """How full each context is after the last turn."""
        held = {side: len(tokens) for side, tokens in self.engine.held.items()}
        return (f"context: base {held.get(BASE, 0)}, aligned {held.get(ALIGNED, 0)} of "
                f"{self.engine.ctx_size} tokens · {len(self.exchanges) - self.dropped} of "
                f"{len(self.exchanges)} exchanges in the prompt")


class PendingReply:
    """A reply being generated. Iterate it for :class:`TokenEvent` s; stopping early is fine.

    ``finish()`` adds what was written to the conversation; ``notice`` is a one-time message for
    the user (the oldest exchanges were left out), or None.
    """

    def __init__(self, session: ChatSession, user: str, generation: Generation, prompt_tokens: dict[Side, int],
                 notice: str | None) -> None:
        self.user = user
        self.prompt_tokens = prompt_tokens
        self.notice = notice
        self._session = session
        self._generation = generation
        self._seen = 0  # token events seen
        self._before = DecodeSnapshot.take(session.engine)
        self._prompt_decoded: dict[Side, int] = {side: 0 for side in self._before.work}
        self._first_at: float | None = None
        self._exchange: Exchange | None = None
        self._events = self._stream()

    def __iter__(self) -> Iterator[TokenEvent]:
        """The token events (one stream: iterating again goes on where the last loop stopped)."""
        return self._events

    def _stream(self) -> Iterator[TokenEvent]:
        for event in self._generation:
            if self._first_at is None:  # the prompt has just been decoded
                self._first_at = time.perf_counter()
                work = DecodeSnapshot.take(self._session.engine).since(self._before)
                self._prompt_decoded = {side: w.tokens for side, w in work.items()}
            self._seen += 1
            yield event

    def finish(self) -> Exchange:
        """Add the reply, as far as it was written, to the conversation (once) and return it."""
        if self._exchange is not None:
            return self._exchange
        session = self._session
        sample = self._generation.samples[0]
        seconds = time.perf_counter() - self._first_at if self._first_at is not None else 0.0
        settings = self._generation.settings
        tokens, sources, pieces, text = _written(self._seen, sample)
        reply = Reply(text, tokens, sources, pieces, sample.finish_reason, settings.router.name, settings.gamma,
                      settings.sampling.temperature, settings.seed)
        work = DecodeSnapshot.take(session.engine).since(self._before)
        stats = ReplyStats(len(tokens), sources.count(BASE), seconds, reply.finish_reason,
                           self.prompt_tokens, self._prompt_decoded, work)
        self._exchange = Exchange(self.user, reply)
        session.add(self._exchange, stats)
        return self._exchange


def _written(seen: int, sample: Sample) -> tuple[tuple[int, ...], str, tuple[str, ...], str]:
    """Tokens, sources, pieces and text of the tokens whose events were seen (a reply stopped early
    may have drafted more). Each token keeps its own piece, which the text is made of."""
    n = min(seen, len(sample.tokens))  # the last event may be an end-of-generation token
    pieces = sample.pieces[:n]
    return tuple(sample.tokens[:n]), sample.sources[:n], pieces, "".join(pieces)

