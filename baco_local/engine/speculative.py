"""Draft and verify: the same BACo output as loop.py, with far fewer decode calls.

In the step-by-step loop every token costs two decode calls, one per model. But a model that keeps
writing does not need the other model's distribution until the router would switch to it, and the
other model can score many positions in one batch almost as fast as one. So each round, for every
live sample:

1. the *writer* (the side that wrote the last token) drafts up to K tokens on its own, one decode
   per token, keeping only the router's statistics of each draft position;
2. the *other* model decodes the same K inputs in one batch, giving its K distributions;
3. the router is replayed position by position exactly as the step loop would: where it keeps the
   writer (or a switch is refused because the other model's token would split a word), the draft
   token stands; at the first position where the other model takes over, its token is sampled from
   its distribution there and the round ends;
4. both caches are cut back to the kept tokens; the last kept token is decoded next round.

The output distribution is exactly the step loop's (each draft token is an independent draw from
the writer's distribution at its prefix, the routing draws happen in the same order), and under
greedy sampling the tokens are identical. K adapts per sample (DraftPolicy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from .batch_costs import best_draft_length
from .generation import GenerationBase
from .step import SIDES, SequenceState, TokenEvent
from .routers import ALIGNED, BASE, Side
from .sampling import FrozenDistribution


@dataclass(frozen=True)
class _Draft:
    """One drafted token, the writer's statistics at its position, and whether the router needs
    the other model's distribution there (if not, the writer keeps this token for sure)."""

    token: int
    stats: FrozenDistribution
    needs_other: bool


class _NeedsOther(Exception):
    """The router read the other model's distribution, which is not decoded yet."""


class _NotDecodedYet:
    """Stands in for the other model's distribution while drafting; reading it raises _NeedsOther."""

    def __getattr__(self, name: str) -> object:
        raise _NeedsOther(name)


_NOT_DECODED = _NotDecodedYet()


def _other(side: Side) -> Side:
    return ALIGNED if side == BASE else BASE


class DraftGeneration(GenerationBase):
    """A Generation whose tokens are produced by draft-and-verify rounds."""

    overlaps_decodes = False  # drafts and verifications decode one model at a time

    def _run(self) -> Iterator[TokenEvent]:
        policy = self.settings.draft
        # Draft lengths per sample and writer: the two models keep the pen for very different spells.
        self._k = {(s.index, side): policy.fixed_k or policy.start_k for s in self.states for side in SIDES}
        # With measured batch costs (--concurrency auto): drafts kept / drafted and rows needed, per writer.
        self._seen = {side: [0, 0, 0] for side in SIDES}
        # Both distributions of the first position come from the prefill: one ordinary step.
        events: list[TokenEvent] = []
        for state in self.states:
            dists = {side: self._row_distribution(side, 0) for side in SIDES}
            events.extend(self._commit(state, *self._choose(state, dists)))
        yield from events
        while True:
            live = [s for s in self.states if s.finish is None]
            if not live:
                return
            drafts = self._draft(live)
            rows = self._verify(live, drafts)
            events = []
            for state in live:
                events.extend(self._settle(state, drafts[state.index], rows[state.index]))
            yield from events

    def _budget(self, state: SequenceState) -> int:
        """How many tokens this sample may draft this round (never past its limits)."""
        room = self.engine.ctx_size - 1 - max(state.positions.values())
        batch_room = self.engine.contexts[BASE].shape.n_batch // len(self.states)  # verify is one batch
        k = self._k[state.index, state.writer]
        costs = self.engine.costs
        if costs and not self.settings.draft.fixed_k:
            kept, drafted, needed = self._seen[state.writer]
            acceptance = (kept + 4 * 0.8) / (drafted + 4)  # a prior of 0.8 worth four drafts
            share = (needed + 4) / (drafted + 4)
            k = best_draft_length(costs[state.writer], costs[_other(state.writer)], acceptance,
                                  self.settings.draft.max_k, share)
        return max(1, min(k, self.settings.max_tokens - len(state.tokens), room, batch_room))

    def _inputs(self, state: SequenceState, drafts: list[_Draft]) -> list[int]:
        """The tokens both contexts decode this round: the pending token, then all drafts but the last."""
        return [state.tokens[-1], *(d.token for d in drafts[:-1])]

    def _decode_group(self, side: Side, group: list[SequenceState], inputs: dict[int, list[int]],
                      first: int, wanted: dict[int, list[bool]] | None = None) -> dict[int, list[int | None]]:
        """Decode, in ``side``'s context, each sample's ``inputs``: the round's inputs from index
        ``first`` on (at positions pending + ``first``, ...).

        ``wanted`` says which inputs need logits (default: all). Returns, per sample and input, the
        output row of its logits, or None where none were computed.
        """
        tokens: list[int] = []
        positions: list[int] = []
        seqs: list[int] = []
        want: list[bool] = []
        rows: dict[int, list[int | None]] = {}
        outputs = 0
        sequence_zero: list[int] = []  # its cache content is remembered for prefix reuse
        for state in group:
            chosen = inputs[state.index]
            flags = wanted[state.index] if wanted is not None else [True] * len(chosen)
            rows[state.index] = []
            for flag in flags:
                rows[state.index].append(outputs if flag else None)
                outputs += flag
            if state.index == 0:
                sequence_zero = chosen
            tokens.extend(chosen)
            want.extend(flags)
            positions.extend(range(state.positions[side] + first, state.positions[side] + first + len(chosen)))
            seqs.extend([state.index] * len(chosen))
        self.engine.contexts[side].decode(tokens, positions, seqs, want)
        self.engine.held[side].extend(sequence_zero)
        return rows

    def _draft(self, live: list[SequenceState]) -> dict[int, list[_Draft]]:
        """Step 1: every writer runs ahead, all samples with the same writer in one batch per step."""
        # Routers read only the base model's entropy: an aligned writer's drafts skip that pass.
        needs_entropy = self.settings.router.needs_entropy
        budgets = {s.index: self._budget(s) for s in live}
        drafts: dict[int, list[_Draft]] = {s.index: [] for s in live}
        for step in range(max(budgets.values())):
            active = [s for s in live if len(drafts[s.index]) == step < budgets[s.index]]
            for side in SIDES:
                group = [s for s in active if s.writer == side]
                if not group:
                    continue
                # This step's input: the pending token, then the draft just sampled.
                inputs = {s.index: [drafts[s.index][-1].token if step else s.tokens[-1]] for s in group}
                rows = self._decode_group(side, group, inputs, first=step)
                for state in group:
                    dist = self._row_distribution(side, rows[state.index][0])  # type: ignore[arg-type]
                    drafted = [d.token for d in drafts[state.index]]
                    token = self.step.sample(state, side, dist, ahead=step, drafted=drafted)
                    stats = dist.frozen(with_entropy=needs_entropy and side == BASE)
                    drafts[state.index].append(_Draft(token, stats, self._needs_other(state, side, stats, step)))
                    if token in self.pair.eog_ids:
                        budgets[state.index] = step + 1
        return drafts

    def _needs_other(self, state: SequenceState, writer: Side, stats: FrozenDistribution, ahead: int) -> bool:
        """Whether routing position ``ahead`` of this round needs the other model's distribution.

        The router is asked with the other side missing: if it keeps the writer without reading the
        other side, the other model need not compute logits there (it still decodes the token).
        """
        dists = {writer: stats, _other(writer): _NOT_DECODED}
        try:
            return self._route(state, dists, ahead) != writer  # type: ignore[arg-type]
        except _NeedsOther:
            return True

    def _verify(self, live: list[SequenceState], drafts: dict[int, list[_Draft]]) -> dict[int, list[int | None]]:
        """Step 2: the other model decodes every sample's draft inputs in one batch."""
        rows: dict[int, list[int | None]] = {}
        for side in SIDES:
            group = [s for s in live if s.writer != side]
            if group:
                inputs = {s.index: self._inputs(s, drafts[s.index]) for s in group}
                wanted = {s.index: [d.needs_other for d in drafts[s.index]] for s in group}
                rows.update(self._decode_group(side, group, inputs, first=0, wanted=wanted))
        return rows

    def _settle(self, state: SequenceState, drafts: list[_Draft], rows: list[int | None]) -> list[TokenEvent]:
        """Steps 3-4: replay the router over the drafts, commit the kept tokens, cut both caches."""
        writer = state.writer
        other = _other(writer)
        start = dict(state.positions)  # where the pending token was decoded in each context
        events: list[TokenEvent] = []
        rejected = False
        for j, draft in enumerate(drafts):
            state.positions = {side: start[side] + 1 + j for side in SIDES}
            token, side = draft.token, writer
            row = rows[j]
            if row is not None:  # the router needs the other model here (see _needs_other)
                other_dist = self._row_distribution(other, row)
                if self._route(state, {writer: draft.stats, other: other_dist}) != writer:  # type: ignore[dict-item]
                    candidate = self.step.sample(state, other, other_dist)
                    if self.pair.classes.is_boundary(state.tokens, candidate):
                        token, side, rejected = candidate, other, True
            events.extend(self._commit(state, token, side))
            if rejected or state.finish is not None:
                break
        kept = len(events)
        seen = self._seen[writer]
        seen[0] += kept - rejected  # a rejected round's last token is the other model's
        seen[1] += kept
        seen[2] += sum(d.needs_other for d in drafts[:kept])
        self._rewind(state, start, kept)
        self._adapt(state, writer, accepted_all=not rejected and kept == len(drafts))
        return events

    def _rewind(self, state: SequenceState, start: dict[Side, int], kept: int) -> None:
        """Cut both caches back to the pending token plus the kept tokens but the last."""
        for side in SIDES:
            keep = start[side] + kept
            if state.index == 0:
                del self.engine.held[side][keep:]  # bookkeeping first: it must never claim more
            self.engine.contexts[side].truncate(state.index, keep)
            state.positions[side] = keep

    def _adapt(self, state: SequenceState, writer: Side, *, accepted_all: bool) -> None:
        """Grow the draft after full acceptance, shrink it after a rejection (unless fixed)."""
        policy = self.settings.draft
        if policy.fixed_k:
            return
        key = (state.index, writer)
        self._k[key] = min(policy.max_k, self._k[key] + 2) if accepted_all else max(1, self._k[key] - 1)
