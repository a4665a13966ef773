"""`baco chat`: saved tokens carry their own text, live colours match the writers, and the
context window follows /undo and /reset. Real processes, real llama.cpp, the tiny pair."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from test_chat_cli import STATUS, chat, piped_chat  # noqa: F401 - chat is a fixture

from baco_local.models.gguf_file import read_token_texts

NEVER_SEEN = "qqqqqqqqqqqq"  # a stop string that never matches: its length holds text back
COLOURS = {"36": "A", "33": "B"}  # aligned cyan, base yellow
ESCAPE = re.compile(r"\x1b\[([0-9;]*)m")


def token_text(texts: list[str], token: int) -> str:
    """What a token of the tiny (SentencePiece) vocabulary spells."""
    text = texts[token]
    byte = re.fullmatch(r"<0x([0-9A-F]{2})>", text)
    return chr(int(byte.group(1), 16)) if byte else text.replace("▁", " ")


@pytest.mark.parametrize("stop", [NEVER_SEEN, " the"])
def test_saved_tokens_carry_their_own_text_with_stop_strings(tiny_pair, tmp_path: Path, stop: str) -> None:
    base, aligned = tiny_pair
    result = piped_chat(tmp_path, "--base", str(base), "--aligned", str(aligned), "--max-tokens", "30",
                        "--stop", stop, "--stop", NEVER_SEEN, lines=f"Tell me a story\nOnce more\n/save {tmp_path / 'chat.json'}\n")
    assert result.returncode == 0, result.stderr
    texts = read_token_texts(base)
    saved = json.loads((tmp_path / "chat.json").read_text(encoding="utf-8"))
    sources = ""
    for exchange in saved["exchanges"]:
        reply = exchange["reply"]
        assert [t["text"] for t in reply["tokens"]] == [token_text(texts, t["id"]) for t in reply["tokens"]]
        assert "".join(t["text"] for t in reply["tokens"]) == reply["text"]
        assert stop not in reply["text"]
        sources += "".join(t["source"] for t in reply["tokens"])
    assert "A" in sources and "B" in sources  # both models wrote: the pieces line up with their sources


def coloured_characters(output: str) -> list[tuple[str, str]]:
    """(character, writer) for every character printed in the aligned or base colour."""
    shown, colour = [], None
    position = 0
    for match in ESCAPE.finditer(output + "\x1b[0m"):
        shown += [(char, COLOURS[colour]) for char in output[position:match.start()]
                  if colour in COLOURS and char not in "\r\n"]
        colour, position = match.group(1), match.end()
    return shown


def test_live_colours_follow_each_tokens_own_text(chat, tiny_pair, tmp_path: Path) -> None:
    session = chat("--max-tokens", "30", "--stop", NEVER_SEEN, plain=False)
    output, _ = session.ask("Tell me a story")
    session.send("/save chat.json")
    tokens = json.loads((tmp_path / "chat.json").read_text(encoding="utf-8"))["exchanges"][0]["reply"]["tokens"]
    texts = read_token_texts(tiny_pair[0])
    expected = [(char, t["source"]) for t in tokens for char in token_text(texts, t["id"]) if char not in "\r\n"]
    assert {side for _, side in expected} == {"A", "B"}
    assert coloured_characters(output) == expected
    assert session.exit_with("/quit\r") == 0


def test_undo_brings_back_what_fits_and_reset_tells_the_overflow_again(tiny_pair, tmp_path: Path) -> None:
    base, aligned = tiny_pair
    asks = "".join(f"Tell me story number {i} please\n" for i in range(7))
    lines = (asks + f"/save {tmp_path / 'full.json'}\n" + "/undo\n" * 6 + f"/save {tmp_path / 'undone.json'}\n"
             "/stats\n/reset\n" + asks)
    result = piped_chat(tmp_path, "--base", str(base), "--aligned", str(aligned), "-c", "128", "--max-tokens", "16",
                        "--system", "You are a storyteller.", lines=lines)
    assert result.returncode == 0, result.stderr
    full = json.loads((tmp_path / "full.json").read_text(encoding="utf-8"))
    undone = json.loads((tmp_path / "undone.json").read_text(encoding="utf-8"))
    assert full["dropped"] >= 2 and len(undone["exchanges"]) == 1
    assert undone["dropped"] == 0  # the first exchange fits the context again (it did on the second turn)
    assert "1 of 1 exchanges in the prompt" in result.stderr
    assert result.stderr.count("the conversation outgrew the context") == 2  # once before /reset, once after
