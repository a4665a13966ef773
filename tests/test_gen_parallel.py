"""`baco gen --parallel P` end to end: real processes, real llama.cpp, the tiny pair."""

from __future__ import annotations

from pathlib import Path

from test_gen_cli import assert_clean_error, baco, kill_after_records, model_args, read_records


def outputs(path: Path) -> dict:
    """(texts, sources) of every record, by id."""
    return {r["id"]: (r["generations"], [s["sources"] for s in r["samples"]]) for r in read_records(path)}


def test_parallel_records_match_one_prompt_at_a_time(tiny_pair, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Tell me a story\n\nWrite about the moon\nA dog and a cat\nthe cat\n"
                       "Tell me about the cat and a dog and the moon\n", encoding="utf-8")
    common = ["gen", "-f", str(prompts), *model_args(tiny_pair), "-n", "2", "--max-tokens", "20",
              "--router", "p-punc", "--seed", "3"]
    one, four = tmp_path / "one.jsonl", tmp_path / "four.jsonl"
    assert baco(*common, "-o", str(one)).returncode == 0
    result = baco(*common, "-np", "4", "-o", str(four))
    assert result.returncode == 0, result.stderr
    ids = [r["id"] for r in read_records(four)]
    assert sorted(ids) == [1, 3, 4, 5, 6]  # every record once
    assert outputs(four) == outputs(one)
    # A rerun with --parallel finds everything done (the settings check passes).
    again = baco(*common, "--parallel", "2", "-o", str(four))
    assert again.returncode == 0 and "resuming: 5 of 5" in again.stderr


def test_parallel_run_killed_and_rerun_loses_nothing(tiny_pair, tmp_path: Path) -> None:
    prompts = tmp_path / "many.txt"
    prompts.write_text("".join(f"prompt number {i}\n" for i in range(30)), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    args = ["gen", "-f", str(prompts), *model_args(tiny_pair), "-n", "2", "--max-tokens", "60",
            "--parallel", "4", "-o", str(out)]
    partial = kill_after_records(args, out, 2)
    assert 2 <= partial.count("\n") < 30, "the run should have been cut short"
    result = baco(*args)
    assert result.returncode == 0, result.stderr
    assert sorted(r["id"] for r in read_records(out)) == list(range(1, 31))
    assert out.read_text(encoding="utf-8").startswith(partial)


def test_parallel_smaller_than_samples_is_refused(tiny_pair, tmp_path: Path) -> None:
    result = baco("gen", "-p", "the cat", *model_args(tiny_pair), "-n", "3", "--parallel", "2")
    assert_clean_error(result, "--parallel must be between -n (3)")


def test_parallel_prompt_too_long_is_a_clean_error(tiny_pair, tmp_path: Path) -> None:
    result = baco("gen", "-p", "the cat " * 200, *model_args(tiny_pair), "--ctx-size", "256", "--parallel", "2")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [result.stderr.strip().splitlines()[-1]]  # after the memory estimate note
    assert "prompt 1: the prompt is" in errors[0] and "but the context is 256" in errors[0]
