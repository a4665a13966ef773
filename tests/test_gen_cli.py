"""`baco gen` end to end: real processes, real llama.cpp, the tiny pair."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tiny_models import write_large_sparse_model

from baco_local.engine.seeds import sample_seed


def baco(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess."""
    return subprocess.run([sys.executable, "-m", "baco_local", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


def assert_clean_error(result: subprocess.CompletedProcess, fragment: str) -> None:
    """Exit code 2, one `Error:` line naming the problem, no traceback."""
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error:") and fragment in lines[0], lines[0]
    assert "Traceback" not in result.stderr


@pytest.fixture()
def prompts(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.txt"
    path.write_text("Tell me a story\n\nWrite about the moon\nA dog and a cat\n", encoding="utf-8")
    return path


def model_args(tiny_pair) -> list[str]:
    base, aligned = tiny_pair
    return ["--base", str(base), "--aligned", str(aligned), "--threads", "1"]


def kill_after_records(args: list[str], out: Path, records: int) -> str:
    """Start ``baco ARGS``, kill -9 it once ``out`` holds ``records`` lines; what was written."""
    process = subprocess.Popen([sys.executable, "-m", "baco_local", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while time.time() < deadline and (not out.exists() or out.read_text().count("\n") < records):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    return out.read_text(encoding="utf-8")


def write_numbered_prompts(path: Path, count: int) -> Path:
    """A JSONL prompt file of ``count`` prompts with ids p0, p1, ... ("prompt number i")."""
    path.write_text("".join(json.dumps({"id": f"p{i}", "prompt": f"prompt number {i}"}) + "\n" for i in range(count)),
                    encoding="utf-8")
    return path


def read_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_gen_writes_one_record_per_prompt(tiny_pair, prompts: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    result = baco("gen", "--prompt-file", str(prompts), *model_args(tiny_pair), "--router", "p-punc",
                  "--gamma", "0.3", "-n", "3", "--max-tokens", "12", "--seed", "4", "-o", str(out))
    assert result.returncode == 0, result.stderr
    records = read_records(out)
    assert [r["id"] for r in records] == [1, 3, 4]  # line numbers of the non-empty lines
    for record in records:
        assert record["prompt"] and record["model"].startswith("baco:p-punc@0.3:")
        assert len(record["generations"]) == 3
        for text, sample in zip(record["generations"], record["samples"]):
            assert isinstance(text, str)
            assert set(sample["sources"]) <= {"A", "B"} and len(sample["sources"]) == sample["tokens"]
            assert sample["base_fraction"] == pytest.approx(sample["sources"].count("B") / sample["tokens"], abs=1e-4)
            assert sample["finish_reason"] in {"stop", "length"}
        assert [s["seed"] for s in record["samples"]] == [sample_seed(4, i, str(record["id"])) for i in range(3)]
        settings = record["settings"]
        assert settings["sampling"] == {"temperature": 0.8, "top_k": 40, "top_p": 0.95, "min_p": 0.05}
        assert settings["router"] == "p-punc" and settings["gamma"] == 0.3 and settings["n"] == 3


def test_gen_is_deterministic_and_prints_to_stdout_without_output(tiny_pair, prompts: Path) -> None:
    args = ["gen", "-f", str(prompts), *model_args(tiny_pair), "-n", "2", "--max-tokens", "10", "--seed", "9"]
    first, second = baco(*args), baco(*args)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    assert len(first.stdout.splitlines()) == 3


def test_gen_reads_jsonl_prompts(tiny_pair, tmp_path: Path) -> None:
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"id": "a", "prompt": "Hello"}\n{"id": "b", "prompt": "Bye"}\n', encoding="utf-8")
    result = baco("gen", "-f", str(prompts), *model_args(tiny_pair), "--max-tokens", "5")
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["id"] for line in result.stdout.splitlines()] == ["a", "b"]


def test_rerun_resumes_after_an_interruption(tiny_pair, tmp_path: Path) -> None:
    prompts = tmp_path / "many.txt"
    prompts.write_text("".join(f"prompt number {i}\n" for i in range(30)), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    args = ["gen", "-f", str(prompts), *model_args(tiny_pair), "-n", "2", "--max-tokens", "60", "-o", str(out)]
    partial = kill_after_records(args, out, 2)
    done_before = partial.count("\n")
    assert 2 <= done_before < 30, "the run should have been cut short"
    with open(out, "a", encoding="utf-8") as handle:  # simulate a torn write
        handle.write('{"id": 99, "prompt": "torn')
    result = baco(*args)
    assert result.returncode == 0, result.stderr
    records = read_records(out)
    assert [r["id"] for r in records] == list(range(1, 31))
    assert out.read_text(encoding="utf-8").startswith(partial)  # nothing already written was lost
    assert "resuming" in result.stderr
    whole = tmp_path / "whole.jsonl"  # the same run, never interrupted
    assert baco(*args[:-1], str(whole)).returncode == 0
    assert out.read_bytes() == whole.read_bytes()
    out.write_bytes(b"".join(whole.read_bytes().splitlines(keepends=True)[:7]) + b'{"id": 8, "prom')
    assert baco(*args).returncode == 0  # a partial file (a torn last line), rerun
    assert out.read_bytes() == whole.read_bytes()


def test_rerun_with_other_settings_is_refused(tiny_pair, prompts: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    assert baco("gen", "-f", str(prompts), *model_args(tiny_pair), "--max-tokens", "4", "-o", str(out)).returncode == 0
    before = out.read_bytes()
    result = baco("gen", "-f", str(prompts), *model_args(tiny_pair), "--max-tokens", "4", "--router", "p",
                  "-o", str(out))
    assert_clean_error(result, "different router")
    assert out.read_bytes() == before


@pytest.mark.parametrize("content, fragment", [
    (None, "does not exist"),
    (b"", "has no prompts"),
    (b"\n  \n", "has no prompts"),
    (b"ok\n\xff\xfe bad\n", "line 2: not valid UTF-8"),
])
def test_bad_prompt_files(tiny_pair, tmp_path: Path, content: bytes | None, fragment: str) -> None:
    path = tmp_path / "prompts.txt"
    if content is not None:
        path.write_bytes(content)
    assert_clean_error(baco("gen", "-f", str(path), *model_args(tiny_pair)), fragment)


def test_bad_jsonl_line(tiny_pair, tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "fine"}\n{"prompt": \n', encoding="utf-8")
    assert_clean_error(baco("gen", "-f", str(path), *model_args(tiny_pair)), "line 2: invalid JSON")


@pytest.mark.parametrize("args, fragment", [
    (["--router", "nonsense"], "unknown router 'nonsense'"),
    (["--router", "p-punc", "--gamma", "1.5"], "probability in [0, 1]"),
    (["--router", "p", "--gamma", "-0.2"], "probability in [0, 1]"),
    (["--temp", "-1"], "--temp"),
    (["--top-p", "0"], "--top-p"),
    (["--max-tokens", "0"], "--max-tokens"),
])
def test_bad_options(tiny_pair, prompts: Path, args: list[str], fragment: str) -> None:
    assert_clean_error(baco("gen", "-f", str(prompts), *model_args(tiny_pair), *args), fragment)


def test_unwritable_output(tiny_pair, prompts: Path, tmp_path: Path) -> None:
    target = tmp_path / "missing-dir" / "out.jsonl"
    assert_clean_error(baco("gen", "-f", str(prompts), *model_args(tiny_pair), "-o", str(target)),
                       "cannot write output file")
    assert_clean_error(baco("gen", "-f", str(prompts), *model_args(tiny_pair), "-o", str(tmp_path)),
                       "is a directory")


def test_missing_and_malformed_models(tiny_pair, prompts: Path, tmp_path: Path) -> None:
    base, aligned = tiny_pair
    assert_clean_error(baco("gen", "-f", str(prompts), "--base", str(tmp_path / "nope.gguf"),
                            "--aligned", str(aligned)), "nope.gguf")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"this is not a model at all" * 10)
    assert_clean_error(baco("gen", "-f", str(prompts), "--base", str(base), "--aligned", str(junk)), "junk.gguf")
    assert_clean_error(baco("gen", "-f", str(prompts)), "--base")


def test_gen_with_a_pair_from_a_user_registry(tiny_pair, prompts: Path, tmp_path: Path) -> None:
    base, aligned = tiny_pair
    registry = tmp_path / "models.toml"
    registry.write_text(
        '[pairs.tiny]\nrouter = "p"\ngamma = 0.5\nbase_template = "Q: {prompt}\\nA:\\n"\n'
        f'[pairs.tiny.base]\npath = "{base}"\n[pairs.tiny.aligned]\npath = "{aligned}"\n', encoding="utf-8")
    env = {**os.environ, "BACO_MODELS": str(registry)}
    result = subprocess.run([sys.executable, "-m", "baco_local", "gen", "-f", str(prompts), "--pair", "tiny",
                             "--max-tokens", "6", "-t", "1"], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout.splitlines()[0])
    assert record["model"] == "baco:p@0.5:tiny"  # the pair's own router and γ
    assert record["settings"]["base_template"] == "Q: {prompt}\nA:\n"
    assert "memory" in result.stderr.lower()  # the estimate is printed before loading
    unknown = subprocess.run([sys.executable, "-m", "baco_local", "gen", "-f", str(prompts), "--pair", "nope"],
                             capture_output=True, text=True, timeout=120, env=env)
    assert_clean_error(unknown, "nope")


def test_gen_refuses_a_run_that_cannot_fit_in_memory(prompts: Path, tmp_path: Path) -> None:
    """Two 32 GiB models (sparse files: no disk used) cannot fit: refused before loading."""
    base = write_large_sparse_model(tmp_path / "big-base.gguf", n_embd=32768)
    aligned = write_large_sparse_model(tmp_path / "big-aligned.gguf", n_embd=32768)
    result = baco("gen", "-f", str(prompts), "--base", str(base), "--aligned", str(aligned))
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "GiB" in errors[0] and "--ignore-memory" in errors[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args, fragment", [
    (["gen", "-f", "x.txt", "-n", "0"], "-n"),
    (["gen", "--bogus"], "No such option: --bogus"),
    (["nonsense"], "nonsense"),
])
def test_usage_errors_are_one_line(args: list[str], fragment: str) -> None:
    assert_clean_error(baco(*args), fragment)


def test_help_lists_every_command() -> None:
    result = baco("--help")
    assert result.returncode == 0
    for command in ("gen", "chat", "eval", "sweep", "merge", "models"):
        assert command in result.stdout


def test_a_last_line_without_its_newline_is_regenerated(tiny_pair, prompts: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    args = ["gen", "-f", str(prompts), *model_args(tiny_pair), "--max-tokens", "5", "--parallel", "1",
            "-o", str(out)]  # one prompt at a time: the rerun's record is byte for byte the same
    assert baco(*args).returncode == 0
    complete = out.read_bytes()
    out.write_bytes(complete[:-1])  # the last record lost only its newline
    result = baco(*args)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == complete  # the last prompt was generated again, identically
    out.write_bytes(complete + b"\n")  # a blank line at the end is harmless
    assert baco(*args).returncode == 0


def test_a_rerun_with_another_system_prompt_is_refused(tiny_pair, prompts: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    args = ["gen", "-f", str(prompts), *model_args(tiny_pair), "--max-tokens", "4", "-o", str(out)]
    assert baco(*args, "--system", "Be brief.").returncode == 0
    assert_clean_error(baco(*args, "--system", "Be verbose."), "different system")


def test_duplicate_prompt_ids_are_refused(tiny_pair, tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": 1, "prompt": "a"}\n{"id": "1", "prompt": "b"}\n', encoding="utf-8")
    assert_clean_error(baco("gen", "-f", str(path), *model_args(tiny_pair)), "appears twice")
