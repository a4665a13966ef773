"""Shared fixtures: tiny GGUF model pairs written once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_models import write_pair


@pytest.fixture(scope="session")
def tiny_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(base.gguf, aligned.gguf) of the tiny pair, seed 0, aligned with the Gemma-style template."""
    return write_pair(tmp_path_factory.mktemp("tiny_pair"))
