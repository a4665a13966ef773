"""Token classes of a model pair, computed once per pair from the decoded token texts.

BACo's content routers and its word-boundary rule ask questions about tokens ("is this
punctuation?", "does this start a new word?"). Answering them per step would be slow, so each
question becomes one boolean array over the vocabulary, built here when the pair is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

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


def _is_word_char(char: str) -> bool:
    return char.isalnum() or char == "_" or char in _APOSTROPHES


@dataclass(frozen=True)
class TokenClasses:
    """Boolean arrays, one entry per token id of the pair (the larger vocabulary)."""

    starts_word: np.ndarray  # (V,) the token begins a new word (space, newline, punctuation, control)
    ends_word: np.ndarray  # (V,) a token after this one begins a new word (it ends in a non-word char)
    punctuation: np.ndarray  # (V,) punctuation, newline, whitespace or formatting (PUNC rule)
    function_word: np.ndarray  # (V,) a function word such as " the" or "If" (FC rule)
    content_word: np.ndarray  # (V,) any other token with letters or digits

    def is_boundary(self, previous: int | None, token: int) -> bool:
        """Whether ``token`` begins a new word when it follows ``previous`` (None: start)."""
        return previous is None or bool(self.ends_word[previous]) or bool(self.starts_word[token])


def _classify(text: str, control: bool, byte: int | None) -> tuple[bool, bool, bool, bool, bool]:
    """(starts_word, ends_word, punctuation, function_word, content_word) for one token."""
    if control:
        return True, True, True, False, False
    if byte is not None and byte >= 0x80:  # part of a multi-byte character: never a boundary
        return False, False, False, False, False
    if not text:
        return True, True, True, False, False
    starts = not _is_word_char(text[0])
    ends = not _is_word_char(text[-1])
    stripped = text.strip()
    punctuation = "\n" in text or not any(_is_word_char(c) for c in stripped)
    function = stripped.lower() in FUNCTION_WORDS
    content = not punctuation and not function
    return starts, ends, punctuation, function, content


def build_token_classes(
    n_vocab: int,
    piece: Callable[[int], bytes],
    control: np.ndarray,
    byte: np.ndarray,
) -> TokenClasses:
    """Classify every token id from its decoded bytes.

    ``piece(t)`` returns the bytes token ``t`` stands for (as llama.cpp renders it, so SentencePiece
    ``▁`` and GPT-2 ``Ġ`` markers are already real spaces). ``control``/``byte`` are (V,) arrays.
    """
    columns = np.zeros((5, n_vocab), dtype=bool)
    for token in range(n_vocab):
        raw = piece(token)
        byte_value = raw[0] if byte[token] and len(raw) == 1 else None
        text = raw.decode("utf-8", errors="ignore")
        columns[:, token] = _classify(text, bool(control[token]), byte_value)
    return TokenClasses(*columns)

