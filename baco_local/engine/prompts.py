"""Turning a conversation into each model's prompt text.

The aligned model sees the conversation through the chat template stored in its GGUF (Jinja,
rendered in a sandbox, as Hugging Face and llama.cpp do). The base model sees a plain-text
transcript built from a template with a ``{prompt}`` placeholder, e.g. the default
``"User: {prompt}\\nAssistant:\\n"``: each earlier exchange is the template filled with the user's
message followed by the reply and a blank line, and the conversation ends with the template filled
with the newest message. A system prompt, if any, comes first, followed by a blank line.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Sequence

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ..errors import ChatTemplateError, UsageError

Role = Literal["system", "user", "assistant"]
DEFAULT_BASE_TEMPLATE = "User: {prompt}\nAssistant:\n"


@dataclass(frozen=True)
class Message:
    """One turn of a conversation."""

    role: Role
    content: str


class _TemplateRaised(Exception):
    """A chat template called raise_exception()."""


def _raise_exception(message: str) -> None:
    raise _TemplateRaised(message)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


_ENV = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
_ENV.globals.update(raise_exception=_raise_exception, strftime_now=_strftime_now)


def compile_chat_template(source: str) -> jinja2.Template:
    """Parse a Jinja chat template once."""
    try:
        return _ENV.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise ChatTemplateError(f"chat template has a syntax error on line {exc.lineno}: {exc.message}") from None


def fold_system(messages: Sequence[Message]) -> list[Message]:
    """Merge a leading system message into the first user turn (for templates without a system role)."""
    if not messages or messages[0].role != "system":
        return list(messages)
    system, rest = messages[0], list(messages[1:])
    if rest and rest[0].role == "user":
        rest[0] = Message("user", f"{system.content}\n\n{rest[0].content}")
    else:
        rest.insert(0, Message("user", system.content))
    return rest


def render_chat(template: jinja2.Template, messages: Sequence[Message], *, bos_token: str,
                eos_token: str, add_generation_prompt: bool = True) -> str:
    """Render a conversation through a chat template; a rejected system role is folded in."""
    def render(turns: Sequence[Message]) -> str:
        return template.render(
            messages=[{"role": m.role, "content": m.content} for m in turns],
            bos_token=bos_token, eos_token=eos_token, add_generation_prompt=add_generation_prompt,
        )

    try:
        try:
            return render(messages)
        except _TemplateRaised:
            if not messages or messages[0].role != "system":
                raise
            return render(fold_system(messages))
    except _TemplateRaised as exc:
        raise ChatTemplateError(f"the chat template refused this conversation: {exc}") from None
    except jinja2.TemplateError as exc:
        raise ChatTemplateError(f"the chat template failed to render: {exc}") from None


def check_base_template(template: str) -> str:
    """Refuse a base-model template without the ``{prompt}`` placeholder."""
    if "{prompt}" not in template:
        raise UsageError(f"the base prompt template must contain {{prompt}}, got {template!r}")
    return template


def render_base(template: str, messages: Sequence[Message]) -> str:
    """The plain-text transcript the base model sees (see the module docstring)."""
    parts: list[str] = []
    for message in messages:
        if message.role == "system":
            parts.append(f"{message.content}\n\n")
        elif message.role == "user":
            parts.append(template.replace("{prompt}", message.content))
        else:
            parts.append(f"{message.content}\n\n")
    return "".join(parts)
