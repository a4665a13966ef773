"""Downloads on a real terminal: the "Download now?" question of `--pair` and `baco models pull`'s
progress bar, in `baco` processes on a pseudo-terminal (pexpect), and the same commands on pipes.

The hub is ``tests/fake_hub.py`` on 127.0.0.1 (``HF_ENDPOINT``), the cache a temporary folder:
nothing here reaches the internet.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fake_hub import FakeHub
from test_hub import FILE_ALIGNED, FILE_BASE, REGISTRY, REPO_ALIGNED, REPO_BASE, published, tiny_files  # noqa: F401 (fixtures)

pexpect = pytest.importorskip("pexpect")
pytest_plugins = ["hub_fixtures"]  # the fake_hub fixture

QUESTION = re.compile(r"Pair 'tiny' needs 2 files, about 2 MB downloaded into .*\. Download now\? \S*\[y/n\]")
BAR_END = re.compile(r"\r[^\r\n]*tiny-(base|aligned)\.gguf: 100%\|[^\r\n]*\| ([\d.]+[kMG]?)/\2")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture
def env(tmp_path: Path, published: FakeHub) -> dict[str, str]:
    """A user's environment: the pair in BACO_MODELS, HF_ENDPOINT at the fake hub, an empty cache."""
    (tmp_path / "models.toml").write_text(REGISTRY, encoding="utf-8")
    environment = {**os.environ, "BACO_MODELS": str(tmp_path / "models.toml"), "HF_ENDPOINT": published.url,
                   "HF_HUB_CACHE": str(tmp_path / "hf"), "HF_HOME": str(tmp_path / "hf-home"),
                   "XDG_CACHE_HOME": str(tmp_path / "xdg"), "XDG_STATE_HOME": str(tmp_path / "state"),
                   "TERM": "xterm-256color", "PYTHONIOENCODING": "utf-8"}
    for name in ("HF_HUB_OFFLINE", "HF_HUB_DISABLE_PROGRESS_BARS", "NO_COLOR", "HF_TOKEN"):
        environment.pop(name, None)
    return environment


def spawn(env: dict[str, str], *args: str) -> pexpect.spawn:
    """`baco ARGS` on a pseudo-terminal (stdin, stdout and stderr all the terminal)."""
    return pexpect.spawn(sys.executable, ["-m", "baco_local", *args], env=env, encoding="utf-8", timeout=60,
                         dimensions=(50, 160))


def finish(process: pexpect.spawn) -> tuple[str, int]:
    """Everything the process prints until it exits, and its exit status."""
    output = process.read()
    process.close()
    assert "Traceback" not in output, output
    return output, process.exitstatus


def gen_on_terminal(env: dict[str, str]) -> pexpect.spawn:
    """`baco gen --pair tiny` with its files missing, stopped at the question."""
    process = spawn(env, "gen", "-p", "Hello", "--pair", "tiny", "--max-tokens", "4", "-t", "1")
    process.expect(QUESTION)
    return process


def error_lines(output: str) -> list[str]:
    return [line for line in ANSI.sub("", output).splitlines() if line.startswith("Error:")]


def test_pull_draws_a_bar_per_file_on_a_terminal_then_the_report(env: dict[str, str], published: FakeHub) -> None:
    output, status = finish(spawn(env, "models", "pull", "tiny"))
    assert status == 0, output
    ends = list(BAR_END.finditer(output))
    assert [m.group(1) for m in ends] == ["base", "aligned"], repr(output)
    assert re.search(r"\r[^\r\n]*tiny-base\.gguf:\s+0%\|", output), repr(output)  # the bar is drawn from 0%, in place
    base_note, aligned_note = output.index("base: downloading"), output.index("aligned: downloading")
    assert base_note < ends[0].start() < aligned_note < ends[1].start()
    after = output[ends[1].end():]
    assert "\r" not in after.replace("\r\n", "\n")  # the bars are finished before the report
    assert ANSI.sub("", after).strip().splitlines()[-1] == "compatible: yes"
    assert len(published.gets(FILE_BASE)) == len(published.gets(FILE_ALIGNED)) == 1


def test_pull_prints_plain_lines_when_not_on_a_terminal(env: dict[str, str], published: FakeHub,
                                                        tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "baco_local", "models", "pull", "tiny"], env=env,
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    cache = tmp_path / "hf"
    assert result.stderr.splitlines() == [f"base: downloading {REPO_BASE}/{FILE_BASE} into {cache}",
                                          f"aligned: downloading {REPO_ALIGNED}/{FILE_ALIGNED} into {cache}"]
    assert "\r" not in result.stdout + result.stderr and "\x1b" not in result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == "compatible: yes"
    assert len(published.gets(FILE_BASE)) == len(published.gets(FILE_ALIGNED)) == 1


@pytest.mark.parametrize("answer", ["y", ""])  # Enter takes the default, yes
def test_yes_at_the_question_downloads_then_generates(env: dict[str, str], published: FakeHub, answer: str) -> None:
    process = gen_on_terminal(env)
    assert not published.gets(FILE_BASE)  # nothing is fetched before the answer
    process.send(answer + "\r")
    output, status = finish(process)
    assert status == 0, output
    assert len(BAR_END.findall(output)) == 2, repr(output)
    assert '"generations": [' in output and '"model": "baco:p-punc@0.3:tiny"' in output
    assert len(published.gets(FILE_BASE)) == len(published.gets(FILE_ALIGNED)) == 1


@pytest.mark.parametrize("keys", ["n\r", "\x04"])  # no, and Ctrl-D (no answer at all)
def test_no_at_the_question_downloads_nothing_and_names_the_pull_command(env: dict[str, str], published: FakeHub,
                                                                         keys: str) -> None:
    process = gen_on_terminal(env)
    process.send(keys)
    output, status = finish(process)
    assert status == 2, output
    assert error_lines(output) == ["Error: model files for pair 'tiny' are not downloaded (2 files, about 2 MB); "
                                   "run `baco models pull tiny` first, or pass --yes to download them now"]
    assert not published.gets(FILE_BASE) and not published.gets(FILE_ALIGNED)


def test_an_answer_that_is_not_yes_or_no_is_asked_again(env: dict[str, str], published: FakeHub) -> None:
    process = gen_on_terminal(env)
    process.send("maybe\r")
    process.expect_exact("Please enter Y or N")
    process.expect(r"\[y/n\]")
    process.send("n\r")
    output, status = finish(process)
    assert status == 2 and len(error_lines(output)) == 1 and not published.gets(FILE_BASE)


def test_chat_asks_the_same_question(env: dict[str, str], published: FakeHub) -> None:
    process = spawn(env, "chat", "--pair", "tiny", "--plain", "--max-tokens", "4", "-t", "1")
    process.expect(QUESTION)
    process.send("y\r")
    process.expect_exact(">>> ")
    process.send("/quit\r")
    output, status = finish(process)
    assert status == 0 and len(published.gets(FILE_ALIGNED)) == 1


def test_no_question_when_stderr_is_not_the_terminal(env: dict[str, str], published: FakeHub, tmp_path: Path) -> None:
    """stdin is the terminal but the question would not be seen: refuse, as in a script."""
    errors = tmp_path / "errors.txt"
    command = " ".join([sys.executable, "-m", "baco_local", "gen", "-p", "Hello", "--pair", "tiny"])
    process = pexpect.spawn("/bin/sh", ["-c", f"exec {command} 2>{errors}"], env=env, encoding="utf-8", timeout=60)
    output, status = finish(process)
    assert status == 2 and "Download now" not in output
    assert "run `baco models pull tiny` first" in errors.read_text(encoding="utf-8")
    assert not published.gets(FILE_BASE)
