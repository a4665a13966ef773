"""Chatting with a base/aligned pair, as a library (the terminal lives in ``cli/chat_cmd.py``)::

    session = ChatSession(engine, settings, system="Be brief.")
    reply = session.ask("Tell me a story")
    for event in reply:               # TokenEvent: token id, side "A"/"B", newly completed text
        ...                           # stopping early is fine: what was written is kept
    exchange = reply.finish()         # joins the conversation; session.stats.last has the numbers
    run_command(session, "/gamma 0.5")
"""

from .commands import COMMANDS, CommandResult, as_message, is_command, read_block, run_command, starts_block
from .session import ChatSession, Exchange, PendingReply, Reply
from .stats import DecodeWork, ReplyStats, SessionStats
from .transcript import Transcript, load_transcript, save_transcript
from .window import ContextBudget

__all__ = [
    "COMMANDS", "ChatSession", "CommandResult", "ContextBudget", "DecodeWork", "Exchange", "PendingReply",
    "Reply", "ReplyStats", "SessionStats", "Transcript", "as_message", "is_command", "load_transcript",
    "read_block", "run_command", "save_transcript", "starts_block",
]
