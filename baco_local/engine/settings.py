"""What shapes one generation besides the prompt: router, γ, sampling, limits, drafting."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError
from .routers import Router
from .sampling import SamplingParams


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
