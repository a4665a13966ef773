"""Saving a chat: JSON (every token with its source; reads back) or Markdown (for reading).

JSON layout::

    {"format": "baco-chat/1", "saved": "...", "base": "...", "aligned": "...", "system": str | null,
     "dropped": 0, "settings": {...},
     "exchanges": [{"user": "...", "reply": {"text": "...", "finish_reason": "stop", "router": "p-punc",
                    "gamma": 0.3, "temperature": 0.8, "seed": 0, "base_share": 0.25,
                    "tokens": [{"id": 1234, "source": "A", "text": "Once"}, ...]}}]}

In Markdown, the stretches the base model wrote are wrapped in ``<mark>``.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import OutputFileError, UsageError
from ..engine.routers import BASE
from .session import ChatSession, Exchange, Reply

FORMAT = "baco-chat/1"
MARKDOWN_SUFFIXES = (".md", ".markdown")


@dataclass(frozen=True)
class Transcript:
    """A saved conversation, as read back."""

    system: str | None
    exchanges: list[Exchange]
    dropped: int


def save_transcript(session: ChatSession, path: Path) -> str:
    """Write the conversation to ``path`` (.json or .md); returns the format written."""
    suffix = path.suffix.lower()
    if suffix == ".json":
        text, kind = json.dumps(transcript_document(session), ensure_ascii=False, indent=1) + "\n", "JSON"
    elif suffix in MARKDOWN_SUFFIXES:
        text, kind = transcript_markdown(session), "Markdown"
    else:
        raise UsageError(f"save to a .json or .md file, not '{path.name}'")
    try:
        path.expanduser().write_text(text, encoding="utf-8")
    except OSError as exc:
        raise OutputFileError(f"cannot write {path}: {exc.strerror or exc}") from None
    return kind


def transcript_document(session: ChatSession) -> dict[str, Any]:
    """The conversation as a JSON-ready dict."""
    spec = session.engine.pair.spec
    settings = session.settings
    return {
        "format": FORMAT,
        "saved": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "base": str(spec.base_path),
        "aligned": str(spec.aligned_path),
        "system": session.system,
        "dropped": session.dropped,
        "settings": {"router": settings.router.name, "gamma": settings.gamma,
                     "sampling": settings.sampling.as_dict(), "max_tokens": settings.max_tokens,
                     "seed": settings.seed, "ctx_size": session.engine.ctx_size},
        "exchanges": [{"user": e.user, "reply": _reply_document(e.reply)} for e in session.exchanges],
    }


def _reply_document(reply: Reply) -> dict[str, Any]:
    return {
        "text": reply.text, "finish_reason": reply.finish_reason, "router": reply.router, "gamma": reply.gamma,
        "temperature": reply.temperature, "seed": reply.seed, "base_share": round(reply.base_share, 4),
        "tokens": [{"id": token, "source": source, "text": piece}
                   for token, source, piece in zip(reply.tokens, reply.sources, reply.pieces)],
    }


def load_transcript(path: Path) -> Transcript:
    """Read a conversation saved as JSON."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        if document.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} file")
        exchanges = [Exchange(e["user"], _read_reply(e["reply"])) for e in document["exchanges"]]
        return Transcript(document["system"], exchanges, int(document["dropped"]))
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UsageError(f"cannot read chat transcript {path}: {exc}") from None


def _read_reply(data: dict[str, Any]) -> Reply:
    tokens = data["tokens"]
    return Reply(data["text"], tuple(int(t["id"]) for t in tokens), "".join(t["source"] for t in tokens),
                 tuple(t["text"] for t in tokens), data["finish_reason"], data["router"], float(data["gamma"]),
                 float(data["temperature"]), int(data["seed"]))


def transcript_markdown(session: ChatSession) -> str:
    """The conversation as Markdown, the base model's stretches in ``<mark>``."""
    spec = session.engine.pair.spec
    lines = ["# baco chat", "", f"- base model: `{spec.base_path}`", f"- aligned model: `{spec.aligned_path}`",
             f"- saved: {datetime.now(timezone.utc).isoformat(timespec='seconds')}", "",
             "Text the base model wrote is <mark>highlighted</mark>; the aligned model wrote the rest.", ""]
    if session.system:
        lines += [f"**System:** {_escape(session.system)}", ""]
    for number, exchange in enumerate(session.exchanges, start=1):
        if number == session.dropped + 1 and session.dropped:
            lines += ["_The exchanges above were left out of the prompts to fit the context._", ""]
        reply = exchange.reply
        about = (f"router {reply.router} · γ {reply.gamma:g} · temp {reply.temperature:g} · "
                 f"{len(reply.tokens)} tokens · {reply.base_share:.0%} base · {reply.finish_reason}")
        lines += [f"## {number}. User", "", _escape(exchange.user), "", f"## {number}. Assistant", "",
                  f"<small>{about}</small>", "", _marked(reply), ""]
    return "\n".join(lines)


def _escape(text: str) -> str:
    return html.escape(text, quote=False)


def _marked(reply: Reply) -> str:
    """The reply's text with each line of a base-written stretch wrapped in <mark>."""
    parts = []
    for side, text in reply.runs():
        if side == BASE:
            text = "\n".join(f"<mark>{_escape(line)}</mark>" if line.strip() else line for line in text.split("\n"))
        else:
            text = _escape(text)
        parts.append(text)
    return "".join(parts)
