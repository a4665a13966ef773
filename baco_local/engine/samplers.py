"""llama.cpp's diversity samplers around baco's top-k/top-p/min-p/temperature: DRY, top-n-sigma, XTC.

In llama.cpp's default order (``common_params_sampling.samplers``), on the writing model's row:

1. **DRY** (``--dry-multiplier`` > 0): lower the logits of tokens that would continue a repeat of
   the sequence's own tokens, prompt included (:mod:`~baco_local.engine.dry`);
2. **top-n-sigma** (``--top-nsigma`` n > 0): keep the tokens whose logit is at least the largest
   minus n standard deviations of the logits (over the whole vocabulary, on logits, not
   probabilities; ids the other model cannot decode do not count, as llama.cpp skips ``-inf``);
3. top-k, top-p, min-p (:func:`~baco_local.engine.sampling.ranked_prefix`);
4. **XTC** (``--xtc-probability`` p > 0, ``--xtc-threshold`` t <= 0.5): with probability p, decided
   by its own uniform draw (one per position and model, like every baco draw), remove every token
   at least t likely (probabilities over the tokens still kept) except the least likely of them;
   nothing is removed when fewer than two reach t;
5. temperature, then the draw (temperature 0 takes the most likely token left).

With all three off, :func:`sample_token` is exactly :func:`~baco_local.engine.sampling.sample`.
The routers never see any of this: they read the raw distribution.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence
from weakref import WeakKeyDictionary

import numpy as np

from .dry import Breakers, dry_penalties, process_breakers
from .sampling import MASKED_LOGIT, Distribution, SamplingParams, Scratch, ranked_prefix, sample

if TYPE_CHECKING:
    from .backend import LoadedModel

_BREAKERS: "WeakKeyDictionary[LoadedModel, dict[tuple[str, ...], Breakers]]" = WeakKeyDictionary()


def model_breakers(model: "LoadedModel", breakers: Sequence[str]) -> Breakers:
    """DRY's processed sequence breakers on one model's vocabulary (computed once per model)."""
    cached = _BREAKERS.setdefault(model, {})
    key = tuple(breakers)
    if key not in cached:
        pieces = [model.piece(token, special=True) for token in range(model.n_vocab)]
        cached[key] = process_breakers(key, pieces, lambda text: model.tokenize(text, add_bos=False, special=False))
    return cached[key]


def describe_extra(params: SamplingParams) -> list[str]:
    """The diversity samplers that are on, in a few words each (for status lines)."""
    parts = []
    if params.dry_on:
        parts.append(f"DRY ×{params.dry_multiplier:g} base {params.dry_base:g} allowed {params.dry_allowed_length}")
    if params.top_nsigma_on:
        parts.append(f"top-nσ {params.top_nsigma:g}")
    if params.xtc_on:
        parts.append(f"XTC p {params.xtc_probability:g} t {params.xtc_threshold:g}")
    return parts


def sample_token(dist: Distribution, params: SamplingParams, draw: float, *, xtc_draw: float = 1.0,
                 history: np.ndarray | None = None, breakers: Breakers | None = None) -> int:
    """The token the chain of the module docstring picks with the uniform ``draw``; ``xtc_draw``
    decides whether XTC acts, ``history`` (prompt + generated ids of the writing model) and its
    ``breakers`` feed DRY."""
    if not params.extra_samplers:
        return sample(dist, params, draw)
    ids, logits = kept_tokens(dist, params, xtc_draw=xtc_draw, history=history, breakers=breakers)
    if params.greedy or ids.shape[0] == 1:
        return int(ids[0])
    chosen = logits[ids].astype(np.float64)
    cumulative = np.cumsum(np.exp((chosen - chosen.max()) / params.temperature))
    pick = int(np.searchsorted(cumulative, draw * cumulative[-1], side="right"))
    return int(ids[min(pick, ids.shape[0] - 1)])


def kept_tokens(dist: Distribution, params: SamplingParams, *, xtc_draw: float = 1.0,
                history: np.ndarray | None = None,
                breakers: Breakers | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ids the chain keeps before temperature (most likely first) and the logits row they are
    drawn from (DRY's penalties applied; the distribution's own row when there are none)."""
    logits = dist.logits
    if params.dry_on and history is not None and history.shape[0]:
        logits = _penalised(logits, params, history, breakers or Breakers({}))
    if params.top_nsigma_on:
        # top-k, top-p and min-p then see only what top-n-sigma kept (the rest has no mass): rank that alone
        kept = _within_sigmas(logits, params.top_nsigma)
        ids = kept[ranked_prefix(Distribution(logits[kept], Scratch(kept.shape[0])), params)]
    else:
        working = dist if logits is dist.logits else Distribution(logits, Scratch(logits.shape[0]))
        ids = ranked_prefix(working, params)
    ids = ids[logits[ids] > MASKED_LOGIT]  # ids no side may write
    if ids.shape[0] > 1 and logits[ids[0]] < logits[ids[1:]].max():  # all three filters off: not ranked
        ids = ids[np.argsort(-logits[ids], kind="stable")]
    if params.xtc_on and xtc_draw <= params.xtc_probability and ids.shape[0] >= 2:
        ids = _exclude_top_choices(ids, logits, params.xtc_threshold)
    return ids, logits


def _penalised(logits: np.ndarray, params: SamplingParams, history: np.ndarray, breakers: Breakers) -> np.ndarray:
    """A copy of ``logits`` with DRY's penalties subtracted (``logits`` itself when there are none)."""
    penalties = dry_penalties(history, multiplier=params.dry_multiplier, base=params.dry_base,
                              allowed_length=params.dry_allowed_length, penalty_last_n=params.dry_penalty_last_n,
                              breakers=breakers)
    penalties = {token: value for token, value in penalties.items() if token < logits.shape[0]}
    if not penalties:
        return logits
    out = logits.copy()
    ids = np.fromiter(penalties, dtype=np.int64, count=len(penalties))
    out[ids] -= np.fromiter(penalties.values(), dtype=np.float32, count=len(penalties))
    return out


def _within_sigmas(logits: np.ndarray, n: float) -> np.ndarray:
    """The ids whose logit is at least max − n·σ (σ over the logits of ids that are not masked)."""
    valid = logits > MASKED_LOGIT
    values = logits if valid.all() else logits[valid]
    # float32 running sums, as llama.cpp's loops (a float64 sum moves the cut on a 262k vocabulary)
    mean = np.float32(np.cumsum(values, dtype=np.float32)[-1] / np.float32(values.shape[0]))
    spread = np.cumsum(np.square(values - mean, dtype=np.float32), dtype=np.float32)[-1]
    std = np.float32(np.sqrt(spread / np.float32(values.shape[0])))
    threshold = np.float32(values.max() - np.float32(n) * std)
    return np.flatnonzero(valid & (logits >= threshold))


def _exclude_top_choices(ids: np.ndarray, logits: np.ndarray, threshold: float) -> np.ndarray:
    """XTC's cut: drop the tokens at least ``threshold`` likely (over ``ids``), all but the last."""
    chosen = logits[ids].astype(np.float64)
    probs = np.exp(chosen - chosen.max())
    probs /= probs.sum()
    above = int(np.count_nonzero(probs >= np.float32(threshold)))
    return ids[above - 1:] if above >= 2 else ids
