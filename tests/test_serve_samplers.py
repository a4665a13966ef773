"""``baco serve`` as real processes on 127.0.0.1 with real llama.cpp on the tiny pair: llama.cpp's
diversity samplers (XTC, top-n-σ, DRY) as request fields with llama-server's names and as the
server's defaults from the command line, and ``--concurrency`` with its thread split, reported in
``/baco/stats`` and never changing the tokens. Two servers for the module: one decoding both models
at once (with an XTC default), one decoding them in turn; and ``--concurrency auto`` servers of their own."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from serve_process import ServerProcess, serving

CTX = 512
STORY = [{"role": "user", "content": "Tell me a story about the cat"}]
SAMPLERS = {"xtc_probability": 0.5, "xtc_threshold": 0.05, "top_n_sigma": 1.5, "dry_multiplier": 0.8,
            "dry_base": 1.5, "dry_allowed_length": 1, "dry_penalty_last_n": 64, "dry_sequence_breakers": ["\n", "."]}
OFF = {"xtc_probability": 0, "top_n_sigma": -1, "dry_multiplier": 0}  # every one of them off


def server_args(tiny_pair, *flags: str) -> list[str]:
    """``baco serve``'s arguments for these tests: the tiny pair, four sequences, then ``flags``."""
    base, aligned = tiny_pair
    return ["--base", str(base), "--aligned", str(aligned), "-c", str(CTX), "--parallel", "4", "--max-tokens", "24",
            "-q", *flags]


@pytest.fixture(scope="module")
def servers(tiny_pair, tmp_path_factory):
    """(at once, in turn): ``--concurrency on -t 1,1 --xtc-probability 0.25`` and ``--concurrency off -t 2``."""
    log_dir = tmp_path_factory.mktemp("serve")
    at_once = server_args(tiny_pair, "--concurrency", "on", "-t", "1,1", "--xtc-probability", "0.25")
    in_turn = server_args(tiny_pair, "--concurrency", "off", "-t", "2")
    with serving(at_once, log_dir) as first, serving(in_turn, log_dir) as second:
        yield first, second


def chat(server: ServerProcess, **fields) -> dict:
    reply = httpx.post(server.url + "/v1/chat/completions", json={"messages": STORY, **fields}, timeout=60)
    assert reply.status_code == 200, reply.text
    return reply.json()


def texts(body: dict) -> list[tuple[str, str]]:
    return [(c["message"]["content"], c["baco"]["sources"]) for c in body["choices"]]


def test_sampler_fields_run_and_are_echoed(servers) -> None:
    _, in_turn = servers
    body = chat(in_turn, seed=3, temperature=1.0, **SAMPLERS)
    assert body["baco"]["sampling"] == {"temperature": 1.0, "top_k": 40, "top_p": 0.95, "min_p": 0.05, **SAMPLERS}
    assert body["choices"][0]["message"]["content"]
    plain = chat(in_turn, seed=3, temperature=1.0)
    assert plain["baco"]["sampling"] == {"temperature": 1.0, "top_k": 40, "top_p": 0.95, "min_p": 0.05}
    always = chat(in_turn, seed=3, temperature=1.0, xtc_probability=1.0, xtc_threshold=0.01)
    assert texts(always) != texts(plain)  # XTC at every token removed the likeliest choices


def test_a_stream_echoes_the_samplers_in_its_first_chunk(servers) -> None:
    _, in_turn = servers
    with httpx.stream("POST", in_turn.url + "/v1/chat/completions", timeout=60,
                      json={"messages": STORY, "stream": True, "dry_multiplier": 0.5, "dry_sequence_breakers": []}) as reply:
        first = next(line for line in reply.iter_lines() if line.startswith("data: "))
    sampling = json.loads(first[len("data: "):])["baco"]["sampling"]
    assert sampling["dry_multiplier"] == 0.5 and sampling["dry_sequence_breakers"] == []


OUT_OF_RANGE = [("xtc_probability", 1.5), ("xtc_threshold", -0.1), ("top_n_sigma", float("inf")),
                ("dry_multiplier", -1), ("dry_base", 0.5), ("dry_allowed_length", -1), ("dry_penalty_last_n", -2),
                ("dry_sequence_breakers", [""]), ("dry_sequence_breakers", "\n"), ("dry_allowed_length", 1.5)]


@pytest.mark.parametrize("field, value", OUT_OF_RANGE, ids=[f"{f}={v!r}" for f, v in OUT_OF_RANGE])
def test_out_of_range_sampler_fields_get_a_400_naming_them(servers, field, value) -> None:
    _, in_turn = servers
    reply = httpx.post(in_turn.url + "/v1/chat/completions", timeout=60,
                       content=json.dumps({"messages": STORY, field: value}))  # inf goes as Infinity
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["param"] == field and error["type"] == "invalid_request_error"
    assert error["message"].startswith(field) and "--" not in error["message"] and "'none'" not in error["message"]
    assert chat(in_turn, max_tokens=2)["choices"]  # and the server still answers


def test_the_command_line_samplers_are_the_defaults(servers) -> None:
    at_once, _ = servers
    sampling = chat(at_once, seed=1)["baco"]["sampling"]
    assert sampling["xtc_probability"] == 0.25 and sampling["xtc_threshold"] == 0.1  # --xtc-probability 0.25
    assert "xtc_probability" not in chat(at_once, seed=1, xtc_probability=0)["baco"]["sampling"]  # the request's own
    defaults = httpx.get(at_once.url + "/baco/routers").json()["defaults"]  # and what /baco/routers lists
    assert defaults["xtc_probability"] == 0.25 and defaults["top_n_sigma"] == -1.0 and defaults["dry_multiplier"] == 0
    assert defaults["dry_sequence_breakers"] == ["\n", ":", "\"", "*"] and defaults["top_k"] == 40


def test_concurrency_on_gives_the_tokens_of_off(servers) -> None:
    at_once, in_turn = servers
    requests = [dict(seed=i, temperature=0.9, n=1 + i % 2, router=router, **(SAMPLERS if i % 2 else OFF))
                for i, router in enumerate(["p-punc", "p", "random", "aligned"])]
    for request in requests:  # one at a time: single-sequence batches (and two samples of one prompt)
        assert texts(chat(at_once, **request)) == texts(chat(in_turn, **request))
    with ThreadPoolExecutor(4) as pool:  # together: multi-sequence batches
        together = list(pool.map(lambda request: texts(chat(at_once, **request)), requests))
    assert together == [texts(chat(in_turn, **request)) for request in requests]


def test_stats_show_the_concurrency_and_prefill(servers) -> None:
    at_once, in_turn = servers
    chat(at_once, max_tokens=3)
    chat(in_turn, max_tokens=3)
    on, off = (httpx.get(s.url + "/baco/stats", timeout=60).json() for s in servers)
    assert on["concurrency"]["asked"] == "on" and off["concurrency"]["asked"] == "off"
    assert on["concurrency"]["threads"] == {"sequential": [1, 1], "concurrent": [1, 1]}  # -t 1,1
    assert off["concurrency"]["threads"] == {"sequential": [2, 2], "concurrent": [1, 1]}  # -t 2
    assert on["concurrency"]["chosen"]["single"] == {"mode": "on", "source": "asked"}
    assert off["concurrency"]["chosen"]["single"]["mode"] == "off"
    assert on["concurrency"]["summary"].startswith("concurrency on: single on")
    for stats in (on, off):
        assert set(stats["prefill"]) == {"in_step", "alone", "chunked", "tokens"}
        assert stats["prefill"]["tokens"] > 0 and stats["prefill"]["alone"] + stats["prefill"]["in_step"] > 0


def concurrency(server: ServerProcess) -> dict:
    """The server's decode plan, as /baco/stats reports it."""
    return httpx.get(server.url + "/baco/stats", timeout=60).json()["concurrency"]


def test_concurrency_auto_measures_once_and_remembers(servers, tiny_pair, tmp_path) -> None:
    """``--concurrency auto``: each batch class is measured on its first steps, the choice is shown in
    /baco/stats, a restarted server takes it from the cache folder, and the tokens are the same."""
    _, in_turn = servers
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}  # nothing measured yet
    request = dict(seed=3, temperature=0.9, router="p-punc")
    chosen = []
    for _ in range(2):  # a first server, then a restarted one
        with serving(server_args(tiny_pair, "--concurrency", "auto", "-t", "2"), tmp_path, env=env) as auto:
            assert concurrency(auto)["asked"] == "auto" and concurrency(auto)["chosen"] == {}  # nothing decoded yet
            assert texts(chat(auto, **request)) == texts(chat(in_turn, **request))  # one sequence
            assert texts(chat(auto, n=3, **request)) == texts(chat(in_turn, n=3, **request))  # three at once
            chosen.append(concurrency(auto)["chosen"])
            assert concurrency(auto)["summary"].startswith("concurrency auto: single ")
    first, again = chosen
    assert set(first) == {"single", "multi"}
    assert {entry["source"] for entry in first.values()} == {"measured"}
    assert {entry["source"] for entry in again.values()} == {"cached"}
    for klass, entry in first.items():
        assert entry["mode"] in ("on", "off") and again[klass]["mode"] == entry["mode"]
        assert entry["sequential_ms"] > 0 and entry["concurrent_ms"] > 0
