"""Defaults and limits through the real CLI: the entropy routers' own γ, and llama.cpp's limits
(parallel sequences, batch size, context) refused up front with one line naming the limit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_gen_cli import assert_clean_error, baco, model_args

from baco_local import Engine, GenerationSettings, Message, ModelPair, PairSpec, get_router
from baco_local.engine.backend import MAX_SEQUENCES
from baco_local.engine.routers import DEFAULT_ENTROPY_GAMMA, DEFAULT_GAMMA
from baco_local.errors import UsageError


def settings_of(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[0])["settings"]


@pytest.mark.parametrize(("router", "gamma"), [("h", DEFAULT_ENTROPY_GAMMA), ("h-punc", DEFAULT_ENTROPY_GAMMA),
                                               ("p-punc", DEFAULT_GAMMA), ("p", DEFAULT_GAMMA)])
def test_each_router_kind_has_its_own_default_gamma(tiny_pair, router: str, gamma: float) -> None:
    result = baco("gen", "-p", "Tell me a story", *model_args(tiny_pair), "--router", router, "--max-tokens", "4")
    settings = settings_of(result)
    assert (settings["router"], settings["gamma"]) == (router, gamma)
    assert DEFAULT_ENTROPY_GAMMA != DEFAULT_GAMMA  # h no longer inherits the probability routers' 0.3


def test_a_given_gamma_wins_over_the_entropy_default(tiny_pair) -> None:
    result = baco("gen", "-p", "Tell me a story", *model_args(tiny_pair), "--router", "h", "-g", "0.7",
                  "--max-tokens", "4")
    assert settings_of(result)["gamma"] == 0.7


def pair_registry(tmp_path: Path, tiny_pair, fields: str) -> dict[str, str]:
    base, aligned = tiny_pair
    registry = tmp_path / "models.toml"
    registry.write_text(f'[pairs.tiny]\n{fields}\n[pairs.tiny.base]\npath = "{base}"\n'
                        f'[pairs.tiny.aligned]\npath = "{aligned}"\n', encoding="utf-8")
    return {**os.environ, "BACO_MODELS": str(registry)}


def run_pair(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "baco_local", "gen", "-p", "Tell me a story", "--pair", "tiny",
                           "--max-tokens", "4", "-t", "1", *args], capture_output=True, text=True, timeout=120,
                          env=env)


def test_a_pair_sets_both_defaults(tiny_pair, tmp_path: Path) -> None:
    env = pair_registry(tmp_path, tiny_pair, 'router = "h"\ngamma = 0.45\nentropy_gamma = 1.25')
    assert settings_of(run_pair(env))["gamma"] == 1.25  # the pair's router is h: its entropy_gamma
    assert settings_of(run_pair(env, "--router", "p"))["gamma"] == 0.45
    assert settings_of(run_pair(env, "--router", "h-punc"))["gamma"] == 1.25


def test_a_pair_gamma_out_of_range_names_entropy_gamma(tiny_pair, tmp_path: Path) -> None:
    env = pair_registry(tmp_path, tiny_pair, 'router = "h"\ngamma = 2.5')
    assert_clean_error(run_pair(env), "entropy_gamma")
    env = pair_registry(tmp_path, tiny_pair, "entropy_gamma = -1")
    assert_clean_error(run_pair(env), "entropy_gamma")


@pytest.mark.parametrize("command", ["gen", "sweep"])
def test_too_many_samples_are_refused_before_loading(tiny_pair, command: str, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Tell me a story\n", encoding="utf-8")
    extra = ["--output", str(tmp_path / "sweep")] if command == "sweep" else []
    result = baco(command, "-f", str(prompts), *model_args(tiny_pair), "-n", str(MAX_SEQUENCES + 1), *extra)
    assert_clean_error(result, f"limit of {MAX_SEQUENCES} parallel sequences")  # one line: no memory estimate
    assert "LLAMA_MAX_SEQ" in result.stderr


def test_the_sequence_limit_itself_runs(tiny_pair) -> None:
    result = baco("gen", "-p", "Hi", *model_args(tiny_pair), "-n", str(MAX_SEQUENCES), "--max-tokens", "1",
                  "--router", "p")
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["generations"]) == MAX_SEQUENCES


def test_a_prompt_too_long_is_refused_before_any_is_generated(tiny_pair, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Tell me a story\n" + "word " * 400 + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = baco("gen", "-f", str(prompts), *model_args(tiny_pair), "-c", "128", "--max-tokens", "4",
                  "-o", str(out))
    assert result.returncode == 2, result.stderr
    error = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and "the context is 128" in error[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists() or out.read_text(encoding="utf-8") == ""  # not even the short first prompt ran


def test_more_samples_than_the_batch_holds_are_refused(tiny_pair) -> None:
    base, aligned = tiny_pair
    pair = ModelPair(PairSpec(base, aligned))
    engine = Engine(pair, ctx_size=256, threads=1, n_batch=4)
    try:
        settings = GenerationSettings(get_router("p"), 0.3, max_tokens=2)
        with pytest.raises(UsageError, match="n_batch=4"):
            engine.generate([Message("user", "Hi")], 5, settings)
        with pytest.raises(UsageError, match="LLAMA_MAX_SEQ"):
            engine.generate([Message("user", "Hi")], MAX_SEQUENCES + 1, settings)
        generation = engine.generate([Message("user", "Hi")], 4, settings)
        list(generation)
        assert len(generation.samples) == 4
    finally:
        engine.close()
        pair.close()


@pytest.mark.parametrize("parallel", [MAX_SEQUENCES + 1, 0])
def test_parallel_beyond_the_limits_is_refused_before_the_models_are_looked_for(tmp_path: Path, parallel: int) -> None:
    """Checked before the pair's files are even looked for (here they are missing and the hub is
    offline: that error must not come first)."""
    registry = tmp_path / "models.toml"
    registry.write_text('[pairs.away.base]\nrepo = "test-org/base"\nfile = "base.gguf"\n'
                        '[pairs.away.aligned]\nrepo = "test-org/aligned"\nfile = "aligned.gguf"\n', encoding="utf-8")
    env = {**os.environ, "BACO_MODELS": str(registry), "HF_HUB_CACHE": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-m", "baco_local", "gen", "-p", "Hi", "--pair", "away",
                             "--parallel", str(parallel)], capture_output=True, text=True, timeout=120, env=env)
    if parallel > MAX_SEQUENCES:
        assert_clean_error(result, f"--parallel {parallel} is more than llama.cpp's limit of {MAX_SEQUENCES} "
                                   "parallel sequences per context (LLAMA_MAX_SEQ)")
    else:
        assert_clean_error(result, f"--parallel must be between -n (1) and {MAX_SEQUENCES}, got 0")
