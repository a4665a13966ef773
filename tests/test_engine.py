"""The token loop on a generated tiny pair, checked against real llama.cpp.

References are computed independently with llama-cpp-python's high-level ``Llama`` (one model,
one sequence, fresh evaluation of every prefix), so a bug in baco's batching, KV handling or
routing shows up as a mismatch.
"""

from __future__ import annotations

import llama_cpp
import numpy as np
import pytest

from baco_local import ALIGNED, BASE, Engine, GenerationSettings, Message, ModelPair, PairSpec, get_router
from baco_local.engine.routers import Signals
from baco_local.engine.sampling import MASKED_LOGIT, Distribution, SamplingParams, Scratch

GREEDY = SamplingParams(temperature=0)
PROMPT = [Message("user", "Tell me a story about the cat")]


@pytest.fixture(scope="module")
def pair(tiny_pair):
    base, aligned = tiny_pair
    loaded = ModelPair(PairSpec(base, aligned))
    yield loaded
    loaded.close()


@pytest.fixture(scope="module")
def engine(pair):
    eng = Engine(pair, ctx_size=256, threads=1)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def references(tiny_pair):
    """Single-model llama.cpp instances for fresh, independent evaluation of prefixes."""
    base, aligned = tiny_pair
    models = {BASE: llama_cpp.Llama(str(base), n_ctx=256, n_threads=1, n_threads_batch=1, verbose=False),
              ALIGNED: llama_cpp.Llama(str(aligned), n_ctx=256, n_threads=1, n_threads_batch=1, verbose=False)}
    yield models
    for model in models.values():
        model.close()


def run(engine, router="p-punc", gamma=0.3, n=1, seed=0, sampling=GREEDY, max_tokens=40, stop=()):
    settings = GenerationSettings(get_router(router), gamma, sampling, max_tokens, tuple(stop), seed)
    generation = engine.generate(PROMPT, n, settings)
    events = list(generation)
    return generation.samples, events


def fresh_logits(model: llama_cpp.Llama, tokens: list[int]) -> np.ndarray:
    """Last-position logits of ``tokens`` evaluated from scratch."""
    model.reset()
    model.eval(tokens)
    row = llama_cpp.llama_get_logits_ith(model.ctx, -1)
    return np.ctypeslib.as_array(row, shape=(model.n_vocab(),)).copy()


def single_model_greedy(model: llama_cpp.Llama, prompt: list[int], steps: int, masked: np.ndarray,
                        eog: frozenset[int]) -> list[int]:
    out: list[int] = []
    for _ in range(steps):
        logits = fresh_logits(model, prompt + out)
        logits[masked] = MASKED_LOGIT
        token = int(np.argmax(logits))
        if token in eog:
            break
        out.append(token)
    return out


@pytest.mark.parametrize("router, side", [("aligned", ALIGNED), ("base", BASE)])
def test_single_model_router_equals_that_model_alone(engine, pair, references, router, side) -> None:
    samples, _ = run(engine, router=router, max_tokens=30)
    prompt = pair.aligned_prompt(PROMPT) if side == ALIGNED else pair.base_prompt(PROMPT)
    masked = pair.aligned_masked if side == ALIGNED else pair.base_masked
    expected = single_model_greedy(references[side], prompt, 30, masked, pair.eog_ids)
    assert samples[0].tokens == expected
    assert samples[0].sources == side * len(expected)


@pytest.mark.parametrize("router", ["p", "p-punc", "p-fc", "nudging", "random"])
def test_gamma_extremes_reproduce_single_models(engine, router) -> None:
    aligned_only, _ = run(engine, router="aligned", seed=3)
    base_only, _ = run(engine, router="base", seed=3)
    low, _ = run(engine, router=router, gamma=0.0, seed=3)
    high, _ = run(engine, router=router, gamma=1.0, seed=3)
    if router == "nudging":  # reversed default: γ = 0 never nudges
        low, high = high, low
    if router in ("p-punc", "p-fc"):  # content rules still force aligned at γ = 1
        assert low[0].tokens == aligned_only[0].tokens
        return
    assert low[0].tokens == aligned_only[0].tokens
    assert high[0].tokens == base_only[0].tokens


def test_routing_replays_from_fresh_contexts(engine, pair, references) -> None:
    """Every token of a mixed run is the greedy choice of the side the router picks from fresh
    evaluations of each model's prompt + the shared generated tokens: both caches stayed in sync."""
    samples, _ = run(engine, router="p-punc", gamma=0.3, max_tokens=30)
    sample = samples[0]
    assert 0 < sample.sources.count("B") < len(sample.sources)  # a genuine mix
    prompts = {BASE: pair.base_prompt(PROMPT), ALIGNED: pair.aligned_prompt(PROMPT)}
    router = get_router("p-punc")
    writer = None
    for k, (token, side) in enumerate(zip(sample.tokens, sample.sources)):
        dists = {}
        for s in (BASE, ALIGNED):
            logits = fresh_logits(references[s], prompts[s] + sample.tokens[:k])
            logits[pair.base_masked if s == BASE else pair.aligned_masked] = MASKED_LOGIT
            dists[s] = Distribution(logits, Scratch(logits.shape[0]))
        wanted = router.route(Signals(dists[BASE], dists[ALIGNED], pair.classes, 0.3, 0.5))
        if writer is not None and wanted != writer and not pair.classes.is_boundary(
                sample.tokens[:k], dists[wanted].argmax):
            wanted = writer
        assert side == wanted, f"step {k}"
        assert token == dists[side].argmax, f"step {k}"
        writer = side


def test_both_contexts_hold_the_generated_tokens(engine, pair) -> None:
    samples, _ = run(engine, router="random", gamma=0.5, n=3, max_tokens=25)
    assert all(s.finish_reason == "length" for s in samples)
    decoded = samples[0].tokens[:-1]  # the last token ends the run and is never decoded
    base_prompt, aligned_prompt = pair.base_prompt(PROMPT), pair.aligned_prompt(PROMPT)
    assert engine.held[BASE] == base_prompt + decoded
    assert engine.held[ALIGNED] == aligned_prompt + decoded
    for side, prompt in ((BASE, base_prompt), (ALIGNED, aligned_prompt)):
        memory = engine.contexts[side].memory
        for sample in samples:
            expected_last = len(prompt) + len(sample.tokens) - 2
            assert llama_cpp.llama_memory_seq_pos_max(memory, sample.index) == expected_last


def test_no_switch_inside_a_word(engine, pair) -> None:
    switches = 0
    for seed in range(4):
        samples, _ = run(engine, router="random", gamma=0.5, seed=seed, n=2,
                         sampling=SamplingParams(temperature=1.0), max_tokens=40)
        for sample in samples:
            for k in range(1, len(sample.tokens)):
                if sample.sources[k] != sample.sources[k - 1]:
                    switches += 1
                    assert pair.classes.is_boundary(sample.tokens[:k], sample.tokens[k])
    assert switches > 10


def test_parallel_sequences_match_one_at_a_time(engine) -> None:
    together, _ = run(engine, router="random", gamma=0.5, n=4, seed=11, max_tokens=30)
    for sample in together:
        alone, _ = run(engine, router="random", gamma=0.5, n=1, seed=11 + sample.index, max_tokens=30)
        assert alone[0].tokens == sample.tokens
        assert alone[0].sources == sample.sources
    assert len({tuple(s.tokens) for s in together}) > 1


def test_same_seed_same_output_with_sampling(engine) -> None:
    hot = SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0)
    first, _ = run(engine, n=3, seed=5, sampling=hot)
    second, _ = run(engine, n=3, seed=5, sampling=hot)
    other, _ = run(engine, n=3, seed=6, sampling=hot)
    assert [s.tokens for s in first] == [s.tokens for s in second]
    assert [s.tokens for s in first] != [s.tokens for s in other]


def test_events_carry_provenance_and_rebuild_the_text(engine) -> None:
    samples, events = run(engine, router="p-punc", n=2, max_tokens=20)
    for sample in samples:
        mine = [e for e in events if e.sample == sample.index]
        assert "".join(e.text for e in mine) == sample.text
        assert "".join(e.side for e in mine)[: len(sample.sources)] == sample.sources


def test_max_tokens_and_stop_strings(engine, pair) -> None:
    samples, _ = run(engine, router="aligned", max_tokens=7)
    assert samples[0].finish_reason == "length" and len(samples[0].tokens) == 7
    full, _ = run(engine, router="aligned", max_tokens=40)
    words = full[0].text.split()
    stop = " " + words[3]
    cut, _ = run(engine, router="aligned", max_tokens=40, stop=[stop])
    assert cut[0].finish_reason == "stop"
    assert cut[0].text == full[0].text[: full[0].text.index(stop)]
    assert stop not in cut[0].text
    # Provenance follows the text: the stop string's tokens are not counted.
    assert pair.token_texts(cut[0].tokens) == cut[0].text
    assert len(cut[0].sources) == len(cut[0].tokens) < len(full[0].tokens)
    at_start, _ = run(engine, router="aligned", max_tokens=40, stop=[full[0].text[:2]])
    assert (at_start[0].text, at_start[0].tokens, at_start[0].sources) == ("", [], "")


def test_prompt_prefix_is_reused_between_generations(engine, pair) -> None:
    run(engine, router="aligned", max_tokens=5)
    before = {side: engine.contexts[side].n_evaluated for side in (BASE, ALIGNED)}
    samples, _ = run(engine, router="aligned", max_tokens=5)
    after = {side: engine.contexts[side].n_evaluated for side in (BASE, ALIGNED)}
    # Same prompt again: only its last token is re-decoded, then the generated tokens.
    decoded_steps = len(samples[0].tokens) - 1
    assert after[ALIGNED] - before[ALIGNED] == 1 + decoded_steps
    assert after[BASE] - before[BASE] == 1 + decoded_steps


def test_ensemble_weights_zero_and_one_are_the_single_models(engine) -> None:
    aligned_only, _ = run(engine, router="aligned", max_tokens=20)
    base_only, _ = run(engine, router="base", max_tokens=20)
    for weight, expected, source in ((0.0, aligned_only, "A"), (1.0, base_only, "B")):
        settings = GenerationSettings(get_router("aligned"), 0.3, GREEDY, 20, (), 0, ensemble=weight)
        generation = engine.generate(PROMPT, 1, settings)
        list(generation)
        assert generation.samples[0].tokens == expected[0].tokens
        assert set(generation.samples[0].sources) == {source}
    mixed = GenerationSettings(get_router("aligned"), 0.3, SamplingParams(temperature=1.0), 30, (), 0,
                               ensemble=0.5)
    generation = engine.generate(PROMPT, 2, mixed)
    list(generation)
    assert all(set(s.sources) == {"A", "B"} for s in generation.samples)


def test_a_character_spanning_tokens_is_emitted_whole(engine, pair) -> None:
    """UTF-8 split over byte tokens: nothing is shown until the character is complete."""
    from tiny_models import BYTE_BASE_ID

    settings = GenerationSettings(get_router("aligned"), 0.3, GREEDY, 10)
    generation = engine.generate(PROMPT, 1, settings)
    state = generation.states[0]
    first = generation._commit(state, BYTE_BASE_ID + 0xC3, "A")
    second = generation._commit(state, BYTE_BASE_ID + 0xA9, "B")
    assert [e.text for e in first + second] == ["", "é"]
    assert state.text == "é" and "".join(state.sources) == "AB"
