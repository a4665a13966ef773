"""Backslash escapes in command-line text, as llama.cpp's ``string_process_escapes`` reads them.

``\\n``, ``\\r``, ``\\t``, ``\\'``, ``\\"``, ``\\\\`` and ``\\xNN`` (two hex digits: one byte) are
replaced; any other backslash is kept with the character after it, so ``C:\\path`` survives. The
bytes ``\\xNN`` writes must form UTF-8 text together with the rest.
"""

from __future__ import annotations

from ..errors import UsageError

_SIMPLE = {ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t", ord("'"): b"'", ord('"'): b'"', ord("\\"): b"\\"}
_HEX = b"0123456789abcdefABCDEF"


def process_escapes(text: str, option: str = "the text") -> str:
    """``text`` with its escapes replaced; UsageError (naming ``option``) if ``\\xNN`` breaks UTF-8."""
    data = text.encode("utf-8", errors="surrogateescape")
    out = bytearray()
    i = 0
    while i < len(data):
        byte = data[i]
        if byte != ord("\\") or i + 1 == len(data):
            out.append(byte)
            i += 1
            continue
        code = data[i + 1]
        if code in _SIMPLE:
            out += _SIMPLE[code]
            i += 2
        elif code == ord("x") and i + 3 < len(data) and all(c in _HEX for c in data[i + 2:i + 4]):
            out.append(int(data[i + 2:i + 4], 16))
            i += 4
        else:
            out += data[i:i + 2]
            i += 2
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{option}: its \\x escapes do not form UTF-8 text ({text!r}); "
                         "pass --no-escape to take it literally") from None
