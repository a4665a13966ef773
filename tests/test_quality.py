"""Quality scorers on the tiny pair: the aligned likelihood against llama.cpp's own full logits,
prompt reuse, and the grammar-constrained judge."""

from __future__ import annotations

import math
from pathlib import Path

import llama_cpp
import numpy as np
import pytest

from baco_local.engine.chat_prompt import ChatPrompter
from baco_local.errors import ChatTemplateError, ContextOverflowError, ModelFileError
from baco_local.metrics.generations import PromptRecord
from baco_local.metrics.judge import JudgeScorer
from baco_local.metrics.likelihood import LikelihoodScorer, token_logprob
from baco_local.metrics.registry import get_metric
from baco_local.engine.pair import ModelPair, PairSpec
from baco_local.engine.prompts import Message

PROMPT = "Tell me a story"
RESPONSES = [
    "Once upon a time the cat saw the moon.",
    "She went into the garden, and the dog was happy",
    "zebra 123 é",  # byte-fallback tokens: unlikely, but scored all the same
    " the old tree" * 110,  # over 256 tokens: the context grows, and several chunks are decoded
]


@pytest.fixture(scope="module")
def pair(tiny_pair) -> ModelPair:
    base, aligned = tiny_pair
    loaded = ModelPair(PairSpec(base, aligned))
    yield loaded
    loaded.close()


def user_prompt(pair: ModelPair):
    return lambda prompt: pair.aligned_prompt([Message("user", prompt)])


def reference_scores(path: Path, prompt: list[int], responses: list[list[int]]) -> list[float]:
    """Mean log-probability per response token from llama-cpp-python's high-level API (all logits)."""
    llm = llama_cpp.Llama(model_path=str(path), logits_all=True, n_ctx=1024, n_batch=1024, verbose=False)
    scores = []
    for response in responses:
        llm.reset()
        llm.eval(prompt + response)
        logits = np.asarray(llm.scores[len(prompt) - 1:len(prompt) + len(response) - 1], dtype=np.float64)
        log_probs = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
        scores.append(float(np.mean(log_probs[np.arange(len(response)), response])))
    llm.close()
    return scores


def test_token_logprob_is_log_softmax() -> None:
    logits = np.array([2.0, -1.0, 0.5, 40.0], dtype=np.float32)
    expected = logits.astype(np.float64) - np.logaddexp.reduce(logits.astype(np.float64))
    scratch = np.empty_like(logits)
    assert [token_logprob(logits, t, scratch) for t in range(4)] == pytest.approx(expected, abs=1e-6)


def test_likelihood_matches_llama_full_logits(pair: ModelPair) -> None:
    scorer = LikelihoodScorer(pair.aligned, user_prompt(pair), n_batch=64, threads=1)
    got = scorer.score_responses(PROMPT, RESPONSES)
    prompt = user_prompt(pair)(PROMPT)
    responses = [pair.aligned.tokenize(r, add_bos=False, special=False) for r in RESPONSES]
    assert len(responses[-1]) > 256
    assert got == pytest.approx(reference_scores(pair.aligned.path, prompt, responses), abs=1e-3)
    assert all(s < 0 for s in got) and got[2] < got[0]  # byte soup is far less likely than a story
    scorer.close()


def test_the_prompt_is_decoded_once_for_all_samples(pair: ModelPair) -> None:
    scorer = LikelihoodScorer(pair.aligned, user_prompt(pair), threads=1)
    prompt = user_prompt(pair)(PROMPT)
    lengths = [len(pair.aligned.tokenize(r, add_bos=False, special=False)) for r in RESPONSES[:3]]
    first = scorer.score_responses(PROMPT, RESPONSES[:3])
    assert scorer.decoded == len(prompt) - 1 + sum(lengths)
    again = scorer.score_responses(PROMPT, RESPONSES[:3])  # the prompt is still held
    assert scorer.decoded == len(prompt) - 1 + 2 * sum(lengths)
    assert again == pytest.approx(first, abs=1e-4)
    scorer.close()


def test_record_score_leaves_empty_responses_out(pair: ModelPair) -> None:
    scorer = LikelihoodScorer(pair.aligned, user_prompt(pair), threads=1)
    one = scorer.score_responses(PROMPT, RESPONSES[:1])[0]
    assert math.isnan(scorer.score_responses(PROMPT, [""])[0])
    record = PromptRecord("1", PROMPT, "m", ["", RESPONSES[0]], 1)
    assert scorer.score(record) == pytest.approx(one, abs=1e-4)
    assert math.isnan(scorer.score(PromptRecord("2", PROMPT, "m", [""], 2)))
    assert scorer.metric is get_metric("aligned-loglik") and scorer.metric.direction == "higher = better"
    scorer.close()


def test_chat_prompter_matches_the_pair(pair: ModelPair, tiny_pair) -> None:
    prompter = ChatPrompter(pair.aligned)
    conversation = [Message("system", "Be brief."), Message("user", "Hi"), Message("assistant", "Hello"),
                    Message("user", PROMPT)]
    assert prompter(conversation) == pair.aligned_prompt(conversation)
    with pytest.raises(ChatTemplateError, match="has no chat template"):
        ChatPrompter(pair.base)
    custom = ChatPrompter(pair.aligned, "{{ messages[0]['content'] }}!")
    assert custom([Message("user", "the cat")]) == pair.aligned.tokenize("the cat!", add_bos=True, special=True)


def test_judge_rates_one_to_ten_deterministically(tiny_pair) -> None:
    _, aligned = tiny_pair
    judge = JudgeScorer(aligned, n_ctx=1024, threads=1)
    ratings = [judge.rate(PROMPT, response) for response in RESPONSES[:3]]
    assert all(isinstance(r, int) and 1 <= r <= 10 for r in ratings)
    assert [judge.rate(PROMPT, response) for response in RESPONSES[:3]] == ratings
    record = PromptRecord("1", PROMPT, "m", RESPONSES[:3], 1)
    assert judge.score(record) == pytest.approx(sum(ratings) / 3)
    assert judge.metric is get_metric("judge") and judge.metric.group == "quality"
    judge.close()


def test_judge_needs_an_instruct_model(tiny_pair, tmp_path: Path) -> None:
    base, _ = tiny_pair
    with pytest.raises(ModelFileError, match="no chat template"):
        JudgeScorer(base)
    (tmp_path / "junk.gguf").write_bytes(b"not a gguf")
    with pytest.raises(ModelFileError):
        JudgeScorer(tmp_path / "junk.gguf")


def test_a_response_longer_than_the_model_context_is_refused(pair: ModelPair) -> None:
    scorer = LikelihoodScorer(pair.aligned, user_prompt(pair), threads=1)
    with pytest.raises(ContextOverflowError, match="exceed aligned.gguf's context of 2048"):
        scorer.score_responses(PROMPT, [" the cat" * pair.aligned.n_ctx_train])
    scorer.close()
