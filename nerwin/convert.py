"""``nerwin convert``: CoNLL files between tag schemes, and to and from JSON lines of spans.

Formats
    CoNLL (any scheme nerwin reads: IOB1, IOB2, IOBES, IO): read by nerwin.conll's reader,
    with its one-line errors and its repair rule (an I-X that continues nothing becomes
    B-X; counted as ``nerwin data`` counts it). Written in IOB1, IOB2 or IOBES.
    CoNLL to CoNLL keeps every line: ``-DOCSTART-`` and blank lines as they were, every
    column, only the tag column rewritten; each line's columns are joined by the separator
    they were read with (a tab, or one space).

    JSON lines, one object a line, the span format spaCy, doccano and similar tools import::

        {"text": "EU rejects German call", "entities": [[0, 2, "ORG"], [11, 17, "MISC"]]}

    ``entities`` are ``[start, end, type]`` character offsets into ``text`` (end
    exclusive; doccano's ``"label"`` key is read too). Written from CoNLL, one object per
    sentence with the text rebuilt from the tokens (nerwin.tokenize.detokenize: no space
    before punctuation ...), plus ``tokens`` and their ``offsets`` and, when the file has
    ``-DOCSTART-`` lines, ``doc`` (the document's number), so that converting back gives
    the same sentences, tokens, tags and document breaks. Other columns (part of speech,
    chunks) are not carried into JSON.

    From JSON lines, a record with ``offsets`` is one sentence of those tokens; a record
    without them is tokenised and split into sentences by nerwin.tokenize (the way
    ``nerwin tag`` reads text), never splitting inside an entity. A token that an entity
    boundary falls inside is cut there (``Prague-based`` with the entity ``Prague``
    becomes ``Prague`` ``-based``): entities are kept exactly, and the cuts are counted.

Output is written atomically (a temporary file renamed when complete).
"""

from __future__ import annotations

import json
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from nerwin.conll import DOCSTART, from_iob2, iter_lines, read_conll, split_line
from nerwin.errors import NerwinError

TARGETS = ("iob1", "iob2", "iobes", "jsonl")
SOURCES = ("auto", "conll", "jsonl")


@dataclass
class ConvertStats:
    """What a conversion read and wrote."""

    source: str  # "conll" or "jsonl"
    scheme_in: str  # the CoNLL input's scheme, or "spans" for JSON lines
    target: str
    sentences: int = 0
    tokens: int = 0
    entities: Counter = field(default_factory=Counter)
    repaired: int = 0  # tags the reader repaired (CoNLL input in IOB2 or IOBES)
    split_tokens: int = 0  # tokens cut at an entity boundary (JSON lines input)

    def summary(self, out: str) -> str:
        ents = ", ".join(f"{k} {v:,}" for k, v in sorted(self.entities.items())) or "none"
        line = (f"wrote {out}: {self.sentences:,} sentences, {self.tokens:,} tokens, "
                f"{sum(self.entities.values()):,} entities ({ents}); {self.scheme_in} -> "
                f"{self.target}, repaired tags {self.repaired}")
        if self.source == "jsonl":
            line += f", tokens cut at entity boundaries {self.split_tokens}"
        return line


def source_format(path: str | Path, given: str = "auto") -> str:
    """``conll`` or ``jsonl``: as given, else ``jsonl`` for a .jsonl/.json file name."""
    if given not in SOURCES:
        raise NerwinError(f"--from {given!r}: expected one of {', '.join(SOURCES)}")
    if given != "auto":
        return given
    return "jsonl" if Path(path).suffix.lower() in (".jsonl", ".json") else "conll"


def convert(src: str | Path, dst: str | Path, to: str, *, source: str = "auto",
            scheme: str = "auto", tag_column: int = -1) -> ConvertStats:
    """Convert ``src`` into ``dst`` (written atomically) in format ``to`` (one of TARGETS).

    ``scheme`` and ``tag_column`` say how to read a CoNLL ``src`` (as ``nerwin data``).
    """
    from nerwin.atomic import atomic_writer

    if to not in TARGETS:
        raise NerwinError(f"--to {to!r}: expected one of {', '.join(TARGETS)}")
    src, dst = Path(src), Path(dst)
    kind = source_format(src, source)
    if kind == "jsonl" and to == "jsonl":
        raise NerwinError(f"{src}: is JSON lines already; --to expects a CoNLL scheme "
                          f"(iob1, iob2, iobes)")
    if dst.exists() and src.exists() and dst.resolve() == src.resolve():
        raise NerwinError(f"{dst}: is the input file; give another output path")
    if kind == "conll":
        corpus = read_conll(src, scheme=scheme, tag_column=tag_column)
        stats = ConvertStats("conll", corpus.scheme, to, repaired=corpus.repaired)
        stats.sentences, stats.tokens = len(corpus.lengths), corpus.n_tokens
        stats.entities = corpus.entity_counts()
        with atomic_writer(dst, "OUT") as out:
            if to == "jsonl":
                _conll_to_jsonl(src, corpus, out)
            else:
                _conll_to_conll(src, corpus, to, tag_column, out)
        return stats
    stats = ConvertStats("jsonl", "spans", to)
    with atomic_writer(dst, "OUT") as out:
        _jsonl_to_conll(src, to, out, stats)
    return stats


# --------------------------------------------------------------------------- CoNLL input


def _sentence_tags(corpus: Any) -> Iterator[list[str]]:
    names = corpus.tag_names
    ids, offsets = corpus.tag_ids, corpus.offsets
    for s in range(len(offsets) - 1):
        yield [names[i] for i in ids[offsets[s]: offsets[s + 1]].tolist()]


def _conll_to_conll(src: Path, corpus: Any, to: str, tag_column: int, out: IO[str]) -> None:
    """Every line of ``src`` again, each token line with its tag in scheme ``to``.

    The reader has accepted the file, so its token lines are exactly the corpus's tokens,
    in order (blank and ``-DOCSTART-`` lines are the rest).
    """
    def new_tags() -> Iterator[str]:
        for tags in _sentence_tags(corpus):
            yield from from_iob2(tags, to)

    tags = new_tags()
    buf: list[str] = []
    for line in iter_lines(src):
        parts, sep = split_line(line)
        if not parts or parts[0] == DOCSTART:
            buf.append(line.lstrip("\ufeff") + "\n")
        else:
            parts[tag_column] = next(tags)
            buf.append(sep.join(parts) + "\n")
        if len(buf) >= 4096:
            out.write("".join(buf))
            buf.clear()
    out.write("".join(buf))


def _docstart_lines(src: Path) -> list[int]:
    return [n for n, line in enumerate(iter_lines(src), start=1)
            if (parts := split_line(line)[0]) and parts[0] == DOCSTART]


def spaced_offsets(tokens: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """Text rebuilt from a CoNLL sentence's tokens (nerwin.tokenize.detokenize) and each
    token's ``(start, end)`` in it."""
    from nerwin.tokenize import detokenize

    text = detokenize(tokens)
    offsets, pos = [], 0
    for t in tokens:
        # detokenize joins the tokens in order with "" or " " between them.
        a = text.index(t, pos)
        offsets.append((a, a + len(t)))
        pos = a + len(t)
    return text, offsets


def _conll_to_jsonl(src: Path, corpus: Any, out: IO[str]) -> None:
    from nerwin.metrics import get_entities

    docs = _docstart_lines(src)
    sent_lines = corpus.lines.tolist()
    d = 0
    buf: list[str] = []
    for s, tags in enumerate(_sentence_tags(corpus)):
        a, b = int(corpus.offsets[s]), int(corpus.offsets[s + 1])
        tokens = corpus.tokens_of(a, b)
        text, offsets = spaced_offsets(tokens)
        ents = [[offsets[i][0], offsets[j - 1][1], typ] for typ, i, j in get_entities(tags)]
        rec: dict[str, Any] = {"text": text, "entities": ents, "tokens": tokens,
                               "offsets": [list(o) for o in offsets]}
        if docs:
            while d < len(docs) and docs[d] < sent_lines[s]:
                d += 1
            rec["doc"] = d  # DOCSTART lines before this sentence (0: before the first)
        buf.append(json.dumps(rec, ensure_ascii=False) + "\n")
        if len(buf) >= 4096:
            out.write("".join(buf))
            buf.clear()
    out.write("".join(buf))


# --------------------------------------------------------------------------- JSON input


def _bad(src: Path, n: int, what: str) -> NerwinError:
    return NerwinError(f"{src}:{n}: {what}")


def _entities(src: Path, n: int, rec: dict[str, Any], text: str) -> list[tuple[int, int, str]]:
    raw = rec.get("entities", rec.get("label", []))
    if not isinstance(raw, list):
        raise _bad(src, n, "'entities' must be a list of [start, end, type]")
    ents = []
    for k, e in enumerate(raw):
        if isinstance(e, dict):  # {"start", "end", "label"/"type"} as some tools write
            e = [e.get("start"), e.get("end"), e.get("label", e.get("type"))]
        if (not isinstance(e, (list, tuple)) or len(e) != 3
                or not all(isinstance(x, int) and not isinstance(x, bool) for x in e[:2])
                or not isinstance(e[2], str)):
            raise _bad(src, n, f"entity {k} is {e!r}; expected [start, end, type] with "
                               f"integer offsets and a type string")
        a, b, typ = e
        if not 0 <= a < b <= len(text):
            raise _bad(src, n, f"entity {k} [{a}, {b}, {typ!r}] is outside the text or "
                               f"empty; expected 0 <= start < end <= {len(text)}")
        if not typ or any(c.isspace() for c in typ):
            raise _bad(src, n, f"entity {k} has the type {typ!r}; expected a non-empty "
                               f"type without spaces (it becomes the tag B-{typ})")
        if not text[a:b].strip():
            raise _bad(src, n, f"entity {k} [{a}, {b}, {typ!r}] covers only spaces")
        ents.append((a, b, typ))
    ents.sort()
    for (a1, b1, t1), (a2, b2, t2) in zip(ents, ents[1:]):
        if a2 < b1:
            raise _bad(src, n, f"entities [{a1}, {b1}, {t1!r}] and [{a2}, {b2}, {t2!r}] "
                               f"overlap; CoNLL tags hold one entity per token")
    return ents


def _tokens(src: Path, n: int, rec: dict[str, Any], text: str) -> list[list[tuple[int, int]]]:
    """Sentences of (start, end) token offsets: the record's own, or nerwin.tokenize's."""
    if "offsets" in rec:
        offs = rec["offsets"]
        if (not isinstance(offs, list) or not all(
                isinstance(o, list) and len(o) == 2 and all(isinstance(x, int) for x in o)
                for o in offs)):
            raise _bad(src, n, "'offsets' must be a list of [start, end] token offsets")
        toks = rec.get("tokens")
        prev = 0
        for k, (a, b) in enumerate(offs):
            if not prev <= a < b <= len(text) or not text[a:b].strip():
                raise _bad(src, n, f"token offsets {k} [{a}, {b}] are not increasing, "
                                   f"empty or outside the text")
            if isinstance(toks, list) and k < len(toks) and toks[k] != text[a:b]:
                raise _bad(src, n, f"token {k} {toks[k]!r} is not the text at its offsets "
                                   f"{text[a:b]!r}")
            prev = b
        return [[(a, b) for a, b in offs]] if offs else []
    from nerwin.tokenize import split_sentences, tokenize

    return [[(t.start, t.end) for t in s] for s in split_sentences(tokenize(text))]


def _cut(sentence: list[tuple[int, int]], cuts: list[int]) -> tuple[list[tuple[int, int]], int]:
    """Tokens cut at every entity boundary (``cuts``, sorted) that falls inside one; and
    how many tokens were cut."""
    out, n = [], 0
    for a, b in sentence:
        lo, hi = bisect_right(cuts, a), bisect_left(cuts, b)
        if lo >= hi:
            out.append((a, b))
            continue
        n += 1
        inside = cuts[lo:hi]
        out.extend(zip([a, *inside], [*inside, b]))
    return out, n


def _tags(sent: list[tuple[int, int]], ents: list[tuple[int, int, str]], stats: ConvertStats
          ) -> list[str]:
    """IOB2 tags of a sentence's tokens from the entities (sorted, not overlapping): the
    tokens inside [start, end) of an entity are its tokens."""
    tags = ["O"] * len(sent)
    starts = [a for a, _ in sent]
    for a, b, typ in ents:
        k = bisect_left(starts, a)
        first = True
        while k < len(sent) and sent[k][1] <= b:
            tags[k] = f"{'B' if first else 'I'}-{typ}"
            first = False
            k += 1
        if not first:
            stats.entities[typ] += 1
    return tags


def _jsonl_to_conll(src: Path, to: str, out: IO[str], stats: ConvertStats) -> None:
    prev_doc: Any = None
    buf: list[str] = []
    first = True
    for n, line in enumerate(iter_lines(src, "a JSON-lines file"), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise _bad(src, n, f"invalid JSON ({e.msg} at column {e.colno}); expected one "
                               f"object a line") from None
        if not isinstance(rec, dict) or not isinstance(rec.get("text"), str):
            raise _bad(src, n, 'expected an object with a "text" string and "entities" '
                               '[[start, end, type], ...]')
        text = rec["text"]
        ents = _entities(src, n, rec, text)
        sents = _tokens(src, n, rec, text)
        cuts = sorted({x for a, b, _ in ents for x in (a, b)})
        sents, n_cut = zip(*(_cut(s, cuts) for s in sents)) if sents else ((), ())
        stats.split_tokens += sum(n_cut)
        sents = _join_across_entities(list(sents), ents)
        doc = rec.get("doc")
        if doc is not None and doc != prev_doc:
            if not (prev_doc is None and doc == 0):  # doc 0: before the first -DOCSTART-
                buf.append(f"{DOCSTART} O\n\n")
            prev_doc = doc
        before = sum(stats.entities.values())
        for sent in sents:
            tags = _tags(sent, ents, stats)
            for (x, y), tag in zip(sent, from_iob2(tags, to)):
                # As nerwin.conll.format_columns: a space inside a token would split it.
                buf.append(f"{text[x:y].replace(' ', chr(0xA0))} {tag}\n")
            buf.append("\n")
            stats.sentences += 1
            stats.tokens += len(sent)
        if sum(stats.entities.values()) - before != len(ents):
            raise _bad(src, n, "an entity covers no token of the given 'offsets'")
        first = False
        if len(buf) >= 4096:
            out.write("".join(buf))
            buf.clear()
    out.write("".join(buf))
    if first or stats.tokens == 0:
        raise NerwinError(f"{src}: no tokens found: the file is empty or its texts blank")


def _join_across_entities(sents: list[list[tuple[int, int]]],
                          ents: list[tuple[int, int, str]]) -> list[list[tuple[int, int]]]:
    """Join consecutive sentences where an entity runs across the cut between them."""
    out: list[list[tuple[int, int]]] = []
    for s in sents:
        if out and s and any(a < s[0][0] < b for a, b, _ in ents):
            out[-1] = out[-1] + s
        else:
            out.append(list(s))
    return out
