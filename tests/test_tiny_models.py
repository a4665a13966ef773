"""The tiny model pair loads in real llama.cpp and behaves as designed."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import jinja2
import llama_cpp
import numpy as np
import pytest
import tiny_models as tm
from jinja2.sandbox import ImmutableSandboxedEnvironment

STEPS = 40
PROMPTS = {"once": [tm.BOS_ID, tm.token_id("Once")], "the": [tm.BOS_ID, tm.token_id("The")]}


def _load(path: Path, n_ctx: int = 256) -> llama_cpp.Llama:
    """One thread: on a busy machine llama.cpp's extra threads spin and slow tiny models down."""
    return llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_threads=1, n_threads_batch=1,
                           verbose=False)


@pytest.fixture(scope="module")
def models(tiny_pair: tuple[Path, Path]) -> Iterator[dict[str, llama_cpp.Llama]]:
    base, aligned = tiny_pair
    loaded = {"base": _load(base), "aligned": _load(aligned)}
    yield loaded
    for llm in loaded.values():
        llm.close()


def _last_logits(llm: llama_cpp.Llama) -> np.ndarray:
    view = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
    return np.ctypeslib.as_array(view, shape=(llm.n_vocab(),)).copy()


def _logits_after(llm: llama_cpp.Llama, tokens: list[int]) -> np.ndarray:
    llm.reset()
    llm.eval(tokens)
    return _last_logits(llm)


def _greedy(llm: llama_cpp.Llama, prompt: list[int], steps: int = STEPS
            ) -> tuple[list[int], list[float], list[float]]:
    """Greedy tokens, top-1 minus top-2 logit margins and top-1 probabilities per step."""
    llm.reset()
    llm.eval(prompt)
    tokens, margins, top_probs = [], [], []
    for _ in range(steps):
        logits = _last_logits(llm)
        second, first = np.sort(logits)[-2:]
        probs = np.exp(logits - first)
        tokens.append(int(np.argmax(logits)))
        margins.append(float(first - second))
        top_probs.append(float(1.0 / probs.sum()))
        llm.eval([tokens[-1]])
    return tokens, margins, top_probs


def test_vocabularies_and_end_of_text_ids(models: dict[str, llama_cpp.Llama]) -> None:
    base, aligned = models["base"], models["aligned"]
    assert base.n_vocab() == tm.BASE_VOCAB_SIZE == len(tm.TOKENS)
    assert aligned.n_vocab() == tm.ALIGNED_VOCAB_SIZE == tm.BASE_VOCAB_SIZE + 2
    assert (base.token_eos(), aligned.token_eos()) == (tm.EOS_ID, tm.END_OF_TURN_ID)
    assert base.token_bos() == aligned.token_bos() == tm.BOS_ID
    for token in range(tm.BASE_VOCAB_SIZE):
        assert base._model.token_get_text(token) == aligned._model.token_get_text(token)
    assert aligned._model.token_get_text(tm.START_OF_TURN_ID) == "<start_of_turn>"


def test_text_tokenizes_into_word_pieces(models: dict[str, llama_cpp.Llama]) -> None:
    text = "Once upon a time, the cats were walking.\nThe dog"
    expected = ["Once", "▁upon", "▁a", "▁time", ",", "▁the", "▁cat", "s", "▁we", "r", "e",
                "▁walk", "ing", ".", "<0x0A>", "The", "▁dog"]
    for llm in models.values():
        assert llm.tokenize(text.encode(), add_bos=True) == [
            tm.BOS_ID, *(tm.token_id(t) for t in expected)]


@pytest.mark.parametrize("prompt", sorted(PROMPTS))
@pytest.mark.parametrize("name", ["base", "aligned"])
def test_greedy_generation_has_clear_margins_and_follows_the_table(
        models: dict[str, llama_cpp.Llama], name: str, prompt: str) -> None:
    tokens, margins, _ = _greedy(models[name], PROMPTS[prompt])
    assert min(margins) >= 0.3
    assert tokens == tm.designed_greedy(PROMPTS[prompt][-1], STEPS, aligned=name == "aligned")
    eos = models[name].token_eos()
    assert eos not in tokens  # greedy runs always reach max tokens
    words = {tm.token_id(w) for w in tm.WORD_PIECES} | {tm.NEWLINE_ID}
    assert set(tokens) <= words


def test_base_is_flat_in_places_and_aligned_is_sharp(models: dict[str, llama_cpp.Llama]) -> None:
    base_probs = [p for prompt in PROMPTS.values() for p in _greedy(models["base"], prompt)[2]]
    aligned_probs = [p for prompt in PROMPTS.values() for p in _greedy(models["aligned"], prompt)[2]]
    assert min(base_probs) < 0.3 < max(base_probs)
    assert np.mean(np.array(base_probs) < 0.3) > 0.2
    assert min(aligned_probs) > 0.6


def test_base_and_aligned_prefer_different_continuations(models: dict[str, llama_cpp.Llama]) -> None:
    base_tokens = _greedy(models["base"], PROMPTS["once"])[0]
    aligned_tokens = _greedy(models["aligned"], PROMPTS["once"])[0]
    assert base_tokens != aligned_tokens
    assert tm.token_id(".") in aligned_tokens
    assert tm.text_of(aligned_tokens[:8]) == " upon the happy house. They sing from"


def test_generation_is_deterministic(models: dict[str, llama_cpp.Llama]) -> None:
    for llm in models.values():
        assert _greedy(llm, PROMPTS["once"]) == _greedy(llm, PROMPTS["once"])


def test_context_changes_logits_a_little(models: dict[str, llama_cpp.Llama]) -> None:
    prompt = [tm.token_id(t) for t in ("Once", "▁upon", "▁a", "▁time", ",", "▁the")]
    changed = [prompt[0], tm.token_id("▁dog"), *prompt[2:]]
    for llm in models.values():
        first, second = _logits_after(llm, [tm.BOS_ID, *prompt]), _logits_after(llm, [tm.BOS_ID, *changed])
        assert 1e-4 < np.abs(first - second).max() < 0.2
        assert np.argmax(first) == np.argmax(second)


def test_end_of_text_is_possible_but_rare(models: dict[str, llama_cpp.Llama]) -> None:
    for llm in models.values():
        logits = _logits_after(llm, [tm.BOS_ID, tm.token_id("The"), tm.token_id("▁cat"),
                                     tm.token_id(".")])
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        assert 0.003 < probs[llm.token_eos()] < 0.05
        assert probs[tm.NEWLINE_ID] > 0.01
        assert probs[tm.BYTE_BASE_ID + ord("a")] < 1e-6


def test_files_are_small_fast_and_deterministic(tmp_path: Path) -> None:
    started = time.process_time()
    first = tm.write_pair(tmp_path / "one")
    elapsed = time.process_time() - started
    second = tm.write_pair(tmp_path / "two")
    other_seed = tm.write_pair(tmp_path / "three", seed=1)
    assert elapsed < 1.0
    for a, b, c in zip(first, second, other_seed):
        assert a.stat().st_size < 3_000_000
        assert a.read_bytes() == b.read_bytes() != c.read_bytes()


def _render(template: str, messages: list[dict[str, str]]) -> str:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    return env.from_string(template).render(
        messages=messages, add_generation_prompt=True, bos_token="<s>", eos_token="<end_of_turn>",
        raise_exception=raise_exception)


def test_aligned_chat_template(models: dict[str, llama_cpp.Llama]) -> None:
    aligned = models["aligned"]
    template = aligned.metadata["tokenizer.chat_template"]
    assert template == tm.DEFAULT_TEMPLATE
    assert "tokenizer.chat_template" not in models["base"].metadata
    text = _render(template, [{"role": "user", "content": "Once upon a time"}])
    assert text == "<s><start_of_turn>user\nOnce upon a time<end_of_turn>\n<start_of_turn>model\n"
    tokens = aligned.tokenize(text.encode(), add_bos=False, special=True)
    assert tokens[:2] == [tm.BOS_ID, tm.START_OF_TURN_ID]
    assert tokens.count(tm.END_OF_TURN_ID) == 1 and tokens[-1] == tm.NEWLINE_ID
    with pytest.raises(jinja2.exceptions.TemplateError, match="System role"):
        _render(template, [{"role": "system", "content": "x"}, {"role": "user", "content": "y"}])


def test_bpe_vocabulary_model_loads(tmp_path: Path) -> None:
    llm = _load(tm.write_bpe_vocab_model(tmp_path / "bpe.gguf"), n_ctx=64)
    assert llama_cpp.llama_vocab_type(llm._model.vocab) == llama_cpp.LLAMA_VOCAB_TYPE_BPE
    llm.eval(llm.tokenize(b"the cat"))
    llm.close()


def test_llama_cpp_aborts_on_a_duplicate_token(tmp_path: Path) -> None:
    """Why baco_local.models.gguf_file validates files first: llama.cpp kills the whole process."""
    path = tm.write_duplicate_token_vocab(tmp_path / "dup.gguf")
    code = f"import llama_cpp; llama_cpp.Llama(model_path={str(path)!r}, verbose=False)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60, check=False)
    assert result.returncode < 0 or result.returncode == 134
