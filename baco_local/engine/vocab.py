"""Token classes of a model pair, computed once per pair from the decoded token texts.

BACo's content routers and its word-boundary rule ask questions about tokens ("is this
punctuation?", "does this start a new word?"). The content questions become one boolean array
over the vocabulary, built here when the pair is loaded. The word-boundary question depends on
the text before the token as well (a byte-level token may finish a character that an earlier
token began), so :meth:`TokenClasses.is_boundary` reads the last few generated tokens' bytes.

When a new word begins (the rule both the step loop and draft-and-verify use):

* always at the start, and after or on a control or user-defined token (the tokenizer never
  merges text across those);
* never while the text so far ends inside an unfinished UTF-8 character, nor on a token that
  starts with a continuation byte (0x80-0xBF);
* never before a combining mark, a zero-width joiner or non-joiner, a variation selector or an
  emoji skin-tone modifier, nor right after a zero-width joiner, nor between two
  regional-indicator (flag) letters;
* never inside a hyphenated word or a number: not between a letter or digit and a hyphen that a
  letter or digit follows (or that ends the token), nor between a hyphen and the letter after it
  when a letter precedes the hyphen; the same for ``.`` and ``,`` between digits ("3.14", "1,000");
* otherwise, when the character before or the first character of the token is not a word
  character (word characters: letters, digits, ``_``, the apostrophes ``'`` and ``’``, and combining
  marks, which take their base letter's side), or is a Han ideograph (each one is a word of its
  own: Chinese and Japanese put no spaces between words);
* a token whose first character is not complete in it (it only holds its first bytes) begins a
  word only after whitespace, or when those bytes already fix a Han ideograph (lead byte
  0xE4-0xE9: U+4000-U+9FFF; or 0xF0 then 0xA0-0xBF: U+20000-U+3FFFF).

Control and user-defined tokens count as formatting (punctuation); a piece that holds only part
of a character, or a combining mark, counts as part of a word (content), never as punctuation.
"""

from __future__ import annotations

import codecs
import unicodedata
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

# English function words (closed classes: articles, determiners, pronouns, prepositions,
# conjunctions, auxiliaries, common adverbial particles). Content words are everything else.
FUNCTION_WORDS: frozenset[str] = frozenset("""
a an the this that these those some any each every no all both either neither such what which
whose whatever whichever
i me my mine myself you your yours yourself yourselves he him his himself she her hers herself it
its itself we us our ours ourselves they them their theirs themselves one who whom whoever
of in on at to for with by from about as into onto upon over under above below between among
through during before after against without within along across around behind beyond near off
out up down since until till toward towards via per than like unlike despite except
and or but nor so yet if then else because although though while whereas unless whether when
whenever where wherever how why once
is am are was were be been being do does did done doing have has had having will would shall
should can could may might must ought
not no yes very too also just only even still already again ever never there here now
's 't 're 've 'll 'd 'm
""".split())

_APOSTROPHES = "'\u2019"
_HYPHENS = "-\u2010\u2011"
_DECIMAL_MARKS = ".,"
_ZWJ = "\u200d"
_JOINER_CONTROLS = "\u200c\u200d"  # zero-width non-joiner and joiner
_SKIN_TONES = (0x1F3FB, 0x1F3FF)
_TAGS = (0xE0020, 0xE007F)  # emoji tag sequences (subdivision flags)
_REGIONAL_INDICATORS = (0x1F1E6, 0x1F1FF)
_HAN = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x3FFFF))
# Code point ranges in which every character begins a word: a token holding only the first bytes
# of a character in one of them begins a word (Han ideographs and, at U+4DC0, hexagram symbols).
_WORD_STARTING_RANGES = ((0x3400, 0x9FFF), (0x20000, 0x3FFFF))
_LOOKBACK_BYTES = 24  # enough for the last characters plus a few combining marks


def _within(code: int, ranges: Sequence[tuple[int, int]]) -> bool:
    return any(low <= code <= high for low, high in ranges)


def _extends(char: str) -> bool:
    """A character that belongs to the one before it (combining mark, joiner, modifier...)."""
    code = ord(char)
    return (unicodedata.category(char).startswith("M") or char in _JOINER_CONTROLS
            or _within(code, (_SKIN_TONES, _TAGS)))


def _is_han(char: str) -> bool:
    return _within(ord(char), _HAN)


def _is_word_char(char: str) -> bool:
    """Letters, digits, ``_``, apostrophes and combining marks (Han ideographs included)."""
    return char.isalnum() or char == "_" or char in _APOSTROPHES or _extends(char)


def _joins_words(char: str) -> bool:
    """Part of a word that continues across a boundary next to it (Han ideographs never do)."""
    return _is_word_char(char) and not _is_han(char)


def _is_regional(char: str) -> bool:
    return _within(ord(char), (_REGIONAL_INDICATORS,))


def _decode_complete(data: bytes) -> tuple[str, bytes]:
    """The text of ``data`` (bad bytes as U+FFFD) and the bytes of an unfinished last character."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    text = decoder.decode(data)
    return text, decoder.getstate()[0]


def _possible_code_points(prefix: bytes) -> tuple[int, int]:
    """The lowest and highest code point a character starting with these bytes can be."""
    lead = prefix[0]
    length = 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4
    code = lead & (0xFF >> (length + 1))
    for byte in prefix[1:]:
        code = code << 6 | (byte & 0x3F)
    missing = 6 * (length - len(prefix))
    return code << missing, (code << missing) | ((1 << missing) - 1)


def _prefix_begins_word(prefix: bytes) -> bool:
    """Whether the first bytes of a character already fix it as one that begins a word."""
    low, high = _possible_code_points(prefix)
    return any(start <= low and high <= end for start, end in _WORD_STARTING_RANGES)


def _is_joined(left2: str | None, left: str, right: str, right2: str | None) -> bool:
    """Whether ``left``|``right`` lies inside a hyphenated word or a number.

    ``left2`` is the character before ``left``; ``right2`` the one after ``right`` (None when it is
    not known yet: the token ends there).
    """
    if right in _HYPHENS:
        return _joins_words(left) and (right2 is None or _joins_words(right2))
    if right in _DECIMAL_MARKS:
        return left.isdigit() and (right2 is None or right2.isdigit())
    if left in _HYPHENS:
        return left2 is not None and _joins_words(left2) and _joins_words(right)
    if left in _DECIMAL_MARKS:
        return left2 is not None and left2.isdigit() and right.isdigit()
    return False


def boundary_between(before: bytes, piece: bytes) -> bool:
    """Whether a token with bytes ``piece`` begins a new word after the text ``before``.

    ``before`` is the sample's generated text since its start or its last control/user-defined
    token (its last few bytes suffice). The rule is the one in the module docstring.
    """
    if not before or not piece:
        return True
    text, unfinished = _decode_complete(before)
    if unfinished or 0x80 <= piece[0] <= 0xBF:
        return False
    if text[-1] == _ZWJ:
        return False
    end = len(text) - 1
    while end > 0 and _extends(text[end]):
        end -= 1
    left, left2 = text[end], text[end - 1] if end > 0 else None
    head, head_unfinished = _decode_complete(piece)
    if not head:  # the token holds only the first bytes of one character
        return left.isspace() or _prefix_begins_word(head_unfinished)
    right, right2 = head[0], head[1] if len(head) > 1 else None
    if _extends(right) or (_is_regional(left) and _is_regional(right)):
        return False
    if _is_joined(left2, left, right, right2):
        return False
    return not _joins_words(left) or not _joins_words(right)


@dataclass(frozen=True)
class TokenClasses:
    """Per-token facts of the pair (the larger vocabulary), one entry per token id."""

    punctuation: np.ndarray  # (V,) punctuation, newline, whitespace, symbols or formatting (PUNC rule)
    function_word: np.ndarray  # (V,) a function word such as " the" or "If" (FC rule)
    content_word: np.ndarray  # (V,) any other token with letters or digits (or part of a character)
    atomic: np.ndarray  # (V,) control and user-defined tokens: words never continue across them
    pieces: tuple[bytes, ...]  # (V,) the bytes each token stands for

    def is_boundary(self, history: Sequence[int], token: int) -> bool:
        """Whether ``token`` begins a new word after the sample's generated tokens ``history``."""
        if self.atomic[token]:
            return True
        return boundary_between(self._tail(history), self.pieces[token])

    def _tail(self, history: Sequence[int]) -> bytes:
        """The last bytes of the generated text, from after the last control/user-defined token."""
        parts: list[bytes] = []
        size = 0
        for token in reversed(history):
            if self.atomic[token] or size >= _LOOKBACK_BYTES:
                break
            parts.append(self.pieces[token])
            size += len(parts[-1])
        return b"".join(reversed(parts))


def _is_letter_part(char: str) -> bool:
    """A letter, digit or combining mark, or bytes that are only part of a character (U+FFFD)."""
    return char.isalnum() or unicodedata.category(char).startswith("M") or char == "\ufffd"


def _classify(piece: bytes, atomic: bool) -> tuple[bool, bool, bool]:
    """(punctuation, function_word, content_word) for one token."""
    if atomic:  # control tokens and user-defined ones (whitespace runs, markup such as <h1>)
        return True, False, False
    text = piece.decode("utf-8", errors="replace")
    stripped = text.strip()
    punctuation = "\n" in text or not any(_is_letter_part(c) for c in stripped)
    function = stripped.lower().replace("\u2019", "'") in FUNCTION_WORDS
    return punctuation, function, not punctuation and not function


def build_token_classes(n_vocab: int, piece: Callable[[int], bytes], atomic: np.ndarray) -> TokenClasses:
    """Classify every token id from its decoded bytes.

    ``piece(t)`` returns the bytes token ``t`` stands for (as llama.cpp renders it, so SentencePiece
    ``▁`` and GPT-2 ``Ġ`` markers are already real spaces and byte tokens are their byte).
    ``atomic`` is (V,) bool: control and user-defined tokens.
    """
    pieces = tuple(piece(token) for token in range(n_vocab))
    atomic = np.asarray(atomic, dtype=bool)
    columns = np.array([_classify(p, bool(a)) for p, a in zip(pieces, atomic)], dtype=bool).reshape(n_vocab, 3)
    return TokenClasses(columns[:, 0].copy(), columns[:, 1].copy(), columns[:, 2].copy(), atomic, pieces)
