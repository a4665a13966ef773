"""DRY, top-n-sigma and XTC keep and penalise exactly what llama.cpp's own samplers do.

The reference is llama.cpp through llama-cpp-python: ``llama_sampler_init_dry`` (on the tiny
model's real vocabulary, with llama.cpp's default sequence breakers, after accepting the same
history), ``llama_sampler_init_top_n_sigma`` and ``llama_sampler_init_xtc`` in a chain with top-k,
top-p, min-p and temperature in llama.cpp's default order, applied to the same logits row.
"""

from __future__ import annotations

import ctypes
from dataclasses import replace

import llama_cpp
import numpy as np
import pytest
from llama_cpp._internals import LlamaTokenDataArray
from test_sampling_llama_cpp import crafted_row, rows

from baco_local.engine.backend import LoadedModel
from baco_local.engine.dry import DEFAULT_BREAKERS, Breakers, dry_penalties
from baco_local.engine.sampling import Distribution, SamplingParams, Scratch
from baco_local.engine.samplers import kept_tokens, model_breakers, sample_token

DRY = SamplingParams(dry_multiplier=0.8)
DRY_SETTINGS = [DRY, replace(DRY, dry_base=2.5, dry_allowed_length=1), replace(DRY, dry_penalty_last_n=12),
                replace(DRY, dry_allowed_length=3, dry_multiplier=2.0)]


class Chain:
    """A llama.cpp sampler chain; :meth:`apply` returns the ids left with nonzero probability
    (most likely first) and their logits."""

    def __init__(self) -> None:
        self.chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())

    def add(self, sampler) -> "Chain":
        llama_cpp.llama_sampler_chain_add(self.chain, sampler)
        return self

    def add_filters(self, params: SamplingParams, *, xtc_seed: int | None = None) -> "Chain":
        """top-k → top-p → min-p → (XTC) → temperature, as llama.cpp's default chain."""
        self.add(llama_cpp.llama_sampler_init_top_k(params.top_k))
        self.add(llama_cpp.llama_sampler_init_top_p(params.top_p, 0))
        self.add(llama_cpp.llama_sampler_init_min_p(params.min_p, 0))
        if xtc_seed is not None:
            self.add(llama_cpp.llama_sampler_init_xtc(params.xtc_probability, params.xtc_threshold, 0, xtc_seed))
        return self.add(llama_cpp.llama_sampler_init_temp(params.temperature))

    def accept(self, tokens) -> None:
        for token in tokens:
            llama_cpp.llama_sampler_accept(self.chain, int(token))

    def apply(self, logits: np.ndarray) -> tuple[list[int], np.ndarray]:
        candidates = LlamaTokenDataArray(n_vocab=logits.shape[0])
        candidates.copy_logits(logits)
        llama_cpp.llama_sampler_apply(self.chain, ctypes.byref(candidates.candidates))
        array = candidates.candidates
        # XTC moves the start of the array forward: find where it begins now.
        start = (ctypes.cast(array.data, ctypes.c_void_p).value - candidates.candidates_data.ctypes.data) \
            // candidates.candidates_data.dtype.itemsize
        ids = candidates.candidates_data.id[start:start + array.size]
        out = np.array(candidates.candidates_data.logit[start:start + array.size])
        finite = np.isfinite(out)
        order = np.argsort(-out[finite], kind="stable")
        return ids[finite][order].tolist(), out

    def close(self) -> None:
        llama_cpp.llama_sampler_free(self.chain)


def baco_kept(row: np.ndarray, params: SamplingParams, **kwargs) -> list[int]:
    return kept_tokens(Distribution(row, Scratch(row.shape[0])), params, **kwargs)[0].tolist()


def assert_same_kept(got: list[int], expected: list[int], logits: np.ndarray) -> None:
    """The same tokens, baco's most likely first (ties may come in another order)."""
    assert sorted(got) == sorted(expected)
    assert all(logits[a] >= logits[b] for a, b in zip(got, got[1:]))


NSIGMA_SETTINGS = [SamplingParams(top_nsigma=1.0), SamplingParams(top_nsigma=2.0, top_k=0, top_p=1.0, min_p=0.0),
                   SamplingParams(top_nsigma=0.5, top_k=0, top_p=0.9, min_p=0.0),
                   SamplingParams(top_nsigma=3.0, top_k=10, top_p=1.0, min_p=0.1)]


@pytest.mark.parametrize("params", NSIGMA_SETTINGS, ids=lambda p: f"n{p.top_nsigma}-k{p.top_k}-p{p.top_p}-m{p.min_p}")
def test_top_nsigma_keeps_what_llama_cpp_keeps(params: SamplingParams) -> None:
    for row in rows() + [crafted_row()]:
        chain = Chain().add(llama_cpp.llama_sampler_init_top_n_sigma(params.top_nsigma)).add_filters(params)
        try:
            expected, _ = chain.apply(row)
        finally:
            chain.close()
        assert_same_kept(baco_kept(row, params), expected, row)


XTC_SETTINGS = [SamplingParams(xtc_probability=1.0, xtc_threshold=0.1),
                SamplingParams(xtc_probability=1.0, xtc_threshold=0.02, top_k=0, top_p=1.0, min_p=0.0),
                SamplingParams(xtc_probability=1.0, xtc_threshold=0.3, top_k=100, top_p=0.9, min_p=0.0),
                SamplingParams(xtc_probability=1.0, xtc_threshold=0.005, top_k=0, top_p=0.95, min_p=0.01)]


@pytest.mark.parametrize("params", XTC_SETTINGS, ids=lambda p: f"t{p.xtc_threshold}-k{p.top_k}-p{p.top_p}-m{p.min_p}")
def test_xtc_removes_what_llama_cpp_removes(params: SamplingParams) -> None:
    """With probability 1 XTC always acts (llama.cpp's draw is then irrelevant)."""
    removed_somewhere = False
    for row in rows() + [crafted_row(), peaked_row()]:
        chain = Chain().add_filters(params, xtc_seed=1)
        try:
            expected, _ = chain.apply(row)
        finally:
            chain.close()
        got = baco_kept(row, params, xtc_draw=0.0)
        assert_same_kept(got, expected, row)
        removed_somewhere |= got != baco_kept(row, replace(params, xtc_probability=0.0))
    assert removed_somewhere  # the rows are such that XTC changes something


def peaked_row() -> np.ndarray:
    """Three tokens well above 10% each, then a tail: XTC keeps the third and the tail."""
    row = np.full(3000, -6.0, dtype=np.float32) - np.linspace(0, 1, 3000, dtype=np.float32)
    row[:3] = [3.0, 2.6, 2.2]
    return row


def test_xtc_acts_only_when_its_draw_is_within_the_probability() -> None:
    row = peaked_row()
    params = SamplingParams(xtc_probability=0.4, xtc_threshold=0.1)
    plain = baco_kept(row, replace(params, xtc_probability=0.0))
    assert baco_kept(row, params, xtc_draw=0.41) == plain
    assert baco_kept(row, params, xtc_draw=0.39) == plain[2:]
    assert baco_kept(row, replace(params, xtc_threshold=0.6), xtc_draw=0.0) == plain  # above 0.5: off, as llama.cpp


@pytest.fixture(scope="module")
def aligned_model(tiny_pair):
    model = LoadedModel(tiny_pair[1])
    yield model
    model.close()


def llama_cpp_dry(model: LoadedModel, params: SamplingParams, history: list[int], row: np.ndarray) -> np.ndarray:
    """The logits row after llama.cpp's DRY sampler, which accepted ``history`` first."""
    chain = Chain().add(llama_cpp_dry_sampler(model, params, len(history)))
    try:
        chain.accept(history)
        candidates = LlamaTokenDataArray(n_vocab=row.shape[0])
        candidates.copy_logits(row)
        llama_cpp.llama_sampler_apply(chain.chain, ctypes.byref(candidates.candidates))
        out = np.empty_like(row)
        out[candidates.candidates_data.id] = candidates.candidates_data.logit
        return out
    finally:
        chain.close()


def llama_cpp_dry_sampler(model: LoadedModel, params: SamplingParams, history_length: int):
    """llama.cpp's DRY sampler. -1 ("the whole context") is given as the history's length: this
    llama.cpp build's DRY has no context size to resolve -1 with (it then penalises nothing)."""
    last_n = history_length if params.dry_penalty_last_n == -1 else params.dry_penalty_last_n
    breakers = (ctypes.c_char_p * len(params.dry_sequence_breakers))(*[b.encode() for b in params.dry_sequence_breakers])
    return llama_cpp.llama_sampler_init_dry(model.vocab, params.dry_multiplier, params.dry_base,
                                            params.dry_allowed_length, last_n, breakers,
                                            len(params.dry_sequence_breakers))


def repetitive_histories(n_vocab: int) -> list[list[int]]:
    """Histories with repeats, some cut by breakers (13 is the newline, 61 ':', 358 '**')."""
    rng = np.random.default_rng(3)
    phrase = [300, 301, 302, 303, 304]
    out = [
        phrase + [400, 401] + phrase[:3],  # "a b c d e x y a b c": continuing with d is penalised
        phrase + [13] + phrase + [13] + phrase[:4],
        phrase * 4 + phrase[:2],
        phrase + [61, 300, 301] + phrase[:4],
        [300, 300, 300, 300, 300, 300],
        phrase + [358] + phrase + [358, 300, 301, 302],
    ]
    for _ in range(6):
        out.append(rng.choice([300, 301, 302, 13, 303, 61], size=80).tolist())
    out.append(rng.integers(0, n_vocab, size=300).tolist())
    return out


@pytest.mark.parametrize("params", DRY_SETTINGS, ids=lambda p: f"m{p.dry_multiplier}-b{p.dry_base}-a{p.dry_allowed_length}-n{p.dry_penalty_last_n}")
def test_dry_penalises_what_llama_cpp_penalises(aligned_model: LoadedModel, params: SamplingParams) -> None:
    rng = np.random.default_rng(5)
    breakers = model_breakers(aligned_model, params.dry_sequence_breakers)
    penalised = 0
    for history in repetitive_histories(aligned_model.n_vocab):
        row = rng.normal(size=aligned_model.n_vocab).astype(np.float32)
        expected = llama_cpp_dry(aligned_model, params, history, row)
        d = Distribution(row.copy(), Scratch(row.shape[0]))
        _, got = kept_tokens(d, params, history=np.array(history), breakers=breakers)
        np.testing.assert_array_equal(got, expected)
        penalised += int((got != row).sum())
    assert penalised >= 5


def test_dry_default_breakers_are_llama_cpps(aligned_model: LoadedModel) -> None:
    """Every token whose text holds a newline, ':', '"' or '*' breaks repeats (never penalised)."""
    assert DEFAULT_BREAKERS == ("\n", ":", "\"", "*")
    breakers = model_breakers(aligned_model, DEFAULT_BREAKERS)
    singles = {t for t in range(aligned_model.n_vocab) if breakers.is_single_token(t)}
    assert {13, 37, 45, 61, 358} <= singles
    assert 300 not in singles
    # A repeat is counted back only to the most recent breaker: "301 13 302" repeats 3 tokens
    # further back, but only "302" counts.
    history = np.array([300, 301, 13, 302, 300, 301, 13, 302])
    knobs = dict(multiplier=1.0, base=2.0, allowed_length=1, penalty_last_n=-1)
    assert dry_penalties(history, breakers=breakers, **knobs) == {300: 1.0}
    assert dry_penalties(history, breakers=Breakers({}), **knobs) == {300: 8.0}


def test_full_chain_keeps_what_llama_cpp_keeps(aligned_model: LoadedModel) -> None:
    """DRY → top-n-sigma → top-k → top-p → min-p → XTC → temperature, all on at once."""
    params = SamplingParams(dry_multiplier=3.0, top_nsigma=2.0, top_k=0, top_p=0.98, min_p=0.0,
                            xtc_probability=1.0, xtc_threshold=0.05, temperature=1.2)
    breakers = model_breakers(aligned_model, params.dry_sequence_breakers)
    rng = np.random.default_rng(11)
    for history in repetitive_histories(aligned_model.n_vocab)[:6]:
        row = (rng.normal(size=aligned_model.n_vocab) * 2).astype(np.float32)
        row[history[-1] + 1 if history[-1] + 1 < row.shape[0] else 0] += 4  # something for XTC to remove
        chain = Chain().add(llama_cpp_dry_sampler(aligned_model, params, len(history)))
        chain.add(llama_cpp.llama_sampler_init_top_n_sigma(params.top_nsigma)).add_filters(params, xtc_seed=2)
        try:
            chain.accept(history)
            expected, _ = chain.apply(row)
        finally:
            chain.close()
        ids, logits = kept_tokens(Distribution(row, Scratch(row.shape[0])), params, xtc_draw=0.0,
                                  history=np.array(history), breakers=breakers)
        assert_same_kept(ids.tolist(), expected, logits)


def test_draws_follow_the_chains_probabilities(aligned_model: LoadedModel) -> None:
    """A draw in the middle of each kept token's share of the final distribution picks it."""
    params = SamplingParams(dry_multiplier=1.0, top_nsigma=1.5, xtc_probability=1.0, xtc_threshold=0.05,
                            temperature=0.7, top_k=0, top_p=1.0, min_p=0.0)
    history = np.array(repetitive_histories(aligned_model.n_vocab)[0])
    breakers = model_breakers(aligned_model, params.dry_sequence_breakers)
    row = (np.random.default_rng(2).normal(size=aligned_model.n_vocab) * 2).astype(np.float32)
    ids, logits = kept_tokens(Distribution(row, Scratch(row.shape[0])), params, xtc_draw=0.0, history=history,
                              breakers=breakers)
    probs = np.exp((logits[ids].astype(np.float64) - logits[ids].max()) / params.temperature)
    probs /= probs.sum()
    middles = np.cumsum(probs) - probs / 2
    d = Distribution(row, Scratch(row.shape[0]))
    picked = [sample_token(d, params, float(u), xtc_draw=0.0, history=history, breakers=breakers) for u in middles]
    assert picked == ids.tolist()
