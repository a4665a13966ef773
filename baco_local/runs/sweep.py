"""A sweep's grid: every method with each of its knob values, as operating points.

A *method* is one curve in the diversity-quality plane: a BACo router swept over γ, the
aligned-only and base-only baselines swept over temperature and min-p, Nudging swept over its γ,
the ensemble (sampling from w·P_base + (1 − w)·P_aligned) swept over w, and what a user could do
with the aligned model alone: ask it for variety (``prompting`` and its sequential variant, over
temperature; the wording is in :mod:`~baco_local.runs.sweep_prompting`), or turn up llama.cpp's
diversity samplers (``xtc`` over the XTC probability at the shared ``--xtc-threshold``,
``top-nsigma`` over n). An *operating point*
is one method at one knob setting, with the full generation settings it runs with; its ``id``
(e.g. ``p-punc@gamma=0.3``) names it in records, tables and plots. All points share the sampler
settings, seed and limits given once; only their knobs differ.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import product
from typing import Iterator

from ..errors import UsageError
from ..engine.loop import GenerationSettings
from .prompt_file import PromptItem, id_key
from ..engine.routers import ROUTERS, get_router

BASELINES = ("aligned", "base", "nudging", "ensemble", "prompting", "prompting-seq", "xtc", "top-nsigma")
PROMPTING = ("prompting", "prompting-seq")  # the aligned model asked for variety in the prompt
# What each method is called where a reader sees it (legends, the summary table); the knob it is swept over.
METHOD_LABELS = {"p-punc": "BACo P-PUNC", "p": "BACo P", "p-fc": "BACo P-FC", "h-punc": "BACo H-PUNC",
                 "h": "BACo H", "punc": "BACo PUNC", "fc": "BACo FC", "random": "Random routing (ablation)",
                 "aligned": "Aligned (T)", "base": "Base (T)", "nudging": "Nudging (γ)",
                 "ensemble": "Ensemble (w)", "prompting": "Aligned, asked for variety (T)",
                 "prompting-seq": "Aligned, shown its answers (T)", "xtc": "Aligned + XTC (p)",
                 "top-nsigma": "Aligned + top-nσ (n)"}
KNOB_SYMBOLS = {"gamma": "γ", "temp": "T", "min_p": "min-p", "w": "w", "xtc_p": "p", "n": "n"}


def method_label(method: str) -> str:
    """The name a reader sees for a method (BACo routers say so)."""
    return METHOD_LABELS.get(method, method)


def is_baco(method: str) -> bool:
    """Whether a method is a BACo router (the rest are baselines)."""
    return method not in BASELINES
BACO_ROUTERS = ("p-punc", "p", "p-fc", "h-punc", "h", "punc", "fc")  # the default router methods
_NOT_BACO = ("aligned", "base", "nudging")  # routers that are baselines, not BACo methods


@dataclass(frozen=True)
class KnobLists:
    """The values each method is swept over (validated on creation)."""

    routers: tuple[str, ...] = BACO_ROUTERS
    gammas: tuple[float, ...] = (0.1, 0.3, 0.5)  # probability routers
    entropy_gammas: tuple[float, ...] = (0.5, 1.5, 3.0)  # entropy routers, nats
    baselines: tuple[str, ...] = BASELINES
    temps: tuple[float, ...] = (0.5, 0.8, 1.0, 1.2)  # aligned-only and base-only
    min_ps: tuple[float, ...] = (0.05,)
    nudging_gammas: tuple[float, ...] = (0.2, 0.3, 0.4)
    ensemble_weights: tuple[float, ...] = (0.1, 0.3, 0.5)
    xtc_probabilities: tuple[float, ...] = (0.25, 0.5, 0.75)  # at the shared --xtc-threshold
    top_nsigmas: tuple[float, ...] = (0.5, 1.0, 2.0)

    def __post_init__(self) -> None:
        for name in self.routers:
            router = get_router(name)
            if router.name in _NOT_BACO:
                raise UsageError(f"--routers: '{name}' is a baseline; list it in --baselines")
        for name in self.baselines:
            if name not in BASELINES:
                raise UsageError(f"--baselines: unknown baseline '{name}'; choose from {', '.join(BASELINES)}")
        _check_unique("--routers", [get_router(r).name for r in self.routers])
        _check_unique("--baselines", list(self.baselines))
        _check_range("--gammas", self.gammas, 0.0, 1.0)
        _check_range("--entropy-gammas", self.entropy_gammas, 0.0, None)
        _check_range("--temps", self.temps, 0.0, None)
        _check_range("--min-ps", self.min_ps, 0.0, 1.0)
        _check_range("--nudging-gammas", self.nudging_gammas, 0.0, 1.0)
        _check_range("--ensemble-weights", self.ensemble_weights, 0.0, 1.0)
        _check_range("--xtc-probabilities", self.xtc_probabilities, 0.0, 1.0)
        _check_range("--top-nsigmas", self.top_nsigmas, 0.0, None)
        if not self.routers and not self.baselines:
            raise UsageError("the grid is empty: name at least one router or baseline")


def _check_unique(option: str, values: list) -> None:
    repeated = sorted({str(v) for v in values if values.count(v) > 1})
    if repeated:
        raise UsageError(f"{option} lists {', '.join(repeated)} more than once")


def _check_range(option: str, values: tuple[float, ...], low: float, high: float | None) -> None:
    """Refuse an empty list, a repeated value, or a value outside [low, high]."""
    if not values:
        raise UsageError(f"{option} needs at least one value")
    _check_unique(option, [f"{v:g}" for v in values])
    for value in values:
        if not (value >= low and (high is None or value <= high)):
            bounds = f"in [{low:g}, {high:g}]" if high is not None else f">= {low:g}"
            raise UsageError(f"{option}: {value:g} is out of range (each value must be {bounds})")


@dataclass(frozen=True)
class OperatingPoint:
    """One method at one knob setting."""

    method: str
    knobs: tuple[tuple[str, float], ...]  # e.g. (("gamma", 0.3),); empty for a knob-less router
    settings: GenerationSettings

    @property
    def id(self) -> str:
        """``method@knob=value,...`` (just the method when it has no knob)."""
        values = ",".join(f"{name}={value:g}" for name, value in self.knobs)
        return f"{self.method}@{values}" if values else self.method


def build_grid(knobs: KnobLists, shared: GenerationSettings) -> list[OperatingPoint]:
    """Every operating point: the routers in order, then the baselines."""
    return [*_router_points(knobs, shared), *_baseline_points(knobs, shared)]


def _router_points(knobs: KnobLists, shared: GenerationSettings) -> Iterator[OperatingPoint]:
    for name in knobs.routers:
        router = get_router(name)
        if router.gamma_kind == "unused":
            yield OperatingPoint(router.name, (), replace(shared, router=router, gamma=0.0))
            continue
        gammas = knobs.gammas if router.gamma_kind == "probability" else knobs.entropy_gammas
        for gamma in gammas:
            yield OperatingPoint(router.name, (("gamma", gamma),), replace(shared, router=router, gamma=gamma))


def _baseline_points(knobs: KnobLists, shared: GenerationSettings) -> Iterator[OperatingPoint]:
    for method in knobs.baselines:
        if method in ("aligned", "base"):
            for temp, min_p in product(knobs.temps, knobs.min_ps):
                sampling = replace(shared.sampling, temperature=temp, min_p=min_p)
                yield OperatingPoint(method, (("temp", temp), ("min_p", min_p)),
                                     replace(shared, router=ROUTERS[method], gamma=0.0, sampling=sampling))
        elif method == "nudging":
            for gamma in knobs.nudging_gammas:
                yield OperatingPoint(method, (("gamma", gamma),),
                                     replace(shared, router=ROUTERS["nudging"], gamma=gamma))
        elif method in PROMPTING:
            for temp in knobs.temps:
                yield _aligned_point(method, (("temp", temp),), shared, temperature=temp)
        elif method == "xtc":
            for probability in knobs.xtc_probabilities:
                yield _aligned_point(method, (("xtc_p", probability),), shared, xtc_probability=probability)
        elif method == "top-nsigma":
            for n in knobs.top_nsigmas:
                yield _aligned_point(method, (("n", n),), shared, top_nsigma=n)
        else:
            for weight in knobs.ensemble_weights:
                yield OperatingPoint(method, (("w", weight),),
                                     replace(shared, router=ROUTERS["aligned"], gamma=0.0, ensemble=weight))


def _aligned_point(method: str, knobs: tuple[tuple[str, float], ...], shared: GenerationSettings,
                   **sampling: float) -> OperatingPoint:
    """A point of the aligned model alone, with the shared sampler settings but for ``sampling``."""
    return OperatingPoint(method, knobs, replace(shared, router=ROUTERS["aligned"], gamma=0.0,
                                                 sampling=replace(shared.sampling, **sampling)))


@dataclass(frozen=True)
class Task:
    """One record to generate: a prompt at an operating point."""

    item: PromptItem
    point: OperatingPoint

    @property
    def key(self) -> tuple[str, str]:
        """(point id, id_key of the prompt id): what identifies the record in the run folder."""
        return self.point.id, id_key(self.item.id)


def pending_tasks(items: list[PromptItem], points: list[OperatingPoint],
                  done: set[tuple[str, str]]) -> list[Task]:
    """The tasks not yet done, prompt by prompt (consecutive points then share the prompt's prefill)."""
    tasks = (Task(item, point) for item in items for point in points)
    return [task for task in tasks if task.key not in done]
