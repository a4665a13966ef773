"""Next-token distributions and sampling: pure numpy, one pass over the vocabulary per row.

``Distribution`` wraps one logits row (a view into llama.cpp's buffer) and computes, lazily and at
most once, what routers and samplers ask of it: argmax, top-1 probability, entropy, and the
normaliser. ``sample`` applies llama.cpp's sampler flags:

- ``top_k`` (0 = off): keep the k most likely tokens;
- ``top_p`` (1 = off): then keep the most likely of those until their probability, renormalised
  over the tokens top-k kept, reaches p;
- ``min_p`` (0 = off): then keep tokens at least ``min_p`` times as likely as the most likely one;
- ``temperature`` (0 = greedy): rescale the surviving logits, then draw.

That is llama.cpp's default sampler chain (``common_params_sampling.samplers``: penalties, DRY,
top-n-sigma, top-k, typical-p, top-p, min-p, XTC, temperature, then the draw), and llama-cpp-python's
``Llama`` applies the same order. DRY, top-n-sigma and XTC (off by default, as in llama.cpp) are
:mod:`~baco_local.engine.samplers`, which calls :func:`ranked_prefix` for the stages between them;
:func:`sample` is the chain without them. Each
filter keeps a prefix of the same ranking. min-p's threshold is relative to the most likely token,
which every filter keeps, so its prefix is found first, with one comparison over the vocabulary.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from ..errors import UsageError
from .dry import DEFAULT_BREAKERS


@dataclass(frozen=True)
class SamplingParams:
    """Sampler settings, with llama.cpp's defaults."""

    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    # llama.cpp's diversity samplers (engine/samplers.py), off by default as there.
    xtc_probability: float = 0.0  # chance that XTC acts on a token (0 = off)
    xtc_threshold: float = 0.1  # XTC removes all but the least likely of the tokens at least this likely
    top_nsigma: float = -1.0  # keep logits within n standard deviations of the largest (<= 0 = off)
    dry_multiplier: float = 0.0  # DRY penalty scale (0 = off)
    dry_base: float = 1.75
    dry_allowed_length: int = 2
    dry_penalty_last_n: int = -1  # tokens DRY scans (-1 = the whole context, 0 = off)
    dry_sequence_breakers: tuple[str, ...] = DEFAULT_BREAKERS

    def __post_init__(self) -> None:
        if not self.temperature >= 0:
            raise UsageError(f"--temp must be >= 0 (0 means greedy), got {self.temperature}")
        if self.top_k < 0:
            raise UsageError(f"--top-k must be >= 0 (0 means off), got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise UsageError(f"--top-p must be in (0, 1] (1 means off), got {self.top_p}")
        if not 0 <= self.min_p <= 1:
            raise UsageError(f"--min-p must be in [0, 1] (0 means off), got {self.min_p}")
        if not 0 <= self.xtc_probability <= 1:
            raise UsageError(f"--xtc-probability must be in [0, 1] (0 means off), got {self.xtc_probability}")
        if not 0 <= self.xtc_threshold <= 1:
            raise UsageError(f"--xtc-threshold must be in [0, 1] (above 0.5 XTC never acts), got {self.xtc_threshold}")
        if not math.isfinite(self.top_nsigma):
            raise UsageError(f"--top-nsigma must be a finite number (<= 0 means off), got {self.top_nsigma}")
        if not (math.isfinite(self.dry_multiplier) and self.dry_multiplier >= 0):
            raise UsageError(f"--dry-multiplier must be >= 0 (0 means off), got {self.dry_multiplier}")
        if not (math.isfinite(self.dry_base) and self.dry_base >= 1):
            raise UsageError(f"--dry-base must be >= 1, got {self.dry_base}")
        if self.dry_allowed_length < 0:
            raise UsageError(f"--dry-allowed-length must be >= 0, got {self.dry_allowed_length}")
        if self.dry_penalty_last_n < -1:
            raise UsageError(f"--dry-penalty-last-n must be >= -1 (-1 means the whole context, 0 off), "
                             f"got {self.dry_penalty_last_n}")
        if any(not b for b in self.dry_sequence_breakers):
            raise UsageError("--dry-sequence-breaker strings must not be empty ('none' clears the list)")

    @property
    def greedy(self) -> bool:
        """Temperature 0: always the most likely token."""
        return self.temperature == 0

    @property
    def xtc_on(self) -> bool:
        """Whether XTC can act (llama.cpp: probability > 0 and threshold <= 0.5)."""
        return self.xtc_probability > 0 and self.xtc_threshold <= 0.5

    @property
    def top_nsigma_on(self) -> bool:
        return self.top_nsigma > 0

    @property
    def dry_on(self) -> bool:
        return self.dry_multiplier != 0 and self.dry_penalty_last_n != 0

    @property
    def extra_samplers(self) -> bool:
        """Whether any of DRY, top-n-sigma or XTC is on (engine/samplers.py runs the chain then)."""
        return self.xtc_on or self.top_nsigma_on or self.dry_on

    def as_dict(self) -> dict[str, Any]:
        """The settings as recorded in output files: top-k, top-p, min-p and temperature always;
        XTC, top-n-sigma and DRY with their parameters only when on (a record without them ran
        with them off, so files written before they existed still resume)."""
        recorded = asdict(self)
        groups = {"xtc_": self.xtc_on, "top_nsigma": self.top_nsigma_on, "dry_": self.dry_on}
        for field in fields(self):
            for prefix, on in groups.items():
                if field.name.startswith(prefix) and not on:
                    del recorded[field.name]
        if "dry_sequence_breakers" in recorded:
            recorded["dry_sequence_breakers"] = list(self.dry_sequence_breakers)
        return recorded


# Logit given to tokens a side must never produce. Finite, so that exp() gives 0 and
# 0 * MASKED_LOGIT stays 0 in the entropy sum (with -inf it would be NaN).
MASKED_LOGIT = np.float32(-1e30)


# Shifted logits are clipped here before exp(): exp(-80) = 1.8e-35, still a normal float32, and
# 262,144 such terms add less than 1e-29 to a normaliser that is at least 1.
_EXP_FLOOR = np.float32(-80.0)


class Scratch:
    """Preallocated float32 buffers for one vocabulary size (reused by every row of a side)."""

    def __init__(self, n_vocab: int) -> None:
        self.shifted = np.empty(n_vocab, dtype=np.float32)  # logits - max
        self.exp = np.empty(n_vocab, dtype=np.float32)  # exp(logits - max)


class Distribution:
    """One model's next-token distribution, computed lazily from a logits row."""

    def __init__(self, logits: np.ndarray, scratch: Scratch) -> None:
        self.logits = logits  # (V,) float32, a view valid until the next decode of its context
        self._scratch = scratch
        self._argmax: int | None = None
        self._z: float | None = None
        self._entropy: float | None = None

    @property
    def argmax(self) -> int:
        """The most likely token id."""
        if self._argmax is None:
            self._argmax = int(np.argmax(self.logits))
        return self._argmax

    @property
    def max_logit(self) -> float:
        """The largest logit."""
        return float(self.logits[self.argmax])

    def frozen(self, *, with_entropy: bool) -> "FrozenDistribution":
        """The statistics routers read, kept after the logits row is gone (for draft-and-verify)."""
        return FrozenDistribution(self.argmax, self.z, self.entropy if with_entropy else float("nan"))

    def _fill_scratch(self) -> float:
        """Write exp(logits - max) into the scratch buffer (in place: one buffer, one pass each);
        return its sum (numpy's pairwise float32 sum: relative error ~1e-7 at 262k terms)."""
        exp = self._scratch.exp
        np.subtract(self.logits, self.max_logit, out=exp)
        np.maximum(exp, _EXP_FLOOR, out=exp)  # exp() of very negative numbers gives slow denormals
        np.exp(exp, out=exp)
        return float(exp.sum())

    @property
    def z(self) -> float:
        """Sum of exp(logit - max logit) over the vocabulary (the softmax normaliser)."""
        if self._z is None:
            self._z = self._fill_scratch()
        return self._z

    @property
    def top1_prob(self) -> float:
        """Probability of the most likely token."""
        return 1.0 / self.z

    @property
    def entropy(self) -> float:
        """Shannon entropy in nats (refills the shared scratch: another row may have used it)."""
        if self._entropy is None:
            self._z = z = self._fill_scratch()
            shifted = np.subtract(self.logits, self.max_logit, out=self._scratch.shifted)
            np.maximum(shifted, _EXP_FLOOR, out=shifted)  # the same clipped values exp() saw
            weighted = float(np.dot(self._scratch.exp, shifted))
            self._entropy = float(np.log(z) - weighted / z)
        return self._entropy

    def prob(self, token: int) -> float:
        """Probability of one token."""
        return float(np.exp(float(self.logits[token]) - self.max_logit) / self.z)


@dataclass(frozen=True)
class FrozenDistribution:
    """Argmax, normaliser and entropy of a distribution whose logits are no longer available."""

    argmax: int
    z: float
    entropy: float

    @property
    def top1_prob(self) -> float:
        """Probability of the most likely token."""
        return 1.0 / self.z


def mixture(base: Distribution, aligned: Distribution, weight: float, out: np.ndarray) -> np.ndarray:
    """Log-probabilities of w·P_base + (1 − w)·P_aligned, written into ``out`` (length: the larger vocabulary).

    An id only one model has gets that model's share alone. Impossible ids get ``-inf``.
    """
    out.fill(0.0)
    for dist, share in ((base, weight), (aligned, 1.0 - weight)):
        n = dist.logits.shape[0]
        out[:n] += np.exp(dist.logits - dist.max_logit) * np.float32(share / dist.z)
    with np.errstate(divide="ignore"):
        np.log(out, out=out)
    return out


def ranked_prefix(dist: Distribution, params: SamplingParams) -> np.ndarray:
    """Token ids that survive top-k, then top-p, then min-p (llama.cpp's order), most likely first."""
    logits = dist.logits
    n_vocab = logits.shape[0]
    k = params.top_k if 0 < params.top_k < n_vocab else n_vocab
    if params.min_p > 0:
        threshold = dist.max_logit + np.log(params.min_p)
        ids = np.flatnonzero(logits >= threshold)
    elif k < n_vocab:
        ids = np.argpartition(logits, n_vocab - k)[n_vocab - k:]
    elif params.top_p < 1:
        ids = _nucleus_candidates(dist, params.top_p)
    else:
        return np.arange(n_vocab)
    ids = ids[np.argsort(-logits[ids], kind="stable")][:k]
    if params.top_p < 1 and ids.shape[0] > 1:
        mass = np.cumsum(np.exp(logits[ids] - dist.max_logit, dtype=np.float64))
        ids = ids[: _top_p_length(dist, params, k, mass)]
    return ids


def _top_p_length(dist: Distribution, params: SamplingParams, k: int, mass: np.ndarray) -> int:
    """How many of the ranked ids (cumulative weights ``mass``) top-p keeps, its mass measured over
    the k most likely tokens."""
    n = mass.shape[0]

    def cut(normaliser: float) -> int:
        return min(int(np.searchsorted(mass, params.top_p * normaliser)), n - 1) + 1

    if n == k:
        return cut(mass[-1])
    # Fewer than k ids: min-p cut the ranking first (or the nucleus search stopped early). The
    # normaliser is at least mass[-1]; if top-p keeps all n even with that, it keeps all n.
    return n if cut(mass[-1]) == n else cut(_top_k_normaliser(dist, k))


def _top_k_normaliser(dist: Distribution, k: int) -> float:
    """Sum of exp(logit - max logit) over the k most likely tokens (over all of them when k is off)."""
    n_vocab = dist.logits.shape[0]
    if k >= n_vocab:
        return dist.z
    top = np.partition(dist.logits, n_vocab - k)[n_vocab - k:]
    return float(np.exp(top - dist.max_logit, dtype=np.float64).sum())


def _nucleus_candidates(dist: Distribution, top_p: float) -> np.ndarray:
    """The m most likely ids for the smallest tried m (64, 256, ...) whose mass reaches top_p."""
    logits = dist.logits
    n_vocab = logits.shape[0]
    m = 64
    while m < n_vocab:
        ids = np.argpartition(logits, n_vocab - m)[n_vocab - m:]
        if np.exp(logits[ids] - dist.max_logit, dtype=np.float64).sum() / dist.z >= top_p:
            return ids
        m *= 4
    return np.arange(n_vocab)


def sample(dist: Distribution, params: SamplingParams, draw: float) -> int:
    """The token id that the uniform ``draw`` in [0, 1) picks from ``dist`` under ``params``
    (inverse-CDF sampling; greedy at temperature 0, where ``draw`` is unused)."""
    if params.greedy:
        return dist.argmax
    ids = ranked_prefix(dist, params)
    if ids.shape[0] == 1:
        return int(ids[0])
    scaled = (dist.logits[ids].astype(np.float64) - dist.max_logit) / params.temperature
    cumulative = np.cumsum(np.exp(scaled))
    pick = int(np.searchsorted(cumulative, draw * cumulative[-1], side="right"))
    return int(ids[min(pick, ids.shape[0] - 1)])
