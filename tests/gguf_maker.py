"""Tiny GGUF files for the registry/hub/memory tests: a few hundred KB, loadable by llama.cpp.

A SentencePiece-style ("llama") vocabulary of control tokens, 256 byte tokens and some words;
random weights. ``head_dim`` different from ``n_embd / n_head`` exercises the memory estimate's
use of ``attention.key_length``.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

WORDS = ["▁the", "▁a", "▁cat", "▁dog", "▁sat", "▁on", "▁mat", "▁hello", "▁world", ".", ",", "!", "\n"]


def vocabulary(extra: int = 0) -> tuple[list[str], list[int]]:
    """Token texts and types: <unk> <s> </s>, 256 byte tokens, words, ``extra`` control tokens."""
    texts = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + WORDS
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    types += [gguf.TokenType.BYTE] * 256 + [gguf.TokenType.NORMAL] * len(WORDS)
    texts += [f"<extra_{i}>" for i in range(extra)]
    types += [gguf.TokenType.CONTROL] * extra
    return texts, [int(t) for t in types]


def write_model(path: Path, *, n_embd: int = 64, n_layer: int = 2, n_head: int = 4, n_head_kv: int = 2,
                head_dim: int | None = None, n_ff: int = 128, n_ctx_train: int = 2048, extra_tokens: int = 0,
                chat_template: str | None = None, seed: int = 0) -> Path:
    """Write a tiny llama-architecture GGUF and return its path."""
    head_dim = head_dim or n_embd // n_head
    texts, types = vocabulary(extra_tokens)
    n_vocab = len(texts)
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny test model")
    writer.add_context_length(n_ctx_train)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head_kv)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_dimension_count(head_dim)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(texts)
    writer.add_token_scores([0.0] * n_vocab)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(True)
    if chat_template is not None:
        writer.add_chat_template(chat_template)

    def tensor(name: str, *shape: int) -> None:
        writer.add_tensor(name, (rng.standard_normal(shape) * 0.5).astype(np.float32))

    tensor("token_embd.weight", n_vocab, n_embd)
    tensor("output.weight", n_vocab, n_embd)
    writer.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    for i in range(n_layer):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
        tensor(f"blk.{i}.attn_q.weight", n_head * head_dim, n_embd)
        tensor(f"blk.{i}.attn_k.weight", n_head_kv * head_dim, n_embd)
        tensor(f"blk.{i}.attn_v.weight", n_head_kv * head_dim, n_embd)
        tensor(f"blk.{i}.attn_output.weight", n_embd, n_head * head_dim)
        tensor(f"blk.{i}.ffn_gate.weight", n_ff, n_embd)
        tensor(f"blk.{i}.ffn_up.weight", n_ff, n_embd)
        tensor(f"blk.{i}.ffn_down.weight", n_embd, n_ff)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_pair(directory: Path, *, aligned_template: str | None = "{{ messages[0]['content'] }}") -> tuple[Path, Path]:
    """A compatible base/aligned pair (same vocabulary; the aligned one has a chat template)."""
    base = write_model(directory / "tiny-base.gguf", seed=1)
    aligned = write_model(directory / "tiny-aligned.gguf", seed=2, chat_template=aligned_template)
    return base, aligned
