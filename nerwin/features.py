"""Token features: each turns the tokens of a sentence into ids of its own embedding table.

A feature is one small object: its name, its vocabulary (built from the training data, with
``<unk>`` and the pads, or a fixed class list), the dim of its table, the ids of the pads
that fill a window outside the sentence, and ``ids(tokens)``. The network looks every
feature up at each of the 2m+1 window positions and concatenates the vectors in the order
of the list (see nerwin.nn.network). Each feature builds its table (``table()``, nerwin.nn.tables)
and encodes a corpus into that table's input (``encode()``). Adding a feature is one class
here (and, for a new kind of table, one in nerwin.nn.tables) plus a config key
(nerwin.config.FeaturesConfig) and one line in :func:`build_features`.

| feature   | param  | ids of a token                                                       |
|-----------|--------|----------------------------------------------------------------------|
| word      | E_word | the normalised word (``features.lowercase``, ``features.digits``)      |
| casing    | E_case | one of 5 casing classes (nerwin.vocab.CASINGS)                       |
| prefixN   | E_prefixN | the first N characters of the lowercased, digit-normalised word  |
| suffixN   | E_suffixN | the last N characters of it (a shorter word is its own affix)    |
| shape     | E_shape | the word's shape: X upper, x lower, d digit, other characters kept, |
|           |        | every run of one class cut to 3 (Paris → Xxxx, EU → XX, 12.5 → dd.d) |
| chars     | E_char, W_char, b_char | a row of ``max_len`` character ids (nerwin.nn.chars) |
| gaz_NAME  | E_gaz_NAME | the token's place in a match of gazetteer NAME: O, B, I (and E, S |
|           |        | when model.scheme is iobes), by longest match (nerwin.gazetteer)      |
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any

import numpy as np

from nerwin.config import FeaturesConfig
from nerwin.conll import Corpus
from nerwin.gazetteer import CLASSES, PAD, Gazetteer, load_gazetteer
from nerwin.nn.chars import CharBatch
from nerwin.nn.tables import CharTable, LookupTable, Table, table_param
from nerwin.vocab import (
    BOS_ID,
    CASE_PAD,
    CASINGS,
    EOS_ID,
    SPECIALS,
    UNK_ID,
    Vocab,
    encode_casing,
    encode_words,
    normalise,
)
from nerwin.windows import TokenIds

#: Character ids of the char encoder: 0 pads a word's row (and the convolution's borders),
#: 1 is an unknown character, 2 and 3 are the single "characters" of the left and right
#: sentence pads (a window position outside the sentence).
CHAR_SPECIALS = ("<pad>", "<unk>", "<s>", "</s>")
CHAR_PAD, CHAR_UNK, CHAR_BOS, CHAR_EOS = 0, 1, 2, 3
SHAPE_RUN = 3  # a run of one character class is cut to this many characters


@dataclass(frozen=True)
class Feature:
    """Base of every token feature.

    name:  the feature's name (the key of its vocabulary in a checkpoint);
    param: the name of its embedding table in the network;
    vocab: its index of strings (row i of the table is the vector of ``vocab.itos[i]``);
    dim:   the floats it adds at each window position.
    """

    name: str
    param: str
    vocab: Vocab
    dim: int

    left_pad: int = BOS_ID
    right_pad: int = EOS_ID
    dtype: type = np.int32

    #: The config key that sets ``dim`` (named by the memory estimate's advice).
    DIM_KEY = ""
    #: Is the vocabulary built from the training data (so a checkpoint restores it)? The
    #: word feature's comes in separately, the casing classes are fixed.
    LEARNED_VOCAB = True
    #: Are a token's ids a function of its string alone (not of its neighbours)? Then a
    #: tagger may keep them from chunk to chunk (:class:`TypeCache`).
    PER_TOKEN = True

    def ids(self, tokens: Sequence[str]) -> np.ndarray:
        """(n,) ids of the tokens of one sentence."""
        get = self.vocab.stoi.get
        return np.fromiter((get(self.key(t), UNK_ID) for t in tokens), dtype=self.dtype,
                           count=len(tokens))

    def key(self, token: str) -> str:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def rule(self) -> dict[str, object]:
        """How its ids are computed from a token, for a runtime outside Python (what
        ``nerwin export`` writes in an ONNX file's metadata)."""
        raise NotImplementedError(f"no rule for the feature {self.name!r}")

    def stored_list(self) -> dict[str, Any] | None:
        """What a checkpoint keeps of this feature besides its vocabulary (a gazetteer's
        entries, in meta.json "gazetteers"), or None."""
        return None

    def table(self) -> Table:
        """The network's part for this feature (nerwin.nn.tables): a lookup table."""
        return LookupTable(self.param, len(self.vocab), self.dim, self.DIM_KEY)

    def encode(self, corpus: Corpus) -> TokenIds:
        """The table's input for every token of ``corpus`` (each distinct token encoded
        once); WindowData cuts it into the windows of a batch."""
        return self.from_type_ids(corpus, self.ids(corpus.types))

    def from_type_ids(self, corpus: Corpus, per_type: np.ndarray) -> Any:
        """The table's input for ``corpus`` from ``per_type``, the ids of each of its
        distinct tokens (``self.ids(corpus.types)``, or the same rows kept by a
        TypeCache): one assembly for both, so they cannot differ."""
        return TokenIds(per_type[corpus.token_ids], self.left_pad, self.right_pad)


@dataclass(frozen=True)
class WordFeature(Feature):
    """The word itself (pretrained vectors, if any, fill this table)."""

    lowercase: bool = True
    digits: bool = True

    DIM_KEY = "features.dim"
    LEARNED_VOCAB = False  # build_features gets it (the checkpoint's "word" vocabulary)

    def ids(self, tokens: Sequence[str]) -> np.ndarray:
        return encode_words(tokens, self.vocab, lowercase=self.lowercase, digits=self.digits)

    def rule(self) -> dict[str, object]:
        return {"kind": "word", "lowercase": self.lowercase, "digits": self.digits,
                "rule": "the id of nerwin.vocab.normalise(token) in the vocabulary, 0 "
                        "(<unk>) when absent; pads 1 (<s>) and 2 (</s>)"}


@dataclass(frozen=True)
class CasingFeature(Feature):
    """Five casing classes (id 0 is the pad on both sides)."""

    left_pad: int = CASE_PAD
    right_pad: int = CASE_PAD
    dtype: type = np.int8

    DIM_KEY = "features.casing_dim"
    LEARNED_VOCAB = False

    def ids(self, tokens: Sequence[str]) -> np.ndarray:
        return encode_casing(tokens)

    def rule(self) -> dict[str, object]:
        return {"kind": "casing", "rule": "nerwin.vocab.casing: one of 5 classes, 0 = pad"}


def affix_key(token: str, kind: str, n: int) -> str:
    """The prefix or suffix of length ``n`` of the lowercased, digit-normalised token."""
    w = normalise(token, lowercase=True, digits=True)
    return w[:n] if kind == "prefix" else w[-n:]


@dataclass(frozen=True)
class AffixFeature(Feature):
    """The first (prefix) or last (suffix) ``n`` characters of the lowercased word."""

    kind: str = "suffix"
    n: int = 3

    DIM_KEY = "features.affix_dim"

    def key(self, token: str) -> str:
        return affix_key(token, self.kind, self.n)

    def rule(self) -> dict[str, object]:
        return {"kind": self.kind, "n": self.n, "rule": f"the {self.kind} of length {self.n} "
                f"of the lowercased digit-normalised word"}


def word_shape(token: str) -> str:
    """X for an upper-case letter, x for any other letter, d for a digit, anything else
    kept; then every run of one symbol is cut to SHAPE_RUN (3) characters.

    Paris → Xxxx, Washington → Xxxx, EU → XX, 12.5 → dd.d, 1996 → ddd, Jean-Pierre →
    Xxxx-Xxxx, iPhone → xXxxx, NATO → XXX.

    A character's symbol depends on it alone, so one str.translate maps them all (its
    table learns each character's symbol on first sight) and one regex cuts the runs, in
    C rather than a Python step per character.
    """
    return _RUNS.sub(_RUN_CUT, token.translate(_SHAPE_OF))


class _ShapeSymbols(dict):
    """str.translate's table for word_shape: a character's code -> its symbol, made by
    :func:`shape_symbol` the first time the character is seen."""

    def __missing__(self, code: int) -> str:
        sym = self[code] = shape_symbol(chr(code))
        return sym


def shape_symbol(ch: str) -> str:
    """word_shape's symbol of one character."""
    if ch.isdigit():
        return "d"
    if ch.isalpha():
        return "X" if ch.isupper() else "x"
    return ch


_SHAPE_OF = _ShapeSymbols()
_RUNS = re.compile(rf"(.)\1{{{SHAPE_RUN},}}", re.DOTALL)  # a run longer than SHAPE_RUN


def _RUN_CUT(m: re.Match) -> str:  # a function: re.sub expands a template more slowly
    return m[1] * SHAPE_RUN


@dataclass(frozen=True)
class ShapeFeature(Feature):
    """The word's shape (see :func:`word_shape`)."""

    DIM_KEY = "features.shape_dim"

    def key(self, token: str) -> str:
        return word_shape(token)

    def rule(self) -> dict[str, object]:
        return {"kind": "shape", "rule": "nerwin.features.word_shape"}


def clip_word(word: str, max_len: int) -> str:
    """A word of at most ``max_len`` characters: a longer one keeps its first
    max_len - max_len // 2 and its last max_len // 2 characters (prefix and suffix carry
    the most information), so the cut is deterministic."""
    if len(word) <= max_len:
        return word
    tail = max_len // 2
    return word[: max_len - tail] + (word[-tail:] if tail else "")


@dataclass(frozen=True)
class CharFeature(Feature):
    """The characters of the word (case kept, digits kept) as a row of ``max_len`` ids,
    padded with CHAR_PAD; read by the character encoder (nerwin.nn.chars)."""

    filters: int = 30
    width: int = 3
    max_len: int = 20
    dtype: type = np.int16

    DIM_KEY = "features.char_dim"

    def ids(self, tokens: Sequence[str]) -> np.ndarray:
        """(n, max_len) character ids; a word longer than max_len is cut by clip_word."""
        get = self.vocab.stoi.get
        out = np.full((len(tokens), self.max_len), CHAR_PAD, dtype=self.dtype)
        for i, t in enumerate(tokens):
            w = clip_word(t, self.max_len)
            out[i, : len(w)] = [get(ch, CHAR_UNK) for ch in w]
        return out

    def rule(self) -> dict[str, object]:
        return {"kind": "chars", "filters": self.filters, "width": self.width,
                "max_len": self.max_len,
                "rule": "character ids (unknown 1, <pad> 0), clipped by "
                        "nerwin.features.clip_word; pads are one character 2 (<s>) or "
                        "3 (</s>)"}

    def pad_row(self, pad: int) -> np.ndarray:
        """The (max_len,) row of a window position outside the sentence: one pad character."""
        row = np.full(self.max_len, CHAR_PAD, dtype=self.dtype)
        row[0] = pad
        return row

    def encode_types(self, types: Sequence[str]) -> np.ndarray:
        """The (T + 2, max_len) character table of a corpus's distinct tokens: rows 0 and 1
        are the left and right sentence pads, row i + 2 is ``types[i]``."""
        return self._framed(self.ids(types))

    def _framed(self, rows: np.ndarray) -> np.ndarray:
        return np.concatenate([self.pad_row(self.left_pad)[None], self.pad_row(
            self.right_pad)[None], rows]).astype(self.dtype)

    def table(self) -> CharTable:
        return CharTable(len(self.vocab), self.dim, self.filters, self.width, self.max_len,
                         self.param, self.DIM_KEY)

    def encode(self, corpus: Corpus) -> CharWindows:  # type: ignore[override]
        """Each token's row of the corpus's character table (rows 0, 1: the pads)."""
        return self.from_type_ids(corpus, self.ids(corpus.types))

    def from_type_ids(self, corpus: Corpus, per_type: np.ndarray) -> CharWindows:
        # The table holds the corpus's own distinct tokens in their order (not a cache's),
        # so a batch's CharBatch has its rows in the same order however they were computed.
        return CharWindows(corpus.token_ids + np.int32(2), self._framed(per_type))


@dataclass(frozen=True)
class GazetteerFeature(Feature):
    """A token's place in a match of one gazetteer (nerwin.gazetteer): a small fixed class
    set, embedded like casing. Its ids depend on the token's neighbours, so it encodes whole
    sentences (each distinct token's key is computed once)."""

    gazetteer: Gazetteer | None = None
    scheme: str = "iob2"
    left_pad: int = PAD
    right_pad: int = PAD
    dtype: type = np.int8

    DIM_KEY = "features.gazetteer_dim"
    LEARNED_VOCAB = False  # the classes are fixed; the entries go to the checkpoint apart
    PER_TOKEN = False  # a match spans tokens: a token's id depends on its neighbours

    def ids(self, tokens: Sequence[str]) -> np.ndarray:
        """The match ids of one sentence."""
        assert self.gazetteer is not None
        return self.gazetteer.match_tokens(tokens, self.scheme)

    def encode(self, corpus: Corpus) -> TokenIds:
        g = self.gazetteer
        assert g is not None
        keys = [g.key(t) for t in corpus.types]
        offsets = np.concatenate([[0], np.cumsum(corpus.lengths)]).astype(np.int64)
        ids = g.match(keys, np.asarray(corpus.token_ids), offsets, self.scheme)
        return TokenIds(ids, self.left_pad, self.right_pad)

    def stored_list(self) -> dict[str, Any] | None:
        assert self.gazetteer is not None
        return self.gazetteer.to_meta()

    def rule(self) -> dict[str, object]:
        assert self.gazetteer is not None
        return {"kind": "gazetteer", "list": self.gazetteer.name, "scheme": self.scheme,
                "lowercase": self.gazetteer.lowercase, "entries": len(self.gazetteer.entries),
                "rule": "nerwin.gazetteer: greedy leftmost-longest match of the list's "
                        "entries (nerwin_meta.gazetteers) within the sentence; ids 0 pad, "
                        "1 O, 2 B, 3 I" + (", 4 E, 5 S" if self.scheme == "iobes" else "")}


def gazetteer_features(f: FeaturesConfig, scheme: str = "iob2",
                       stored: dict[str, dict] | None = None) -> list[Feature]:
    """One feature per list of features.gazetteers (in the config's order), read from its
    file, or from a checkpoint's ``stored`` lists (meta.json "gazetteers", by feature name)."""
    out: list[Feature] = []
    for name, path in (f.gazetteers or {}).items():
        fname = f"gaz_{name}"
        if stored is not None:
            if fname not in stored:
                raise ValueError(f"the gazetteer {name!r} is not stored in the checkpoint")
            g = Gazetteer.from_meta(name, stored[fname])
        else:
            g = load_gazetteer(name, path, f.gazetteer_lowercase)
        out.append(GazetteerFeature(fname, table_param(fname), Vocab(CLASSES[scheme]),
                                    f.gazetteer_dim, gazetteer=g, scheme=scheme))
    return out


def counted_vocab(keys: Iterable[str], min_count: int, specials: tuple[str, ...],
                  weights: Iterable[int] | None = None) -> Vocab:
    """Specials, then keys seen at least ``min_count`` times (most frequent first, ties by
    string: deterministic). With ``weights``, key i counts ``weights[i]`` times (the keys
    of distinct tokens, weighted by how often each token occurs)."""
    if weights is None:
        counts = Counter(keys)
    else:
        counts = Counter()
        for k, w in zip(keys, weights):
            counts[k] += w
    kept = [k for k, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            if c >= min_count and k not in specials]
    return Vocab(tuple(specials) + tuple(kept))


def build_features(f: FeaturesConfig, words: Vocab, tokens: Sequence[str],
                   counts: Sequence[int] | None = None, *, scheme: str = "iob2",
                   gazetteers: dict[str, dict] | None = None) -> tuple[Feature, ...]:
    """The configured features in the network's order: word, casing, prefixes, suffixes,
    shape, chars, gazetteers. ``f`` is a FeaturesConfig, ``tokens`` every training token (in
    order), or with ``counts`` every distinct training token and how often it occurs.
    ``scheme``: model.scheme (the gazetteers' match classes); ``gazetteers``: a
    checkpoint's stored lists (else the list files are read)."""
    if counts is None:
        counts = [1] * len(tokens)
    feats: list[Feature] = [WordFeature("word", table_param("word"), words, f.dim,
                                        lowercase=f.lowercase, digits=f.digits)]
    if f.casing_dim > 0:
        feats.append(CasingFeature("casing", table_param("casing"), Vocab(CASINGS), f.casing_dim))
    for kind, lengths in (("prefix", f.prefixes), ("suffix", f.suffixes)):
        for n in lengths:
            vocab = counted_vocab((affix_key(t, kind, n) for t in tokens), f.affix_min_count,
                                  SPECIALS, counts)
            feats.append(AffixFeature(f"{kind}{n}", table_param(f"{kind}{n}"), vocab, f.affix_dim,
                                      kind=kind, n=n))
    if f.shape_dim > 0:
        vocab = counted_vocab((word_shape(t) for t in tokens), f.affix_min_count, SPECIALS,
                              counts)
        feats.append(ShapeFeature("shape", table_param("shape"), vocab, f.shape_dim))
    if f.char_filters > 0:
        clipped = [clip_word(t, f.char_max_len) for t in tokens]
        chars = (ch for w in clipped for ch in w)
        weights = (c for w, c in zip(clipped, counts) for _ in w)
        vocab = counted_vocab(chars, 1, CHAR_SPECIALS, weights)
        feats.append(CharFeature("chars", table_param("chars"), vocab, f.char_dim,
                                 left_pad=CHAR_BOS, right_pad=CHAR_EOS,
                                 filters=f.char_filters, width=f.char_width,
                                 max_len=f.char_max_len))
    feats += gazetteer_features(f, scheme, gazetteers)
    return tuple(feats)


def features_from_vocabs(f: FeaturesConfig, vocabs: dict[str, list[str]], *,
                         scheme: str = "iob2", gazetteers: dict[str, dict] | None = None
                         ) -> tuple[Feature, ...]:
    """Rebuild the configured features from a checkpoint's vocabularies (by feature name)
    and its stored gazetteers (meta.json "gazetteers")."""
    fake_tokens: list[str] = []
    feats = build_features(f, Vocab(tuple(vocabs["word"])), fake_tokens, scheme=scheme,
                           gazetteers=gazetteers if gazetteers is not None else {})
    out = []
    for feat in feats:
        if feat.LEARNED_VOCAB:
            out.append(_replace_vocab(feat, Vocab(tuple(vocabs[feat.name]))))
        else:
            out.append(feat)
    return tuple(out)


def _replace_vocab(feat: Feature, vocab: Vocab) -> Feature:
    import dataclasses

    return dataclasses.replace(feat, vocab=vocab)


@dataclass(frozen=True)
class CharWindows:
    """The char feature's input of a corpus: ``ids`` (N,) the row of ``table`` (T + 2,
    max_len) of each token; one row per distinct token, after the rows of the left (0) and
    right (1) sentence pads. The windows of a batch give the network's
    :class:`~nerwin.nn.chars.CharBatch`: the batch's distinct rows, cut to its longest word."""

    ids: np.ndarray
    table: np.ndarray

    left_pad: int = 0
    right_pad: int = 1

    def window(self, pos: np.ndarray, left: np.ndarray, right: np.ndarray) -> CharBatch:
        """The CharBatch of the (B, 2m+1) windows at ``pos`` (see WindowData.positions)."""
        rows_of = self.ids[pos]
        rows_of[left] = self.left_pad
        rows_of[right] = self.right_pad
        u, inv = np.unique(rows_of, return_inverse=True)
        rows = self.table[u]
        width = max(1, int((rows != CHAR_PAD).sum(axis=1).max())) if len(u) else 1
        return CharBatch(inv.reshape(rows_of.shape), rows[:, :width])

    def __len__(self) -> int:
        return int(self.ids.shape[0])


#: Distinct token strings a TypeCache holds before it starts afresh: some 25 MB when full
#: with every feature kind (measured with tracemalloc: 131k strings of 3-12 letters for
#: word, casing, prefix2, suffix2-4, shape and chars: 18 MB of dict and ids, 7 MB of
#: strings), and more than the distinct tokens of CoNLL-2003 (23,623 in train), so a run
#: over such text encodes each string once.
TYPE_CACHE_LIMIT = 1 << 17


class TypeCache:
    """The ids of every token string seen so far, for each feature whose ids are a
    function of the string alone (``Feature.PER_TOKEN``), kept from call to call: a
    tagger encodes chunk after chunk of text in which the same strings come back, and each
    is then encoded once per run instead of once per chunk.

    The ids are those of ``feature.ids`` for the string, whichever call first saw it, so
    an encoding through the cache equals the one without (tests compare them). Memory
    stays bounded: when the strings held would pass ``limit``, the cache starts afresh
    (the strings of the call at hand are then encoded again; nothing else changes).
    """

    def __init__(self, features: Sequence[Feature], limit: int = TYPE_CACHE_LIMIT) -> None:
        self.features = tuple(features)
        self.cached = [k for k, f in enumerate(self.features) if f.PER_TOKEN]
        self.limit = limit
        self.misses = 0  # strings encoded (for tests and profiling)
        self.clear()

    def clear(self) -> None:
        self.index: dict[str, int] = {}  # string -> its row in each of self.rows
        self.rows: list[np.ndarray] = [np.empty(0) for _ in self.cached]
        self.size = 0

    def lookup(self, types: Sequence[str]) -> list[np.ndarray]:
        """For each cached feature (in ``self.cached`` order), the ids of ``types`` (distinct
        strings) as ``feature.ids(types)`` gives them."""
        get = self.index.get
        at = np.fromiter(map(get, types, repeat(-1)), dtype=np.int64, count=len(types))
        new = np.flatnonzero(at < 0)
        if len(new):
            if self.size + len(new) > self.limit:
                self.clear()
                new = np.arange(len(types))
            fresh = [types[i] for i in new.tolist()]
            first = self.size
            self.index.update(zip(fresh, range(first, first + len(fresh))))
            at[new] = np.arange(first, first + len(fresh))
            self.size += len(fresh)
            self.misses += len(fresh)
            for j, k in enumerate(self.cached):
                self.rows[j] = _appended(self.rows[j], first, self.features[k].ids(fresh))
        return [rows[at] for rows in self.rows]

    def encode(self, corpus: Corpus) -> tuple[Any, ...]:
        """Every feature's input for ``corpus`` (as ``feature.encode``), the cached ones
        from their kept ids."""
        out: list[Any] = [None] * len(self.features)
        for k, per_type in zip(self.cached, self.lookup(corpus.types)):
            out[k] = self.features[k].from_type_ids(corpus, per_type)
        for k, f in enumerate(self.features):
            if out[k] is None:
                out[k] = f.encode(corpus)
        return tuple(out)


def _appended(rows: np.ndarray, used: int, more: np.ndarray) -> np.ndarray:
    """``more`` written after the first ``used`` rows of ``rows``, which grows (doubling,
    so appending is amortised) when full; returns the array holding them."""
    need = used + len(more)
    if used == 0 or need > len(rows):
        grown = np.empty((max(need, 2 * len(rows), 1024), *more.shape[1:]), dtype=more.dtype)
        if used:
            grown[:used] = rows[:used]
        rows = grown
    rows[used:need] = more
    return rows
