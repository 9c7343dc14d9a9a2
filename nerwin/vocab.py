"""Vocabularies: word normalisation, the word and tag indices, and the casing feature.

Word ids: 0 is ``<unk>``, 1 is ``<s>`` (padding left of the sentence), 2 is ``</s>``
(padding right of it); real words start at 3. Two distinct pads let the model tell "first
word of the sentence" from "last word". Casing ids: 0 is padding, then the five classes
of SENNA / CS224N: all lower, all caps, initial capital, mixed with a capital, no letters.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

UNK, BOS, EOS = "<unk>", "<s>", "</s>"
SPECIALS = (UNK, BOS, EOS)
UNK_ID, BOS_ID, EOS_ID = 0, 1, 2

CASINGS = ("<pad>", "lower", "allcaps", "initcap", "mixedcap", "noletters")
CASE_PAD = 0
_DIGIT = re.compile(r"\d")


def normalise(word: str, *, lowercase: bool, digits: bool) -> str:
    """The vocabulary key of a word: optionally lowercased, optionally digits -> 0."""
    if lowercase:
        word = word.lower()
    if digits:
        word = _DIGIT.sub("0", word)
    return word


def casing(word: str) -> int:
    """Casing class id of a raw word (1..5, see :data:`CASINGS`)."""
    if word.isascii():
        # In ASCII the letters are exactly the cased characters, so str's own tests (in C)
        # answer the questions of the general rule below, in its order of precedence.
        if word.islower():  # a letter, and no capital
            return 1
        if word.isupper():  # a letter, and no small one
            return 2
        if not word[:1].isupper():  # no letters, or both cases not led by a capital
            return 5 if word.lower() == word.upper() else 4
        rest = word[1:]
        return 3 if rest == rest.lower() else 4
    return casing_by_letters(word)


def casing_by_letters(word: str) -> int:
    """:func:`casing` by its general rule, a Python step per character (any string; the
    ASCII path above gives the same answers, a test compares them)."""
    letters = [ch for ch in word if ch.isalpha()]
    if not letters:
        return 5
    if all(ch.islower() for ch in letters):
        return 1
    if all(ch.isupper() for ch in letters):
        return 2
    if letters[0].isupper() and word[0].isalpha() and all(ch.islower() for ch in letters[1:]):
        return 3
    return 4


@dataclass(frozen=True)
class Vocab:
    """A string <-> id index. ``unk`` is the id of unknown strings (None: unknown is an error)."""

    itos: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "_stoi", {s: i for i, s in enumerate(self.itos)})
        if len(self._stoi) != len(self.itos):  # type: ignore[attr-defined]
            raise ValueError("duplicate entries in vocabulary")

    @property
    def stoi(self) -> dict[str, int]:
        return self._stoi  # type: ignore[attr-defined]

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, s: object) -> bool:
        return s in self.stoi


def build_word_vocab(counts: Counter, *, min_count: int = 1, max_size: int | None = None,
                     extra: Iterable[str] = ()) -> Vocab:
    """Specials, then train words seen ``min_count`` times (most frequent first, ties by
    string so the order is deterministic), capped at ``max_size``; then ``extra`` words
    (e.g. dev/test words that have a pretrained vector) not already in."""
    words = [w for w, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
             if c >= min_count and w not in SPECIALS]
    if max_size is not None:
        words = words[:max_size]
    seen = set(words)
    more = sorted({w for w in extra if w not in seen and w not in SPECIALS})
    return Vocab(SPECIALS + tuple(words) + tuple(more))


def build_tag_vocab(tag_seqs: Iterable[Sequence[str]], scheme: str = "iob2") -> Vocab:
    """Tags in a fixed order: O, then per type (sorted) B- before I- (IOB2), or B-, I-, E-,
    S- (``scheme="iobes"``). ``tag_seqs`` hold IOB2 (or any scheme's) tags: only their types
    count."""
    types = set()
    for tags in tag_seqs:
        for t in tags:
            if t != "O":
                types.add(t[2:])
    tags_sorted = ["O"]
    for typ in sorted(types):
        tags_sorted += [f"{p}-{typ}" for p in ("BIES" if scheme == "iobes" else "BI")]
    return Vocab(tuple(tags_sorted))


def tag_scheme(tags: Vocab | Sequence[str]) -> str:
    """The scheme a model's tag set is in: iobes when it holds an E- or S- tag, else iob2."""
    itos = tags.itos if isinstance(tags, Vocab) else tags
    return "iobes" if any(t[:2] in ("E-", "S-") for t in itos) else "iob2"


def encode_words(tokens: Sequence[str], vocab: Vocab, *, lowercase: bool,
                 digits: bool) -> np.ndarray:
    """(n,) int32 word ids, unknown words -> ``<unk>``."""
    get = vocab.stoi.get
    return np.fromiter((get(normalise(t, lowercase=lowercase, digits=digits), UNK_ID)
                        for t in tokens), dtype=np.int32, count=len(tokens))


def encode_casing(tokens: Sequence[str]) -> np.ndarray:
    """(n,) int8 casing ids."""
    return np.fromiter((casing(t) for t in tokens), dtype=np.int8, count=len(tokens))
