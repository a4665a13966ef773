"""The word-boundary rule: exact cases on crafted pieces, then real generations of non-ASCII text
on tiny pairs of both tokenizer families (byte-level BPE and SentencePiece with byte fallback)."""

from __future__ import annotations

import codecs
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from baco_local.runs.prompt_file import id_key
from tiny_unicode import write_unicode_pair

from baco_local import Engine, GenerationSettings, Message, ModelPair, PairSpec, get_router
from baco_local.engine.loop import DraftPolicy, Sample
from baco_local.engine.sampling import SamplingParams
from baco_local.engine.vocab import boundary_between, build_token_classes

ZWJ = "\u200d"

# (text so far, the token's bytes, whether the token may begin a new word)
BOUNDARY_CASES = [
    # one character split across tokens (byte-level BPE pieces or byte-fallback tokens)
    (b" caf", b"\xc3", False),
    (b" caf\xc3", b"\xa9", False),
    (b" caf\xc3", b" the", False),  # never while a character is unfinished
    (b" caf\xc3\xa9", b" the", True),
    (b" caf\xc3\xa9", b"\xa9", False),  # a stray continuation byte continues something
    (b" the", b" \xe4\xb8", True),  # its text starts with a space: a new word
    (b" \xe4\xb8", b"\xad", False),
    (b"  ", b"\xc3", True),  # only the first byte of a character, after whitespace
    (b".", b"\xc3", False),  # ... after anything else: not known yet
    (b"\xe4\xb8\xad", b"\xe6", True),  # lead byte 0xE6: a Han ideograph, a word of its own
    (b"\xe4\xb8\xad", b"\xe6\x96\x87", True),
    ("中".encode(), b"a", True),
    (b"a", "中".encode(), True),
    ("中".encode(), b"\xe3\x80", False),  # U+3000..U+303F: punctuation or kana, not known yet
    ("。".encode(), b"\xe4\xb8", True),
    # combining marks, joiners, modifiers, flags
    (" क".encode(), "ि".encode(), False),  # Devanagari vowel sign
    ("कि".encode(), "ता".encode(), False),
    (" नमस्".encode(), "ते".encode(), False),  # after a virama
    (" कि".encode(), " ता".encode(), True),
    (b" cafe", "\u0301".encode(), False),  # combining acute accent
    ("👍".encode(), "🏽".encode(), False),  # skin tone
    ("👍".encode(), b"\xf0\x9f", False),
    ("👍".encode(), "😀".encode(), True),
    ("👨".encode(), ZWJ.encode(), False),
    (f"👨{ZWJ}".encode(), "👩".encode(), False),
    ("🇺".encode(), "🇸".encode(), False),
    ("❤\ufe0f".encode(), "👍".encode(), True),
    # hyphenated words and numbers
    (b" well", b"-", False),
    (b" well", b"-known", False),
    (b" well-", b"known", False),
    (b" well", b"- ", True),
    (b" well-", b" known", True),
    (b"\n", b"-", True),
    (b" 3", b".", False),
    (b" 3", b".14", False),
    (b" 3.", b"14", False),
    (b" 1", b",000", False),
    (b" 3", b". ", True),
    (b" cat", b".", True),
    (b" cat.", b"14", True),
    # apostrophes, straight and curly
    (b" it", "’".encode(), False),
    (" it’".encode(), b"s", False),
    (b" don", b"'t", False),
    (b" cat", b"ing", False),
    (b".", b"ing", True),
    (b" cat", b" the", True),
    (b"", b"ing", True),  # the first token, or the first after a control token
]


@pytest.mark.parametrize("before, piece, expected", BOUNDARY_CASES)
def test_boundary_on_crafted_pieces(before: bytes, piece: bytes, expected: bool) -> None:
    assert boundary_between(before, piece) is expected


# A vocabulary with byte-level pieces, a byte-fallback newline, a control and a user-defined token.
PIECES = [b" caf", b"\xc3", b"\xa9", "é".encode(), b" \xe4\xb8", b"\xad", "ि".encode(), "’s".encode(),
          b" the", b".", b"<start_of_turn>", b"<h1>", b"\n", b"  ", "👍".encode(), b"_"]
(CAF, C3, A9, E_ACUTE, SPACE_E4B8, AD, VOWEL_SIGN, CURLY_S, THE, DOT, CONTROL, USER_DEFINED, NEWLINE,
 SPACES, THUMBS, UNDERSCORE) = range(len(PIECES))
ATOMIC = np.isin(np.arange(len(PIECES)), [CONTROL, USER_DEFINED])
CLASSES = build_token_classes(len(PIECES), lambda t: b"" if t == CONTROL else PIECES[t], ATOMIC)


def test_boundaries_read_the_text_before_the_previous_token() -> None:
    assert not CLASSES.is_boundary([CAF], C3)
    assert not CLASSES.is_boundary([CAF, C3], A9)
    assert not CLASSES.is_boundary([CAF, C3], THE)
    assert CLASSES.is_boundary([CAF, C3, A9], THE)
    assert not CLASSES.is_boundary([CAF, C3, A9], E_ACUTE)
    assert CLASSES.is_boundary([THE], SPACE_E4B8)
    assert not CLASSES.is_boundary([THE, SPACE_E4B8], AD)
    assert not CLASSES.is_boundary([THE, SPACE_E4B8, AD, DOT], A9)


def test_control_and_user_defined_tokens_are_boundaries_on_both_sides() -> None:
    for atom in (CONTROL, USER_DEFINED):
        assert CLASSES.is_boundary([CAF], atom)
        assert CLASSES.is_boundary([CAF, atom], C3)  # the tokenizer never merges across them
        assert not CLASSES.is_boundary([atom, CAF], C3)


def test_classes_of_partial_and_non_ascii_pieces() -> None:
    punctuation = {DOT, CONTROL, USER_DEFINED, NEWLINE, SPACES, THUMBS, UNDERSCORE}
    assert set(np.flatnonzero(CLASSES.punctuation)) == punctuation
    assert set(np.flatnonzero(CLASSES.function_word)) == {CURLY_S, THE}  # "’s" is "'s"
    # pieces that hold only part of a character are parts of words, not punctuation
    assert set(np.flatnonzero(CLASSES.content_word)) == {CAF, C3, A9, E_ACUTE, SPACE_E4B8, AD, VOWEL_SIGN}


# --- generations on tiny pairs of both families --------------------------------------------

_LETTER = "[^\\W_\u4e00-\u9fff]|[\u0300-\u036f\u0900-\u097f]"  # letters, digits, marks (not Han)
_WORD = f"(?:{_LETTER})+(?:[-.’'](?:{_LETTER})+)*"  # "well-known", "3.14", "it’s", "किताब"
_EMOJI = "[\U0001F1E6-\U0001F1FF]{2}|[\U0001F300-\U0001FAFF][\U0001F3FB-\U0001F3FF]?(?:\u200d[\U0001F300-\U0001FAFF])*"
# Words, Han ideographs, emoji sequences, single other characters: a switch may fall only between.
_SEGMENT = re.compile(f"{_WORD}|{_EMOJI}|.", re.S)


def word_breaks(text: str) -> set[int]:
    """Byte offsets in ``text`` where no word or character is split."""
    starts = {m.start() for m in _SEGMENT.finditer(text)} | {len(text)}
    return {len(text[:i].encode()) for i in starts}


def check_sample(sample: Sample, piece) -> int:
    """Assert that no switch of writer splits a word or a character and that the text is valid
    UTF-8 wherever its tokens are; return the number of switches."""
    pieces = [piece(t) for t in sample.tokens]
    data = b"".join(pieces)
    try:
        complete = codecs.getincrementaldecoder("utf-8")("strict").decode(data)  # an unfinished end is kept
    except UnicodeDecodeError as error:
        pytest.fail(f"invalid UTF-8 (U+FFFD in the output): {data!r}: {error}")
    assert "\ufffd" not in complete
    assert sample.text.startswith(complete)
    breaks = word_breaks(complete)
    switches = [k for k in range(1, len(pieces)) if sample.sources[k] != sample.sources[k - 1]]
    for k in switches:
        offset = sum(map(len, pieces[:k]))
        if offset == len(complete.encode()) < len(data):
            continue  # the sample was cut inside the next character: which one it is is unknown
        assert offset in breaks, (f"switch inside a word at token {k}: "
                                  f"{data[:offset].decode(errors='replace')!r} | {data[offset:].decode(errors='replace')!r}")
    return len(switches)


FAMILIES = ("bpe", "spm")
ROUTERS = [("random", 0.5), ("p", 0.5), ("p-punc", 0.5), ("fc", 0.3)]
PROMPT = [Message("user", "Write something")]


@pytest.fixture(scope="module", params=FAMILIES)
def unicode_engine(request, tmp_path_factory):
    base, aligned = write_unicode_pair(tmp_path_factory.mktemp(request.param), request.param)
    pair = ModelPair(PairSpec(base, aligned))
    engine = Engine(pair, ctx_size=512, threads=1)
    yield engine
    engine.close()
    pair.close()


def run(engine: Engine, router: str, gamma: float, *, seed: int, n: int, draft: DraftPolicy,
        sampling: SamplingParams = SamplingParams(temperature=1.0)) -> list[Sample]:
    settings = GenerationSettings(router=get_router(router), gamma=gamma, sampling=sampling, max_tokens=80,
                                  seed=seed, draft=draft)
    generation = engine.generate(PROMPT, n, settings)
    list(generation)
    return generation.samples


@pytest.mark.parametrize("draft", [DraftPolicy(enabled=False), DraftPolicy(fixed_k=4)], ids=["step", "draft"])
@pytest.mark.parametrize("router, gamma", ROUTERS)
def test_no_switch_inside_a_word_or_character(unicode_engine: Engine, router: str, gamma: float,
                                              draft: DraftPolicy) -> None:
    switches = 0
    text = ""
    for seed in range(3):
        for sample in run(unicode_engine, router, gamma, seed=seed, n=2, draft=draft):
            switches += check_sample(sample, unicode_engine.pair.piece)
            text += sample.text
    assert switches >= 10  # the routers really do switch, often
    for char in ("é", "中", "क", "👍"):  # the samples wrote split characters of every script
        assert char in text


def test_draft_and_verify_agrees_with_the_step_loop_on_split_characters(unicode_engine: Engine) -> None:
    step = run(unicode_engine, "random", 0.5, seed=5, n=1, draft=DraftPolicy(enabled=False))
    for policy in (DraftPolicy(fixed_k=1), DraftPolicy(fixed_k=6), DraftPolicy()):
        drafted = run(unicode_engine, "random", 0.5, seed=5, n=1, draft=policy)
        assert (drafted[0].tokens, drafted[0].sources) == (step[0].tokens, step[0].sources)


def test_gen_cli_writes_whole_words_and_characters(tmp_path: Path) -> None:
    """`baco gen` on a byte-level BPE pair writes what the checked library run writes."""
    base, aligned = write_unicode_pair(tmp_path / "bpe", "bpe")
    out = tmp_path / "out.jsonl"
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Write something\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "baco_local", "gen", "-f", str(prompts), "--base", str(base), "--aligned",
         str(aligned), "--threads", "1", "--router", "random", "--gamma", "0.5", "-n", "3", "--seed", "2",
         "--max-tokens", "80", "--temp", "1", "-o", str(out)],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    record = json.loads(out.read_text(encoding="utf-8"))
    pair = ModelPair(PairSpec(base, aligned))
    engine = Engine(pair, ctx_size=512, threads=1)
    try:
        sampling = SamplingParams(**record["settings"]["sampling"])
        settings = GenerationSettings(router=get_router("random"), gamma=0.5, sampling=sampling, max_tokens=80,
                                      seed=2, draft=DraftPolicy(enabled=False), prompt_key=id_key(record["id"]))
        generation = engine.generate(PROMPT, 3, settings)
        list(generation)
        for sample, text, provenance in zip(generation.samples, record["generations"], record["samples"]):
            assert (sample.text, sample.sources) == (text, provenance["sources"])
            check_sample(sample, pair.piece)  # (a sample cut by --max-tokens may end in one U+FFFD)
    finally:
        engine.close()
        pair.close()
