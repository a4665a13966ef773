"""``baco serve``: the OpenAI-compatible server (baco_local/serve) with gen's options as its defaults."""

from __future__ import annotations

import dataclasses
import sys
from typing import Annotated, Optional

import typer

from ..engine.backend import MAX_SEQUENCES
from ..errors import UsageError
from ..models.gguf_file import read_gguf
from . import options as opt
from .console import note, stderr, stdout
from .setup import prepare_run, resolve_run

SERVER = "Server"
DEFAULT_PORT = 8080
DEFAULT_PARALLEL = 4
DEFAULT_QUEUE = 64
DEFAULT_MAX_BODY = 1 << 20


@opt.with_run_options(seed=opt.RANDOM_SEED, helps={
    "router": "Default router of requests that name none (they may send \"router\").",
    "gamma": "Default γ of requests that send none, for the default router (other routers: their own default).",
    "seed": "Seed of requests that send none (-1 = a fresh random one per request, returned in baco.seed); "
            "sample i of a request uses seed + i.",
    "max_tokens": "Default most tokens per sample, for requests that send no max_tokens.",
    "draft": "Not used by the server (it always decodes with the step loop, many sequences at once).",
    "no_draft": "Not used by the server (see --draft).",
})
def serve_command(
    host: Annotated[str, typer.Option("--host", help="Address to listen on (a non-loopback one without "
                                      "--api-key warns).", rich_help_panel=SERVER)] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on (0: one the system picks, shown in the "
                                      "ready line).", rich_help_panel=SERVER)] = DEFAULT_PORT,
    parallel: Annotated[int, typer.Option("--parallel", "-np", help="Sequences decoded at once (each sample of "
                                          "each request is one).", rich_help_panel=SERVER)] = DEFAULT_PARALLEL,
    queue: Annotated[int, typer.Option("--queue", help="Requests that may wait for a free sequence; more get 503 "
                                       "with Retry-After.", rich_help_panel=SERVER)] = DEFAULT_QUEUE,
    api_key: Annotated[Optional[str], typer.Option("--api-key", envvar="BACO_API_KEY", show_envvar=True,
                                                   help="Require Authorization: Bearer KEY on the API (not on "
                                                   "/health).", rich_help_panel=SERVER)] = None,
    cors_origin: Annotated[Optional[list[str]], typer.Option("--cors-origin", metavar="<origin>", help="Allow "
                                                             "browser pages from this origin (repeatable; '*' any); "
                                                             "CORS is off without it.",
                                                             rich_help_panel=SERVER)] = None,
    max_n: Annotated[Optional[int], typer.Option("--max-n", help="Most samples (n) per request (default: "
                                                 "--parallel).", show_default=False, rich_help_panel=SERVER)] = None,
    max_tokens_limit: Annotated[Optional[int], typer.Option(
        "--max-tokens-limit", help="Most max_tokens a request may ask (default: the context size).",
        show_default=False, rich_help_panel=SERVER)] = None,
    max_body: Annotated[int, typer.Option("--max-body", help="Largest request body in bytes (more: 413).",
                                          rich_help_panel=SERVER)] = DEFAULT_MAX_BODY,
    *,
    run: opt.RunOptions,
) -> None:
    """Serve the pair over an OpenAI-compatible HTTP API (chat and text completions, streaming, n samples)."""
    from ..serve.bridge import EngineThread
    from ..serve.config import Defaults, Limits, ServeConfig
    from ..serve.runner import is_loopback, serve
    from .gen_parallel import open_scheduler

    _check_limits(port, parallel, queue, max_n, max_tokens_limit, max_body)
    plan, settings = prepare_run(run)
    resolved = resolve_run(plan, run)
    ctx_size = resolved.ctx_size or opt.DEFAULT_CTX
    limit = max_tokens_limit or ctx_size
    if run.max_tokens > limit:
        raise UsageError(f"--max-tokens {run.max_tokens} is over --max-tokens-limit {limit}")
    defaults = Defaults(router=settings.router.name, gamma=run.gamma, probability_gamma=plan.default_gamma,
                        entropy_gamma=plan.default_entropy_gamma, sampling=settings.sampling,
                        max_tokens=run.max_tokens, stop=settings.stop, seed=run.seed)
    spec = resolved.spec
    config = ServeConfig(model_id=resolved.label, base=str(spec.base_path), aligned=str(spec.aligned_path),
                         defaults=defaults, limits=Limits(parallel, queue, max_n or parallel, limit, max_body),
                         api_key=api_key or None, cors_origins=tuple(cors_origin or ()), ctx_size=ctx_size,
                         n_vocab=read_gguf(spec.base_path).n_vocab)
    if not is_loopback(host) and not config.api_key:
        stderr.print(f"[bold yellow]Warning:[/bold yellow] listening on {host} without --api-key: anyone who can "
                     "reach this address can use the server")
    sized = dataclasses.replace(run, max_tokens=limit)  # the KV cache holds the longest request allowed
    engine = EngineThread(lambda: open_scheduler(resolved, sized, parallel), queue)
    note(f"loading {resolved.label} ({parallel} parallel sequences, context {ctx_size})")
    serve(config, engine, host, port, say=_say)


def _say(line: str) -> None:
    """The ready line, on stdout at once (a script may wait for it)."""
    stdout.print(line)
    sys.stdout.flush()


def _check_limits(port: int, parallel: int, queue: int, max_n: int | None, max_tokens_limit: int | None,
                  max_body: int) -> None:
    """Refuse server options out of range before anything is loaded."""
    if not 0 <= port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535, got {port}")
    if not 1 <= parallel <= MAX_SEQUENCES:
        raise UsageError(f"--parallel must be between 1 and {MAX_SEQUENCES}, got {parallel}")
    if queue < 0:
        raise UsageError(f"--queue must be >= 0, got {queue}")
    if max_n is not None and not 1 <= max_n <= parallel:
        raise UsageError(f"--max-n must be between 1 and --parallel ({parallel}), got {max_n}")
    if max_tokens_limit is not None and max_tokens_limit < 1:
        raise UsageError(f"--max-tokens-limit must be at least 1, got {max_tokens_limit}")
    if max_body < 1:
        raise UsageError(f"--max-body must be at least 1, got {max_body}")
