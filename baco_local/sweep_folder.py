"""A sweep's run folder: the files it holds, and how a rerun continues where the last run stopped.

::

    RUN_DIR/
      sweep.json          the grid: each operating point's id and the settings that shape its output
      generations.jsonl   one record per (operating point, prompt), "model" = the point's id
      scores.jsonl        each record's metric values (a cache: a rerun does not score them again)
      points.json         each operating point's metric means over prompts
      summary.json        coverage and dominance of each method, per plane and averaged
      frontier*.png       the diversity-quality plane, one curve per method, the pooled frontier

Both JSONL files are appended one whole line at a time with :class:`~baco_local.records.JsonlWriter`
(flushed and fsynced); on a rerun, the lines already there are skipped and a torn last line is
replaced. A folder holding records of another grid is refused rather than mixed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping

from .errors import OutputFileError
from .prompt_file import PromptItem
from .records import JsonlWriter, read_existing

Key = tuple[str, str]  # (operating point id, prompt id as text)


class RunFolder:
    """The files of one sweep."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.spec = path / "sweep.json"
        self.generations = path / "generations.jsonl"
        self.scores = path / "scores.jsonl"
        self.points = path / "points.json"
        self.summary = path / "summary.json"

    def plot(self, metric: str, primary: bool) -> Path:
        """The plot of one quality metric: ``frontier.png`` for the first, else ``frontier-NAME.png``."""
        return self.path / ("frontier.png" if primary else f"frontier-{metric}.png")

    def open(self, spec: dict[str, Any]) -> None:
        """Create the folder and record the grid, or check that the records there are of this grid.

        A folder without records yet (a run that failed before generating) takes the new grid.
        """
        if self.path.exists() and not self.path.is_dir():
            raise OutputFileError(f"run folder {self.path} is a file")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            if not self.spec.exists() or not _complete_lines(self.generations):
                self.spec.write_text(json.dumps(spec, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
                return
            stored = json.loads(self.spec.read_text(encoding="utf-8"))
        except OSError as exc:
            raise OutputFileError(f"cannot use run folder {self.path}: {exc.strerror or exc}") from None
        except json.JSONDecodeError:
            raise OutputFileError(f"{self.spec} is not valid JSON; use another run folder") from None
        difference = grid_difference(stored, json.loads(json.dumps(spec)))
        if difference:
            raise OutputFileError(f"{self.path} holds a sweep with a different grid ({difference}); "
                                  "use another run folder, or the options it was started with")

    def recorded_settings(self) -> dict[str, Any] | None:
        """The settings sweep.json records for its first operating point, if the folder holds
        records (a rerun with ``--seed -1`` continues with the seed they were made with)."""
        if not self.path.is_dir():
            return None  # open() says what is wrong
        try:
            if not _complete_lines(self.generations):
                return None
            points = json.loads(self.spec.read_text(encoding="utf-8")).get("points") or {}
        except (OSError, json.JSONDecodeError, AttributeError):
            return None  # open() reports what is wrong with the folder
        first = next(iter(points.values()), None)
        return first if isinstance(first, dict) else None

    def done(self, items: Iterable[PromptItem]) -> set[Key]:
        """The records already generated.

        A record whose prompt id is in ``items`` with another text is refused: the prompt file
        changed under the same ids.
        """
        prompts = {str(item.id): item.prompt for item in items}
        lines = _complete_lines(self.generations)
        for line in lines:
            known = prompts.get(str(line["id"]))
            if known is not None and known != line.get("prompt"):
                raise OutputFileError(f"{self.generations} has another text for prompt id {line['id']!r}; "
                                      "the prompt file changed, use another run folder")
        return {(line["model"], str(line["id"])) for line in lines}

    def cached_scores(self, scorer: str) -> dict[Key, dict[str, float]]:
        """The metric values already computed by the same scorers (``scorer`` describes them)."""
        return {(line["point"], str(line["id"])): _floats(line["values"])
                for line in _complete_lines(self.scores) if line.get("scorer") == scorer}

    @staticmethod
    def appender(path: Path) -> JsonlWriter:
        """A writer that appends to one of the JSONL files after its complete lines."""
        return JsonlWriter(path, valid_bytes=read_existing(path).valid_bytes)


def score_line(key: Key, scorer: str, values: Mapping[str, float]) -> dict[str, Any]:
    """A scores.jsonl line (NaN is written as null)."""
    return {"id": key[1], "point": key[0], "scorer": scorer, "values": finite_or_none(values)}


def finite_or_none(values: Mapping[str, float]) -> dict[str, float | None]:
    """The values as JSON data: NaN becomes null."""
    return {name: None if math.isnan(value) else value for name, value in values.items()}


def _floats(values: Mapping[str, float | None]) -> dict[str, float]:
    return {name: math.nan if value is None else float(value) for name, value in values.items()}


def _complete_lines(path: Path) -> list[dict[str, Any]]:
    """The complete lines of a JSONL file (a torn last line is left out)."""
    valid = read_existing(path).valid_bytes
    return [json.loads(line) for line in path.read_bytes()[:valid].splitlines()] if valid else []


def grid_difference(stored: Mapping[str, Any], spec: Mapping[str, Any]) -> str:
    """How two sweep specs differ, in a few words ("" when they are the same)."""
    for key in sorted(set(stored) | set(spec)):
        if key != "points" and stored.get(key) != spec.get(key):
            return f"{key}: {stored.get(key)!r} there, {spec.get(key)!r} now"
    old, new = stored.get("points", {}), spec.get("points", {})
    missing, added = [p for p in old if p not in new], [p for p in new if p not in old]
    if missing or added:
        parts = ([f"without {', '.join(missing)}"] if missing else []) + ([f"with {', '.join(added)}"] if added else [])
        return "this command's grid is " + " and ".join(parts)
    for point, settings in new.items():
        for key in sorted(set(settings) | set(old[point])):
            if settings.get(key) != old[point].get(key):
                return f"{point} {key}: {old[point].get(key)!r} there, {settings.get(key)!r} now"
    return ""
