"""What every way of producing one prompt's N samples shares: their states, the prefill, the step.

:class:`~baco_local.engine.loop.Generation` (the step loop) and
:class:`~baco_local.engine.speculative.DraftGeneration` (draft and verify) differ only in ``_run``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

from .routers import Side
from .sampling import Distribution
from .settings import GenerationSettings
from .seeds import sample_seed
from .step import SIDES, DrawStreams, Sample, SequenceState, Stepper, TokenEvent

if TYPE_CHECKING:
    from .loop import Engine


class GenerationBase:
    """One prompt's N samples; subclasses define how the tokens are produced (``_run``)."""

    overlaps_decodes = False  # whether each step decodes both contexts, so that they may run at the same time

    def __init__(self, engine: "Engine", prompts: dict[Side, list[int]], n: int,
                 settings: GenerationSettings) -> None:
        self.engine = engine
        self.pair = engine.pair
        self.prompts = prompts
        self.settings = settings
        self.step = Stepper(self.pair, settings, engine.ctx_size, engine.scratch, engine.mixture_buffers, prompts)
        self.states = []
        for index in range(n):
            seed = sample_seed(settings.seed, index, settings.prompt_key)
            positions = {side: len(prompts[side]) for side in SIDES}
            self.states.append(SequenceState(index, seed, DrawStreams(seed), positions))
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
        self.engine.prepare(self.prompts, len(self.states), self.settings.max_tokens, overlap=self.overlaps_decodes)
        yield from self._run()

    def _run(self) -> Iterator[TokenEvent]:
        """Produce the samples' token events after the prompt is prefilled."""
        raise NotImplementedError


    def _row_distribution(self, side: Side, row: int) -> Distribution:
        """The distribution of output ``row`` of ``side``'s last decode."""
        return self.step.distribution(side, self.engine.contexts[side].logits(row))

    def _route(self, state: SequenceState, dists: dict[Side, Distribution], ahead: int = 0) -> Side:
        """Ask the router which side writes the token ``ahead`` positions after the last one."""
        return self.step.route(state, dists, ahead)

    def _choose(self, state: SequenceState, dists: dict[Side, Distribution]) -> tuple[int, Side]:
        """Route and sample one token for one sequence (steps 3-4 of the loop)."""
        return self.step.choose(state, dists)

    def _commit(self, state: SequenceState, token: int, side: Side) -> list[TokenEvent]:
        """Record a chosen token and decide whether the sample is finished (step 5)."""
        return self.step.commit(state, token, side)
