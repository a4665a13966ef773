"""BACo routers: at each step, which model's distribution the next token is drawn from.

A router is a content rule (an opinion from the aligned model's predicted top-1 token, or none)
followed by a logit rule (a decision from the base model's distribution and the threshold γ).
Both are small pure functions of :class:`Signals`; routers are registered by name and looked up
once, before generation starts.

Sides are single characters, the same ones written to the ``sources`` provenance string:
``A`` (aligned) and ``B`` (base).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

from ..errors import UsageError
from .sampling import Distribution, FrozenDistribution
from .vocab import TokenClasses

Side = Literal["A", "B"]
ALIGNED: Side = "A"
BASE: Side = "B"
GammaKind = Literal["probability", "entropy", "unused"]


@dataclass(frozen=True)
class Signals:
    """Everything a router may look at for one step of one sequence."""

    base: Distribution | FrozenDistribution
    aligned: Distribution | FrozenDistribution
    classes: TokenClasses
    gamma: float
    draw: float  # a uniform [0, 1) number from the routing random stream (used by `random`)


ContentRule = Callable[[Signals], "Side | None"]
LogitRule = Callable[[Signals], Side]


# --- content rules: look at the aligned model's predicted top-1 token -----------------------

def punctuation_to_aligned(s: Signals) -> Side | None:
    """PUNC: punctuation, newlines and formatting are the aligned model's."""
    return ALIGNED if s.classes.punctuation[s.aligned.argmax] else None


def function_words_to_aligned(s: Signals) -> Side | None:
    """FC: anything that is not a content word (function words, punctuation) is the aligned model's."""
    return None if s.classes.content_word[s.aligned.argmax] else ALIGNED


# --- logit rules: look at the base model's distribution ------------------------------------

def base_if_unsure(s: Signals) -> Side:
    """P: the base model writes where its top-1 probability is below γ."""
    return BASE if s.base.top1_prob < s.gamma else ALIGNED


def base_if_high_entropy(s: Signals) -> Side:
    """H: the base model writes where its entropy (nats) is above γ."""
    return BASE if s.base.entropy > s.gamma else ALIGNED


def aligned_if_base_unsure(s: Signals) -> Side:
    """Nudging: the aligned model takes over where the base model's top-1 probability is below γ."""
    return ALIGNED if s.base.top1_prob < s.gamma else BASE


def base_with_probability_gamma(s: Signals) -> Side:
    """RANDOM: the base model writes with probability γ."""
    return BASE if s.draw < s.gamma else ALIGNED


def always_aligned(_: Signals) -> Side:
    """The aligned model alone."""
    return ALIGNED


def always_base(_: Signals) -> Side:
    """The base model alone."""
    return BASE


DEFAULT_GAMMA = 0.3  # the probability routers' (p, p-punc, p-fc, random, nudging)
# The entropy routers' (h, h-punc), in nats: where h-punc's base share on Gemma 3 270M is near
# p-punc's at 0.3 (README, "Routers"; bench/entropy_gamma.py reproduces it).
DEFAULT_ENTROPY_GAMMA = 3.0


@dataclass(frozen=True)
class Router:
    """A named routing policy: an optional content rule, then a logit rule."""

    name: str
    summary: str
    gamma_kind: GammaKind
    logit_rule: LogitRule
    content_rule: ContentRule | None = None

    def route(self, signals: Signals) -> Side:
        """The side that should write the next token."""
        if self.content_rule is not None:
            opinion = self.content_rule(signals)
            if opinion is not None:
                return opinion
        return self.logit_rule(signals)

    @property
    def needs_entropy(self) -> bool:
        """Whether the logit rule reads the base model's entropy (the only costly statistic)."""
        return self.gamma_kind == "entropy"

    def default_gamma(self, probability: float = DEFAULT_GAMMA, entropy: float = DEFAULT_ENTROPY_GAMMA) -> float:
        """The γ this router runs at when none is given: ``entropy`` (nats) for h/h-punc, else ``probability``."""
        return entropy if self.gamma_kind == "entropy" else probability

    def check_gamma(self, gamma: float) -> None:
        """Refuse a γ this router cannot use."""
        if self.gamma_kind == "probability" and not 0 <= gamma <= 1:
            raise UsageError(f"--gamma for router '{self.name}' is a probability in [0, 1], got {gamma}")
        if self.gamma_kind == "entropy" and not gamma >= 0:
            raise UsageError(f"--gamma for router '{self.name}' is an entropy in nats (>= 0), got {gamma}")


ROUTERS: dict[str, Router] = {}
DEFAULT_ROUTER = "p-punc"  # the paper's best


def register(router: Router) -> Router:
    """Add a router to the registry under its name."""
    ROUTERS[router.name] = router
    return router


for _router in (
    Router("aligned", "aligned model only (baseline)", "unused", always_aligned),
    Router("base", "base model only (baseline)", "unused", always_base),
    Router("random", "base with probability γ, else aligned (ablation)", "probability",
           base_with_probability_gamma),
    Router("p", "base when the base model's top-1 probability < γ", "probability", base_if_unsure),
    Router("h", "base when the base model's entropy > γ nats", "entropy", base_if_high_entropy),
    Router("punc", "aligned for punctuation/newline/formatting, base otherwise", "unused",
           always_base, punctuation_to_aligned),
    Router("fc", "aligned for function words and punctuation, base for content words", "unused",
           always_base, function_words_to_aligned),
    Router("p-punc", "PUNC, then P (the paper's best)", "probability", base_if_unsure,
           punctuation_to_aligned),
    Router("h-punc", "PUNC, then H", "entropy", base_if_high_entropy, punctuation_to_aligned),
    Router("p-fc", "FC's function-word rule, then P", "probability", base_if_unsure,
           function_words_to_aligned),
    Router("nudging", "base writes; aligned where the base top-1 probability < γ (Fei et al.)",
           "probability", aligned_if_base_unsure),
):
    register(_router)


def get_router(name: str) -> Router:
    """Look a router up by name (case-insensitive); unknown names list the known ones."""
    router = ROUTERS.get(name.lower())
    if router is None:
        raise UsageError(f"unknown router '{name}'; choose one of: {', '.join(ROUTERS)}")
    return router
