"""``baco models`` list / pull / info / check, and the --pair helpers gen and chat use.

The commands are mounted on a fresh typer app here; a BacoError they raise reaches the test as
``result.exception`` (the real ``baco`` entry point turns it into ``Error: ...`` and exit 2).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import baco_local
from baco_local.models import memory
from baco_local.catalog import registry
from baco_local.cli import models_cmd
from baco_local.errors import DownloadError, MemoryBudgetError, ModelFileError, RegistryError
from fake_hub import FakeHub
from gguf_maker import write_model, write_pair

pytest_plugins = ["hub_fixtures"]  # the fake_hub and hf_env fixtures

app = typer.Typer()
app.add_typer(models_cmd.models_app, name="models")


@app.callback()
def _root() -> None:
    """Test root."""


def run(*args: str):
    return CliRunner().invoke(app, ["models", *args])


@pytest.fixture
def pair_files(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "files").mkdir()
    return write_pair(tmp_path / "files")


@pytest.fixture
def user_registry(hf_env: Path, tmp_path: Path, pair_files: tuple[Path, Path],
                  monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "models.toml"
    path.write_text(f"""
[pairs.local]
description = "local files"
[pairs.local.base]
path = "{pair_files[0]}"
[pairs.local.aligned]
path = "{pair_files[1]}"

[pairs.half]
[pairs.half.base]
path = "{pair_files[0]}"
[pairs.half.aligned]
repo = "test-org/aligned-GGUF"
file = "aligned.gguf"
size_mb = 2

[pairs.remote]
[pairs.remote.base]
repo = "test-org/base-GGUF"
file = "base.gguf"
size_mb = 1
[pairs.remote.aligned]
repo = "test-org/aligned-GGUF"
file = "aligned.gguf"
size_mb = 1
""", encoding="utf-8")
    monkeypatch.setenv("BACO_MODELS", str(path))
    return path


@pytest.fixture
def remote(fake_hub: FakeHub, pair_files: tuple[Path, Path]) -> FakeHub:
    fake_hub.add("test-org/base-GGUF", "base.gguf", pair_files[0].read_bytes())
    fake_hub.add("test-org/aligned-GGUF", "aligned.gguf", pair_files[1].read_bytes())
    return fake_hub


def test_list_shows_every_pair_and_what_is_here(user_registry: Path) -> None:
    result = run("list")
    assert result.exit_code == 0, result.output
    for name in ("gemma-3-270m", "olmo-2-7b", "local", "remote"):
        assert name in result.stdout
    assert "tiny-base.gguf" in result.stdout and "path, " in result.stdout
    assert "missing" in result.stdout


def download_column(listing: str, pair: str) -> str:
    return next(line for line in listing.splitlines() if line.strip().startswith(pair + " ")).split()[1:3]


def test_list_shows_what_is_left_to_download(user_registry: Path) -> None:
    listing = run("list").stdout
    assert download_column(listing, "local") == ["none", "tiny-base.gguf"]
    assert download_column(listing, "half") == ["~2", "MB"]  # only the aligned file is missing
    assert download_column(listing, "remote") == ["~2", "MB"]


def test_list_names_the_installed_registry_not_a_link_target(user_registry: Path) -> None:
    installed = Path(baco_local.__file__).parent / "models.toml"
    assert registry.builtin_path() == installed  # a source checkout makes it a symbolic link
    assert f"registries:{installed},{user_registry};" in "".join(run("list").output.split())  # rich wraps it


def test_list_json(user_registry: Path, pair_files: tuple[Path, Path]) -> None:
    result = run("list", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["registries"][-1] == str(user_registry) and document["cache"]
    pairs = {pair["name"]: pair for pair in document["pairs"]}
    assert {"gemma-3-270m", "local", "half", "remote"} <= set(pairs)
    half = pairs["half"]
    assert half["download_bytes"] == 2_000_000
    assert half["base"] == {"source": str(pair_files[0]), "file": pair_files[0].name, "where": "path",
                            "path": str(pair_files[0]), "size_bytes": pair_files[0].stat().st_size,
                            "to_download": False}
    assert half["aligned"]["where"] == "missing" and half["aligned"]["to_download"] is True
    assert half["aligned"]["path"] is None and pairs["local"]["download_bytes"] == 0


def test_info_json(user_registry: Path, pair_files: tuple[Path, Path]) -> None:
    result = run("info", "local", "--json", "-c", "100000", "-n", "2", "--max-tokens", "10")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    base = document["models"][0]
    assert base["path"] == str(pair_files[0]) and base["architecture"] == "llama"
    assert base["context_length"] == 2048 and isinstance(base["parameters"], int)
    assert document["memory"]["kv_cells"] == memory.kv_cells(2048, 2, 10)  # the capped context
    assert len(document["memory"]["models"]) == 2 and document["memory"]["total_bytes"] > 0
    assert {"available_bytes", "fits", "samples"} <= set(document["memory"])


def test_check_json(pair_files: tuple[Path, Path], tmp_path: Path) -> None:
    ok = run("check", str(pair_files[0]), str(pair_files[1]), "--json")
    assert ok.exit_code == 0 and json.loads(ok.stdout)["compatible"] is True
    other = write_model(tmp_path / "other.gguf", extra_tokens=200)
    bad = run("check", str(pair_files[0]), str(other), "--json")
    document = json.loads(bad.stdout)
    assert bad.exit_code == 2 and document["compatible"] is False and document["extra_ids"] == 200
    assert any("200 extra tokens" in problem for problem in document["problems"])


def test_pull_downloads_both_files_and_checks_them(user_registry: Path, remote: FakeHub, hf_env: Path) -> None:
    result = run("pull", "remote")
    assert result.exit_code == 0, result.output
    assert "compatible: yes" in result.stdout
    assert len(remote.gets("base.gguf")) == 1 and len(remote.gets("aligned.gguf")) == 1
    listing = run("list").stdout
    assert "cache," in listing
    again = run("pull", "remote")  # nothing left to fetch
    assert again.exit_code == 0 and len(remote.gets("base.gguf")) == 1


def test_pull_with_the_hub_down_is_one_line(user_registry: Path, remote: FakeHub) -> None:
    remote.stop()
    result = run("pull", "remote")
    assert isinstance(result.exception, DownloadError)
    assert "cannot reach" in str(result.exception) and "`baco models pull remote`" in str(result.exception)


def test_pull_an_unknown_pair(user_registry: Path) -> None:
    assert isinstance(run("pull", "nope").exception, RegistryError)


def test_pull_an_incompatible_pair_exits_2(user_registry: Path, remote: FakeHub, tmp_path: Path) -> None:
    other = write_model(tmp_path / "other.gguf", extra_tokens=200)
    remote.add("test-org/aligned-GGUF", "aligned.gguf", other.read_bytes())
    result = run("pull", "remote")
    assert result.exit_code == 2 and "problem:" in result.stdout


def test_info_on_a_file(user_registry: Path, pair_files: tuple[Path, Path]) -> None:
    result = run("info", str(pair_files[1]), "--ctx-size", "1024", "-n", "2")
    assert result.exit_code == 0, result.output
    out = result.stdout
    for words in ("architecture", "llama", "parameters", "quantisation", "F32", "vocabulary",
                  "context length", "2048", "chat template", "yes", "end of generation", "</s> (2)",
                  "memory estimate", "1 model", "2 sequences", "available memory"):
        assert words in out, words
    assert "KV cells each" in out


def test_info_on_a_pair_estimates_both(user_registry: Path) -> None:
    result = run("info", "local")
    assert result.exit_code == 0, result.output
    assert "tiny-base.gguf" in result.stdout and "tiny-aligned.gguf" in result.stdout
    assert "2 models" in result.stdout and re.search(r"chat template\s+no", result.stdout)


def test_info_on_a_missing_pair_names_the_pull_command(user_registry: Path) -> None:
    result = run("info", "remote")
    assert isinstance(result.exception, RegistryError)
    assert "run `baco models pull remote`" in str(result.exception)


def test_info_on_something_unknown(user_registry: Path) -> None:
    assert "neither a file nor a known pair" in str(run("info", "no-such-thing").exception)


def test_check_exit_codes(pair_files: tuple[Path, Path], tmp_path: Path) -> None:
    ok = run("check", str(pair_files[0]), str(pair_files[1]))
    assert ok.exit_code == 0 and "compatible: yes" in ok.stdout
    other = write_model(tmp_path / "other.gguf", extra_tokens=200)
    bad = run("check", str(pair_files[0]), str(other))
    assert bad.exit_code == 2 and "200 extra tokens" in bad.stdout


def test_check_a_file_that_is_not_gguf(pair_files: tuple[Path, Path], tmp_path: Path) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a model at all")
    assert isinstance(run("check", str(pair_files[0]), str(junk)).exception, ModelFileError)


def test_pair_helper_refuses_to_download_when_not_interactive(user_registry: Path, remote: FakeHub) -> None:
    with pytest.raises(DownloadError, match="run `baco models pull remote` first, or pass --yes"):
        models_cmd.resolve_pair_for_cli("remote", assume_yes=False)
    resolved = models_cmd.resolve_pair_for_cli("remote", assume_yes=True)
    assert resolved.base_path.is_file() and resolved.default_router == "p-punc"


def test_pair_helper_finds_local_files(user_registry: Path, pair_files: tuple[Path, Path]) -> None:
    resolved = models_cmd.resolve_pair_for_cli("local", assume_yes=False)
    assert (resolved.base_path, resolved.aligned_path) == pair_files


def test_memory_helper_prints_the_estimate_and_refuses_when_short(pair_files: tuple[Path, Path],
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    estimate = models_cmd.check_memory_for_run(*pair_files, n_cells=1024, n_seq=2)
    assert "memory estimate" in capsys.readouterr().err
    monkeypatch.setattr(memory, "available_memory", lambda: estimate.total // 2)
    with pytest.raises(MemoryBudgetError, match="--ignore-memory"):
        models_cmd.check_memory_for_run(*pair_files, n_cells=1024, n_seq=2)
    models_cmd.check_memory_for_run(*pair_files, n_cells=1024, n_seq=2, ignore_limit=True)
