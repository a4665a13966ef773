"""Each router's decision on crafted next-token distributions (exact, no model involved)."""

from __future__ import annotations

import numpy as np
import pytest

from baco_local.errors import UsageError
from baco_local.engine.routers import ALIGNED, BASE, ROUTERS, Signals, get_router
from baco_local.engine.sampling import Distribution, Scratch
from baco_local.engine.vocab import build_token_classes

# A five-token vocabulary: a function word, a content word, punctuation, a newline, a word piece.
PIECES = [b" the", b" cat", b".", b"\n", b"ing"]
THE, CAT, DOT, NEWLINE, ING = range(5)
CLASSES = build_token_classes(len(PIECES), PIECES.__getitem__, np.zeros(5, bool))


def dist(probs: list[float]) -> Distribution:
    """A distribution with exactly these probabilities."""
    return Distribution(np.log(np.asarray(probs, dtype=np.float32)), Scratch(len(probs)))


PEAKED = [0.9, 0.04, 0.03, 0.02, 0.01]  # top-1 probability 0.9, low entropy
FLAT = [0.2, 0.2, 0.2, 0.2, 0.2]  # top-1 probability 0.2, entropy log 5 = 1.609 nats


def aligned_predicting(token: int) -> Distribution:
    probs = [0.025] * 5
    probs[token] = 0.9
    return dist(probs)


def decide(name: str, base: list[float], aligned_top: int = CAT, gamma: float = 0.3, draw: float = 0.5) -> str:
    signals = Signals(dist(base), aligned_predicting(aligned_top), CLASSES, gamma, draw)
    return get_router(name).route(signals)


def test_token_classes_from_pieces() -> None:
    assert CLASSES.function_word.tolist() == [True, False, False, False, False]
    assert CLASSES.content_word.tolist() == [False, True, False, False, True]
    assert CLASSES.punctuation.tolist() == [False, False, True, True, False]
    assert CLASSES.is_boundary([], ING)
    assert not CLASSES.is_boundary([CAT], ING)
    assert CLASSES.is_boundary([CAT, DOT], ING)
    assert CLASSES.is_boundary([CAT], THE)
    assert [CLASSES.is_boundary([CAT], t) for t in range(5)] == [True, True, True, True, False]
    assert [CLASSES.is_boundary([t], ING) for t in range(5)] == [False, False, True, True, False]


def test_distribution_statistics() -> None:
    flat = dist(FLAT)
    assert flat.top1_prob == pytest.approx(0.2, rel=1e-5)
    assert flat.entropy == pytest.approx(np.log(5), rel=1e-5)
    peaked = dist(PEAKED)
    assert peaked.argmax == THE
    assert peaked.top1_prob == pytest.approx(0.9, rel=1e-5)
    expected = -sum(p * np.log(p) for p in PEAKED)
    assert peaked.entropy == pytest.approx(expected, rel=1e-5)


def test_single_model_baselines() -> None:
    for base in (FLAT, PEAKED):
        assert decide("aligned", base) == ALIGNED
        assert decide("base", base) == BASE


def test_p_router_uses_base_top1_probability() -> None:
    assert decide("p", FLAT, gamma=0.3) == BASE  # 0.2 < 0.3
    assert decide("p", PEAKED, gamma=0.3) == ALIGNED  # 0.9 >= 0.3
    assert decide("p", FLAT, gamma=0.2) == ALIGNED  # not strictly below
    assert decide("p", PEAKED, gamma=1.0) == BASE  # gamma 1: base unless certain
    assert decide("p", FLAT, gamma=0.0) == ALIGNED  # gamma 0: never base


def test_h_router_uses_base_entropy() -> None:
    assert decide("h", FLAT, gamma=1.0) == BASE  # 1.609 > 1.0
    assert decide("h", PEAKED, gamma=1.0) == ALIGNED  # 0.43 <= 1.0
    assert decide("h", FLAT, gamma=2.0) == ALIGNED


def test_punc_forces_aligned_on_punctuation_and_newline() -> None:
    assert decide("punc", PEAKED, aligned_top=DOT) == ALIGNED
    assert decide("punc", PEAKED, aligned_top=NEWLINE) == ALIGNED
    assert decide("punc", PEAKED, aligned_top=CAT) == BASE


def test_fc_function_words_aligned_content_words_base() -> None:
    assert decide("fc", PEAKED, aligned_top=THE) == ALIGNED
    assert decide("fc", PEAKED, aligned_top=DOT) == ALIGNED
    assert decide("fc", PEAKED, aligned_top=CAT) == BASE


def test_combined_routers_apply_content_rule_first() -> None:
    # Punctuation predicted: aligned even though the base is unsure.
    assert decide("p-punc", FLAT, aligned_top=DOT) == ALIGNED
    assert decide("h-punc", FLAT, aligned_top=NEWLINE, gamma=1.0) == ALIGNED
    assert decide("p-fc", FLAT, aligned_top=THE) == ALIGNED
    # Otherwise the logit rule decides.
    assert decide("p-punc", FLAT, aligned_top=CAT) == BASE
    assert decide("p-punc", PEAKED, aligned_top=CAT) == ALIGNED
    assert decide("h-punc", FLAT, aligned_top=CAT, gamma=1.0) == BASE
    assert decide("p-fc", FLAT, aligned_top=CAT) == BASE
    assert decide("p-fc", PEAKED, aligned_top=CAT) == ALIGNED


def test_nudging_is_base_by_default() -> None:
    assert decide("nudging", PEAKED, gamma=0.3) == BASE
    assert decide("nudging", FLAT, gamma=0.3) == ALIGNED


def test_random_router_uses_the_draw() -> None:
    assert decide("random", PEAKED, gamma=0.3, draw=0.29) == BASE
    assert decide("random", PEAKED, gamma=0.3, draw=0.31) == ALIGNED
    assert decide("random", PEAKED, gamma=0.0, draw=0.0) == ALIGNED
    assert decide("random", PEAKED, gamma=1.0, draw=0.999) == BASE


def test_unknown_router_lists_known_ones() -> None:
    with pytest.raises(UsageError, match="unknown router 'q'.*p-punc"):
        get_router("q")
    assert get_router("P-PUNC").name == "p-punc"


@pytest.mark.parametrize("name", ["p", "p-punc", "p-fc", "nudging", "random"])
def test_probability_routers_refuse_gamma_outside_unit_interval(name: str) -> None:
    for bad in (-0.1, 1.5):
        with pytest.raises(UsageError, match="probability in \\[0, 1\\]"):
            ROUTERS[name].check_gamma(bad)
    ROUTERS[name].check_gamma(0.0)
    ROUTERS[name].check_gamma(1.0)


def test_entropy_routers_accept_nats_above_one() -> None:
    ROUTERS["h"].check_gamma(2.5)
    with pytest.raises(UsageError, match="entropy"):
        ROUTERS["h-punc"].check_gamma(-1)
