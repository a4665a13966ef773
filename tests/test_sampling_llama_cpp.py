"""baco's sampler filters keep exactly the tokens llama.cpp's own sampler chain keeps.

The reference is llama.cpp itself, through llama-cpp-python's ``LlamaSampler`` (top-k, top-p, min-p,
temperature: the order of llama.cpp's default chain) applied to a ``llama_token_data_array`` that
holds the same logits row.
"""

from __future__ import annotations

import ctypes

import llama_cpp
import numpy as np
import pytest
from llama_cpp._internals import LlamaSampler, LlamaTokenDataArray

from baco_local.engine.sampling import Distribution, SamplingParams, Scratch, ranked_prefix, sample

SETTINGS = [
    SamplingParams(),  # the defaults: top-k 40, top-p 0.95, min-p 0.05, temperature 0.8
    SamplingParams(top_k=40, top_p=0.9, min_p=0.0),
    SamplingParams(top_k=0, top_p=0.9, min_p=0.0),
    SamplingParams(top_k=0, top_p=0.8, min_p=0.05),
    SamplingParams(top_k=10, top_p=1.0, min_p=0.0),
    SamplingParams(top_k=0, top_p=1.0, min_p=0.1),
    SamplingParams(top_k=200, top_p=0.99, min_p=0.001, temperature=1.3),
    SamplingParams(top_k=5, top_p=0.5, min_p=0.2, temperature=0.5),
    SamplingParams(top_k=1000, top_p=0.7, min_p=0.0),
]


def llama_cpp_chain(logits: np.ndarray, params: SamplingParams) -> tuple[list[int], np.ndarray]:
    """Token ids left after llama.cpp's top-k → top-p → min-p → temperature chain, and their
    logits as the chain leaves them (what its final draw softmaxes)."""
    candidates = LlamaTokenDataArray(n_vocab=logits.shape[0])
    candidates.copy_logits(logits)
    chain = LlamaSampler()
    try:
        chain.add_top_k(params.top_k)
        chain.add_top_p(params.top_p, 1)
        chain.add_min_p(params.min_p, 1)
        chain.add_temp(params.temperature)
        llama_cpp.llama_sampler_apply(chain.sampler, ctypes.byref(candidates.candidates))
        size = candidates.candidates.size
        return candidates.candidates_data.id[:size].tolist(), np.array(candidates.candidates_data.logit[:size])
    finally:
        chain.close()


def llama_cpp_kept(logits: np.ndarray, params: SamplingParams) -> list[int]:
    return llama_cpp_chain(logits, params)[0]


def baco_kept(logits: np.ndarray, params: SamplingParams) -> list[int]:
    return ranked_prefix(Distribution(logits, Scratch(logits.shape[0])), params).tolist()


def rows() -> list[np.ndarray]:
    """Flat, peaked and heavy-tailed rows, on a small vocabulary and on Gemma's 262,144."""
    rng = np.random.default_rng(7)
    out = [(rng.normal(size=5000) * scale).astype(np.float32) for scale in (0.5, 1.0, 2.0, 3.0, 5.0)]
    out += [(rng.standard_t(2, size=5000) * 2).astype(np.float32)]
    out += [(rng.normal(size=262_144) * scale).astype(np.float32) for scale in (1.0, 2.5)]
    return out


def crafted_row() -> np.ndarray:
    """40 tokens with gently falling logits, above a tail of 5000 that holds most of the mass:
    the top 40 are far from 95% of the full distribution, and 37 of them reach 95% of their own."""
    head = np.linspace(0.0, -1.0, 40)  # renormalised: 36 tokens hold 94.0%, 37 hold 95.5%
    tail = np.linspace(-4.0, -4.01, 5000)  # distinct values: no ties for the two samplers to break differently
    return np.concatenate([head, tail]).astype(np.float32)


@pytest.mark.parametrize("params", SETTINGS, ids=lambda p: f"k{p.top_k}-p{p.top_p}-m{p.min_p}")
def test_kept_tokens_equal_llama_cpp(params: SamplingParams) -> None:
    for row in rows() + [crafted_row()]:
        expected = llama_cpp_kept(row, params)
        got = baco_kept(row, params)
        assert got == sorted(got, key=lambda i: -row[i])  # most likely first
        if row.shape[0] > 100_000 and len(expected) > 1000:
            assert_within_float32_rounding(row, got, expected)
        else:
            assert sorted(got) == sorted(expected)


def assert_within_float32_rounding(row: np.ndarray, got: list[int], expected: list[int]) -> None:
    """Where top-p keeps thousands of tokens of a 262k vocabulary, llama.cpp's cut moves with its
    float32 sums (the normaliser summed in vocabulary order, then the running sum): the two cuts
    may differ only by tokens whose total probability is within that rounding, V·2⁻²⁴."""
    shorter, longer = sorted((got, expected), key=len)
    assert set(shorter) <= set(longer)
    probs = np.exp(row.astype(np.float64) - row.max())
    probs /= probs.sum()
    assert probs[list(set(longer) - set(shorter))].sum() <= row.shape[0] * 2.0**-24


def test_top_p_is_measured_after_top_k() -> None:
    """With the defaults, top-p renormalises over the 40 tokens top-k kept: 37 survive, as in
    llama.cpp. Measured against the full distribution (the old behaviour) all 40 would."""
    row = crafted_row()
    probs = np.exp(row - row.max()) / np.exp(row - row.max()).sum()
    assert probs[:40].sum() < 0.95 and probs[39] >= 0.05 * probs[0]  # neither full-mass top-p nor min-p cuts
    assert len(llama_cpp_kept(row, SamplingParams())) == 37
    assert baco_kept(row, SamplingParams()) == list(range(37))


@pytest.mark.parametrize("params", [SamplingParams(), SamplingParams(temperature=1.5, top_k=10, top_p=0.8, min_p=0.0)],
                         ids=["defaults", "hot"])
def test_draws_follow_llama_cpp_probabilities(params: SamplingParams) -> None:
    """Temperature acts on what the filters kept: a draw in the middle of each token's share of
    llama.cpp's final distribution (the softmax of the chain's output logits) picks that token."""
    row = crafted_row()
    ids, chain_logits = llama_cpp_chain(row, params)
    probs = np.exp(chain_logits.astype(np.float64) - chain_logits.max())
    probs /= probs.sum()
    order = sorted(range(len(ids)), key=lambda i: -probs[i])
    upper = np.cumsum(probs[order])
    middles = upper - probs[order] / 2
    d = Distribution(row, Scratch(row.shape[0]))
    assert [sample(d, params, float(u)) for u in middles] == [ids[i] for i in order]
