"""Shared fixtures: tiny GGUF model pairs written once per test session, and an Engine on them."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_models import write_pair

from baco_local import Engine, ModelPair, PairSpec


@pytest.fixture(scope="session", autouse=True)
def private_baco_cache(tmp_path_factory: pytest.TempPathFactory):
    """baco's cache folder (concurrency and batch-cost measurements) is the session's own, so tests
    never write into the user's ``~/.cache/baco``; tests that need another set ``XDG_CACHE_HOME``."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
        yield


@pytest.fixture(scope="session")
def tiny_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(base.gguf, aligned.gguf) of the tiny pair, seed 0, aligned with the Gemma-style template."""
    return write_pair(tmp_path_factory.mktemp("tiny_pair"))


@pytest.fixture(scope="module")
def engine(tiny_pair: tuple[Path, Path]):
    """An Engine on the tiny pair (context 256, one thread), shared by a test module; modules that
    need another shape define their own ``engine``."""
    base, aligned = tiny_pair
    pair = ModelPair(PairSpec(base, aligned))
    eng = Engine(pair, ctx_size=256, threads=1)
    yield eng
    eng.close()
    pair.close()
