"""From a request body to a scheduler :class:`~baco_local.engine.scheduler.Request`, checking every value."""

from __future__ import annotations

import dataclasses
import json
import re
import secrets
from dataclasses import dataclass
from typing import TypeVar

from pydantic import ValidationError

from ..engine.prompts import Message
from ..engine.routers import get_router
from ..engine.sampling import SamplingParams
from ..engine.scheduler import Request
from ..engine.settings import DraftPolicy, GenerationSettings
from ..errors import UsageError
from .config import RANDOM_SEED, ServeConfig
from .errors import ApiError, bad_request
from .schemas import SAMPLER_FIELDS, ChatCompletionRequest, CompletionRequest, Sampling

Body = TypeVar("Body", bound=Sampling)
MAX_STOPS = 16
CLI_WORDING = {"'none' clears the list": "[] for none"}  # hints of gen's messages, as a request says it


@dataclass(frozen=True)
class Job:
    """A checked request: what the scheduler runs, and what the response needs to say."""

    request: Request
    stream: bool
    include_usage: bool


def parse_body(raw: bytes, model: type[Body]) -> Body:
    """The JSON body as ``model``; 400 for malformed JSON or a bad field (named in ``param``)."""
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise bad_request(f"the request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise bad_request("the request body must be a JSON object", code="invalid_json")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        param = ".".join(str(part) for part in error["loc"]) or None
        if error["type"] == "extra_forbidden":
            raise bad_request(f"unknown field '{param}' (see the README's list of supported parameters)",
                              param, "unknown_parameter") from None
        raise bad_request(f"{param}: {error['msg']}" if param else error["msg"], param, "invalid_value") from None


def chat_job(body: ChatCompletionRequest, config: ServeConfig) -> Job:
    """A chat completion's conversation and settings."""
    messages = [Message("system" if m.role == "developer" else m.role, m.text()) for m in body.messages]
    return _job(messages, body, config)


def completion_job(body: CompletionRequest, config: ServeConfig) -> Job:
    """A raw completion: the prompt is one user message, through both models' templates (as ``gen``)."""
    prompt = body.prompt
    if isinstance(prompt, list):
        if len(prompt) != 1:
            raise bad_request("baco serve takes one prompt per request (send several requests; they are "
                              "decoded together)", "prompt")
        prompt = prompt[0]
    return _job(prompt, body, config)


def check_model(name: str | None, config: ServeConfig) -> None:
    """404 for a model this server does not serve (leaving it out means the served pair)."""
    if name is not None and name != config.model_id:
        raise ApiError(404, f"the model '{name}' does not exist; this server serves '{config.model_id}'",
                       type="not_found_error", param="model", code="model_not_found")


def _job(prompt: list[Message] | str, body: Sampling, config: ServeConfig) -> Job:
    check_model(body.model, config)
    limits, defaults = config.limits, config.defaults
    if body.n > limits.max_n:
        raise bad_request(f"n is at most {limits.max_n} on this server (--max-n), got {body.n}", "n")
    max_tokens = body.token_limit() or defaults.max_tokens  # type: ignore[attr-defined]
    if max_tokens > limits.max_tokens:
        raise bad_request(f"max_tokens is at most {limits.max_tokens} on this server (--max-tokens-limit), "
                          f"got {max_tokens}", "max_tokens")
    stops = body.stops() if body.stop is not None else defaults.stop
    if len(stops) > MAX_STOPS or any(not s for s in stops):
        raise bad_request(f"stop takes at most {MAX_STOPS} non-empty strings", "stop")
    try:
        router = get_router(body.router or defaults.router)
    except UsageError as exc:
        raise bad_request(str(exc), "router", "invalid_value") from None
    gamma = defaults.gamma_for(router) if body.gamma is None else body.gamma
    try:
        router.check_gamma(gamma)
    except UsageError as exc:
        raise bad_request(str(exc).replace("--gamma", "gamma"), "gamma", "invalid_value") from None
    sampling = sampling_params(body, defaults.sampling)
    seed = defaults.seed if body.seed is None else body.seed
    if seed == RANDOM_SEED:
        seed = secrets.randbelow(1 << 32)
    settings = GenerationSettings(router, gamma, sampling, max_tokens, stops, seed, DraftPolicy(enabled=False))
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return Job(Request(prompt, settings, body.n), body.stream, include_usage)


def sampling_params(body: Sampling, defaults: SamplingParams) -> SamplingParams:
    """The server's sampling defaults with the request's sampler fields in their place; 400 naming
    the field for a value gen's flag would refuse (each checked alone: llama.cpp's defaults are valid)."""
    given = {}
    for name, field in SAMPLER_FIELDS.items():
        value = getattr(body, name)
        if value is None:
            continue
        value = tuple(value) if isinstance(value, list) else value
        try:
            SamplingParams(**{field: value})
        except UsageError as exc:
            message = re.sub(r"^--[\w-]+", name, str(exc))  # the flag's name -> the field's
            for cli, api in CLI_WORDING.items():
                message = message.replace(cli, api)
            raise bad_request(message, name, "invalid_value") from None
        given[field] = value
    return dataclasses.replace(defaults, **given)
