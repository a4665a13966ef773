"""Errors in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}`` with an HTTP status."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

INVALID = "invalid_request_error"
AUTH = "authentication_error"
NOT_FOUND = "not_found_error"
UNAVAILABLE = "unavailable_error"
SERVER = "server_error"


class ApiError(Exception):
    """A request the server refuses (4xx) or cannot serve (5xx)."""

    def __init__(self, status: int, message: str, *, type: str = INVALID, param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.param, self.code)

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def error_body(message: str, type: str = INVALID, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """The JSON body of an error."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def bad_request(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


def unavailable(message: str, code: str, retry_after: int = 1) -> ApiError:
    """503 with ``Retry-After`` (loading, queue full, shutting down)."""
    return ApiError(503, message, type=UNAVAILABLE, code=code, headers={"Retry-After": str(retry_after)})
