"""The two models together: load, check compatibility, classify tokens, format prompts.

A :class:`ModelPair` is everything about a base/aligned pair that does not change between
generations: both loaded models, the tokenizer-compatibility verdict, the token classes the
routers use, which ids each side must never produce, and how each side's prompt is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .backend import LoadedModel
from .chat_prompt import ChatPrompter
from ..errors import ContextOverflowError
from ..models.compat import check_pair
from .prompts import DEFAULT_BASE_TEMPLATE, Message, check_base_template, render_base
from .routers import ALIGNED, BASE, Side
from .vocab import TokenClasses, build_token_classes


@dataclass(frozen=True)
class PairSpec:
    """What to load: two GGUF paths, prompt formats and GPU offload per model."""

    base_path: Path
    aligned_path: Path
    base_template: str = DEFAULT_BASE_TEMPLATE
    chat_template: str | None = None  # overrides the aligned GGUF's own template
    base_gpu_layers: int = 0
    aligned_gpu_layers: int = 0
    extra: dict[str, str] = field(default_factory=dict)  # e.g. the registry pair name


class ModelPair:
    """A loaded, checked base/aligned pair."""

    def __init__(self, spec: PairSpec) -> None:
        self.spec = spec
        check_base_template(spec.base_template)
        check_pair(spec.base_path, spec.aligned_path).raise_if_incompatible()
        self.base = LoadedModel(spec.base_path, n_gpu_layers=spec.base_gpu_layers)
        self.aligned = LoadedModel(spec.aligned_path, n_gpu_layers=spec.aligned_gpu_layers)
        self.n_vocab = max(self.base.n_vocab, self.aligned.n_vocab)
        self.eog_ids = self.base.info.eog_ids | self.aligned.info.eog_ids
        self.base_masked = self._unusable_ids(self.base, self.aligned)
        self.aligned_masked = self._unusable_ids(self.aligned, self.base)
        self.classes = self._classify()
        self._aligned_prompter = ChatPrompter(self.aligned, spec.chat_template)

    def close(self) -> None:
        """Free both models."""
        self.base.close()
        self.aligned.close()

    def _unusable_ids(self, own: LoadedModel, other: LoadedModel) -> np.ndarray:
        """Ids only ``own`` has: the other context cannot decode them (end-of-generation ids excepted)."""
        extra = range(other.n_vocab, own.n_vocab)
        return np.array([t for t in extra if t not in self.eog_ids], dtype=np.int64)

    def _classify(self) -> TokenClasses:
        larger = self.aligned if self.aligned.n_vocab >= self.base.n_vocab else self.base
        return build_token_classes(self.n_vocab, larger.piece, larger.info.control)

    def piece(self, token: int) -> bytes:
        """The bytes a generated token stands for (control tokens render as nothing)."""
        model = self.aligned if token < self.aligned.n_vocab else self.base
        return model.piece(token)

    def token_texts(self, tokens: Sequence[int]) -> str:
        """Decode a token sequence (used for tests and records)."""
        return b"".join(self.piece(t) for t in tokens).decode("utf-8", errors="replace")

    def aligned_prompt(self, messages: Sequence[Message]) -> list[int]:
        """Token ids of the conversation through the aligned model's chat template."""
        return self._aligned_prompter(messages)

    def base_prompt(self, messages: Sequence[Message]) -> list[int]:
        """Token ids of the plain-text transcript the base model sees."""
        text = render_base(self.spec.base_template, messages)
        return self.base.tokenize(text, add_bos=self.base.info.add_bos, special=False)

    def prompts_within(self, messages: Sequence[Message], ctx_size: int) -> dict[Side, list[int]]:
        """Both models' prompt tokens, refused (ContextOverflowError) where they leave a context of
        ``ctx_size`` no room for a new token."""
        prompts = {BASE: self.base_prompt(messages), ALIGNED: self.aligned_prompt(messages)}
        for side, tokens in prompts.items():
            if len(tokens) >= ctx_size:
                name = "base" if side == BASE else "aligned"
                raise ContextOverflowError(
                    f"the prompt is {len(tokens)} tokens for the {name} model but the context is "
                    f"{ctx_size}; raise --ctx-size or shorten the prompt")
        return prompts
