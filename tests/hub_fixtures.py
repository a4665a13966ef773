"""pytest fixtures around :mod:`fake_hub` (load with ``pytest_plugins = ["hub_fixtures"]``)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from huggingface_hub import constants as hf_constants

from fake_hub import FakeHub


@pytest.fixture
def fake_hub() -> Iterator[FakeHub]:
    """A running, empty fake hub."""
    server = FakeHub().start()
    yield server
    server.stop()


@pytest.fixture
def hf_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_hub: FakeHub) -> Path:
    """huggingface_hub pointed at the fake hub and a temporary cache, as HF_ENDPOINT/HF_HUB_CACHE would.

    huggingface_hub reads those variables once, at import, so the test sets its constants instead;
    ``test_hub.py`` also checks the real variables in fresh processes. Returns the cache folder.
    """
    cache = tmp_path / "hf-cache"
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hf_constants, "ENDPOINT", fake_hub.url)
    monkeypatch.setattr(hf_constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        fake_hub.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf_constants, "AGENT_HARNESSES_PATH", str(tmp_path / "agent_harnesses.json"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.delenv("BACO_MODELS", raising=False)
    return cache
