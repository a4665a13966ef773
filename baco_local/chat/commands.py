"""Slash commands: parse a ``/name argument`` line and apply it to a ChatSession; and Ollama's
triple-quote blocks, which send several lines as one message.

A command returns what to tell the user (lines of text) and whether to end the chat; a bad
command or value raises UsageError with a one-line message that names the slash command, and the
chat goes on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from ..engine.routers import ROUTERS
from .session import ChatSession
from .transcript import load_transcript, save_transcript

PREFIX = "/"
BLOCK = '"""'  # starts and ends a message of several lines
# The library's messages name the command-line flag; in the chat the same value came from these.
_SLASH_FOR_FLAG = {"--gamma": "/gamma", "--temp": "/temp"}


@dataclass(frozen=True)
class CommandResult:
    """What a command has to say, and whether the chat ends."""

    lines: tuple[str, ...] = ()
    quit: bool = False


@dataclass(frozen=True)
class Command:
    """One slash command."""

    name: str
    usage: str
    summary: str
    run: Callable[[ChatSession, str], CommandResult]


def is_command(line: str) -> bool:
    """A line starting with one slash (``//text`` sends ``/text`` as a message)."""
    return line.startswith(PREFIX) and not line.startswith(PREFIX * 2)


def as_message(line: str) -> str:
    """The message a non-command line sends (``//x`` becomes ``/x``)."""
    return line[1:] if line.startswith(PREFIX * 2) else line


def starts_block(line: str) -> bool:
    """A line that opens a triple-quote block."""
    return line.lstrip().startswith(BLOCK)


def read_block(first: str, read_line: Callable[[], str | None]) -> str | None:
    """The message of a triple-quote block opened by ``first``: its lines up to the one that ends
    with the quotes (which may be ``first`` itself), without them; None when ``read_line`` gives
    up first (end of input, Ctrl-C)."""
    line: str | None = first.lstrip()[len(BLOCK):]
    lines: list[str] = []
    while not line.rstrip().endswith(BLOCK):
        lines.append(line)
        line = read_line()
        if line is None:
            return None
    lines.append(line.rstrip()[:-len(BLOCK)])
    return "\n".join(lines).strip("\n")


def run_command(session: ChatSession, line: str) -> CommandResult:
    """Apply one command line to the session."""
    name, _, argument = line.strip()[len(PREFIX):].partition(" ")
    command = COMMANDS.get(name.lower())
    if command is None:
        raise UsageError(f"unknown command /{name}; /help lists the commands")
    try:
        return command.run(session, argument.strip())
    except UsageError as exc:
        raise _in_chat_terms(exc) from None


def _in_chat_terms(exc: UsageError) -> UsageError:
    """The error with the flag it names replaced by the slash command that set the value."""
    message = str(exc)
    for flag, slash in _SLASH_FOR_FLAG.items():
        if message.startswith(flag):
            return UsageError(slash + message[len(flag):])
    return exc


def _say(*lines: str) -> CommandResult:
    return CommandResult(tuple(lines))


def _count(n: int, noun: str) -> str:
    """``1 exchange``, ``2 exchanges``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _number(argument: str, what: str) -> float:
    try:
        return float(argument)
    except ValueError:
        raise UsageError(f"{what} needs a number, got '{argument}'") from None


def _router(session: ChatSession, argument: str) -> CommandResult:
    if not argument:
        return _say(f"router {session.settings.router.name}; routers: {', '.join(ROUTERS)}")
    session.set_router(argument)
    return _say(f"router {session.settings.router.name} (γ {session.settings.gamma:g})")


def _gamma(session: ChatSession, argument: str) -> CommandResult:
    if not argument:
        return _say(f"γ {session.settings.gamma:g} (router {session.settings.router.name})")
    session.set_gamma(_number(argument, "/gamma"))
    return _say(f"γ {session.settings.gamma:g} (router {session.settings.router.name})")


def _temp(session: ChatSession, argument: str) -> CommandResult:
    if not argument:
        return _say(f"temperature {session.settings.sampling.temperature:g}")
    session.set_temperature(_number(argument, "/temp"))
    return _say(f"temperature {session.settings.sampling.temperature:g}")


def _system(session: ChatSession, argument: str) -> CommandResult:
    session.set_system(argument or None)
    return _say("system prompt set" if argument else "system prompt removed")


def _reset(session: ChatSession, _argument: str) -> CommandResult:
    session.reset()
    return _say("conversation cleared")


def _undo(session: ChatSession, _argument: str) -> CommandResult:
    exchange = session.undo()
    preview = exchange.user if len(exchange.user) <= 40 else exchange.user[:39] + "…"
    return _say(f"dropped the last exchange ({preview!r})")


def _save(session: ChatSession, argument: str) -> CommandResult:
    if not argument:
        raise UsageError("/save needs a file name ending in .json or .md")
    path = Path(argument).expanduser()
    kind = save_transcript(session, path)
    return _say(f"saved {_count(len(session.exchanges), 'exchange')} to {path} ({kind})")


def _load(session: ChatSession, argument: str) -> CommandResult:
    if not argument:
        raise UsageError("/load needs a .json file written by /save")
    path = Path(argument).expanduser()
    if path.suffix.lower() != ".json":
        raise UsageError(f"/load reads the .json files /save writes, not '{path.name}'")
    transcript = load_transcript(path)
    session.load(transcript)
    system = "with its system prompt" if transcript.system else "without a system prompt"
    return _say(f"loaded {_count(len(transcript.exchanges), 'exchange')} from {path} ({system}); "
                "the settings stay as they are")


def _stats(session: ChatSession, _argument: str) -> CommandResult:
    return _say(session.describe_settings(), *session.stats.lines(), session.context_usage(),
                session.engine.concurrency.summary())


def _help(_session: ChatSession, _argument: str) -> CommandResult:
    width = max(len(c.usage) for c in COMMANDS.values())
    return _say(*(f"{c.usage.ljust(width)}  {c.summary}" for c in COMMANDS.values()),
                f"{BLOCK} starts and ends a message of several lines; //text sends '/text'.",
                "Ctrl-C stops a reply; Ctrl-C or Ctrl-D at an empty prompt quits.")


def _quit(_session: ChatSession, _argument: str) -> CommandResult:
    return CommandResult(quit=True)


COMMANDS: dict[str, Command] = {c.name: c for c in (
    Command("router", "/router NAME", "route with another router (no name: list them)", _router),
    Command("gamma", "/gamma X", "set the router threshold γ", _gamma),
    Command("temp", "/temp X", "set the sampling temperature (0 = greedy)", _temp),
    Command("system", "/system TEXT", "set the system prompt (no text: remove it)", _system),
    Command("reset", "/reset", "start the conversation over", _reset),
    Command("undo", "/undo", "drop the last exchange", _undo),
    Command("save", "/save FILE", "save the conversation with per-token sources (.json or .md)", _save),
    Command("load", "/load FILE", "go on with a conversation saved with /save FILE.json", _load),
    Command("stats", "/stats", "settings, tokens/s per model, base share of the last reply and session", _stats),
    Command("help", "/help", "this list", _help),
    Command("quit", "/quit", "leave the chat", _quit),
    Command("bye", "/bye", "leave the chat (as in Ollama)", _quit),
)}
