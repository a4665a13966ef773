"""``baco serve`` with one sequence and a queue of one, as a real process on 127.0.0.1: a client that
disconnects frees its slot for the queued request, a full queue answers 503 at once, SIGTERM during
a stream ends it properly and exits 0; bad server options fail before anything loads."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest
from serve_process import HOST, ROOT, serving

from baco_local.serve.runner import is_loopback

LONG = 2000  # tokens a request would take to finish: seconds, far longer than the checks below
KEY = "from-the-environment"
AUTH = {"Authorization": f"Bearer {KEY}"}
STORY = [{"role": "user", "content": "Tell me a story about the cat"}]


@pytest.fixture(scope="module")
def server(tiny_pair, tmp_path_factory):
    base, aligned = tiny_pair
    args = ["--base", str(base), "--aligned", str(aligned), "-c", "2048", "-t", "1", "--parallel", "1",
            "--queue", "1", "--temp", "0", "-q"]
    with serving(args, tmp_path_factory.mktemp("serve"), env={"BACO_API_KEY": KEY}) as process:
        yield process


def stats(server) -> dict:
    return httpx.get(server.url + "/baco/stats", headers=AUTH, timeout=10).json()


def wait_for(condition, timeout: float = 20.0) -> None:
    """Poll ``condition`` every 0.05 s until it holds (bounded by ``timeout``)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def read_until_content(lines, count: int = 3) -> list[dict]:
    """The stream's chunks up to the ``count``-th one with text."""
    chunks: list[dict] = []
    for line in lines:
        if line.startswith("data: ") and line != "data: [DONE]":
            chunks.append(json.loads(line[6:]))
            if sum(1 for c in chunks for choice in c["choices"] if choice["delta"].get("content")) >= count:
                return chunks
    raise AssertionError("the stream ended early")


def test_the_key_can_come_from_the_environment(server) -> None:
    assert httpx.get(server.url + "/baco/stats").status_code == 401
    assert httpx.get(server.url + "/baco/stats", headers=AUTH).status_code == 200


def test_disconnect_frees_the_slot_and_a_full_queue_gives_503(server) -> None:
    before = stats(server)["completion_tokens"]
    queued: dict = {}

    def ask_queued() -> None:
        reply = httpx.post(server.url + "/v1/chat/completions", json={"messages": STORY, "max_tokens": 5}, headers=AUTH,
                           timeout=60)
        queued["status"], queued["body"] = reply.status_code, reply.json()

    with httpx.Client(base_url=server.url, headers=AUTH, timeout=60) as streaming:
        with streaming.stream("POST", "/v1/chat/completions",
                              json={"messages": STORY, "max_tokens": LONG, "stream": True}) as long_stream:
            lines = long_stream.iter_lines()  # kept: a dropped iterator closes the connection
            read_until_content(lines)
            assert stats(server)["live_sequences"] == 1
            waiter = threading.Thread(target=ask_queued)
            waiter.start()
            wait_for(lambda: stats(server)["waiting"] == 1)
            full = httpx.post(server.url + "/v1/chat/completions", json={"messages": STORY, "max_tokens": 5}, headers=AUTH)
            assert full.status_code == 503 and full.headers["retry-after"] == "1"
            assert full.json()["error"]["code"] == "queue_full"
            assert "status" not in queued  # still waiting behind the long stream
        # Leaving the block closes the connection mid-stream: the long request is cancelled.
    waiter.join(30)
    assert queued["status"] == 200 and queued["body"]["usage"]["completion_tokens"] == 5
    wait_for(lambda: stats(server)["live_sequences"] == 0)
    after = stats(server)
    assert after["waiting"] == 0
    assert after["completion_tokens"] - before < LONG  # the long one stopped early


def test_a_plain_request_whose_client_leaves_is_cancelled(server) -> None:
    before = stats(server)["completion_tokens"]
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(server.url + "/v1/chat/completions", json={"messages": STORY, "max_tokens": LONG}, headers=AUTH,
                   timeout=0.5)
    wait_for(lambda: stats(server)["live_sequences"] == 0)
    assert stats(server)["completion_tokens"] - before < LONG


def test_sigterm_ends_the_stream_in_flight_and_exits_0(server) -> None:
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as streaming:
        with streaming.stream("POST", "/v1/chat/completions",
                              json={"messages": STORY, "max_tokens": LONG, "stream": True,
                                    "stream_options": {"include_usage": True}}) as reply:
            lines = reply.iter_lines()
            read_until_content(lines)
            server.process.send_signal(signal.SIGTERM)
            stopped = time.monotonic()
            rest = [line for line in lines if line.startswith("data: ")]
    assert rest[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in rest[:-1]]
    final = next(c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"])
    assert final["choices"][0]["finish_reason"] == "length" and final["choices"][0]["baco"]["finish"] == "cancelled"
    assert chunks[-1]["choices"] == [] and 0 < chunks[-1]["usage"]["completion_tokens"] < LONG
    assert server.process.wait(10) == 0
    assert time.monotonic() - stopped < 10


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "baco_local", "serve", *args], capture_output=True, text=True,
                          timeout=60, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def test_bad_server_options_fail_before_loading(tiny_pair) -> None:
    base, aligned = map(str, tiny_pair)
    for args, message in [(["--parallel", "0"], "--parallel must be between 1 and"),
                          (["--parallel", "2", "--max-n", "3"], "--max-n must be between 1 and --parallel (2)"),
                          (["--queue", "-1"], "--queue must be >= 0"),
                          (["--port", "70000"], "--port must be between 0 and 65535"),
                          (["--router", "nope"], "unknown router 'nope'")]:
        result = run_cli("--base", base, "--aligned", aligned, "--host", HOST, *args)
        assert result.returncode == 2 and result.stderr.startswith("Error: ") and message in result.stderr, args
        assert "Traceback" not in result.stderr


def test_a_port_in_use_is_one_error_line(tiny_pair) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("--base", str(tiny_pair[0]), "--aligned", str(tiny_pair[1]), "--host", HOST,
                         "--port", str(port), "-q")
    assert result.returncode == 2 and result.stderr.startswith(f"Error: cannot listen on {HOST}:{port}")


def test_loopback_addresses() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("example.org")
