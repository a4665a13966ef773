"""One BACo step for one sequence, shared by the step loop, draft-and-verify and the scheduler.

Route → sample → commit: :class:`Stepper` masks each side's logits row, asks the router which
model writes, samples with the sequence's position-indexed draws (so a sample's tokens depend only
on its prompt, settings and seed) and records the token, its source and its visible text, ending
the sequence on end-of-generation, a stop string or a limit. Decoding is left to the callers.
"""

from __future__ import annotations

import bisect
import codecs
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from .pair import ModelPair
from .routers import ALIGNED, BASE, Side, Signals
from .dry import Breakers
from .sampling import MASKED_LOGIT, Distribution, Scratch, mixture
from .samplers import model_breakers, sample_token
from .settings import GenerationSettings

SIDES: tuple[Side, Side] = (BASE, ALIGNED)
XTC_STREAMS: dict[Side, str] = {BASE: "xtc-base", ALIGNED: "xtc-aligned"}


@dataclass(frozen=True)
class TokenEvent:
    """One generated token: which sample, its id, which model wrote it, and the text that became
    visible with it. With stop strings that text lags behind (it is held back until no stop string
    can be forming), so it may be earlier tokens' text: ``spans`` cuts it by the model that wrote
    each part."""

    sample: int
    token: int
    side: Side
    text: str
    spans: tuple[tuple[Side, str], ...] = ()  # ``text`` as (writer, text) stretches; they join to ``text``


@dataclass
class Sample:
    """One finished (or interrupted) generation."""

    index: int
    seed: int
    text: str
    tokens: list[int]
    sources: str  # one character per generated token: "A" aligned, "B" base
    finish_reason: str  # "stop" (end of generation or stop string), "length", "context", "interrupted"
    pieces: tuple[str, ...] = ()  # each token's own text; they join to ``text``

    @property
    def base_fraction(self) -> float:
        """Share of the generated tokens written by the base model."""
        return self.sources.count(BASE) / len(self.sources) if self.sources else 0.0


@dataclass
class SequenceState:
    """The running state of one sample."""

    index: int
    seed: int
    streams: "DrawStreams"
    positions: dict[Side, int]  # next KV position in each context
    tokens: list[int] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)  # where each token's text begins in ``text``
    text: str = ""
    emitted: int = 0  # characters of text already reported in events
    finish: str | None = None
    decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace"))

    def route_draw(self, ahead: int = 0) -> float:
        """The routing draw of the position ``ahead`` tokens after the last generated one."""
        return self.streams.draw("route", len(self.tokens) + ahead)

    def sample_draw(self, side: Side, ahead: int = 0) -> float:
        """The uniform draw ``side`` samples with at the position ``ahead`` tokens from now."""
        return self.streams.draw(side, len(self.tokens) + ahead)

    def xtc_draw(self, side: Side, ahead: int = 0) -> float:
        """The uniform draw that decides whether XTC acts on ``side``'s row at that position."""
        return self.streams.draw(XTC_STREAMS[side], len(self.tokens) + ahead)

    @property
    def writer(self) -> Side | None:
        return self.sources[-1] if self.sources else None  # type: ignore[return-value]

    def pieces(self) -> tuple[str, ...]:
        """Each token's own text (the last one's includes the decoder's final flush)."""
        ends = [*self.starts[1:], len(self.text)]
        return tuple(self.text[begin:end] for begin, end in zip(self.starts, ends))

    def spans(self, begin: int, end: int) -> tuple[tuple[Side, str], ...]:
        """``text[begin:end]`` cut into stretches by the model that wrote each token."""
        spans: list[tuple[Side, str]] = []
        index = bisect.bisect_right(self.starts, begin) - 1
        while begin < end:
            stop = min(end, self.starts[index + 1] if index + 1 < len(self.starts) else end)
            side: Side = self.sources[index]  # type: ignore[assignment]
            piece = self.text[begin:stop]
            if spans and spans[-1][0] == side:
                spans[-1] = (side, spans[-1][1] + piece)
            elif piece:
                spans.append((side, piece))
            begin, index = stop, index + 1
        return tuple(spans)


class DrawStreams:
    """A sample's uniform random draws, indexed by generated position.

    Five independent streams come from the sample's seed: routing, base sampling, aligned
    sampling, and XTC's decision for each model (the first three are those of earlier versions:
    ``SeedSequence.spawn`` gives the same first children whatever the count). The draw for position k of a stream is its k-th value, whatever order positions are
    asked in, so the step loop and draft-and-verify (which samples ahead and discards) use the same
    draw for the same decision, and give the same tokens.
    """

    def __init__(self, seed: int) -> None:
        names = ("route", BASE, ALIGNED, XTC_STREAMS[BASE], XTC_STREAMS[ALIGNED])
        children = np.random.SeedSequence(seed).spawn(len(names))
        self._rngs = {name: np.random.default_rng(child) for name, child in zip(names, children)}
        self._draws: dict[str, list[float]] = {name: [] for name in self._rngs}

    def draw(self, stream: str, position: int) -> float:
        """The draw of ``stream`` at generated position ``position``."""
        draws = self._draws[stream]
        if len(draws) <= position:
            draws.extend(self._rngs[stream].random(position + 1 - len(draws) + 15).tolist())
        return draws[position]


class Stepper:
    """Route, sample and commit tokens of sequences that share one pair and one set of settings."""

    def __init__(self, pair: ModelPair, settings: GenerationSettings, ctx_size: int,
                 scratch: dict[Side, Scratch], mixture_buffers: tuple[np.ndarray, Scratch],
                 prompts: dict[Side, list[int]] | None = None) -> None:
        self.pair = pair
        self.settings = settings
        self.ctx_size = ctx_size
        self.scratch = scratch
        self.mixture_buffers = mixture_buffers
        self.holdback = max((len(s) for s in settings.stop), default=1) - 1
        # DRY reads each side's own prompt and the generated tokens (llama.cpp accepts the prompt too).
        self.prompts = {side: np.asarray((prompts or {}).get(side, ()), dtype=np.int64) for side in SIDES}
        self._breakers: dict[Side, Breakers] = {}

    def sample(self, state: SequenceState, side: Side, dist: Distribution, ahead: int = 0,
               drafted: Sequence[int] = ()) -> int:
        """Sample ``side``'s token at the position ``ahead`` tokens from now (``drafted``: the
        tokens drafted before it, not yet committed), with the sampler chain of the settings."""
        params = self.settings.sampling
        draw = state.sample_draw(side, ahead)
        if not params.extra_samplers:
            return sample_token(dist, params, draw)
        history = breakers = None
        if params.dry_on:
            history = np.concatenate([self.prompts[side], np.asarray(state.tokens, dtype=np.int64),
                                      np.asarray(drafted, dtype=np.int64)])
            breakers = self._side_breakers(side)
        return sample_token(dist, params, draw, xtc_draw=state.xtc_draw(side, ahead), history=history,
                            breakers=breakers)

    def _side_breakers(self, side: Side) -> Breakers:
        if side not in self._breakers:
            model = self.pair.base if side == BASE else self.pair.aligned
            self._breakers[side] = model_breakers(model, self.settings.sampling.dry_sequence_breakers)
        return self._breakers[side]

    def distribution(self, side: Side, logits: np.ndarray) -> Distribution:
        """Wrap one logits row of ``side``, masking ids the other context cannot decode."""
        masked = self.pair.base_masked if side == BASE else self.pair.aligned_masked
        if masked.size:
            logits[masked] = MASKED_LOGIT
        return Distribution(logits, self.scratch[side])

    def route(self, state: SequenceState, dists: dict[Side, Distribution], ahead: int = 0) -> Side:
        """Ask the router which side should write the token ``ahead`` positions after the last one."""
        settings = self.settings
        signals = Signals(dists[BASE], dists[ALIGNED], self.pair.classes, settings.gamma, state.route_draw(ahead))
        return settings.router.route(signals)

    def choose(self, state: SequenceState, dists: dict[Side, Distribution]) -> tuple[int, Side]:
        """Route and sample one token for one sequence."""
        if self.settings.ensemble is not None:
            return self._choose_from_mixture(state, dists, self.settings.ensemble)
        return choose_token(self.route(state, dists), state.writer, state.tokens,
                            self.pair.classes.is_boundary, lambda side: self.sample(state, side, dists[side]))

    def _choose_from_mixture(self, state: SequenceState, dists: dict[Side, Distribution],
                             weight: float) -> tuple[int, Side]:
        """The ensemble baseline: sample from w·P_base + (1 − w)·P_aligned; the token's source is
        the model that contributed more of its probability (the samplers use the base model's
        draws, prompt and breakers)."""
        buffer, scratch = self.mixture_buffers
        token = self.sample(state, BASE, Distribution(mixture(dists[BASE], dists[ALIGNED], weight, buffer), scratch))
        base_share = weight * dists[BASE].prob(token) if token < dists[BASE].logits.shape[0] else 0.0
        aligned_share = (1 - weight) * dists[ALIGNED].prob(token) if token < dists[ALIGNED].logits.shape[0] else 0.0
        return token, BASE if base_share > aligned_share else ALIGNED

    def commit(self, state: SequenceState, token: int, side: Side) -> list[TokenEvent]:
        """Record a chosen token and decide whether the sample is finished."""
        settings = self.settings
        cut_by_stop = False
        if token in self.pair.eog_ids:
            state.finish = "stop"
        else:
            state.tokens.append(token)
            state.sources.append(side)
            state.starts.append(len(state.text))
            checked = len(state.text)
            state.text += state.decoder.decode(self.pair.piece(token))
            cut_by_stop = self._cut_at_stop(state, checked)
            if state.finish is None and len(state.tokens) >= settings.max_tokens:
                state.finish = "length"
            if state.finish is None and max(state.positions.values()) + 1 >= self.ctx_size:
                state.finish = "context"
        if state.finish is None:
            visible = len(state.text) - self.holdback  # a stop string may still be forming
        else:
            if not cut_by_stop:
                state.text += state.decoder.decode(b"", final=True)
            visible = len(state.text)
        begin = state.emitted
        text = state.text[begin:max(visible, begin)]
        state.emitted += len(text)
        return [TokenEvent(state.index, token, side, text, state.spans(begin, state.emitted))]

    def step(self, state: SequenceState, logits: dict[Side, np.ndarray]) -> list[TokenEvent]:
        """Route, sample and commit one token from both sides' last-position logits rows."""
        dists = {side: self.distribution(side, logits[side]) for side in SIDES}
        return self.commit(state, *self.choose(state, dists))

    def _cut_at_stop(self, state: SequenceState, checked: int) -> bool:
        """End the sample at the first stop string in the new text; True if one was found."""
        cuts = [state.text.find(stop, max(0, checked - len(stop) + 1)) for stop in self.settings.stop]
        found = [cut for cut in cuts if cut >= 0]
        if not found:
            return False
        cut = min(found)
        state.text = state.text[:cut]
        kept = bisect.bisect_left(state.starts, cut)  # tokens whose text begins before the stop string
        del state.tokens[kept:], state.sources[kept:], state.starts[kept:]
        state.finish = "stop"
        return True


def choose_token(wanted: Side, writer: Side | None, history: Sequence[int],
                 is_boundary: Callable[[Sequence[int], int], bool],
                 pick: Callable[[Side], int]) -> tuple[int, Side]:
    """Sample from the wanted side; a change of writer stands only on a word-initial token.

    ``history`` is the sample's generated tokens so far; ``pick(side)`` samples that side's token
    for this position (its distribution, draws and sampler chain).
    """
    token = pick(wanted)
    if writer is None or wanted == writer or is_boundary(history, token):
        return token, wanted
    return pick(writer), writer
