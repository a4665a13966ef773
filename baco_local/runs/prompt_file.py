"""Reading prompt files: ``.txt`` (one prompt per non-empty line) or ``.jsonl`` (``{"id", "prompt"}``);
also the same from standard input (``-f -``), and a single prompt given on the command line (``-p``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..errors import PromptFileError

PromptId = str | int
STDIN = "-"  # the prompt file name that means standard input
STDIN_NAME = "standard input"


def id_key(prompt_id: object) -> str:
    """What identifies a prompt id everywhere (prompt files, output files, run folders): its text,
    so that ids ``1`` and ``"1"`` are the same id."""
    return str(prompt_id)


def split_lines(text: str) -> list[str]:
    """Lines split on ``\n`` only (a ``\r`` before it is dropped): unlike ``str.splitlines``, U+2028,
    U+2029, U+0085 and form feeds stay inside their line, as in JSONL written with ``ensure_ascii=False``."""
    return [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]


@dataclass(frozen=True)
class PromptItem:
    """One prompt and the id its output record carries (a .txt prompt's id is its line number)."""

    id: PromptId
    prompt: str


def _read_text(path: Path) -> str:
    if not path.exists():
        raise PromptFileError(f"prompt file {path} does not exist")
    if path.is_dir():
        raise PromptFileError(f"prompt file {path} is a directory")
    return _decode(path.read_bytes(), path)


def _decode(data: bytes, path: Path | str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise PromptFileError(f"{path} line {line}: not valid UTF-8 (byte {exc.start})") from None


def _parse_jsonl_line(path: Path | str, number: int, line: str) -> PromptItem:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise PromptFileError(f"{path} line {number}: invalid JSON ({exc.msg})") from None
    if not isinstance(record, dict) or not isinstance(record.get("prompt"), str):
        raise PromptFileError(f'{path} line {number}: expected {{"id": ..., "prompt": "text"}}')
    prompt_id = record.get("id", number)
    if not isinstance(prompt_id, (str, int)) or isinstance(prompt_id, bool):
        raise PromptFileError(f"{path} line {number}: id must be a string or an integer")
    return PromptItem(prompt_id, record["prompt"])


def read_prompt_file(path: str | Path) -> list[PromptItem]:
    """All prompts of a file, in order; raises PromptFileError with the file and line."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".txt", ".jsonl"):
        raise PromptFileError(f"prompt file {path} must end in .txt or .jsonl")
    return parse_prompts(_read_text(path), path, jsonl=suffix == ".jsonl")


def read_prompts(source: str | Path, stdin: BinaryIO) -> list[PromptItem]:
    """Prompts from a file, or from ``stdin`` when ``source`` is ``-``: JSONL when its first
    non-empty line is a JSON object, else one prompt per non-empty line (as a .txt file)."""
    if str(source) != STDIN:
        return read_prompt_file(source)
    text = _decode(stdin.read(), STDIN_NAME)
    return parse_prompts(text, STDIN_NAME, jsonl=_starts_with_json_object(text))


def single_prompt(text: str) -> list[PromptItem]:
    """The one prompt of ``-p TEXT`` (its id is 1, as the first line of a file)."""
    if not text.strip():
        raise PromptFileError("the prompt given with -p is empty")
    return [PromptItem(1, text)]


def _starts_with_json_object(text: str) -> bool:
    first = next((line for line in split_lines(text) if line.strip()), "")
    try:
        return isinstance(json.loads(first), dict)
    except json.JSONDecodeError:
        return False


def parse_prompts(text: str, path: Path | str, *, jsonl: bool) -> list[PromptItem]:
    """The prompts of a file's text (``path`` names it in errors)."""
    items: list[PromptItem] = []
    for number, line in enumerate(split_lines(text), start=1):
        if not line.strip():
            continue
        items.append(_parse_jsonl_line(path, number, line) if jsonl else PromptItem(number, line.strip()))
    if not items:
        raise PromptFileError(f"{path} has no prompts")
    seen: set[str] = set()  # ids 1 and "1" count as the same: output files and run folders key on text
    for item in items:
        if not item.prompt.strip():
            raise PromptFileError(f"{path}: prompt {item.id!r} is empty")
        if id_key(item.id) in seen:
            raise PromptFileError(f"{path}: prompt id {item.id!r} appears twice")
        seen.add(id_key(item.id))
    return items
