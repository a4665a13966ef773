"""Tiny base/aligned pairs that write non-ASCII text, in both tokenizer families.

The word-boundary rule is only tested for real where tokens hold parts of characters. These
pairs write *items*: accented Latin (precomposed and with a combining accent), Han characters,
Devanagari with vowel signs and a virama, emoji with a skin tone, a zero-width-joiner family and
a flag, a hyphenated word, a decimal number, apostrophes (straight and curly), plain words and
separators. Under a router that switches often, the other model's token may begin a new item in
the middle of one (" cafe" then " café"), which is fine, but it must never continue a word or a
character that the writer began.

Each model is a bigram model over the items (built with :mod:`tiny_models`' weights): after an
item's last token it draws the first token of any item (the base flatly, the aligned with a
favourite); inside an item it writes the item's next token, spelled *its* way. The two models
spell many items differently, splitting characters across tokens where the other does not:

* ``family="bpe"``: a GPT-2 byte-level BPE vocabulary (tokenizer ``gpt2``): the 256 bytes as
  GPT-2's printable stand-ins plus merged pieces such as ``b" \\xc3"`` or ``b"\\xe4\\xb8"``;
* ``family="spm"``: a SentencePiece vocabulary (tokenizer ``llama``) whose pieces are whole
  characters and whose split characters are byte-fallback tokens ``<0xC3>``.

A model after a token it never writes itself (the other model's partial character) behaves as at
an item start, as real models do on a tokenization they never produce: a switch of writer inside
a character then yields invalid UTF-8 (U+FFFD).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Sequence

import numpy as np
from tiny_models import (ALIGNED_EXTRA, BYTE_TOKENS, DEFAULT_TEMPLATE, NEVER, SPACE, SPECIALS, _gpt2_byte_chars,
                         _Vocab, _weights, _write_gguf)

Family = Literal["bpe", "spm"]
# A spelling: one entry per token. ``str``: one token holding that text. ``bytes``: in the BPE
# family one token holding those bytes; in the SentencePiece family one byte token per byte.
Spelling = tuple[str | bytes, ...]

ZWJ = "\u200d"

# item text -> (base spelling, aligned spelling): the same in both families ...
_SHARED_ITEMS: dict[str, tuple[Spelling, Spelling]] = {
    " cafe\u0301": ((" cafe", "\u0301"), (" cafe\u0301",)),
    "。": (("。",), ("。",)),
    " नमस्ते": ((" न", "म", "स्", "ते"), (" नम", "स्ते")),
    f" 👨{ZWJ}👩{ZWJ}👧": ((" 👨", ZWJ, "👩", f"{ZWJ}👧"), (f" 👨{ZWJ}", f"👩{ZWJ}", "👧")),
    " 🇺🇸": ((" 🇺", "🇸"), (" 🇺🇸",)),
    " well-known": ((" well", "-", "known"), (" well", "-known")),
    " 3.14": ((" 3", ".", "14"), (" 3", ".14")),
    " it’s": ((" it", "’", "s"), (" it", "’s")),
    " don't": ((" don", "'t"), (" don", "'", "t")),
    " the": ((" the",), (" the",)),
    " cat": ((" cat",), (" cat",)),
    "!": (("!",), ("!",)),
    ",": ((",",), (",",)),
    "\n": ((b"\n",), (b"\n",)),
}

# ... and split differently: byte-level pieces in one, byte-fallback tokens in the other.
_BPE_ITEMS: dict[str, tuple[Spelling, Spelling]] = {
    " café": ((" caf", b"\xc3", b"\xa9"), (" caf", "é")),
    " über": ((b" \xc3", b"\xbc", "ber"), (" ü", "ber")),
    " naïve": ((" na", "ï", "ve"), (" na", b"\xc3", b"\xaf", "ve")),
    "中": ((b"\xe4\xb8", b"\xad"), (b"\xe4", b"\xb8\xad")),
    "文": (("文",), (b"\xe6\x96", b"\x87")),
    "字": ((b"\xe5", b"\xad\x97"), (b"\xe5", b"\xad\x97")),
    " 国": ((b" \xe5\x9b", b"\xbd"), (" 国",)),
    " किताब": ((" क", "ि", "ता", b"\xe0\xa4", b"\xac"), (" कि", "ताब")),
    " 👍🏽": ((b" \xf0\x9f", b"\x91\x8d", b"\xf0\x9f", b"\x8f\xbd"), (" 👍", "🏽")),
    **_SHARED_ITEMS,
}

_SPM_ITEMS: dict[str, tuple[Spelling, Spelling]] = {
    " café": ((" caf", b"\xc3\xa9"), (" caf", "é")),
    " naïve": ((" na", "ï", "ve"), (" na", b"\xc3\xaf", "ve")),
    "中": ((b"\xe4\xb8\xad",), ("中",)),
    "文": (("文",), (b"\xe6\x96\x87",)),
    "字": (("字",), ("字",)),
    " 国": ((" 国",), (" ", b"\xe5\x9b\xbd")),
    " किताब": ((" क", "ि", "ता", b"\xe0\xa4\xac"), (" कि", "ताब")),
    " 👍🏽": ((" 👍", b"\xf0\x9f\x8f\xbd"), (" 👍", "🏽")),
    **_SHARED_ITEMS,
}

ITEMS: dict[Family, dict[str, tuple[Spelling, Spelling]]] = {"bpe": _BPE_ITEMS, "spm": _SPM_ITEMS}

_FAVOURITE_BONUS = 3.0  # the aligned model's favourite item start per row (top-1 about 0.5)
_START_SPREAD = 0.5


def _token_texts(part: str | bytes, family: Family) -> list[str]:
    """The vocabulary texts of the tokens one spelling entry stands for."""
    if family == "spm":
        if isinstance(part, bytes):
            return [BYTE_TOKENS[b] for b in part]
        return [part.replace(" ", SPACE)]
    data = part.encode() if isinstance(part, str) else part
    chars = _gpt2_byte_chars()
    return ["".join(chars[b] for b in data)]


def _spelled(spelling: Spelling, family: Family) -> list[str]:
    return [text for part in spelling for text in _token_texts(part, family)]


def spellings(family: Family, aligned: bool) -> dict[str, list[str]]:
    """Each item's token texts as one model writes it."""
    return {item: _spelled(pair[int(aligned)], family) for item, pair in ITEMS[family].items()}


def _check_spellings(family: Family) -> None:
    """Every spelling spells its item; within a model each token has one successor and no token
    both ends an item and continues one (so each model alone writes whole items)."""
    for aligned in (False, True):
        following: dict[str, str] = {}
        final: set[str] = set()
        for item, pair in ITEMS[family].items():
            spelling = pair[int(aligned)]
            assert b"".join(p.encode() if isinstance(p, str) else p for p in spelling) == item.encode()
            tokens = _spelled(spelling, family)
            for token, after in zip(tokens, tokens[1:]):
                assert following.setdefault(token, after) == after, (family, item, token)
            final.add(tokens[-1])
        assert not final & set(following), (family, aligned)


def _vocabulary(family: Family) -> list[str]:
    """The token texts both models share (the aligned model adds the chat-turn tokens)."""
    used = dict.fromkeys(t for aligned in (False, True) for s in spellings(family, aligned).values() for t in s)
    if family == "spm":
        return [*SPECIALS, *BYTE_TOKENS, *(t for t in used if t not in BYTE_TOKENS)]
    chars = _gpt2_byte_chars()
    return [*chars, *(t for t in used if t not in chars), "<|endoftext|>"]


def _merges(tokens: Sequence[str]) -> list[str]:
    """GPT-2 merges that build every multi-character piece from the left."""
    merges: list[str] = []
    for token in tokens:
        if len(token) > 1 and not token.startswith("<"):
            merges.extend(f"{token[:end]} {token[end]}" for end in range(1, len(token)))
    return list(dict.fromkeys(merges))


def _table(tokens: list[str], classes: list[str], family: Family, aligned: bool, seed: int) -> np.ndarray:
    """Next-token logits per input class (one class per written token, then ``START``)."""
    ids = {t: i for i, t in enumerate(tokens)}
    spelled = spellings(family, aligned)
    following = {a: b for s in spelled.values() for a, b in zip(s, s[1:])}
    starts = [ids[s[0]] for s in spelled.values()]
    rng = np.random.default_rng([seed, int(aligned), 5])
    table = np.full((len(classes), len(tokens)), NEVER)
    for row, name in zip(table, classes):
        if name in following:
            row[ids[following[name]]] = 0.0
            continue
        row[starts] = rng.normal(0.0, _START_SPREAD, len(starts))
        if aligned:
            row[starts[rng.integers(len(starts))]] += _FAVOURITE_BONUS
    return table


def _write_model(path: Path, family: Family, *, aligned: bool, seed: int) -> Path:
    tokens = _vocabulary(family)
    eos = tokens.index("</s>" if family == "spm" else "<|endoftext|>")
    chat_template = DEFAULT_TEMPLATE if aligned else None
    if aligned:
        tokens = [*tokens, *ALIGNED_EXTRA]
        eos = tokens.index(ALIGNED_EXTRA[-1])
    written = dict.fromkeys(t for s in spellings(family, False).values() for t in s)
    written.update(dict.fromkeys(t for s in spellings(family, True).values() for t in s))
    classes = [*written, "START"]
    index = {name: i for i, name in enumerate(classes)}
    class_of = np.array([index.get(t, index["START"]) for t in tokens], dtype=np.int64)
    table = _table(tokens, classes, family, aligned, seed)
    merges = _merges(tokens) if family == "bpe" else None
    return _write_gguf(path, _Vocab(tokens, eos), _weights(table, class_of, seed),
                       name=f"tiny-{family}-{'aligned' if aligned else 'base'}", chat_template=chat_template,
                       tokenizer_model="gpt2" if family == "bpe" else "llama", merges=merges)


def write_unicode_pair(directory: Path, family: Family, *, seed: int = 0) -> tuple[Path, Path]:
    """Write ``base.gguf`` and ``aligned.gguf`` of one family into ``directory``."""
    _check_spellings(family)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return (_write_model(directory / "base.gguf", family, aligned=False, seed=seed),
            _write_model(directory / "aligned.gguf", family, aligned=True, seed=seed))
