"""Run the app under uvicorn: bind, say the URL once the models are loaded, stop cleanly on a signal.

Ctrl-C or SIGTERM: new connections are refused, every request in flight is ended (a stream sends
its last chunk per choice with ``finish_reason`` and ``[DONE]``; a plain request answers with the
text so far), then the engine thread stops and the process exits with status 0.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import sys
from types import FrameType
from typing import Callable

import uvicorn

from ..errors import BacoError, UsageError
from .app import create_app
from .bridge import FAILED, READY, EngineThread
from .config import ServeConfig

LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    """Whether ``host`` only listens on this machine."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: one the system picks); a clear error if it cannot be had."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family = infos[0][0]
        sock = socket.create_server((host, port), family=family, backlog=128)
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class BacoServer(uvicorn.Server):
    """uvicorn's server; a stop signal also ends the requests in flight, and is not re-raised after."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit = on_exit
        self.loop: asyncio.AbstractEventLoop | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        self._captured_signals.clear()  # a clean stop exits 0, not by the signal
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self._on_exit)


def serve(config: ServeConfig, engine: EngineThread, host: str, port: int, *,
          say: Callable[[str], None] = print) -> None:
    """Serve until a stop signal; raises :class:`BacoError` if the models fail to load."""
    sock = bind(host, port)
    app = create_app(config, engine)
    server = BacoServer(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                                       timeout_graceful_shutdown=30, timeout_keep_alive=5), engine.cancel_all)

    async def run() -> None:
        server.loop = asyncio.get_running_loop()
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        while not serving.done():
            if server.started and engine.ready.is_set():
                if engine.state == READY:
                    say(f"baco serve: listening on {url_of(sock)} (OpenAI API at {url_of(sock)}/v1; Ctrl-C stops)")
                elif engine.state == FAILED:
                    server.should_exit = True
                break
            await asyncio.sleep(0.05)
        await serving

    try:
        asyncio.run(run())
    finally:
        sock.close()
    if engine.state == FAILED:
        failure = engine.failure
        if isinstance(failure, BacoError):
            raise failure
        raise BacoError(f"the models failed to load: {type(failure).__name__}: {failure}")
    sys.stdout.flush()
