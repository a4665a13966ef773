"""`baco gen` never loses, duplicates or mixes up a user's data: output files, resume, prompt files.

Real processes, real llama.cpp, the tiny pair.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_gen_cli import assert_clean_error, baco, model_args, read_records
from tiny_models import write_large_sparse_model, write_pair


@pytest.fixture()
def prompts(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.txt"
    path.write_text("Tell me a story\nWrite about the moon\nA dog and a cat\n", encoding="utf-8")
    return path


def assert_one_error(result: subprocess.CompletedProcess, fragment: str) -> None:
    """Exit code 2 and one `Error:` line naming the problem (after the memory estimate), no traceback."""
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and fragment in errors[0], result.stderr
    assert "Traceback" not in result.stderr


def gen(tiny_pair, prompt_file: Path, *extra: str) -> subprocess.CompletedProcess:
    return baco("gen", "-f", str(prompt_file), *model_args(tiny_pair), "--max-tokens", "6", *extra)


# --- output files --------------------------------------------------------------------------------

@pytest.mark.parametrize("content", [b"my important notes", b"my important notes\n", b"line one\nline two"])
def test_a_file_that_is_not_bacos_is_refused_and_left_alone(tiny_pair, prompts: Path, tmp_path: Path,
                                                            content: bytes) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_bytes(content)
    assert_clean_error(gen(tiny_pair, prompts, "-o", str(notes)), "notes.txt is not a baco output file")
    assert notes.read_bytes() == content


def test_a_torn_line_after_a_record_is_replaced_but_a_foreign_line_is_refused(tiny_pair, prompts: Path,
                                                                             tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    assert gen(tiny_pair, prompts, "-o", str(out)).returncode == 0
    first = out.read_text(encoding="utf-8").splitlines(keepends=True)[0]
    out.write_text(first + "not json at all\n", encoding="utf-8")
    assert_clean_error(gen(tiny_pair, prompts, "-o", str(out)), "out.jsonl line 2 is not a baco record")
    out.write_text(first + '{"id": 2, "prompt": "Write ab', encoding="utf-8")
    result = gen(tiny_pair, prompts, "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert [r["id"] for r in read_records(out)] == [1, 2, 3]


def test_a_second_run_on_the_same_output_fails_at_once_naming_the_first(tiny_pair, tmp_path: Path) -> None:
    prompt_file = tmp_path / "many.txt"
    prompt_file.write_text("".join(f"prompt number {i}\n" for i in range(30)), encoding="utf-8")
    out, lock = tmp_path / "conc.jsonl", tmp_path / "conc.jsonl.lock"
    args = ["gen", "-f", str(prompt_file), *model_args(tiny_pair), "-n", "2", "--max-tokens", "40", "-o", str(out)]
    first = subprocess.Popen([sys.executable, "-m", "baco_local", *args], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not (lock.exists() and lock.read_text().strip()):
        time.sleep(0.02)
    started = time.time()
    second = baco(*args)
    assert time.time() - started < 30
    assert_clean_error(second, f"another baco run (process {first.pid}) is writing {out}")
    _, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    assert [r["id"] for r in read_records(out)] == list(range(1, 31))  # each id once
    assert not lock.exists()  # removed when the run ended
    third = baco(*args)
    assert third.returncode == 0 and "resuming: 30 of 30" in third.stderr


def test_a_file_holding_an_id_twice_is_refused(tiny_pair, prompts: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    assert gen(tiny_pair, prompts, "-o", str(out)).returncode == 0
    lines = out.read_text(encoding="utf-8").splitlines(keepends=True)
    out.write_text("".join(lines + lines[1:2]), encoding="utf-8")
    before = out.read_bytes()
    assert_clean_error(gen(tiny_pair, prompts, "-o", str(out)), "holds prompt id 2 twice (lines 2 and 4)")
    assert out.read_bytes() == before


def test_a_full_disk_is_one_error_line(tiny_pair, prompts: Path) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    result = gen(tiny_pair, prompts, "-o", "/dev/full")
    assert_one_error(result, "cannot write /dev/full: No space left on device")
    assert "running the same command again resumes" in result.stderr


def without_run_shape(path: Path) -> list[dict]:
    """The records, sorted by id, without how the run was batched (``parallel``, ``concurrency``)."""
    drop = ("parallel", "concurrency")
    return sorted(({**r, "settings": {k: v for k, v in r["settings"].items() if k not in drop}}
                   for r in read_records(path)), key=lambda r: r["id"])


@pytest.mark.parametrize("mode", [["--parallel", "1"], []], ids=["one-at-a-time", "scheduler-default"])
def test_a_failed_write_keeps_the_records_before_it_and_the_rerun_resumes(tiny_pair, prompts: Path,
                                                                         tmp_path: Path, mode: list[str]) -> None:
    """A file-size limit makes the kernel write part of the third line and then fail, as a disk
    that fills up does: the part is cut back, the run ends with one error line (also under the
    scheduler, where the write happens inside a step), and the rerun finishes the file."""
    full = tmp_path / "full.jsonl"
    assert gen(tiny_pair, prompts, "-o", str(full), *mode).returncode == 0
    complete = full.read_bytes()
    lines = complete.splitlines(keepends=True)
    limit = len(lines[0]) + len(lines[1]) + len(lines[2]) // 2
    out = tmp_path / "out.jsonl"

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    result = subprocess.run([sys.executable, "-m", "baco_local", "gen", "-f", str(prompts), *model_args(tiny_pair),
                             "--max-tokens", "6", "-o", str(out), *mode], capture_output=True, text=True,
                            timeout=120, preexec_fn=limited)
    assert_one_error(result, "cannot write")
    assert out.read_bytes() == lines[0] + lines[1]  # whole records only
    again = gen(tiny_pair, prompts, "-o", str(out), *mode)
    assert again.returncode == 0 and "resuming: 2 of 3" in again.stderr
    if mode:  # one prompt at a time: byte for byte
        assert out.read_bytes() == complete
    else:  # the same P, but the last prompt ran alone in it: the same records, but for how they were batched
        assert without_run_shape(out) == without_run_shape(full)


def test_a_refused_run_leaves_no_output_file(prompts: Path, tmp_path: Path) -> None:
    base = write_large_sparse_model(tmp_path / "big-base.gguf", n_embd=32768)
    aligned = write_large_sparse_model(tmp_path / "big-aligned.gguf", n_embd=32768)
    out = tmp_path / "out.jsonl"
    result = baco("gen", "-f", str(prompts), "--base", str(base), "--aligned", str(aligned), "-o", str(out))
    assert result.returncode == 2 and "--ignore-memory" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big-aligned.gguf", "big-base.gguf", "prompts.txt"]


# --- resume refuses what is not the same run -------------------------------------------------------

def test_a_changed_prompt_text_is_refused(tiny_pair, prompts: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    assert gen(tiny_pair, prompts, "-o", str(out)).returncode == 0
    before = out.read_bytes()
    prompts.write_text("Tell me a story\nWrite about the sun\nA dog and a cat\n", encoding="utf-8")
    assert_clean_error(gen(tiny_pair, prompts, "-o", str(out)), "has another text for prompt id 2")
    assert out.read_bytes() == before


def test_another_model_file_under_the_same_name_is_refused(tiny_pair, prompts: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    assert gen(tiny_pair, prompts, "-o", str(out)).returncode == 0
    other_base, _ = write_pair(tmp_path / "other", seed=1)  # also called base.gguf
    _, aligned = tiny_pair
    result = baco("gen", "-f", str(prompts), "--base", str(other_base), "--aligned", str(aligned),
                  "--threads", "1", "--max-tokens", "6", "-o", str(out))
    assert_clean_error(result, "different base model file")
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.copy(tiny_pair[0], moved / "base.gguf")  # the same file elsewhere is the same model
    result = baco("gen", "-f", str(prompts), "--base", str(moved / "base.gguf"), "--aligned", str(aligned),
                  "--threads", "1", "--max-tokens", "6", "-o", str(out))
    assert result.returncode == 0 and "resuming: 3 of 3" in result.stderr


@pytest.mark.parametrize("changed, key", [(["-c", "512"], "ctx_size"), (["--no-draft"], "draft")])
def test_another_context_or_draft_mode_is_refused(tiny_pair, prompts: Path, tmp_path: Path,
                                                  changed: list[str], key: str) -> None:
    out = tmp_path / "out.jsonl"
    assert gen(tiny_pair, prompts, "-o", str(out)).returncode == 0
    assert_clean_error(gen(tiny_pair, prompts, "-o", str(out), *changed), f"different {key}:")


def test_a_file_without_model_fingerprints_is_refused(tiny_pair, prompts: Path, tmp_path: Path) -> None:
    """Files written before baco recorded the model files' identity cannot be trusted to be the same run."""
    out = tmp_path / "out.jsonl"
    assert gen(tiny_pair, prompts, "-o", str(out)).returncode == 0
    records = read_records(out)
    for record in records:
        del record["settings"]["model_files"]
    out.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    assert_clean_error(gen(tiny_pair, prompts, "-o", str(out)), "not recorded there (written by an older baco)")


def test_ids_1_and_text_1_are_the_same_id(tiny_pair, tmp_path: Path) -> None:
    numbers, texts = tmp_path / "numbers.jsonl", tmp_path / "texts.jsonl"
    numbers.write_text('{"id": 1, "prompt": "Hello"}\n{"id": 2, "prompt": "Bye"}\n', encoding="utf-8")
    texts.write_text('{"id": "1", "prompt": "Hello"}\n{"id": "2", "prompt": "Bye"}\n', encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert gen(tiny_pair, numbers, "-o", str(out)).returncode == 0
    result = gen(tiny_pair, texts, "-o", str(out))
    assert result.returncode == 0 and "resuming: 2 of 2" in result.stderr
    assert [r["id"] for r in read_records(out)] == [1, 2]


# --- prompt files ------------------------------------------------------------------------------

def test_prompt_files_split_on_newlines_only(tiny_pair, tmp_path: Path) -> None:
    text = tmp_path / "p.txt"
    text.write_text("one\u2028still one\x0cand\x85more\r\ntwo\r\n", encoding="utf-8")
    result = gen(tiny_pair, text)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.split("\n") if line]
    assert [(r["id"], r["prompt"]) for r in records] == [(1, "one\u2028still one\x0cand\x85more"), (2, "two")]
    lines = tmp_path / "p.jsonl"
    lines.write_text(json.dumps({"id": "x", "prompt": "a\u2028b\u2029c"}, ensure_ascii=False) + "\n", encoding="utf-8")
    result = gen(tiny_pair, lines)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["prompt"] == "a\u2028b\u2029c"
