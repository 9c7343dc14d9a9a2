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
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nerwin.errors import NerwinError, os_error

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


@dataclass
class Corpus:
    """A read CoNLL file: sentences with IOB2 tags plus what the reader saw."""

    path: Path
    sentences: list[Sentence]
    scheme: str  # the scheme of the file (detected when asked for "auto")
    repaired: int = 0  # tags changed by the repair rule (invalid IOB2/IOBES only)
    columns: int = 0
    docs: int = 0  # -DOCSTART- lines
    tag_lines: dict[str, int] = field(default_factory=dict)  # first line of each tag

    @property
    def n_tokens(self) -> int:
        return sum(len(s.tokens) for s in self.sentences)


def split_tag(tag: str) -> tuple[str, str | None]:
    """``"B-PER"`` -> ``("B", "PER")``; ``"O"`` -> ``("O", None)``."""
    if tag == "O":
        return "O", None
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


def _decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = len(EOL_BYTES.findall(data, 0, e.start)) + 1
        raise NerwinError(f"{path}:{line}: invalid UTF-8 ({e.reason}, byte "
                          f"0x{data[e.start]:02x}); save the file as UTF-8") from None


def read_bytes(path: Path, what: str = "a CoNLL file") -> bytes:
    """The bytes of ``path``; any reason it cannot be read is one line naming it."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise os_error(path, e, what) from None


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


Block = list[tuple[int, list[str], str]]  # one sentence: (line number, columns, separator)


def _read_blocks(path: Path, what: str) -> tuple[list[Block], int]:
    """Split a column file into sentences of (line number, columns, separator), nothing
    dropped.

    Lines end at \\n, \\r\\n or \\r; each line is split by :func:`split_line`; a blank line
    ends a sentence; ``-DOCSTART-`` lines end one too and are counted, not kept. A line
    whose token is empty (it starts with a tab) is an error: nerwin could not write it back.
    Returns the sentences and the number of -DOCSTART- lines.
    """
    text = _decode(path, read_bytes(path))
    lines = _EOL.split(text)
    if lines and lines[-1] == "":
        lines.pop()
    blocks: list[Block] = []
    block: Block = []
    docs = 0
    blank = True
    for lineno, line in enumerate(lines, start=1):
        parts, sep = split_line(line)
        if parts and parts[0] == "":
            raise NerwinError(f"{path}:{lineno}: empty token (nothing but spaces before the "
                              f"first tab); expected lines {what}")
        blank = blank and not parts
        if parts and parts[0] == DOCSTART:
            docs += 1
            parts = []  # a document break also ends a sentence
        if parts:
            block.append((lineno, parts, sep))
        elif block:
            blocks.append(block)
            block = []
    if block:
        blocks.append(block)
    if blank:
        raise NerwinError(f"{path}: the file is empty; expected lines {what}")
    if not blocks:
        raise NerwinError(f"{path}: no tokens found (only -DOCSTART- lines or blank lines)")
    return blocks, docs


def read_tokens(path: str | Path) -> list[Sentence]:
    """Read text to tag: one token a line (first column; other columns are ignored, so a
    tagged CoNLL file works too), a blank line between sentences. Tags are all ``O``."""
    blocks, _ = _read_blocks(Path(path), "'token [other columns]'")
    return [Sentence([parts[0] for _, parts, _ in b], ["O"] * len(b), b[0][0]) for b in blocks]


def read_conll(path: str | Path, *, scheme: str = "auto", tag_column: int = -1) -> Corpus:
    """Read a CoNLL column file: token in column 0, NER tag in ``tag_column``.

    A line holding a tab is split on tabs, any other on spaces (:func:`split_line`); a
    blank line ends a sentence; ``-DOCSTART-`` lines are skipped. Tags are checked against
    ``scheme`` (or the detected one for ``"auto"``) and converted to IOB2.
    """
    path = Path(path)
    blocks, docs = _read_blocks(path, "'token ... TAG'")
    first_line, line, first_sep = blocks[0][0]
    ncols, lineno = len(line), first_line
    if ncols < 2:
        raise NerwinError(f"{path}:{lineno}: found 1 column ({line[0]!r}); expected at "
                          f"least 2: the token first and the NER tag "
                          f"{'last' if tag_column == -1 else f'in column {tag_column}'}")
    if not -ncols <= tag_column < ncols or tag_column in (0, -ncols):
        raise NerwinError(f"{path}:{lineno}: tag column {tag_column} does not exist "
                          f"or is the token column; the file has {ncols} columns")
    raw_sents: list[tuple[list[str], list[str], int, list[int]]] = []
    tag_lines: dict[str, int] = {}
    for block in blocks:
        for lineno, parts, sep in block:
            if len(parts) != ncols:
                name = {"\t": "tab", " ": "space"}
                how = (f"both {name[sep]}-separated" if sep == first_sep else
                       f"this line is {name[sep]}-separated, line {first_line} "
                       f"{name[first_sep]}-separated")
                raise NerwinError(f"{path}:{lineno}: found {len(parts)} columns, expected "
                                  f"{ncols} as on line {first_line} ({how})")
            tag = parts[tag_column]
            if not _TAG.match(tag):
                raise NerwinError(f"{path}:{lineno}: {tag!r} is not a NER tag; expected O or "
                                  f"PREFIX-TYPE with PREFIX one of B, I, E, S "
                                  f"(token {parts[0]!r})")
            tag_lines.setdefault(tag, lineno)
        raw_sents.append(([parts[0] for _, parts, _ in block],
                          [parts[tag_column] for _, parts, _ in block],
                          block[0][0], [ln for ln, _, _ in block]))

    found = detect_scheme(t for _, t, _, _ in raw_sents)
    use = found if scheme == "auto" else scheme
    if use not in _PREFIXES:
        raise NerwinError(f"unknown tag scheme {scheme!r}; expected auto or one of {SCHEMES}")
    allowed = _PREFIXES[use]
    sentences = []
    repaired = 0
    for toks, tgs, first, line_nos in raw_sents:
        for tag, ln in zip(tgs, line_nos):
            if tag != "O" and tag[0] not in allowed:
                how = "detected" if scheme == "auto" else "configured"
                raise NerwinError(f"{path}:{ln}: tag {tag!r} does not fit the {how} scheme "
                                  f"{use} (expected {_SCHEME_HELP[use]}); set data.scheme")
        iob2, r = to_iob2(tgs, use)
        repaired += r
        sentences.append(Sentence(toks, iob2, first))
    return Corpus(path=path, sentences=sentences, scheme=use, repaired=repaired, columns=ncols,
                  docs=docs, tag_lines=tag_lines)


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


def format_predictions(sentences: Sequence[Sentence], predicted: Sequence[Sequence[str]]) -> str:
    """``token gold predicted`` columns: conlleval reads the last two as gold and guess."""
    return format_columns(sentences, [s.tags for s in sentences], predicted)
