"""Both decodes of a step at once (engine/concurrent.py) on the tiny pair through real llama.cpp."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading

import pytest

from baco_local import Engine, GenerationSettings, Message, ModelPair, PairSpec, get_router
from baco_local.engine.concurrent import ChoiceCache, Concurrency, PairDecoder, ThreadPlan
from baco_local.engine.loop import DraftPolicy
from baco_local.engine.routers import ALIGNED, BASE
from baco_local.engine.sampling import SamplingParams
from baco_local.errors import DecodeError, UsageError

PROMPT = [Message("user", "Tell me a story about the cat")]
STEP_LOOP = DraftPolicy(enabled=False)


@pytest.fixture(scope="module")
def pair(tiny_pair):
    loaded = ModelPair(PairSpec(*tiny_pair))
    yield loaded
    loaded.close()


def _engine(pair, mode, **kwargs):
    return Engine(pair, ctx_size=256, threads=2, concurrency=mode, **kwargs)


def _run(engine, router, n, sampling, draft=STEP_LOOP, seed=3):
    settings = GenerationSettings(get_router(router), 0.3, sampling, 24, (), seed, draft)
    generation = engine.generate(PROMPT, n, settings)
    list(generation)
    return [(s.tokens, s.sources, s.finish_reason) for s in generation.samples]


@pytest.mark.parametrize("router", ["p-punc", "h", "fc", "aligned", "base", "random"])
def test_concurrent_and_sequential_give_the_same_tokens(pair, router):
    sequential, concurrent = _engine(pair, "off"), _engine(pair, "on")
    try:
        for sampling in (SamplingParams(temperature=0), SamplingParams(temperature=1.0)):
            for n in (1, 3):
                for draft in (STEP_LOOP, DraftPolicy()):
                    want = _run(sequential, router, n, sampling, draft)
                    assert _run(concurrent, router, n, sampling, draft) == want, (sampling, n, draft)
        assert concurrent.concurrency.describe()["chosen"]["multi"]["mode"] == "on"
        # Both contexts stay in sync: the next prompt reuses what sequence 0 holds in each.
        assert concurrent.held == sequential.held
        assert _run(concurrent, router, 2, SamplingParams(temperature=0)) == \
            _run(sequential, router, 2, SamplingParams(temperature=0))
    finally:
        sequential.close()
        concurrent.close()


def test_both_decodes_really_run_on_two_threads(pair):
    engine = _engine(pair, "on")
    seen: set[str] = set()
    try:
        _run(engine, "p-punc", 1, SamplingParams(temperature=0))
        contexts = engine.contexts
        originals = {side: contexts[side].decode for side in (BASE, ALIGNED)}
        for side in (BASE, ALIGNED):
            def spy(*args, _side=side, **kwargs):
                seen.add(f"{_side}:{threading.current_thread().name.startswith('baco-decode')}")
                return originals[_side](*args, **kwargs)
            contexts[side].decode = spy
        _run(engine, "p-punc", 1, SamplingParams(temperature=0))
    finally:
        engine.close()
    assert f"{BASE}:True" in seen and f"{ALIGNED}:False" in seen  # base on the worker, aligned here


def test_an_error_in_one_decode_is_raised_once_after_both_finish():
    decoder = PairDecoder()
    decoder.concurrent = True
    finished = threading.Event()

    def slow_ok():
        threading.Event().wait(0.05)
        finished.set()

    def failing():
        raise DecodeError("aligned broke")

    with pytest.raises(DecodeError, match="aligned broke"):
        decoder.run(slow_ok, failing)
    assert finished.is_set()  # the other decode was joined before the error surfaced
    with pytest.raises(DecodeError, match="base broke"):
        decoder.run(lambda: (_ for _ in ()).throw(DecodeError("base broke")), lambda: None)
    decoder.close()


def test_a_real_llama_cpp_failure_in_a_concurrent_step(pair):
    engine = _engine(pair, "on")
    try:
        _run(engine, "p-punc", 1, SamplingParams(temperature=0))
        held = list(engine.held[ALIGNED])
        base_ctx, aligned_ctx = engine.contexts[BASE], engine.contexts[ALIGNED]
        # A position far past what sequence 0 holds: llama.cpp itself refuses the batch.
        with pytest.raises(DecodeError, match="aligned|tiny|decode failed"):
            engine.concurrency.decoder.run(lambda: None, lambda: aligned_ctx.decode([1], [200], [0], [True]))
        assert engine.held[ALIGNED] == held
        # The engine still works afterwards, and gives the sequential mode's tokens.
        want = _run(_engine(pair, "off"), "p-punc", 1, SamplingParams(temperature=0))
        assert _run(engine, "p-punc", 1, SamplingParams(temperature=0)) == want
        assert base_ctx.ctx
    finally:
        engine.close()


def test_auto_measures_once_then_uses_the_cached_choice(pair, tmp_path):
    cache = ChoiceCache(tmp_path / "concurrency.json")
    first = _engine(pair, "auto", choice_cache=cache)
    try:
        tokens = _run(first, "p-punc", 1, SamplingParams(temperature=0))
        chosen = first.concurrency.describe()["chosen"]["single"]
        assert chosen["source"] == "measured"
        assert chosen["sequential_ms"] > 0 and chosen["concurrent_ms"] > 0
        assert chosen["mode"] == ("on" if chosen["concurrent_ms"] < chosen["sequential_ms"] else "off")
        _run(first, "p-punc", 3, SamplingParams(temperature=0))  # another batch class: measured too
        assert first.concurrency.describe()["chosen"]["multi"]["source"] == "measured"
    finally:
        first.close()
    stored = json.loads(cache.path.read_text())
    assert sorted(k.split("|")[-2] for k in stored) == ["multi", "single"]
    second = _engine(pair, "auto", choice_cache=cache)
    try:
        assert _run(second, "p-punc", 1, SamplingParams(temperature=0)) == tokens  # the mode never changes tokens
        again = second.concurrency.describe()["chosen"]["single"]
        assert again["source"] == "cached" and again["mode"] == chosen["mode"]
    finally:
        second.close()
    # Other thread counts are another measurement.
    other = Engine(pair, ctx_size=256, threads=1, concurrency="auto", choice_cache=cache)
    try:
        _run(other, "p-punc", 1, SamplingParams(temperature=0))
        assert other.concurrency.describe()["chosen"]["single"]["source"] == "measured"
    finally:
        other.close()
    cache.path.write_text("not json")
    assert cache.get(next(iter(stored))) is None  # a damaged cache is measured again, not an error


def test_thread_plans_and_splits():
    assert ThreadPlan.from_options(4) == ThreadPlan(sequential=(4, 4), concurrent=(2, 2))
    assert ThreadPlan.from_options(3) == ThreadPlan(sequential=(3, 3), concurrent=(1, 2))
    assert ThreadPlan.from_options(1) == ThreadPlan(sequential=(1, 1), concurrent=(1, 1))
    assert ThreadPlan.from_options(4, 3, 1) == ThreadPlan(sequential=(3, 1), concurrent=(3, 1))
    with pytest.raises(UsageError):
        ThreadPlan.from_options(2, 0)
    with pytest.raises(UsageError):
        Concurrency("sometimes", ThreadPlan.from_options(2), None)


def _gen(tiny_pair, tmp_path, out_name, *extra):
    base, aligned = tiny_pair
    out = tmp_path / out_name
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, "-m", "baco_local", "gen", "-p", "Tell me a story", "--base", str(base),
                             "--aligned", str(aligned), "-n", "2", "--no-draft", "--max-tokens", "12", "--temp", "0.8",
                             "-o", str(out), *extra], capture_output=True, text=True, timeout=120, env=env)
    return result, out


def test_gen_records_the_mode_and_gives_the_same_tokens_in_every_mode(tiny_pair, tmp_path):
    records = {}
    for mode in ("off", "on", "auto"):
        result, out = _gen(tiny_pair, tmp_path, f"{mode}.jsonl", "--concurrency", mode, "--threads", "2")
        assert result.returncode == 0, result.stderr
        records[mode] = json.loads(out.read_text().splitlines()[0])
    tokens = {mode: [s["tokens"] for s in r["samples"]] for mode, r in records.items()}
    assert tokens["on"] == tokens["off"] == tokens["auto"]
    ran = records["on"]["settings"]["concurrency"]
    assert ran["asked"] == "on" and ran["chosen"] == {"multi": "on"}  # no timings: shards stay byte-identical
    assert ran["threads"] == {"sequential": [2, 2], "concurrent": [1, 1]}
    assert records["auto"]["settings"]["concurrency"]["chosen"]["multi"] in ("on", "off")
    assert len(json.loads((tmp_path / "cache" / "baco" / "concurrency.json").read_text())) == 1
    # The mode never changes tokens, so a rerun in another mode resumes the same file.
    result, _ = _gen(tiny_pair, tmp_path, "off.jsonl", "--concurrency", "on", "--threads", "2")
    assert result.returncode == 0, result.stderr
    result, out = _gen(tiny_pair, tmp_path, "pinned.jsonl", "--concurrency", "auto", "--threads", "2",
                       "--threads-base", "1", "--threads-aligned", "2")
    assert result.returncode == 0, result.stderr
    pinned = json.loads(out.read_text())["settings"]["concurrency"]
    assert pinned["threads"] == {"sequential": [1, 2], "concurrent": [1, 2]}
    assert pinned["chosen"]["multi"] in ("on", "off")
    assert len(json.loads((tmp_path / "cache" / "baco" / "concurrency.json").read_text())) == 2  # measured again


@pytest.mark.parametrize("args, fragment", [(["--concurrency", "sometimes"], "--concurrency must be one of"),
                                            (["--threads-base", "0"], "--threads-base must be at least 1")])
def test_bad_concurrency_options_are_one_line(tiny_pair, tmp_path, args, fragment):
    result, _ = _gen(tiny_pair, tmp_path, "x.jsonl", *args)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:") and fragment in lines[0], result.stderr


# --- the scheduler (gen --parallel, baco serve) -------------------------------------------------

def _scheduled(pair, mode, requests, **kwargs):
    """Every request through one Scheduler in ``mode``; each request's (tokens, sources, finish) per sample."""
    from baco_local.engine.scheduler import Scheduler, SampleFinished

    scheduler = Scheduler(pair, parallel=8, ctx_size=256, threads=2, concurrency=mode, **kwargs)
    finished: list[list] = [[] for _ in requests]
    try:
        for request, out in zip(requests, finished):
            scheduler.submit(request, lambda e, out=out: out.append(e) if isinstance(e, SampleFinished) else None)
        scheduler.run_until_idle()
        stats = scheduler.concurrency_stats()
    finally:
        scheduler.close()
    return [[(f.sample.tokens, f.sample.sources, f.finish_reason) for f in sorted(out, key=lambda f: f.sample.index)]
            for out in finished], stats


@pytest.mark.parametrize("router", ["p-punc", "h", "fc", "aligned", "base", "random"])
def test_the_scheduler_gives_the_same_tokens_in_both_modes(pair, router):
    from baco_local.engine.scheduler import Request

    requests = []
    for seed, sampling in enumerate((SamplingParams(temperature=0), SamplingParams(temperature=1.0))):
        settings = GenerationSettings(get_router(router), 0.3, sampling, 20, (), seed, STEP_LOOP)
        requests += [Request(PROMPT, settings), Request("the cat and the dog", settings, n=3)]
    off, off_stats = _scheduled(pair, "off", requests)
    on, on_stats = _scheduled(pair, "on", requests)
    assert on == off
    assert all(len(samples) == r.n and all(s[0] for s in samples) for samples, r in zip(on, requests))
    assert off_stats["chosen"]["multi"]["mode"] == "off" and on_stats["chosen"]["multi"]["mode"] == "on"
    assert on_stats["threads"] == {"sequential": [2, 2], "concurrent": [1, 1]}
    assert "concurrency on" in on_stats["summary"]


def test_a_lone_scheduled_request_matches_the_engine_in_both_modes(pair):
    from baco_local.engine.scheduler import Request

    settings = GenerationSettings(get_router("p-punc"), 0.3, SamplingParams(temperature=1.0), 24, (), 3, STEP_LOOP)
    want = _run(_engine(pair, "off"), "p-punc", 1, SamplingParams(temperature=1.0))
    for mode in ("on", "off"):
        got, stats = _scheduled(pair, mode, [Request(PROMPT, settings)])
        assert got == [want], mode
        assert stats["chosen"] == {"single": {"mode": mode, "source": "asked"}}


def test_the_scheduler_measures_under_auto_and_remembers(pair, tmp_path):
    from baco_local.engine.scheduler import Request

    cache = ChoiceCache(tmp_path / "concurrency.json")
    settings = GenerationSettings(get_router("p-punc"), 0.3, SamplingParams(temperature=0), 16, (), 0, STEP_LOOP)
    requests = [Request(PROMPT, settings, n=2), Request("the cat", settings)]
    first, stats = _scheduled(pair, "auto", requests, choice_cache=cache)
    assert stats["chosen"]["multi"]["source"] == "measured" and stats["chosen"]["multi"]["calibration_ms"] > 0
    assert "at once vs" in stats["summary"]
    again, stats = _scheduled(pair, "auto", requests, choice_cache=cache)
    assert again == first == _scheduled(pair, "off", requests)[0]
    assert stats["chosen"]["multi"]["source"] == "cached"


def test_the_scheduler_settles_the_decode_plan_once_per_batch_class(pair, tmp_path, monkeypatch):
    """Under auto the mode is measured once per batch class and not re-prepared on every step: a
    lone request (single), then two at once (multi), then one again (single, re-applied, not
    measured); the threads change only when the class changes or a prompt was prefilled."""
    from baco_local.engine.scheduler import Request, SampleFinished, Scheduler

    settings = GenerationSettings(get_router("p-punc"), 0.3, SamplingParams(temperature=1.0), 12, (), 1, STEP_LOOP)
    calls = {"prepare": 0, "restore": 0}
    for name in calls:
        real = getattr(Concurrency, name)

        def counted(self, *args, _real=real, _name=name, **kwargs):
            calls[_name] += 1
            return _real(self, *args, **kwargs)
        monkeypatch.setattr(Concurrency, name, counted)
    scheduler = Scheduler(pair, parallel=4, ctx_size=256, threads=2, concurrency="auto",
                          choice_cache=ChoiceCache(tmp_path / "concurrency.json"))
    out: list = []
    try:
        for batch in ([Request(PROMPT, settings)], [Request(PROMPT, settings, n=2), Request("the cat", settings)],
                      [Request("the dog", settings)]):
            for request in batch:
                scheduler.submit(request, lambda e: out.append(e) if isinstance(e, SampleFinished) else None)
            scheduler.run_until_idle()
        chosen = scheduler.concurrency.describe()["chosen"]
    finally:
        scheduler.close()
    assert len(out) == 5 and all(len(f.sample.tokens) == 12 for f in out)  # many steps ran
    assert calls["prepare"] == 2  # one per class: single, multi
    assert 1 <= calls["restore"] <= 4  # only after a prefill or a class change, never per step
    assert {klass: entry["source"] for klass, entry in chosen.items()} == {"single": "measured", "multi": "measured"}


def test_a_failed_decode_in_a_concurrent_scheduler_step_ends_that_batch_only(pair, monkeypatch):
    """One context's decode fails (llama.cpp itself refuses a position past the sequence): the
    batch's samples end with one error each, the other decode is joined, the next request runs."""
    from baco_local.engine.scheduler import Request, SampleFinished, Scheduler

    settings = GenerationSettings(get_router("p-punc"), 0.3, SamplingParams(temperature=0), 16, (), 0, STEP_LOOP)
    scheduler = Scheduler(pair, parallel=4, ctx_size=256, threads=2, concurrency="on")
    events: list = []
    try:
        aligned = scheduler.contexts[ALIGNED]
        real = aligned.decode
        calls = {"n": 0}

        def broken(tokens, positions, seqs, want):
            calls["n"] += 1
            if calls["n"] == 4:  # a step's batch, not the prefill
                positions = [p + 100 for p in positions]
            return real(tokens, positions, seqs, want)

        monkeypatch.setattr(aligned, "decode", broken)
        scheduler.submit(Request(PROMPT, settings, n=2), events.append)
        scheduler.run_until_idle()
        errors = [e for e in events if isinstance(e, SampleFinished)]
        assert [e.finish_reason for e in errors] == ["error", "error"]
        assert all("decode failed" in e.error for e in errors)
        monkeypatch.setattr(aligned, "decode", real)
        later: list = []
        scheduler.submit(Request(PROMPT, settings, n=2), later.append)
        scheduler.run_until_idle()
        got = [(e.sample.tokens, e.sample.sources, e.finish_reason) for e in later if isinstance(e, SampleFinished)]
    finally:
        scheduler.close()
    assert got == _scheduled(pair, "off", [Request(PROMPT, settings, n=2)])[0][0]


def test_gen_parallel_records_the_mode_and_gives_the_same_tokens(tiny_pair, tmp_path):
    records = {}
    for mode in ("off", "on", "auto"):
        result, out = _gen(tiny_pair, tmp_path, f"p-{mode}.jsonl", "--parallel", "3", "--concurrency", mode,
                           "--threads", "2")
        assert result.returncode == 0, result.stderr
        records[mode] = json.loads(out.read_text().splitlines()[0])
    assert records["on"]["samples"] == records["off"]["samples"] == records["auto"]["samples"]
    for mode in ("on", "off"):  # per batch class: "multi" while both samples run, maybe "single" after
        chosen = records[mode]["settings"]["concurrency"]["chosen"]
        assert chosen["multi"] == mode and set(chosen.values()) == {mode}
    assert records["auto"]["settings"]["concurrency"]["asked"] == "auto"


def test_threads_a_comma_b_sets_each_models_threads(tiny_pair, tmp_path):
    result, out = _gen(tiny_pair, tmp_path, "ab.jsonl", "--concurrency", "on", "-t", "2,1")
    assert result.returncode == 0, result.stderr
    ran = json.loads(out.read_text())["settings"]["concurrency"]
    assert ran["threads"] == {"sequential": [2, 1], "concurrent": [2, 1]}
    result, out = _gen(tiny_pair, tmp_path, "ab.jsonl", "--concurrency", "off", "-t", "1,2")
    assert result.returncode == 0, result.stderr  # another split resumes the same run: tokens do not change


@pytest.mark.parametrize("value, extra, fragment", [
    ("2,x", [], "takes N or A,B"), ("1,2,3", [], "takes N or A,B"), ("0", [], "at least 1 thread"),
    ("2,0", [], "at least 1 thread"), ("2,2", ["--threads-base", "1"], "not both")])
def test_bad_threads_are_one_line(tiny_pair, tmp_path, value, extra, fragment):
    result, _ = _gen(tiny_pair, tmp_path, "x.jsonl", "-t", value, *extra)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:") and fragment in lines[0], result.stderr


@pytest.mark.parametrize("kind, message", [("raise", "injected failure in"), ("position", "decode failed")])
@pytest.mark.parametrize("parallel", [["--parallel", "1"], ["--parallel", "2"]])  # the engine, the scheduler
def test_a_failing_decode_in_a_concurrent_step_is_one_error_and_a_clean_exit(tiny_pair, tmp_path, kind, message,
                                                                            parallel):
    """The base model's decode (on the worker thread) fails mid-run: one Error: line, exit code 2,
    no traceback, no hang; the prompt finished before it keeps its record."""
    base, aligned = tiny_pair
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Tell me a story\nthe cat and the dog\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    runner = os.path.join(os.path.dirname(__file__), "decode_failure.py")
    # Call 1 is a prompt's prefill; -n 2 with 12 tokens: the second prompt's steps come after call 14.
    result = subprocess.run([sys.executable, runner, str(base), kind, "20", "gen", "-f", str(prompts), "--base",
                             str(base), "--aligned", str(aligned), "-n", "2", "--max-tokens", "12", "--temp", "0",
                             "--concurrency", "on", "-t", "2", "-o", str(out), *parallel],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert result.returncode == 2, result.stderr  # baco's exit code for errors a user can act on
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert errors[0] == result.stderr.strip().splitlines()[-1]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in records] == [1]


# --- chat: Ctrl-C with both decodes in flight ----------------------------------------------------

def test_ctrl_c_with_both_decodes_in_flight_leaves_both_caches_consistent(pair):
    """SIGINT arrives while the base decode runs on the worker thread and the aligned one here: the
    interrupt surfaces only after both have finished, the reply keeps what was written, and the next
    turn gives exactly the tokens a fresh engine gives for the same conversation."""
    import signal
    import time

    from baco_local.chat import ChatSession

    def say(session, text):
        reply = session.ask(text)
        for _ in reply:
            pass
        return reply.finish()

    settings = GenerationSettings(get_router("p-punc"), 0.3, SamplingParams(temperature=0), 40, (), 0, STEP_LOOP)
    engine = _engine(pair, "on")
    fresh = _engine(pair, "off")
    try:
        session = ChatSession(engine, settings)
        say(session, "Tell me a story")
        pending = session.ask("And then what happened?")
        base_context = engine.contexts[BASE]
        real, calls, finished = base_context.decode, {"n": 0}, []

        def interrupting(*args):
            calls["n"] += 1
            if calls["n"] == 6:  # a step's decode, on the worker thread
                assert threading.current_thread().name.startswith("baco-decode")
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.2)  # still in flight when the main thread sees the signal
            real(*args)
            finished.append(calls["n"])

        base_context.decode = interrupting
        surfaced = None
        try:
            for _ in pending:
                pass
        except KeyboardInterrupt:
            surfaced = list(finished)
        assert surfaced and surfaced[-1] == 6  # the worker's decode had finished when the interrupt surfaced
        del base_context.decode
        exchange = pending.finish()
        assert exchange.reply.finish_reason == "interrupted" and 0 < len(exchange.reply.tokens) < 40
        for side in (BASE, ALIGNED):  # what sequence 0 holds is never claimed beyond the cache
            import llama_cpp
            cells = llama_cpp.llama_memory_seq_pos_max(engine.contexts[side].memory, 0) + 1
            assert cells - len(engine.held[side]) in (0, 1), side
        before = {side: engine.contexts[side].n_evaluated for side in (BASE, ALIGNED)}
        reference = ChatSession(fresh, settings)
        reference.exchanges = list(session.exchanges)
        got, want = say(session, "Go on"), say(reference, "Go on")
        assert (got.reply.tokens, got.reply.sources) == (want.reply.tokens, want.reply.sources)
        new = {side: engine.contexts[side].n_evaluated - before[side] for side in (BASE, ALIGNED)}
        assert all(new[side] < fresh.contexts[side].n_evaluated for side in new)  # the cache was reused
    finally:
        engine.close()
        fresh.close()


def test_chat_ctrl_c_mid_reply_in_concurrent_mode_then_the_chat_goes_on(tiny_pair, tmp_path):
    """A real terminal: Ctrl-C stops a reply whose steps decode both models at once; the next reply
    is the one a new chat gives after loading the same conversation (a KeyboardInterrupt inside
    a step's decodes is the test above)."""
    pexpect = pytest.importorskip("pexpect")
    base, aligned = tiny_pair
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state"), "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "PYTHONIOENCODING": "utf-8"}
    command = ["-m", "baco_local", "chat", "--base", str(base), "--aligned", str(aligned), "--plain", "--temp", "0",
               "--no-draft", "--concurrency", "on", "-t", "2", "--max-tokens", "1500", "-c", "4096"]

    def start():
        child = pexpect.spawn(sys.executable, command, env=env, encoding="utf-8", timeout=90, cwd=str(tmp_path),
                              dimensions=(50, 200))
        child.expect_exact(">>> ")
        return child

    def reply(child, message):
        child.send(message + "\r")
        child.expect_exact(">>> ")
        assert "Traceback" not in child.before, child.before
        return child.before

    first = start()
    first.send("Tell me a long story\r")
    first.expect_exact("Tell me a long story\r\n")  # the terminal's echo
    first.expect(r"\w+ \w+ \w+")  # the reply has started
    first.sendintr()
    first.expect_exact(">>> ")
    assert "stopped" in first.before, first.before
    assert "Traceback" not in first.before, first.before
    reply(first, "/save chat.json")
    saved = json.loads((tmp_path / "chat.json").read_text(encoding="utf-8"))
    assert saved["exchanges"][0]["reply"]["finish_reason"] == "interrupted"
    got = reply(first, "Go on")
    first.send("/quit\r")
    first.expect(pexpect.EOF)
    second = start()
    assert "loaded 1 exchange" in reply(second, "/load chat.json")
    want = reply(second, "Go on")
    second.send("/quit\r")
    second.expect(pexpect.EOF)
    text = [re.sub(r"[\d.]+ tok/s", "", output) for output in (got, want)]  # timings differ
    assert text[0] == text[1] and len(text[0]) > 100, text
