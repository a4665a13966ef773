"""The scheduler on the tiny pair with real llama.cpp: many requests in one batch, each giving the
tokens it gives alone (the step loop of loop.py is the independent reference)."""

from __future__ import annotations

from dataclasses import replace

import llama_cpp
import pytest

from baco_local import ALIGNED, BASE, Engine, GenerationSettings, Message, ModelPair, PairSpec, get_router
from baco_local.engine.sampling import SamplingParams
from baco_local.engine.scheduler import Request, RequestFailed, SampleFinished, Scheduler
from baco_local.engine.settings import DraftPolicy
from baco_local.engine.step import TokenEvent

GREEDY = SamplingParams(temperature=0)
HOT = SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0)
CTX = 256


@pytest.fixture(scope="module")
def pair(tiny_pair):
    loaded = ModelPair(PairSpec(*tiny_pair))
    yield loaded
    loaded.close()


@pytest.fixture(scope="module")
def engine(pair):
    eng = Engine(pair, ctx_size=CTX, threads=1)
    yield eng
    eng.close()


def settings(router="p-punc", gamma=0.3, sampling=GREEDY, max_tokens=30, stop=(), seed=0):
    return GenerationSettings(get_router(router), gamma, sampling, max_tokens, tuple(stop), seed,
                              DraftPolicy(enabled=False))


class Collector:
    """One request's events, in the order they arrived."""

    def __init__(self, log: list | None = None, name: str = "") -> None:
        self.events: list = []
        self.log, self.name = log, name

    def __call__(self, event) -> None:
        self.events.append(event)
        if self.log is not None:
            self.log.append((self.name, event))

    def samples(self):
        return sorted((e.sample for e in self.events if isinstance(e, SampleFinished)), key=lambda s: s.index)

    def texts_from_tokens(self) -> dict[int, str]:
        out: dict[int, str] = {}
        for event in self.events:
            if isinstance(event, TokenEvent):
                out[event.sample] = out.get(event.sample, "") + event.text
        return out


def alone(engine, request: Request):
    generation = engine.generate(request.messages(), request.n, request.settings)
    list(generation)
    return generation.samples


def key(sample):
    return sample.tokens, sample.sources, sample.text, sample.finish_reason


def assert_cells_free(scheduler: Scheduler) -> None:
    for context in scheduler.contexts.values():
        for seq in range(scheduler.parallel):
            assert llama_cpp.llama_memory_seq_pos_max(context.memory, seq) == -1


def test_mixed_requests_in_one_batch_match_each_alone(pair, engine) -> None:
    requests = [
        Request("Tell me a story about the cat", settings("p-punc")),
        Request([Message("system", "Be brief."), Message("user", "the cat")], settings("aligned", max_tokens=12)),
        Request("a story " * 6, settings("random", 0.5, HOT, seed=7), n=3),
        Request("Tell me about the cat", settings("h", 0.5, max_tokens=25)),
        Request("Tell me", settings("base", max_tokens=20)),
        # DRY reads the request's own prompts, XTC its own draws: the same tokens as alone.
        Request("a story a story about the cat", settings("p", 0.3, replace(HOT, dry_multiplier=1.5, dry_allowed_length=1,
                                                                        xtc_probability=0.5, top_nsigma=2.0), seed=3), n=2),
    ]
    # A stop string taken from the aligned run alone cuts one request short.
    full = alone(engine, Request("the cat", settings("aligned", max_tokens=30)))[0]
    stop = " " + full.text.split()[2]
    requests.append(Request("the cat", settings("aligned", max_tokens=30, stop=[stop])))
    scheduler = Scheduler(pair, parallel=8, ctx_size=CTX, threads=1)
    collectors = [Collector() for _ in requests]
    handles = [scheduler.submit(r, c) for r, c in zip(requests, collectors)]
    scheduler.run_until_idle()
    assert all(h.done for h in handles)
    for request, collector in zip(requests, collectors):
        together = collector.samples()
        assert [key(s) for s in together] == [key(s) for s in alone(engine, request)]
        rebuilt = collector.texts_from_tokens()
        assert all(rebuilt.get(s.index, "") == s.text for s in together)
    assert collectors[-1].samples()[0].finish_reason == "stop" and stop not in collectors[-1].samples()[0].text
    # Really batched: far fewer decode calls than generated tokens.
    generated = sum(len(s.tokens) for c in collectors for s in c.samples())
    assert scheduler.contexts[BASE].n_decode_calls < generated / 2
    assert_cells_free(scheduler)
    scheduler.close()


def test_request_admitted_mid_generation(pair, engine) -> None:
    scheduler = Scheduler(pair, parallel=4, ctx_size=CTX, threads=1)
    log: list = []
    first = Request("Tell me a story about the cat", settings("p-punc", max_tokens=40), n=2)
    second = Request("the cat", settings("random", 0.5, HOT, max_tokens=20, seed=3))
    a, b = Collector(log, "a"), Collector(log, "b")
    scheduler.submit(first, a)
    for _ in range(5):
        scheduler.step()
    assert scheduler.live_sequences == 2
    scheduler.submit(second, b)
    scheduler.run_until_idle()
    names = [name for name, _ in log]
    first_b = names.index("b")
    assert "a" in names[first_b:]  # the first request was still generating when the second began
    assert [key(s) for s in a.samples()] == [key(s) for s in alone(engine, first)]
    assert [key(s) for s in b.samples()] == [key(s) for s in alone(engine, second)]
    scheduler.close()


def test_cancel_frees_cells_for_the_next_request(pair, engine) -> None:
    # Room for one request of 100 new tokens at a time, not two.
    scheduler = Scheduler(pair, parallel=4, ctx_size=CTX, n_cells=CTX, threads=1)
    log: list = []
    long = Request("Tell me a story about the cat", settings("aligned", max_tokens=150))
    waiting = Request("the cat", settings("p-punc", max_tokens=100))
    a, b = Collector(log, "a"), Collector(log, "b")
    handle = scheduler.submit(long, a)
    scheduler.submit(waiting, b)
    for _ in range(4):
        scheduler.step()
    assert scheduler.live_sequences == 1 and not b.events  # it does not fit beside the first
    handle.cancel()
    scheduler.step()
    assert a.samples()[0].finish_reason == "cancelled" and handle.done
    assert b.events  # admitted at the step that freed the cells
    scheduler.run_until_idle()
    assert [key(s) for s in b.samples()] == [key(s) for s in alone(engine, waiting)]
    assert scheduler.free_cells == CTX
    assert_cells_free(scheduler)
    scheduler.close()


def test_a_request_that_cannot_fit_fails_alone(pair, engine) -> None:
    scheduler = Scheduler(pair, parallel=2, ctx_size=64, threads=1)
    good = Request("the cat", settings("p-punc", max_tokens=10))
    huge = Request("the cat " * 80, settings("p-punc", max_tokens=10))
    many = Request("the cat", settings("p-punc", max_tokens=10), n=3)
    collectors = [Collector() for _ in range(3)]
    for request, collector in zip((huge, good, many), collectors):
        scheduler.submit(request, collector)
    scheduler.run_until_idle()
    bad, ok, too_many = collectors
    assert len(bad.events) == 1 and isinstance(bad.events[0], RequestFailed)
    assert "but the context is 64" in bad.events[0].message
    assert len(too_many.events) == 1 and "3 samples do not fit in 2" in too_many.events[0].message
    small = Engine(pair, ctx_size=64, threads=1)
    assert [key(s) for s in ok.samples()] == [key(s) for s in alone(small, good)]
    small.close()
    scheduler.close()


def test_serve_forever_on_a_thread(pair, engine) -> None:
    import threading

    scheduler = Scheduler(pair, parallel=4, ctx_size=CTX, threads=1)
    stop = threading.Event()
    thread = threading.Thread(target=scheduler.serve_forever, args=(stop,), daemon=True)
    thread.start()
    request = Request("the cat", settings("p-punc", max_tokens=15), n=2)
    collector = Collector()
    handle = scheduler.submit(request, collector)
    assert handle.wait(60)
    stop.set()
    scheduler.wake()
    thread.join(10)
    assert not thread.is_alive()
    assert [key(s) for s in collector.samples()] == [key(s) for s in alone(engine, request)]
    scheduler.close()


def test_a_shared_prompt_prefix_is_decoded_once(pair, engine) -> None:
    system = Message("system", "Tell me a story about the cat and the dog and the moon.")
    first = Request([system, Message("user", "the cat")], settings("p-punc", max_tokens=30))
    second = Request([system, Message("user", "a story")], settings("random", 0.5, HOT, max_tokens=20, seed=2))
    scheduler = Scheduler(pair, parallel=4, ctx_size=CTX, threads=1)
    a, b = Collector(), Collector()
    scheduler.submit(first, a)
    scheduler.step()
    before = scheduler.contexts[ALIGNED].n_evaluated
    scheduler.submit(second, b)
    scheduler.step()
    prompt = pair.aligned_prompt(second.messages())
    shared = next(i for i, (x, y) in enumerate(zip(prompt, pair.aligned_prompt(first.messages()))) if x != y)
    assert shared > 10
    # This step decoded only the second prompt's own tokens beside the first request's new token, in one call.
    assert scheduler.contexts[ALIGNED].n_evaluated - before == len(prompt) - shared + 1
    assert scheduler.prefill_stats()["in_step"] == 1
    scheduler.run_until_idle()
    assert [key(s) for s in a.samples()] == [key(s) for s in alone(engine, first)]
    assert [key(s) for s in b.samples()] == [key(s) for s in alone(engine, second)]
    assert_cells_free(scheduler)
    scheduler.close()
