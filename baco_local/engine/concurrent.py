"""Both models at once: run the base and aligned decodes of one step at the same time.

A BACo step decodes the chosen token in both contexts. For small models llama.cpp's one-token
decode barely scales with threads, so instead of one decode after the other with all threads
each, the two decodes can run side by side, each with its share of the threads: the aligned
decode on the calling thread, the base decode on one persistent worker thread. ctypes releases
the GIL during ``llama_decode``, so both run truly in parallel; logits are read only after both
have finished. The mode never changes the tokens: each context computes exactly what it would
alone.

``auto`` measures both modes on the loaded contexts (a few one-token decodes per mode, right
before the prompt is decoded) and remembers the faster one per model files, thread counts and
batch class (one sequence or many) in ``~/.cache/baco/concurrency.json``.
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

from ..errors import UsageError
from .backend import SequenceContext, llama_build

Mode = Literal["auto", "on", "off"]
MODES: tuple[str, ...] = ("auto", "on", "off")
CALIBRATION_BLOCKS = 2  # runs of each mode, in turn: off, on, off, on
CALIBRATION_ROUNDS = 4  # timed pairs of decodes per run (after one warm-up decode)


@dataclass(frozen=True)
class ThreadPlan:
    """llama.cpp threads per context in each mode: ``sequential`` and ``concurrent`` as (base, aligned)."""

    sequential: tuple[int, int]
    concurrent: tuple[int, int]

    @classmethod
    def from_options(cls, threads: int, base: int | None = None, aligned: int | None = None) -> "ThreadPlan":
        """Sequential decodes use all ``threads`` each; concurrent ones split them evenly.
        ``base`` / ``aligned`` pin a context's threads in both modes."""
        for name, value in (("--threads", threads), ("--threads-base", base), ("--threads-aligned", aligned)):
            if value is not None and value < 1:
                raise UsageError(f"{name} must be at least 1, got {value}")
        half = max(1, threads // 2)
        return cls(sequential=(base or threads, aligned or threads),
                   concurrent=(base or half, aligned or max(1, threads - half)))


def check_mode(mode: str) -> None:
    """Refuse a --concurrency value that is not auto, on or off."""
    if mode not in MODES:
        raise UsageError(f"--concurrency must be one of {', '.join(MODES)}, got {mode!r}")


def batch_class(n_seq: int) -> str:
    """The batch-size class a concurrency choice is remembered for."""
    return "single" if n_seq <= 1 else "multi"


class PairDecoder:
    """Runs one decode job per context, one after the other or at the same time.

    A job is a callable that fills and decodes one context's batch. With both jobs in flight the
    calling thread waits for the worker whatever happens (an error, Ctrl-C), so neither cache is
    left mid-decode; an error in either is raised once, after both have finished.
    """

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self.concurrent = False

    def run(self, base_job: Callable[[], None], aligned_job: Callable[[], None]) -> None:
        """Decode both contexts (the base first when sequential)."""
        if not self.concurrent:
            base_job()
            aligned_job()
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="baco-decode")
        future: Future[None] = self._pool.submit(base_job)
        try:
            aligned_job()
        finally:
            _join(future)
        future.result()  # the base side's error, if any (the aligned side's was raised above)

    def close(self) -> None:
        """Stop the worker thread."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def _join(future: Future[None]) -> None:
    """Wait for the worker's decode even through Ctrl-C, which is re-raised once it has finished."""
    interrupted = False
    while True:
        try:
            future.exception()
            break
        except KeyboardInterrupt:
            interrupted = True
    if interrupted:
        raise KeyboardInterrupt


def set_threads(contexts: tuple[SequenceContext, SequenceContext], threads: tuple[int, int]) -> None:
    """Give each context its llama.cpp thread count."""
    for context, n in zip(contexts, threads):
        context.set_threads(n)


def measure(decoder: PairDecoder, contexts: tuple[SequenceContext, SequenceContext], plan: ThreadPlan,
            batches: tuple[Callable[[SequenceContext], None], Callable[[SequenceContext], None]],
            rounds: int = CALIBRATION_ROUNDS, blocks: int = CALIBRATION_BLOCKS) -> dict[str, float]:
    """Median milliseconds of one step's pair of decodes in each mode.

    Each mode runs in blocks of ``rounds`` steps (after a warm-up step), the blocks in turn: a
    steady run, as generation has. Switching mode at every step, as this once did, measured the
    concurrent mode right after all-thread decodes and picked "off" where "on" was 1.3x faster
    (bench/concurrency.py, one sequence, 2 cores). ``batches[i](context)`` decodes one throw-away
    batch in context i and removes it again.
    """
    base, aligned = contexts
    times: dict[str, list[float]] = {"off": [], "on": []}
    for _block in range(blocks):
        for mode in ("off", "on"):
            decoder.concurrent = mode == "on"
            set_threads(contexts, plan.concurrent if decoder.concurrent else plan.sequential)
            for index in range(rounds + 1):
                started = time.perf_counter()
                decoder.run(lambda: batches[0](base), lambda: batches[1](aligned))
                if index:  # the first step after a switch warms the mode up
                    times[mode].append((time.perf_counter() - started) * 1000)
    return {mode: statistics.median(values) for mode, values in times.items()}


class ChoiceCache:
    """The measured concurrency choices, one JSON file in baco's cache folder."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    @staticmethod
    def key(paths: tuple[Path, Path], plan: ThreadPlan, klass: str) -> str:
        """What a choice depends on: both files (path, size, mtime), the thread plan, the batch class."""
        files = []
        for path in paths:
            stat = path.stat()
            files.append(f"{path.resolve()}:{stat.st_size}:{int(stat.st_mtime)}")
        return "|".join([*files, f"seq{plan.sequential}", f"conc{plan.concurrent}", klass,
                         llama_build()["llama.cpp"]])

    def read(self) -> dict[str, dict]:
        """Every remembered choice (an unreadable file counts as empty)."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, key: str) -> dict | None:
        """The remembered measurement for ``key``, if any."""
        entry = self.read().get(key)
        return entry if isinstance(entry, dict) and entry.get("mode") in ("on", "off") else None

    def put(self, key: str, entry: dict) -> None:
        """Remember a measurement (written atomically; a read-only cache folder is not an error)."""
        with self._lock:
            data = self.read()
            data[key] = entry
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                temporary = self.path.with_suffix(f".{os.getpid()}.tmp")
                temporary.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
                os.replace(temporary, self.path)
            except OSError:
                pass


class Concurrency:
    """An engine's concurrency setting: the mode asked for, the thread plan, and what ``auto`` chose."""

    def __init__(self, mode: str, plan: ThreadPlan, cache: ChoiceCache | None) -> None:
        check_mode(mode)
        self.mode = mode
        self.plan = plan
        self.cache = cache
        self.decoder = PairDecoder()
        self.chosen: dict[str, dict] = {}  # batch class -> {"mode", "sequential_ms", "concurrent_ms", "source"}
        self._applied: tuple[SequenceContext, SequenceContext, bool] | None = None

    def prepare(self, contexts: tuple[SequenceContext, SequenceContext], paths: tuple[Path, Path], n_seq: int,
                batches: tuple[Callable[[SequenceContext], None], Callable[[SequenceContext], None]]) -> str:
        """Settle the mode for a run of ``n_seq`` sequences ("on" or "off"), measuring it under ``auto``
        (unless remembered), and give both contexts the mode's threads."""
        klass = batch_class(n_seq)
        if self.mode != "auto":
            self.chosen[klass] = {"mode": self.mode, "source": "asked"}
        elif klass not in self.chosen:
            key = ChoiceCache.key(paths, self.plan, klass) if self.cache else ""
            entry = self.cache.get(key) if self.cache else None
            if entry is None:
                started = time.perf_counter()
                ms = measure(self.decoder, contexts, self.plan, batches)
                entry = {"mode": "on" if ms["on"] < ms["off"] else "off", "sequential_ms": round(ms["off"], 3),
                         "concurrent_ms": round(ms["on"], 3),
                         "calibration_ms": round((time.perf_counter() - started) * 1000, 1)}
                if self.cache:
                    self.cache.put(key, entry)
                self._applied = None  # measuring changed the threads
                self.chosen[klass] = {**entry, "source": "measured"}
            else:
                self.chosen[klass] = {**entry, "source": "cached"}
        self._apply(contexts, self.chosen[klass]["mode"] == "on")
        return self.chosen[klass]["mode"]

    def restore(self, contexts: tuple[SequenceContext, SequenceContext], n_seq: int) -> str:
        """Give both contexts back the threads of the mode already settled (by :meth:`prepare`) for
        ``n_seq`` sequences' batch class, e.g. after a prefill ran :meth:`sequential`; no measuring."""
        on = self.chosen[batch_class(n_seq)]["mode"] == "on"
        self._apply(contexts, on)
        return "on" if on else "off"

    def sequential(self, contexts: tuple[SequenceContext, SequenceContext]) -> str:
        """One decode at a time with the sequential threads (for paths that never decode both at once)."""
        self._apply(contexts, False)
        return "off"

    def _apply(self, contexts: tuple[SequenceContext, SequenceContext], on: bool) -> None:
        """Switch the decoder to a mode and give both contexts that mode's threads."""
        self.decoder.concurrent = on
        if self._applied != (*contexts, on):
            set_threads(contexts, self.plan.concurrent if on else self.plan.sequential)
            self._applied = (*contexts, on)

    def describe(self) -> dict:
        """What is recorded in output settings and /stats (the mode never changes the tokens; any
        thread: it reads a copy of ``chosen``, which the engine thread may be adding to)."""
        return {"asked": self.mode, "threads": {"sequential": list(self.plan.sequential),
                                                "concurrent": list(self.plan.concurrent)},
                "chosen": {klass: dict(entry) for klass, entry in dict(self.chosen).items()}}

    def record(self) -> dict:
        """What output records keep: the mode asked for, the thread plans and the mode that ran per batch
        class, without the timings (records of one run split in shards stay byte-identical)."""
        described = self.describe()
        described["chosen"] = {klass: entry["mode"] for klass, entry in self.chosen.items()}
        return described

    def summary(self) -> str:
        """One line for /stats: the mode asked for, what ran per batch class, and the threads."""
        chosen = ", ".join(f"{klass} {e['mode']}" + (f" ({e['source']}: {e['concurrent_ms']:g} ms at once vs "
                                                     f"{e['sequential_ms']:g} ms in turn)" if "concurrent_ms" in e else "")
                           for klass, e in dict(self.chosen).items())
        return (f"concurrency {self.mode}" + (f": {chosen}" if chosen else "") +
                f" · threads base/aligned {self.plan.sequential[0]}/{self.plan.sequential[1]} in turn, "
                f"{self.plan.concurrent[0]}/{self.plan.concurrent[1]} at once")

    def close(self) -> None:
        """Stop the worker thread."""
        self.decoder.close()
