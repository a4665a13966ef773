"""`baco chat` end to end: a real process on a pseudo-terminal (pexpect), real llama.cpp, the tiny pair."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pexpect = pytest.importorskip("pexpect")

PROMPT = ">>> "
STATUS = re.compile(r"(\d+) tokens · (?:[\d.]+|-) tok/s · (\d+)% base")
COLOUR = re.compile(r"\x1b\[[0-9;]*m")


class Chat:
    """A `baco chat` process on a pseudo-terminal; everything it prints is kept in ``log``."""

    def __init__(self, tiny_pair, tmp_path: Path, *args: str, plain: bool = True) -> None:
        base, aligned = tiny_pair
        env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state"), "TERM": "xterm-256color",
               "PYTHONIOENCODING": "utf-8"}
        env.pop("NO_COLOR", None)
        command = ["-m", "baco_local", "chat", "--base", str(base), "--aligned", str(aligned),
                   "--threads", "1", *(["--plain"] if plain else []), *args]  # one thread: steady on a busy CPU
        self.log = io.StringIO()
        self.process = pexpect.spawn(sys.executable, command, env=env, encoding="utf-8", timeout=60,
                                     dimensions=(50, 200), cwd=str(tmp_path))
        self.process.logfile_read = self.log
        self.process.expect_exact(PROMPT)
        self.banner = self.process.before

    def send(self, line: str) -> str:
        """Type a line, wait for the next prompt; returns what was printed in between."""
        self.process.send(line + "\r")
        self.process.expect_exact(PROMPT)
        return self.process.before

    def ask(self, message: str) -> tuple[str, re.Match]:
        """Send a message; returns the output and the reply's status line."""
        output = self.send(message)
        status = STATUS.search(output)
        assert status, output
        return output, status

    def stats(self) -> str:
        return self.send("/stats")

    def exit_with(self, keys: str) -> int:
        """Send keys that should end the chat; returns the exit code."""
        self.process.send(keys)
        self.process.expect(pexpect.EOF)
        self.process.close()
        assert "Traceback" not in self.log.getvalue(), self.log.getvalue()
        return self.process.exitstatus


@pytest.fixture()
def chat(tiny_pair, tmp_path: Path):
    """Start a chat with extra arguments: chat(*args, plain=True)."""
    started: list[Chat] = []

    def start(*args: str, plain: bool = True) -> Chat:
        started.append(Chat(tiny_pair, tmp_path, *args, plain=plain))
        return started[-1]

    yield start
    for one in started:
        if one.process.isalive():
            one.process.terminate(force=True)
        assert "Traceback" not in one.log.getvalue(), one.log.getvalue()


def test_two_turns_stream_in_colour_with_a_legend_and_status_lines(chat) -> None:
    session = chat("--max-tokens", "10", plain=False)
    assert "\x1b[36maligned model" in session.banner and "\x1b[33mbase model" in session.banner
    first, status = session.ask("Tell me a story")
    assert int(status.group(1)) == 10
    assert "\x1b[36m" in first  # tokens in the colours of their writers
    reply = COLOUR.sub("", first).split("\r\n")[1]
    assert reply.strip()
    second, _ = session.ask("And then?")
    assert COLOUR.sub("", second).split("\r\n")[1].strip()
    stats = session.stats()
    assert "session: 2 replies · 20 tokens" in stats
    # The second turn decoded only its new tokens into each context (the rest came from the cache).
    for model in ("base", "aligned"):
        new, total, reused = map(int, re.search(
            rf"{model} model: .* last prompt: (\d+) of (\d+) tokens decoded, (\d+) reused", stats).groups())
        assert new + reused == total and 0 < new < reused
    assert session.exit_with("/quit\r") == 0


def test_gamma_and_router_changes_show_in_stats(chat) -> None:
    session = chat("--router", "p", "--gamma", "0.3", "--max-tokens", "8")
    assert "γ 1 (router p)" in session.send("/gamma 1")
    _, status = session.ask("Hello")
    assert status.group(2) == "100"
    stats = session.stats()
    assert "router p · γ 1" in stats and re.search(r"last reply: 8 tokens · .* · 100% base", stats)
    assert "router aligned" in session.send("/router aligned")
    _, status = session.ask("Hello again")
    assert status.group(2) == "0"
    stats = session.stats()
    assert "router aligned · γ 1" in stats and re.search(r"last reply: 8 tokens · .* · 0% base", stats)
    assert "session: 2 replies · 16 tokens · 50% base" in stats
    assert "tok/s" in stats.split("base model:")[1]
    # Unknown commands and bad values: one line each, and the chat goes on.
    for line, message in (("/frobnicate", "unknown command /frobnicate"), ("/gamma lots", "needs a number"),
                          ("/temp -1", "/temp must be >= 0"), ("/router nope", "unknown router")):
        output = session.send(line)
        lines = [text for text in output.splitlines()[1:] if text.strip()]
        assert len(lines) == 1 and message in lines[0], output
    assert "router aligned · γ 1" in session.stats()
    assert "router h (γ 3)" in session.send("/router h")  # the entropy routers' own default, in nats
    assert session.exit_with("\x04") == 0  # Ctrl-D at an empty prompt


def test_ctrl_c_stops_a_reply_and_keeps_it(chat, tmp_path: Path) -> None:
    session = chat("--temp", "0", "--max-tokens", "2000", "-c", "2048")  # greedy: long replies

    def interrupted_reply(message: str) -> int:
        session.process.send(message + "\r")
        session.process.expect_exact(message + "\r\n")  # the terminal's echo
        session.process.expect(r"\w+ \w+ \w+")  # the reply has started
        session.process.sendintr()
        session.process.expect_exact(PROMPT)
        status = STATUS.search(session.process.before)
        assert status and "stopped" in session.process.before, session.process.before
        return int(status.group(1))

    written = interrupted_reply("Tell me a long story")
    assert 0 < written < 2000
    interrupted_reply("Tell me another one")  # the chat goes on
    session.send("/save chat.json")
    saved = json.loads((tmp_path / "chat.json").read_text(encoding="utf-8"))
    assert [e["user"] for e in saved["exchanges"]] == ["Tell me a long story", "Tell me another one"]
    stopped = saved["exchanges"][0]["reply"]
    assert stopped["finish_reason"] == "interrupted" and len(stopped["tokens"]) == written
    assert stopped["text"] and stopped["text"] == "".join(t["text"] for t in stopped["tokens"])
    assert session.exit_with("\x03") == 0  # Ctrl-C at an empty prompt


def test_undo_and_save_round_trip(chat, tmp_path: Path) -> None:
    from baco_local.chat import load_transcript

    session = chat("--max-tokens", "6", "--system", "Be brief.")
    assert not COLOUR.search(session.banner[session.banner.index("baco chat"):])  # --plain
    first, _ = session.ask("Première question ☕")
    session.ask("Second question")
    assert "dropped the last exchange ('Second question')" in session.send("/undo")
    assert "saved 1 exchange to" in session.send("/save chat.json")
    assert "(Markdown)" in session.send("/save chat.md")
    assert ".json or .md" in session.send("/save chat.txt")
    transcript = load_transcript(tmp_path / "chat.json")
    assert transcript.system == "Be brief." and len(transcript.exchanges) == 1
    exchange = transcript.exchanges[0]
    assert exchange.user == "Première question ☕"
    assert len(exchange.reply.sources) == len(exchange.reply.tokens) == 6
    assert exchange.reply.text.strip() in first  # what was shown is what was saved
    markdown = (tmp_path / "chat.md").read_text(encoding="utf-8")
    assert "## 1. User" in markdown and "Second question" not in markdown
    assert session.exit_with("/quit\r") == 0


def test_context_overflow_drops_old_turns_and_says_so_once(chat, tmp_path: Path) -> None:
    session = chat("-c", "128", "--max-tokens", "16", "--system", "You are a storyteller.")
    for i in range(7):
        session.ask(f"Tell me story number {i} please")
    log = session.log.getvalue()
    assert log.count("the conversation outgrew the context") == 1
    output = session.send("word " * 150)
    assert "shorten it or raise --ctx-size" in output and not STATUS.search(output)
    session.ask("A short one")  # still fine
    session.send("/save chat.json")
    saved = json.loads((tmp_path / "chat.json").read_text(encoding="utf-8"))
    assert saved["dropped"] > 0 and saved["system"] == "You are a storyteller." and len(saved["exchanges"]) == 8
    assert session.exit_with("/quit\r") == 0


def test_line_editing_history_and_ctrl_c_at_the_prompt(chat, tmp_path: Path) -> None:
    session = chat("--max-tokens", "4")
    session.ask("Remember me")
    session.process.send("half a line")
    session.process.expect_exact("half a line")
    session.process.sendintr()  # Ctrl-C with text typed: drop the line, stay
    session.process.expect_exact(PROMPT)
    session.ask("\x1b[A")  # arrow up: the previous line again
    session.send("/save chat.json")
    saved = json.loads((tmp_path / "chat.json").read_text(encoding="utf-8"))
    assert [e["user"] for e in saved["exchanges"]] == ["Remember me", "Remember me"]
    assert session.exit_with("\x04") == 0
    history = (tmp_path / "state" / "baco" / "chat_history").read_text(encoding="utf-8")
    assert "Remember me" in history


def piped_chat(tmp_path: Path, *args: str, lines: str, **env: str) -> subprocess.CompletedProcess:
    """`baco chat` with its input from a pipe (no terminal anywhere)."""
    return subprocess.run([sys.executable, "-m", "baco_local", "chat", "--threads", "1", *args],
                          input=lines, capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "XDG_STATE_HOME": str(tmp_path), **env})


def test_piped_input_prints_plain_replies(tiny_pair, tmp_path: Path) -> None:
    base, aligned = tiny_pair
    result = piped_chat(tmp_path, "--base", str(base), "--aligned", str(aligned), "--max-tokens", "5",
                        lines="Hello\n/gamma 0.5\nBye\n")
    assert result.returncode == 0, result.stderr
    assert "\x1b[" not in result.stdout + result.stderr
    assert len(result.stdout.splitlines()) == 2  # the two replies, one line each
    assert len(STATUS.findall(result.stderr)) == 2 and "γ 0.5" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_pair_from_the_registry_with_its_defaults(tiny_pair, tmp_path: Path) -> None:
    base, aligned = tiny_pair
    registry = tmp_path / "models.toml"
    registry.write_text(f'[pairs.tiny]\nrouter = "p"\ngamma = 0.5\n[pairs.tiny.base]\npath = "{base}"\n'
                        f'[pairs.tiny.aligned]\npath = "{aligned}"\n', encoding="utf-8")
    result = piped_chat(tmp_path, "--pair", "tiny", "--max-tokens", "5", lines="Hello\n/stats\n",
                        BACO_MODELS=str(registry))
    assert result.returncode == 0, result.stderr
    assert "baco chat · tiny · router p · γ 0.5" in result.stderr and "session: 1 reply" in result.stderr


def test_missing_models_fail_cleanly(tiny_pair, tmp_path: Path) -> None:
    _, aligned = tiny_pair
    result = piped_chat(tmp_path, "--base", str(tmp_path / "nope.gguf"), "--aligned", str(aligned), lines="")
    assert result.returncode == 2 and result.stderr.startswith("Error:") and "nope.gguf" in result.stderr
    assert "Traceback" not in result.stderr


def test_ollama_habits_blocks_load_and_bye(tiny_pair, tmp_path: Path) -> None:
    base, aligned = tiny_pair
    saved = tmp_path / "chat.json"
    lines = "\n".join(['"""Tell me', "/a story", 'about the sea"""', f"/save {saved}", "/reset", f"/load {saved}",
                       "/stats", "/bye", "Not sent"]) + "\n"
    result = piped_chat(tmp_path, "--base", str(base), "--aligned", str(aligned), "--max-tokens", "5", lines=lines)
    assert result.returncode == 0, result.stderr
    document = json.loads(saved.read_text(encoding="utf-8"))
    assert [e["user"] for e in document["exchanges"]] == ["Tell me\n/a story\nabout the sea"]
    assert f"saved 1 exchange to {saved} (JSON)" in result.stderr
    assert f"loaded 1 exchange from {saved}" in result.stderr
    assert "1 of 1 exchanges in the prompt" in result.stderr  # /stats after /load
    assert len(result.stdout.splitlines()) == 1  # one reply: what follows /bye is not sent
    assert "unknown command" not in result.stderr  # "/a story" inside the block is text


def test_slash_command_errors_name_the_command(tiny_pair, tmp_path: Path) -> None:
    base, aligned = tiny_pair
    result = piped_chat(tmp_path, "--base", str(base), "--aligned", str(aligned), lines="/gamma 9\n/temp -2\n")
    assert result.returncode == 0, result.stderr
    assert "/gamma for router 'p-punc' is a probability in [0, 1], got 9.0" in result.stderr
    assert "/temp must be >= 0" in result.stderr and "--gamma" not in result.stderr and "--temp" not in result.stderr


def test_a_block_on_a_terminal_prompts_for_more_and_ctrl_c_drops_it(chat) -> None:
    session = chat()
    session.process.send('"""\r')
    session.process.expect_exact("... ")
    session.process.send("first line\r")
    session.process.expect_exact("... ")
    output = session.send('second line"""')
    assert STATUS.search(output), output  # one message, answered once
    session.process.send('"""dropped\r')
    session.process.expect_exact("... ")
    session.process.send("\x03")  # Ctrl-C inside the block: the block is dropped, the chat goes on
    session.process.expect_exact(PROMPT)
    assert "session: 1 reply ·" in session.stats()
    assert session.exit_with("/bye\r") == 0
