"""Quality as the aligned model's likelihood: mean log-probability per response token.

For a prompt and a response, the prompt goes through the aligned model's chat template (exactly
as in generation) and the response text is tokenized again without special tokens. The score of
the response is the mean, over its tokens t_1 .. t_m, of log P_aligned(t_j | prompt, t_<j), in
nats: at most 0, and higher when the aligned model finds the response more natural. A record's
score is the mean over its non-empty responses.

One llama.cpp context on one sequence does the work. The prompt without its last token stays in
the cache (and is kept between calls as far as the next prompt shares it); each response is then
decoded after it, with logits for every position, in chunks of at most ``n_batch`` tokens whose
rows are consumed before the next chunk overwrites them, and cut off again afterwards. So N
samples of a prompt cost one prompt decode plus their own tokens.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from ..engine.backend import ContextShape, LoadedModel, SequenceContext, default_threads
from ..errors import ContextOverflowError
from .evaluate import nan_mean
from .generations import PromptRecord
from .registry import Metric, register

LIKELIHOOD = register(Metric(
    "aligned-loglik", "quality",
    "mean log-probability per response token under the aligned model, given the chat-templated "
    "prompt (nats, <= 0)", True, label="logL"))

PromptTokens = Callable[[str], list[int]]  # a user prompt -> the aligned model's prompt token ids
_CELL_STEP = 256  # contexts grow in steps of this many KV cells


def token_logprob(logits: np.ndarray, token: int, scratch: np.ndarray) -> float:
    """log softmax(logits)[token], computed stably (``scratch`` is a float32 buffer like ``logits``)."""
    top = float(logits.max())
    np.subtract(logits, top, out=scratch)
    np.exp(scratch, out=scratch)
    return float(logits[token]) - top - math.log(float(scratch.sum(dtype=np.float64)))


class LikelihoodScorer:
    """The ``aligned-loglik`` quality metric, a :class:`~baco_local.metrics.evaluate.QualityScorer`."""

    metric = LIKELIHOOD

    def __init__(self, model: LoadedModel, prompt_tokens: PromptTokens, *, n_batch: int = 512,
                 threads: int | None = None) -> None:
        """``prompt_tokens`` renders a user prompt for ``model`` (e.g. ``ModelPair.aligned_prompt``)."""
        self.model = model
        self._prompt_tokens = prompt_tokens
        self._n_batch = n_batch
        self._threads = threads or default_threads()
        self._context: SequenceContext | None = None
        self._held: list[int] = []  # what sequence 0 holds
        self._scratch = np.empty(model.n_vocab, dtype=np.float32)
        self._decoded_before = 0  # tokens evaluated by contexts closed so far

    @property
    def decoded(self) -> int:
        """Tokens this scorer has had llama.cpp evaluate so far."""
        return self._decoded_before + (self._context.n_evaluated if self._context else 0)

    def close(self) -> None:
        """Free the context (the model stays loaded)."""
        if self._context is not None:
            self._decoded_before += self._context.n_evaluated
            self._context.close()
            self._context = None
        self._held = []

    def score(self, record: PromptRecord) -> float:
        """The mean of the record's response scores (NaN when every response is empty)."""
        return nan_mean(self.score_responses(record.prompt, record.generations))

    def score_responses(self, prompt: str, responses: Sequence[str]) -> list[float]:
        """Each response's mean log-probability per token (NaN for an empty response)."""
        prompt_ids = self._prompt_tokens(prompt)
        scores = []
        for response in responses:
            ids = self.model.tokenize(response, add_bos=False, special=False)
            scores.append(self._mean_logprob(prompt_ids, ids) if ids else math.nan)
        return scores

    def _mean_logprob(self, prompt: list[int], response: list[int]) -> float:
        context = self._context_for(len(prompt) + len(response))
        start = len(prompt) - 1
        self._hold(context, prompt[:start])
        inputs = [prompt[start], *response[:-1]]  # inputs[j] is followed by response[j]
        total = 0.0
        for begin in range(0, len(inputs), context.shape.n_batch):
            chunk = inputs[begin:begin + context.shape.n_batch]
            context.decode(chunk, range(start + begin, start + begin + len(chunk)), [0] * len(chunk),
                           [True] * len(chunk))
            for row, target in enumerate(response[begin:begin + len(chunk)]):
                total += token_logprob(context.logits(row), target, self._scratch)
        context.truncate(0, start)
        return total / len(response)

    def _hold(self, context: SequenceContext, prefix: list[int]) -> None:
        """Make sequence 0 hold exactly ``prefix``, decoding only what it does not share already."""
        keep = 0
        while keep < min(len(prefix), len(self._held)) and prefix[keep] == self._held[keep]:
            keep += 1
        context.truncate(0, keep)
        context.prefill(prefix[keep:], seq=0, start=keep)
        self._held = list(prefix)

    def _context_for(self, tokens: int) -> SequenceContext:
        """A context of at least ``tokens`` cells (made, or remade larger, when needed)."""
        if self._context is not None and self._context.shape.n_cells >= tokens:
            return self._context
        if tokens > self.model.n_ctx_train:
            raise ContextOverflowError(
                f"a prompt and response of {tokens} tokens exceed {self.model.path.name}'s "
                f"context of {self.model.n_ctx_train}")
        cells = min(self.model.n_ctx_train, -(-tokens // _CELL_STEP) * _CELL_STEP)
        self.close()
        self._context = SequenceContext(self.model, ContextShape(n_cells=cells, n_seq=1,
                                                                 n_batch=min(self._n_batch, cells),
                                                                 n_threads=self._threads))
        return self._context
