"""Measured batch costs (engine/batch_costs.py): the table, its cache, and its uses under auto
(scheduler padding, draft lengths), which never change the tokens. Real llama.cpp, the tiny pair."""

from __future__ import annotations

import json

import llama_cpp
import pytest

from baco_local import ALIGNED, BASE, Engine, GenerationSettings, Message, ModelPair, PairSpec, get_router
from baco_local.engine.batch_costs import CostCache, CostTable, best_draft_length, measure_costs, padded_size
from baco_local.engine.concurrent import ChoiceCache
from baco_local.engine.sampling import SamplingParams
from baco_local.engine.scheduler import Request, SampleFinished, Scheduler
from baco_local.engine.settings import DraftPolicy

# The measurement (Gemma 3 270M, 2 threads): 6 rows cost more than 8.
GEMMA = CostTable(all_rows={1: 10.7, 2: 23.5, 4: 33.2, 6: 53.2, 8: 41.9},
                  last_row={1: 10.7, 2: 12.6, 4: 14.2, 6: 16.9, 8: 18.7})
PROMPT = [Message("user", "Tell me a story about the cat")]


@pytest.fixture(scope="module")
def pair(tiny_pair):
    loaded = ModelPair(PairSpec(*tiny_pair))
    yield loaded
    loaded.close()


def test_costs_between_sizes_and_rows():
    assert GEMMA.cost(6) == 53.2 and GEMMA.cost(6, 1) == 16.9
    assert GEMMA.cost(3) == pytest.approx((23.5 + 33.2) / 2)
    assert GEMMA.cost(8, 4) == pytest.approx(18.7 + (41.9 - 18.7) * 3 / 7)
    assert GEMMA.cost(16) == pytest.approx(41.9 * 2)  # past the table: proportional
    assert CostTable.from_dict(GEMMA.as_dict()) == GEMMA
    assert CostTable.from_dict({"all_rows": {"1": "x"}}) is None and CostTable.from_dict("junk") is None


def test_a_six_row_batch_is_padded_to_eight_when_that_is_cheaper():
    assert padded_size([GEMMA], 6, 8) == 8
    assert padded_size([GEMMA], 6, 7) == 6  # 7 was not measured: no guess
    assert padded_size([GEMMA], 4, 8) == 4


def test_draft_length_follows_costs_and_acceptance():
    assert best_draft_length(GEMMA, GEMMA, 0.05, 16) == 1  # nearly every draft rejected: no drafting
    long = best_draft_length(GEMMA, GEMMA, 0.97, 16, need_share=0.1)
    assert long >= 8  # cheap verification (few rows) and long spells: draft far
    # With every row needed, the expensive six-row batch is never the choice.
    assert all(best_draft_length(GEMMA, GEMMA, a / 20, 8) != 6 for a in range(1, 20))


def test_measuring_a_real_context_leaves_the_sequence_as_it_was(pair):
    engine = Engine(pair, ctx_size=256, threads=1)
    try:
        generation = engine.generate(PROMPT, 1, GenerationSettings(get_router("p-punc"), 0.3, SamplingParams(), 4))
        list(generation)
        context = engine.contexts[ALIGNED]
        held = llama_cpp.llama_memory_seq_pos_max(context.memory, 0)
        table = measure_costs(context, 0, held + 1, pair.aligned.info.bos or 0, sizes=(1, 2, 4), repeats=2)
        assert llama_cpp.llama_memory_seq_pos_max(context.memory, 0) == held
        assert table.sizes == [1, 2, 4] and all(ms > 0 for _, every, last in table.rows() for ms in (every, last))
        assert table.calibration_ms > 0
    finally:
        engine.close()


def _draft_run(engine, sampling, n=1):
    settings = GenerationSettings(get_router("p-punc"), 0.3, sampling, 40, (), 5, DraftPolicy())
    generation = engine.generate(PROMPT, n, settings)
    list(generation)
    return [(s.tokens, s.sources) for s in generation.samples]


def test_auto_drafts_with_measured_costs_and_the_same_tokens(pair, tmp_path):
    cache = ChoiceCache(tmp_path / "concurrency.json")
    auto = Engine(pair, ctx_size=256, threads=2, concurrency="auto", choice_cache=cache)
    off = Engine(pair, ctx_size=256, threads=2, concurrency="off", choice_cache=cache)
    try:
        for sampling in (SamplingParams(temperature=0), SamplingParams(temperature=1.0)):
            assert _draft_run(auto, sampling) == _draft_run(off, sampling)
        assert set(auto.costs) == {BASE, ALIGNED} and not off.costs  # measured under auto only
        stored = json.loads((tmp_path / "batch_costs.json").read_text())
        assert len(stored) == 2  # one entry per model file (and thread count)
        again = Engine(pair, ctx_size=256, threads=2, concurrency="auto", choice_cache=cache)
        try:
            _draft_run(again, SamplingParams(temperature=0))
            key = CostCache.key(pair.base.path, 2)
            assert again.costs[BASE] == CostTable.from_dict(stored[key])  # read, not measured again
        finally:
            again.close()
    finally:
        auto.close()
        off.close()


def _scheduled(pair, mode, requests, cache=None):
    scheduler = Scheduler(pair, parallel=8, ctx_size=256, threads=2, concurrency=mode, choice_cache=cache)
    out: list[list] = [[] for _ in requests]
    try:
        for request, events in zip(requests, out):
            scheduler.submit(request, events.append)
        scheduler.run_until_idle()
        evaluated = scheduler.contexts[BASE].n_evaluated
        for context in scheduler.contexts.values():
            for seq in range(scheduler.parallel):
                assert llama_cpp.llama_memory_seq_pos_max(context.memory, seq) == -1  # pads removed too
    finally:
        scheduler.close()
    return [sorted(((e.sample.index, e.sample.tokens, e.sample.sources) for e in events
                    if isinstance(e, SampleFinished))) for events in out], evaluated


def test_the_scheduler_pads_batches_to_a_cheaper_size_with_the_same_tokens(pair, tmp_path):
    cache = ChoiceCache(tmp_path / "concurrency.json")
    # A table where 4 rows are cheaper than 2 or 3 (as 8 is than 6 on Gemma), stored for the threads auto uses.
    cheap_four = CostTable({1: 1.0, 2: 5.0, 3: 5.0, 4: 2.0}, {1: 1.0, 2: 1.0, 3: 1.0, 4: 1.0})
    costs = CostCache(tmp_path / "batch_costs.json")
    for path in (pair.base.path, pair.aligned.path):
        for threads in (1, 2):
            costs.store.put(CostCache.key(path, threads), cheap_four.as_dict())
    settings = GenerationSettings(get_router("p-punc"), 0.3, SamplingParams(temperature=1.0), 16, (), 2,
                                  DraftPolicy(enabled=False))
    requests = [Request(PROMPT, settings, n=2), Request("the cat", settings)]
    padded, padded_tokens = _scheduled(pair, "auto", requests, cache)
    plain, plain_tokens = _scheduled(pair, "off", requests)
    assert padded == plain
    assert padded_tokens > plain_tokens  # the pad rows were decoded (and thrown away)
