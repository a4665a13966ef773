"""`baco sweep` run folders: blank and malformed lines, one sweep at a time, records of other runs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from test_sweep import baco, finished, lines, prompts, sweep_args  # noqa: F401 - fixtures
from tiny_models import write_large_sparse_model



def copy_of(finished, tmp_path: Path) -> Path:  # noqa: F811
    run_dir = tmp_path / "run"
    shutil.copytree(finished[0], run_dir)
    return run_dir


def assert_refused_before_loading(result: subprocess.CompletedProcess, fragment: str) -> None:
    """One `Error:` line and nothing else on stderr (not even the memory estimate): no model was loaded."""
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("Error:"), result.stderr
    assert fragment in result.stderr, result.stderr


def test_blank_lines_in_the_run_files_are_ignored(finished, tiny_pair, prompts: Path, tmp_path: Path) -> None:  # noqa: F811
    run_dir = copy_of(finished, tmp_path)
    for name in ("generations.jsonl", "scores.jsonl"):
        path = run_dir / name
        kept = lines(path)
        path.write_bytes(b"".join(kept[:3]) + b"\n  \n" + b"".join(kept[3:]) + b"\n")
    result = baco(*sweep_args(tiny_pair, prompts, run_dir))
    assert result.returncode == 0, result.stderr
    assert "resuming: 30 of 30 records" in result.stderr


def test_a_malformed_line_names_its_file_and_line_before_any_model_loads(finished, tiny_pair, prompts: Path,  # noqa: F811
                                                                        tmp_path: Path) -> None:
    run_dir = copy_of(finished, tmp_path)
    for name in ("generations.jsonl", "scores.jsonl"):
        path = run_dir / name
        kept = lines(path)
        before = b"".join(kept[:2]) + b'{"id": "1", "oops": tr\n' + b"".join(kept[3:])
        path.write_bytes(before)
        result = baco(*sweep_args(tiny_pair, prompts, run_dir))
        assert_refused_before_loading(result, f"{path} line 3 is not a baco record")
        assert path.read_bytes() == before
        path.write_bytes(b"".join(kept))


def test_a_record_there_twice_is_refused(finished, tiny_pair, prompts: Path, tmp_path: Path) -> None:  # noqa: F811
    run_dir = copy_of(finished, tmp_path)
    path = run_dir / "generations.jsonl"
    kept = lines(path)
    path.write_bytes(b"".join(kept) + kept[0])
    first = json.loads(kept[0])
    result = baco(*sweep_args(tiny_pair, prompts, run_dir))
    assert_refused_before_loading(result, f"holds the record of {first['model']} for prompt id {first['id']!r} twice")


def test_a_folder_from_an_older_baco_is_refused(finished, tiny_pair, prompts: Path, tmp_path: Path) -> None:  # noqa: F811
    run_dir = copy_of(finished, tmp_path)
    spec = json.loads((run_dir / "sweep.json").read_text(encoding="utf-8"))
    del spec["model_files"]
    (run_dir / "sweep.json").write_text(json.dumps(spec), encoding="utf-8")
    result = baco(*sweep_args(tiny_pair, prompts, run_dir))
    assert_refused_before_loading(result, "model_files: not recorded there (written by an older baco)")


def test_a_second_sweep_on_the_same_folder_fails_at_once(tiny_pair, prompts: Path, tmp_path: Path) -> None:  # noqa: F811
    run_dir = tmp_path / "run"
    args = sweep_args(tiny_pair, prompts, run_dir)
    first = subprocess.Popen([sys.executable, "-m", "baco_local", *args], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    lock = run_dir / "sweep.lock"
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not (lock.exists() and lock.read_text().strip()):
            time.sleep(0.02)
        result = baco(*args)
        assert_refused_before_loading(result, f"another baco run (process {first.pid}) is writing {run_dir}")
    finally:
        first.kill()
        first.wait()


def test_a_refused_sweep_leaves_no_run_folder(prompts: Path, tmp_path: Path) -> None:  # noqa: F811
    base = write_large_sparse_model(tmp_path / "big-base.gguf", n_embd=32768)
    aligned = write_large_sparse_model(tmp_path / "big-aligned.gguf", n_embd=32768)
    run_dir = tmp_path / "run"
    result = baco("sweep", "-f", str(prompts), "--base", str(base), "--aligned", str(aligned), "-o", str(run_dir),
                  "--routers", "p", "--gammas", "0.3", "--baselines", "none")
    assert result.returncode == 2 and "--ignore-memory" in result.stderr
    assert not run_dir.exists()
