"""`baco gen --ray` on one machine: 2 Ray actors x 1 thread against 1 process x 2 threads (and 1 actor x 2).

    python bench/ray_scale.py                          # Gemma 3 270M base + the stand-in aligned side
    python bench/ray_scale.py --prompts 4 --tokens 8   # a quick check that it runs

Every configuration is the real command (`baco gen`, a new process each), on the same prompts,
seed and samples; the Ray ones join one local Ray instance that this script starts (2 CPUs, no
dashboard, small object store) and stops, so Ray's start-up is not in their time, but each
driver's connection and each actor's model load are. Wall time is the whole command; tokens/s is
the tokens of the records over that time. The records of every run are compared with the local
run's (sorted, without each record's decode plan; identical when `-np` is `-n`, as here). The stand-in aligned side is the
base with logits x3, NOT an aligned model: the figures are about speed, not quality.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from standin import gemma_base_path, write_standin  # noqa: E402

from baco_local.runs.records import comparable_record  # noqa: E402

PROMPTS = ["Write a short story about a lighthouse keeper.", "Describe a city in the year 3000.",
           "Give me three ideas for a birthday party.", "Explain why the sky is blue."]


def run_gen(args: list[str], out: Path) -> tuple[float, int, list[str]]:
    """Wall seconds, tokens written and the sorted records of one ``baco gen`` process (each without
    its decode plan: an actor's thread plan differs from the local run's, as resume allows)."""
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "baco_local", "gen", *args, "-q", "-o", str(out)],
                            capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"baco gen {' '.join(args)} failed:\n{result.stderr}")
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    tokens = sum(s["tokens"] for record in records for s in record["samples"])
    return wall, tokens, sorted(json.dumps(comparable_record(record)) for record in records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path)
    parser.add_argument("--aligned", type=Path)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--samples", type=int, default=2)
    args = parser.parse_args()
    os.environ["RAY_AUTH_MODE"] = "disabled"  # the drivers are this machine's own processes
    import ray

    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        base = args.base or gemma_base_path()
        aligned = args.aligned or write_standin(base, work / "standin.gguf")
        prompt_file = work / "prompts.jsonl"
        prompt_file.write_text("".join(json.dumps({"id": i, "prompt": PROMPTS[i % len(PROMPTS)] + f" ({i})"}) + "\n"
                                       for i in range(args.prompts)), encoding="utf-8")
        common = ["-f", str(prompt_file), "--base", str(base), "--aligned", str(aligned), "-n", str(args.samples),
                  "--max-tokens", str(args.tokens), "--seed", "1", "--parallel", str(args.samples)]
        wall, tokens, reference = run_gen([*common, "-t", "2"], work / "local.jsonl")
        rows = [("1 process x 2 threads (local)", wall, tokens, True)]
        context = ray.init(num_cpus=2, object_store_memory=80 * 1024 * 1024, include_dashboard=False,
                           log_to_driver=False)
        try:
            address = context.address_info["gcs_address"]
            for actors, cpus in ((1, 2), (2, 1)):
                wall, tokens, lines = run_gen([*common, "--ray", address, "--ray-actors", str(actors),
                                               "--ray-cpus", str(cpus), "--ray-batch-size", "2"],
                                              work / f"ray{actors}.jsonl")
                rows.append((f"{actors} Ray actor{'s' if actors > 1 else ''} x {cpus} thread{'s' if cpus > 1 else ''}",
                             wall, tokens, lines == reference))
        finally:
            ray.shutdown()
    local_rate = rows[0][2] / rows[0][1]
    print(f"{args.prompts} prompts x {args.samples} samples, at most {args.tokens} tokens each; {os.cpu_count()} CPUs")
    for name, wall, tokens, same in rows:
        rate = tokens / wall
        print(f"{name:<32} {wall:7.2f} s  {rate:8.1f} tok/s  x{rate / local_rate:.2f} of local  "
              f"records {'= local' if same else 'DIFFER from local'}")


if __name__ == "__main__":
    main()
