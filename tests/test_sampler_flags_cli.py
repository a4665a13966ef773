"""The llama.cpp sampler flags (XTC, top-n-sigma, DRY) on gen, chat and sweep: refused out of range
with one line, recorded in the output settings, and part of the resume check (the tiny pair)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_chat_cli import piped_chat
from test_gen_cli import baco, model_args, read_records
from test_sweep import run_in_process

BAD = [
    (["--xtc-probability", "1.5"], "--xtc-probability must be in [0, 1]"),
    (["--xtc-probability", "-0.1"], "--xtc-probability must be in [0, 1]"),
    (["--xtc-threshold", "2"], "--xtc-threshold must be in [0, 1]"),
    (["--top-nsigma", "inf"], "--top-nsigma must be a finite number"),
    (["--dry-multiplier", "-1"], "--dry-multiplier must be >= 0"),
    (["--dry-base", "0.5"], "--dry-base must be >= 1"),
    (["--dry-allowed-length", "-1"], "--dry-allowed-length must be >= 0"),
    (["--dry-penalty-last-n", "-2"], "--dry-penalty-last-n must be >= -1"),
    (["--dry-sequence-breaker", ""], "--dry-sequence-breaker strings must not be empty"),
]
FLAGS = ["--xtc-probability", "0.5", "--xtc-threshold", "0.2", "--top-nsigma", "1.5", "--dry-multiplier", "0.8",
         "--dry-base", "2", "--dry-allowed-length", "3", "--dry-penalty-last-n", "64",
         "--dry-sequence-breaker", "\\n", "--dry-sequence-breaker", "."]
RECORDED = {"temperature": 0.8, "top_k": 40, "top_p": 0.95, "min_p": 0.05, "xtc_probability": 0.5,
            "xtc_threshold": 0.2, "top_nsigma": 1.5, "dry_multiplier": 0.8, "dry_base": 2.0, "dry_allowed_length": 3,
            "dry_penalty_last_n": 64, "dry_sequence_breakers": ["\n", "."]}


def assert_one_error_line(code: int, err: str, fragment: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("Error:"), err
    assert fragment in " ".join(err.split()), err
    assert "Traceback" not in err


@pytest.mark.parametrize("command", ["gen", "chat", "sweep"])
@pytest.mark.parametrize("extra, fragment", BAD, ids=[" ".join(b[0]) for b in BAD])
def test_out_of_range_is_one_error_line(tiny_pair, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        command: str, extra: list[str], fragment: str) -> None:
    prompts = tmp_path / "p.txt"
    prompts.write_text("Hello\n", encoding="utf-8")
    args = {"gen": ["gen", "-p", "Hello"], "chat": ["chat"],
            "sweep": ["sweep", "-f", str(prompts), "-o", str(tmp_path / "run")]}[command]
    code, err = run_in_process([*args, *model_args(tiny_pair), *extra], capsys)
    assert_one_error_line(code, err, fragment)
    assert not (tmp_path / "run").exists()


def test_gen_records_the_flags_and_resume_refuses_other_values(tiny_pair, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Tell me a story\nA dog and a cat\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    first = baco("gen", "-f", str(prompts), *model_args(tiny_pair), "-n", "2", "--max-tokens", "12", *FLAGS,
                 "-o", str(out))
    assert first.returncode == 0, first.stderr
    records = read_records(out)
    assert [r["settings"]["sampling"] for r in records] == [RECORDED, RECORDED]
    # Off by default and then not recorded: files written before these flags existed still resume.
    plain = baco("gen", "-p", "Hello", *model_args(tiny_pair), "--max-tokens", "4")
    assert json.loads(plain.stdout)["settings"]["sampling"] == {"temperature": 0.8, "top_k": 40, "top_p": 0.95,
                                                               "min_p": 0.05}
    out.write_text(out.read_text(encoding="utf-8").splitlines(keepends=True)[0], encoding="utf-8")
    for flag, value in (("--xtc-probability", "0.3"), ("--top-nsigma", "2"), ("--dry-base", "1.5"),
                        ("--dry-sequence-breaker", ":")):
        changed = list(FLAGS)
        changed[changed.index(flag) + 1] = value
        again = baco("gen", "-f", str(prompts), *model_args(tiny_pair), "-n", "2", "--max-tokens", "12", *changed,
                     "-o", str(out))
        assert again.returncode != 0 and "sampling" in again.stderr and "Traceback" not in again.stderr, again.stderr
    same = baco("gen", "-f", str(prompts), *model_args(tiny_pair), "-n", "2", "--max-tokens", "12", *FLAGS,
                "-o", str(out))
    assert same.returncode == 0, same.stderr
    assert read_records(out) == records  # the resumed run wrote the same second record


def test_the_samplers_change_what_gen_writes(tiny_pair) -> None:
    """DRY against repeats: on the tiny pair's loops, a strong DRY gives other text at temperature 0."""
    args = ["gen", "-p", "Tell me a story", *model_args(tiny_pair), "--max-tokens", "40", "--temp", "0"]
    plain = json.loads(baco(*args).stdout)["generations"][0]
    dry = json.loads(baco(*args, "--dry-multiplier", "3", "--dry-allowed-length", "1").stdout)["generations"][0]
    assert plain != dry


def test_chat_records_the_flags_in_a_saved_transcript(tiny_pair, tmp_path: Path) -> None:
    base, aligned = tiny_pair
    saved = tmp_path / "chat.json"
    result = piped_chat(tmp_path, "--base", str(base), "--aligned", str(aligned), "--max-tokens", "5", *FLAGS,
                        lines=f"Hello\n/save {saved}\n")
    assert result.returncode == 0, result.stderr
    assert json.loads(saved.read_text(encoding="utf-8"))["settings"]["sampling"] == RECORDED
    assert "min-p 0.05 · DRY ×0.8 base 2 allowed 3 · top-nσ 1.5 · XTC p 0.5 t 0.2 ·" in result.stderr


def test_sweep_records_the_flags_and_resume_refuses_other_values(tiny_pair, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Tell me a story\n", encoding="utf-8")
    run_dir = tmp_path / "run"
    args = ["sweep", "-f", str(prompts), *model_args(tiny_pair), "-o", str(run_dir), "-n", "2", "--max-tokens", "6",
            "--routers", "p", "--gammas", "0.3", "--baselines", "none"]
    first = baco(*args, *FLAGS)
    assert first.returncode == 0, first.stderr
    spec = json.loads((run_dir / "sweep.json").read_text(encoding="utf-8"))
    assert spec["points"]["p@gamma=0.3"]["sampling"] == RECORDED
    record = read_records(run_dir / "generations.jsonl")[0]
    assert record["settings"]["sampling"] == RECORDED
    again = baco(*args, *[v if v != "0.8" else "0.9" for v in FLAGS])
    assert again.returncode != 0 and "different grid" in again.stderr and "dry_multiplier" in again.stderr, again.stderr
