"""THE token loop: two llama.cpp contexts, one router, N samples decoded in parallel.

For one prompt and N samples, a step of the loop is:

1. read each live sample's last-position logits from both contexts (numpy views, no copies);
2. mask ids that the other context cannot decode;
3. ask the router which model should write (content rule on the aligned top-1, then logit rule);
4. sample the token from that model's distribution; a switch of writer only takes effect on a
   token that begins a new word, otherwise the current writer draws this token itself;
5. record the token and its source, check end-of-generation, stop strings and limits;
6. decode every live sample's new token in both contexts: one batch per model per step.

Each sample is a sequence id in both contexts. The prompt is decoded once per context (on
sequence 0) and shared with the other sequences by reference in the unified KV cache. Between
generations the engine keeps what sequence 0 holds, so the next prompt decodes only the tokens
after the longest common prefix (multi-turn chat pays only for the new turn).
"""

from __future__ import annotations

import bisect
import codecs
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np

from .backend import ContextShape, SequenceContext, check_sequences, default_threads
from .concurrent import ChoiceCache, Concurrency, ThreadPlan
from ..errors import ContextOverflowError, UsageError
from ..models.memory import check_ctx_size, effective_context, kv_cells
from .pair import ModelPair
from .prompts import Message
from .routers import ALIGNED, BASE, Router, Side, Signals
from .seeds import sample_seed
from .sampling import MASKED_LOGIT, Distribution, SamplingParams, Scratch, mixture, sample

SIDES: tuple[Side, Side] = (BASE, ALIGNED)


@dataclass(frozen=True)
class DraftPolicy:
    """Draft-and-verify: how many tokens the writing model runs ahead (see speculative.py).

    ``enabled=False`` is the step-by-step loop of this module. ``fixed_k`` pins the draft length;
    otherwise it adapts per sample and per writing model, from ``start_k``, growing by 2 after a
    fully accepted draft and shrinking by 1 after a rejection, within [1, ``max_k``].
    """

    enabled: bool = True
    fixed_k: int | None = None
    start_k: int = 4
    max_k: int = 16
    # Adaptive drafting pays off while decode calls are small; with several samples per prompt
    # each step is already a batch, and the step loop is faster (bench/speed.py measures both).
    max_samples_for_adaptive: int = 1

    def applies_to(self, n_samples: int) -> bool:
        """Whether a prompt with ``n_samples`` samples is drafted (a fixed K always is)."""
        return self.enabled and (self.fixed_k is not None or n_samples <= self.max_samples_for_adaptive)

    def __post_init__(self) -> None:
        if self.fixed_k is not None and not 1 <= self.fixed_k <= 64:
            raise UsageError(f"--draft must be between 1 and 64, got {self.fixed_k}")

    def describe(self) -> str:
        """How the policy is recorded in output settings."""
        if not self.enabled:
            return "off"
        return f"fixed:{self.fixed_k}" if self.fixed_k else f"adaptive:{self.start_k}-{self.max_k}"


@dataclass(frozen=True)
class GenerationSettings:
    """Everything that shapes one generation besides the prompt."""

    router: Router
    gamma: float
    sampling: SamplingParams = SamplingParams()
    max_tokens: int = 256
    stop: tuple[str, ...] = ()
    seed: int = 0
    draft: DraftPolicy = DraftPolicy()
    ensemble: float | None = None  # sample from w·P_base + (1 − w)·P_aligned instead of routing
    prompt_key: str | None = None  # the prompt's id: per-sample seeds by the hash rule of engine/seeds.py

    def __post_init__(self) -> None:
        self.router.check_gamma(self.gamma)
        if self.ensemble is not None and not 0 <= self.ensemble <= 1:
            raise UsageError(f"the ensemble weight is a probability in [0, 1], got {self.ensemble}")
        if self.max_tokens < 1:
            raise UsageError(f"--max-tokens must be at least 1, got {self.max_tokens}")
        if any(not s for s in self.stop):
            raise UsageError("--stop strings must not be empty")


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
class _SequenceState:
    """The running state of one sample."""

    index: int
    seed: int
    streams: "_DrawStreams"
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


class _DrawStreams:
    """A sample's uniform random draws, indexed by generated position.

    Three independent streams come from the sample's seed: routing, base sampling and aligned
    sampling. The draw for position k of a stream is its k-th value, whatever order positions are
    asked in, so the step loop and draft-and-verify (which samples ahead and discards) use the same
    draw for the same decision, and give the same tokens.
    """

    def __init__(self, seed: int) -> None:
        children = np.random.SeedSequence(seed).spawn(3)
        self._rngs = {name: np.random.default_rng(child) for name, child in zip(("route", BASE, ALIGNED), children)}
        self._draws: dict[str, list[float]] = {name: [] for name in self._rngs}

    def draw(self, stream: str, position: int) -> float:
        """The draw of ``stream`` at generated position ``position``."""
        draws = self._draws[stream]
        if len(draws) <= position:
            draws.extend(self._rngs[stream].random(position + 1 - len(draws) + 15).tolist())
        return draws[position]


class Engine:
    """Runs BACo generations on a loaded pair, keeping one context per model between runs."""

    def __init__(self, pair: ModelPair, *, ctx_size: int = 4096, threads: int | None = None,
                 n_batch: int = 512, concurrency: str = "off", threads_base: int | None = None,
                 threads_aligned: int | None = None, choice_cache: ChoiceCache | None = None) -> None:
        check_ctx_size(ctx_size)
        self.pair = pair
        self.ctx_size = effective_context(ctx_size, pair.base.summary, pair.aligned.summary)
        self.threads = threads or default_threads()
        self.n_batch = n_batch
        self.concurrency = Concurrency(concurrency, ThreadPlan.from_options(self.threads, threads_base, threads_aligned),
                                       choice_cache)
        self.contexts: dict[Side, SequenceContext] = {}
        self.held: dict[Side, list[int]] = {BASE: [], ALIGNED: []}  # what sequence 0 holds
        self._scratch = {BASE: Scratch(pair.base.n_vocab), ALIGNED: Scratch(pair.aligned.n_vocab)}
        self._mixture = (np.empty(pair.n_vocab, dtype=np.float32), Scratch(pair.n_vocab))

    def close(self) -> None:
        """Free both contexts (the pair stays loaded)."""
        for context in self.contexts.values():
            context.close()
        self.contexts = {}
        self.concurrency.close()

    # --- contexts -------------------------------------------------------------------------

    def _ensure_contexts(self, n_seq: int, max_tokens: int) -> None:
        """(Re)create both contexts when a run needs more sequences or cells than they have."""
        cells = kv_cells(self.ctx_size, n_seq, max_tokens)
        current = self.contexts.get(BASE)
        if current and current.shape.n_seq >= n_seq and current.shape.n_cells >= cells:
            return
        self.close()
        shape = ContextShape(n_cells=cells, n_seq=n_seq, n_batch=min(self.n_batch, cells),
                             n_threads=self.threads)
        self.contexts = {BASE: SequenceContext(self.pair.base, shape),
                         ALIGNED: SequenceContext(self.pair.aligned, shape)}
        self.held = {BASE: [], ALIGNED: []}

    def prepare_decoding(self, n_seq: int, max_tokens: int, *, overlap: bool = True) -> str:
        """Make the contexts for ``n_seq`` sequences and settle the concurrency mode ("on" or "off");
        under ``auto`` this measures both modes once per batch class (see concurrent.py).
        ``overlap=False`` (draft-and-verify, whose decodes are one model at a time) is always "off"."""
        self._ensure_contexts(n_seq, max_tokens)
        contexts = (self.contexts[BASE], self.contexts[ALIGNED])
        if not overlap:
            return self.concurrency.sequential(contexts)
        paths = (self.pair.base.path, self.pair.aligned.path)
        return self.concurrency.prepare(contexts, paths, n_seq,
                                        (self._throwaway_batch(BASE, n_seq), self._throwaway_batch(ALIGNED, n_seq)))

    def _throwaway_batch(self, side: Side, n_seq: int) -> Callable[[SequenceContext], None]:
        """A decode of one token per sequence after what each holds, removed again (for timing);
        it runs before the prompt is decoded, which re-decodes the prompt's last token anyway."""
        token = (self.pair.base if side == BASE else self.pair.aligned).info.bos or 0

        def run(context: SequenceContext) -> None:
            for seq in range(1, n_seq):
                context.truncate(seq, 0)
            start = len(self.held[side])
            context.truncate(0, start)
            context.decode([token] * n_seq, [start] + [0] * (n_seq - 1), range(n_seq), [True] * n_seq)
            context.truncate(0, start)
            for seq in range(1, n_seq):
                context.truncate(seq, 0)
        return run

    def _prefill(self, side: Side, prompt: list[int], n_seq: int) -> None:
        """Make sequence 0 hold ``prompt`` (reusing the common prefix), then share it."""
        context, held = self.contexts[side], self.held[side]
        for seq in range(1, context.shape.n_seq):
            context.truncate(seq, 0)
        keep = 0
        limit = min(len(held), len(prompt) - 1)  # the last prompt token is always re-decoded
        while keep < limit and held[keep] == prompt[keep]:
            keep += 1
        context.truncate(0, keep)
        self.held[side] = prompt[:keep]
        context.prefill(prompt[keep:], seq=0, start=keep)
        self.held[side] = list(prompt)
        for seq in range(1, n_seq):
            context.copy_sequence(0, seq)

    # --- generation -----------------------------------------------------------------------

    def check_samples(self, n: int) -> None:
        """Refuse ``n`` parallel samples that llama.cpp cannot decode: its sequence limit, and one
        step's batch (a token per sample) against n_batch."""
        if n < 1:
            raise UsageError(f"-n must be at least 1, got {n}")
        check_sequences(n)
        if n > self.n_batch:
            raise UsageError(f"-n {n} is more than the batch size n_batch={self.n_batch} (one token per sample "
                             f"is decoded in each step); use at most {self.n_batch}")

    def check_prompt(self, messages: Sequence[Message]) -> dict[Side, list[int]]:
        """Both models' prompt tokens, refused (ContextOverflowError) where they leave the context no room."""
        prompts = {BASE: self.pair.base_prompt(messages), ALIGNED: self.pair.aligned_prompt(messages)}
        for side, tokens in prompts.items():
            if len(tokens) >= self.ctx_size:
                name = "base" if side == BASE else "aligned"
                raise ContextOverflowError(
                    f"the prompt is {len(tokens)} tokens for the {name} model but the context is "
                    f"{self.ctx_size}; raise --ctx-size or shorten the prompt")
        return prompts

    def generate(self, messages: Sequence[Message], n: int, settings: GenerationSettings) -> "Generation":
        """Start generating ``n`` samples for a conversation; iterate the result for token events."""
        self.check_samples(n)
        prompts = self.check_prompt(messages)
        if settings.draft.applies_to(n) and settings.ensemble is None:
            from .speculative import DraftGeneration  # kept apart so this file stays the reference

            return DraftGeneration(self, prompts, n, settings)
        return Generation(self, prompts, n, settings)


class Generation:
    """One prompt's N samples, produced step by step. Iterate it for :class:`TokenEvent` s."""

    overlaps_decodes = True  # each step decodes both contexts: they may run at the same time

    def __init__(self, engine: Engine, prompts: dict[Side, list[int]], n: int,
                 settings: GenerationSettings) -> None:
        self.engine = engine
        self.pair = engine.pair
        self.prompts = prompts
        self.settings = settings
        self._holdback = max((len(s) for s in settings.stop), default=1) - 1
        self.states = []
        for index in range(n):
            seed = sample_seed(settings.seed, index, settings.prompt_key)
            positions = {side: len(prompts[side]) for side in SIDES}
            self.states.append(_SequenceState(index, seed, _DrawStreams(seed), positions))
        self._started = False

    @property
    def samples(self) -> list[Sample]:
        """The samples as they stand (finish reason "interrupted" if the run was cut short)."""
        return [Sample(s.index, s.seed, s.text, list(s.tokens), "".join(s.sources),
                       s.finish or "interrupted", s.pieces()) for s in self.states]

    def __iter__(self) -> Iterator[TokenEvent]:
        if self._started:
            raise RuntimeError("a Generation can be iterated only once")
        self._started = True
        engine = self.engine
        engine.prepare_decoding(len(self.states), self.settings.max_tokens, overlap=self.overlaps_decodes)
        for side in SIDES:
            engine._prefill(side, self.prompts[side], len(self.states))
        yield from self._run()

    def _run(self) -> Iterator[TokenEvent]:
        """The step-by-step loop: route, sample, commit, decode in both contexts."""
        # After the prefill, every sequence's first distribution is row 0 of sequence 0.
        rows = {side: [0] * len(self.states) for side in SIDES}
        while True:
            live = [s for s in self.states if s.finish is None]
            events: list[TokenEvent] = []
            for state in live:
                dists = {side: self._row_distribution(side, rows[side][state.index]) for side in SIDES}
                token, side = self._choose(state, dists)
                events.extend(self._commit(state, token, side))
            yield from events
            to_decode = [s for s in live if s.finish is None]
            if not to_decode:
                return
            rows = self._decode(to_decode)

    def _distribution(self, side: Side, logits: np.ndarray) -> Distribution:
        """Wrap one logits row of ``side``, masking ids the other context cannot decode."""
        masked = self.pair.base_masked if side == BASE else self.pair.aligned_masked
        if masked.size:
            logits[masked] = MASKED_LOGIT
        return Distribution(logits, self.engine._scratch[side])

    def _row_distribution(self, side: Side, row: int) -> Distribution:
        """The distribution of output ``row`` of ``side``'s last decode."""
        return self._distribution(side, self.engine.contexts[side].logits(row))

    def _route(self, state: _SequenceState, dists: dict[Side, Distribution], ahead: int = 0) -> Side:
        """Ask the router which side should write the token ``ahead`` positions after the last one."""
        settings = self.settings
        signals = Signals(dists[BASE], dists[ALIGNED], self.pair.classes, settings.gamma, state.route_draw(ahead))
        return settings.router.route(signals)

    def _choose(self, state: _SequenceState, dists: dict[Side, Distribution]) -> tuple[int, Side]:
        """Route and sample one token for one sequence (steps 3-4 of the loop)."""
        if self.settings.ensemble is not None:
            return self._choose_from_mixture(state, dists, self.settings.ensemble)
        return choose_token(self._route(state, dists), state.writer, state.tokens, dists,
                            self.pair.classes.is_boundary, self.settings.sampling, state.sample_draw)

    def _choose_from_mixture(self, state: _SequenceState, dists: dict[Side, Distribution],
                             weight: float) -> tuple[int, Side]:
        """The ensemble baseline: sample from w·P_base + (1 − w)·P_aligned; the token's source is
        the model that contributed more of its probability."""
        buffer, scratch = self.engine._mixture
        token = sample(Distribution(mixture(dists[BASE], dists[ALIGNED], weight, buffer), scratch),
                       self.settings.sampling, state.sample_draw(BASE))
        base_share = weight * dists[BASE].prob(token) if token < dists[BASE].logits.shape[0] else 0.0
        aligned_share = (1 - weight) * dists[ALIGNED].prob(token) if token < dists[ALIGNED].logits.shape[0] else 0.0
        return token, BASE if base_share > aligned_share else ALIGNED

    def _commit(self, state: _SequenceState, token: int, side: Side) -> list[TokenEvent]:
        """Record a chosen token and decide whether the sample is finished (step 5)."""
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
            if state.finish is None and max(state.positions.values()) + 1 >= self.engine.ctx_size:
                state.finish = "context"
        if state.finish is None:
            visible = len(state.text) - self._holdback  # a stop string may still be forming
        else:
            if not cut_by_stop:
                state.text += state.decoder.decode(b"", final=True)
            visible = len(state.text)
        begin = state.emitted
        text = state.text[begin:max(visible, begin)]
        state.emitted += len(text)
        return [TokenEvent(state.index, token, side, text, state.spans(begin, state.emitted))]

    def _cut_at_stop(self, state: _SequenceState, checked: int) -> bool:
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

    def _decode(self, states: list[_SequenceState]) -> dict[Side, list[int]]:
        """Append each live sequence's new token in both contexts: one batch per model (step 6)."""
        rows: dict[Side, list[int]] = {BASE: [0] * len(self.states), ALIGNED: [0] * len(self.states)}
        tokens, seqs = [s.tokens[-1] for s in states], [s.index for s in states]

        def job(side: Side) -> Callable[[], None]:
            return lambda: self.engine.contexts[side].decode(tokens, [s.positions[side] for s in states], seqs,
                                                             [True] * len(states))
        self.engine.concurrency.decoder.run(job(BASE), job(ALIGNED))  # both at once when the mode says so
        for side in SIDES:
            for row, state in enumerate(states):
                state.positions[side] += 1
                rows[side][state.index] = row
                if state.index == 0:
                    self.engine.held[side].append(state.tokens[-1])
        return rows


def choose_token(wanted: Side, writer: Side | None, history: Sequence[int],
                 dists: dict[Side, Distribution], is_boundary: Callable[[Sequence[int], int], bool],
                 params: SamplingParams, draw: Callable[[Side], float]) -> tuple[int, Side]:
    """Sample from the wanted side; a change of writer stands only on a word-initial token.

    ``history`` is the sample's generated tokens so far; ``draw(side)`` is the uniform draw that
    side samples this position with.
    """
    token = sample(dists[wanted], params, draw(wanted))
    if writer is None or wanted == writer or is_boundary(history, token):
        return token, wanted
    return sample(dists[writer], params, draw(writer)), writer
