"""``nerwin tag``: read text or CoNLL columns, tag them in chunks, write conll/jsonl/inline.

Input formats
    ``text``: plain UTF-8; every non-blank line is split into sentences and tokens by
    nerwin.tokenize (offsets are kept, so nothing of the text is lost).
    ``conll``: one token a line in the first column, a blank line between sentences. Every
    column is carried through and the predicted tag appended, and every input line has its
    output line, ``-DOCSTART-`` and blank lines included, so the output lines up with the
    input. Each line is split as nerwin.conll reads it (tabs or spaces, decided per line)
    and written back with its own separator; lines may end in \n, \r\n or \r; a token line
    with another number of columns than the first one is an error.

Output formats
    ``conll``: columns (for text input: token and tag, a blank line after each sentence).
    ``jsonl``: one JSON object a sentence: ``text``, ``tokens``, ``offsets`` ([start, end)
    into ``text``), ``tags``, ``entities`` (``type``, ``start``, ``end``, ``text``,
    ``score``), and ``line`` (the input line of its first token).
    ``inline``: ``[PER Karel Vosk] visited [LOC Prague]``; for text input, each input line
    as it was (spacing kept) with the entities bracketed; for CoNLL input, one line a
    sentence, tokens joined by spaces.

Entity score: the mean, over the entity's tokens, of the probability the model gives to the
entity's type at that token (the sum of its ``B-X`` and ``I-X`` probabilities, and of
``E-X`` and ``S-X`` for a model trained in IOBES: every label of the type), read from
:meth:`nerwin.model.Model.token_probabilities` (computed with the tags, from the same
pass through the network: :meth:`~nerwin.model.Model.tag_and_probabilities`). A token's
share of the type is what the tag decision rests on whatever the head, so the score works
unchanged for per-token softmax, the logistic head, and any head that provides marginals
through that method.

Memory stays flat: the input is read a line at a time and tagged in chunks of about
``chunk_tokens`` tokens (whole sentences), each chunk written before the next is read.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, BinaryIO

import numpy as np

from nerwin.conll import BOM, DOCSTART, EOL_BYTES, Sentence, split_line
from nerwin.errors import NerwinError, utf8_error
from nerwin.metrics import get_entities
from nerwin.model import Model
from nerwin.tokenize import sentences as split_sentences

INPUT_FORMATS = ("text", "conll")
OUTPUT_FORMATS = ("conll", "jsonl", "inline")
CHUNK_TOKENS = 20_000  # tokens per tagging call: bounded memory, full BLAS batches


@dataclass
class Entity:
    """An entity of a sentence: type, [start, end) characters of the sentence text, score."""

    type: str
    start: int
    end: int
    text: str
    score: float


@dataclass
class Item:
    """One sentence to tag: tokens with offsets into ``text``, and where it came from.

    ``columns`` (CoNLL input) holds every column of each token line; ``offset`` (text input)
    is where ``text`` starts in its input line.
    """

    tokens: list[str]
    starts: list[int]
    ends: list[int]
    text: str
    line: int
    offset: int = 0
    columns: list[list[str]] | None = None
    seps: list[str] | None = None  # CoNLL input: each line's separator, used again on output
    tags: list[str] = field(default_factory=list)
    entities: list[Entity] = field(default_factory=list)


@dataclass
class TextLine:
    """One line of text input: the line and its sentences (none when blank)."""

    line: int
    text: str
    items: list[Item]


@dataclass
class Raw:
    """A CoNLL input line that is not a token: blank, or ``-DOCSTART-`` (its columns)."""

    line: int
    columns: list[str] | None
    sep: str = " "


Record = Item | TextLine | Raw


# --------------------------------------------------------------------------- reading


def read_lines(src: BinaryIO, name: str, on_bytes: Callable[[int], None] | None = None
               ) -> Iterator[tuple[int, str]]:
    """(line number, line without its newline) of a UTF-8 byte stream, one at a time."""
    lineno = 0
    for chunk in src:  # ends at b"\n" only: a \r\n stays whole, a lone \r is split below
        if on_bytes is not None:
            on_bytes(len(chunk))
        pieces = EOL_BYTES.split(chunk)
        if pieces[-1] == b"":  # the chunk ended with its line end
            pieces.pop()
        for raw in pieces:
            lineno += 1
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise utf8_error(name, lineno, e, raw, "the input") from None
            if lineno == 1:
                text = text.removeprefix(BOM)
            yield lineno, text


def _spaced(tokens: list[str]) -> tuple[str, list[int], list[int]]:
    """Tokens joined by single spaces, with each token's [start, end) in the result."""
    starts, ends, pos = [], [], 0
    for t in tokens:
        starts.append(pos)
        ends.append(pos + len(t))
        pos += len(t) + 1
    return " ".join(tokens), starts, ends


def text_records(lines: Iterable[tuple[int, str]]) -> Iterator[TextLine]:
    """Text input: each line with its sentences (offsets relative to the sentence text)."""
    for lineno, line in lines:
        items = []
        if line.strip():
            for toks in split_sentences(line):
                a, b = toks[0].start, toks[-1].end
                items.append(Item([t.text for t in toks], [t.start - a for t in toks],
                                  [t.end - a for t in toks], line[a:b], lineno, offset=a))
        yield TextLine(lineno, line, items)


def conll_records(lines: Iterable[tuple[int, str]], name: str) -> Iterator[Item | Raw]:
    """CoNLL input: sentences (blocks of token lines) and the blank/-DOCSTART- lines.

    Each line is split as nerwin.conll reads it (:func:`nerwin.conll.split_line`: tabs or
    spaces decided per line, a BOM at a line start dropped) and written back with its own
    separator; every token line must have as many columns as the first.
    """
    ncols = first = 0
    block: list[tuple[int, list[str], str]] = []

    def flush() -> Iterator[Item]:
        if block:
            tokens = [cols[0] for _, cols, _ in block]
            text, starts, ends = _spaced(tokens)
            yield Item(tokens, starts, ends, text, block[0][0],
                       columns=[cols for _, cols, _ in block], seps=[s for _, _, s in block])
            block.clear()

    for lineno, line in lines:
        cols, sep = split_line(line)
        if not cols or cols[0] == DOCSTART:
            yield from flush()
            yield Raw(lineno, cols or None, sep)
            continue
        if cols[0] == "":
            raise NerwinError(f"{name}:{lineno}: empty token (nothing but spaces before the "
                              f"first tab); expected the token in the first column")
        if not ncols:
            ncols, first = len(cols), lineno
        elif len(cols) != ncols:
            raise NerwinError(f"{name}:{lineno}: found {len(cols)} columns, expected {ncols} "
                              f"as on line {first}; every column is carried to the output, "
                              f"so all token lines need the same number")
        block.append((lineno, cols, sep))
    yield from flush()


# --------------------------------------------------------------------------- tagging


def entity_score(probs: np.ndarray, labels: list[str], type_: str) -> float:
    """Mean over the entity's tokens of P(B-type) + P(I-type) (+ P(E-type) + P(S-type) for
    an IOBES model: every label of the type; see the module docstring).

    probs: (n, len(labels)) the probabilities of the entity's own tokens.
    """
    cols = [k for k, lab in enumerate(labels) if lab != "O" and lab[2:] == type_]
    if not cols:
        return 0.0
    return float(np.clip(probs[:, cols].sum(axis=1), 0.0, 1.0).mean())


def tag_items(model: Model, items: list[Item], scores: bool = True) -> None:
    """Fill in the tags and entities of ``items`` (one call to the model for all of them).

    ``scores=False`` skips the probabilities (the crf's forward-backward, a softmax) when
    the output has no place for entity scores; the entities then score 0.
    """
    if not items:
        return
    sents = [Sentence(it.tokens, ["O"] * len(it.tokens), it.line) for it in items]
    if scores:
        tags, labels, probs = model.tag_and_probabilities(sents)
    else:
        tags = model.tag(sents)
        labels, probs = [], [np.zeros((len(s.tokens), 0)) for s in sents]
    for it, tg, pr in zip(items, tags, probs):
        it.tags = list(tg)
        it.entities = []
        for typ, s, e in get_entities(it.tags):
            a, b = it.starts[s], it.ends[e - 1]
            it.entities.append(Entity(typ, a, b, it.text[a:b],
                                      entity_score(pr[s:e], labels, typ)))


def _items_of(rec: Record) -> list[Item]:
    if isinstance(rec, TextLine):
        return rec.items
    return [rec] if isinstance(rec, Item) else []


def chunks(records: Iterable[Record], chunk_tokens: int) -> Iterator[list[Record]]:
    """Consecutive records holding about ``chunk_tokens`` tokens (whole sentences)."""
    chunk: list[Record] = []
    n = 0
    for rec in records:
        chunk.append(rec)
        n += sum(len(it.tokens) for it in _items_of(rec))
        if n >= chunk_tokens:
            yield chunk
            chunk, n = [], 0
    if chunk:
        yield chunk


# --------------------------------------------------------------------------- writing


def _bracketed(text: str, entities: list[Entity], shift: int = 0) -> str:
    """``text`` with ``[TYPE `` before and ``]`` after each entity (offsets + shift)."""
    out, pos = [], 0
    for e in entities:
        a, b = e.start + shift, e.end + shift
        out += [text[pos:a], f"[{e.type} ", text[a:b], "]"]
        pos = b
    out.append(text[pos:])
    return "".join(out)


# JSON leaves U+0085, U+2028 and U+2029 unescaped, but str.splitlines() and many JSON-lines
# readers break lines there; escaped, each record stays on its own line.
_JSON_LINE_SAFE = {0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029"}


def format_record(rec: Record, output_format: str) -> str:
    """The output text of one record, newlines included (maybe empty)."""
    if output_format == "jsonl":
        return "".join(json.dumps({
            "text": it.text, "tokens": it.tokens,
            "offsets": [[a, b] for a, b in zip(it.starts, it.ends)], "tags": it.tags,
            "entities": [{"type": e.type, "start": e.start, "end": e.end, "text": e.text,
                          "score": round(e.score, 4)} for e in it.entities],
            "line": it.line}, ensure_ascii=False).translate(_JSON_LINE_SAFE) + "\n"
            for it in _items_of(rec))
    if output_format == "inline":
        if isinstance(rec, TextLine):
            out, pos = [], 0
            for it in rec.items:
                end = it.offset + len(it.text)
                out += [rec.text[pos:it.offset],
                        _bracketed(rec.text[it.offset:end], it.entities)]
                pos = end
            out.append(rec.text[pos:])
            return "".join(out) + "\n"
        if isinstance(rec, Item):
            return _bracketed(rec.text, rec.entities) + "\n"
        return ""
    # conll
    if isinstance(rec, TextLine):
        return "".join("".join(f"{t} {g}\n" for t, g in zip(it.tokens, it.tags)) + "\n"
                       for it in rec.items)
    if isinstance(rec, Raw):
        return "\n" if rec.columns is None else rec.sep.join([*rec.columns, "O"]) + "\n"
    assert rec.columns is not None and rec.seps is not None
    return "".join(sep.join([*cols, tag]) + "\n"
                   for cols, sep, tag in zip(rec.columns, rec.seps, rec.tags))


@dataclass
class TagStats:
    """What a tagging run saw."""

    lines: int = 0
    sentences: int = 0
    tokens: int = 0
    entities: int = 0


def tag_stream(model: Model, src: BinaryIO, name: str, out: IO[str], *,
               input_format: str = "text", output_format: str = "conll",
               chunk_tokens: int = CHUNK_TOKENS,
               on_bytes: Callable[[int], None] | None = None) -> TagStats:
    """Read ``src``, tag it chunk by chunk, write each chunk to ``out``.

    Raises NerwinError (naming ``name`` and the line) for invalid UTF-8, ragged CoNLL
    columns, or an input without a single token.
    """
    if input_format not in INPUT_FORMATS:
        raise NerwinError(f"input format {input_format!r}: expected one of "
                          f"{', '.join(INPUT_FORMATS)}")
    if output_format not in OUTPUT_FORMATS:
        raise NerwinError(f"output format {output_format!r}: expected one of "
                          f"{', '.join(OUTPUT_FORMATS)}")
    stats = TagStats()

    def counted(lines: Iterable[tuple[int, str]]) -> Iterator[tuple[int, str]]:
        for ln in lines:
            stats.lines += 1
            yield ln

    lines = counted(read_lines(src, name, on_bytes))
    records: Iterable[Record] = (text_records(lines) if input_format == "text"
                                 else conll_records(lines, name))
    for chunk in chunks(records, chunk_tokens):
        items = [it for rec in chunk for it in _items_of(rec)]
        tag_items(model, items, scores=output_format == "jsonl")
        stats.sentences += len(items)
        stats.tokens += sum(len(it.tokens) for it in items)
        stats.entities += sum(len(it.entities) for it in items)
        out.write("".join(format_record(rec, output_format) for rec in chunk))
        out.flush()
    if stats.tokens == 0:
        raise NerwinError(f"{name}: no tokens found: the input is empty or blank")
    return stats
