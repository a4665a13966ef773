"""Server benchmark: `baco serve` with K concurrent clients against one request at a time, and
llama-cpp-python's own server (`python -m llama_cpp.server`, aligned model alone) with the same K.

    python bench/serve.py                           # Gemma 3 270M base + the stand-in aligned side
    python bench/serve.py --clients 8 --tokens 128 --rounds 3
    python bench/serve.py --base B.gguf --aligned A.gguf --tokens 8 --rounds 1

Both servers run as real processes on 127.0.0.1; the clients stream chat completions (p-punc
γ=0.3 on baco, llama.cpp's default sampler, seed i for request i) from K threads. Rows: aggregate
completion tokens/s over all K requests, and the time to the first token (median, min-max).
baco one request at a time is the step loop the issue compares against; the batching limit (eight
single-token decodes / one eight-token decode, aligned model) is measured in the same run, and
the speed-up of K concurrent requests over one at a time is reported as a share of it (issue 11's
target: at least 85%). llama-cpp-python's server serves one request at a time: its row is the anchor.
baco counts tokens from the stream's usage chunk; llama-cpp-python sends none, so its content
chunks are counted (one per token).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import SAMPLING, batching_limit  # noqa: E402
from standin import bench_pair  # noqa: E402

from baco_local import ModelPair, PairSpec  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
TOPICS = ["a lighthouse keeper", "a city in the year 3000", "a birthday party", "the sea at night",
          "a lost key", "an old map", "a robot gardener", "the first snow"]


@dataclass
class Run:
    """One batch of requests: tokens, wall time, and each request's time to first token."""

    tokens: int = 0
    seconds: float = 0.0
    first_token: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def start(command: list[str], ready_path: str, port: int, log: Path, timeout: float = 300) -> subprocess.Popen:
    """Start a server process and wait (bounded) until ``ready_path`` answers 200."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log.open("wb"), cwd=ROOT,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{command[:4]} exited with {process.returncode}; see {log}")
        try:
            if httpx.get(f"http://{HOST}:{port}{ready_path}", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit(f"{command[:4]} was not ready after {timeout} s; see {log}")


def prompt(index: int) -> str:
    return f"Write {'a very short' if index % 2 else 'a'} story about {TOPICS[index % len(TOPICS)]}."


def one_request(url: str, index: int, tokens: int, baco: bool) -> tuple[int, float]:
    """Stream one chat completion; (completion tokens, seconds to the first token)."""
    body = {"model": "m", "messages": [{"role": "user", "content": prompt(index)}], "max_tokens": tokens,
            "stream": True, "seed": index, "temperature": SAMPLING.temperature, "top_p": SAMPLING.top_p,
            "top_k": SAMPLING.top_k, "min_p": SAMPLING.min_p}
    if baco:
        body.update(router="p-punc", gamma=0.3, stream_options={"include_usage": True})
        body.pop("model")
    started, first, count, usage = time.perf_counter(), None, 0, None
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=600) as reply:
        reply.raise_for_status()
        for line in reply.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                usage = chunk["usage"]["completion_tokens"]
            for choice in chunk.get("choices", []):
                if choice.get("delta", {}).get("content"):
                    count += 1
                    if first is None:
                        first = time.perf_counter() - started
    return (usage if usage is not None else count), (first if first is not None else time.perf_counter() - started)


def batch(url: str, clients: int, tokens: int, baco: bool, concurrent: bool) -> Run:
    """``clients`` requests, all at once or one after another."""
    run, started = Run(), time.perf_counter()
    if concurrent:
        with ThreadPoolExecutor(clients) as pool:
            results = list(pool.map(lambda i: one_request(url, i, tokens, baco), range(clients)))
    else:
        results = [one_request(url, i, tokens, baco) for i in range(clients)]
    run.seconds = time.perf_counter() - started
    run.tokens = sum(r[0] for r in results)
    run.first_token = [r[1] for r in results]
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path)
    parser.add_argument("--aligned", type=Path)
    parser.add_argument("--clients", type=int, default=8, help="concurrent requests (and baco's --parallel)")
    parser.add_argument("--tokens", type=int, default=128, help="max tokens per request")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions (medians reported)")
    parser.add_argument("--threads", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--ctx", type=int, default=1024)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    try:
        import llama_cpp.server.app  # noqa: F401  (the anchor's server and its own extras)
    except ImportError as error:
        parser.error(f"llama-cpp-python's server cannot start ({error}): pip install -e '.[bench]'")
    base, aligned = bench_pair(parser, args)
    t, logs = str(args.threads), Path(tempfile.mkdtemp(prefix="baco-bench-serve-"))
    baco_port, llama_port = free_port(), free_port()
    sampling = ["--temp", str(SAMPLING.temperature), "--top-k", str(SAMPLING.top_k), "--top-p", str(SAMPLING.top_p),
                "--min-p", str(SAMPLING.min_p)]
    servers = [
        start([sys.executable, "-m", "baco_local", "serve", "--base", str(base), "--aligned", str(aligned),
               "--host", HOST, "--port", str(baco_port), "--parallel", str(args.clients), "-c", str(args.ctx),
               "-t", t, "--max-tokens-limit", str(args.tokens), "--max-tokens", str(args.tokens),
               "--queue", str(args.clients), "-q", *sampling], "/health", baco_port, logs / "baco.log"),
        start([sys.executable, "-m", "llama_cpp.server", "--model", str(aligned), "--host", HOST,
               "--port", str(llama_port), "--n_ctx", str(args.ctx), "--n_threads", t, "--n_threads_batch", t,
               "--verbose", "False", "--interrupt_requests", "False"],  # finish each request, as baco does
              "/v1/models", llama_port, logs / "llama_cpp_server.log"),
    ]
    baco_url, llama_url = f"http://{HOST}:{baco_port}", f"http://{HOST}:{llama_port}"
    k = args.clients
    names = {"anchor": f"llama-cpp-python server, aligned alone, {k} concurrent clients",
             "alone": f"baco serve, {k} requests one at a time",
             "together": f"baco serve, {k} concurrent clients (--parallel {k})"}
    rows: dict[str, list[Run]] = {key: [] for key in names}
    try:
        for _ in range(args.rounds):
            rows["anchor"].append(batch(llama_url, k, args.tokens, baco=False, concurrent=True))
            rows["alone"].append(batch(baco_url, k, args.tokens, baco=True, concurrent=False))
            rows["together"].append(batch(baco_url, k, args.tokens, baco=True, concurrent=True))
    finally:
        for server in servers:
            server.terminate()
            server.wait(30)
    pair = ModelPair(PairSpec(base, aligned))
    limit = batching_limit(pair, args.threads)
    pair.close()
    rates = {key: statistics.median(r.rate for r in runs) for key, runs in rows.items()}
    firsts = {key: [f for r in runs for f in r.first_token] for key, runs in rows.items()}
    print(f"{k} clients x {args.tokens} tokens max, {args.threads} threads, {args.rounds} rounds (medians)")
    for key, name in names.items():
        f = firsts[key]
        print(f"{name:60s} {rates[key]:8.1f} tok/s  {rates[key] / rates['anchor']:5.2f}x anchor  "
              f"first token {statistics.median(f):6.3f} s (min {min(f):.3f}, max {max(f):.3f})")
    speedup = rates["together"] / rates["alone"]
    print(f"batching limit (8 single decodes / one 8-token decode): {limit:.2f}x")
    print(f"concurrent over one at a time: {speedup:.2f}x = {100 * speedup / limit:.0f}% of the limit (target 85%)")
    if args.json:
        args.json.write_text(json.dumps({
            "rates": {names[key]: rate for key, rate in rates.items()}, "limit": limit, "speedup": speedup,
            "share_of_limit": speedup / limit,
            "first_token": {names[key]: {"median": statistics.median(f), "min": min(f), "max": max(f)}
                            for key, f in firsts.items()}}, indent=1))


if __name__ == "__main__":
    main()
