"""ASGI middleware: the API key and the request body limit (CORS is Starlette's own)."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import AUTH, ApiError

PUBLIC_PATHS = ("/health",)
API_PREFIXES = ("/v1", "/baco")  # what needs the key; the page's files (GET /, static) do not
# A refused body is still read (and dropped), up to these bounds, before the 413 goes out: a socket
# closed with unread bytes sends a TCP reset, and the client then loses the response it was sent.
DRAIN_BYTES = 64 << 20
DRAIN_SECONDS = 5.0


def needs_key(path: str) -> bool:
    """Whether a path is part of the API (the key guards it) rather than ``/health`` or the page."""
    if path in PUBLIC_PATHS:
        return False
    return any(path == prefix or path.startswith(prefix + "/") for prefix in API_PREFIXES)


class ApiKeyMiddleware:
    """``Authorization: Bearer KEY`` (or ``X-Api-Key: KEY``, as llama-server) on every API path,
    compared in constant time; 401 in OpenAI's error shape otherwise. CORS preflights pass."""

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self.key = api_key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] == "OPTIONS" or not needs_key(scope["path"]):
            await self.app(scope, receive, send)
            return
        given = _presented_key(dict(scope["headers"]))
        if given is not None and hmac.compare_digest(given, self.key):
            await self.app(scope, receive, send)
            return
        message = "missing API key: send Authorization: Bearer KEY" if given is None else "invalid API key"
        error = ApiError(401, message, type=AUTH, code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
        await error.response()(scope, receive, send)


def _presented_key(headers: dict[bytes, bytes]) -> bytes | None:
    authorization = headers.get(b"authorization")
    if authorization is not None:
        scheme, _, token = authorization.partition(b" ")
        return token.strip() if scheme.lower() == b"bearer" else b""
    return headers.get(b"x-api-key")


class BodyLimitMiddleware:
    """Refuse request bodies over ``limit`` bytes with 413 (by Content-Length, or while reading)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await self._refuse(scope, receive, send, more=True)
            return
        chunks: list[bytes] = []
        size, more = 0, True
        while more:  # read the whole (bounded) body first, then replay it to the app
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            more = message.get("more_body", False)
            if size > self.limit:
                await self._refuse(scope, receive, send, more=more)
                return
            chunks.append(chunk)
        body: list[Any] = [b"".join(chunks)]

        async def replay() -> Message:
            if body:
                return {"type": "http.request", "body": body.pop(), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, *, more: bool) -> None:
        """Drain the rest of the body (see DRAIN_BYTES), then answer 413 and close the connection."""
        if more:
            await _drain(receive)
        error = ApiError(413, f"the request body is over {self.limit} bytes (--max-body)", code="request_too_large",
                         headers={"Connection": "close"})
        await error.response()(scope, receive, send)


async def _drain(receive: Receive) -> None:
    """Read and drop what is left of a request body, at most DRAIN_BYTES within DRAIN_SECONDS."""
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(_drop_body(receive), DRAIN_SECONDS)


async def _drop_body(receive: Receive) -> None:
    dropped = 0
    while dropped <= DRAIN_BYTES:
        message = await receive()
        dropped += len(message.get("body", b""))
        if message["type"] == "http.disconnect" or not message.get("more_body", False):
            return
