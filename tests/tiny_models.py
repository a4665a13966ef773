"""Tiny GGUF base/aligned model pairs that real llama.cpp loads in milliseconds.

Each model is a clear bigram language model dressed up as a 2-block llama: the logits after a
token are (almost exactly) one row of a designed table, ``designed_logits``.

How the weights realise the table:

* Every vocabulary entry belongs to an *input class*: each word piece is its own class, plus
  ``NEWLINE``, ``BOS``, ``TURN_END`` and ``OTHER`` (bytes, single characters, merge pieces, unknown).
* A random rotation splits the residual stream into one orthonormal direction per class and a
  spare subspace. A token's embedding is ``sqrt(d)`` times (mostly) its class direction, so the
  RMS norm is 1 and the output head turns it into exactly the class's table row.
* The transformer blocks are small and write mostly into the spare subspace: that only rescales
  the logits a little (through the final RMS norm), plus a small leak into the class directions.
  Context therefore changes logits by ~1e-3..1e-1 and never flips a greedy choice: every table
  row has a top-1/top-2 gap of at least ``GAP``.

The base table is flat in many rows (top-1 probability 0.12-0.28); the aligned table is sharp
(0.6-0.92) and prefers a different, tidier continuation than the base. Byte, control and merge
tokens get ``NEVER`` logits (except the newline byte); end-of-text is possible but rare.

Tokenizer: SentencePiece (``llama``) with ``add_space_prefix`` false, like Gemma: ``"Once upon a
time"`` tokenizes to ``Once ▁upon ▁a ▁time``. Every word piece is reachable through the SPM merge
path because all its prefixes are in the vocabulary too (``MERGE_PIECES``, appended after the word
pieces). Text the vocabulary cannot spell falls back to byte tokens.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np

SPACE = "▁"

# Grammar roles: each word piece has exactly one role; rows of the table are built per role.
_ROLES: dict[str, tuple[str, ...]] = {
    "DET": ("▁the", "▁a", "▁his", "▁her", "▁this"),
    "PRON": ("▁he", "▁she", "▁it", "▁they", "▁we"),
    "PREP": ("▁of", "▁to", "▁in", "▁with", "▁on", "▁at", "▁by", "▁from", "▁for", "▁upon",
             "▁into"),
    "CONJ": ("▁and", "▁but", "▁or", "▁if", "▁so", "▁then", "▁when", "▁that", "▁as"),
    "AUX": ("▁is", "▁was", "▁had", "▁will"),
    "MOD": ("▁not", "▁very"),
    "ADJ": ("▁red", "▁happy", "▁small", "▁big", "▁old", "▁green", "▁blue", "▁dark", "▁little",
            "▁bright", "▁quiet", "▁cold"),
    "NOUN": ("▁cat", "▁dog", "▁river", "▁moon", "▁story", "▁tree", "▁house", "▁girl", "▁boy",
             "▁sun", "▁sea", "▁bird", "▁book", "▁day", "▁night", "▁time", "▁world", "▁friend",
             "▁light", "▁water", "▁garden", "▁door"),
    "VERB": ("▁run", "▁walk", "▁jump", "▁sing", "▁look", "▁play", "▁see", "▁find", "▁went",
             "▁said", "▁saw", "▁loved", "▁found", "▁came"),
    "ADV": ("▁again", "▁away", "▁slowly", "▁soon"),
    "CONT": ("ing", "ed", "s", "ly", "er"),
    "END": (".", "!", "?"),
    "COMMA": (",",),
    "COLON": (":",),
    "DASH": ("▁-",),
    "BOLD": ("**",),
    "OPEN": ("▁(",),
    "CLOSE": (")",),
    "CAP_DET": ("▁The", "The"),
    "CAP_PRON": ("▁She", "▁He", "▁It", "▁They", "She", "He", "It", "They"),
    "CAP_PREP": ("▁In", "In"),
    "CAP_CONJ": ("▁But", "▁Then"),
    "CAP_ONCE": ("▁Once", "Once"),
    "CAP_ONE": ("▁One", "One"),
}

FUNCTION_WORDS: tuple[str, ...] = sum(
    (_ROLES[r] for r in ("DET", "PRON", "PREP", "CONJ", "AUX", "MOD")), ())
CONTENT_WORDS: tuple[str, ...] = sum((_ROLES[r] for r in ("ADJ", "NOUN", "VERB", "ADV")), ())
CONTINUATIONS: tuple[str, ...] = _ROLES["CONT"]
PUNCTUATION: tuple[str, ...] = sum(
    (_ROLES[r] for r in ("END", "COMMA", "COLON", "DASH", "BOLD", "OPEN", "CLOSE")), ())
CAPITALIZED: tuple[str, ...] = sum((_ROLES[r] for r in _ROLES if r.startswith("CAP_")), ())
SENTENCE_STARTERS: tuple[str, ...] = tuple(w for w in CAPITALIZED if w.startswith(SPACE))
LINE_STARTERS: tuple[str, ...] = tuple(w for w in CAPITALIZED if not w.startswith(SPACE))
WORD_PIECES: tuple[str, ...] = sum(_ROLES.values(), ())
_ROLE_OF: dict[str, str] = {w: role for role, words in _ROLES.items() for w in words}


def _merge_pieces(words: tuple[str, ...]) -> tuple[str, ...]:
    """Every character and proper prefix of the word pieces that is not a piece itself."""
    chars = (c for word in words for c in word)
    prefixes = (word[:end] for word in words for end in range(1, len(word)))
    known = set(words)
    return tuple(p for p in dict.fromkeys([*chars, *prefixes]) if p not in known)


SPECIALS: tuple[str, ...] = ("<unk>", "<s>", "</s>")
BYTE_TOKENS: tuple[str, ...] = tuple(f"<0x{i:02X}>" for i in range(256))
MERGE_PIECES: tuple[str, ...] = _merge_pieces(WORD_PIECES)
TOKENS: list[str] = [*SPECIALS, *BYTE_TOKENS, *WORD_PIECES, *MERGE_PIECES]
ALIGNED_EXTRA: tuple[str, ...] = ("<start_of_turn>", "<end_of_turn>")
ALIGNED_TOKENS: list[str] = [*TOKENS, *ALIGNED_EXTRA]

UNK_ID, BOS_ID, EOS_ID = 0, 1, 2
BYTE_BASE_ID = len(SPECIALS)
NEWLINE_ID = BYTE_BASE_ID + 0x0A
FIRST_WORD_ID = BYTE_BASE_ID + 256
BASE_VOCAB_SIZE = len(TOKENS)
START_OF_TURN_ID = BASE_VOCAB_SIZE
END_OF_TURN_ID = BASE_VOCAB_SIZE + 1
ALIGNED_VOCAB_SIZE = len(ALIGNED_TOKENS)
ALIGNED_EOS_ID = END_OF_TURN_ID

# Malformed-file constants (see the writers at the end of the module).
DUPLICATE_IDS = (FIRST_WORD_ID, 300)  # write_duplicate_token_vocab: id 300 repeats id 259's text
MISMATCHED_ID = 300  # write_mismatched_pair: the aligned text of this id differs
MISMATCHED_TEXT = "▁zebra"
EXTRA_NORMAL_TOKENS = ("▁apple", "▁banana")

DEFAULT_TEMPLATE = (
    "{{ bos_token }}"
    "{% if messages[0]['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}"
    "{% endif %}"
    "{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}"
    "{% if message['role'] == 'assistant' %}{% set role = 'model' %}"
    "{% else %}{% set role = message['role'] %}{% endif %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)

# Architecture.
N_EMBD = 160
N_HEAD = 5
N_HEAD_KV = 1
HEAD_DIM = N_EMBD // N_HEAD
N_FF = 192
N_LAYER = 2
CONTEXT_LENGTH = 2048
RMS_EPS = 1e-5

# Table design.
GAP = 0.7  # minimum top-1 minus top-2 logit in every designed row
NEVER = -25.0  # logit of tokens that are never generated
BACKGROUND = -6.0  # logit of generatable tokens that the grammar does not allow here
_ALLOWED_SPREAD = 0.6
_BACKGROUND_SPREAD = 0.3
_UNTIDY = ("**", "▁(", ")", "▁-", "?", "!", ":")  # the aligned model avoids these as its top-1

# Weights.
_SPARE_SHARE = 0.15  # sin of the angle between an embedding and its class direction
_ATTN_SCALE = 0.05
_FFN_SCALE = 0.05
_CLASS_LEAK = 0.1  # share of the block outputs written into the class directions

# Input classes: one per word piece, then these.
_CLASS_NAMES: tuple[str, ...] = (*WORD_PIECES, "NEWLINE", "BOS", "TURN_END", "OTHER")
_CLASS_INDEX: dict[str, int] = {name: i for i, name in enumerate(_CLASS_NAMES)}

# What may follow each role (role names, "NEWLINE", group names, or literal word pieces).
_GROUPS: dict[str, tuple[str, ...]] = {
    "NEWLINE": ("<0x0A>",),
    "SENTENCE_STARTERS": SENTENCE_STARTERS,
    "LINE_STARTERS": LINE_STARTERS,
    **_ROLES,
}
_FOLLOW: dict[str, tuple[str, ...]] = {
    "BOS": ("LINE_STARTERS",),
    "NEWLINE": ("LINE_STARTERS", "BOLD", "NEWLINE"),
    "TURN_END": ("NEWLINE",),
    "OTHER": ("CONT", "END", "COMMA", "NOUN", "NEWLINE"),
    "DET": ("ADJ", "NOUN"),
    "PRON": ("AUX", "VERB", "MOD"),
    "PREP": ("DET", "PRON", "NOUN"),
    "CONJ": ("PRON", "DET", "ADJ"),
    "AUX": ("ADJ", "MOD", "DET", "VERB", "PREP"),
    "MOD": ("ADJ", "VERB"),
    "ADJ": ("NOUN", "COMMA", "END", "▁and"),
    "NOUN": ("AUX", "VERB", "PREP", "CONJ", "END", "COMMA", "COLON", "OPEN", "DASH", "s",
             "NEWLINE"),
    "VERB": ("DET", "PREP", "PRON", "ADV", "ing", "ed", "s", "END", "COMMA"),
    "ADV": ("END", "COMMA", "CONJ", "PREP"),
    "CONT": ("PREP", "DET", "CONJ", "END", "COMMA", "NEWLINE"),
    "END": ("SENTENCE_STARTERS", "NEWLINE"),
    "COMMA": ("CONJ", "PRON", "DET"),
    "COLON": ("NEWLINE", "DET", "DASH", "BOLD"),
    "DASH": ("DET", "ADJ", "NOUN", "PRON"),
    "BOLD": ("LINE_STARTERS",),
    "OPEN": ("DET", "ADJ", "NOUN", "PRON"),
    "CLOSE": ("END", "COMMA", "CONJ", "VERB"),
    "CAP_DET": ("ADJ", "NOUN"),
    "CAP_PRON": ("AUX", "VERB", "MOD"),
    "CAP_PREP": ("DET",),
    "CAP_CONJ": ("PRON", "DET"),
    "CAP_ONCE": ("▁upon",),
    "CAP_ONE": ("▁day",),
}
_WORD_FOLLOW: dict[str, tuple[str, ...]] = {"▁upon": ("▁a", "▁the")}
# The aligned model's top-1 comes from one of these groups (picked uniformly, then a token in it).
_TIDY_FOLLOW: dict[str, tuple[str, ...]] = {
    "DET": ("NOUN", "ADJ"),
    "PRON": ("VERB", "AUX"),
    "PREP": ("DET",),
    "CONJ": ("PRON", "DET"),
    "AUX": ("ADJ", "DET", "MOD"),
    "MOD": ("ADJ",),
    "ADJ": ("NOUN",),
    "NOUN": ("END", "END", "AUX", "VERB"),
    "VERB": ("DET", "PREP", "END", "END"),
    "ADV": ("END",),
    "CONT": ("END", "PREP", "DET"),
    "END": ("SENTENCE_STARTERS",),
    "COMMA": ("CONJ", "PRON"),
    "CAP_DET": ("NOUN", "ADJ"),
    "CAP_PRON": ("VERB", "AUX"),
    "CAP_CONJ": ("PRON", "DET"),
    "NEWLINE": ("LINE_STARTERS",),
    "BOS": ("LINE_STARTERS",),
}

# Pinned probabilities of end-of-text ("EOS") and newline in some rows, per model.
_BASE_PINS: dict[str, dict[str, float]] = {
    "END": {"EOS": 0.02, "NEWLINE": 0.12},
    "NEWLINE": {"EOS": 0.02},
    "CONT": {"NEWLINE": 0.05},
    "NOUN": {"NEWLINE": 0.04},
}
_ALIGNED_PINS: dict[str, dict[str, float]] = {
    "END": {"EOS": 0.015, "NEWLINE": 0.1},
    "NEWLINE": {"EOS": 0.01},
}


@dataclass(frozen=True)
class _Vocab:
    """Token texts, SentencePiece scores and token types of one model (the last two derived
    from the texts unless given)."""

    tokens: list[str]
    eos_id: int
    given_types: list[int] | None = None
    given_scores: list[float] | None = None

    @property
    def types(self) -> list[int]:
        return self.given_types or [_token_type(t) for t in self.tokens]

    @property
    def scores(self) -> list[float]:
        return self.given_scores or [_token_score(t) for t in self.tokens]


_CONTROL_TEXTS = frozenset({"<s>", "</s>", *ALIGNED_EXTRA, "<|endoftext|>"})
_BYTE_TEXTS = frozenset(BYTE_TOKENS)


def _token_type(text: str) -> int:
    if text == "<unk>":
        return gguf.TokenType.UNKNOWN
    if text in _CONTROL_TEXTS:
        return gguf.TokenType.CONTROL
    if text in _BYTE_TEXTS:
        return gguf.TokenType.BYTE
    return gguf.TokenType.NORMAL


def _token_score(text: str) -> float:
    """Pieces starting with the space marker merge first, so a word's prefix chain always wins."""
    if text == "<unk>" or text in _CONTROL_TEXTS or text in _BYTE_TEXTS:
        return 0.0
    return -1.0 if text.startswith(SPACE) else -2.0


def token_id(text: str, *, aligned: bool = False) -> int:
    """The id of a token text in the tiny vocabulary (ValueError if absent)."""
    return (ALIGNED_TOKENS if aligned else TOKENS).index(text)


# ---------------------------------------------------------------------------------------------
# The designed bigram table
# ---------------------------------------------------------------------------------------------


def _class_of(vocab: _Vocab) -> np.ndarray:
    """Input class of every token id."""
    special = {"<0x0A>": "NEWLINE", "<s>": "BOS", "</s>": "BOS",
               "<end_of_turn>": "TURN_END"}
    names = [t if t in _ROLE_OF else special.get(t, "OTHER") for t in vocab.tokens]
    return np.array([_CLASS_INDEX[n] for n in names], dtype=np.int64)


def _row_role(class_name: str) -> str:
    return _ROLE_OF.get(class_name, class_name)


def _follow_ids(class_name: str, ids: dict[str, int]) -> list[int]:
    """Token ids the grammar allows after an input class (missing texts are skipped)."""
    entries = _WORD_FOLLOW.get(class_name) or _FOLLOW[_row_role(class_name)]
    texts = dict.fromkeys(t for entry in entries for t in _GROUPS.get(entry, (entry,)))
    return [ids[t] for t in texts if t in ids]


def _logsumexp(values: np.ndarray) -> float:
    top = float(values.max())
    return top + math.log(float(np.exp(values - top).sum()))


def _logit_for_probability(row: np.ndarray, token: int, p: float) -> float:
    """The logit that gives ``token`` probability ``p`` against the rest of the row."""
    rest = np.delete(row, token)
    return math.log(p / (1.0 - p)) + _logsumexp(rest)


@dataclass(frozen=True)
class _Design:
    """What every row of one model's table needs: its vocabulary, seen a few ways."""

    vocab: _Vocab
    aligned: bool
    ids: dict[str, int]
    generatable: np.ndarray  # bool per token id: word pieces, newline, this model's EOS


def _design(vocab: _Vocab, aligned: bool) -> _Design:
    generatable = np.array([t in _ROLE_OF for t in vocab.tokens])
    generatable[[NEWLINE_ID, vocab.eos_id]] = True
    return _Design(vocab, aligned, {t: i for i, t in enumerate(vocab.tokens)}, generatable)


def _pick_top(rng: np.random.Generator, design: _Design, class_name: str, allowed: list[int],
              avoid: int | None) -> int:
    """Base: any allowed token. Aligned: a tidy word different from the base's choice."""
    if not design.aligned:
        return int(allowed[rng.integers(len(allowed))])
    tokens = design.vocab.tokens
    tidy = [a for a in allowed if tokens[a] not in _UNTIDY and a != NEWLINE_ID]
    groups = _TIDY_FOLLOW.get(_row_role(class_name), ())
    if groups:
        group = set(_GROUPS[groups[rng.integers(len(groups))]])
        tidy = [a for a in tidy if tokens[a] in group] or tidy
    for pool in ([a for a in tidy if a != avoid], [a for a in allowed if a != avoid], allowed):
        if pool:
            return int(pool[rng.integers(len(pool))])
    raise AssertionError("empty follow set")


def _top_probability(rng: np.random.Generator, n_allowed: int, aligned: bool) -> float:
    if aligned:
        return float(rng.uniform(0.6, 0.92))
    if n_allowed >= 12 and rng.random() < 0.6:
        return float(rng.uniform(0.12, 0.28))
    return float(rng.uniform(0.35, 0.9))


def _design_row(rng: np.random.Generator, design: _Design, class_name: str,
                avoid: int | None) -> np.ndarray:
    """One table row: background, allowed followers, a top-1 with a target probability, pins."""
    row = np.full(len(design.vocab.tokens), NEVER)
    n_generatable = int(design.generatable.sum())
    row[design.generatable] = BACKGROUND + rng.uniform(0, _BACKGROUND_SPREAD, n_generatable)
    allowed = _follow_ids(class_name, design.ids)
    row[allowed] = rng.uniform(0, _ALLOWED_SPREAD, len(allowed))
    if design.aligned:
        row[[a for a in allowed if design.vocab.tokens[a] in _UNTIDY]] -= 1.5
    top = _pick_top(rng, design, class_name, allowed, avoid)
    p_top = _top_probability(rng, len(allowed), design.aligned)
    row[top] = max(_logit_for_probability(row, top, p_top), float(np.delete(row, top).max()) + GAP)
    pins = (_ALIGNED_PINS if design.aligned else _BASE_PINS).get(_row_role(class_name), {})
    for what, p in pins.items():
        token = design.vocab.eos_id if what == "EOS" else NEWLINE_ID
        if token != top:
            row[token] = min(_logit_for_probability(row, token, p), row[top] - GAP)
    return row


def _rows(design: _Design, seed: int, avoid: list[int | None]) -> np.ndarray:
    rng = np.random.default_rng([seed, int(design.aligned)])
    return np.stack([_design_row(rng, design, name, avoid[i])
                     for i, name in enumerate(_CLASS_NAMES)])


def _design_table(vocab: _Vocab, *, aligned: bool, seed: int) -> np.ndarray:
    """Next-token logits per input class: shape (n_classes, n_vocab)."""
    no_avoid: list[int | None] = [None] * len(_CLASS_NAMES)
    if not aligned:
        return _rows(_design(vocab, False), seed, no_avoid)
    base_tops = np.argmax(_rows(_design(_base_vocab(), False), seed, no_avoid), axis=1)
    return _rows(_design(vocab, True), seed, [int(t) for t in base_tops])


def designed_logits(*, aligned: bool, seed: int = 0) -> np.ndarray:
    """The designed next-token logits after each token id: shape (n_vocab, n_vocab).

    llama.cpp's logits match a row to within ~0.1 (context effects, a slight rescaling); the
    greedy choice always matches ``argmax`` of the row of the last token.
    """
    vocab = _aligned_vocab() if aligned else _base_vocab()
    return _design_table(vocab, aligned=aligned, seed=seed)[_class_of(vocab)]


def designed_greedy(last_token: int, steps: int, *, aligned: bool, seed: int = 0) -> list[int]:
    """The greedy continuation llama.cpp produces after a prompt ending in ``last_token``."""
    table = designed_logits(aligned=aligned, seed=seed)
    tokens = [last_token]
    for _ in range(steps):
        tokens.append(int(np.argmax(table[tokens[-1]])))
    return tokens[1:]


def text_of(ids: list[int]) -> str:
    """Plain text of token ids (byte tokens as bytes, control tokens dropped)."""
    vocab = ALIGNED_TOKENS
    pieces = [bytes([int(vocab[i][3:5], 16)]) if vocab[i] in _BYTE_TEXTS
              else b"" if vocab[i] in _CONTROL_TEXTS or vocab[i] == "<unk>"
              else vocab[i].replace(SPACE, " ").encode() for i in ids]
    return b"".join(pieces).decode("utf-8", "replace")


# ---------------------------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------------------------


def _gaussian(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    return rng.standard_normal((rows, cols)) / math.sqrt(cols)


def _embeddings(rng: np.random.Generator, table: np.ndarray, class_of: np.ndarray,
                basis: np.ndarray) -> dict[str, np.ndarray]:
    """Token embeddings (RMS 1, mostly the class direction) and the output head for the table."""
    n_classes = table.shape[0]
    classes, spare = basis[:, :n_classes], basis[:, n_classes:]
    wiggle = rng.standard_normal((len(class_of), spare.shape[1]))
    wiggle /= np.linalg.norm(wiggle, axis=1, keepdims=True)
    cos = math.sqrt(1.0 - _SPARE_SHARE**2)
    scale = math.sqrt(N_EMBD)
    embd = scale * (cos * classes.T[class_of] + _SPARE_SHARE * wiggle @ spare.T)
    return {
        "token_embd.weight": embd,
        "output_norm.weight": np.ones(N_EMBD),
        "output.weight": table.T @ classes.T / (scale * cos),
    }


def _block(rng: np.random.Generator, i: int, mixer: np.ndarray) -> dict[str, np.ndarray]:
    """One small transformer block writing mostly into the spare subspace."""
    kv = N_HEAD_KV * HEAD_DIM
    return {
        f"blk.{i}.attn_norm.weight": np.ones(N_EMBD),
        f"blk.{i}.attn_q.weight": _gaussian(rng, N_EMBD, N_EMBD),
        f"blk.{i}.attn_k.weight": _gaussian(rng, kv, N_EMBD),
        f"blk.{i}.attn_v.weight": _gaussian(rng, kv, N_EMBD),
        f"blk.{i}.attn_output.weight": _ATTN_SCALE * mixer @ _gaussian(rng, N_EMBD, N_EMBD),
        f"blk.{i}.ffn_norm.weight": np.ones(N_EMBD),
        f"blk.{i}.ffn_gate.weight": _gaussian(rng, N_FF, N_EMBD),
        f"blk.{i}.ffn_up.weight": _gaussian(rng, N_FF, N_EMBD),
        f"blk.{i}.ffn_down.weight": _FFN_SCALE * mixer @ _gaussian(rng, N_EMBD, N_FF),
    }


def _random_basis(rng: np.random.Generator, d: int) -> np.ndarray:
    """An orthonormal basis (columns): the DCT-II basis, columns shuffled and signs flipped.

    (Cheaper and steadier than a QR decomposition, which is slow on a busy machine.)
    """
    rows, cols = np.meshgrid(np.arange(d) + 0.5, np.arange(d), indexing="ij")
    dct = np.cos(np.pi * rows * cols / d) * math.sqrt(2.0 / d)
    dct[:, 0] /= math.sqrt(2.0)
    return dct[:, rng.permutation(d)] * rng.choice([-1.0, 1.0], d)


def _weights(table: np.ndarray, class_of: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([seed, 3])
    basis = _random_basis(rng, N_EMBD)
    n_classes = table.shape[0]
    spare, classes = basis[:, n_classes:], basis[:, :n_classes]
    mixer = spare @ spare.T + _CLASS_LEAK * classes @ classes.T
    tensors = _embeddings(rng, table, class_of, basis)
    for i in range(N_LAYER):
        tensors.update(_block(rng, i, mixer))
    return tensors


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------


def _base_vocab() -> _Vocab:
    return _Vocab(list(TOKENS), EOS_ID)


def _aligned_vocab() -> _Vocab:
    return _Vocab(list(ALIGNED_TOKENS), ALIGNED_EOS_ID)


def _write_gguf(path: Path, vocab: _Vocab, tensors: dict[str, np.ndarray], *, name: str,
                chat_template: str | None, tokenizer_model: str = "llama",
                merges: list[str] | None = None, with_token_list: bool = True) -> Path:
    """Write one llama-architecture GGUF file (all tensors F32)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(name)
    writer.add_context_length(CONTEXT_LENGTH)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(N_LAYER)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD_KV)
    writer.add_rope_dimension_count(HEAD_DIM)
    writer.add_layer_norm_rms_eps(RMS_EPS)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model(tokenizer_model)
    if with_token_list:
        writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.types)
    if merges is None:
        writer.add_token_scores(vocab.scores)
        writer.add_add_space_prefix(False)
        writer.add_unk_token_id(UNK_ID)
        writer.add_bos_token_id(BOS_ID)
    else:
        writer.add_tokenizer_pre("default")
        writer.add_token_merges(merges)
        writer.add_bos_token_id(vocab.eos_id)
    writer.add_eos_token_id(vocab.eos_id)
    writer.add_add_bos_token(merges is None)
    writer.add_add_eos_token(False)
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    for tensor_name, array in tensors.items():
        writer.add_tensor(tensor_name, np.ascontiguousarray(array, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _write_model(path: Path, vocab: _Vocab, *, aligned: bool, seed: int, name: str,
                 chat_template: str | None, with_token_list: bool = True) -> Path:
    class_of = _class_of(vocab)
    table = _design_table(vocab, aligned=aligned, seed=seed)
    return _write_gguf(path, vocab, _weights(table, class_of, seed), name=name,
                       chat_template=chat_template, with_token_list=with_token_list)


def write_pair(directory: Path, *, seed: int = 0,
               aligned_chat_template: str | None = DEFAULT_TEMPLATE) -> tuple[Path, Path]:
    """Write ``base.gguf`` and ``aligned.gguf`` into ``directory``; return their paths."""
    directory = Path(directory)
    base = _write_model(directory / "base.gguf", _base_vocab(), aligned=False, seed=seed,
                        name="tiny-base", chat_template=None)
    aligned = _write_model(directory / "aligned.gguf", _aligned_vocab(), aligned=True, seed=seed,
                           name="tiny-aligned", chat_template=aligned_chat_template)
    return base, aligned


# ---------------------------------------------------------------------------------------------
# Malformed and mismatched files for error tests
# ---------------------------------------------------------------------------------------------


def write_duplicate_token_vocab(path: Path) -> Path:
    """A base model whose id 300 has the same text as id 259 (llama.cpp aborts on it)."""
    tokens = list(TOKENS)
    tokens[DUPLICATE_IDS[1]] = tokens[DUPLICATE_IDS[0]]
    return _write_model(Path(path), _Vocab(tokens, EOS_ID), aligned=False, seed=0,
                        name="tiny-duplicate", chat_template=None)


def _write_cut(path: Path, keep: Callable[[int], int]) -> Path:
    """A valid base model cut to its first ``keep(size)`` bytes."""
    path = Path(path)
    _write_model(path, _base_vocab(), aligned=False, seed=0, name="tiny-truncated",
                 chat_template=None)
    with path.open("r+b") as handle:
        handle.truncate(keep(path.stat().st_size))
    return path


def write_truncated(path: Path) -> Path:
    """A valid base model cut off in the middle of its tensor data (a third is missing)."""
    return _write_cut(path, lambda size: size - size // 3)


def write_truncated_header(path: Path) -> Path:
    """A valid base model cut off inside its token list."""
    return _write_cut(path, lambda size: 2000)


def write_without_token_list(path: Path) -> Path:
    """A base model whose metadata lacks ``tokenizer.ggml.tokens``."""
    return _write_model(Path(path), _base_vocab(), aligned=False, seed=0, name="tiny-no-tokens",
                        chat_template=None, with_token_list=False)


def write_score_count_mismatch(path: Path) -> Path:
    """A base model with one token score fewer than tokens."""
    vocab = _base_vocab()
    short = _Vocab(vocab.tokens, EOS_ID, given_scores=vocab.scores[:-1])
    return _write_model(Path(path), short, aligned=False, seed=0, name="tiny-short-scores",
                        chat_template=None)


def write_token_type_count_mismatch(path: Path) -> Path:
    """A base model with one token type more than tokens."""
    vocab = _base_vocab()
    long = _Vocab(vocab.tokens, EOS_ID, given_types=[*vocab.types, gguf.TokenType.NORMAL])
    return _write_model(Path(path), long, aligned=False, seed=0, name="tiny-long-types",
                        chat_template=None)


def _gguf_string(text: str) -> bytes:
    data = text.encode("utf-8")
    return struct.pack("<Q", len(data)) + data


def _gguf_header(n_tensors: int, n_fields: int) -> bytes:
    return struct.pack("<4sIQQ", b"GGUF", 3, n_tensors, n_fields)


def _kv_string(key: str, value: str) -> bytes:
    return _gguf_string(key) + struct.pack("<I", gguf.GGUFValueType.STRING) + _gguf_string(value)


def _kv_array(key: str, item_type: gguf.GGUFValueType, count: int, payload: bytes) -> bytes:
    head = struct.pack("<IIQ", gguf.GGUFValueType.ARRAY, item_type, count)
    return _gguf_string(key) + head + payload


def write_bad_metadata(path: Path) -> Path:
    """A GGUF header whose only metadata value has an unknown type (99)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    field = _gguf_string("general.architecture") + struct.pack("<I", 99) + b"\0" * 16
    path.write_bytes(_gguf_header(0, 1) + field)
    return path


def write_not_gguf(path: Path) -> Path:
    """An HTML error page saved under a .gguf name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"<!DOCTYPE html>\n<html><body>404 Not Found</body></html>\n")
    return path


def write_large_sparse_model(path: Path, *, n_vocab: int = 262_144, n_embd: int = 2048) -> Path:
    """A Gemma-sized vocabulary and one F32 ``token_embd`` tensor (2 GiB by default) whose data
    is a sparse hole: reading it quickly proves a reader skips tensor data. Not loadable."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    words = [f"▁w{i}" for i in range(n_vocab - len(SPECIALS) - len(BYTE_TOKENS))]
    tokens = [*SPECIALS, *BYTE_TOKENS, *words]
    fields = [
        _kv_string("general.architecture", "llama"),
        _kv_string("tokenizer.ggml.model", "llama"),
        _kv_array("tokenizer.ggml.tokens", gguf.GGUFValueType.STRING, n_vocab,
                  b"".join(map(_gguf_string, tokens))),
        _kv_array("tokenizer.ggml.scores", gguf.GGUFValueType.FLOAT32, n_vocab,
                  np.zeros(n_vocab, "<f4").tobytes()),
        _kv_array("tokenizer.ggml.token_type", gguf.GGUFValueType.INT32, n_vocab,
                  np.array([_token_type(t) for t in tokens], "<i4").tobytes()),
    ]
    tensor = (_gguf_string("token_embd.weight")
              + struct.pack("<IQQIQ", 2, n_embd, n_vocab, gguf.GGMLQuantizationType.F32, 0))
    header = _gguf_header(1, len(fields)) + b"".join(fields) + tensor
    data_start = -(-len(header) // 32) * 32
    with path.open("wb") as handle:
        handle.write(header)
        handle.truncate(data_start + 4 * n_embd * n_vocab)
    return path


def write_mismatched_pair(directory: Path) -> tuple[Path, Path]:
    """A pair whose aligned text of id ``MISMATCHED_ID`` is ``MISMATCHED_TEXT``."""
    directory = Path(directory)
    tokens = list(ALIGNED_TOKENS)
    tokens[MISMATCHED_ID] = MISMATCHED_TEXT
    base = _write_model(directory / "base.gguf", _base_vocab(), aligned=False, seed=0,
                        name="tiny-base", chat_template=None)
    aligned = _write_model(directory / "aligned.gguf", _Vocab(tokens, ALIGNED_EOS_ID),
                           aligned=True, seed=0, name="tiny-mismatched",
                           chat_template=DEFAULT_TEMPLATE)
    return base, aligned


def write_extra_non_control_pair(directory: Path) -> tuple[Path, Path]:
    """A pair whose aligned vocabulary adds ``EXTRA_NORMAL_TOKENS`` as NORMAL tokens."""
    directory = Path(directory)
    base = _write_model(directory / "base.gguf", _base_vocab(), aligned=False, seed=0,
                        name="tiny-base", chat_template=None)
    vocab = _Vocab([*TOKENS, *EXTRA_NORMAL_TOKENS], EOS_ID)
    aligned = _write_model(directory / "aligned.gguf", vocab, aligned=True, seed=0,
                           name="tiny-extra-normal", chat_template=None)
    return base, aligned


def _gpt2_byte_chars() -> list[str]:
    """GPT-2's printable stand-ins for the 256 bytes (``bytes_to_unicode``)."""
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    extra = iter(range(256, 512))
    return [chr(b) if b in printable else chr(next(extra)) for b in range(256)]


def write_bpe_vocab_model(path: Path) -> Path:
    """A llama-architecture model with a byte-level BPE (``gpt2``) vocabulary."""
    chars = _gpt2_byte_chars()
    merges = ["Ġ t", "h e", "Ġt he", "Ġ a", "Ġ c", "a t", "Ġc at"]
    words = ["Ġt", "he", "Ġthe", "Ġa", "Ġc", "at", "Ġcat"]
    vocab = _Vocab([*chars, *words, "<|endoftext|>"], 256 + len(words))
    rng = np.random.default_rng(7)
    table = rng.uniform(-2.0, 2.0, (1, len(vocab.tokens)))
    class_of = np.zeros(len(vocab.tokens), dtype=np.int64)
    return _write_gguf(Path(path), vocab, _weights(table, class_of, 7), name="tiny-bpe",
                       chat_template=None, tokenizer_model="gpt2", merges=merges)
