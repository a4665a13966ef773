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

Steps 2-5 for one sequence are :class:`~baco_local.engine.step.Stepper` (step.py), the one
definition shared with draft-and-verify (speculative.py) and the scheduler of many requests
(scheduler.py); this module adds the decode of step 6 and the prompt prefill.
"""

from __future__ import annotations

from typing import Callable, Iterator, Sequence

import numpy as np

from .backend import ContextShape, SequenceContext, check_sequences, default_threads
from .batch_costs import CostCache, CostTable
from .concurrent import ChoiceCache, Concurrency, ThreadPlan
from ..errors import UsageError
from ..models.memory import check_ctx_size, effective_context, kv_cells
from .pair import ModelPair
from .prompts import Message
from .routers import ALIGNED, BASE, Side
from .sampling import Scratch
from .settings import DraftPolicy, GenerationSettings
from .generation import GenerationBase
from .speculative import DraftGeneration
from .seeds import sample_seed
from .step import SIDES, Sample, SequenceState, TokenEvent, choose_token

__all__ = ["DraftPolicy", "Engine", "Generation", "GenerationSettings", "Sample", "TokenEvent",
           "SIDES", "choose_token", "sample_seed"]


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
        # Under auto, draft-and-verify picks K from measured batch costs (batch_costs.py), one table per side.
        self.cost_cache = CostCache(choice_cache.path.with_name("batch_costs.json")) if choice_cache else None
        self.costs: dict[Side, CostTable] = {}
        self.contexts: dict[Side, SequenceContext] = {}
        self.held: dict[Side, list[int]] = {BASE: [], ALIGNED: []}  # what sequence 0 holds
        self.scratch = {BASE: Scratch(pair.base.n_vocab), ALIGNED: Scratch(pair.aligned.n_vocab)}
        self.mixture_buffers = (np.empty(pair.n_vocab, dtype=np.float32), Scratch(pair.n_vocab))

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
            mode = self.concurrency.sequential(contexts)
            if self.concurrency.mode == "auto" and self.cost_cache is not None and not self.costs:
                self._measure_costs()
            return mode
        paths = (self.pair.base.path, self.pair.aligned.path)
        return self.concurrency.prepare(contexts, paths, n_seq,
                                        (self._throwaway_batch(BASE, n_seq), self._throwaway_batch(ALIGNED, n_seq)))

    def _measure_costs(self) -> None:
        """The batch-cost table of each side (remembered, else measured after what sequence 0 holds)."""
        for side, threads in zip(SIDES, self.concurrency.plan.sequential):
            model = self.pair.base if side == BASE else self.pair.aligned
            table = self.cost_cache.table(self.contexts[side], threads, 0, len(self.held[side]),  # type: ignore[union-attr]
                                          model.info.bos or 0)
            if table is None:
                self.costs = {}
                return
            self.costs[side] = table

    def _throwaway_batch(self, side: Side, n_seq: int) -> Callable[[SequenceContext], None]:
        """A decode of one token per sequence after what each holds, removed again (for timing);
        it runs before the prompt is decoded, which re-decodes the prompt's last token anyway."""
        token = (self.pair.base if side == BASE else self.pair.aligned).info.bos or 0

        def run(context: SequenceContext) -> None:
            for seq in range(1, n_seq):
                context.truncate(seq, 0)
            start = len(self.held[side])
            context.truncate(0, start)
            context.decode_and_undo([token] * n_seq, [start] + [0] * (n_seq - 1), range(n_seq))
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

    def prepare(self, prompts: dict[Side, list[int]], n_seq: int, max_tokens: int, *, overlap: bool = True) -> None:
        """Make both contexts hold each side's prompt on sequences 0 .. ``n_seq`` - 1, the concurrency
        mode settled first (``overlap``: whether the generation's steps decode both models together)."""
        self.prepare_decoding(n_seq, max_tokens, overlap=overlap)
        for side in SIDES:
            self._prefill(side, prompts[side], n_seq)

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
        return self.pair.prompts_within(messages, self.ctx_size)

    def generate(self, messages: Sequence[Message], n: int, settings: GenerationSettings) -> GenerationBase:
        """Start generating ``n`` samples for a conversation; iterate the result for token events."""
        self.check_samples(n)
        prompts = self.check_prompt(messages)
        if settings.draft.applies_to(n) and settings.ensemble is None:
            return DraftGeneration(self, prompts, n, settings)  # kept apart so this file stays the reference
        return Generation(self, prompts, n, settings)


class Generation(GenerationBase):
    """One prompt's N samples, produced step by step. Iterate it for :class:`TokenEvent` s."""

    overlaps_decodes = True  # each step decodes both contexts: they may run at the same time

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

    def _decode(self, states: list[SequenceState]) -> dict[Side, list[int]]:
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
