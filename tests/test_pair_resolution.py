"""Resolving `--pair NAME` through the CLI: local paths that do not exist, nothing written before both
sides are known, and `--plain` without a single ANSI code."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_gen_cli import assert_clean_error

from test_hub import FAKE_PACKAGE

COLOUR = re.compile(r"\x1b\[[0-9;]*m")  # colours and styles


def run_baco(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "baco_local", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture()
def prompts(tmp_path: Path) -> Path:
    path = tmp_path / "p.txt"
    path.write_text("Hello\n", encoding="utf-8")
    return path


def registry_env(tmp_path: Path, text: str, **extra: str) -> dict[str, str]:
    registry = tmp_path / "models.toml"
    registry.write_text(text, encoding="utf-8")
    return {**os.environ, "BACO_MODELS": str(registry), "HF_HUB_CACHE": str(tmp_path / "hf"),
            "XDG_CACHE_HOME": str(tmp_path / "xdg"), **extra}


@pytest.mark.parametrize("command", [["gen", "-f", "{prompts}", "--pair", "mine"], ["chat", "--pair", "mine"],
                                     ["models", "info", "mine"], ["models", "pull", "mine"]])
def test_a_local_path_that_does_not_exist_is_named(tiny_pair, prompts: Path, tmp_path: Path,
                                                   command: list[str]) -> None:
    _, aligned = tiny_pair
    missing = tmp_path / "models" / "base.gguf"
    env = registry_env(tmp_path, f'[pairs.mine.base]\npath = "{missing}"\n[pairs.mine.aligned]\npath = "{aligned}"\n')
    result = run_baco(*(part.format(prompts=prompts) for part in command), env=env)
    assert_clean_error(result, f"pair 'mine': the base model's path {missing} does not exist")
    assert "pull" not in result.stderr and "download" not in result.stderr


@pytest.mark.parametrize("offline, fragment", [("1", "HF_HUB_OFFLINE is set"), ("", "run `baco models pull tiny`")])
def test_nothing_is_assembled_when_the_other_side_is_missing(tiny_pair, prompts: Path, tmp_path: Path,
                                                             offline: str, fragment: str) -> None:
    """The base side comes from a package (assembled on first use); the aligned side is not here."""
    packages = tmp_path / "pkgs"
    packages.mkdir()
    (packages / "fake_model_pkg.py").write_text(FAKE_PACKAGE.format(source=str(tiny_pair[0])), encoding="utf-8")
    env = registry_env(tmp_path, '[pairs.tiny.base]\nrepo = "test-org/base"\nfile = "base.gguf"\n'
                                 'package = "fake_model_pkg"\n'
                                 '[pairs.tiny.aligned]\nrepo = "test-org/aligned"\nfile = "aligned.gguf"\n',
                       HF_HUB_OFFLINE=offline, HF_ENDPOINT="http://127.0.0.1:9",
                       PYTHONPATH=os.pathsep.join([str(packages), os.environ.get("PYTHONPATH", "")]))
    result = run_baco("gen", "-f", str(prompts), "--pair", "tiny", env=env)
    assert_clean_error(result, fragment)
    assert not (tmp_path / "xdg" / "baco" / "packages").exists()  # the base file was not assembled


def test_plain_leaves_no_ansi_codes_anywhere(tiny_pair, tmp_path: Path) -> None:
    pexpect = pytest.importorskip("pexpect")
    base, aligned = tiny_pair
    env = {**os.environ, "TERM": "xterm-256color", "XDG_STATE_HOME": str(tmp_path)}
    env.pop("NO_COLOR", None)
    for extra, lines in (([], "Hello\r/gamma lots\r/quit\r"), (["--top-p", "0"], "")):
        process = pexpect.spawn(sys.executable, ["-m", "baco_local", "chat", "--plain", "--base", str(base),
                                                 "--aligned", str(aligned), "--max-tokens", "6", "-t", "1", *extra],
                                env=env, encoding="utf-8", timeout=60, dimensions=(50, 200))
        process.send(lines)
        output = process.read()
        process.close()
        assert "memory estimate" in output or "Error:" in output, output
        assert not COLOUR.search(output), repr(output)
