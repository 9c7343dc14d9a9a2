"""Reading and writing CoNLL column files, and the tag schemes.

Internally nerwin uses one scheme, IOB2 (BIO): every entity starts with ``B-TYPE`` and
continues with ``I-TYPE``. Files in IOB1, IOB2, IOBES or IO are converted on reading.

The one repair rule (the way conlleval reads a sequence): an ``I-X`` (or IOBES ``E-X``)
that does not continue an entity of type X, i.e. that follows ``O``, another type or the
start of the sentence, starts a new entity: it becomes ``B-X``. In IOB1 and IO this is the
scheme's own meaning, so it is a conversion; in IOB2 and IOBES it is a repair of an invalid
sequence, and it is counted.

The reader never drops a sentence or a token: any line it cannot read is an error that
names the file and the line.
"""

from __future__ import annotations

import re
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nerwin.errors import NerwinError, os_error, utf8_error

DOCSTART = "-DOCSTART-"
SCHEMES = ("iob1", "iob2", "iobes", "io")
_TAG = re.compile(r"^(?:O|([BIES])-(\S.*))$")
# Which prefixes each scheme may use (besides O).
_PREFIXES = {"iob1": "BI", "iob2": "BI", "iobes": "BIES", "io": "I"}
_SCHEME_HELP = {"iob1": "O, B-TYPE or I-TYPE", "iob2": "O, B-TYPE or I-TYPE",
                "iobes": "O, B-TYPE, I-TYPE, E-TYPE or S-TYPE", "io": "O or I-TYPE"}


@dataclass
class Sentence:
    """One sentence: tokens, their IOB2 tags and the file line of its first token."""

    tokens: list[str]
    tags: list[str]
    line: int


class Corpus:
    """A read CoNLL file as flat arrays: every token once, as an id into the distinct token
    strings, with sentence offsets; IOB2 tags as ids; plus what the reader saw.

    types:     the distinct token strings, in order of first appearance (T,)
    token_ids: (N,) int32, token t is ``types[token_ids[t]]``
    tag_names: the IOB2 tags that occur; tag_ids (N,) int32, token t's tag is
               ``tag_names[tag_ids[t]]``
    offsets:   (S + 1,) int64 first token of each sentence, and N at the end
    lines:     (S,) int64 file line of each sentence's first token (its tokens are on
               consecutive lines)

    ``sentences`` gives :class:`Sentence` objects, built when asked for (a view, not a
    copy). ``Corpus(path, sentences, scheme)`` builds one from Sentence objects (text to tag).
    """

    def __init__(self, path: Path, sentences: Sequence[Sentence] = (), scheme: str = "iob2",
                 repaired: int = 0, columns: int = 0, docs: int = 0,
                 tag_lines: dict[str, int] | None = None) -> None:
        index: dict[str, int] = {}
        tags: dict[str, int] = {}
        tok: list[int] = []
        tg: list[int] = []
        for s in sentences:
            tok.extend(index.setdefault(t, len(index)) for t in s.tokens)
            tg.extend(tags.setdefault(t, len(tags)) for t in s.tags)
        lengths = np.array([len(s.tokens) for s in sentences], dtype=np.int64)
        self._set(path, list(index), np.array(tok, dtype=np.int32), tuple(tags),
                  np.array(tg, dtype=np.int32), np.concatenate([[0], np.cumsum(lengths)]),
                  np.array([s.line for s in sentences], dtype=np.int64))
        self.scheme, self.repaired, self.columns, self.docs = scheme, repaired, columns, docs
        self.tag_lines = dict(tag_lines or {})

    def _set(self, path: Path, types: list[str], token_ids: np.ndarray,
             tag_names: tuple[str, ...], tag_ids: np.ndarray, offsets: np.ndarray,
             lines: np.ndarray) -> None:
        self.path = path
        self.paths: tuple[Path, ...] = (path,)  # several for concat_corpora
        self.file_starts = np.zeros(1, dtype=np.int64)  # first sentence of each file
        self.types = types
        self.token_ids = token_ids
        self.tag_names = tag_names
        self.tag_ids = tag_ids
        self.offsets = offsets.astype(np.int64)
        self.lines = lines

    @classmethod
    def from_arrays(cls, path: Path, types: list[str], token_ids: np.ndarray,
                    tag_names: tuple[str, ...], tag_ids: np.ndarray, offsets: np.ndarray,
                    lines: np.ndarray, **info: Any) -> Corpus:
        c = cls(path, (), **info)
        c._set(path, types, token_ids, tag_names, tag_ids, offsets, lines)
        return c

    @property
    def n_tokens(self) -> int:
        return int(self.token_ids.shape[0])

    @property
    def lengths(self) -> np.ndarray:
        """(S,) int64 tokens per sentence."""
        return np.diff(self.offsets)

    @property
    def sentences(self) -> _Sentences:
        return _Sentences(self)

    def tokens_of(self, start: int, stop: int) -> list[str]:
        """The token strings of tokens start..stop-1."""
        types = self.types
        return [types[i] for i in self.token_ids[start:stop].tolist()]

    def where(self, token: int) -> str:
        """``file:line`` of token ``token`` (the right file of a concatenated corpus)."""
        s = int(np.searchsorted(self.offsets, token, side="right")) - 1
        f = int(np.searchsorted(self.file_starts, s, side="right")) - 1
        return f"{self.paths[f]}:{self.line_of(token)}"

    def line_of(self, token: int) -> int:
        """The file line of token ``token`` (0-based over the corpus)."""
        s = int(np.searchsorted(self.offsets, token, side="right")) - 1
        return int(self.lines[s]) + token - int(self.offsets[s])

    def entity_spans(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(tag id of the B- tag, start, end) of every entity, in order. The tags are valid
        IOB2 (the reader repairs them), so an entity is a B-X and the I- tags after it."""
        names = self.tag_names
        is_b = np.array([t.startswith("B-") for t in names], dtype=bool)
        is_i = np.array([t.startswith("I-") for t in names], dtype=bool)
        if not len(names):
            z = np.zeros(0, dtype=np.int64)
            return z, z, z
        starts = np.flatnonzero(is_b[self.tag_ids])
        not_i = np.append(np.flatnonzero(~is_i[self.tag_ids]), self.n_tokens)
        ends = not_i[np.searchsorted(not_i, starts, side="right")]
        return self.tag_ids[starts].astype(np.int64), starts, ends

    def entity_counts(self) -> Counter:
        """Number of entities per type."""
        counts = np.bincount(self.tag_ids, minlength=len(self.tag_names))
        return Counter({t[2:]: int(n) for t, n in zip(self.tag_names, counts.tolist())
                        if t.startswith("B-") and n})


def concat_corpora(corpora: Sequence[Corpus]) -> Corpus:
    """One flat corpus of several read files, in order (``data.train: [train, dev]``).

    Token strings and tags are renumbered into shared indexes; ``paths`` lists the files and
    ``file_starts`` the first sentence of each, so a message can name the right file.
    One corpus is returned as it is.
    """
    if len(corpora) == 1:
        return corpora[0]
    index: dict[str, int] = {}
    tag_index: dict[str, int] = {}
    tok, tg, offs, lines, starts = [], [], [np.zeros(1, np.int64)], [], []
    n = n_sent = 0
    for c in corpora:
        remap = np.array([index.setdefault(t, len(index)) for t in c.types], dtype=np.int32)
        tremap = np.array([tag_index.setdefault(t, len(tag_index)) for t in c.tag_names],
                          dtype=np.int32)
        tok.append(remap[c.token_ids] if len(remap) else c.token_ids)
        tg.append(tremap[c.tag_ids] if len(tremap) else c.tag_ids)
        offs.append(c.offsets[1:] + n)
        lines.append(c.lines)
        starts.append(n_sent)
        n += c.n_tokens
        n_sent += len(c.lines)
    first = corpora[0]
    out = Corpus.from_arrays(
        first.path, list(index), np.concatenate(tok), tuple(tag_index), np.concatenate(tg),
        np.concatenate(offs), np.concatenate(lines), scheme=first.scheme,
        repaired=sum(c.repaired for c in corpora), columns=first.columns,
        docs=sum(c.docs for c in corpora),
        tag_lines={t: v for c in reversed(corpora) for t, v in c.tag_lines.items()})
    out.paths = tuple(c.path for c in corpora)
    out.file_starts = np.array(starts, dtype=np.int64)
    return out


class _Sentences(Sequence):
    """The sentences of a Corpus as Sentence objects, built one at a time when read."""

    def __init__(self, corpus: Corpus) -> None:
        self.c = corpus

    def __len__(self) -> int:
        return len(self.c.lines)

    def _one(self, s: int) -> Sentence:
        c = self.c
        a, b = int(c.offsets[s]), int(c.offsets[s + 1])
        names = c.tag_names
        return Sentence(c.tokens_of(a, b), [names[i] for i in c.tag_ids[a:b].tolist()],
                        int(c.lines[s]))

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self._one(s) for s in range(*i.indices(len(self)))]
        n = len(self)
        if not -n <= i < n:
            raise IndexError("sentence index out of range")
        return self._one(i % n)

    def __iter__(self) -> Iterator[Sentence]:
        for s in range(len(self)):
            yield self._one(s)


def split_tag(tag: str) -> tuple[str, str | None]:
    """``"B-PER"`` -> ``("B", "PER")``; ``"O"`` -> ``("O", None)``: the one convention,
    shared by the readers, the scheme conversions and the scorer (nerwin.metrics).

    Raises:
        ValueError: if ``tag`` is not ``"O"`` or ``"B-X"``/``"I-X"``/``"E-X"``/``"S-X"``.
    """
    if tag == "O":
        return "O", None
    if not isinstance(tag, str) or len(tag) < 3 or tag[1] != "-" or tag[0] not in "BIES":
        raise ValueError(
            f"tag {tag!r} is not 'O' or '<B|I|E|S>-<TYPE>' (for example 'B-PER')"
        )
    return tag[0], tag[2:]


def to_iob2(tags: Sequence[str], scheme: str) -> tuple[list[str], int]:
    """Convert a tag sequence of ``scheme`` to IOB2; return the tags and the repair count.

    Tags must already be well-formed for the scheme (see :func:`read_conll`).
    """
    out: list[str] = []
    repaired = 0
    prev_type: str | None = None  # type of the entity the previous token is inside
    for tag in tags:
        prefix, typ = split_tag(tag)
        if prefix == "O":
            out.append("O")
            prev_type = None
            continue
        if prefix in "BS":
            out.append(f"B-{typ}")
        elif prev_type == typ:  # I or E continuing an entity of its own type
            out.append(f"I-{typ}")
        else:  # I or E that starts an entity: conversion in iob1/io, repair otherwise
            out.append(f"B-{typ}")
            if scheme in ("iob2", "iobes"):
                repaired += 1
        # After E- or S- the entity is closed in IOBES; an I- after it starts a new one.
        prev_type = None if prefix in "ES" else typ
    return out, repaired


def from_iob2(tags: Sequence[str], scheme: str) -> list[str]:
    """Convert valid IOB2 tags to ``scheme`` (for writing and round-trip tests).

    IO cannot mark a boundary between two adjacent entities of one type; they merge.
    """
    out = []
    n = len(tags)
    for i, tag in enumerate(tags):
        prefix, typ = split_tag(tag)
        nxt = tags[i + 1] if i + 1 < n else "O"
        continues = nxt == f"I-{typ}"
        if prefix == "O" or scheme == "iob2":
            out.append(tag)
        elif scheme == "io":
            out.append(f"I-{typ}")
        elif scheme == "iob1":
            # B- only where an entity follows one of the same type directly.
            prev = tags[i - 1] if i > 0 else "O"
            same_before = prefix == "B" and prev != "O" and split_tag(prev)[1] == typ
            out.append(f"B-{typ}" if same_before else f"I-{typ}")
        elif scheme == "iobes":
            if prefix == "B":
                out.append(f"B-{typ}" if continues else f"S-{typ}")
            else:
                out.append(f"I-{typ}" if continues else f"E-{typ}")
        else:
            raise ValueError(f"unknown scheme {scheme!r}; expected one of {SCHEMES}")
    return out


def detect_scheme(sentences_tags: Iterable[Sequence[str]]) -> str:
    """Guess the scheme from tag prefixes alone (never from column contents).

    E-/S- anywhere: iobes. No B- at all: io. An I-X that starts an entity while B- is used
    only between adjacent entities of one type: iob1. Otherwise iob2.
    """
    has_b = has_es = i_starts = b_after_o = False
    for tags in sentences_tags:
        prev = "O"
        for tag in tags:
            p, typ = split_tag(tag)
            if p in "ES":
                has_es = True
            elif p == "B":
                has_b = True
                if prev == "O" or split_tag(prev)[1] != typ:
                    b_after_o = True
            elif p == "I" and (prev == "O" or split_tag(prev)[1] != typ):
                i_starts = True
            prev = tag
    if has_es:
        return "iobes"
    if not has_b:
        return "io"
    if i_starts and not b_after_o:
        return "iob1"
    return "iob2"


# A line ends at \r\n, \r or \n (files from old Macs use \r alone); nothing else ends one,
# so a token may hold U+2028 or U+0085 (str.splitlines would cut it there).
_EOL = re.compile(r"\r\n|\r|\n")
EOL_BYTES = re.compile(rb"\r\n|\r|\n")
BOM = "\ufeff"


CHUNK = 1 << 20  # bytes read at a time: the reader holds one chunk of the file, never all


def read_bytes(path: Path, what: str = "a CoNLL file") -> bytes:
    """The bytes of ``path``; any reason it cannot be read is one line naming it."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise os_error(path, e, what) from None


def iter_lines(path: Path, what: str = "a CoNLL file") -> Iterator[str]:
    """The lines of a UTF-8 file without their ends, read a chunk at a time.

    Lines end at \\n, \\r\\n or \\r (:data:`_EOL`); a chunk is cut after a line end, never
    between \\r and \\n, and decoded whole, so invalid UTF-8 is reported at the same byte,
    with the same reason and line, as if the whole file had been decoded at once (a line
    end is ASCII and so never part of a multi-byte character).
    """
    try:
        f = open(path, "rb")
    except OSError as e:
        raise os_error(path, e, what) from None
    with f:
        done = 0  # lines yielded so far (= line ends before the current chunk)
        buf = b""
        while True:
            try:
                data = f.read(CHUNK)
            except OSError as e:
                raise os_error(path, e, what) from None
            buf += data
            if data:
                # the last line end, but not a \r at the very end (a \n may follow it)
                cut = max(buf.rfind(b"\n"), buf.rfind(b"\r", 0, len(buf) - 1)) + 1
                if cut == 0:
                    continue
            else:
                cut = len(buf)
                if cut == 0:
                    return
            chunk, buf = buf[:cut], buf[cut:]
            try:
                text = chunk.decode("utf-8")
            except UnicodeDecodeError as e:
                line = done + len(EOL_BYTES.findall(chunk, 0, e.start)) + 1
                raise utf8_error(path, line, e, chunk) from None
            del chunk
            lines = _EOL.split(text)
            del text
            if lines[-1] == "":
                lines.pop()
            done += len(lines)
            yield from lines
            if not data:
                return


def split_line(line: str) -> tuple[list[str], str]:
    """The columns of one line and its separator (tab or space).

    The separator is decided per line: a line holding a tab is split on tabs only (its token
    may hold spaces), any other on runs of spaces. So one stray tab cannot switch a whole
    file, and a file that mixes the two forms line by line is read as written. Spaces around
    a tab-separated field are not part of it (``"ORG "`` is ``ORG``); a byte-order mark at
    the start of a line (files concatenated) is not part of the token.
    """
    line = line.lstrip(BOM).rstrip(" \t")
    if "\t" in line:
        return [p.strip(" ") for p in line.split("\t")], "\t"
    # Not str.split(): that also splits at U+00A0, which stands for a space inside a token.
    return [p for p in line.split(" ") if p], " "


def read_tokens(path: str | Path) -> list[Sentence]:
    """Read text to tag: one token a line (first column; other columns are ignored, so a
    tagged CoNLL file works too), a blank line between sentences. Tags are all ``O``.

    Lines end at \\n, \\r\\n or \\r; each is split by :func:`split_line`; ``-DOCSTART-``
    lines end a sentence and are skipped. A line whose token is empty (it starts with a
    tab) is an error (reported once the whole file has been checked for invalid UTF-8,
    which comes first).
    """
    path = Path(path)
    what = "'token [other columns]'"
    sentences: list[Sentence] = []
    cur: list[str] = []
    first = 0
    error: str | None = None
    blank = True
    for lineno, line in enumerate(iter_lines(path), start=1):
        parts, _ = split_line(line)
        if parts and parts[0] == "":
            error = error or _empty_token(path, lineno, what)
        if error:
            continue
        blank = blank and not parts
        if parts and parts[0] == DOCSTART:
            parts = []
        if parts:
            if not cur:
                first = lineno
            cur.append(parts[0])
        elif cur:
            sentences.append(Sentence(cur, ["O"] * len(cur), first))
            cur = []
    if error:
        raise NerwinError(error)
    if cur:
        sentences.append(Sentence(cur, ["O"] * len(cur), first))
    _check_not_empty(path, blank, bool(sentences), what)
    return sentences


def _empty_token(path: Path, lineno: int, what: str) -> str:
    return (f"{path}:{lineno}: empty token (nothing but spaces before the first tab); "
            f"expected lines {what}")


def _check_not_empty(path: Path, blank: bool, tokens: bool, what: str) -> None:
    if blank:
        raise NerwinError(f"{path}: the file is empty; expected lines {what}")
    if not tokens:
        raise NerwinError(f"{path}: no tokens found (only -DOCSTART- lines or blank lines)")


# The kinds of error of read_conll, most important first: the message a file gets is the
# first one (in line order) of the most important kind found anywhere in the file. Invalid
# UTF-8 comes first (iter_lines raises it), then these; the scheme checks come last.
_EMPTY_TOKEN, _FIRST_LINE, _LINE = 1, 2, 3


def read_conll(path: str | Path, *, scheme: str = "auto", tag_column: int = -1) -> Corpus:
    """Read a CoNLL column file: token in column 0, NER tag in ``tag_column``.

    A line holding a tab is split on tabs, any other on spaces (:func:`split_line`); a
    blank line ends a sentence; ``-DOCSTART-`` lines are skipped. Tags are checked against
    ``scheme`` (or the detected one for ``"auto"``) and converted to IOB2.

    Streaming: the file is read a chunk at a time and each line is kept only as ids (its
    token interned in ``types``, its raw tag in a small index), so memory grows by a few
    bytes per token. A line that breaks a rule is remembered and the rest of the file is
    still read for a more important error (see ``_EMPTY_TOKEN``), so every file gets the
    message it got when files were read whole.
    """
    path = Path(path)
    what = "'token ... TAG'"
    errors: dict[int, str] = {}
    index: dict[str, int] = {}  # token string -> id (types, in order of first appearance)
    raw: dict[str, int] = {}  # raw tag -> id
    tag_lines: dict[str, int] = {}
    tok, tg = array("i"), array("i")
    starts, lines = array("q"), array("q")
    docs = 0
    blank, in_sentence = True, False
    ncols, first_line, first_sep = 0, 0, ""
    for lineno, line in enumerate(iter_lines(path), start=1):
        parts, sep = split_line(line)
        if not parts:
            in_sentence = False
            continue
        if parts[0] == "":
            errors.setdefault(_EMPTY_TOKEN, _empty_token(path, lineno, what))
            continue
        blank = False
        if errors:
            continue  # only a more important error can still change the message
        if parts[0] == DOCSTART:
            docs += 1
            in_sentence = False  # a document break also ends a sentence
            continue
        if not ncols:  # the first token line sets the columns
            ncols, first_line, first_sep = len(parts), lineno, sep
            bad = _first_line_error(path, lineno, parts, tag_column)
            if bad is not None:
                errors[_FIRST_LINE] = bad
                continue
        if len(parts) != ncols:
            errors[_LINE] = _columns_error(path, lineno, len(parts), sep, ncols, first_line,
                                           first_sep)
            continue
        tag = parts[tag_column]
        t = raw.get(tag)
        if t is None:
            if not _TAG.match(tag):
                errors[_LINE] = _tag_error(path, lineno, tag, parts[0])
                continue
            t = raw[tag] = len(raw)
            tag_lines[tag] = lineno
        if not in_sentence:
            starts.append(len(tok))
            lines.append(lineno)
            in_sentence = True
        i = index.get(parts[0])
        if i is None:
            i = index[parts[0]] = len(index)
        tok.append(i)
        tg.append(t)
    if _EMPTY_TOKEN in errors:
        raise NerwinError(errors[_EMPTY_TOKEN])
    _check_not_empty(path, blank, ncols > 0, what)
    if errors:
        raise NerwinError(errors[min(errors)])
    token_ids = np.frombuffer(tok, dtype=np.int32) if len(tok) else np.zeros(0, np.int32)
    raw_ids = np.frombuffer(tg, dtype=np.int32) if len(tg) else np.zeros(0, np.int32)
    offsets = np.append(np.frombuffer(starts, dtype=np.int64), len(tok))
    sent_lines = np.frombuffer(lines, dtype=np.int64).copy()
    names, tag_ids, use, repaired = _to_iob2_ids(path, list(raw), raw_ids, offsets,
                                                 sent_lines, scheme)
    return Corpus.from_arrays(path, list(index), token_ids, names, tag_ids, offsets,
                              sent_lines, scheme=use, repaired=repaired, columns=ncols,
                              docs=docs, tag_lines=tag_lines)


def _columns_error(path: Path, lineno: int, n: int, sep: str, ncols: int, first_line: int,
                   first_sep: str) -> str:
    """The message for a line of ``n`` columns in a file whose first token line had ncols."""
    sep_name = {"\t": "tab", " ": "space"}
    how = (f"both {sep_name[sep]}-separated" if sep == first_sep else
           f"this line is {sep_name[sep]}-separated, line {first_line} "
           f"{sep_name[first_sep]}-separated")
    return (f"{path}:{lineno}: found {n} columns, expected {ncols} as on line {first_line} "
            f"({how})")


def _tag_error(path: Path, lineno: int, tag: str, token: str) -> str:
    return (f"{path}:{lineno}: {tag!r} is not a NER tag; expected O or PREFIX-TYPE with "
            f"PREFIX one of B, I, E, S (token {token!r})")


def _first_line_error(path: Path, lineno: int, parts: list[str], tag_column: int
                      ) -> str | None:
    """What is wrong with the first token line's columns (it sets them), or None."""
    ncols = len(parts)
    if ncols < 2:
        return (f"{path}:{lineno}: found 1 column ({parts[0]!r}); expected at least 2: "
                f"the token first and the NER tag "
                f"{'last' if tag_column == -1 else f'in column {tag_column}'}")
    if not -ncols <= tag_column < ncols or tag_column in (0, -ncols):
        return (f"{path}:{lineno}: tag column {tag_column} does not exist or is the token "
                f"column; the file has {ncols} columns")
    return None


_PREFIX_CODE = {"O": 0, "B": 1, "I": 2, "E": 3, "S": 4}


def _to_iob2_ids(path: Path, raw_names: list[str], raw_ids: np.ndarray, offsets: np.ndarray,
                 lines: np.ndarray, scheme: str
                 ) -> tuple[tuple[str, ...], np.ndarray, str, int]:
    """Detect or check the scheme and convert every tag to IOB2, over whole arrays.

    The same rules as :func:`detect_scheme` and :func:`to_iob2`, token by token: each
    depends only on the token before it in its sentence, so they vectorise. Returns the
    IOB2 tag names that occur, the (N,) int32 ids into them, the scheme and the repair count.
    """
    types: list[str] = []
    pre = np.zeros(len(raw_names), dtype=np.int8)
    typ = np.full(len(raw_names), -1, dtype=np.int32)
    for k, name in enumerate(raw_names):
        p, t = split_tag(name)
        pre[k] = _PREFIX_CODE[p]
        if t is not None:
            if t not in types:
                types.append(t)
            typ[k] = types.index(t)
    n = len(raw_ids)
    # Only small temporaries per token (int8, int16 and bool arrays, compared as shifted
    # views): a 5-million-token file must not need hundreds of MB here.
    p = pre[raw_ids]
    ty = typ.astype(np.int16 if len(types) < 2**15 else np.int32)[raw_ids]
    first = np.zeros(n, dtype=bool)  # the first token of a sentence (nothing before it)
    first[offsets[:-1][offsets[:-1] < n]] = True
    # new_type[t]: the tag before t (in its sentence) is O or of another type than t's
    new_type = np.ones(n, dtype=bool)
    np.not_equal(ty[1:], ty[:-1], out=new_type[1:])
    new_type |= first
    if (p >= 3).any():
        found = "iobes"
    elif not (p == 1).any():
        found = "io"
    elif ((p == 2) & new_type).any() and not ((p == 1) & new_type).any():
        found = "iob1"
    else:
        found = "iob2"
    del new_type
    use = found if scheme == "auto" else scheme
    if use not in _PREFIXES:
        raise NerwinError(f"unknown tag scheme {scheme!r}; expected auto or one of {SCHEMES}")
    allowed = _PREFIXES[use]
    bad = [k for k, name in enumerate(raw_names) if name != "O" and name[0] not in allowed]
    if bad:
        i = int(np.flatnonzero(np.isin(raw_ids, bad))[0]) if n else 0
        s = int(np.searchsorted(offsets, i, side="right")) - 1
        line = int(lines[s]) + i - int(offsets[s])
        how = "detected" if scheme == "auto" else "configured"
        raise NerwinError(f"{path}:{line}: tag {raw_names[raw_ids[i]]!r} does not fit the "
                          f"{how} scheme {use} (expected {_SCHEME_HELP[use]}); set "
                          f"data.scheme")
    # An entity stays open after B- or I- (E- and S- close it in IOBES); an I-/E- of the
    # open entity's type continues it, any other starts a new one (B-: the repair rule).
    inside = (p == 2) | (p == 3)
    cont = np.zeros(n, dtype=bool)
    np.logical_and(inside[1:], (p[:-1] == 1) | (p[:-1] == 2), out=cont[1:])
    cont[1:] &= ty[1:] == ty[:-1]
    cont &= ~first
    del first
    repaired = int(np.count_nonzero(inside & ~cont)) if use in ("iob2", "iobes") else 0
    del inside
    # code: 0 for O, 1 + 2t for B- of type t, 2 + 2t for I-
    code = ty.astype(np.int32)
    del ty
    code *= 2
    code += 1
    code += cont
    code[p == 0] = 0
    del p, cont
    # Number the codes that occur (a lookup table, not np.unique: no sort, no int64 copy).
    used = np.flatnonzero(np.bincount(code, minlength=1))
    remap = np.zeros(int(used[-1]) + 1 if len(used) else 1, dtype=np.int32)
    remap[used] = np.arange(len(used), dtype=np.int32)
    names = tuple("O" if c == 0 else ("B-" if c % 2 else "I-") + types[(c - 1) // 2]
                  for c in used.tolist())
    np.take(remap, code, out=code)
    return names, code, use, repaired


def entity_counts(sentences: Iterable[Sentence]) -> Counter:
    """Number of entities per type (B- tags of IOB2)."""
    c: Counter = Counter()
    for s in sentences:
        for t in s.tags:
            if t.startswith("B-"):
                c[t[2:]] += 1
    return c


def format_columns(sentences: Sequence[Sentence], *columns: Sequence[Sequence[str]]) -> str:
    """CoNLL columns: the token, then one tag per column, blank line between sentences.

    Tokens holding a space are written with U+00A0 in its place so the columns stay aligned.
    """
    out = []
    for col in columns:
        if len(col) != len(sentences):
            raise ValueError(f"{len(sentences)} sentences but {len(col)} tag sequences")
    for i, s in enumerate(sentences):
        cols = [c[i] for c in columns]
        for c in cols:
            if len(c) != len(s.tokens):
                raise ValueError(f"sentence at line {s.line}: {len(s.tokens)} tokens but "
                                 f"{len(c)} tags")
        for j, tok in enumerate(s.tokens):
            out.append(" ".join([tok.replace(" ", "\u00a0"), *(c[j] for c in cols)]) + "\n")
        out.append("\n")
    return "".join(out)


def format_predictions(sentences: Sequence[Sentence], predicted: Sequence[Sequence[str]],
                       gold: Sequence[Sequence[str]] | None = None) -> str:
    """``token gold predicted`` columns: conlleval reads the last two as gold and guess.

    ``gold`` defaults to the sentences' own tags; ``nerwin eval`` passes the gold tags the
    model is scored against (for the logistic head: its one type, the others as ``O``), so
    that conlleval.pl on this file prints what ``eval --conlleval`` prints.
    """
    return format_columns(sentences, [s.tags for s in sentences] if gold is None else gold,
                          predicted)
