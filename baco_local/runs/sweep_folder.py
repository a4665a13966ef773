"""A sweep's run folder: the files it holds, and how a rerun continues where the last run stopped.

::

    RUN_DIR/
      sweep.json          the grid: each operating point's id and the settings that shape its output
      generations.jsonl   one record per (operating point, prompt), "model" = the point's id
      scores.jsonl        each record's metric values (a cache: a rerun does not score them again)
      points.json         each operating point's metric means over prompts
      summary.json        coverage and dominance of each method, per plane and averaged
      frontier*.png/.svg   the frontier figure (runs/sweep_plot.py): planes per diversity metric, coverage/dominance bars
      sweep.lock          while a sweep runs in the folder (see :mod:`baco_local.runs.run_lock`)

Both JSONL files are appended one whole line at a time with :class:`~baco_local.runs.jsonl_file.JsonlWriter`
(flushed and fsynced); on a rerun, the lines already there are skipped and a torn last line is
replaced. Both are read in full, and every malformed line refused by file and line, before any
model is loaded. A folder holding records of another grid, or another text for a prompt id, is
refused rather than mixed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..errors import OutputFileError
from .jsonl_file import JsonlContent, JsonlWriter, read_jsonl
from .prompt_file import PromptItem, id_key
from .records import check_same_prompts, is_generation_record, resume_difference, unique_records
from .run_lock import RunLock

Key = tuple[str, str]  # (operating point id, id_key of the prompt id)
HINT = "use another run folder"


class RunFolder:
    """The files of one sweep."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.spec = path / "sweep.json"
        self.generations = path / "generations.jsonl"
        self.scores = path / "scores.jsonl"
        self.points = path / "points.json"
        self.summary = path / "summary.json"
        self.lock = RunLock(path / "sweep.lock", path, HINT)
        self._contents: dict[Path, JsonlContent] = {}
        self._created = False

    def plot(self, metric: str, primary: bool) -> Path:
        """The plot of one quality metric: ``frontier.png`` for the first, else ``frontier-NAME.png``."""
        return self.path / ("frontier.png" if primary else f"frontier-{metric}.png")

    def open(self, spec: dict[str, Any]) -> None:
        """Create and lock the folder, read its records, and record the grid or check that the
        records there are of this grid (:meth:`close` releases the lock).

        A folder without records yet (a run that failed before generating) takes the new grid.
        """
        if self.path.exists() and not self.path.is_dir():
            raise OutputFileError(f"run folder {self.path} is a file")
        self._created = not self.path.exists()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputFileError(f"cannot use run folder {self.path}: {exc.strerror or exc}") from None
        self.lock.acquire()
        self._contents = {self.generations: read_jsonl(self.generations, is_generation_record, HINT),
                          self.scores: read_jsonl(self.scores, _is_score_line, HINT)}
        try:
            if not self.spec.exists() or not self._contents[self.generations].lines:
                self.spec.write_text(json.dumps(spec, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
                return
            stored = json.loads(self.spec.read_text(encoding="utf-8"))
        except OSError as exc:
            raise OutputFileError(f"cannot use run folder {self.path}: {exc.strerror or exc}") from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise OutputFileError(f"{self.spec} is not valid JSON; {HINT}") from None
        difference = grid_difference(stored, json.loads(json.dumps(spec)))
        if difference:
            raise OutputFileError(f"{self.path} holds a sweep with a different grid ({difference}); "
                                  "use another run folder, or the options it was started with")

    def close(self) -> None:
        """Release the folder's lock; a folder this run made but wrote no record to is removed again
        (a run refused after :meth:`open`, say by the memory check, leaves nothing behind)."""
        self.lock.release()
        if self._created and not self.generations.exists():
            self.spec.unlink(missing_ok=True)
            try:
                self.path.rmdir()
            except OSError:
                pass  # something else is in it: leave it

    def recorded_settings(self) -> dict[str, Any] | None:
        """The settings sweep.json records for its first operating point, if the folder holds
        records (a rerun with ``--seed -1`` continues with the seed they were made with)."""
        if not self.path.is_dir():
            return None  # open() says what is wrong
        try:
            if not self.generations.is_file() or not self.generations.stat().st_size:
                return None
            points = json.loads(self.spec.read_text(encoding="utf-8")).get("points") or {}
        except (OSError, json.JSONDecodeError, AttributeError):
            return None  # open() reports what is wrong with the folder
        first = next(iter(points.values()), None)
        return first if isinstance(first, dict) else None

    def done(self, items: Iterable[PromptItem]) -> set[Key]:
        """The records already generated (after :meth:`open`).

        A record whose prompt id is in ``items`` with another text is refused (the prompt file
        changed under the same ids), and so is a record that is there twice.
        """
        recorded = unique_records(self.generations, self._contents[self.generations],
                                  lambda r: (r["model"], id_key(r["id"])), HINT)
        for point in {point for point, _ in recorded}:
            check_same_prompts(self.generations, {i: text for (p, i), text in recorded.items() if p == point},
                               items, HINT)
        return set(recorded)

    def cached_scores(self, scorer: str) -> dict[Key, dict[str, float]]:
        """The metric values already computed by the same scorers (``scorer`` describes them)."""
        return {(line.record["point"], id_key(line.record["id"])): _floats(line.record["values"])
                for line in self._contents[self.scores].lines if line.record["scorer"] == scorer}

    def appender(self, path: Path) -> JsonlWriter:
        """A writer that appends to one of the JSONL files after its complete lines (after :meth:`open`)."""
        return JsonlWriter(path, valid_bytes=self._contents[path].valid_bytes)


def score_line(key: Key, scorer: str, values: Mapping[str, float]) -> dict[str, Any]:
    """A scores.jsonl line (NaN is written as null)."""
    return {"id": key[1], "point": key[0], "scorer": scorer, "values": finite_or_none(values)}


def finite_or_none(values: Mapping[str, float]) -> dict[str, float | None]:
    """The values as JSON data: NaN becomes null."""
    return {name: None if math.isnan(value) else value for name, value in values.items()}


def _floats(values: Mapping[str, float | None]) -> dict[str, float]:
    return {name: math.nan if value is None else float(value) for name, value in values.items()}


def _is_score_line(line: Any) -> bool:
    """True for a scores.jsonl line that :func:`score_line` writes."""
    return (isinstance(line, dict) and isinstance(line.get("id"), str) and isinstance(line.get("point"), str)
            and isinstance(line.get("scorer"), str) and isinstance(line.get("values"), dict)
            and all(v is None or isinstance(v, (int, float)) for v in line["values"].values()))


def grid_difference(stored: Mapping[str, Any], spec: Mapping[str, Any]) -> str:
    """How two sweep specs differ, in a few words ("" when they are the same)."""
    difference = resume_difference(stored, spec, sorted((set(stored) | set(spec)) - {"points"}))
    if difference:
        return difference
    old, new = stored.get("points", {}), spec.get("points", {})
    missing, added = [p for p in old if p not in new], [p for p in new if p not in old]
    if missing or added:
        parts = ([f"without {', '.join(missing)}"] if missing else []) + ([f"with {', '.join(added)}"] if added else [])
        return "this command's grid is " + " and ".join(parts)
    for point, settings in new.items():
        difference = resume_difference(old[point], settings, sorted(set(settings) | set(old[point])))
        if difference:
            return f"{point} {difference}"
    return ""
