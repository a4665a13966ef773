"""What a decode costs per batch size on this machine and model, measured, not assumed.

Every logits row costs almost a full pass over the output matrix, and llama.cpp's matrix kernel
changes with the batch size, so costs are not monotone: on Gemma 3 270M (2 CPU threads) a batch of
6 tokens with logits for each costs more than one of 8. A :class:`CostTable` holds the median time
of one decode per batch size, with logits for every token and for the last one only; it is measured
with a few decodes per size (on a sequence that is removed again) and remembered per model file,
thread count and llama.cpp build in baco's cache folder (``batch_costs.json``), like the
concurrency choice. ``--concurrency auto`` uses it:

- the scheduler pads a step's batch to a cheaper size on free sequence slots (:func:`padded_size`);
- draft-and-verify picks each round's draft length K for the most expected tokens per
  millisecond (:func:`best_draft_length`), from the writer's one-token decode, the verifier's
  K-token batch and the acceptance rate seen so far.

Neither changes what is generated: padding rows are thrown away, and draws are indexed by position.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..errors import BacoError
from .backend import SequenceContext, llama_build
from .concurrent import ChoiceCache

SIZES: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8, 12, 16)
REPEATS = 3  # timed decodes per size and kind (after one warm-up)


@dataclass(frozen=True)
class CostTable:
    """Median milliseconds of one decode of ``size`` tokens: ``all_rows`` with logits for every
    token, ``last_row`` for the last token only; ``calibration_ms`` what measuring took."""

    all_rows: dict[int, float]
    last_row: dict[int, float]
    calibration_ms: float = 0.0

    @property
    def sizes(self) -> list[int]:
        return sorted(self.all_rows)

    def cost(self, size: int, rows: int | None = None) -> float:
        """Estimated ms of a ``size``-token decode with ``rows`` logits rows (default: all): linear
        between measured sizes, and between the last-row and all-rows costs."""
        rows = size if rows is None else max(1, min(rows, size))
        every, last = self._at(self.all_rows, size), self._at(self.last_row, size)
        return last if size == 1 else last + (every - last) * (rows - 1) / (size - 1)

    @staticmethod
    def _at(table: dict[int, float], size: int) -> float:
        sizes = sorted(table)
        if size <= sizes[0]:
            return table[sizes[0]]
        if size >= sizes[-1]:
            return table[sizes[-1]] * size / sizes[-1]
        below = max(s for s in sizes if s <= size)
        above = min(s for s in sizes if s >= size)
        if below == above:
            return table[below]
        share = (size - below) / (above - below)
        return table[below] + (table[above] - table[below]) * share

    def as_dict(self) -> dict:
        return {"all_rows": {str(k): v for k, v in self.all_rows.items()},
                "last_row": {str(k): v for k, v in self.last_row.items()}, "calibration_ms": self.calibration_ms}

    @classmethod
    def from_dict(cls, data: object) -> "CostTable | None":
        """The table stored by :meth:`as_dict`, or None when the entry is damaged."""
        try:
            all_rows = {int(k): float(v) for k, v in data["all_rows"].items()}  # type: ignore[index]
            last_row = {int(k): float(v) for k, v in data["last_row"].items()}  # type: ignore[index]
            if not all_rows or set(all_rows) != set(last_row) or 1 not in all_rows:
                return None
            return cls(all_rows, last_row, float(data.get("calibration_ms", 0.0)))  # type: ignore[union-attr]
        except (TypeError, KeyError, ValueError, AttributeError):
            return None

    def rows(self) -> list[tuple[int, float, float]]:
        """(size, all-rows ms, last-row ms) per measured size, for printing."""
        return [(size, self.all_rows[size], self.last_row[size]) for size in self.sizes]


def measure_costs(context: SequenceContext, seq: int, start: int, token: int,
                  sizes: Sequence[int] = SIZES, repeats: int = REPEATS) -> CostTable:
    """Time decodes of each size in ``context`` on sequence ``seq`` from position ``start`` on,
    removing them again (the sequence holds what it held before)."""
    started = time.perf_counter()
    all_rows: dict[int, float] = {}
    last_row: dict[int, float] = {}
    for size in sizes:
        if size > context.shape.n_batch:
            break
        for table, every in ((all_rows, True), (last_row, False)):
            times = []
            for index in range(repeats + 1):
                begin = time.perf_counter()
                context.decode([token] * size, range(start, start + size), [seq] * size,
                               [every or i == size - 1 for i in range(size)])
                if index:
                    times.append((time.perf_counter() - begin) * 1000)
                context.truncate(seq, start)
            table[size] = round(statistics.median(times), 4)
    return CostTable(all_rows, last_row, round((time.perf_counter() - started) * 1000, 1))


class CostCache:
    """Measured tables, one JSON file beside the concurrency choices (``batch_costs.json``)."""

    def __init__(self, path: Path) -> None:
        self.store = ChoiceCache(path)

    @staticmethod
    def key(path: Path, threads: int) -> str:
        stat = path.stat()
        return f"{path.resolve()}:{stat.st_size}:{int(stat.st_mtime)}|threads{threads}|{llama_build()['llama.cpp']}"

    def table(self, context: SequenceContext, threads: int, seq: int, start: int, token: int) -> CostTable | None:
        """The remembered table for this context's model and ``threads``, else measured now (None
        when the measuring decode fails, e.g. for lack of free KV cells: then nothing uses it)."""
        key = self.key(context.model.path, threads)
        found = CostTable.from_dict(self.store.read().get(key))
        if found is not None:
            return found
        try:
            measured = measure_costs(context, seq, start, token)
        except BacoError:
            context.truncate(seq, start)
            return None
        self.store.put(key, measured.as_dict())
        return measured


def padded_size(tables: Sequence[CostTable], size: int, limit: int) -> int:
    """The batch size from ``size`` to ``limit`` whose decode (logits for every row, in every
    table's model, one after the other) is cheapest; ``size`` unless a bigger one is cheaper by
    more than 3% (measurement noise)."""
    def total(n: int) -> float:
        return sum(table.cost(n) for table in tables)

    best = size
    for candidate in range(size + 1, limit + 1):
        if any(candidate not in table.all_rows for table in tables):
            continue  # only sizes measured: interpolation says nothing about a kernel's dip
        if total(candidate) < total(best) * 0.97:
            best = candidate
    return best


def best_draft_length(writer: CostTable, verifier: CostTable, acceptance: float, max_k: int,
                      need_share: float = 1.0) -> int:
    """The draft length K with the most expected tokens per millisecond for one round.

    A round drafts K tokens (K one-token decodes of the writer) and verifies them in one K-token
    batch of the verifier with about ``need_share`` × K logits rows; it yields
    1 + a + ... + a^(K-1) tokens for a per-token acceptance rate a (the first rejected position
    still gives the other model's token).
    """
    a = min(max(acceptance, 0.0), 0.999)
    best, best_rate = 1, 0.0
    for k in range(1, max_k + 1):
        expected = (1 - a ** k) / (1 - a)
        rows = max(1, round(need_share * k))
        rate = expected / (k * writer.cost(1, 1) + verifier.cost(k, rows))
        if rate > best_rate * 1.0001:
            best, best_rate = k, rate
    return best
