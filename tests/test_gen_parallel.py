"""`baco gen --parallel P` end to end: real processes, real llama.cpp, the tiny pair."""

from __future__ import annotations

from pathlib import Path

from baco_local.runs.records import comparable_record
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
    by_id = {r["id"]: comparable_record(r) for r in read_records(one)}
    assert all(comparable_record(r) == by_id[r["id"]] for r in read_records(four))  # only the plan differs
    assert {r["settings"]["parallel"] for r in read_records(four)} == {4}
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
    assert_clean_error(result, "--parallel must be between -n (3) and 256, got 2; --parallel 1 runs one prompt")


def test_parallel_prompt_too_long_is_a_clean_error(tiny_pair, tmp_path: Path) -> None:
    result = baco("gen", "-p", "the cat " * 200, *model_args(tiny_pair), "--ctx-size", "256", "--parallel", "2")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [result.stderr.strip().splitlines()[-1]]  # after the memory estimate note
    assert "prompt 1: the prompt is" in errors[0] and "but the context is 256" in errors[0]


# --- the default P -------------------------------------------------------------------------------

def settings_of(path: Path) -> list[dict]:
    return [r["settings"] for r in read_records(path)]


def test_default_runs_the_scheduler_at_8_over_a_prompt_file(tiny_pair, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"prompt number {i}\n" for i in range(10)), encoding="utf-8")
    common = ["gen", "-f", str(prompts), *model_args(tiny_pair), "--max-tokens", "12", "--seed", "4"]
    default, one = tmp_path / "default.jsonl", tmp_path / "one.jsonl"
    result = baco(*common, "-o", str(default))
    assert result.returncode == 0, result.stderr
    assert "8 sequences" in result.stderr  # the memory estimate counts the scheduler's sequences
    assert {s["parallel"] for s in settings_of(default)} == {8}
    assert all("multi" in s["concurrency"]["chosen"] for s in settings_of(default))  # batched steps ran
    assert baco(*common, "--parallel", "1", "-o", str(one)).returncode == 0
    assert {s["parallel"] for s in settings_of(one)} == {1}
    assert outputs(default) == outputs(one)


def test_default_for_one_prompt_of_one_sample_is_draft_and_verify(tiny_pair, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    result = baco("gen", "-p", "the cat", *model_args(tiny_pair), "--max-tokens", "12", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "1 sequence" in result.stderr
    [settings] = settings_of(out)
    assert settings["parallel"] == 1 and settings["draft"] == "adaptive:4-16"
    assert settings["concurrency"]["chosen"] == {}  # draft-and-verify decodes one model at a time, unmeasured


def test_default_fills_the_slots_with_samples_of_one_prompt(tiny_pair, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    result = baco("gen", "-p", "the cat", *model_args(tiny_pair), "-n", "3", "--max-tokens", "8", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert [s["parallel"] for s in settings_of(out)] == [3]  # no more slots than samples to decode


def test_a_rerun_with_another_parallel_resumes_the_file(tiny_pair, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"prompt number {i}\n" for i in range(3)), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    common = ["gen", "-f", str(prompts), *model_args(tiny_pair), "-n", "2", "--max-tokens", "8", "-o", str(out)]
    assert baco(*common, "--parallel", "2").returncode == 0
    first = out.read_text(encoding="utf-8")
    with prompts.open("a", encoding="utf-8") as more:
        more.write("".join(f"prompt number {i}\n" for i in range(3, 9)))
    result = baco(*common)  # the default P: 8
    assert result.returncode == 0, result.stderr
    assert "resuming: 3 of 9 prompts" in result.stderr
    assert out.read_text(encoding="utf-8").startswith(first)
    assert [s["parallel"] for s in settings_of(out)] == [2] * 3 + [8] * 6
    assert sorted(r["id"] for r in read_records(out)) == list(range(1, 10))
    assert "resuming: 9 of 9" in baco(*common, "--parallel", "1").stderr


def test_parallel_1_runs_one_prompt_at_a_time_whatever_n(tiny_pair, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    result = baco("gen", "-p", "the cat", *model_args(tiny_pair), "-n", "3", "--max-tokens", "8",
                  "--parallel", "1", "-o", str(out))
    assert result.returncode == 0, result.stderr
    [record] = read_records(out)
    assert len(record["generations"]) == 3 and record["settings"]["parallel"] == 1


def test_draft_k_with_parallel_above_1_is_refused(tiny_pair) -> None:
    result = baco("gen", "-p", "the cat", *model_args(tiny_pair), "--draft", "4", "--parallel", "4")
    assert_clean_error(result, "--draft K drafts one prompt at a time")


def test_default_parallel_is_capped_by_the_memory_estimate(tiny_pair, monkeypatch, capsys) -> None:
    """With room for 3 sequences only, P is 3 and one note says why; with none, P is -n (the run's
    own memory check then refuses it)."""
    from types import SimpleNamespace

    from baco_local.cli.gen_parallel import default_parallel
    from baco_local.cli.setup import ResolvedChoice
    from baco_local.engine.pair import PairSpec
    from baco_local.models import memory

    base, aligned = tiny_pair
    resolved = ResolvedChoice(PairSpec(base, aligned), "p-punc", 0.3, "tiny", ctx_size=256)
    run = SimpleNamespace(draft=None, ignore_memory=False, ctx_size=256, max_tokens=16)
    room = memory.estimate_memory(base, aligned, memory.kv_cells(256, 3, 16), 3).total
    monkeypatch.setattr(memory, "available_memory", lambda: room)
    assert default_parallel(resolved, run, 1, 20) == 3
    assert "--parallel 3, not 8: the memory estimate fits no more sequences" in capsys.readouterr().err
    assert default_parallel(resolved, run, 2, 1) == 2  # one prompt's two samples: nothing to cap
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(memory, "available_memory", lambda: 1)
    assert default_parallel(resolved, run, 2, 20) == 2
    assert default_parallel(resolved, SimpleNamespace(**{**vars(run), "ignore_memory": True}), 1, 20) == 8
