"""Continuous batching: sequences of many requests decoded together in both contexts.

A :class:`Scheduler` owns one llama.cpp context per model and up to ``parallel`` live sequences.
Each sequence is one sample of a :class:`Request` (a prompt, its own
:class:`~baco_local.engine.settings.GenerationSettings` and ``n`` samples). Every :meth:`Scheduler.step`:

1. takes new submissions and cancellations (both thread-safe; cancelled sequences end now);
2. admits waiting requests, first come first served, while there are free sequence slots and
   KV cells for the prompt plus ``n`` × ``max_tokens``; a prompt prefix that a live, prefilled
   request already holds (a shared system prompt, the chat template's header) is copied, not decoded;
3. decodes every live sequence's newest token and the admitted prompts' tokens in one
   ``llama_decode`` batch per model (logits only for each running sequence's token and each
   prompt's last one; a prompt that does not fit in ``n_batch`` beside the running tokens goes on
   in the next steps: see prefill.py), then routes, samples and commits each sequence's next token
   (:class:`~baco_local.engine.step.Stepper`, the same step as ``loop.py``). A prompt decoded to its
   end is shared with the request's other samples (``seq_cp``) and each sample's first token is
   chosen from its last logits;
4. frees a finished sequence's KV cells at once (``seq_rm``), so the next request can be admitted.

A sample's tokens depend only on its prompt, settings and seed (position-indexed draws), not on
what else is in the batch, up to llama.cpp's floating-point differences between batch shapes.
The scheduler always runs the step loop: ``settings.draft`` (draft-and-verify, which pays off for
a lone sequence) is ignored here. A new prompt is prefilled inside the step's decode calls, which
bench/prefill_mix.py measured faster than decoding it between steps; :meth:`Scheduler.prefill_stats`
counts how prompts were decoded.
The two models' decodes of a step run one after the other or at the same time
(``concurrency`` "off", "on" or "auto", as for the engine: see concurrent.py); the mode never
changes the tokens, and :meth:`Scheduler.concurrency_stats` says what ran.

Events go to the request's own ``on_event``, in order, on the engine thread: :class:`TokenEvent`
(sample index, token id, side, visible text), one :class:`SampleFinished` per sample (finish
reason "stop", "length", "context", "cancelled" or "error"), or a single :class:`RequestFailed`
for a request that cannot run (its prompt does not fit, too many samples, a bad template); other
requests are not disturbed.

    scheduler = Scheduler(pair, parallel=8, ctx_size=1024)
    handle = scheduler.submit(Request("Write a haiku", settings, n=2), on_event)
    scheduler.run_until_idle()           # or serve_forever(stop_event) on a server thread
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Sequence, Union

import numpy as np

from ..errors import BacoError, UsageError
from ..models.memory import check_ctx_size, effective_context
from .backend import MAX_SEQUENCES, ContextShape, SequenceContext, default_threads
from .batch_costs import CostCache, CostTable, padded_size
from .concurrent import ChoiceCache, Concurrency, ThreadPlan, batch_class
from .pair import ModelPair
from .prefill import Chunk, Fill, PrefillCounts, plan_chunks
from .prompts import Message
from .routers import ALIGNED, BASE, Side
from .sampling import Scratch
from .settings import GenerationSettings
from .seeds import sample_seed
from .step import SIDES, DrawStreams, Sample, SequenceState, Stepper, TokenEvent



@dataclass(frozen=True)
class Request:
    """One prompt (a conversation or a user message's text), its settings and its sample count."""

    prompt: Union[Sequence[Message], str]
    settings: GenerationSettings
    n: int = 1

    def messages(self) -> list[Message]:
        """The prompt as a conversation."""
        return [Message("user", self.prompt)] if isinstance(self.prompt, str) else list(self.prompt)


@dataclass(frozen=True)
class SampleFinished:
    """The last event of one sample: the sample as it ended, and the prompt's length in tokens."""

    sample: Sample
    prompt_tokens: int
    error: str | None = None  # why, when the finish reason is "error"

    @property
    def finish_reason(self) -> str:
        return self.sample.finish_reason


@dataclass(frozen=True)
class RequestFailed:
    """The request could not run at all; no other event follows."""

    message: str


Event = Union[TokenEvent, SampleFinished, RequestFailed]
EventHandler = Callable[[Event], None]


class RequestHandle:
    """A submitted request: cancel it from any thread, or wait until it is done."""

    def __init__(self, request_id: int, wake: Callable[[], None]) -> None:
        self.id = request_id
        self._cancelled = threading.Event()
        self._done = threading.Event()
        self._wake = wake

    def cancel(self) -> None:
        """Stop this request: its sequences end ("cancelled") and are freed at the next step."""
        self._cancelled.set()
        self._wake()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    @property
    def done(self) -> bool:
        """Whether every sample has finished (or the request failed)."""
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the request is done; False on timeout."""
        return self._done.wait(timeout)


_Rows = tuple[list[int], list[int], list[int], list[bool]]
"""One model's batch of a step: tokens, positions, sequence ids, and which rows want logits."""


@dataclass
class _Job:
    """A request on the engine side: its prompts, its samples' states and the slots they hold."""

    handle: RequestHandle
    request: Request
    on_event: EventHandler
    prompts: dict[Side, list[int]] = field(default_factory=dict)
    stepper: Stepper | None = None
    states: list[SequenceState] = field(default_factory=list)
    slots: list[int] = field(default_factory=list)
    reserved: int = 0  # KV cells held for this request
    per_sample: int = 0  # cells each unfinished sample holds within ``reserved``
    fill: Fill | None = None  # the prompt while it is being decoded into the first slot

    @property
    def prefilled(self) -> bool:
        """Whether the prompt is in the cache and the samples have begun."""
        return bool(self.states)

    @property
    def prompt_cells(self) -> int:
        return max(len(tokens) for tokens in self.prompts.values())


class Scheduler:
    """Owns both contexts and every live sequence; see the module docstring."""

    def __init__(self, pair: ModelPair, *, parallel: int = 8, ctx_size: int = 4096,
                 n_cells: int | None = None, threads: int | None = None, n_batch: int = 512,
                 concurrency: str = "off", threads_base: int | None = None, threads_aligned: int | None = None,
                 choice_cache: ChoiceCache | None = None) -> None:
        if not 1 <= parallel <= MAX_SEQUENCES:
            raise UsageError(f"--parallel must be between 1 and {MAX_SEQUENCES}, got {parallel}")
        check_ctx_size(ctx_size)
        self.pair = pair
        self.parallel = parallel
        self.ctx_size = effective_context(ctx_size, pair.base.summary, pair.aligned.summary)
        self.n_cells = n_cells or self.ctx_size * parallel
        if self.n_cells < self.ctx_size:
            raise UsageError(f"the KV cache ({self.n_cells} cells) must hold at least one context ({self.ctx_size})")
        threads = threads or default_threads()
        self.concurrency = Concurrency(concurrency, ThreadPlan.from_options(threads, threads_base, threads_aligned),
                                       choice_cache)
        # Under auto: batch costs per side and thread count, to pad a step's batch to a cheaper size.
        self._cost_cache = CostCache(choice_cache.path.with_name("batch_costs.json")) if choice_cache else None
        self._costs: dict[tuple[int, int], list[CostTable]] = {}
        shape = ContextShape(n_cells=self.n_cells, n_seq=parallel,
                             n_batch=max(parallel, min(n_batch, self.n_cells)), n_threads=threads)
        self.contexts: dict[Side, SequenceContext] = {BASE: SequenceContext(pair.base, shape),
                                                      ALIGNED: SequenceContext(pair.aligned, shape)}
        self._scratch = {BASE: Scratch(pair.base.n_vocab), ALIGNED: Scratch(pair.aligned.n_vocab)}
        self._mixture = (np.empty(pair.n_vocab, dtype=np.float32), Scratch(pair.n_vocab))
        self._wakeup = threading.Condition()
        self._incoming: deque[_Job] = deque()
        self._ids = itertools.count()
        self._waiting: deque[_Job] = deque()
        self._live: list[_Job] = []
        self._free_slots = list(range(parallel))
        self._free_cells = self.n_cells
        self._prefill = PrefillCounts()
        # The step's decode plan: the batch class whose mode the contexts run now (None: re-apply),
        # and one persistent job per model reading the step's batch of that model.
        self._settled: str | None = None
        self._batch: dict[Side, _Rows] = {BASE: ([], [], [], []), ALIGNED: ([], [], [], [])}
        self._jobs = (partial(self._decode_side, BASE), partial(self._decode_side, ALIGNED))

    def close(self) -> None:
        """Free both contexts (the pair stays loaded)."""
        for context in self.contexts.values():
            context.close()
        self.concurrency.close()

    def prefill_stats(self) -> dict[str, int]:
        """How prompts were decoded: in a step beside running sequences, alone, over several steps."""
        return self._prefill.as_dict()

    def concurrency_stats(self) -> dict:
        """What ran for /stats: the mode asked for, the thread plans, the mode (and any measured
        times) per batch class, and the same as one line (``summary``)."""
        return {**self.concurrency.describe(), "summary": self.concurrency.summary()}

    # --- any thread -----------------------------------------------------------------------

    def submit(self, request: Request, on_event: EventHandler) -> RequestHandle:
        """Queue a request; ``on_event`` receives its events on the engine thread."""
        with self._wakeup:
            handle = RequestHandle(next(self._ids), self.wake)
            self._incoming.append(_Job(handle, request, on_event))
            self._wakeup.notify_all()
        return handle

    def wake(self) -> None:
        """Wake a :meth:`serve_forever` loop waiting for work."""
        with self._wakeup:
            self._wakeup.notify_all()

    def check_prompt(self, messages: Sequence[Message]) -> dict[Side, list[int]]:
        """Both models' prompt tokens, refused (ContextOverflowError) where they leave the context no room
        (any thread: only tokenizes)."""
        return self.pair.prompts_within(messages, self.ctx_size)

    # --- the engine thread ----------------------------------------------------------------

    @property
    def live_sequences(self) -> int:
        """Sequences being decoded now."""
        return self.parallel - len(self._free_slots)

    @property
    def free_cells(self) -> int:
        """KV cells not held by a live request."""
        return self._free_cells

    def has_work(self) -> bool:
        """Whether any request is live, waiting or just submitted."""
        with self._wakeup:
            return bool(self._live or self._waiting or self._incoming)

    def step(self) -> bool:
        """One step: take submissions, end cancelled requests, admit, decode; True while work remains."""
        with self._wakeup:
            incoming, self._incoming = list(self._incoming), deque()
        for job in incoming:
            self._accept(job)
        self._reap_cancelled()
        self._admit()
        self._decode()
        return self.has_work()

    def run_until_idle(self) -> None:
        """Step until no request is live or waiting."""
        while self.step():
            pass

    def serve_forever(self, stop: threading.Event, idle_wait: float = 0.5) -> None:
        """Step while there is work; otherwise sleep until a submission, a cancel or ``stop``."""
        while not stop.is_set():
            if self.step():
                continue
            with self._wakeup:
                if not self._incoming and not stop.is_set():
                    self._wakeup.wait(idle_wait)

    # --- admission ------------------------------------------------------------------------

    def _accept(self, job: _Job) -> None:
        """Tokenize a new request and check that it can ever run; otherwise fail it alone."""
        request = job.request
        try:
            if request.n < 1:
                raise UsageError(f"n must be at least 1, got {request.n}")
            if request.n > self.parallel:
                raise UsageError(f"{request.n} samples do not fit in {self.parallel} parallel sequences")
            job.prompts = self.check_prompt(request.messages())
            longest = job.prompt_cells
            job.per_sample = min(request.settings.max_tokens, self.ctx_size - longest)
            job.reserved = longest + request.n * job.per_sample
            if job.reserved > self.n_cells:
                raise UsageError(f"the prompt ({longest} tokens) and {request.n} × {job.per_sample} new tokens "
                                 f"need {job.reserved} KV cells but there are {self.n_cells}")
        except BacoError as exc:
            self._fail(job, str(exc))
            return
        self._waiting.append(job)

    def _admit(self) -> None:
        """Start waiting requests, in order, while slots and KV cells allow."""
        while self._waiting:
            job = self._waiting[0]
            if job.request.n > len(self._free_slots) or job.reserved > self._free_cells:
                return
            self._waiting.popleft()
            job.slots = [self._free_slots.pop(0) for _ in range(job.request.n)]
            self._free_cells -= job.reserved
            self._live.append(job)
            try:
                self._start(job)
            except BacoError as exc:
                self._release(job)
                self._fail(job, str(exc))

    def _start(self, job: _Job) -> None:
        """Copy a prompt prefix another request holds; the rest of the prompt joins the next batches."""
        job.stepper = Stepper(self.pair, job.request.settings, self.ctx_size, self._scratch, self._mixture,
                              job.prompts)
        first, done = job.slots[0], {}
        for side in SIDES:
            source, done[side] = self._shared_prefix(job, side)
            if done[side]:
                self.contexts[side].copy_range(source, first, 0, done[side])
        job.fill = Fill(first, job.prompts, done)

    def _begin_samples(self, job: _Job, row: int) -> None:
        """The prompt is decoded (its last logits are ``row``): share it with the other samples and
        choose each sample's first token."""
        settings, first = job.request.settings, job.slots[0]
        job.fill = None
        for slot in job.slots[1:]:
            for side in SIDES:
                self.contexts[side].copy_sequence(first, slot)
        for index in range(job.request.n):
            seed = sample_seed(settings.seed, index, settings.prompt_key)
            positions = {side: len(job.prompts[side]) for side in SIDES}
            job.states.append(SequenceState(index, seed, DrawStreams(seed), positions))
        for state in job.states:
            logits = {side: self.contexts[side].logits(row) for side in SIDES}
            self._emit(job, job.stepper.step(state, logits))  # type: ignore[union-attr]
            self._finish_if_done(job, state)

    def _shared_prefix(self, job: _Job, side: Side) -> tuple[int, int]:
        """A live sequence whose prompt starts as ``job``'s does, and how many tokens they share
        (the same system prompt or chat header is then decoded once); (-1, 0) when none."""
        prompt = job.prompts[side]
        best = (-1, 0)
        for other in self._live:
            slots = [slot for slot in other.slots if slot >= 0]
            if other is job or not slots or not other.prefilled:  # a prompt still being decoded is no source
                continue
            held, keep = other.prompts[side], 0
            limit = min(len(held), len(prompt) - 1)  # the last prompt token is decoded for its logits
            while keep < limit and held[keep] == prompt[keep]:
                keep += 1
            if keep > best[1]:
                best = (slots[0], keep)
        return best

    # --- decoding -------------------------------------------------------------------------

    def _decode(self) -> None:
        """One batch per model with every live sequence's newest token and the prompt tokens that fit
        beside them, then one step each (and the first step of every prompt decoded to its end)."""
        pending = [(job, state) for job in self._live for state in job.states if state.finish is None]
        filling = [job for job in self._live if job.fill is not None]
        room = self.contexts[BASE].shape.n_batch - len(pending)
        chunks = plan_chunks([job.fill for job in filling], room) if filling else []  # type: ignore[misc]
        if not pending and not chunks:
            return
        tokens = [s.tokens[-1] for _, s in pending]
        seqs = [job.slots[s.index] for job, s in pending]
        positions = {side: [s.positions[side] for _, s in pending] for side in SIDES}
        batches = {side: self._with_chunks(tokens, positions[side], seqs, chunks, side) for side in SIDES}
        pad = 0
        try:
            if pending:
                self._settle(tokens, positions, seqs)
                pad = 0 if chunks else self._padding(len(pending))
            else:  # only prompts: all threads, one model at a time
                self.concurrency.sequential(self._pair_contexts())
                self._settled = None  # the next step re-applies its class's mode
            if pad:  # pad rows on a free slot, thrown away after the decode
                slot = self._free_slots[0]
                batches = {side: (tokens + [tokens[0]] * pad, positions[side] + list(range(pad)),
                                  seqs + [slot] * pad, [True] * (len(tokens) + pad)) for side in SIDES}
            self._batch = batches
            try:
                self.concurrency.decoder.run(*self._jobs)  # both at once when the mode says so
            finally:
                if pad:
                    for side in SIDES:
                        self.contexts[side].truncate(slot, 0)
        except BacoError as exc:  # the batch failed for everyone in it
            for job, state in pending:
                state.finish = "error"
                self._finish_if_done(job, state, error=str(exc))
            for chunk in chunks:
                job = next(j for j in filling if j.fill is chunk.fill)
                self._release(job)
                self._fail(job, str(exc))
            return
        self._count_prefill(chunks, bool(pending))
        for row, (job, state) in enumerate(pending):
            if state.finish is not None:  # cancelled by a callback earlier in this loop
                continue
            for side in SIDES:
                state.positions[side] += 1
            logits = {side: self.contexts[side].logits(row) for side in SIDES}
            self._emit(job, job.stepper.step(state, logits))  # type: ignore[union-attr]
            self._finish_if_done(job, state)
        row = len(pending)
        for chunk in chunks:
            if chunk.last:
                self._begin_samples(next(j for j in filling if j.fill is chunk.fill), row)
                row += 1

    @staticmethod
    def _with_chunks(tokens: list[int], positions: list[int], seqs: list[int], chunks: list[Chunk],
                     side: Side) -> _Rows:
        """``side``'s batch: the running rows (each wants logits), then every chunk's prompt tokens."""
        batch = (list(tokens), list(positions), list(seqs), [True] * len(tokens))
        for chunk in chunks:
            for whole, part in zip(batch, chunk.rows(side)):
                whole.extend(part)  # type: ignore[arg-type]
        return batch

    def _count_prefill(self, chunks: list[Chunk], beside_running: bool) -> None:
        """Move each chunk's fill on, and count how the prompts were decoded."""
        if not chunks:
            return
        if beside_running:
            self._prefill.in_step += 1
        else:
            self._prefill.alone += 1
        for chunk in chunks:
            chunk.fill.steps += 1
            for side in SIDES:
                chunk.fill.done[side] = chunk.spans[side][1]
            self._prefill.tokens += chunk.spans[BASE][1] - chunk.spans[BASE][0]
            if chunk.last and chunk.fill.steps > 1:
                self._prefill.chunked += 1

    def _decode_side(self, side: Side) -> None:
        """Decode this step's batch in ``side``'s context (a job of the pair decoder)."""
        self.contexts[side].decode(*self._batch[side])

    def _settle(self, tokens: list[int], positions: dict[Side, list[int]], seqs: list[int]) -> None:
        """Settle the decode plan (mode and threads) for this step's batch-size class: measured or
        asked the first time a class is seen, and re-applied only when the class changes or a
        prefill ran with the sequential threads since; the same class's later steps do nothing."""
        klass = batch_class(len(tokens))
        if klass == self._settled:
            return
        contexts = self._pair_contexts()
        if klass in self.concurrency.chosen:
            self.concurrency.restore(contexts, len(tokens))
        else:
            def throwaway(side: Side) -> Callable[[SequenceContext], None]:
                return lambda context: context.decode_and_undo(tokens, positions[side], seqs)  # this very batch, timed

            self.concurrency.prepare(contexts, (self.pair.base.path, self.pair.aligned.path), len(tokens),
                                     (throwaway(BASE), throwaway(ALIGNED)))
        self._settled = klass

    def _padding(self, size: int) -> int:
        """Rows to add to a step's batch of ``size`` so that it decodes faster (only under auto,
        with a free slot to put them on; the cost tables are measured on that slot once)."""
        if self.concurrency.mode != "auto" or self._cost_cache is None or not self._free_slots:
            return 0
        plan = self.concurrency.plan
        threads = plan.concurrent if self.concurrency.decoder.concurrent else plan.sequential
        if threads not in self._costs:
            slot = self._free_slots[0]
            tables = [self._cost_cache.table(self.contexts[side], n, slot, 0, self.pair.aligned.info.bos or 0)
                      for side, n in zip(SIDES, threads)]
            self._costs[threads] = [t for t in tables if t is not None] if all(tables) else []
        tables = self._costs[threads]
        if not tables:
            return 0
        # Pad cells come out of the unreserved ones, and only measured sizes are candidates.
        limit = min(size + self._free_cells, self.contexts[BASE].shape.n_batch, min(t.sizes[-1] for t in tables))
        return padded_size(tables, size, limit) - size

    def _pair_contexts(self) -> tuple[SequenceContext, SequenceContext]:
        return self.contexts[BASE], self.contexts[ALIGNED]

    # --- ending ---------------------------------------------------------------------------

    def _reap_cancelled(self) -> None:
        """End every sequence of cancelled requests, waiting or live."""
        unstarted = [j for j in self._waiting if j.handle.cancelled]
        unstarted += [j for j in self._live if j.handle.cancelled and not j.prefilled]  # mid-prefill
        for job in unstarted:
            if job in self._waiting:
                self._waiting.remove(job)  # it holds nothing yet
            else:
                self._release(job)
            for index in range(job.request.n):
                seed = sample_seed(job.request.settings.seed, index, job.request.settings.prompt_key)
                self._deliver(job, SampleFinished(Sample(index, seed, "", [], "", "cancelled"), job.prompt_cells))
            job.handle._done.set()
        for job in [j for j in self._live if j.handle.cancelled]:
            for state in job.states:
                if state.finish is None:
                    state.finish = "cancelled"
                    self._finish_if_done(job, state)

    def _finish_if_done(self, job: _Job, state: SequenceState, error: str | None = None) -> None:
        """If ``state`` has finished: free its sequence's cells now and send its last event."""
        if state.finish is None or job not in self._live:
            return
        slot = job.slots[state.index]
        for side in SIDES:
            self.contexts[side].truncate(slot, 0)
        self._free_slots.append(slot)
        job.slots[state.index] = -1
        self._free_cells += job.per_sample
        job.reserved -= job.per_sample
        sample = Sample(state.index, state.seed, state.text, list(state.tokens), "".join(state.sources),
                        state.finish, state.pieces())
        self._deliver(job, SampleFinished(sample, job.prompt_cells, error))
        if all(s.finish is not None for s in job.states):
            self._free_cells += job.reserved
            job.reserved = 0
            self._live.remove(job)
            job.handle._done.set()

    def _release(self, job: _Job) -> None:
        """Give back everything a job holds (after a failed start or prefill, or a cancel before its samples began)."""
        for slot in job.slots:
            if slot >= 0:
                for side in SIDES:
                    self.contexts[side].truncate(slot, 0)
                self._free_slots.append(slot)
        self._free_cells += job.reserved
        job.reserved, job.slots, job.fill = 0, [], None
        if job in self._live:
            self._live.remove(job)

    def _fail(self, job: _Job, message: str) -> None:
        self._deliver(job, RequestFailed(message))
        job.handle._done.set()

    def _emit(self, job: _Job, events: list[TokenEvent]) -> None:
        for event in events:
            self._deliver(job, event)

    def _deliver(self, job: _Job, event: Event) -> None:
        """Call the request's handler; a handler that raises cancels its own request only."""
        try:
            job.on_event(event)
        except Exception:  # noqa: BLE001 - a consumer's bug must not stop the other requests
            job.handle._cancelled.set()
