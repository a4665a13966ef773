"""A local HTTP server that answers ``/{repo}/resolve/{revision}/{file}`` as the Hugging Face hub does.

Enough of the protocol for ``huggingface_hub.hf_hub_download``: HEAD and GET with the
``X-Repo-Commit`` and ``ETag`` headers, ``Range`` requests (206), and the ``X-Error-Code`` 404s
(``RepoNotFound``, ``EntryNotFound``). It can break a transfer off after some bytes (once per
file) and answer every request with an error status. It listens on 127.0.0.1 only.
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"
_PATH = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<file>.+)$")


@dataclass
class Request:
    """One request the server saw."""

    method: str
    path: str
    range: str | None


@dataclass
class FakeHub:
    """Files by (repo, name); the server's switches; the requests it received."""

    files: dict[tuple[str, str], bytes] = field(default_factory=dict)
    cut_after: dict[tuple[str, str], int] = field(default_factory=dict)  # break the first GET off here
    status: int | None = None  # answer everything with this status (e.g. 503)
    requests: list[Request] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    def add(self, repo: str, name: str, data: bytes) -> None:
        """Publish a file."""
        self.files[(repo, name)] = data

    @property
    def url(self) -> str:
        """The endpoint, for HF_ENDPOINT."""
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeHub:
        """Serve in a daemon thread."""
        hub = self

        class Handler(_Handler):
            owner = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Shut the server down."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def gets(self, name: str) -> list[Request]:
        """The GET requests for a file."""
        return [r for r in self.requests if r.method == "GET" and r.path.endswith("/" + name)]


class _Handler(BaseHTTPRequestHandler):
    owner: FakeHub

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        return

    def do_HEAD(self) -> None:  # http.server's naming
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def _answer(self, *, body: bool) -> None:
        hub = self.owner
        hub.requests.append(Request(self.command, self.path, self.headers.get("Range")))
        if hub.status is not None:
            self._error(hub.status, None)
            return
        match = _PATH.match(self.path.split("?")[0])
        if not match:
            self._error(404, "RepoNotFound")
            return
        repo, name = match["repo"], match["file"]
        if not any(key[0] == repo for key in hub.files):
            self._error(404, "RepoNotFound")
            return
        data = hub.files.get((repo, name))
        if data is None:
            self._error(404, "EntryNotFound")
            return
        start = _range_start(self.headers.get("Range"))
        self.send_response(206 if start else 200)
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(data) - start))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if not body:
            return
        cut = hub.cut_after.pop((repo, name), None)
        self.wfile.write(data[start:start + cut] if cut is not None else data[start:])
        self.wfile.flush()
        if cut is not None:
            self.close_connection = True

    def _error(self, status: int, code: str | None) -> None:
        self.send_response(status)
        if code:
            self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", code)
        self.send_header("Content-Length", "0")
        self.end_headers()


def _range_start(header: str | None) -> int:
    match = re.match(r"bytes=(\d+)-", header or "")
    return int(match.group(1)) if match else 0

