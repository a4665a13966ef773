"""Evaluation of generations: diversity metrics, the diversity-quality frontier, plots, reports.

Lexical metrics and the frontier need only numpy; semantic metrics (sentence embeddings) and
plots need the ``baco-local[eval]`` extra and import it only when used.
"""

from __future__ import annotations

from .registry import METRICS, EmbeddingMetric, Metric, TextMetric, get_metric, register

__all__ = ["METRICS", "EmbeddingMetric", "Metric", "TextMetric", "get_metric", "register"]
