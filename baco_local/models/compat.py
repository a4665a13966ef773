"""Can these two GGUF files share generated tokens? The tokenizer-compatibility check.

BACo appends every generated token id to both models, so both must read an id as the same text.
The rule follows llama.cpp's speculative decoding (``common/speculative.cpp``), made stricter:
the same vocabulary type; identical token text for *every* id both models have (from id 0); and
at most 128 extra ids, only on one side and only special (control, user-defined or unused) tokens.
End-of-generation ids may differ (base/instruct pairs usually do); generation stops on either's.
The check reads only the GGUF metadata, so it runs before llama.cpp loads any weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import IncompatiblePairError
from .gguf_file import read_gguf, read_token_texts, read_token_types

MAX_EXTRA_TOKENS = 128
# GGUF token types (gguf.TokenType): 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
_SPECIAL_TYPES = (3, 4, 5)


@dataclass(frozen=True)
class Vocabulary:
    """One model's tokenizer as the GGUF stores it."""

    path: Path
    tokenizer_model: str  # "llama" (SentencePiece), "gpt2" (BPE), ...
    texts: list[str]
    types: np.ndarray  # (n_vocab,) int


@dataclass
class CompatReport:
    """The outcome of the check: ``ok``, and one line per problem found."""

    base: Vocabulary
    aligned: Vocabulary
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the pair can be used together."""
        return not self.problems

    def lines(self) -> list[str]:
        """A short human-readable report."""
        b, a = self.base, self.aligned
        shared = min(len(b.texts), len(a.texts))
        out = [
            f"base:    {b.path} ({b.tokenizer_model}, {len(b.texts)} tokens)",
            f"aligned: {a.path} ({a.tokenizer_model}, {len(a.texts)} tokens)",
            f"shared ids: {shared}, extra ids: {abs(len(b.texts) - len(a.texts))}",
        ]
        out += [f"problem: {p}" for p in self.problems] or ["compatible: yes"]
        return out

    def raise_if_incompatible(self) -> None:
        """Raise IncompatiblePairError with the first problem."""
        if self.problems:
            raise IncompatiblePairError(
                f"{self.base.path.name} and {self.aligned.path.name} do not share a tokenizer: {self.problems[0]}")


def load_vocabulary(path: str | Path) -> Vocabulary:
    """Read a GGUF's tokenizer (raises ModelFileError for a bad file)."""
    summary = read_gguf(path)
    return Vocabulary(Path(path), summary.tokenizer_model, read_token_texts(path), read_token_types(path))


def compare(base: Vocabulary, aligned: Vocabulary) -> CompatReport:
    """Check two vocabularies against the rule in the module docstring."""
    report = CompatReport(base, aligned)
    if base.tokenizer_model != aligned.tokenizer_model:
        report.problems.append(
            f"vocabulary types differ: base '{base.tokenizer_model}', aligned '{aligned.tokenizer_model}'")
        return report
    shared = min(len(base.texts), len(aligned.texts))
    for token in range(shared):
        if base.texts[token] != aligned.texts[token]:
            report.problems.append(
                f"token {token} differs: base {base.texts[token]!r}, aligned {aligned.texts[token]!r}")
            break
    longer, side = (base, "base") if len(base.texts) > len(aligned.texts) else (aligned, "aligned")
    extra = len(longer.texts) - shared
    if extra > MAX_EXTRA_TOKENS:
        report.problems.append(f"the {side} model has {extra} extra tokens (at most {MAX_EXTRA_TOKENS} allowed)")
    elif extra:
        normal = [t for t in range(shared, len(longer.texts)) if int(longer.types[t]) not in _SPECIAL_TYPES]
        if normal:
            report.problems.append(
                f"the {side} model's extra token {normal[0]} ({longer.texts[normal[0]]!r}) is not a special token")
    return report


def check_pair(base_path: str | Path, aligned_path: str | Path) -> CompatReport:
    """Read both files and compare their tokenizers."""
    return compare(load_vocabulary(base_path), load_vocabulary(aligned_path))
