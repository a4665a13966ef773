"""The only module that imports llama_cpp: load a GGUF, tokenize, decode batches, read logits.

It speaks llama.cpp's low-level C API (through llama-cpp-python's ctypes bindings) rather than the
high-level ``Llama`` class, because BACo needs what ``Llama`` hides: a context with several
sequences (``n_seq_max``), batches that mix sequences, zero-copy logits rows, and KV-cache
operations per sequence. Files are validated by :mod:`baco_local.models.gguf_file` before llama.cpp
sees them, since llama.cpp aborts the whole process on some malformed vocabularies.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import llama_cpp
import numpy as np

from ..errors import ContextOverflowError, DecodeError, ModelFileError, UsageError
from ..models.gguf_file import read_gguf

# ggml log levels (ggml.h): NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5.
_LOG_WARN, _LOG_ERROR, _LOG_CONT = 3, 4, 5
_ATTR_CONTROL = llama_cpp.LLAMA_TOKEN_ATTR_CONTROL
_ATTR_USER_DEFINED = llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED


class _LlamaLog:
    """Collects llama.cpp's log lines instead of letting them spill onto the terminal.

    The last warnings and errors are kept so that a failed load or decode can say why.
    Set ``BACO_LLAMA_LOG=1`` (or call :func:`echo_llama_log`, as ``baco -v`` does) to echo
    llama.cpp's own log to stderr.
    """

    def __init__(self) -> None:
        self.recent: deque[str] = deque(maxlen=20)
        self._lock = threading.Lock()
        self._last_level = 0
        self.echo = os.environ.get("BACO_LLAMA_LOG", "") not in ("", "0")
        # Keep a reference: ctypes would free the trampoline and llama.cpp would call freed memory.
        self._callback = llama_cpp.llama_log_callback(self._on_log)
        llama_cpp.llama_log_set(self._callback, ctypes.c_void_p(0))

    def _on_log(self, level: int, text: bytes, _user: ctypes.c_void_p) -> None:
        message = text.decode("utf-8", errors="replace")
        if self.echo:
            os.write(2, text)
        level = self._last_level if level == _LOG_CONT else level
        self._last_level = level
        if level >= _LOG_WARN and message.strip():
            with self._lock:
                self.recent.append(message.strip())

    def last_problem(self) -> str:
        """The most recent llama.cpp warning or error, or an empty string."""
        with self._lock:
            return self.recent[-1] if self.recent else ""


_LOG = _LlamaLog()
llama_cpp.llama_backend_init()


def echo_llama_log(enabled: bool = True) -> None:
    """Echo (or stop echoing) llama.cpp's own log lines to stderr."""
    _LOG.echo = enabled


def llama_build() -> dict[str, str]:
    """What llama.cpp this is: the llama-cpp-python version, llama.cpp's own version, its CPU features."""
    return {"llama-cpp-python": llama_cpp.__version__,
            "llama.cpp": llama_cpp.llama_version().decode("utf-8", errors="replace"),
            "system": llama_cpp.llama_print_system_info().decode("utf-8", errors="replace").strip(" |")}


def default_threads() -> int:
    """Threads llama.cpp uses by default: the CPUs this process may run on, at most 8."""
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        available = os.cpu_count() or 1
    return max(1, min(8, available))


@dataclass(frozen=True)
class VocabInfo:
    """What the rest of baco needs to know about one model's vocabulary."""

    n_vocab: int
    vocab_type: int
    bos: int | None
    eos: int | None
    add_bos: bool
    eog_ids: frozenset[int]
    control: np.ndarray  # (n_vocab,) bool: control and user-defined tokens (never merged with text)


class LoadedModel:
    """One GGUF model loaded by llama.cpp, with its tokenizer."""

    def __init__(self, path: str | Path, *, n_gpu_layers: int = 0) -> None:
        self.path = Path(path)
        self.summary = read_gguf(self.path)  # raises ModelFileError before llama.cpp can abort
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = n_gpu_layers
        model = llama_cpp.llama_model_load_from_file(str(self.path).encode("utf-8"), params)
        if not model:
            why = _LOG.last_problem() or "llama.cpp could not load it"
            raise ModelFileError(f"cannot load model {self.path}: {why}")
        self.model = model
        self.vocab = llama_cpp.llama_model_get_vocab(model)
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self.vocab))
        self.n_ctx_train = int(llama_cpp.llama_model_n_ctx_train(model))
        self._piece_buffer = ctypes.create_string_buffer(64)
        self.info = self._read_vocab_info()

    def close(self) -> None:
        """Free the model's memory (contexts made from it must be closed first)."""
        if getattr(self, "model", None):
            llama_cpp.llama_model_free(self.model)
            self.model = None

    def __del__(self) -> None:
        self.close()

    def _read_vocab_info(self) -> VocabInfo:
        attrs = np.fromiter(
            (llama_cpp.llama_vocab_get_attr(self.vocab, t) for t in range(self.n_vocab)),
            dtype=np.int64,
            count=self.n_vocab,
        )
        eog = frozenset(t for t in range(self.n_vocab) if llama_cpp.llama_vocab_is_eog(self.vocab, t))
        bos = int(llama_cpp.llama_vocab_bos(self.vocab))
        eos = int(llama_cpp.llama_vocab_eos(self.vocab))
        return VocabInfo(
            n_vocab=self.n_vocab,
            vocab_type=int(llama_cpp.llama_vocab_type(self.vocab)),
            bos=bos if bos >= 0 else None,
            eos=eos if eos >= 0 else None,
            add_bos=bool(llama_cpp.llama_vocab_get_add_bos(self.vocab)),
            eog_ids=eog,
            control=(attrs & (_ATTR_CONTROL | _ATTR_USER_DEFINED)) != 0,
        )

    def tokenize(self, text: str, *, add_bos: bool, special: bool) -> list[int]:
        """Text to token ids; ``special`` parses control-token text such as ``<start_of_turn>``."""
        data = text.encode("utf-8")
        capacity = len(data) + 8
        tokens = (llama_cpp.llama_token * capacity)()
        n = llama_cpp.llama_tokenize(self.vocab, data, len(data), tokens, capacity, add_bos, special)
        if n < 0:  # buffer too small: -n is the size needed
            capacity = -n
            tokens = (llama_cpp.llama_token * capacity)()
            n = llama_cpp.llama_tokenize(self.vocab, data, len(data), tokens, capacity, add_bos, special)
        return list(tokens[:n])

    def piece(self, token: int, *, special: bool = False) -> bytes:
        """The bytes one token stands for (grows its buffer: llama-cpp-python's own is 32 bytes)."""
        buffer = self._piece_buffer
        n = llama_cpp.llama_token_to_piece(self.vocab, token, buffer, len(buffer), 0, special)
        if n < 0:
            buffer = self._piece_buffer = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self.vocab, token, buffer, len(buffer), 0, special)
        return buffer.raw[:n]

    def token_text(self, token: int) -> str:
        """The token's text as stored in the vocabulary (with ``▁``/``Ġ`` markers, if any)."""
        return llama_cpp.llama_vocab_get_text(self.vocab, token).decode("utf-8", errors="replace")

    def meta(self, key: str) -> str | None:
        """A GGUF metadata value as text, or None when the key is absent."""
        buffer = ctypes.create_string_buffer(4096)
        n = llama_cpp.llama_model_meta_val_str(self.model, key.encode(), buffer, len(buffer))
        if n < 0:
            return None
        if n >= len(buffer):
            buffer = ctypes.create_string_buffer(n + 1)
            llama_cpp.llama_model_meta_val_str(self.model, key.encode(), buffer, len(buffer))
        return buffer.value.decode("utf-8", errors="replace")


# llama.cpp's LLAMA_MAX_SEQ: the most sequences (n_seq_max) one context may hold. Every option that
# asks for parallel sequences (-n today, --parallel later) is checked against it up front.
MAX_SEQUENCES = 256


def check_sequences(n: int, option: str = "-n") -> None:
    """Refuse ``n`` parallel sequences that llama.cpp cannot hold in one context (UsageError)."""
    if n > MAX_SEQUENCES:
        raise UsageError(f"{option} {n} is more than llama.cpp's limit of {MAX_SEQUENCES} parallel sequences "
                         f"per context (LLAMA_MAX_SEQ); use at most {MAX_SEQUENCES}")


@dataclass(frozen=True)
class ContextShape:
    """How big a context is: KV cells in all, parallel sequences, batch size, threads."""

    n_cells: int
    n_seq: int
    n_batch: int
    n_threads: int


class SequenceContext:
    """A llama.cpp context holding several sequences in one unified KV cache.

    ``decode`` takes (token, position, sequence, wants_logits) entries; logits rows are then read
    with ``logits(i)`` for the i-th entry that asked for them, as zero-copy numpy views that stay
    valid only until the next ``decode``.
    """

    def __init__(self, model: LoadedModel, shape: ContextShape) -> None:
        self.model = model
        self.shape = shape
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = shape.n_cells
        params.n_batch = shape.n_batch
        params.n_ubatch = min(shape.n_batch, 512)
        params.n_seq_max = shape.n_seq
        params.n_threads = shape.n_threads
        params.n_threads_batch = shape.n_threads
        params.kv_unified = True
        params.no_perf = True
        ctx = llama_cpp.llama_init_from_model(model.model, params)
        if not ctx:
            why = _LOG.last_problem() or "out of memory?"
            raise DecodeError(f"cannot create a llama.cpp context of {shape.n_cells} cells: {why}")
        self.ctx = ctx
        self.memory = llama_cpp.llama_get_memory(ctx)
        self._batch = llama_cpp.llama_batch_init(shape.n_batch, 0, shape.n_seq)
        self._rows: list[int] = []  # batch index of each entry that asked for logits
        self.n_evaluated = 0  # tokens decoded so far (tests count these)
        self.n_decode_calls = 0
        self.n_outputs = 0  # logits rows computed so far
        self.decode_seconds = 0.0  # wall time spent inside llama_decode

    def close(self) -> None:
        """Free the batch and the context."""
        if getattr(self, "ctx", None):
            llama_cpp.llama_batch_free(self._batch)
            llama_cpp.llama_free(self.ctx)
            self.ctx = None

    def __del__(self) -> None:
        self.close()

    def decode(self, tokens: Sequence[int], positions: Sequence[int], seqs: Sequence[int],
               want_logits: Sequence[bool]) -> None:
        """Evaluate one batch of tokens (at most ``shape.n_batch``) in this context."""
        batch = self._batch
        n = len(tokens)
        if n > self.shape.n_batch:
            raise DecodeError(f"batch of {n} tokens exceeds n_batch={self.shape.n_batch}")
        self._rows = []
        for i in range(n):
            batch.token[i] = tokens[i]
            batch.pos[i] = positions[i]
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seqs[i]
            batch.logits[i] = want_logits[i]
            if want_logits[i]:
                self._rows.append(i)
        batch.n_tokens = n
        started = time.perf_counter()
        status = llama_cpp.llama_decode(self.ctx, batch)
        self.decode_seconds += time.perf_counter() - started
        if status != 0:
            reason = {1: "no free KV cache slot (context full)", 2: "aborted", -1: "invalid batch"}
            why = reason.get(status, "fatal error") + (f" ({_LOG.last_problem()})" if status < -1 else "")
            raise DecodeError(f"llama.cpp decode failed for {self.model.path.name}: {why}")
        self.n_evaluated += n
        self.n_decode_calls += 1
        self.n_outputs += len(self._rows)

    def decode_and_undo(self, tokens: Sequence[int], positions: Sequence[int], seqs: Sequence[int]) -> None:
        """Decode a batch with logits for every token, then drop what it added to each sequence
        (a trial decode, e.g. to time it)."""
        self.decode(tokens, positions, seqs, [True] * len(tokens))
        first: dict[int, int] = {}
        for seq, position in zip(seqs, positions):
            first[seq] = min(first.get(seq, position), position)
        for seq, position in first.items():
            self.truncate(seq, position)

    def prefill(self, tokens: Sequence[int], seq: int = 0, start: int = 0) -> None:
        """Evaluate a prompt on one sequence in chunks; logits of its last token are row 0."""
        step = self.shape.n_batch
        for begin in range(0, len(tokens), step):
            chunk = tokens[begin:begin + step]
            last = begin + len(chunk) == len(tokens)
            self.decode(chunk, range(start + begin, start + begin + len(chunk)), [seq] * len(chunk),
                        [last and i == len(chunk) - 1 for i in range(len(chunk))])

    def logits(self, row: int) -> np.ndarray:
        """Logits of the ``row``-th output of the last decode: an (n_vocab,) float32 view."""
        pointer = llama_cpp.llama_get_logits_ith(self.ctx, self._rows[row])
        return np.ctypeslib.as_array(pointer, shape=(self.model.n_vocab,))

    def set_threads(self, n_threads: int) -> None:
        """Use ``n_threads`` llama.cpp threads for this context's next decodes."""
        llama_cpp.llama_set_n_threads(self.ctx, n_threads, n_threads)

    def copy_sequence(self, source: int, target: int) -> None:
        """Share ``source``'s cached tokens with ``target`` (no recomputation)."""
        llama_cpp.llama_memory_seq_cp(self.memory, source, target, -1, -1)

    def copy_range(self, source: int, target: int, begin: int, end: int) -> None:
        """Share ``source``'s cached positions ``begin`` .. ``end`` - 1 with ``target``."""
        llama_cpp.llama_memory_seq_cp(self.memory, source, target, begin, end)

    def truncate(self, seq: int, keep: int) -> None:
        """Drop ``seq``'s cached tokens at positions ``keep`` and beyond."""
        llama_cpp.llama_memory_seq_rm(self.memory, seq, keep, -1)

    def clear(self) -> None:
        """Forget every sequence."""
        llama_cpp.llama_memory_clear(self.memory, True)


class GrammarChat:
    """A chat model whose answers are constrained by a GBNF grammar, decoded greedily (the judge).

    It uses llama-cpp-python's high-level ``Llama``: the model's own chat template renders the
    conversation, and llama.cpp's grammar sampler allows only answers the grammar accepts.
    """

    def __init__(self, path: str | Path, *, n_ctx: int, n_gpu_layers: int = 0,
                 n_threads: int | None = None) -> None:
        self.path = Path(path)
        summary = read_gguf(self.path)  # a ModelFileError before llama.cpp can abort
        if not summary.chat_template:
            raise ModelFileError(f"{self.path.name} has no chat template; the judge must be an instruct model")
        n_ctx = min(n_ctx, summary.context_length or n_ctx)
        threads = n_threads or default_threads()
        try:
            self._llama = llama_cpp.Llama(model_path=str(self.path), n_ctx=n_ctx, n_batch=min(n_ctx, 512),
                                          n_gpu_layers=n_gpu_layers, n_threads=threads, n_threads_batch=threads,
                                          verbose=False)
        except ValueError as exc:
            raise ModelFileError(f"cannot load model {self.path}: {_LOG.last_problem() or exc}") from None

    def answer(self, messages: Sequence[dict[str, str]], grammar: str, *, max_tokens: int) -> str:
        """The greedy reply to ``messages`` that ``grammar`` allows."""
        try:
            reply = self._llama.create_chat_completion(
                messages=list(messages), grammar=llama_cpp.LlamaGrammar.from_string(grammar, verbose=False),
                temperature=0.0, max_tokens=max_tokens)
        except ValueError as exc:  # the prompt does not fit in the context
            raise ContextOverflowError(f"{self.path.name}: {exc}") from None
        return reply["choices"][0]["message"]["content"] or ""

    def close(self) -> None:
        """Free the model and its context."""
        self._llama.close()
