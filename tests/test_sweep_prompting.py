"""The prompting baselines send the aligned model what the README says (the tiny pair, checked at the
text of the aligned model's prompt tokens)."""

from __future__ import annotations

import re
from pathlib import Path

from baco_local import GenerationSettings, get_router
from baco_local.runs.sweep import KnobLists, build_grid
from baco_local.runs.sweep_prompting import (PROMPTING_INSTRUCTION, SEQUENTIAL_INSTRUCTION, point_samples,
                                             sequential_message)

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
SHARED = GenerationSettings(router=get_router("p-punc"), gamma=0.3, max_tokens=10, seed=4)  # adaptive drafting
PROMPT = "Tell me a story about the cat"


def readme_blocks() -> list[str]:
    """The ```text blocks of README's sweep baselines."""
    section = README[README.index("**Baselines.**"):README.index("**The figure.**")]
    return re.findall(r"```text\n(.*?)\n```", section, flags=re.S)


def points(method: str):
    return [p for p in build_grid(KnobLists(routers=(), baselines=(method,), temps=(0.8,)), SHARED)]


class Recording:
    """The engine, recording the aligned model's prompt text of every generation."""

    def __init__(self, engine) -> None:
        self.engine, self.prompts = engine, []

    def generate(self, messages, n, settings):
        self.drafted = getattr(self, "drafted", []) + [settings.draft.applies_to(n)]
        aligned = self.engine.pair.aligned
        tokens = self.engine.pair.aligned_prompt(messages)
        text = b"".join(aligned.piece(t, special=True) for t in tokens).decode("utf-8")  # control tokens shown
        self.prompts.append((text, n))
        return self.engine.generate(messages, n, settings)


def test_readme_shows_the_exact_wording() -> None:
    independent, sequential = readme_blocks()
    assert independent == PROMPTING_INSTRUCTION
    assert sequential == sequential_message("{prompt}", ["{answer 1}", "{answer 2}"])
    assert sequential.endswith(SEQUENTIAL_INSTRUCTION)


def test_prompting_asks_every_sample_for_a_different_answer(engine) -> None:
    recording = Recording(engine)
    (point,) = points("prompting")
    samples = point_samples(recording, point, PROMPT, 3)
    assert len(recording.prompts) == 1  # one batch of 3
    text, n = recording.prompts[0]
    assert n == 3 and f"{PROMPT}\n\n{PROMPTING_INSTRUCTION}" in text
    assert "<start_of_turn>user\n" in text  # through the aligned model's chat template
    assert [s.index for s in samples] == [0, 1, 2] and point.settings.router.name == "aligned"


def test_prompting_seq_shows_the_earlier_answers(engine) -> None:
    recording = Recording(engine)
    (point,) = points("prompting-seq")
    samples = point_samples(recording, point, PROMPT, 3)
    assert [n for _, n in recording.prompts] == [1, 1, 1]  # sequential: one sample at a time
    assert recording.drafted == [False] * 3  # the step loop, as the records say for -n 3
    first, second, third = (text for text, _ in recording.prompts)
    assert PROMPT in first and "Answers already given" not in first and PROMPTING_INSTRUCTION not in first
    assert f"{PROMPT}\n\nAnswers already given:\n\nAnswer 1:\n{samples[0].text.strip()}" in second
    assert second.rstrip().endswith(f"{SEQUENTIAL_INSTRUCTION}<end_of_turn>\n<start_of_turn>model")
    assert f"Answer 1:\n{samples[0].text.strip()}\n\nAnswer 2:\n{samples[1].text.strip()}" in third
    assert [s.index for s in samples] == [0, 1, 2]
    assert [s.seed for s in samples] == [4, 5, 6]  # sample i uses seed + i, as every sweep point
