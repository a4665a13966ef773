"""Stop strings that span token boundaries, in the step loop and in draft-and-verify, on the tiny pair."""

from __future__ import annotations

import json

import pytest
from stop_strings import assert_cut_like, boundary_stop
from test_gen_cli import baco, model_args

from baco_local import GenerationSettings, Message, get_router
from baco_local.engine.loop import DraftPolicy
from baco_local.engine.sampling import SamplingParams
from baco_local.runs.prompt_file import id_key

PROMPT = [Message("user", "Tell me a story about the cat")]
STEP = DraftPolicy(enabled=False)
GREEDY = SamplingParams(temperature=0)
DEFAULT = SamplingParams()  # the sampler settings users run: temperature, top-k, top-p, min-p as shipped


def generate(engine, n: int, sampling: SamplingParams, draft: DraftPolicy, stop: tuple[str, ...] = (), seed: int = 3,
             router: str = "p-punc", prompt_key: str | None = None):
    settings = GenerationSettings(get_router(router), 0.3, sampling, 40, stop, seed, draft, prompt_key=prompt_key)
    generation = engine.generate(PROMPT, n, settings)
    events = list(generation)
    for sample in generation.samples:
        assert "".join(e.text for e in events if e.sample == sample.index) == sample.text
        assert not any(s in e.text for e in events for s in stop)
    return generation.samples


@pytest.mark.parametrize("sampling", [GREEDY, DEFAULT], ids=["greedy", "sampled"])
@pytest.mark.parametrize("n", [1, 2])
@pytest.mark.parametrize("draft", [STEP, DraftPolicy(), DraftPolicy(fixed_k=3)], ids=["step", "adaptive", "k3"])
def test_a_stop_string_across_tokens_cuts_every_sample_where_it_begins(engine, n, sampling, draft) -> None:
    full = generate(engine, n, sampling, STEP)
    stop = boundary_stop(full[-1])
    cut = generate(engine, n, sampling, draft, (stop,))
    assert [assert_cut_like(c, f, stop) for c, f in zip(cut, full)][-1]
    assert "B" in "".join(f.sources for f in full)  # both models wrote: the cut runs through routing


@pytest.mark.parametrize("draft", [STEP, DraftPolicy(fixed_k=2)], ids=["step", "k2"])
def test_the_earliest_of_several_stop_strings_wins(engine, draft) -> None:
    full = generate(engine, 1, DEFAULT, STEP)[0]
    late = boundary_stop(full, min_index=len(full.pieces) // 2)
    early = boundary_stop(full)
    assert full.text.index(early) < full.text.index(late)
    cut = generate(engine, 1, DEFAULT, draft, (late, early))[0]
    assert assert_cut_like(cut, full, early)


@pytest.mark.parametrize("n, temp", [("1", "0"), ("1", "0.8"), ("2", "0"), ("2", "0.8")])
def test_gen_cuts_at_a_stop_string_across_tokens(engine, tiny_pair, n: str, temp: str) -> None:
    """`baco gen --stop`: the record holds each generation cut where the stop string begins."""
    def record(*extra: str) -> dict:
        result = baco("gen", "-p", PROMPT[0].content, *model_args(tiny_pair), "-n", n, "--temp", temp,
                      "--max-tokens", "40", "--seed", "3", "--router", "p-punc", "--gamma", "0.3", *extra)
        assert result.returncode == 0, result.stderr
        (line,) = result.stdout.splitlines()
        return json.loads(line)

    sampling = GREEDY if temp == "0" else DEFAULT
    full = record()
    mine = generate(engine, int(n), sampling, STEP, prompt_key=id_key(full["id"]))  # gen's per-prompt seed rule
    assert full["generations"] == [s.text for s in mine]  # the CLI ran what the library runs
    stop = boundary_stop(mine[-1])
    cut = record("--stop", stop)
    assert cut["settings"]["stop"] == [stop]
    for text, sample, whole, whole_sample in zip(cut["generations"], cut["samples"], full["generations"],
                                                 full["samples"]):
        where = whole.find(stop)
        if where < 0:
            assert (text, sample) == (whole, whole_sample)
            continue
        assert text == whole[:where] and sample["finish_reason"] == "stop"
        assert sample["tokens"] < whole_sample["tokens"]
        assert sample["sources"] == whole_sample["sources"][: sample["tokens"]]
    assert cut["generations"][-1] != full["generations"][-1]
