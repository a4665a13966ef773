"""Prefill inside the step on the tiny pair with real llama.cpp: a new prompt shares the running
sequences' ``llama_decode`` call, a long one is cut over ``n_batch``, and each request still gives
the tokens it gives alone."""

from __future__ import annotations

import pytest

from baco_local import ALIGNED, BASE
from baco_local.engine.prefill import Fill, plan_chunks
from baco_local.engine.scheduler import Request, RequestFailed, SampleFinished, Scheduler
from baco_local.errors import DecodeError

from test_scheduler import CTX, HOT, Collector, alone, assert_cells_free, engine, key, pair, settings  # noqa: F401

LONG = "Tell me a long story about the cat and the dog, the moon, the sea and a story about the cat."


class BatchLog:
    """Every batch one context decodes: (tokens, rows wanting logits, the sequences in it)."""

    def __init__(self, context, monkeypatch) -> None:
        self.batches: list[tuple[int, int, set[int]]] = []
        real = context.decode

        def spy(tokens, positions, seqs, want):
            self.batches.append((len(tokens), sum(want), set(seqs)))
            return real(tokens, positions, seqs, want)

        monkeypatch.setattr(context, "decode", spy)


def test_a_prompt_admitted_mid_generation_shares_the_step_decode(pair, engine, monkeypatch) -> None:
    scheduler = Scheduler(pair, parallel=4, ctx_size=CTX, threads=1)
    logs = {side: BatchLog(scheduler.contexts[side], monkeypatch) for side in (BASE, ALIGNED)}
    first = Request("Tell me a story about the cat", settings("p-punc", max_tokens=40), n=2)
    second = Request("the cat", settings("random", 0.5, HOT, max_tokens=20, seed=3))
    a, b = Collector(), Collector()
    scheduler.submit(first, a)
    for _ in range(5):
        scheduler.step()
    assert scheduler.prefill_stats() == {"in_step": 0, "alone": 1, "chunked": 0, "tokens": len(pair.base_prompt(first.messages()))}
    steps_before = len(logs[BASE].batches)
    scheduler.submit(second, b)
    scheduler.step()
    assert len(logs[BASE].batches) == steps_before + 1  # one call per model for the step and the prompt
    for side, log in logs.items():
        tokens = pair.base_prompt if side == BASE else pair.aligned_prompt
        prompt, held = tokens(second.messages()), tokens(first.messages())
        shared = next(i for i, (x, y) in enumerate(zip(prompt, held)) if x != y)  # the chat header, copied
        size, outputs, seqs = log.batches[-1]
        # The running pair's tokens and the prompt's own tokens; logits for the two rows and the prompt's last.
        assert size == 2 + len(prompt) - shared and outputs == 3 and len(seqs) == 3
    assert scheduler.prefill_stats()["in_step"] == 1
    assert b.events  # its first token came from that decode
    scheduler.run_until_idle()
    assert [key(s) for s in a.samples()] == [key(s) for s in alone(engine, first)]
    assert [key(s) for s in b.samples()] == [key(s) for s in alone(engine, second)]
    assert_cells_free(scheduler)
    scheduler.close()


def test_a_long_prompt_is_cut_over_n_batch(pair, engine, monkeypatch) -> None:
    scheduler = Scheduler(pair, parallel=4, ctx_size=CTX, threads=1, n_batch=16)
    logs = {side: BatchLog(scheduler.contexts[side], monkeypatch) for side in (BASE, ALIGNED)}
    running = Request("the cat", settings("p-punc", max_tokens=40), n=2)
    long = Request(LONG, settings("h", 0.5, max_tokens=20), n=2)
    a, b = Collector(), Collector()
    scheduler.submit(running, a)
    scheduler.step()
    scheduler.submit(long, b)
    scheduler.step()
    assert not b.events  # the prompt needs more than one step beside the running pair
    scheduler.run_until_idle()
    assert scheduler.prefill_stats()["chunked"] >= 1 and scheduler.prefill_stats()["in_step"] >= 2
    assert all(size <= 16 for log in logs.values() for size, _, _ in log.batches)
    assert len(pair.aligned_prompt(long.messages())) > 16
    assert [key(s) for s in a.samples()] == [key(s) for s in alone(engine, running)]
    assert [key(s) for s in b.samples()] == [key(s) for s in alone(engine, long)]
    assert_cells_free(scheduler)
    scheduler.close()


def test_cancel_mid_prefill_frees_its_cells(pair, engine) -> None:
    # Room for one request at a time: the waiting one runs only once the cancelled one's cells are free.
    scheduler = Scheduler(pair, parallel=4, ctx_size=CTX, n_cells=CTX, threads=1, n_batch=8)
    long = Request(LONG, settings("aligned", max_tokens=80), n=2)
    waiting = Request("the cat", settings("p-punc", max_tokens=100))
    a, b = Collector(), Collector()
    handle = scheduler.submit(long, a)
    scheduler.submit(waiting, b)
    scheduler.step()
    scheduler.step()
    assert not a.events and not b.events and scheduler.live_sequences == 2  # mid-prefill, the other waits
    handle.cancel()
    scheduler.step()
    assert handle.done and [s.finish_reason for s in a.samples()] == ["cancelled", "cancelled"]
    assert all(not s.tokens for s in a.samples())
    scheduler.run_until_idle()
    assert [key(s) for s in b.samples()] == [key(s) for s in alone(engine, waiting)]
    assert scheduler.free_cells == CTX
    assert_cells_free(scheduler)
    scheduler.close()


def test_a_failed_prefill_decode_fails_that_request_alone(pair, engine, monkeypatch) -> None:
    scheduler = Scheduler(pair, parallel=4, ctx_size=CTX, threads=1)
    good = Request("the cat", settings("p-punc", max_tokens=20))
    a, b = Collector(), Collector()
    scheduler.submit(Request("Tell me a story", settings("p-punc")), a)
    real = scheduler.contexts[ALIGNED].decode

    def broken(tokens, positions, seqs, want):
        monkeypatch.setattr(scheduler.contexts[ALIGNED], "decode", real)
        raise DecodeError("llama.cpp decode failed for aligned.gguf: invalid batch")

    monkeypatch.setattr(scheduler.contexts[ALIGNED], "decode", broken)
    scheduler.step()
    assert len(a.events) == 1 and isinstance(a.events[0], RequestFailed) and "decode failed" in a.events[0].message
    assert scheduler.free_cells == scheduler.n_cells and scheduler.live_sequences == 0
    scheduler.submit(good, b)
    scheduler.run_until_idle()
    assert [key(s) for s in b.samples()] == [key(s) for s in alone(engine, good)]
    assert_cells_free(scheduler)
    scheduler.close()


def _fill(base: int, aligned: int, done: int = 0) -> Fill:
    return Fill(0, {BASE: list(range(base)), ALIGNED: list(range(aligned))}, {BASE: done, ALIGNED: done})


@pytest.mark.parametrize("base, aligned, room, spans, last", [
    (5, 7, 10, (5, 7), True),  # fits whole on both sides
    (5, 12, 10, (4, 10), False),  # the aligned side does not: the base side keeps its last token back
    (12, 12, 12, (12, 12), True),
])
def test_a_prompt_ends_on_both_sides_in_one_decode(base, aligned, room, spans, last) -> None:
    [chunk] = plan_chunks([_fill(base, aligned)], room)
    assert (chunk.spans[BASE][1], chunk.spans[ALIGNED][1]) == spans and chunk.last is last
    tokens, positions, seqs, want = chunk.rows(BASE)
    assert positions == list(range(spans[0])) and want == [False] * (spans[0] - 1) + [last]


def test_later_prompts_get_what_the_first_leaves() -> None:
    first, second = _fill(3, 3), _fill(20, 20)
    chunks = plan_chunks([first, second], 8)
    assert [c.fill for c in chunks] == [first, second]
    assert chunks[0].last and chunks[1].spans[BASE] == (0, 5) and not chunks[1].last
    assert plan_chunks([_fill(20, 20), _fill(3, 3)], 8)[0].spans[BASE] == (0, 8)  # first come first served
