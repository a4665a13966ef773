"""``baco serve`` as a real process on 127.0.0.1 with real llama.cpp on the tiny pair, driven by the
official ``openai`` client and by plain HTTP (httpx): the protocol, the provenance, errors, auth, CORS
and many clients at once. One server for the whole module."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from serve_process import serving

KEY = "test-key-123"
ORIGIN = "http://page.test"
CTX = 512
MAX_TOKENS_LIMIT = 200
HEADERS = {"Authorization": f"Bearer {KEY}"}
MODEL = "base+aligned"
STORY = [{"role": "user", "content": "Tell me a story about the cat"}]


@pytest.fixture(scope="module")
def server(tiny_pair, tmp_path_factory):
    base, aligned = tiny_pair
    args = ["--base", str(base), "--aligned", str(aligned), "-c", str(CTX), "-t", "1", "--parallel", "8",
            "--max-n", "4", "--max-tokens-limit", str(MAX_TOKENS_LIMIT), "--max-tokens", "64", "--max-body", "20000",
            "--api-key", KEY, "--cors-origin", ORIGIN, "-q"]
    with serving(args, tmp_path_factory.mktemp("serve")) as process:
        yield process


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, headers=HEADERS, timeout=60) as session:
        yield session


def joined(pieces: list[dict]) -> str:
    assert all(p["side"] in ("base", "aligned") for p in pieces)
    return "".join(p["text"] for p in pieces)


def stream_texts(client: openai.OpenAI, **kwargs) -> tuple[dict[int, str], dict[int, dict], list]:
    """A streamed chat completion reassembled: text per choice, each choice's last chunk, all chunks."""
    texts: dict[int, str] = {}
    finals: dict[int, dict] = {}
    chunks = list(client.chat.completions.create(stream=True, **kwargs))
    for chunk in chunks:
        for choice in chunk.choices:
            extra = choice.model_extra["baco"]
            content = choice.delta.content or ""
            assert joined(extra["pieces"]) == content  # the pieces of a delta are its text
            texts[choice.index] = texts.get(choice.index, "") + content
            if choice.finish_reason is not None:
                finals[choice.index] = {"finish_reason": choice.finish_reason, **extra}
    return texts, finals, chunks


# --- the openai client ------------------------------------------------------------------------

def test_ready_line_and_models(server, client) -> None:
    assert server.ready_line().strip() == f"baco serve: listening on {server.url} (OpenAI API at {server.url}/v1; " \
                                          "Ctrl-C stops)"
    models = client.models.list().data
    assert [m.id for m in models] == ["base+aligned"]
    assert models[0].model_extra["baco"]["router"] == "p-punc"
    assert client.models.retrieve("base+aligned").id == "base+aligned"


def test_chat_completion_with_provenance(client) -> None:
    result = client.chat.completions.create(model=MODEL, messages=STORY, max_tokens=30, seed=4)
    choice = result.choices[0]
    assert result.object == "chat.completion" and result.id.startswith("chatcmpl-")
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    baco = choice.model_extra["baco"]
    assert joined(baco["pieces"]) == choice.message.content
    assert len(baco["sources"]) == result.usage.completion_tokens
    assert set(baco["sources"]) == {"A", "B"}  # p-punc at γ 0.3 mixes both models here
    assert {p["side"] for p in baco["pieces"]} == {"base", "aligned"}
    assert baco["base_share"] == pytest.approx(baco["sources"].count("B") / len(baco["sources"]))
    assert result.usage.prompt_tokens > 0
    assert result.usage.total_tokens == result.usage.prompt_tokens + result.usage.completion_tokens


def test_conversations_with_every_role_and_text_parts(client) -> None:
    conversation = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "the cat"},
                    {"role": "assistant", "content": "the dog"},
                    {"role": "user", "content": [{"type": "text", "text": "Tell me "}, {"type": "text", "text": "more"}]}]
    plain = client.chat.completions.create(model=MODEL, messages=conversation, max_tokens=10, seed=1, temperature=0)
    joined_parts = [*conversation[:3], {"role": "user", "content": "Tell me more"}]
    again = client.chat.completions.create(model=MODEL, messages=joined_parts, max_tokens=10, seed=1, temperature=0)
    assert plain.choices[0].message.content and plain.choices[0].message.content == again.choices[0].message.content
    developer = [{"role": "developer", "content": "Be brief."}, *conversation[1:]]
    as_system = client.chat.completions.create(model=MODEL, messages=developer, max_tokens=10, seed=1, temperature=0)
    assert as_system.choices[0].message.content == plain.choices[0].message.content


def test_stream_reassembled_equals_the_plain_response(client) -> None:
    request = dict(model=MODEL, messages=STORY, max_tokens=40, seed=11, temperature=1.0, n=2)
    plain = client.chat.completions.create(**request)
    texts, finals, chunks = stream_texts(client, stream_options={"include_usage": True}, **request)
    assert texts == {c.index: c.message.content for c in plain.choices}
    for choice in plain.choices:
        assert finals[choice.index]["finish_reason"] == choice.finish_reason
        assert finals[choice.index]["sources"] == choice.model_extra["baco"]["sources"]
    first_of = {}
    for chunk in chunks:
        for choice in chunk.choices:
            first_of.setdefault(choice.index, choice.delta)
    assert all(delta.role == "assistant" for delta in first_of.values())
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == plain.usage.completion_tokens
    assert all(chunk.usage is None for chunk in chunks[:-1])


def test_n_samples_are_parallel_and_distinct(client) -> None:
    result = client.chat.completions.create(model=MODEL, messages=STORY, max_tokens=25, seed=3, temperature=1.0, n=3)
    assert [c.index for c in result.choices] == [0, 1, 2]
    assert len({c.message.content for c in result.choices}) >= 2
    assert [c.model_extra["baco"]["seed"] for c in result.choices] == [3, 4, 5]
    assert result.usage.completion_tokens == sum(len(c.model_extra["baco"]["sources"]) for c in result.choices)


def test_router_and_gamma_as_extra_body(client) -> None:
    def share(router: str, gamma: float) -> float:
        result = client.chat.completions.create(model=MODEL, messages=STORY, max_tokens=30, seed=1,
                                                extra_body={"router": router, "gamma": gamma})
        assert result.model_extra["baco"]["router"] == router and result.model_extra["baco"]["gamma"] == gamma
        return result.choices[0].model_extra["baco"]["base_fraction"]

    assert share("p", 0.0) == 0.0  # never base: its top-1 probability is never below 0
    assert share("p", 0.9) > 0.5  # the base table is flat: it writes most tokens
    assert share("aligned", 0.0) == 0.0


def test_stop_strings(client) -> None:
    full = client.chat.completions.create(model=MODEL, messages=STORY, max_tokens=30, seed=2, temperature=0)
    text = full.choices[0].message.content
    word = " " + text.split()[3]
    cut = client.chat.completions.create(model=MODEL, messages=STORY, max_tokens=30, seed=2, temperature=0, stop=[word, "zzz"])
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].message.content == text[:text.index(word)]
    assert joined(cut.choices[0].model_extra["baco"]["pieces"]) == cut.choices[0].message.content
    one = client.chat.completions.create(model=MODEL, messages=STORY, max_tokens=30, seed=2, temperature=0, stop=word)
    assert one.choices[0].message.content == cut.choices[0].message.content


def test_text_completions(client) -> None:
    result = client.completions.create(model=MODEL, prompt="Tell me a story about the cat", max_tokens=20,
                                       seed=5, temperature=0)
    assert result.object == "text_completion" and result.choices[0].text
    assert joined(result.choices[0].model_extra["baco"]["pieces"]) == result.choices[0].text
    chat = client.chat.completions.create(model=MODEL, messages=STORY, max_tokens=20, seed=5, temperature=0)
    assert result.choices[0].text == chat.choices[0].message.content  # a raw prompt is one user message
    streamed = "".join(c.choices[0].text for c in client.completions.create(model=MODEL,
        prompt="Tell me a story about the cat", max_tokens=20, seed=5, temperature=0, stream=True) if c.choices)
    assert streamed == result.choices[0].text


# --- plain HTTP ---------------------------------------------------------------------------------

def test_routers_endpoint(http) -> None:
    body = http.get("/baco/routers").json()
    by_name = {r["name"]: r for r in body["routers"]}
    assert by_name["p-punc"]["gamma"] == {"min": 0.0, "max": 1.0, "default": 0.3, "unit": "probability"}
    assert by_name["h"]["gamma"]["unit"] == "nats" and by_name["h"]["gamma"]["max"] > 0
    assert by_name["aligned"]["gamma"] is None and by_name["punc"]["gamma"] is None
    assert body["defaults"]["router"] == "p-punc" and body["defaults"]["gamma"] == 0.3
    assert body["limits"] == {"n": 4, "max_tokens": MAX_TOKENS_LIMIT}


def test_auth(server, http) -> None:
    health = httpx.get(server.url + "/health")
    assert health.status_code == 200 and health.json() == {"status": "ok"}  # public
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {KEY}"}):
        for path in ("/v1/models", "/baco/routers"):
            reply = httpx.get(server.url + path, headers=headers)
            assert reply.status_code == 401 and reply.json()["error"]["type"] == "authentication_error"
    reply = httpx.post(server.url + "/v1/chat/completions", json={"messages": STORY})
    assert reply.status_code == 401
    assert httpx.get(server.url + "/v1/models", headers={"X-Api-Key": KEY}).status_code == 200
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0).models.list()


def test_cors(server, http) -> None:
    reply = http.get("/v1/models", headers={"Origin": ORIGIN})
    assert reply.headers["access-control-allow-origin"] == ORIGIN
    assert "access-control-allow-origin" not in http.get("/v1/models", headers={"Origin": "http://evil.test"}).headers
    preflight = httpx.options(server.url + "/v1/chat/completions", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == ORIGIN


BAD_REQUESTS = [
    ("{not json", 400, None),
    ("[1, 2]", 400, None),
    ({"messages": []}, 400, "messages"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, 400, "messages.0.role"),
    ({"messages": STORY, "router": "nope"}, 400, "router"),
    ({"messages": STORY, "router": "p", "gamma": 1.5}, 400, "gamma"),
    ({"messages": STORY, "router": "h", "gamma": -1}, 400, "gamma"),
    ({"messages": STORY, "n": 0}, 400, "n"),
    ({"messages": STORY, "n": 5}, 400, "n"),
    ({"messages": STORY, "max_tokens": MAX_TOKENS_LIMIT + 1}, 400, "max_tokens"),
    ({"messages": STORY, "temperature": -1}, 400, "temperature"),
    ({"messages": STORY, "top_p": 0}, 400, "top_p"),
    ({"messages": STORY, "stop": ""}, 400, "stop"),
    ({"messages": STORY, "tools": [{"type": "function", "function": {"name": "f"}}]}, 400, "tools"),
    ({"messages": STORY, "logprobs": True}, 400, "logprobs"),
    ({"messages": STORY, "response_format": {"type": "json_object"}}, 400, "response_format"),
    ({"messages": STORY, "frobnicate": 1}, 400, "frobnicate"),
    ({"messages": [{"role": "user", "content": "the cat " * 400}]}, 400, "messages"),
    ({"messages": STORY, "model": "gpt-4"}, 404, "model"),
]


@pytest.mark.parametrize("body, status, param", BAD_REQUESTS, ids=range(len(BAD_REQUESTS)))
def test_bad_requests_get_an_openai_error(http, body, status, param) -> None:
    content = body if isinstance(body, str) else json.dumps(body)
    reply = http.post("/v1/chat/completions", content=content)
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert error["param"] == param
    assert "Traceback" not in reply.text


def test_other_errors_and_the_server_still_answers(http) -> None:
    for _ in range(12):  # the 413 is read after the body, not lost to a connection reset (was 1 in 4)
        big = http.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "x" * 30000}]})
        assert big.status_code == 413 and big.json()["error"]["code"] == "request_too_large"
    missing = http.get("/v1/nothing-here")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"
    assert http.get("/v1/models/other").status_code == 404
    wrong_method = http.get("/v1/chat/completions")
    assert wrong_method.status_code == 405 and "error" in wrong_method.json()
    overflow = http.post("/v1/completions", json={"prompt": "the cat " * 400})
    assert overflow.status_code == 400 and overflow.json()["error"]["code"] == "context_length_exceeded"
    ok = http.post("/v1/chat/completions", json={"messages": STORY, "max_tokens": 5}, headers={"Content-Type": "text/plain"})
    assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"]


# --- many clients -------------------------------------------------------------------------------

def test_eight_concurrent_clients_match_each_alone(server, client) -> None:
    topics = ["the cat", "the dog", "a story", "the moon", "the river", "the sun", "the bird", "the door"]
    requests = [dict(messages=[{"role": "user", "content": f"Tell me about {t}"}], max_tokens=60, seed=i,
                     temperature=0.9, extra_body={"router": ["p-punc", "p", "random", "aligned"][i % 4]})
                for i, t in enumerate(topics)]

    def ask(request: dict) -> tuple[str, str]:
        choice = client.chat.completions.create(model=MODEL, **request).choices[0]
        return choice.message.content, choice.model_extra["baco"]["sources"]

    alone = [ask(r) for r in requests]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(ask, requests))
    assert together == alone
    stats = httpx.get(server.url + "/baco/stats", headers=HEADERS).json()
    assert stats["live_sequences"] == 0 and stats["waiting"] == 0 and stats["parallel"] == 8
    assert stats["peak_live_sequences"] >= 5  # decoded together (no earlier test has more than 3 at once)
