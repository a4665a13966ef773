"""JSONL files that baco appends to: reading what a file already holds, and appending durably.

Reading (:func:`read_jsonl`) trusts only what baco itself could have written. Lines are split on
``\\n`` only. Blank lines are ignored. A last line without its newline is a write that was cut
short, and is dropped, but only after at least one valid record: a file that does not start
with a baco record is not baco's, and is refused as a whole (never truncated). Any later line
that is not a record is refused with its line number.

Writing (:class:`JsonlWriter`) appends each record as one whole line with one unbuffered write,
then fsync. The file is created at the first record, so a run that stops before writing leaves
nothing behind. A write that fails (a full disk) is cut back to the last complete line and
raises one OutputFileError, so the records before it stay valid and a rerun resumes.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TextIO

from ..errors import OutputFileError

IsRecord = Callable[[Any], bool]


@dataclass(frozen=True)
class JsonlLine:
    """One record and its 1-based line number."""

    number: int
    record: dict[str, Any]


@dataclass(frozen=True)
class JsonlContent:
    """The valid records of a file, and the length of the prefix they (and blank lines) make up."""

    lines: list[JsonlLine]
    valid_bytes: int


def is_regular_output(path: Path) -> bool:
    """True for a regular file or a path not created yet (not a device such as /dev/null or a FIFO)."""
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except FileNotFoundError:
        return True
    except OSError as exc:
        raise OutputFileError(f"cannot use {path}: {exc.strerror or exc}") from None


def read_jsonl(path: Path, is_record: IsRecord, hint: str) -> JsonlContent:
    """The records of an existing file (none if it is missing, empty or not a regular file).

    ``is_record`` tells a record of this file's kind; ``hint`` ends every error (what to do instead).
    """
    if path.is_dir():
        raise OutputFileError(f"output {path} is a directory")
    if not is_regular_output(path):
        return JsonlContent([], 0)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return JsonlContent([], 0)
    except OSError as exc:
        raise OutputFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    *complete, tail = data.split(b"\n")
    lines: list[JsonlLine] = []
    for number, raw in enumerate(complete, start=1):
        if not raw.strip():
            continue  # a blank line (say, after hand editing) is harmless
        record = _parse(raw)
        if record is None or not is_record(record):
            if not lines:
                raise OutputFileError(f"{path} is not a baco output file; {hint} (the file was left unchanged)")
            raise OutputFileError(f"{path} line {number} is not a baco record; {hint}")
        lines.append(JsonlLine(number, record))
    if tail.strip() and not lines:
        raise OutputFileError(f"{path} is not a baco output file; {hint} (the file was left unchanged)")
    return JsonlContent(lines, len(data) - len(tail))


def _parse(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None


def record_line(record: dict[str, Any]) -> str:
    """One record as the line baco writes for it (UTF-8 text, not ASCII escapes; ends in a newline)."""
    return json.dumps(record, ensure_ascii=False) + "\n"


class JsonlWriter:
    """Appends one record per line to a file (or to a stream such as stdout), durably."""

    def __init__(self, path: Path | None, *, valid_bytes: int = 0, stream: TextIO | None = None) -> None:
        """Append to ``path`` after its first ``valid_bytes`` bytes (a torn line after them is
        replaced at the first record), or write to ``stream``. An existing file is opened now,
        which checks that it can be written without changing it."""
        self.path = path
        self._stream = stream
        self._valid = valid_bytes
        self._fd: int | None = None
        self._regular = path is None or is_regular_output(path)
        if path is not None and path.exists():
            self._open()

    def _open(self) -> int:
        assert self.path is not None
        if self._fd is None:
            try:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            except IsADirectoryError:
                raise OutputFileError(f"output {self.path} is a directory") from None
            except OSError as exc:
                raise OutputFileError(f"cannot write output file {self.path}: {exc.strerror}") from None
        return self._fd

    def write(self, record: dict[str, Any]) -> None:
        """Write one whole line and make it durable."""
        line = record_line(record)
        if self.path is None:
            if self._stream is not None:
                self._stream.write(line)
                self._stream.flush()
            return
        fd = self._open()
        data = memoryview(line.encode("utf-8"))
        try:
            if self._regular and os.fstat(fd).st_size > self._valid:
                os.ftruncate(fd, self._valid)  # drop a torn last line
            while data:
                data = data[os.write(fd, data):]
            if self._regular:
                os.fsync(fd)
        except OSError as exc:
            self._cut_back()
            raise OutputFileError(
                f"cannot write {self.path}: {exc.strerror or exc}; every record before this one is kept, "
                "and running the same command again resumes from there") from None
        self._valid += len(line.encode("utf-8"))

    def _cut_back(self) -> None:
        """After a failed write, remove what part of the line got written (best effort)."""
        if self._fd is not None and self._regular:
            try:
                os.ftruncate(self._fd, self._valid)
            except OSError:
                pass  # the next run drops the torn line anyway

    def close(self) -> None:
        """Close the file (a stream is left open)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
