"""Output records of ``baco gen``: one JSON line per prompt, appended as each prompt finishes.

A record is NoveltyBench's ``generations.jsonl`` shape (``id``, ``prompt``, ``model``,
``generations``) plus per-sample provenance (``samples``) and the run's ``settings``. Lines are
written whole (one ``write`` of the full line, then flush and fsync), so an interrupted run leaves
complete lines only; a rerun of the same command skips the ids already present (resume). A file
written with other settings is refused rather than mixed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from .errors import OutputFileError
from .loop import Sample
from .prompt_file import PromptId, PromptItem

# Settings that must match for a rerun to resume into an existing file.
RESUME_KEYS = ("router", "gamma", "n", "sampling", "max_tokens", "stop", "seed", "system", "base_template",
               "chat_template", "model")


def sample_record(sample: Sample) -> dict[str, Any]:
    """Provenance of one generation."""
    return {
        "tokens": len(sample.tokens),
        "sources": sample.sources,
        "base_fraction": round(sample.base_fraction, 4),
        "finish_reason": sample.finish_reason,
        "seed": sample.seed,
    }


def prompt_record(item: PromptItem, model: str, samples: list[Sample], settings: dict[str, Any]) -> dict[str, Any]:
    """The output line for one prompt."""
    return {
        "id": item.id,
        "prompt": item.prompt,
        "model": model,
        "generations": [s.text for s in samples],
        "samples": [sample_record(s) for s in samples],
        "settings": settings,
    }


@dataclass
class ExistingOutput:
    """What an output file already holds."""

    done: set[PromptId]
    settings: dict[str, Any] | None
    valid_bytes: int  # length of the prefix made of complete, valid lines


def read_existing(path: Path) -> ExistingOutput:
    """Scan an output file for finished prompt ids (a torn last line is reported, not trusted)."""
    done: set[PromptId] = set()
    settings = None
    valid = 0
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return ExistingOutput(done, None, 0)
    except IsADirectoryError:
        raise OutputFileError(f"output {path} is a directory") from None
    except OSError as exc:
        raise OutputFileError(f"cannot read output file {path}: {exc.strerror}") from None
    for number, line in enumerate(data.splitlines(keepends=True), start=1):
        if not line.endswith(b"\n"):
            break  # a torn last line from an interrupted write: not trusted, it will be overwritten
        valid += len(line)
        if not line.strip():
            continue  # a blank line (say, after hand editing) is harmless
        try:
            record = json.loads(line)
            done.add(record["id"])
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
            raise OutputFileError(f"{path} line {number} is not a baco record; use another -o") from None
        settings = settings or record.get("settings")
    return ExistingOutput(done, settings, valid)


class JsonlWriter:
    """Appends one record per line to a file (or stdout), durably."""

    def __init__(self, path: Path | None, *, valid_bytes: int = 0, stream: TextIO | None = None) -> None:
        """Open ``path`` for appending after its first ``valid_bytes`` bytes, or write to ``stream``."""
        self.path = path
        self._stream = stream
        self._file = None
        if path is not None:
            try:
                self._file = open(path, "ab")
                if self._file.tell() > valid_bytes:
                    self._file.truncate(valid_bytes)  # drop a torn last line
            except IsADirectoryError:
                raise OutputFileError(f"output {path} is a directory") from None
            except OSError as exc:
                raise OutputFileError(f"cannot write output file {path}: {exc.strerror}") from None

    def write(self, record: dict[str, Any]) -> None:
        """Write one whole line and make it durable."""
        line = json.dumps(record, ensure_ascii=False) + "\n"
        if self._file is not None:
            self._file.write(line.encode("utf-8"))
            self._file.flush()
            os.fsync(self._file.fileno())
        elif self._stream is not None:
            self._stream.write(line)
            self._stream.flush()

    def close(self) -> None:
        """Close the file (stdout is left open)."""
        if self._file is not None:
            self._file.close()
            self._file = None


def check_resumable(path: Path, existing: ExistingOutput, settings: dict[str, Any]) -> None:
    """Refuse to append to a file written with different settings."""
    if existing.settings is None:
        return
    for key in RESUME_KEYS:
        if existing.settings.get(key) != settings.get(key):
            raise OutputFileError(
                f"{path} holds a run with different {key} ({existing.settings.get(key)!r} vs "
                f"{settings.get(key)!r}); use another -o to start a new run")
