"""How much memory two models need, before llama.cpp loads them, and whether it is there.

The estimate follows what llama.cpp 0.3.36 allocates for a context made the way
:mod:`baco_local.engine.backend` makes one (a unified KV cache of ``n_ctx`` cells shared by ``n_seq``
sequences, f16 K and V, the full-size sliding-window cache that is llama.cpp's default):

- weights: the GGUF's tensor data, as it is (memory-mapped; what ``llama_model_size`` reports);
- KV cache: ``n_ctx`` cells x layers x (K + V head widths x KV heads) x 2 bytes;
- compute: llama.cpp's scratch for one micro-batch (the ``n_ubatch`` x vocabulary logits, a few
  activations, the attention mask) plus the output buffer of ``n_seq`` logit rows. This part is
  approximate (within a few percent of llama.cpp's "compute buffer size" on CPU).

Recurrent (Mamba/RWKV) layers are not modelled; their state is small next to the weights.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..errors import MemoryBudgetError, UsageError
from .gguf_file import GGUFSummary, read_gguf

KV_BYTES = 2  # f16 K and V
LOGIT_BYTES = 4  # f32
MASK_BYTES = 2  # the f16 attention mask, n_ctx x n_ubatch
MIN_CTX_SIZE = 16  # a prompt and a few tokens
GIB = 1024 ** 3
MIB = 1024 ** 2


@dataclass(frozen=True)
class ModelShape:
    """The numbers of one GGUF the estimate needs."""

    n_layer: int
    n_head_kv: Sequence[int]  # per layer
    head_dim_k: int
    head_dim_v: int
    n_embd: int
    n_vocab: int
    weights_bytes: int


@dataclass(frozen=True)
class ModelMemory:
    """Estimated bytes for one model at a given context."""

    path: Path
    weights: int
    kv_cache: int
    compute: int

    @property
    def total(self) -> int:
        """Weights + KV cache + compute buffers."""
        return self.weights + self.kv_cache + self.compute


@dataclass(frozen=True)
class MemoryEstimate:
    """Estimated bytes for the models run together (base first)."""

    models: tuple[ModelMemory, ...]
    n_ctx: int
    n_seq: int

    @property
    def total(self) -> int:
        """Everything, all models."""
        return sum(m.total for m in self.models)

    @property
    def weights(self) -> int:
        """All models' weights."""
        return sum(m.weights for m in self.models)

    @property
    def kv_cache(self) -> int:
        """All models' KV caches."""
        return sum(m.kv_cache for m in self.models)

    def lines(self) -> list[str]:
        """A short report: one line per model and a total."""
        out = [f"{m.path.name}: weights {_gib(m.weights)}, KV cache {_gib(m.kv_cache)}, "
               f"compute {_gib(m.compute)}" for m in self.models]
        out.append(f"memory estimate: {_gib(self.total)} for {len(self.models)} model"
                   f"{'s' if len(self.models) != 1 else ''}, {self.n_ctx} KV cells each, {self.n_seq} "
                   f"sequence{'s' if self.n_seq != 1 else ''}")
        return out


def check_ctx_size(ctx_size: int) -> None:
    """Refuse a context too small for any run."""
    if ctx_size < MIN_CTX_SIZE:
        raise UsageError(f"--ctx-size must be at least {MIN_CTX_SIZE}, got {ctx_size}")


def effective_context(ctx_size: int, *summaries: GGUFSummary) -> int:
    """The context a run really gets: ``ctx_size``, capped by each model's training length."""
    return min([ctx_size, *(s.context_length for s in summaries if s.context_length)])


def kv_cells(ctx_size: int, n_seq: int, max_tokens: int) -> int:
    """KV cells a run needs: one context for the shared prompt, plus each further sample's output."""
    return ctx_size + (max(n_seq, 1) - 1) * min(max_tokens, ctx_size)


def shape_of(summary: GGUFSummary) -> ModelShape:
    """A :class:`ModelShape` from a GGUF summary."""
    n_layer, n_embd, n_head = summary.block_count, summary.embedding_length, summary.head_count or 1
    head_kv = summary.head_count_kv if summary.head_count_kv is not None else n_head
    per_layer = list(head_kv) if isinstance(head_kv, tuple) else [head_kv] * n_layer
    head_dim_k = summary.key_length or n_embd // n_head
    head_dim_v = summary.value_length or head_dim_k
    return ModelShape(n_layer, per_layer, head_dim_k, head_dim_v, n_embd, summary.n_vocab, summary.tensor_bytes)


def estimate_shape(shape: ModelShape, path: Path, n_ctx: int, n_seq: int, *, n_ubatch: int = 512) -> ModelMemory:
    """Estimate one model's memory from its shape (pure arithmetic)."""
    cells = _pad(n_ctx, 256)  # llama.cpp pads the context to a multiple of 256
    kv_width = sum(heads * (shape.head_dim_k + shape.head_dim_v) for heads in shape.n_head_kv)
    kv = cells * kv_width * KV_BYTES
    ubatch = min(n_ubatch, cells)
    scratch = LOGIT_BYTES * ubatch * (shape.n_vocab + 4 * shape.n_embd) + MASK_BYTES * cells * ubatch
    compute = scratch + LOGIT_BYTES * max(n_seq, 1) * shape.n_vocab  # + the output buffer
    return ModelMemory(path, shape.weights_bytes, kv, compute)


def estimate_model(path: str | Path, n_ctx: int, n_seq: int = 1, *, n_ubatch: int = 512) -> ModelMemory:
    """Estimate one GGUF's memory at ``n_ctx`` KV cells shared by ``n_seq`` sequences."""
    return estimate_shape(shape_of(read_gguf(path)), Path(path), n_ctx, n_seq, n_ubatch=n_ubatch)


def estimate_memory(base_path: str | Path, aligned_path: str | Path, n_ctx: int, n_seq: int = 1, *,
                    n_ubatch: int = 512) -> MemoryEstimate:
    """Estimate both models' memory: each gets its own context of ``n_ctx`` cells."""
    models = tuple(estimate_model(p, n_ctx, n_seq, n_ubatch=n_ubatch) for p in (base_path, aligned_path))
    return MemoryEstimate(models, n_ctx, n_seq)


def available_memory() -> int | None:
    """Bytes of memory available to a new process (Linux MemAvailable, else free pages), or None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    if sys.platform == "darwin":
        return _sysconf("SC_PHYS_PAGES")  # macOS reports no "available": use physical memory
    return _sysconf("SC_AVPHYS_PAGES")


def _sysconf(name: str) -> int | None:
    try:
        return os.sysconf(name) * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory_fits(estimate: MemoryEstimate, override: bool = False, available: int | None = None) -> None:
    """Raise MemoryBudgetError when the estimate exceeds available memory (unless ``override``)."""
    free = available if available is not None else available_memory()
    if override or free is None or estimate.total <= free:
        return
    raise MemoryBudgetError(
        f"the models need about {_gib(estimate.total)} ({estimate.n_ctx} KV cells each, {estimate.n_seq} "
        f"sequences) but only {_gib(free)} is available; use a smaller context, fewer samples or parallel "
        "sequences, or a smaller pair, or pass --ignore-memory to start anyway")


def largest_fitting(base_path: str | Path, aligned_path: str | Path, ctx_size: int, max_tokens: int,
                    low: int, high: int, available: int | None = None) -> int:
    """The most parallel sequences in ``low..high`` whose estimate (:func:`kv_cells` of them) fits in
    ``available`` bytes (default: :func:`available_memory`); ``low`` when none does, so that the
    run's own check refuses it with the usual message."""
    free = available if available is not None else available_memory()
    if free is None:
        return high
    shapes = [(shape_of(read_gguf(p)), Path(p)) for p in (base_path, aligned_path)]
    for n_seq in range(high, low, -1):
        cells = kv_cells(ctx_size, n_seq, max_tokens)
        if sum(estimate_shape(shape, path, cells, n_seq).total for shape, path in shapes) <= free:
            return n_seq
    return low


def _pad(value: int, multiple: int) -> int:
    return (value + multiple - 1) // multiple * multiple


def _gib(n_bytes: int) -> str:
    return f"{n_bytes / GIB:.2f} GiB" if n_bytes >= GIB else f"{n_bytes / MIB:.0f} MiB"
