"""The one list of metrics: names, groups, one-line descriptions and directions.

The CLI's tables, the JSON report, the plots and the README all take their wording from here.
Diversity metrics are ``lexical`` (computed from the texts) or ``semantic`` (from sentence
embeddings); ``quality`` metrics come from quality scorers (see
:class:`baco_local.metrics.evaluate.QualityScorer`) and are registered by whoever provides them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable, Literal, Sequence

import numpy as np

from ..errors import UsageError
from . import lexical, semantic

Group = Literal["lexical", "semantic", "quality"]


@dataclass(frozen=True)
class Metric:
    """A named score and which way is better (for diversity metrics: more diverse)."""

    name: str
    group: Group
    description: str
    higher_is_better: bool
    label: str = ""  # a short column header (at most 5 characters); the name when empty

    @property
    def header(self) -> str:
        """The column header for wide tables."""
        return self.label or self.name

    @property
    def arrow(self) -> str:
        """``↑`` when higher is better (more diverse), ``↓`` when lower is."""
        return "↑" if self.higher_is_better else "↓"

    @property
    def direction(self) -> str:
        """``"higher = more diverse"``, ``"lower = more diverse"``, ``"higher = better"``, ..."""
        goal = "better" if self.group == "quality" else "more diverse"
        return f"{'higher' if self.higher_is_better else 'lower'} = {goal}"


@dataclass(frozen=True, kw_only=True)
class TextMetric(Metric):
    """A lexical diversity metric: the samples' texts in, one float out."""

    compute: Callable[[Sequence[str]], float]


@dataclass(frozen=True, kw_only=True)
class EmbeddingMetric(Metric):
    """A semantic diversity metric: an ``(n, d)`` embedding array in, one float out."""

    compute: Callable[[np.ndarray], float]


METRICS: dict[str, Metric] = {}


def register(metric: Metric) -> Metric:
    """Add a metric under its name (a quality scorer registers its own metric this way)."""
    METRICS[metric.name] = metric
    return metric


def get_metric(name: str) -> Metric:
    """Look a metric up by name; unknown names list the known ones."""
    metric = METRICS.get(name)
    if metric is None:
        raise UsageError(f"unknown metric '{name}'; known metrics: {', '.join(METRICS)}")
    return metric


def metrics_in(group: Group) -> list[Metric]:
    """The registered metrics of one group, in registration order."""
    return [m for m in METRICS.values() if m.group == group]


def text_metrics() -> list[TextMetric]:
    """The registered lexical metrics."""
    return [m for m in METRICS.values() if isinstance(m, TextMetric)]


def embedding_metrics() -> list[EmbeddingMetric]:
    """The registered semantic metrics."""
    return [m for m in METRICS.values() if isinstance(m, EmbeddingMetric)]


for _n in (1, 2, 3):
    register(TextMetric(f"distinct-{_n}", "lexical",
                        f"unique {_n}-grams / all {_n}-grams, pooled over the samples", True,
                        label=f"dist{_n}", compute=partial(lexical.distinct_n, n=_n)))
for _metric in (
    TextMetric("ngram-diversity", "lexical", "mean of distinct-1 .. distinct-4", True,
               label="ngram", compute=lexical.ngram_diversity),
    TextMetric("self-bleu", "lexical", "mean smoothed BLEU-4 of each sample against the others",
               False, label="sBLEU", compute=lexical.self_bleu),
    TextMetric("compression-ratio", "lexical", "size of the joined samples / their gzip size",
               False, label="gzip", compute=lexical.compression_ratio),
    TextMetric("rouge-l-distance", "lexical", "mean pairwise 1 - ROUGE-L F1 over words", True,
               label="1-RL", compute=lexical.rouge_l_distance),
    TextMetric("edit-distance", "lexical", "mean pairwise word edit distance / the longer length",
               True, label="edit", compute=lexical.edit_distance_diversity),
    EmbeddingMetric("cosine-distance", "semantic",
                    "mean pairwise cosine distance of sentence embeddings", True,
                    label="cos", compute=semantic.mean_cosine_distance),
    EmbeddingMetric("vendi", "semantic",
                    "Vendi score: effective number of distinct samples (1 .. n)", True,
                    label="vendi", compute=semantic.vendi_score),
):
    register(_metric)
