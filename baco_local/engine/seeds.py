"""Per-sample seeds and prompt shards: stable hashes of the run seed and the prompt's id.

Rule ``"sha256(seed:id:index)"`` (recorded as ``seed_rule`` in ``baco gen``'s output settings):
sample ``index`` of the prompt with id ``id`` in a run seeded with ``seed`` uses the first 8 bytes,
big-endian, of ``sha256(f"{seed}:{id}:{index}")`` with the top bit cleared (so it fits a signed
64-bit integer). ``id`` is the id's text (ids ``1`` and ``"1"`` are the same id). A prompt's samples
are therefore the same whatever other prompts run and however the file is split.

Files written before this rule used ``seed + index`` for every prompt (:data:`OLD_SEED_RULE`).
Shards: a prompt id belongs to shard ``I`` of ``N`` (1-based) when the first 8 bytes of
``sha256(f"shard:{id}")`` modulo ``N`` equal ``I - 1``; independent of the file's order.
"""

from __future__ import annotations

import hashlib
import re

SEED_RULE = "sha256(seed:id:index)"
OLD_SEED_RULE = "seed+index"
_MASK = (1 << 63) - 1


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def sample_seed(seed: int, index: int, prompt_key: str | None = None) -> int:
    """The seed of sample ``index``: :data:`SEED_RULE` for a prompt id (its text), else ``seed + index``
    (one prompt in chat, and files written before the rule)."""
    if prompt_key is None:
        return seed + index
    return _hash64(f"{seed}:{prompt_key}:{index}") & _MASK


def shard_of(prompt_key: str, count: int) -> int:
    """The 1-based shard of ``count`` that the prompt id (its text) belongs to."""
    return _hash64(f"shard:{prompt_key}") % count + 1


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` as ``(I, N)`` with 1 <= I <= N; anything else raises ValueError with the reason."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise ValueError(f"--shard takes I/N (shard I of N, counting from 1, e.g. 2/8), got {text!r}")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or not 1 <= index <= count:
        raise ValueError(f"--shard I/N needs 1 <= I <= N (shards count from 1), got {text!r}")
    return index, count
