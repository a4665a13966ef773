"""``baco merge``: the outputs of ``baco gen --shard I/N`` runs joined into one file.

Every record of every shard must come from the same run (the settings :func:`resume_difference`
compares, plus the seed rule); a prompt id may appear once only, across all shards. With a
prompt file the records are written in its order (so merging the shards of a run gives the same
bytes as one run of the whole file) and ids missing from the shards are reported; without one,
in the order of the shards given, each in its own order. The output is written to a temporary
file next to it and renamed into place, so it is complete or absent.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from ..errors import OutputFileError, PromptFileError
from .jsonl_file import read_jsonl, record_line
from .prompt_file import PromptItem, id_key
from .records import RESUME_KEYS, is_generation_record, resume_difference

MERGE_HINT = "give only the outputs of one baco gen run's shards"
MERGE_KEYS = (*RESUME_KEYS, "seed_rule")


@dataclass(frozen=True)
class Merged:
    """What a merge wrote, and the prompt-file ids no shard holds."""

    records: int
    missing: list[Any]


@dataclass(frozen=True)
class _Found:
    record: dict[str, Any]
    where: str  # "FILE line N"


def shard_files(sources: Iterable[Path], output: Path) -> list[Path]:
    """The shard files: each path given, or a folder's ``*.jsonl`` files by name (never ``output``)."""
    files: list[Path] = []
    for source in sources:
        if source.is_dir():
            found = sorted(p for p in source.glob("*.jsonl") if p.is_file() and not _same(p, output))
            if not found:
                raise OutputFileError(f"folder {source} holds no .jsonl files to merge")
            files.extend(found)
        elif not source.is_file():
            raise OutputFileError(f"shard {source} does not exist")
        elif _same(source, output):
            raise OutputFileError(f"{source} is both a shard and the merged output; write the merge elsewhere")
        else:
            files.append(source)
    if not files:
        raise OutputFileError("give the shard files (or a folder of them) to merge")
    return files


def _same(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


def collect(files: list[Path]) -> dict[str, _Found]:
    """Every record by id (in shard order), refusing other settings, duplicates and conflicts."""
    found: dict[str, _Found] = {}
    first: _Found | None = None
    for path in files:
        for line in read_jsonl(path, is_generation_record, MERGE_HINT).lines:
            here = _Found(line.record, f"{path} line {line.number}")
            if first is None:
                first = here
            difference = resume_difference(first.record["settings"], line.record["settings"], MERGE_KEYS)
            if difference:
                raise OutputFileError(f"{here.where} has other settings than {first.where} ({difference}); "
                                      f"{MERGE_HINT}")
            key = id_key(line.record["id"])
            if key in found:
                kind = "a duplicate of" if found[key].record == line.record else "in conflict with"
                raise OutputFileError(f"prompt id {line.record['id']!r} in {here.where} is {kind} "
                                      f"{found[key].where}; {MERGE_HINT}, each once")
            found[key] = here
    if first is None:
        raise OutputFileError(f"the shards hold no records: {', '.join(map(str, files))}")
    return found


def order(found: dict[str, _Found], items: list[PromptItem] | None) -> tuple[list[dict[str, Any]], list[Any]]:
    """The records in prompt-file order (or as found) and the prompt ids that none holds."""
    if items is None:
        return [f.record for f in found.values()], []
    wanted = {id_key(item.id): item for item in items}
    for key, f in found.items():
        item = wanted.get(key)
        if item is None:
            raise PromptFileError(f"prompt id {f.record['id']!r} ({f.where}) is not in the prompt file; "
                                  "give the prompt file the shards ran on")
        if item.prompt != f.record["prompt"]:
            raise PromptFileError(f"the prompt file has another text for prompt id {item.id!r} ({f.where}); "
                                  "give the prompt file the shards ran on")
    records = [found[key].record for key in wanted if key in found]
    return records, [item.id for key, item in wanted.items() if key not in found]


def merge(output: Path, sources: Iterable[Path], items: list[PromptItem] | None) -> Merged:
    """Merge the shards into ``output`` (which must not exist yet)."""
    if output.exists():
        raise OutputFileError(f"{output} already exists; merge into a new file (nothing was changed)")
    records, missing = order(collect(shard_files(sources, output)), items)
    temporary = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "w", encoding="utf-8", newline="") as handle:
            handle.writelines(record_line(record) for record in records)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, output)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise OutputFileError(f"cannot write {output}: {exc.strerror or exc}") from None
    return Merged(len(records), missing)
