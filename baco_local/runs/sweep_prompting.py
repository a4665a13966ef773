"""The prompting baselines: the aligned model asked for variety in the prompt itself.

``prompting`` (independent): every sample of a prompt gets the same user message, the prompt
followed by a blank line and :data:`PROMPTING_INSTRUCTION`; the N samples are decoded together
in one batch, like any other point.

``prompting-seq`` (sequential): sample 1 gets the prompt alone; sample *i* > 1 gets the prompt, a
blank line, ``Answers already given:``, each earlier sample as ``Answer k:`` and its text, and
:data:`SEQUENTIAL_INSTRUCTION`. The samples are generated one after another, each with a longer
prompt, so this point costs more than the others: N generations of one sample instead of one
batch, and prompts that grow with every answer.

Both are the aligned model alone (router ``aligned``), swept over temperature; sample *i* uses
seed + *i* as every sweep point does.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from ..engine.loop import DraftPolicy, Engine, Sample
from ..engine.prompts import Message
from .sweep import OperatingPoint

PROMPTING_INSTRUCTION = "Give an answer that is different from the answer you would usually give."
SEQUENTIAL_INSTRUCTION = "Give a new answer that is different from all of them."


def prompting_message(prompt: str) -> str:
    """The user message of every sample of ``prompting``."""
    return f"{prompt}\n\n{PROMPTING_INSTRUCTION}"


def sequential_message(prompt: str, previous: list[str]) -> str:
    """The user message of the next sample of ``prompting-seq``, after the ``previous`` answers."""
    if not previous:
        return prompt
    shown = "\n\n".join(f"Answer {k}:\n{text}" for k, text in enumerate(previous, start=1))
    return f"{prompt}\n\nAnswers already given:\n\n{shown}\n\n{SEQUENTIAL_INSTRUCTION}"


def point_record_extra(point: OperatingPoint) -> dict[str, str]:
    """What a prompting point's records say about its prompts (the wording is part of the grid)."""
    if point.method == "prompting":
        return {"prompting": prompting_message("{prompt}")}
    if point.method == "prompting-seq":
        return {"prompting": sequential_message("{prompt}", ["{answer 1}", "..."])}
    return {}


def point_samples(engine: Engine, point: OperatingPoint, prompt: str, n: int,
                  on_token: Callable[[], None] = lambda: None) -> list[Sample]:
    """The ``n`` samples of one prompt at one operating point (``on_token``: called per token)."""
    if point.method != "prompting-seq":
        text = prompting_message(prompt) if point.method == "prompting" else prompt
        return _run(engine, text, n, point.settings, on_token)
    samples: list[Sample] = []
    # The loop the records name is the one for n samples: one sample alone must not switch to drafting.
    draft = point.settings.draft if point.settings.draft.applies_to(n) else DraftPolicy(enabled=False)
    for index in range(n):
        settings = dataclasses.replace(point.settings, seed=point.settings.seed + index, draft=draft)
        sample = _run(engine, sequential_message(prompt, [s.text for s in samples]), 1, settings, on_token)[0]
        samples.append(dataclasses.replace(sample, index=index))
    return samples


def _run(engine: Engine, text: str, n: int, settings, on_token: Callable[[], None]) -> list[Sample]:
    generation = engine.generate([Message("user", text)], n, settings)
    for _event in generation:
        on_token()
    return generation.samples
