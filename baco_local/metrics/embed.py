"""Sentence-embedding backends for the semantic metrics, behind one small interface.

``minilm`` is all-MiniLM-L6-v2 run on numpy (:mod:`baco_local.metrics.minilm`); a ``.gguf`` path
is any embedding model run by llama.cpp; a directory is a sentence-transformers BERT model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from ..errors import ModelFileError, UsageError
from ..models.gguf_file import read_gguf
from .extras import SEMANTIC_MODULES
from .minilm import BertEmbedder, minilm_dir

DEFAULT_EMBEDDER = "minilm"
GGUF_MAX_TOKENS = 512  # longer texts are truncated, like MiniLM's 256 word pieces


class Embedder(Protocol):
    """Turns texts into an ``(n, d)`` array of sentence embeddings."""

    name: str

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One embedding row per text."""
        ...


class LlamaEmbedder:
    """A GGUF model run by llama.cpp in embedding mode.

    Uses the model's own pooling (as stored in the GGUF); for a model without one (a causal LM)
    the token embeddings are averaged. Texts are cut to their first 512 tokens.
    """

    def __init__(self, path: Path) -> None:
        self.name = str(path)
        read_gguf(path)  # a ModelFileError for a bad file, before llama.cpp can abort on it
        import llama_cpp  # a core dependency, but heavy: load it only here

        try:
            self._llama = llama_cpp.Llama(
                model_path=str(path), embedding=True, n_ctx=GGUF_MAX_TOKENS,
                n_batch=GGUF_MAX_TOKENS, n_ubatch=GGUF_MAX_TOKENS, verbose=False,
            )
        except ValueError as exc:
            raise ModelFileError(f"llama.cpp cannot load embedding model {path}: {exc}") from exc

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One embedding per text (texts are embedded one at a time)."""
        rows = []
        for text in texts:
            vector = np.asarray(self._llama.embed(text, truncate=True), dtype=np.float64)
            if vector.ndim == 2:  # no pooling in the model: one row per token
                vector = vector.mean(axis=0)
            rows.append(vector)
        return np.stack(rows) if rows else np.zeros((0, self._llama.n_embd()))


def embedder_requirements(spec: str) -> tuple[str, ...]:
    """The optional packages an ``--embedder`` value needs (llama.cpp is a core dependency)."""
    if spec == DEFAULT_EMBEDDER:
        return SEMANTIC_MODULES
    return () if Path(spec).suffix.lower() == ".gguf" else ("tokenizers", "safetensors")


def load_embedder(spec: str) -> Embedder:
    """``"minilm"``, a ``.gguf`` file, or a sentence-transformers directory, as an Embedder."""
    if spec == DEFAULT_EMBEDDER:
        return BertEmbedder(minilm_dir(), name="all-MiniLM-L6-v2")
    path = Path(spec).expanduser()
    if path.suffix.lower() == ".gguf":
        return LlamaEmbedder(path)
    if path.is_dir():
        return BertEmbedder(path)
    raise UsageError(
        f"--embedder must be 'minilm', a .gguf file or a sentence-transformers directory, got '{spec}'"
    )
