"""Response bodies and stream chunks: OpenAI's fields, plus a ``baco`` object with the provenance.

Per choice, ``baco.pieces`` is the text cut by the model that wrote it (``{"text", "side"}`` with
side ``"base"`` or ``"aligned"``; the texts join to exactly the choice's content or delta);
a finished choice also has ``base_share`` (= ``base_fraction``, the share of its tokens the base
model wrote), ``sources`` (one ``A``/``B`` per token), its ``seed`` and baco's own ``finish``
(``stop``, ``length``, ``context``, ``cancelled``). The top-level ``baco`` object echoes the
request's settings, its sampling under the request fields' names (XTC, top-n-σ and DRY only when on).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Literal, Sequence

from ..engine.routers import BASE
from ..engine.settings import GenerationSettings
from ..engine.step import Sample, TokenEvent
from .schemas import SAMPLER_FIELDS

SIDE_NAMES = {"A": "aligned", "B": "base"}
# baco's finish reasons as OpenAI's: a context that filled up, or a request cut short (the client
# went away, the server is stopping), ended the text before it was complete, as a length limit does.
FINISH_REASONS = {"stop": "stop", "length": "length", "context": "length", "cancelled": "length"}
Kind = Literal["chat", "text"]
FIELD_NAMES = {field: name for name, field in SAMPLER_FIELDS.items()}  # SamplingParams' -> the request's


def finish_reason(reason: str) -> str:
    return FINISH_REASONS.get(reason, reason)


def pieces(spans: Iterable[tuple[str, str]]) -> list[dict[str, str]]:
    """(side letter, text) stretches as ``[{"text", "side"}]``, neighbours of one side merged."""
    out: list[dict[str, str]] = []
    for side, text in spans:
        if not text:
            continue
        name = SIDE_NAMES[side]
        if out and out[-1]["side"] == name:
            out[-1]["text"] += text
        else:
            out.append({"text": text, "side": name})
    return out


def event_pieces(events: Sequence[TokenEvent]) -> list[dict[str, str]]:
    """The pieces of the visible text of token events (of one sample, in order)."""
    return pieces(span for event in events for span in (event.spans or ((event.side, event.text),)))


def provenance(sample: Sample) -> dict[str, Any]:
    """A finished choice's ``baco`` object."""
    share = sample.sources.count(BASE) / len(sample.sources) if sample.sources else 0.0
    return {"pieces": pieces(zip(sample.sources, sample.pieces)), "base_share": share, "base_fraction": share,
            "sources": sample.sources, "seed": sample.seed, "finish": sample.finish_reason}


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


@dataclass
class ResponseMaker:
    """One response's fixed fields and the shape of its choices (chat or text completion)."""

    kind: Kind
    model: str
    settings: GenerationSettings
    id: str = field(default_factory=lambda: secrets.token_hex(12))
    created: int = field(default_factory=lambda: int(time.time()))

    def _head(self, obj: str) -> dict[str, Any]:
        prefix = "chatcmpl-" if self.kind == "chat" else "cmpl-"
        return {"id": prefix + self.id, "object": obj, "created": self.created, "model": self.model,
                "system_fingerprint": None}

    def settings_record(self) -> dict[str, Any]:
        s = self.settings
        return {"router": s.router.name, "gamma": s.gamma, "seed": s.seed, "max_tokens": s.max_tokens,
                "sampling": {FIELD_NAMES.get(k, k): v for k, v in s.sampling.as_dict().items()},
                "stop": list(s.stop)}

    # --- whole responses ---------------------------------------------------------------------

    def response(self, samples: list[Sample], prompt_tokens: int) -> dict[str, Any]:
        choices = [self._choice(sample) for sample in samples]
        body = self._head("chat.completion" if self.kind == "chat" else "text_completion")
        completion = sum(len(sample.tokens) for sample in samples)
        return {**body, "choices": choices, "usage": usage(prompt_tokens, completion),
                "baco": self.settings_record()}

    def _choice(self, sample: Sample) -> dict[str, Any]:
        content: dict[str, Any] = ({"message": {"role": "assistant", "content": sample.text}} if self.kind == "chat"
                                   else {"text": sample.text})
        return {"index": sample.index, **content, "logprobs": None,
                "finish_reason": finish_reason(sample.finish_reason), "baco": provenance(sample)}

    # --- stream chunks -----------------------------------------------------------------------

    def _chunk(self, choice: dict[str, Any], with_usage: bool) -> dict[str, Any]:
        body = {**self._head("chat.completion.chunk" if self.kind == "chat" else "text_completion"),
                "choices": [choice]}
        if with_usage:
            body["usage"] = None
        return body

    def role_chunk(self, index: int, with_usage: bool) -> dict[str, Any]:
        """A choice's first chunk: the role (chat), no text yet, and the settings it runs with."""
        delta = {"delta": {"role": "assistant", "content": ""}} if self.kind == "chat" else {"text": ""}
        chunk = self._chunk({"index": index, **delta, "logprobs": None, "finish_reason": None,
                             "baco": {"pieces": []}}, with_usage)
        chunk["baco"] = self.settings_record()
        return chunk

    def token_chunk(self, events: Sequence[TokenEvent], with_usage: bool) -> dict[str, Any]:
        """The text of one sample's newest token events."""
        text = "".join(event.text for event in events)
        delta = {"delta": {"content": text}} if self.kind == "chat" else {"text": text}
        return self._chunk({"index": events[0].sample, **delta, "logprobs": None, "finish_reason": None,
                            "baco": {"pieces": event_pieces(events)}}, with_usage)

    def final_chunk(self, sample: Sample, with_usage: bool) -> dict[str, Any]:
        """A choice's last chunk: its finish reason and its provenance (no text: it was all sent)."""
        delta = {"delta": {}} if self.kind == "chat" else {"text": ""}
        record = {**provenance(sample), "pieces": []}
        return self._chunk({"index": sample.index, **delta, "logprobs": None,
                            "finish_reason": finish_reason(sample.finish_reason), "baco": record}, with_usage)

    def usage_chunk(self, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
        return {**self._head("chat.completion.chunk" if self.kind == "chat" else "text_completion"),
                "choices": [], "usage": usage(prompt_tokens, completion_tokens)}
