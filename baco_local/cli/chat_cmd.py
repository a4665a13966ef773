"""``baco chat``: an interactive terminal where a base and an aligned model write the replies together.

The conversation and the slash commands are :mod:`baco_local.chat`; this module is the terminal:
line editing and history (readline, history in ``$XDG_STATE_HOME/baco/chat_history``), replies
streamed token by token in the writing model's colour (stdout), and everything else (legend, status
lines, command output) on stderr. Ctrl-C stops a reply; at an empty prompt it quits, like Ctrl-D.
"""

from __future__ import annotations

import os
import signal
import sys
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from types import FrameType, ModuleType
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from ..chat import ChatSession, as_message, is_command, read_block, run_command, starts_block
from ..errors import BacoError
from ..engine.loop import TokenEvent
from ..engine.routers import ALIGNED, BASE
from . import options as opt
from .console import show_progress, use_plain
from .setup import open_engine, option_text, prepare_run, resolve_run, settle_seed

STYLES = {ALIGNED: "cyan", BASE: "yellow"}
PROMPT = ">>> "
CONTINUATION_PROMPT = "... "  # inside a triple-quote block
HISTORY_LENGTH = 1000


CHAT_HELPS = {
    "draft": "Fixed draft length K for draft-and-verify (default: adaptive 1..16).",
    "seed": "Random seed (-1 = random, shown at the start); reply k of the chat uses seed + k.",
    "ctx_size": "Context window (system prompt + conversation + reply); older exchanges are left out beyond it.",
    "max_tokens": "Most tokens per reply.",
}


ChatSystemOpt = opt.with_help(opt.SystemOpt, "System prompt (change it with /system).")


@opt.with_run_options(max_tokens=512, helps=CHAT_HELPS)
def chat_command(
    system: ChatSystemOpt = None,
    plain: Annotated[bool, typer.Option("--plain", help="No colours (the default when stdout is not a "
                                        "terminal).")] = False,
    *,
    run: opt.RunOptions,
) -> None:
    """Chat with a base/aligned pair, watching which model writes each token."""
    if plain:
        use_plain()  # also the memory estimate, notes and error lines
    plan, settings = prepare_run(run)
    system = option_text(run, system, "--system")
    resolved = resolve_run(plan, run)
    settings = settle_seed(settings, run)
    out, info = _console(plain, stderr=False), _console(plain, stderr=True)
    with _loading(info):
        engine = open_engine(resolved, run, n_seq=1)
    try:
        session = ChatSession(engine, settings, system=system,
                              gamma_defaults=(plan.default_gamma, plan.default_entropy_gamma))
        ChatTerminal(session, out, info).run(resolved.label)
    finally:
        engine.close()
        engine.pair.close()


def _console(plain: bool, *, stderr: bool) -> Console:
    return Console(stderr=stderr, highlight=False, markup=False, soft_wrap=True,
                   color_system=None if plain else "auto")


def _loading(info: Console) -> AbstractContextManager[object]:
    """A spinner while the models load (on a terminal, unless --plain or -q)."""
    return info.status("loading the models…") if show_progress() and info.color_system else nullcontext()


class Interrupts:
    """SIGINT handling: while a reply streams, the first Ctrl-C asks it to stop (a second one raises
    KeyboardInterrupt); otherwise Ctrl-C raises KeyboardInterrupt, noting what was typed at the prompt."""

    def __init__(self, readline: ModuleType | None) -> None:
        self._readline = readline
        self.replying = False
        self.stop_requested = False
        self.typed = ""  # the prompt's text when Ctrl-C came

    def __call__(self, _signum: int, _frame: FrameType | None) -> None:
        if self.replying and not self.stop_requested:
            self.stop_requested = True
            return
        self.typed = self._readline.get_line_buffer() if self._readline else ""
        raise KeyboardInterrupt

    def start_reply(self) -> None:
        self.replying, self.stop_requested = True, False

    def end_reply(self) -> None:
        self.replying = False


class ChatTerminal:
    """The read-reply loop on a terminal (or on pipes, without colour and line editing)."""

    def __init__(self, session: ChatSession, out: Console, info: Console) -> None:
        self.session = session
        self.out = out
        self.info = info
        self.interactive = sys.stdin.isatty()
        self.readline = _import_readline() if self.interactive else None
        self.interrupts = Interrupts(self.readline)

    def run(self, label: str) -> None:
        """Chat until /quit, Ctrl-D, or Ctrl-C at an empty prompt."""
        self._banner(label)
        history = History(self.readline)
        previous = signal.signal(signal.SIGINT, self.interrupts)
        try:
            while (line := self._read(PROMPT)) is not None:
                if starts_block(line):
                    self._send_block(line)
                elif not self._handle(line):
                    break
        finally:
            signal.signal(signal.SIGINT, previous)
            problem = history.save()
            if problem:
                self._say(problem, "dim")

    def _banner(self, label: str) -> None:
        self._say(f"baco chat · {label} · {self.session.describe_settings()}", "bold")
        legend = Text()
        if self.out.color_system is not None:
            legend.append("aligned model", STYLES[ALIGNED]).append("  ").append("base model", STYLES[BASE]).append("  ")
        legend.append('/help for commands, """ for several lines, Ctrl-D to quit', "dim")
        self.info.print(legend)

    def _read(self, prompt: str, *, in_block: bool = False) -> str | None:
        """One input line; None to quit (Ctrl-D, or Ctrl-C at an empty prompt), or in a triple-quote block
        to abandon it (Ctrl-C, Ctrl-D)."""
        try:
            return input(prompt if self.interactive else "")
        except (EOFError, KeyboardInterrupt) as exc:
            if self.interactive:
                self.out.print()  # end the prompt's line
            dropped_a_line = isinstance(exc, KeyboardInterrupt) and bool(self.interrupts.typed.strip())
            return "" if dropped_a_line and not in_block else None

    def _send_block(self, first: str) -> None:
        """Read the rest of a triple-quote block and send it as one message (a dropped block sends nothing)."""
        message = read_block(first, lambda: self._read(CONTINUATION_PROMPT, in_block=True))
        if message is not None:
            self._handle(message, literal=True)

    def _handle(self, line: str, *, literal: bool = False) -> bool:
        """Run a command or send a message (``literal``: a message even if it starts with /); False ends the chat."""
        try:
            if is_command(line) and not literal:
                result = run_command(self.session, line)
                for text in result.lines:
                    self._say(text)
                return not result.quit
            if line.strip():
                self._reply(line if literal else as_message(line))
        except BacoError as exc:
            self._say(str(exc), "red")
        except KeyboardInterrupt:
            self._say("interrupted", "dim")
        return True

    def _reply(self, message: str) -> None:
        """Stream one reply; Ctrl-C stops it and keeps what was written."""
        pending = self.session.ask(message)
        if pending.notice:
            self._say(pending.notice, "yellow")
        self.interrupts.start_reply()
        try:
            for event in pending:
                self._write(event)
                if self.interrupts.stop_requested:
                    break
        except KeyboardInterrupt:
            pass
        finally:
            pending.finish()
            self.interrupts.end_reply()
            self.out.print()
        stats = self.session.stats.last
        if stats is not None:
            self._say(stats.summary(), "dim")

    def _write(self, event: TokenEvent) -> None:
        """Print the text the event made visible, each part in the colour of the model that wrote it
        (with stop strings the text lags behind, so it can be earlier tokens')."""
        for side, text in event.spans:
            self.out.print(Text(text, STYLES[side]), end="")

    def _say(self, text: str, style: str = "") -> None:
        self.info.print(Text(text, style))


class History:
    """Input history across chats, in ``$XDG_STATE_HOME/baco/chat_history`` (readline only)."""

    def __init__(self, readline: ModuleType | None) -> None:
        self.readline = readline
        self.path = history_path()
        if readline is None:
            return
        readline.set_history_length(HISTORY_LENGTH)
        try:
            readline.read_history_file(self.path)
        except OSError:  # none yet, or unreadable: start empty
            pass

    def save(self) -> str | None:
        """Write the history; a one-line problem if that failed."""
        if self.readline is None:
            return None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.readline.write_history_file(self.path)
        except OSError as exc:
            return f"input history not saved to {self.path}: {exc.strerror or exc}"
        return None


def history_path() -> Path:
    """Where the input history lives."""
    state = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state).expanduser() / "baco" / "chat_history"


def _import_readline() -> ModuleType | None:
    """GNU readline (or libedit) for line editing and history, where Python has it."""
    try:
        import readline
    except ImportError:  # e.g. Windows
        return None
    return readline
