"""The ASGI app: FastAPI routes for the OpenAI endpoints, ``/health``, baco's own ``/baco/*``, and
the web page (``GET /`` and its files under ``/static``; see :mod:`.page`).

Bodies are read as bytes and validated by the Pydantic models of :mod:`.schemas` (whatever the
Content-Type, as llama-server), so every bad request gets a 400 in OpenAI's error shape. Errors of
every kind leave as ``{"error": {...}}``; a bug gives a 500 with one line, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from typing import Any, AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse, Response
from sse_starlette import EventSourceResponse

from ..engine.routers import ROUTERS, get_router
from ..engine.scheduler import Event, RequestFailed, SampleFinished
from ..engine.step import Sample, TokenEvent
from .bridge import FAILED, LOADING, EngineThread, Submission
from .config import ServeConfig
from .schemas import SAMPLER_FIELDS
from .errors import NOT_FOUND, SERVER, ApiError, bad_request, error_body, unavailable
from .middleware import ApiKeyMiddleware, BodyLimitMiddleware
from .page import add_page
from .responses import Kind, ResponseMaker
from .schemas import ChatCompletionRequest, CompletionRequest
from .translate import Job, chat_job, completion_job, parse_body

log = logging.getLogger("baco.serve")
SHUTDOWN_GRACE = 5.0  # seconds a stream has to send its last chunks once the server stops


def create_app(config: ServeConfig, engine: EngineThread) -> FastAPI:
    """The app serving ``engine`` (started and stopped by the app's lifespan)."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        engine.start()
        try:
            yield
        finally:
            await asyncio.to_thread(engine.stop)

    middleware = []
    if config.cors_origins:
        middleware.append(Middleware(CORSMiddleware, allow_origins=list(config.cors_origins),
                                     allow_methods=["GET", "POST", "OPTIONS"],
                                     allow_headers=["Authorization", "Content-Type", "X-Api-Key"]))
    if config.api_key:
        middleware.append(Middleware(ApiKeyMiddleware, api_key=config.api_key))
    middleware.append(Middleware(BodyLimitMiddleware, limit=config.limits.max_body))
    app = FastAPI(title="baco serve", lifespan=lifespan, middleware=middleware, docs_url=None, redoc_url=None,
                  openapi_url=None)
    _add_error_handlers(app)
    app.state.config, app.state.engine = config, engine
    add_page(app)

    @app.get("/health")
    async def health() -> Response:
        if engine.state == LOADING:
            return unavailable("Loading model", "loading").response()
        if engine.state == FAILED:
            return ApiError(500, f"the models failed to load: {engine.failure}", type=SERVER).response()
        return JSONResponse({"status": "ok"})

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [_model_card(config)]}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str) -> dict[str, Any]:
        if model_id != config.model_id:
            raise ApiError(404, f"the model '{model_id}' does not exist", type=NOT_FOUND, code="model_not_found")
        return _model_card(config)

    @app.get("/baco/routers")
    async def routers() -> dict[str, Any]:
        return routers_body(config)

    @app.get("/baco/stats")
    async def stats() -> dict[str, Any]:
        scheduler = engine.scheduler
        return {"state": engine.state, "parallel": config.limits.parallel, "queue": config.limits.queue,
                "live_sequences": scheduler.live_sequences if scheduler else 0, "waiting": engine.waiting,
                "peak_live_sequences": engine.peak_live, "requests": engine.requests,
                "completion_tokens": engine.completion_tokens,
                "concurrency": scheduler.concurrency_stats() if scheduler else None,
                "prefill": scheduler.prefill_stats() if scheduler else None}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        body = parse_body(await request.body(), ChatCompletionRequest)
        return await _serve(request, engine, config, "chat", chat_job(body, config))

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        body = parse_body(await request.body(), CompletionRequest)
        return await _serve(request, engine, config, "text", completion_job(body, config))

    return app


def _model_card(config: ServeConfig) -> dict[str, Any]:
    defaults = config.defaults
    router = get_router(defaults.router)
    return {"id": config.model_id, "object": "model", "created": 0, "owned_by": "baco",
            "baco": {"base": config.base, "aligned": config.aligned, "router": router.name,
                     "gamma": defaults.gamma_for(router), "ctx_size": config.ctx_size}}


def routers_body(config: ServeConfig) -> dict[str, Any]:
    """``GET /baco/routers``: every router, its γ range and default, and the server's defaults."""
    defaults = config.defaults
    entropy_max = round(math.log(config.n_vocab), 3) if config.n_vocab > 1 else None
    listing = []
    for router in ROUTERS.values():
        gamma = None
        if router.gamma_kind == "probability":
            gamma = {"min": 0.0, "max": 1.0, "default": defaults.gamma_for(router), "unit": "probability"}
        elif router.gamma_kind == "entropy":
            gamma = {"min": 0.0, "max": entropy_max, "default": defaults.gamma_for(router), "unit": "nats"}
        listing.append({"name": router.name, "description": router.summary, "gamma": gamma})
    router = get_router(defaults.router)
    return {"routers": listing, "defaults": {
        "router": router.name, "gamma": defaults.gamma_for(router),
        **{name: getattr(defaults.sampling, field) for name, field in SAMPLER_FIELDS.items()},
        "max_tokens": defaults.max_tokens, "n": 1},
        "limits": {"n": config.limits.max_n, "max_tokens": config.limits.max_tokens}}


# --- one completion --------------------------------------------------------------------------

async def _serve(request: Request, engine: EngineThread, config: ServeConfig, kind: Kind, job: Job) -> Response:
    """Submit the job and answer: a JSON body, or an event stream once the first token is out.

    Until the stream starts (or while a plain request runs), a watcher cancels the request as soon
    as its client disconnects; a stream's own disconnect handling takes over from there."""
    submission = engine.submit(job.request)
    maker = ResponseMaker(kind, config.model_id, job.request.settings)
    watcher = asyncio.create_task(_cancel_on_disconnect(request, submission))
    try:
        first = await submission.next()
        if isinstance(first, RequestFailed):
            code = "context_length_exceeded" if "context" in first.message or "KV cells" in first.message else None
            raise bad_request(first.message, "messages" if kind == "chat" else "prompt", code)
        if job.stream:
            await _stop(watcher)
            return EventSourceResponse(_stream(submission, first, maker, job.include_usage), sep="\n",
                                       shutdown_grace_period=SHUTDOWN_GRACE)
        return await _collect(submission, first, maker)
    except BaseException:
        submission.cancel()
        raise
    finally:
        await _stop(watcher)


async def _cancel_on_disconnect(request: Request, submission: Submission) -> None:
    """Wait for the client's disconnect (the body is already read), then cancel its request."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            submission.cancel()
            return


async def _stop(task: asyncio.Task) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _collect(submission: Submission, first: Event, maker: ResponseMaker) -> Response:
    """Every sample of a non-streamed request, as one response."""
    samples: dict[int, Sample] = {}
    prompt_tokens, errors, event = 0, [], first
    while True:
        if isinstance(event, SampleFinished):
            samples[event.sample.index] = event.sample
            prompt_tokens = event.prompt_tokens
            if event.error:
                errors.append(event.error)
        if submission.done:
            break
        event = await submission.next()
    if errors:
        raise ApiError(500, f"decoding failed: {errors[0]}", type=SERVER)
    return JSONResponse(maker.response([samples[i] for i in sorted(samples)], prompt_tokens))


async def _stream(submission: Submission, first: Event, maker: ResponseMaker,
                  include_usage: bool) -> AsyncIterator[dict[str, str]]:
    """The SSE events of a streamed request: a role chunk per choice, a chunk per choice with the
    text of the tokens that arrived since the last one (one token when the client keeps up), a last
    chunk per choice with its finish reason, the usage chunk if asked, then ``[DONE]``."""
    try:
        for index in range(submission.request.n):
            yield _data(maker.role_chunk(index, include_usage))
        prompt_tokens = completion_tokens = 0
        events: list[Event] = [first]
        while True:
            pending: dict[int, list[TokenEvent]] = {}
            for event in events:
                if isinstance(event, TokenEvent) and event.text:
                    pending.setdefault(event.sample, []).append(event)
                elif isinstance(event, SampleFinished):
                    if event.sample.index in pending:
                        yield _data(maker.token_chunk(pending.pop(event.sample.index), include_usage))
                    prompt_tokens = event.prompt_tokens
                    completion_tokens += len(event.sample.tokens)
                    if event.error:
                        yield _data(error_body(f"decoding failed: {event.error}", SERVER))
                    yield _data(maker.final_chunk(event.sample, include_usage))
            for tokens in pending.values():
                yield _data(maker.token_chunk(tokens, include_usage))
            if submission.done:
                break
            events = await submission.next_batch()
        if include_usage:
            yield _data(maker.usage_chunk(prompt_tokens, completion_tokens))
        yield {"data": "[DONE]"}
    finally:
        submission.cancel()  # a client that went away: its sequences end at the next step


def _data(body: dict[str, Any]) -> dict[str, str]:
    return {"data": json.dumps(body, ensure_ascii=False)}


# --- errors ----------------------------------------------------------------------------------

def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> Response:
        return exc.response()

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 404:
            message = f"no such endpoint: {request.method} {request.url.path}"
            return ApiError(404, message, type=NOT_FOUND, code="not_found").response()
        if exc.status_code == 405:
            message = f"method {request.method} is not allowed on {request.url.path}"
            return ApiError(405, message, code="method_not_allowed").response()
        return ApiError(exc.status_code, str(exc.detail)).response()

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> Response:
        return bad_request(str(exc.errors()[0].get("msg", "bad request"))).response()

    @app.exception_handler(Exception)
    async def server_error(_: Request, exc: Exception) -> Response:
        log.error("internal error: %s: %s", type(exc).__name__, exc)
        return ApiError(500, f"internal error ({type(exc).__name__}); see the server's log", type=SERVER).response()
