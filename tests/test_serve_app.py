"""The serve app in process (Starlette's TestClient) on the tiny pair: ``/health`` and the API answer
503 while the models load, then 200; a failed load is reported, not hidden."""

from __future__ import annotations

import threading

from starlette.testclient import TestClient

from baco_local import ModelPair, PairSpec
from baco_local.engine.scheduler import Scheduler
from baco_local.serve.app import create_app
from baco_local.serve.bridge import EngineThread
from baco_local.serve.config import Defaults, ServeConfig

CONFIG = ServeConfig(model_id="tiny", base="b", aligned="a", defaults=Defaults("p-punc", None, 0.3), ctx_size=256)
STORY = {"messages": [{"role": "user", "content": "Tell me a story"}], "max_tokens": 5}


def test_health_is_503_while_loading_then_200(tiny_pair) -> None:
    gate = threading.Event()

    def open_scheduler() -> Scheduler:
        gate.wait(30)
        return Scheduler(ModelPair(PairSpec(*tiny_pair)), parallel=2, ctx_size=256, threads=1)

    engine = EngineThread(open_scheduler, queue_limit=4)
    with TestClient(create_app(CONFIG, engine), base_url="http://127.0.0.1") as client:
        loading = client.get("/health")
        assert loading.status_code == 503 and loading.headers["retry-after"] == "1"
        assert loading.json()["error"] == {"message": "Loading model", "type": "unavailable_error", "param": None,
                                           "code": "loading"}
        assert client.post("/v1/chat/completions", json=STORY).status_code == 503
        gate.set()
        assert engine.ready.wait(30)
        assert client.get("/health").json() == {"status": "ok"}
        reply = client.post("/v1/chat/completions", json=STORY)
        assert reply.status_code == 200 and reply.json()["usage"]["completion_tokens"] == 5


def test_a_failed_load_is_reported(tiny_pair) -> None:
    def open_scheduler() -> Scheduler:
        raise OSError("disk on fire")

    engine = EngineThread(open_scheduler, queue_limit=4)
    with TestClient(create_app(CONFIG, engine), base_url="http://127.0.0.1") as client:
        assert engine.ready.wait(30)
        health = client.get("/health")
        assert health.status_code == 500 and "disk on fire" in health.json()["error"]["message"]
        assert client.post("/v1/chat/completions", json=STORY).status_code == 503
