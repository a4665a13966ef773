"""Where a new prompt's prefill should go in continuous batching: its own decode, or the running step's.

    python bench/prefill_mix.py                     # Gemma 3 270M base (the aligned side's cost is the same)
    python bench/prefill_mix.py --model M.gguf --running 7 --prompt-tokens 16 48 --repeats 15

When the Scheduler admits a request while others are generating, the new prompt's tokens can be
prefilled between steps (one ``llama_decode`` for the prompt, then the running sequences' step) or
share the step's ``llama_decode`` with the running sequences' tokens. Both give the same logits rows
(one per running sequence plus the prompt's last token); this script times the two on one model,
median of ``--repeats`` with the cache rolled back after every try. The Scheduler prefills inside
the step, the faster on a loaded 2-core machine (77 vs 110 ms at 16 prompt tokens, 106 vs 137 ms at
48: README, "Many prompts at once"); rerun this to check that choice on another machine, and
``bench/parallel.py`` for what it gives end to end (it prints the Scheduler's prefill counts).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from standin import gemma_base_path  # noqa: E402

from baco_local.engine.backend import ContextShape, LoadedModel, SequenceContext  # noqa: E402

SEED_TEXT = "The quick brown fox jumps over the lazy dog, and then it runs far away into the woods."


def running_batch(running: int, token: int, position: int) -> tuple[list[int], list[int], list[int], list[bool]]:
    """One new token for each of ``running`` sequences (1..running), each wanting logits."""
    seqs = list(range(1, running + 1))
    return [token] * running, [position] * running, seqs, [True] * running


def prompt_batch(prompt: list[int], seq: int) -> tuple[list[int], list[int], list[int], list[bool]]:
    """A new sequence's whole prompt, logits for its last token only."""
    return prompt, list(range(len(prompt))), [seq] * len(prompt), [False] * (len(prompt) - 1) + [True]


def time_modes(context: SequenceContext, running: int, prompt: list[int], token: int, position: int,
               repeats: int) -> tuple[float, float]:
    """Median seconds of (prefill between steps, prefill inside the step)."""
    new_seq = running + 1
    step = running_batch(running, token, position)
    fill = prompt_batch(prompt, new_seq)
    separate, shared = [], []

    def roll_back() -> None:
        for seq in range(1, running + 1):
            context.truncate(seq, position)
        context.truncate(new_seq, 0)

    for _ in range(repeats):
        started = time.perf_counter()
        context.decode(*fill)
        context.logits(0)[0]
        context.decode(*step)
        context.logits(running - 1)[0]
        separate.append(time.perf_counter() - started)
        roll_back()
        started = time.perf_counter()
        context.decode(*(a + b for a, b in zip(step, fill)))
        context.logits(running)[0]
        shared.append(time.perf_counter() - started)
        roll_back()
    return statistics.median(separate), statistics.median(shared)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a GGUF file (default: Gemma 3 270M base)")
    parser.add_argument("--running", type=int, default=7, help="sequences already generating")
    parser.add_argument("--prompt-tokens", type=int, nargs="+", default=[16, 48, 128])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=min(8, os.cpu_count() or 1))
    args = parser.parse_args()
    model = LoadedModel(args.model or gemma_base_path())
    context = SequenceContext(model, ContextShape(n_cells=4096, n_seq=args.running + 2, n_batch=512,
                                                  n_threads=args.threads))
    seed = model.tokenize(SEED_TEXT, add_bos=True, special=False)
    context.prefill(seed)
    for seq in range(1, args.running + 1):
        context.copy_sequence(0, seq)
    token, position = seed[-1], len(seed)
    filler = model.tokenize(SEED_TEXT * 20, add_bos=True, special=False)
    print(f"{args.running} running sequences, {args.threads} threads, median of {args.repeats}")
    print(f"{'prompt tokens':>14s} {'between steps':>14s} {'in the step':>12s} {'faster':>14s}")
    for length in args.prompt_tokens:
        separate, shared = time_modes(context, args.running, filler[:length], token, position, args.repeats)
        faster = "between steps" if separate <= shared else "in the step"
        print(f"{length:14d} {1000 * separate:11.1f} ms {1000 * shared:9.1f} ms {faster:>14s}")
    context.close()
    model.close()


if __name__ == "__main__":
    main()
