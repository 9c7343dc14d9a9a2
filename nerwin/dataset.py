"""From config to int windows: read the splits, build the vocabularies, encode.

file -> sentences (conll) -> ids (vocab) -> windows (windows). The vocabulary holds the
training words (``features.min_count``, ``features.max_size``) plus, when pretrained vectors
are configured, every other word of the configured files that has a vector: those rows are
known without labels, so dev and test words need not be ``<unk>``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nerwin.config import Config, FeaturesConfig, train_files
from nerwin.conll import Corpus, concat_corpora, read_conll
from nerwin.errors import NerwinError
from nerwin.features import Feature, TypeCache, build_features
from nerwin.vectors import Coverage, load_vectors, lookup_candidates, match_rows
from nerwin.vocab import (
    SPECIALS,
    Vocab,
    build_tag_vocab,
    build_word_vocab,
    normalise,
    tag_scheme,
)
from nerwin.windows import WindowData


def read_split(cfg: Config, path: str | Path) -> Corpus:
    """Read one data file with the config's scheme and tag column."""
    return read_conll(path, scheme=cfg.data.scheme, tag_column=cfg.data.tag_column)


def read_train(cfg: Config) -> Corpus:
    """The training corpus: every file of ``data.train`` read in turn into one flat corpus.

    Each file is read (and so checked) on its own, so an error names its file and line; the
    vocabularies and feature counts are then built from all of them together.
    """
    return concat_corpora([read_split(cfg, p) for p in train_files(cfg)])


@dataclass
class Lexicon:
    """What the model needs to turn text into ids: the token features (the first is the
    word, whose vocabulary is ``words``) and the tag index.

    ``pretrained`` (V, d) float32 and ``pretrained_mask`` (V,) bool say which rows come from
    the vectors file (None when no vectors are configured).
    """

    words: Vocab
    tags: Vocab
    pretrained: np.ndarray | None = None
    pretrained_mask: np.ndarray | None = None
    coverage: Coverage | None = None
    n_tokens: int = 0  # tokens of the files it was built from: the windows a run encodes
    features: tuple[Feature, ...] = ()

    def vocabs(self) -> dict[str, list[str]]:
        """Each feature's vocabulary by feature name (what a checkpoint stores)."""
        return {f.name: list(f.vocab.itos) for f in self.features}

    def gazetteers(self) -> dict[str, dict[str, Any]]:
        """Each gazetteer feature's list by feature name (what a checkpoint stores, so a
        model folder tags without the list files)."""
        return {f.name: g for f in self.features if (g := f.stored_list()) is not None}


def _normalised_counts(c: Corpus, norm: Any) -> Counter:
    """How often each normalised word occurs in ``c`` (counted per distinct token)."""
    per_type = np.bincount(c.token_ids, minlength=len(c.types)).tolist()
    counts: Counter = Counter()
    for t, n in zip(c.types, per_type):
        counts[norm(t)] += n
    return counts


def build_lexicon(cfg: Config, train: Corpus, others: Sequence[Corpus] = (), *,
                  check: bool = True) -> Lexicon:
    """Build the word and tag vocabularies (and match pretrained vectors).

    With ``check`` (what training needs; ``nerwin data`` only reports), training data
    without a single entity, and a tag of ``others`` (dev, test) that training never shows,
    are errors naming the file and line, before any training starts.
    """
    f = cfg.features
    norm = lambda w: normalise(w, lowercase=f.lowercase, digits=f.digits)  # noqa: E731
    counts = _normalised_counts(train, norm)
    tags = build_tag_vocab([train.tag_names], cfg.model.scheme)
    if check:
        check_tags(train, others, tags)
    n_tokens = train.n_tokens + sum(c.n_tokens for c in others)
    # Features count the distinct training tokens, each weighted by its frequency.
    type_counts = np.bincount(train.token_ids, minlength=len(train.types)).tolist()
    if f.vectors is None:
        words = build_word_vocab(counts, min_count=f.min_count, max_size=f.max_size)
        return Lexicon(words, tags, n_tokens=n_tokens,
                       features=build_features(f, words, train.types, type_counts,
                                               scheme=cfg.model.scheme))
    every = set(counts)
    for c in others:
        every.update(norm(t) for t in c.types)
    wanted = {k for w in every for k in lookup_candidates(w)}
    vecs = load_vectors(f.vectors, wanted, dim=f.dim)
    has_vec = {w for w in every if any(k in vecs.index for k in lookup_candidates(w))}
    words = build_word_vocab(counts, min_count=f.min_count, max_size=f.max_size,
                             extra=has_vec)
    n_special = len(SPECIALS)  # <unk>, <s>, </s> have no pretrained vector
    rows, found, coverage = match_rows(words.itos[n_special:], vecs)
    pretrained = np.zeros((len(words), f.dim), dtype=np.float32)
    mask = np.zeros(len(words), dtype=bool)
    pretrained[n_special:][found] = vecs.vectors[rows[found]]
    mask[n_special:] = found
    return Lexicon(words, tags, pretrained, mask, coverage, n_tokens,
                   build_features(f, words, train.types, type_counts,
                                  scheme=cfg.model.scheme))


def check_tags(train: Corpus, others: Sequence[Corpus], tags: Vocab) -> None:
    """Training data must hold an entity; dev/test tags must all occur in training.

    ``tags`` is the IOB2 tag index of ``train`` (every type seen gets both B- and I-).
    """
    files = ", ".join(map(str, train.paths))
    if len(tags) < 2:
        raise NerwinError(f"{files}: every one of its {train.n_tokens:,} tags is O "
                          f"(data.train); expected at least one entity (B-TYPE or I-TYPE) "
                          f"to learn from")
    types = sorted({t[2:] for t in tags.itos if t != "O"})
    for c in others:
        unseen = [k for k, t in enumerate(c.tag_names) if t not in tags]
        if unseen:
            i = int(np.flatnonzero(np.isin(c.tag_ids, unseen))[0])
            t = c.tag_names[c.tag_ids[i]]
            raise NerwinError(f"{c.where(i)}: entity type {t[2:]!r} never "
                              f"occurs in the training data {files}, so no "
                              f"model could predict it; expected one of "
                              f"{', '.join(types)}")


def encode(corpus: Corpus, lex: Lexicon, f: FeaturesConfig,
           cache: TypeCache | None = None) -> WindowData:
    """Every feature's id of every token of ``corpus``, plus tag ids (windows are built
    per batch by WindowData.rows). Each feature encodes each distinct token once; with
    ``cache`` (built on ``lex.features``), once for as long as the cache keeps it."""
    inputs = (cache.encode(corpus) if cache is not None
              else tuple(feat.encode(corpus) for feat in lex.features))
    return WindowData(inputs=inputs, labels=encode_labels(corpus, lex.tags),
                      lengths=corpus.lengths, window=f.window)


def encode_labels(corpus: Corpus, tags: Vocab) -> np.ndarray:
    """(N,) int32 tag ids; a tag the tag set does not hold is an error naming file and line.

    The corpus holds IOB2 tags (nerwin.conll converts every file on reading); a model whose
    tag set is IOBES (model.scheme) gets each one's IOBES form (:func:`iobes_labels`)."""
    if tag_scheme(tags) == "iobes":
        return iobes_labels(corpus, tags)
    table = np.array([tags.stoi.get(t, -1) for t in corpus.tag_names], dtype=np.int32)
    labels = table[corpus.tag_ids] if len(table) else np.zeros(0, dtype=np.int32)
    _check_labels(corpus, tags, labels)
    return labels


def iobes_labels(corpus: Corpus, tags: Vocab) -> np.ndarray:
    """(N,) int32 ids in the IOBES tag set ``tags`` of the corpus's IOB2 tags, over whole
    arrays: B-X/I-X stays when the next token of its sentence is I-X, else it becomes
    S-X/E-X (what nerwin.conll.from_iob2 does per sentence)."""
    names = corpus.tag_names
    ids = corpus.tag_ids
    if len(names) == 0 or len(ids) == 0:
        return np.zeros(0, dtype=np.int32)
    get = tags.stoi.get
    # cont[k]: the id (in names) of the I- tag that continues tag k (-1 for O).
    cont = np.array([names.index(f"I-{n[2:]}") if n != "O" and f"I-{n[2:]}" in names
                     else -1 for n in names], dtype=np.int64)
    nxt = np.full(len(ids), -2, dtype=np.int64)
    nxt[:-1] = ids[1:]
    ends = np.cumsum(corpus.lengths)
    nxt[ends[ends > 0] - 1] = -2  # a sentence's last token is continued by nothing
    continued = cont[ids] == nxt
    closing = {"B": "S", "I": "E"}
    stay = np.array([get(n, -1) for n in names], dtype=np.int32)
    close = np.array([get(n if n == "O" else f"{closing.get(n[0], n[0])}{n[1:]}", -1)
                      for n in names], dtype=np.int32)
    labels = np.where(continued, stay[ids], close[ids]).astype(np.int32)
    _check_labels(corpus, tags, labels)
    return labels


def _check_labels(corpus: Corpus, tags: Vocab, labels: np.ndarray) -> None:
    if (labels < 0).any():
        i = int(np.flatnonzero(labels < 0)[0])
        raise NerwinError(f"{corpus.where(i)}: tag "
                          f"{corpus.tag_names[corpus.tag_ids[i]]!r} was never seen in "
                          f"training; the model knows {', '.join(tags.itos)}")
