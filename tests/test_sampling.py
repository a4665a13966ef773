"""Sampler filters and draws on hand-made logits."""

from __future__ import annotations

import numpy as np
import pytest

from baco_local.errors import UsageError
from baco_local.engine.loop import choose_token
from baco_local.engine.routers import ALIGNED, BASE
from baco_local.engine.sampling import MASKED_LOGIT, Distribution, SamplingParams, Scratch, ranked_prefix, sample

PROBS = np.array([0.5, 0.25, 0.15, 0.07, 0.03])


def dist(probs=PROBS) -> Distribution:
    return Distribution(np.log(np.asarray(probs, dtype=np.float32)), Scratch(len(probs)))


def kept(**kwargs) -> list[int]:
    return ranked_prefix(dist(), SamplingParams(**kwargs)).tolist()


def test_filters_keep_expected_prefixes() -> None:
    assert kept(top_k=2, top_p=1, min_p=0) == [0, 1]
    assert kept(top_k=0, top_p=0.7, min_p=0) == [0, 1]  # 0.5 < 0.7 <= 0.75
    assert kept(top_k=0, top_p=0.74, min_p=0) == [0, 1]
    assert kept(top_k=0, top_p=0.76, min_p=0) == [0, 1, 2]
    assert kept(top_k=0, top_p=1, min_p=0.2) == [0, 1, 2]  # 0.15 >= 0.1, 0.07 < 0.1
    assert kept(top_k=2, top_p=1, min_p=0.2) == [0, 1]  # the shortest prefix wins
    assert kept(top_k=0, top_p=1, min_p=0) == [0, 1, 2, 3, 4]


def test_nucleus_search_on_a_large_vocabulary() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=5000).astype(np.float32) * 3
    d = Distribution(logits, Scratch(5000))
    ids = ranked_prefix(d, SamplingParams(top_k=0, top_p=0.9, min_p=0))
    probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    order = np.argsort(-probs)
    expected = order[: int(np.searchsorted(np.cumsum(probs[order]), 0.9)) + 1]
    assert ids.tolist() == expected.tolist()


def test_greedy_and_deterministic_draws() -> None:
    assert sample(dist(), SamplingParams(temperature=0), 0.99) == 0
    params = SamplingParams(temperature=1.0, top_k=0, top_p=1, min_p=0)
    # Inverse-CDF: the draw decides the token (cumulative 0.5, 0.75, 0.9, 0.97, 1.0).
    assert [sample(dist(), params, u) for u in (0.0, 0.49, 0.51, 0.74, 0.76, 0.89, 0.91, 0.96, 0.98, 0.999)] == [
        0, 0, 1, 1, 2, 2, 3, 3, 4, 4]


def test_draw_frequencies_follow_probabilities() -> None:
    params = SamplingParams(temperature=1.0, top_k=0, top_p=1, min_p=0)
    rng = np.random.default_rng(3)
    counts = np.bincount([sample(dist(), params, rng.random()) for _ in range(20000)], minlength=5) / 20000
    assert np.allclose(counts, PROBS, atol=0.015)


def test_temperature_sharpens() -> None:
    rng = np.random.default_rng(5)
    cold = SamplingParams(temperature=0.25, top_k=0, top_p=1, min_p=0)
    share = np.mean([sample(dist(), cold, rng.random()) == 0 for _ in range(4000)])
    assert share > 0.9  # 0.5^4 / sum p^4 = 0.93


def test_masked_tokens_are_never_drawn_and_entropy_stays_finite() -> None:
    logits = np.log(PROBS.astype(np.float32))
    logits[0] = MASKED_LOGIT
    d = Distribution(logits, Scratch(5))
    assert np.isfinite(d.entropy)
    rng = np.random.default_rng(0)
    params = SamplingParams(temperature=1.5, top_k=0, top_p=1, min_p=0)
    assert 0 not in {sample(d, params, rng.random()) for _ in range(2000)}


@pytest.mark.parametrize("kwargs, message", [
    ({"temperature": -1}, "--temp"), ({"top_k": -2}, "--top-k"), ({"top_p": 0}, "--top-p"),
    ({"min_p": 1.5}, "--min-p"),
])
def test_bad_values_are_refused(kwargs, message) -> None:
    with pytest.raises(UsageError, match=message):
        SamplingParams(**kwargs)


def test_switch_only_on_word_initial_token() -> None:
    """choose_token keeps the current writer when the other side's token continues a word."""
    greedy = SamplingParams(temperature=0)
    base = dist([0.1, 0.6, 0.1, 0.1, 0.1])  # base would write token 1
    aligned = dist([0.6, 0.1, 0.1, 0.1, 0.1])  # aligned would write token 0
    dists = {BASE: base, ALIGNED: aligned}

    def boundary_only_for_zero(previous, token):
        return token == 0

    def pick(side):
        return sample(dists[side], greedy, 0.5)

    # Wanted base while aligned writes: base's token 1 is mid-word, so aligned keeps writing.
    assert choose_token(BASE, ALIGNED, 5, boundary_only_for_zero, pick) == (0, ALIGNED)
    # Wanted aligned while base writes: aligned's token 0 starts a word, so the switch stands.
    assert choose_token(ALIGNED, BASE, 5, boundary_only_for_zero, pick) == (0, ALIGNED)
    # No switch requested: the wanted side writes whatever the token.
    assert choose_token(BASE, BASE, 5, boundary_only_for_zero, pick) == (1, BASE)
    # First token: always free.
    assert choose_token(BASE, None, None, boundary_only_for_zero, pick) == (1, BASE)


def test_mixture_of_two_distributions() -> None:
    from baco_local.engine.sampling import mixture

    base = dist([0.5, 0.5, 0.0001, 0.0001, 0.0001])
    aligned = Distribution(np.log(np.array([0.1, 0.1, 0.6, 0.1, 0.05, 0.05], dtype=np.float32)), Scratch(6))
    out = mixture(base, aligned, 0.25, np.empty(6, dtype=np.float32))
    probs = np.exp(out)
    assert probs.sum() == pytest.approx(1.0, abs=1e-3)
    assert probs[0] == pytest.approx(0.25 * 0.5 / base.z * base.z + 0.75 * 0.1, rel=1e-3)
    assert probs[5] == pytest.approx(0.75 * 0.05, rel=1e-3)  # an id only the aligned model has
