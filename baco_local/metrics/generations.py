"""Read the JSONL that ``baco gen`` writes (NoveltyBench's format) for evaluation.

One JSON object a line with ``generations`` (a list of texts) and, usually, ``id``, ``prompt``
and ``model``; other fields are ignored. Blank lines are skipped. Any problem is one
:class:`~baco_local.errors.OutputFileError` line naming the file and line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import OutputFileError
from ..runs.prompt_file import id_key


@dataclass(frozen=True)
class PromptRecord:
    """One prompt's samples from one model."""

    id: str
    prompt: str
    model: str
    generations: list[str]
    line: int


def _parse_line(raw: bytes, where: str, line: int) -> PromptRecord:
    try:
        text = raw.decode("utf-8-sig" if line == 1 else "utf-8")  # tolerate a BOM
    except UnicodeDecodeError as exc:
        raise OutputFileError(f"{where}: not valid UTF-8 (byte {exc.start + 1} of the line)") from exc
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise OutputFileError(f"{where}: invalid JSON ({exc.msg}, column {exc.colno})") from exc
    if not isinstance(obj, dict):
        raise OutputFileError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    generations = obj.get("generations")
    if generations is None:
        raise OutputFileError(f"{where}: the record has no 'generations'")
    if not isinstance(generations, list) or not all(isinstance(g, str) for g in generations):
        raise OutputFileError(f"{where}: 'generations' must be a list of strings")
    return PromptRecord(
        id=id_key(obj.get("id", line)),
        prompt=str(obj.get("prompt", "")),
        model=str(obj.get("model", "")),
        generations=generations,
        line=line,
    )


def read_generations(path: Path) -> list[PromptRecord]:
    """All records of a generations file, in file order."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise OutputFileError(f"{path}: no such file") from exc
    except IsADirectoryError as exc:
        raise OutputFileError(f"{path}: is a directory, not a JSONL file") from exc
    except OSError as exc:
        raise OutputFileError(f"cannot read {path}: {exc.strerror or exc}") from exc
    records = [
        _parse_line(raw, f"{path} line {n}", n)
        for n, raw in enumerate(data.split(b"\n"), start=1)
        if raw.strip()
    ]
    if not records:
        raise OutputFileError(f"{path}: no records (the file is empty)")
    return records
