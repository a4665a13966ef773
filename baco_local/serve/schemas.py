"""Request bodies of the OpenAI endpoints, as Pydantic models.

Unknown fields are refused (``extra="forbid"``), so a client never believes a field took effect
when it did not. Standard fields that baco cannot honour (``tools``, ``logprobs``,
``response_format`` …) are accepted only with their neutral value (what the client would get by
leaving them out) and refused otherwise. llama.cpp's diversity samplers (XTC, top-n-σ, DRY) take
llama-server's field names (:data:`SAMPLER_FIELDS`); their ranges are checked where gen's flags are
(:class:`~baco_local.engine.sampling.SamplingParams`), by :mod:`.translate`.
"""

from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .errors import ApiError

# Standard fields baco does not implement, and the values that mean "not used".
NEUTRAL: dict[str, tuple[Any, ...]] = {
    "tools": (None, []), "tool_choice": (None, "none", "auto"), "parallel_tool_calls": (None, True, False),
    "functions": (None, []), "function_call": (None, "none", "auto"),
    "logprobs": (None, False, 0), "top_logprobs": (None, 0), "logit_bias": (None, {}),
    "presence_penalty": (None, 0, 0.0), "frequency_penalty": (None, 0, 0.0),
    "response_format": (None, {"type": "text"}), "modalities": (None, ["text"]), "audio": (None,),
    "prediction": (None,), "reasoning_effort": (None,), "service_tier": (None, "auto", "default"),
    "store": (None, False), "metadata": (None, {}), "web_search_options": (None,),
    "echo": (None, False), "suffix": (None, ""), "best_of": (None, 1),
}
# Request fields that set a SamplingParams field: llama-server's JSON name -> the field's name.
SAMPLER_FIELDS = {"temperature": "temperature", "top_k": "top_k", "top_p": "top_p", "min_p": "min_p",
                  "xtc_probability": "xtc_probability", "xtc_threshold": "xtc_threshold",
                  "top_n_sigma": "top_nsigma", "dry_multiplier": "dry_multiplier", "dry_base": "dry_base",
                  "dry_allowed_length": "dry_allowed_length", "dry_penalty_last_n": "dry_penalty_last_n",
                  "dry_sequence_breakers": "dry_sequence_breakers"}
CHAT_UNSUPPORTED = ("tools", "tool_choice", "parallel_tool_calls", "functions", "function_call", "logprobs",
                    "top_logprobs", "logit_bias", "presence_penalty", "frequency_penalty", "response_format",
                    "modalities", "audio", "prediction", "reasoning_effort", "service_tier", "store", "metadata",
                    "web_search_options")
COMPLETION_UNSUPPORTED = ("echo", "suffix", "best_of", "logprobs", "logit_bias", "presence_penalty",
                          "frequency_penalty")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextPart(Strict):
    """A text part of a message's content (the only kind baco reads)."""

    type: Literal["text"]
    text: str


class ChatMessage(Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: Union[str, list[TextPart]]
    name: Optional[str] = None  # accepted, not used (it has no place in a chat template)

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(part.text for part in self.content)


class StreamOptions(Strict):
    include_usage: bool = False


class Sampling(Strict):
    """The fields both endpoints share: sampling, limits, BACo's routing extras."""

    model: Optional[str] = None
    n: int = Field(1, ge=1)
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    max_tokens: Optional[int] = Field(None, ge=1)
    temperature: Optional[float] = Field(None, ge=0)
    top_p: Optional[float] = Field(None, gt=0, le=1)
    top_k: Optional[int] = Field(None, ge=0)
    min_p: Optional[float] = Field(None, ge=0, le=1)
    xtc_probability: Optional[float] = None
    xtc_threshold: Optional[float] = None
    top_n_sigma: Optional[float] = None
    dry_multiplier: Optional[float] = None
    dry_base: Optional[float] = None
    dry_allowed_length: Optional[int] = None
    dry_penalty_last_n: Optional[int] = None
    dry_sequence_breakers: Optional[list[str]] = None  # [] for none
    seed: Optional[int] = Field(None, ge=-1, lt=1 << 62)
    stop: Union[str, list[str], None] = Field(None)
    router: Optional[str] = None
    gamma: Optional[float] = None
    user: Optional[str] = None  # accepted, not used: an end-user id for the client's own logs

    def stops(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


def _refuse_non_neutral(data: Any, names: tuple[str, ...]) -> Any:
    """Drop the unsupported standard fields that hold their neutral value; refuse the others."""
    if not isinstance(data, dict):
        return data
    for name in names:
        if name in data:
            if data[name] not in NEUTRAL[name]:
                raise ApiError(400, f"'{name}' is not supported by baco serve (see the README's list of "
                               "supported parameters)", param=name, code="unsupported_parameter")
            data = {k: v for k, v in data.items() if k != name}
    return data


class ChatCompletionRequest(Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: Optional[int] = Field(None, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _unsupported(cls, data: Any) -> Any:
        return _refuse_non_neutral(data, CHAT_UNSUPPORTED)

    def token_limit(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class CompletionRequest(Sampling):
    prompt: Union[str, list[str]]

    @model_validator(mode="before")
    @classmethod
    def _unsupported(cls, data: Any) -> Any:
        return _refuse_non_neutral(data, COMPLETION_UNSUPPORTED)

    def token_limit(self) -> int | None:
        return self.max_tokens
