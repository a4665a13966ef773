"""Continuous batching benchmark: many prompts through the Scheduler against one prompt at a time.

    python bench/parallel.py                        # Gemma 3 270M base + the stand-in aligned side
    python bench/parallel.py --prompts 16 --samples 4 --parallel 8 --tokens 64
    python bench/parallel.py --base B.gguf --aligned A.gguf

Rows (tokens/s over every prompt's samples, p-punc γ=0.3, the same sampler and seeds):
llama-cpp-python alone with the aligned model (the anchor); baco one prompt at a time with the
step loop (``--parallel 1 --no-draft``); baco one prompt at a time with its draft policy
(``--parallel 1``: draft-and-verify for ``-n 1``, the step loop over the samples otherwise); the
Scheduler with ``--parallel`` sequences (what ``baco gen`` runs by default for several prompts, at 8). Next to them the
batching limit (eight single-token decodes / one eight-token decode) and the Scheduler's speed-up
over the step loop as a share of that limit (issue 10's target: at least 85%). With ``--samples N``
above 1 the step loop already decodes a prompt's N samples in one batch, so the limit over batches
of N (8/N decodes of N tokens / one 8-token decode) is printed as well: what P = 8 can add.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import llama_cpp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import SAMPLING, Timing, batching_limit, median_timing  # noqa: E402
from standin import bench_pair  # noqa: E402

from baco_local import Engine, GenerationSettings, Message, ModelPair, PairSpec, get_router  # noqa: E402
from baco_local.engine.scheduler import Request, SampleFinished, Scheduler  # noqa: E402
from baco_local.cli.gen_parallel import DEFAULT_PARALLEL  # noqa: E402
from baco_local.engine.settings import DraftPolicy  # noqa: E402

TOPICS = ["a lighthouse keeper", "a city in the year 3000", "a birthday party", "the sea at night",
          "a lost key", "an old map", "a robot gardener", "the first snow"]


def prompts(count: int) -> list[str]:
    """``count`` distinct prompts of varied length."""
    return [f"Write {'a very short' if i % 2 else 'a'} story about {TOPICS[i % len(TOPICS)]} (number {i})."
            for i in range(count)]


def settings_for(seed: int, tokens: int, draft: DraftPolicy) -> GenerationSettings:
    return GenerationSettings(get_router("p-punc"), 0.3, SAMPLING, tokens, (), seed, draft)


def one_at_a_time(engine: Engine, texts: list[str], n: int, tokens: int, draft: DraftPolicy) -> Timing:
    """Every prompt's ``n`` samples with ``Engine.generate``, one prompt after another."""
    timing, started = Timing(), time.perf_counter()
    for seed, text in enumerate(texts):
        generation = engine.generate([Message("user", text)], n, settings_for(seed * n, tokens, draft))
        for _ in generation:
            pass
        timing.tokens += sum(len(s.tokens) for s in generation.samples)
    timing.seconds = time.perf_counter() - started
    return timing


def scheduled(scheduler: Scheduler, texts: list[str], n: int, tokens: int) -> Timing:
    """Every prompt submitted at once to the Scheduler."""
    timing, started = Timing(), time.perf_counter()

    def count(event: object) -> None:
        if isinstance(event, SampleFinished):
            timing.tokens += len(event.sample.tokens)

    for seed, text in enumerate(texts):
        scheduler.submit(Request(text, settings_for(seed * n, tokens, DraftPolicy(enabled=False)), n), count)
    scheduler.run_until_idle()
    timing.seconds = time.perf_counter() - started
    return timing


def anchor(llm: llama_cpp.Llama, texts: list[str], n: int, tokens: int) -> Timing:
    """llama-cpp-python's chat completion with the aligned model alone, one sample at a time."""
    timing, started = Timing(), time.perf_counter()
    for index in range(len(texts) * n):
        result = llm.create_chat_completion(
            [{"role": "user", "content": texts[index // n]}], max_tokens=tokens, temperature=SAMPLING.temperature,
            top_k=SAMPLING.top_k, top_p=SAMPLING.top_p, min_p=SAMPLING.min_p, seed=index)
        timing.tokens += result["usage"]["completion_tokens"]
    timing.seconds = time.perf_counter() - started
    return timing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path)
    parser.add_argument("--aligned", type=Path)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--samples", type=int, default=1, help="samples per prompt (-n)")
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=128, help="max tokens per sample")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions (medians reported)")
    parser.add_argument("--threads", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    base, aligned = bench_pair(parser, args)
    texts, n, t = prompts(args.prompts), args.samples, args.threads
    pair = ModelPair(PairSpec(base, aligned))
    ctx = 1024
    engine = Engine(pair, ctx_size=ctx, threads=t)
    scheduler = Scheduler(pair, parallel=args.parallel, ctx_size=ctx,
                          n_cells=ctx + (args.parallel - 1) * args.tokens, threads=t)
    llm = llama_cpp.Llama(str(aligned), n_ctx=ctx, n_threads=t, n_threads_batch=t, verbose=False)
    anchor_row, step_row = "llama-cpp-python aligned alone", "baco step loop, --parallel 1 --no-draft"
    drafted = "draft-and-verify" if DraftPolicy().applies_to(n) else "step loop over the samples"
    draft_row = f"baco {drafted}, --parallel 1"
    default_p = max(n, min(DEFAULT_PARALLEL, n * args.prompts))  # what baco gen picks (before the memory cap)
    scheduler_row = f"baco scheduler, --parallel {args.parallel}" + (
        " (default)" if args.parallel == default_p > 1 else "")
    rows: dict[str, list[Timing]] = {anchor_row: [], step_row: [], draft_row: [], scheduler_row: []}
    for _ in range(args.rounds):
        timings = (anchor(llm, texts, n, args.tokens),
                   one_at_a_time(engine, texts, n, args.tokens, DraftPolicy(enabled=False)),
                   one_at_a_time(engine, texts, n, args.tokens, DraftPolicy()),
                   scheduled(scheduler, texts, n, args.tokens))
        for row, timing in zip(rows.values(), timings):
            row.append(timing)
    limit = batching_limit(pair, t)
    medians = {name: median_timing(timings) for name, timings in rows.items()}
    anchor_rate, step_rate = medians[anchor_row].rate, medians[step_row].rate
    print(f"{args.prompts} prompts x {n} samples, {args.tokens} tokens max, {t} threads, {args.rounds} rounds")
    for name, timing in medians.items():
        print(f"{name:55s} {timing.rate:8.1f} tok/s  {timing.rate / anchor_rate:5.2f}x anchor")
    speedup = medians[scheduler_row].rate / step_rate
    print(f"batching limit (8 single decodes / one 8-token decode): {limit:.2f}x")
    print(f"scheduler over the step loop: {speedup:.2f}x = {100 * speedup / limit:.0f}% of the limit (target 85%)")
    group_limit = batching_limit(pair, t, group=n) if n > 1 and 8 % n == 0 else None
    if group_limit is not None:  # the step loop already decodes the n samples of a prompt in one batch
        print(f"batching limit over the step loop's own {n}-sequence batches (8/{n} decodes of {n} tokens / one "
              f"8-token decode): {group_limit:.2f}x; the scheduler reaches {100 * speedup / group_limit:.0f}% of it")
    prefill = scheduler.prefill_stats()
    print(f"scheduler prefills (all rounds): {prefill['in_step']} decodes beside running sequences, "
          f"{prefill['alone']} alone, {prefill['chunked']} prompts over several steps")
    if args.json:
        args.json.write_text(json.dumps({"rates": {k: v.rate for k, v in medians.items()}, "limit": limit,
                                         "share_of_limit": speedup / limit, "group_limit": group_limit,
                                         "share_of_group_limit": speedup / group_limit if group_limit else None,
                                         "prefill": prefill}, indent=1))
    scheduler.close()
    engine.close()
    llm.close()
    pair.close()


if __name__ == "__main__":
    main()
