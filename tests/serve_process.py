"""A real ``baco serve`` process on 127.0.0.1 for the server tests: started on a free port, ready when
``/health`` answers 200 (polled a bounded number of times), stopped by a signal."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"  # never any other address


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class ServerProcess:
    """``baco serve ARGS --host 127.0.0.1 --port P`` as a child process."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None, log_dir: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.log = (log_dir or Path("/tmp")) / f"baco-serve-{self.port}.log"
        environment = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        self._log_file = self.log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "baco_local", "serve", *args, "--host", HOST, "--port", str(self.port)],
            stdout=subprocess.PIPE, stderr=self._log_file, env=environment, cwd=ROOT)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Poll /health (at most every 0.1 s, until ``timeout``) until it answers 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"baco serve exited with {self.process.returncode}: {self.log.read_text()}")
            try:
                if httpx.get(self.url + "/health", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"baco serve was not ready after {timeout} s: {self.log.read_text()}")

    def ready_line(self) -> str:
        """The first line the server printed on stdout."""
        assert self.process.stdout is not None
        return self.process.stdout.readline().decode()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Signal the server and wait for it to exit (killed after ``timeout``); its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log_file.close()
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.process.returncode


@contextmanager
def serving(args: list[str], log_dir: Path, env: dict[str, str] | None = None) -> Iterator[ServerProcess]:
    """A ready ``baco serve ARGS`` for the block (a module fixture's body); it must exit with 0 after."""
    process = ServerProcess(args, env=env, log_dir=log_dir)
    try:
        process.wait_ready()
        yield process
    finally:
        assert process.stop() == 0, process.log.read_text()
