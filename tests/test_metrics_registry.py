"""The metric registry: one name, description and direction per metric."""

from __future__ import annotations

import pytest

from baco_local.errors import UsageError
from baco_local.metrics.registry import METRICS, get_metric, metrics_in


def test_every_metric_is_described() -> None:
    assert [m.name for m in metrics_in("lexical")] == [
        "distinct-1", "distinct-2", "distinct-3", "ngram-diversity", "self-bleu",
        "compression-ratio", "rouge-l-distance", "edit-distance",
    ]
    assert [m.name for m in metrics_in("semantic")] == ["cosine-distance", "vendi"]
    for metric in METRICS.values():
        assert metric.description and "\n" not in metric.description
        assert len(metric.header) <= 5 or metric.header == metric.name


def test_directions() -> None:
    assert get_metric("self-bleu").direction == "lower = more diverse"
    assert get_metric("compression-ratio").arrow == "↓"
    assert get_metric("vendi").direction == "higher = more diverse"


def test_unknown_metric_lists_the_known_ones() -> None:
    with pytest.raises(UsageError, match="distinct-1"):
        get_metric("bleurt")
