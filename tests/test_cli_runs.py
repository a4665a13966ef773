"""What a llama.cpp or Ollama user expects of `baco gen`/`chat`/`sweep` runs: records that say what
ran, llama.cpp's escapes and random seed, cheap checks before any model is looked for, -p and -f -.

Real processes, real llama.cpp, the tiny pair (trained for CONTEXT_LENGTH tokens).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_gen_cli import assert_clean_error, baco, model_args, read_records
from tiny_models import CONTEXT_LENGTH

from baco_local.engine.seeds import sample_seed
from baco_local.models.memory import kv_cells


def baco_env(*args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess:
    """The real CLI with extra environment variables and optional standard input."""
    return subprocess.run([sys.executable, "-m", "baco_local", *args], input=stdin, capture_output=True, text=True,
                          timeout=120, env={**os.environ, **env})


def one_record(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    return json.loads(line)


def gen(tiny_pair, *args: str) -> subprocess.CompletedProcess:
    return baco("gen", *model_args(tiny_pair), "--max-tokens", "4", *args)


# --- records say what ran -------------------------------------------------------------------------

def test_a_capped_context_is_recorded_as_capped_and_said_once(tiny_pair) -> None:
    result = gen(tiny_pair, "-p", "Hello", "-c", "100000")
    assert one_record(result)["settings"]["ctx_size"] == CONTEXT_LENGTH
    notes = [line for line in result.stderr.splitlines() if "trained for" in line]
    assert len(notes) == 1 and "100000" in notes[0] and str(CONTEXT_LENGTH) in notes[0]
    assert f"{kv_cells(CONTEXT_LENGTH, 1, 4)} KV cells" in result.stderr  # the estimate uses the capped value

    default = gen(tiny_pair, "-p", "Hello")  # no -c: the default, capped without a word
    assert one_record(default)["settings"]["ctx_size"] == min(4096, CONTEXT_LENGTH)
    assert "trained for" not in default.stderr
    assert one_record(gen(tiny_pair, "-p", "Hello", "-c", "300"))["settings"]["ctx_size"] == 300


def test_models_info_estimates_the_capped_context(tiny_pair) -> None:
    result = baco("models", "info", str(tiny_pair[0]), "-c", "100000", "-n", "4")
    assert result.returncode == 0, result.stderr
    assert f"{kv_cells(CONTEXT_LENGTH, 4, 256)} KV cells" in result.stdout
    assert "trained for" in result.stderr
    assert_clean_error(baco("models", "info", str(tiny_pair[0]), "-c", "8"), "--ctx-size must be at least 16")


@pytest.mark.parametrize("args, draft", [
    (["-n", "1"], "adaptive:4-16"),
    (["-n", "2"], "off"),  # several samples run the step loop
    (["-n", "2", "--draft", "3"], "fixed:3"),
    (["-n", "1", "--no-draft"], "off"),
])
def test_the_draft_policy_recorded_is_the_one_that_ran(tiny_pair, args: list[str], draft: str) -> None:
    assert one_record(gen(tiny_pair, "-p", "Hello", *args))["settings"]["draft"] == draft


# --- llama.cpp's escapes ----------------------------------------------------------------------------

def test_stop_system_and_base_template_take_escapes(tiny_pair) -> None:
    args = ["-p", "Tell me a story", "-n", "2", "--max-tokens", "30", "--seed", "0"]
    plain = one_record(gen(tiny_pair, *args))
    assert any("\n" in text for text in plain["generations"])  # the tiny model writes newlines here

    stopped = one_record(gen(tiny_pair, *args, "--stop", r"\n"))
    assert stopped["settings"]["stop"] == ["\n"]
    assert stopped["generations"] == [text.split("\n")[0] for text in plain["generations"]]
    assert "stop" in [sample["finish_reason"] for sample in stopped["samples"]]

    settings = one_record(gen(tiny_pair, *args, "--system", r"Be \"brief\".\tThanks",
                              "--base-template", r"Q: {prompt}\nA:\x20"))["settings"]
    assert settings["system"] == 'Be "brief".\tThanks' and settings["base_template"] == "Q: {prompt}\nA: "

    literal = one_record(gen(tiny_pair, *args, "--no-escape", "--stop", r"\n"))
    assert literal["settings"]["stop"] == ["\\n"]
    assert literal["generations"] == plain["generations"]  # a backslash and an n never match
    literal_system = one_record(gen(tiny_pair, "-p", "Hi", "--no-escape", "--system", r"a\tb"))["settings"]["system"]
    assert literal_system == "a\\tb"


def test_an_escape_that_breaks_utf8_is_one_line(tiny_pair) -> None:
    assert_clean_error(gen(tiny_pair, "-p", "Hi", "--stop", r"\xff"), "--stop")


# --- --seed -1 ----------------------------------------------------------------------------------------

def test_seed_minus_one_draws_a_seed_records_it_and_resumes_with_it(tiny_pair, tmp_path: Path) -> None:
    prompts = tmp_path / "p.txt"
    prompts.write_text("Tell me a story\nWrite about the moon\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    first = gen(tiny_pair, "-f", str(prompts), "-n", "2", "--seed", "-1", "-o", str(out))
    assert first.returncode == 0, first.stderr
    records = read_records(out)
    seed = records[0]["settings"]["seed"]
    assert isinstance(seed, int) and seed >= 0 and f"--seed {seed}" in first.stderr
    assert [s["seed"] for s in records[0]["samples"]] == [sample_seed(seed, i, "1") for i in range(2)]

    again = gen(tiny_pair, "-f", str(prompts), "-n", "2", "--seed", str(seed))
    assert [json.loads(line)["generations"] for line in again.stdout.splitlines()] == \
        [r["generations"] for r in records]  # the recorded seed repeats the run

    out.write_text(out.read_text(encoding="utf-8").splitlines(keepends=True)[0], encoding="utf-8")
    resumed = gen(tiny_pair, "-f", str(prompts), "-n", "2", "--seed", "-1", "-o", str(out))
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr and f"seed {seed} recorded" in resumed.stderr
    assert read_records(out) == records  # the second prompt again, with the same seed


def test_other_negative_seeds_are_refused(tiny_pair) -> None:
    assert_clean_error(gen(tiny_pair, "-p", "Hi", "--seed", "-2"), "--seed must be >= 0, or -1")


# --- cheap checks first -------------------------------------------------------------------------------

@pytest.fixture()
def missing_pair(tmp_path: Path) -> dict[str, str]:
    """A user registry with a pair whose files are not downloaded (and no network)."""
    registry = tmp_path / "models.toml"
    registry.write_text('[pairs.away]\n[pairs.away.base]\nrepo = "nobody/base-GGUF"\nfile = "base.gguf"\n'
                        '[pairs.away.aligned]\nrepo = "nobody/aligned-GGUF"\nfile = "aligned.gguf"\n',
                        encoding="utf-8")
    return {"BACO_MODELS": str(registry), "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}


@pytest.mark.parametrize("args, fragment", [
    (["gen", "-f", "{tmp}/nope.txt"], "nope.txt does not exist"),
    (["gen", "-p", "Hi", "--gamma", "7"], "probability in [0, 1]"),
    (["gen", "-p", "Hi", "--base-template", "no placeholder"], "{prompt}"),
    (["gen", "-p", "Hi", "-c", "8"], "--ctx-size must be at least 16"),
    (["gen", "-p", "Hi", "--seed", "-5"], "--seed"),
    (["chat", "--temp", "-1"], "--temp"),
    (["sweep", "-f", "{tmp}/nope.txt", "-o", "{tmp}/run"], "nope.txt does not exist"),
    (["sweep", "-f", "{tmp}/nope.txt", "-o", "{tmp}/run", "--gammas", "2"], "--gammas: 2 is out of range"),
])
def test_bad_values_are_refused_before_looking_for_the_models(missing_pair: dict[str, str], tmp_path: Path,
                                                              args: list[str], fragment: str) -> None:
    result = baco_env(*(arg.format(tmp=tmp_path) for arg in args), "--pair", "away", **missing_pair)
    assert_clean_error(result, fragment)  # one line: no memory estimate, no missing-file message first


def test_a_bad_chat_template_is_refused_before_the_models(missing_pair: dict[str, str], tmp_path: Path) -> None:
    template = tmp_path / "broken.jinja"
    template.write_text("{% for m in messages %}", encoding="utf-8")
    result = baco_env("gen", "-p", "Hi", "--pair", "away", "--chat-template-file", str(template), **missing_pair)
    assert_clean_error(result, "syntax error")


def test_the_missing_files_are_reported_once_the_values_are_fine(missing_pair: dict[str, str]) -> None:
    assert_clean_error(baco_env("gen", "-p", "Hi", "--pair", "away", **missing_pair), "away")


# --- prompts without a file -----------------------------------------------------------------------------

def test_a_single_prompt_with_p(tiny_pair) -> None:
    record = one_record(gen(tiny_pair, "-p", "Hello there"))
    assert record["id"] == 1 and record["prompt"] == "Hello there" and len(record["generations"]) == 1


@pytest.mark.parametrize("stdin, expected", [
    ("Tell me a story\n\nWrite about the moon\n", [(1, "Tell me a story"), (3, "Write about the moon")]),
    ('{"id": "a", "prompt": "Hello"}\n{"id": "b", "prompt": "Bye"}\n', [("a", "Hello"), ("b", "Bye")]),
])
def test_prompts_from_standard_input(tiny_pair, stdin: str, expected: list) -> None:
    result = baco_env("gen", "-f", "-", *model_args(tiny_pair), "--max-tokens", "3", stdin=stdin)
    assert result.returncode == 0, result.stderr
    assert [(r["id"], r["prompt"]) for r in map(json.loads, result.stdout.splitlines())] == expected


@pytest.mark.parametrize("args, fragment", [
    ([], "-f FILE"),
    (["-f", "x.txt", "-p", "Hi"], "-f FILE"),
    (["-p", "  "], "-p is empty"),
])
def test_prompt_source_errors(tiny_pair, args: list[str], fragment: str) -> None:
    assert_clean_error(baco("gen", *model_args(tiny_pair), *args), fragment)


def test_n_predict_is_max_tokens(tiny_pair) -> None:
    record = one_record(baco("gen", *model_args(tiny_pair), "-p", "Hello", "--n-predict", "3", "--no-draft"))
    assert record["settings"]["max_tokens"] == 3 and record["samples"][0]["tokens"] <= 3
