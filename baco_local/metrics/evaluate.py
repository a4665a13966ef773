"""Score every prompt's samples on the registered metrics, and average over prompts per model.

Quality metrics enter through :class:`QualityScorer` objects passed in by the caller; this
module computes no quality score of its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

from .embed import Embedder
from .generations import PromptRecord
from .registry import EmbeddingMetric, Metric, TextMetric, embedding_metrics, text_metrics


class QualityScorer(Protocol):
    """A quality score of one prompt's samples (e.g. their mean log-likelihood under the aligned
    model). ``metric`` describes it (group ``"quality"``) and should also be registered."""

    metric: Metric

    def score(self, record: PromptRecord) -> float:
        """The record's quality: one float, NaN when undefined."""
        ...


@dataclass(frozen=True)
class PromptScores:
    """All metric values of one record."""

    record: PromptRecord
    values: dict[str, float]


@dataclass(frozen=True)
class ModelSummary:
    """The mean of each metric over one model's prompts (NaN prompts left out)."""

    model: str
    prompts: int
    values: dict[str, float]


class Evaluator:
    """Computes the lexical, semantic (with an embedder) and quality metrics of a record."""

    def __init__(
        self, embedder: Embedder | None = None, quality_scorers: Sequence[QualityScorer] = ()
    ) -> None:
        self.embedder = embedder
        self.quality_scorers = list(quality_scorers)
        self.text_metrics: list[TextMetric] = text_metrics()
        self.embedding_metrics: list[EmbeddingMetric] = embedding_metrics() if embedder else []

    @property
    def metrics(self) -> list[Metric]:
        """Every metric this evaluator reports, in column order."""
        return [*self.text_metrics, *self.embedding_metrics,
                *(s.metric for s in self.quality_scorers)]

    def score(self, record: PromptRecord) -> PromptScores:
        """All metric values of one record."""
        texts = record.generations
        values = {m.name: m.compute(texts) for m in self.text_metrics}
        if self.embedding_metrics and self.embedder is not None:
            embeddings = self.embedder.embed(texts) if texts else np.zeros((0, 1))
            values.update({m.name: m.compute(embeddings) for m in self.embedding_metrics})
        values.update({s.metric.name: float(s.score(record)) for s in self.quality_scorers})
        return PromptScores(record, values)


def nan_mean(values: Sequence[float]) -> float:
    """Mean of the non-NaN values; NaN when there are none."""
    kept = [v for v in values if not math.isnan(v)]
    return float(np.mean(kept)) if kept else math.nan


def summarise(scores: Sequence[PromptScores], metrics: Sequence[Metric]) -> list[ModelSummary]:
    """Per model (in order of first appearance), the mean of each metric over its prompts."""
    by_model: dict[str, list[PromptScores]] = {}
    for s in scores:
        by_model.setdefault(s.record.model, []).append(s)
    return [
        ModelSummary(model, len(rows),
                     {m.name: nan_mean([r.values.get(m.name, math.nan) for r in rows])
                      for m in metrics})
        for model, rows in by_model.items()
    ]
