"""Reading generations files: what is accepted, and one clear error line for what is not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from baco_local.errors import OutputFileError
from baco_local.metrics.generations import read_generations

GOOD = {"id": "p1", "prompt": "Name a colour", "model": "aligned", "generations": ["Blue", "Red"]}


def write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "gen.jsonl"
    path.write_bytes(data)
    return path


def test_reads_records_ignoring_blank_lines_extra_fields_and_a_bom(tmp_path: Path) -> None:
    second = {"id": 7, "generations": ["x"], "samples": [], "settings": {}}
    path = write(tmp_path, b"\xef\xbb\xbf" + json.dumps(GOOD).encode() + b"\n\n"
                 + json.dumps(second).encode() + b"\r\n")
    first, other = read_generations(path)
    assert (first.id, first.model, first.generations, first.line) == ("p1", "aligned", ["Blue", "Red"], 1)
    assert (other.id, other.model, other.prompt, other.line) == ("7", "", "", 3)


@pytest.mark.parametrize(
    ("second_line", "message"),
    [
        (b"{not json", "line 2: invalid JSON"),
        (b"[1, 2]", "line 2: expected a JSON object, got list"),
        (b'{"id": "p2"}', "line 2: the record has no 'generations'"),
        (b'{"generations": "one text"}', "line 2: 'generations' must be a list of strings"),
        (b'{"generations": ["ok", 3]}', "line 2: 'generations' must be a list of strings"),
        (b'{"generations": ["caf\xe9"]}', "line 2: not valid UTF-8"),
    ],
)
def test_bad_lines_name_the_file_and_line(tmp_path: Path, second_line: bytes, message: str) -> None:
    path = write(tmp_path, json.dumps(GOOD).encode() + b"\n" + second_line + b"\n")
    with pytest.raises(OutputFileError) as info:
        read_generations(path)
    assert str(info.value).startswith(f"{path} {message}")
    assert "\n" not in str(info.value)


def test_missing_empty_and_directory(tmp_path: Path) -> None:
    with pytest.raises(OutputFileError, match="no such file"):
        read_generations(tmp_path / "absent.jsonl")
    with pytest.raises(OutputFileError, match="no records"):
        read_generations(write(tmp_path, b"\n \n"))
    with pytest.raises(OutputFileError, match="is a directory"):
        read_generations(tmp_path)
