"""The chat library (baco_local.chat) on the generated tiny pair: turns, cache reuse, stopping,
undo, context overflow, slash commands, statistics and saved transcripts. No terminal here."""

from __future__ import annotations

import json
from contextlib import closing
from itertools import islice
from pathlib import Path

import pytest

from baco_local import ALIGNED, BASE, Engine, GenerationSettings, Message, ModelPair, PairSpec, get_router
from baco_local.chat import (ChatSession, ContextBudget, as_message, is_command, load_transcript, read_block,
                             run_command, save_transcript, starts_block)
from baco_local.chat.session import _written
from baco_local.chat.window import window_start
from baco_local.errors import ContextOverflowError, OutputFileError, UsageError
from baco_local.engine.loop import Sample
from baco_local.engine.sampling import SamplingParams

SIDES = (BASE, ALIGNED)


@pytest.fixture(scope="module")
def pair(tiny_pair):
    with closing(ModelPair(PairSpec(*tiny_pair))) as loaded:
        yield loaded


def make_session(pair, *, ctx_size=256, max_tokens=12, router="p-punc", gamma=0.3, system=None, temp=0.8):
    engine = Engine(pair, ctx_size=ctx_size, threads=1)  # one thread: steady on a busy CPU
    settings = GenerationSettings(get_router(router), gamma, SamplingParams(temperature=temp), max_tokens)
    return ChatSession(engine, settings, system=system)


def say(session: ChatSession, text: str):
    """One whole turn; returns the exchange."""
    reply = session.ask(text)
    for _ in reply:
        pass
    return reply.finish()


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def test_second_turn_decodes_only_the_new_tokens(pair) -> None:
    session = make_session(pair, system="You tell stories.")
    first = say(session, "Tell me a story about the cat")
    assert first.reply.text and len(first.reply.tokens) == 12
    held = {side: list(session.engine.held[side]) for side in SIDES}
    prompts1 = {BASE: pair.base_prompt(session.messages()[:-1]), ALIGNED: pair.aligned_prompt(session.messages()[:-1])}
    before = {side: session.engine.contexts[side].n_evaluated for side in SIDES}

    reply = session.ask("And then what happened?")
    next(iter(reply))  # the first token arrives right after both prompts were decoded
    decoded = {side: session.engine.contexts[side].n_evaluated - before[side] for side in SIDES}
    for _ in reply:
        pass
    second = reply.finish()

    conversation = session.messages()[:-1]  # system, user, assistant (first reply), user
    assert conversation[2] == Message("assistant", first.reply.text)
    prompts2 = {BASE: pair.base_prompt(conversation), ALIGNED: pair.aligned_prompt(conversation)}
    for side in SIDES:
        reused = common_prefix(held[side], prompts2[side])
        # The whole first prompt and every decoded reply token stayed in the cache...
        assert reused == len(held[side]) >= len(prompts1[side]) + len(first.reply.tokens) - 1
        # ...so the second turn decoded only what came after it.
        assert decoded[side] == len(prompts2[side]) - reused
        assert decoded[side] < len(prompts2[side]) - len(prompts1[side])
        assert session.stats.last.prompt_decoded[side] == decoded[side]
        assert session.stats.last.prompt_tokens[side] == len(prompts2[side])
    assert second.reply.text and session.engine.held[BASE][:len(prompts2[BASE])] == prompts2[BASE]

    # A fresh engine has to decode the whole conversation.
    fresh = Engine(pair, ctx_size=256, threads=1)
    generation = fresh.generate(conversation, 1, session.settings)
    next(iter(generation))
    assert {side: fresh.contexts[side].n_evaluated for side in SIDES} == {s: len(prompts2[s]) for s in SIDES}
    fresh.close()


def test_both_models_see_the_conversation_in_their_own_format(pair) -> None:
    session = make_session(pair, system="Be brief.")
    first = say(session, "Hello there")
    messages = session.messages("Tell me more")  # what the next turn sends
    assert [m.role for m in messages] == ["system", "user", "assistant", "user"]
    transcript = pair.token_texts(pair.base_prompt(messages))
    assert transcript.startswith("Be brief.\n\nUser: Hello there\nAssistant:\n" + first.reply.text)
    assert transcript.endswith("User: Tell me more\nAssistant:\n")
    chat = b"".join(pair.aligned.piece(t, special=True) for t in pair.aligned_prompt(messages)).decode()
    assert "<start_of_turn>model\n" + first.reply.text.strip() + "<end_of_turn>" in chat
    assert chat.endswith("<start_of_turn>user\nTell me more<end_of_turn>\n<start_of_turn>model\n")


def test_a_stopped_reply_keeps_what_was_written(pair) -> None:
    session = make_session(pair, max_tokens=40)
    reply = session.ask("Tell me a story")
    events = list(islice(reply, 5))
    exchange = reply.finish()
    assert reply.finish() is exchange  # once only
    assert exchange.reply.finish_reason == "interrupted"
    assert exchange.reply.text == "".join(e.text for e in events)
    assert exchange.reply.sources == "".join(e.side for e in events)
    assert len(exchange.reply.tokens) == 5 and len(session.exchanges) == 1
    assert session.stats.last.tokens == 5
    # The engine stays consistent: the next turn works and still reuses the cache.
    held = {side: list(session.engine.held[side]) for side in SIDES}
    say(session, "Go on")
    prompt = pair.base_prompt(session.messages()[:-1])
    assert common_prefix(held[BASE], prompt) >= len(pair.base_prompt([Message("user", "Tell me a story")]))


def test_written_keeps_only_the_tokens_whose_events_were_seen() -> None:
    sample = Sample(0, 0, "One day the cat", [10, 11, 12, 13], "ABBA", "interrupted",
                    ("One", " day", " the", " cat"))
    tokens, sources, pieces, text = _written(2, sample)
    assert (tokens, sources, pieces, text) == ((10, 11), "AB", ("One", " day"), "One day")
    finished = Sample(0, 0, "One day.", [10, 11, 12], "ABA", "stop", ("One", " day", "."))
    tokens, sources, pieces, text = _written(4, finished)  # + end-of-generation
    assert (tokens, pieces, text) == ((10, 11, 12), ("One", " day", "."), "One day.")


def test_undo_and_reset(pair) -> None:
    session = make_session(pair)
    say(session, "first")
    say(session, "second")
    assert session.undo().user == "second"
    assert [e.user for e in session.exchanges] == ["first"]
    session.reset()
    assert session.exchanges == [] and session.messages() == []
    with pytest.raises(UsageError, match="nothing to undo"):
        session.undo()
    with pytest.raises(UsageError, match="empty"):
        session.ask("   ")


def test_overflow_drops_the_oldest_exchanges_and_keeps_the_system_prompt(pair) -> None:
    session = make_session(pair, ctx_size=128, max_tokens=16, system="You are a storyteller.")
    notices = []
    for i in range(8):
        reply = session.ask(f"Tell me story number {i} please")
        notices.append(reply.notice)
        for _ in reply:
            pass
        reply.finish()
        messages = session.messages()
        assert messages[0] == Message("system", "You are a storyteller.")
        assert session.prompt_length(messages[:-1]) + 16 <= 128
    assert session.dropped > 0 and len(session.exchanges) == 8
    assert sum(n is not None for n in notices) == 1  # told once
    assert "left out" in next(n for n in notices if n)
    # A message too long even alone is refused and changes nothing.
    dropped, count = session.dropped, len(session.exchanges)
    with pytest.raises(ContextOverflowError, match="raise --ctx-size"):
        session.ask("word " * 150)
    assert (session.dropped, len(session.exchanges)) == (dropped, count)
    # Undoing into the left-out part keeps the window valid.
    for _ in range(8):
        session.undo()
    assert session.dropped == 0 and session.messages() == [Message("system", "You are a storyteller.")]


def test_window_start_frees_slack_when_it_has_to_cut() -> None:
    lengths = [100, 80, 60, 40, 20]  # prompt length when exchanges i.. are kept; 4 = none
    budget = ContextBudget(ctx_size=100, reply_room=20, slack=25)
    assert window_start(lambda i: [70, 60, 50][i], 0, 2, budget) == 0  # fits: nothing dropped
    assert window_start(lambda i: lengths[i], 0, 4, budget) == 3  # 80 fits at 1..; 55 needs index 3
    assert window_start(lambda i: lengths[i], 3, 4, budget) == 3
    assert window_start(lambda i: [100, 75, 70][i], 0, 2, budget) == 1  # slack unreachable: strict
    with pytest.raises(ContextOverflowError):
        window_start(lambda i: 90, 0, 3, budget)
    assert ContextBudget.of(128, 512) == ContextBudget(128, 64, 32)
    assert ContextBudget.of(4096, 256).reply_room == 256


def test_commands_change_the_next_reply(pair) -> None:
    session = make_session(pair, router="p", gamma=0.3)
    assert run_command(session, "/gamma 1").lines == ("γ 1 (router p)",)
    assert say(session, "Hello").reply.sources == "B" * 12  # γ = 1: the base model writes everything
    assert session.stats.last.base_share == 1.0
    run_command(session, "/router aligned")
    exchange = say(session, "Hello again")
    assert exchange.reply.sources == "A" * 12 and exchange.reply.router == "aligned"
    assert session.stats.base_share == pytest.approx(0.5)
    stats = "\n".join(run_command(session, "/stats").lines)
    assert "router aligned · γ 1" in stats and "last reply: 12 tokens" in stats and "0% base" in stats
    assert "session: 2 replies · 24 tokens · 50% base" in stats
    assert "base model:" in stats and "aligned model:" in stats and "tok/s" in stats
    assert "concurrency off" in stats and "threads base/aligned 1/1 in turn" in stats
    run_command(session, "/temp 0")
    assert session.settings.sampling.temperature == 0
    run_command(session, "/system Be kind.")
    assert session.messages()[0] == Message("system", "Be kind.")
    run_command(session, "/system")
    assert session.system is None


@pytest.mark.parametrize("line, fragment", [
    ("/nope", "unknown command /nope"),
    ("/gamma abc", "needs a number"),
    ("/gamma 1.5", "/gamma for router 'p-punc' is a probability in [0, 1]"),
    ("/router nonsense", "unknown router"),
    ("/temp -1", "/temp must be >= 0"),
    ("/save", ".json or .md"),
    ("/save notes.txt", ".json or .md"),
    ("/undo", "nothing to undo"),
    ("/load", "/load needs a .json file"),
    ("/load notes.md", "/load reads the .json files"),
    ("/load missing.json", "cannot read chat transcript"),
])
def test_bad_commands_raise_one_line_usage_errors(pair, line: str, fragment: str) -> None:
    session = make_session(pair)
    before = session.settings
    with pytest.raises(UsageError) as caught:
        run_command(session, line)
    assert fragment in str(caught.value) and "\n" not in str(caught.value)
    assert "--" not in str(caught.value)  # the slash command is named, never a command-line flag
    assert session.settings == before


def test_a_gamma_that_does_not_suit_the_router_names_the_slash_command(pair) -> None:
    session = make_session(pair, router="h", gamma=3.0)
    with pytest.raises(UsageError, match=r"^/gamma for router 'h' is an entropy in nats \(>= 0\), got -1"):
        run_command(session, "/gamma -1")
    run_command(session, "/router p")
    with pytest.raises(UsageError, match=r"^/gamma for router 'p' is a probability in \[0, 1\], got 3"):
        run_command(session, "/gamma 3")
    assert (session.settings.router.name, session.settings.gamma) == ("p", 0.3)


def test_switching_router_kind_switches_to_that_kind_of_gamma(pair) -> None:
    """/router h from p-punc at 0.3 runs h at its own default in nats, not at 0.3 nats; each kind
    keeps the last /gamma given for it; routers without γ leave it as it is."""
    session = make_session(pair)
    steps = [("/router h", "h", 3.0), ("/gamma 2", "h", 2.0), ("/router p", "p", 0.3), ("/gamma 0.5", "p", 0.5),
             ("/router h-punc", "h-punc", 2.0), ("/router punc", "punc", 2.0), ("/router p-fc", "p-fc", 0.5)]
    for line, router, gamma in steps:
        run_command(session, line)
        assert (session.settings.router.name, session.settings.gamma) == (router, gamma), line
    own = ChatSession(session.engine, session.settings, gamma_defaults=(0.4, 1.25))  # a pair's defaults
    run_command(own, "/router h")
    assert own.settings.gamma == 1.25


def test_help_quit_and_slash_escapes(pair) -> None:
    session = make_session(pair)
    help_text = "\n".join(run_command(session, "/help").lines)
    for name in ("/router", "/gamma", "/temp", "/system", "/reset", "/undo", "/save", "/stats", "/help", "/quit"):
        assert name in help_text
    assert run_command(session, "/quit").quit and not run_command(session, "/help").quit
    assert run_command(session, "/bye").quit  # Ollama's way out
    assert is_command("/stats") and not is_command("//etc") and not is_command("hello")
    assert as_message("//etc/hosts") == "/etc/hosts" and as_message("hi") == "hi"


def lines_from(*lines: str):
    """A read_line callback giving these lines, then None (the end of input)."""
    feed = iter(lines)
    return lambda: next(feed, None)


def test_triple_quote_blocks_join_lines_into_one_message() -> None:
    assert starts_block('"""') and starts_block('  """Hello') and not starts_block('say """')
    assert read_block('"""', lines_from("first line", "", "/not a command", 'last"""')) == \
        "first line\n\n/not a command\nlast"
    assert read_block('"""Dear you,', lines_from("  indented", '"""')) == "Dear you,\n  indented"
    assert read_block('"""one line"""', lines_from()) == "one line"
    assert read_block('"""never closed', lines_from("more")) is None  # the input ended (or Ctrl-C)


def test_load_continues_a_saved_conversation(pair, tmp_path: Path) -> None:
    session = make_session(pair, system="Be brief.")
    say(session, "Tell me a story")
    path = tmp_path / "chat.json"
    assert run_command(session, f"/save {path}").lines == (f"saved 1 exchange to {path} (JSON)",)
    say(session, "And another")
    assert run_command(session, f"/save {path}").lines == (f"saved 2 exchanges to {path} (JSON)",)

    other = make_session(pair)
    (message,) = run_command(other, f"/load {path}").lines
    assert message.startswith(f"loaded 2 exchanges from {path} (with its system prompt)")
    assert other.exchanges == session.exchanges and other.system == "Be brief."
    assert other.messages("Go on") == session.messages("Go on")
    exchange = say(other, "Go on")  # the conversation goes on, in both models' prompts
    assert exchange.reply.tokens and len(other.exchanges) == 3


def test_save_round_trip_and_markdown(pair, tmp_path: Path) -> None:
    session = make_session(pair, system="Be brief.")
    say(session, "Tell me a story")
    say(session, "café ☕ again")
    path = tmp_path / "chat.json"
    assert save_transcript(session, path) == "JSON"
    loaded = load_transcript(path)
    assert loaded.exchanges == session.exchanges and loaded.system == "Be brief." and loaded.dropped == 0
    document = json.loads(path.read_text(encoding="utf-8"))
    tokens = document["exchanges"][0]["reply"]["tokens"]
    assert {t["source"] for t in tokens} <= {"A", "B"}
    assert "".join(t["text"] for t in tokens) == document["exchanges"][0]["reply"]["text"]
    assert document["exchanges"][1]["user"] == "café ☕ again"

    markdown = tmp_path / "chat.md"
    assert save_transcript(session, markdown) == "Markdown"
    text = markdown.read_text(encoding="utf-8")
    assert "## 1. User" in text and "## 2. Assistant" in text and "café ☕ again" in text
    base_run = next(run for side, run in session.exchanges[0].reply.runs() if side == BASE)
    assert f"<mark>{base_run.strip()}</mark>" in text.replace("<mark> ", "<mark>")

    with pytest.raises(OutputFileError, match="cannot write"):
        save_transcript(session, tmp_path / "missing" / "chat.json")
    (tmp_path / "bad.json").write_text("{}", encoding="utf-8")
    with pytest.raises(UsageError, match="cannot read chat transcript"):
        load_transcript(tmp_path / "bad.json")
