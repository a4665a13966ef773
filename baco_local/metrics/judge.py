"""Quality as a local judge's rating: any instruct GGUF scores each response from 1 to 10.

The judge sees one fixed rubric (:data:`RUBRIC`) with the user's request and the response, as a
user turn through its own chat template, and answers greedily under a grammar that admits only
the numbers 1 to 10. A record's score is the mean rating of its responses. The rubric is fixed so
that ratings are comparable between runs; a small judge is a noisy one, so read the numbers as a
coarse ranking.
"""

from __future__ import annotations

from pathlib import Path

from ..engine.backend import GrammarChat
from ..errors import DecodeError
from .evaluate import nan_mean
from .generations import PromptRecord
from .registry import Metric, register

JUDGE = register(Metric(
    "judge", "quality", "a local instruct model's 1-10 rating of each response under a fixed rubric "
    "(helpfulness, correctness, coherence)", True, label="judge"))

RUBRIC = """You are grading an AI assistant's response to a user's request.

Rate the response on a scale from 1 to 10:
- 1-2: off-topic, incoherent, or refuses for no reason;
- 3-4: on-topic but mostly unhelpful, wrong, or badly written;
- 5-6: acceptable but with clear mistakes, gaps, or awkward language;
- 7-8: helpful, correct and fluent, with minor flaws;
- 9-10: excellent: fully answers the request, correct, well written.
Judge the response only on how well it serves the request; different but valid answers are equally good.

[Request]
{prompt}

[Response]
{response}

Reply with the rating only, a whole number from 1 to 10."""

GRAMMAR = 'root ::= [1-9] | "10"'
ANSWER_TOKENS = 4  # "10" may take two tokens; the grammar ends the answer after it


class JudgeScorer:
    """The ``judge`` quality metric, a :class:`~baco_local.metrics.evaluate.QualityScorer`."""

    metric = JUDGE

    def __init__(self, path: Path, *, n_ctx: int = 4096, n_gpu_layers: int = 0,
                 threads: int | None = None) -> None:
        self._chat = GrammarChat(path, n_ctx=n_ctx, n_gpu_layers=n_gpu_layers, n_threads=threads)
        self.path = path

    def rate(self, prompt: str, response: str) -> int:
        """The judge's rating of one response, 1 to 10."""
        content = RUBRIC.format(prompt=prompt, response=response)
        answer = self._chat.answer([{"role": "user", "content": content}], GRAMMAR, max_tokens=ANSWER_TOKENS)
        if not answer.strip().isdigit() or not 1 <= int(answer) <= 10:
            raise DecodeError(f"the judge {self.path.name} answered {answer!r} despite its grammar")
        return int(answer)

    def score(self, record: PromptRecord) -> float:
        """The mean rating of the record's responses."""
        return nan_mean([float(self.rate(record.prompt, r)) for r in record.generations])

    def close(self) -> None:
        """Free the judge model."""
        self._chat.close()
