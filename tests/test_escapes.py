"""llama.cpp's backslash escapes (common.cpp's string_process_escapes), as --stop/--system/--base-template read them."""

from __future__ import annotations

import pytest

from baco_local.errors import UsageError
from baco_local.cli.escapes import process_escapes


@pytest.mark.parametrize("raw, processed", [
    (r"a\nb", "a\nb"),
    (r"\r\t", "\r\t"),
    (r"\\n", "\\n"),  # an escaped backslash, then a plain n
    (r"say \"hi\" and \'bye\'", "say \"hi\" and 'bye'"),
    (r"\x41\x62", "Ab"),
    (r"\xc3\xa9t\xc3\xa9", "été"),  # \x bytes that form UTF-8 together
    (r"C:\path\q", r"C:\path\q"),  # unknown escapes keep their backslash
    (r"\x4", r"\x4"),  # too short for \xNN
    (r"\x4g", r"\x4g"),  # not hex
    ("ends with \\", "ends with \\"),
    ("café ☕\\n", "café ☕\n"),
    ("", ""),
])
def test_escapes_as_llama_cpp(raw: str, processed: str) -> None:
    assert process_escapes(raw) == processed


def test_bytes_that_are_not_utf8_name_the_option() -> None:
    with pytest.raises(UsageError, match=r"^--stop: .*--no-escape"):
        process_escapes(r"\xff", "--stop")
