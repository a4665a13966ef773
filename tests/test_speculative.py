"""Draft-and-verify gives exactly the step-by-step loop's output."""

from __future__ import annotations

import pytest

from baco_local import ROUTERS, GenerationSettings, Message, get_router
from baco_local.engine.loop import DraftPolicy
from baco_local.engine.sampling import SamplingParams

PROMPT = [Message("user", "Tell me a story about the cat")]
STEP = DraftPolicy(enabled=False)


def generate(engine, router: str, draft: DraftPolicy, *, n=2, seed=0, sampling=SamplingParams(temperature=0),
             max_tokens=48, gamma=None, stop=()):
    gamma = (1.5 if router.startswith("h") else 0.3) if gamma is None else gamma
    settings = GenerationSettings(get_router(router), gamma, sampling, max_tokens, tuple(stop), seed, draft)
    generation = engine.generate(PROMPT, n, settings)
    events = list(generation)
    return generation.samples, events


@pytest.mark.parametrize("router", list(ROUTERS))
def test_greedy_draft_equals_step_loop_for_every_router(engine, router: str) -> None:
    reference, _ = generate(engine, router, STEP)
    for policy in (DraftPolicy(max_samples_for_adaptive=8), DraftPolicy(fixed_k=1), DraftPolicy(fixed_k=5),
                   DraftPolicy(start_k=16, max_samples_for_adaptive=8)):
        drafted, events = generate(engine, router, policy)
        for ref, got in zip(reference, drafted):
            assert (got.tokens, got.sources, got.text, got.finish_reason) == (
                ref.tokens, ref.sources, ref.text, ref.finish_reason), policy
        for sample in drafted:
            assert "".join(e.text for e in events if e.sample == sample.index) == sample.text


@pytest.mark.parametrize("router", ["p-punc", "h", "nudging"])
def test_greedy_draft_with_dry_and_xtc_equals_step_loop(engine, router: str) -> None:
    """DRY reads each side's prompt and the tokens drafted so far; XTC has its own draws: greedy
    drafts with both on are still the step loop's tokens, and DRY changes them."""
    sampling = SamplingParams(temperature=0, dry_multiplier=2.0, dry_allowed_length=1, xtc_probability=0.5,
                              xtc_threshold=0.05)
    reference, _ = generate(engine, router, STEP, sampling=sampling, seed=1)
    plain, _ = generate(engine, router, STEP, seed=1)
    assert [s.tokens for s in reference] != [s.tokens for s in plain]
    for policy in (DraftPolicy(max_samples_for_adaptive=8), DraftPolicy(fixed_k=4)):
        drafted, _ = generate(engine, router, policy, sampling=sampling, seed=1)
        assert [(s.tokens, s.sources) for s in drafted] == [(s.tokens, s.sources) for s in reference], policy


def test_draft_keeps_caches_in_sync(engine) -> None:
    """After rejections and cut-backs, what sequence 0 holds is what was generated."""
    samples, _ = generate(engine, "p-punc", DraftPolicy(), n=1, max_tokens=40)
    assert samples[0].finish_reason == "length" and "B" in samples[0].sources
    for side in ("A", "B"):
        held = engine.held[side]
        assert held[len(held) - 39:] == samples[0].tokens[:-1]


LLAMA_SAMPLERS = SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, dry_multiplier=1.0, dry_allowed_length=1,
                                xtc_probability=0.5, xtc_threshold=0.1, top_nsigma=1.5)


@pytest.mark.parametrize("hot", [SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0), SamplingParams(),
                                 LLAMA_SAMPLERS], ids=["unfiltered", "defaults", "dry-xtc-nsigma"])
@pytest.mark.parametrize("router", ["p-punc", "random", "h-punc", "nudging"])
def test_sampled_draft_gives_the_step_loop_tokens(engine, router: str, hot: SamplingParams) -> None:
    """Draws are indexed by position and side, so drafting ahead (and discarding) changes nothing:
    under sampling too, unfiltered and with the default filters, the tokens are the step loop's,
    for any draft length."""
    for seed in range(0, 40, 4):
        step, _ = generate(engine, router, STEP, n=4, seed=seed, sampling=hot, max_tokens=24)
        for policy in (DraftPolicy(fixed_k=3), DraftPolicy(max_samples_for_adaptive=8)):
            drafted, _ = generate(engine, router, policy, n=4, seed=seed, sampling=hot, max_tokens=24)
            assert [(s.tokens, s.sources) for s in drafted] == [(s.tokens, s.sources) for s in step], (seed, policy)
        alone, _ = generate(engine, router, DraftPolicy(), n=1, seed=seed + 2, sampling=hot, max_tokens=24)
        assert (alone[0].tokens, alone[0].sources) == (step[2].tokens, step[2].sources)  # sample i alone = among N
    assert len({tuple(s.tokens) for s in step}) > 1


def test_adaptive_draft_uses_fewer_decode_calls(engine) -> None:
    """With the aligned router nothing is rejected: K grows and the base context decodes in big batches."""
    calls = {}
    for name, policy in (("step", STEP), ("draft", DraftPolicy())):
        before = engine.contexts["B"].n_decode_calls if engine.contexts else 0
        generate(engine, "aligned", policy, n=1, max_tokens=60)
        calls[name] = engine.contexts["B"].n_decode_calls - before
    assert calls["draft"] * 4 < calls["step"]


def test_verifier_skips_logits_the_router_does_not_need(engine) -> None:
    """With a single-model router the other model only keeps its cache in sync: it computes no
    logits after the prompt's last position (needed for the first token)."""
    for router, idle in (("aligned", "B"), ("base", "A")):
        generate(engine, router, DraftPolicy(), n=1, max_tokens=4)  # contexts exist from here on
        before = engine.contexts[idle].n_outputs
        samples, _ = generate(engine, router, DraftPolicy(), n=1, max_tokens=60)
        assert len(samples[0].tokens) == 60
        assert engine.contexts[idle].n_outputs - before == 1


def test_adaptive_drafting_is_for_single_samples_and_a_fixed_k_for_any(engine) -> None:
    from baco_local.engine.speculative import DraftGeneration

    def generation(policy: DraftPolicy, n: int):
        settings = GenerationSettings(get_router("p-punc"), 0.3, SamplingParams(temperature=0), 8, (), 0, policy)
        return engine.generate(PROMPT, n, settings)

    assert isinstance(generation(DraftPolicy(), 1), DraftGeneration)
    assert not isinstance(generation(DraftPolicy(), 4), DraftGeneration)
    assert isinstance(generation(DraftPolicy(fixed_k=3), 4), DraftGeneration)
    assert not isinstance(generation(STEP, 1), DraftGeneration)


def test_draft_flag_is_validated() -> None:
    with pytest.raises(Exception, match="--draft"):
        DraftPolicy(fixed_k=0)


@pytest.mark.parametrize("router", ["p-punc", "h-punc", "fc", "random", "nudging"])
def test_draft_equals_step_loop_under_the_default_sampler_and_a_stop_string(engine, router: str) -> None:
    """The sampler users run (temperature, top-k, top-p and min-p at their defaults), with and
    without a stop string that spans tokens: drafting gives the step loop's samples exactly."""
    from stop_strings import boundary_stop

    shipped = SamplingParams()
    assert shipped.temperature > 0 and shipped.top_k and shipped.top_p < 1 and shipped.min_p > 0
    for seed in (0, 7, 21):
        step, _ = generate(engine, router, STEP, n=3, seed=seed, sampling=shipped, max_tokens=32)
        stop = boundary_stop(step[0], min_index=1)
        for stops in ((), (stop,)):
            reference, _ = generate(engine, router, STEP, n=3, seed=seed, sampling=shipped, max_tokens=32, stop=stops)
            for policy, n in ((DraftPolicy(fixed_k=3), 3), (DraftPolicy(), 1), (DraftPolicy(fixed_k=8), 1)):
                drafted, _ = generate(engine, router, policy, n=n, seed=seed, sampling=shipped, max_tokens=32,
                                      stop=stops)
                assert [(s.tokens, s.sources, s.text, s.finish_reason) for s in drafted] == [
                    (s.tokens, s.sources, s.text, s.finish_reason) for s in reference[:n]], (seed, policy, stops)
        assert reference[0].text == step[0].text[: step[0].text.index(stop)]  # the stop string did cut
