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

Memory stays flat: the input is read in blocks of at most READ_BYTES (whatever its line
ends: \n, \r\n or a lone \r) and tagged in chunks of about ``chunk_tokens`` tokens, each
chunk written before the next is read. Text is cut without tokenising it: whole lines,
until a chunk holds ``chunk_tokens`` * CHARS_PER_TOKEN characters (CoNLL-2003's characters
per token, so about ``chunk_tokens`` tokens of such text); the lines of a chunk are
tokenised when it is tagged (:func:`tag_chunk`). CoNLL input, tokenised already, is cut at
whole sentences by its tokens. A runner (nerwin.parallel.Workers, ``nerwin tag
--workers``) tags the chunks in other processes (see :func:`tag_stream`); the chunks are
the same, so the output is too.

Speed (see bench/tag_breakdown.py): a chunk of text is cut into tokens and sentences with
no Python step a token, all its lines at once (:func:`text_block`,
nerwin.tokenize.block_tokens), a chunk is encoded straight from its flat tokens, each
token string's feature ids are kept from chunk to chunk (nerwin.features.TypeCache), the
network's first-layer projections are kept from chunk to chunk (:class:`Tagger`), the
chunk's scores are decoded by the head once per chunk rather than once per forward batch
(:meth:`Tagger._decode`), the probabilities computed once per chunk and only for the
sentences with an entity (:meth:`Tagger._probabilities`), tags are repaired and entities
found and scored with array operations over the whole chunk, the JSON of each token
string is made once per run and that of the entities in one pass over the chunk, and the
conll output of text is joined once per chunk. Every one of these computes the same
numbers as the per-sentence code it replaced (bench/tag_speed.py checks the output byte
for byte), but for the crf's marginals, which differ from the batch-by-batch matrix
products of before in their last bits (see nerwin.nn.crf.crf_marginals).

For a program: :func:`tag_texts` (strings) and :func:`tag_tokens` (token lists) return
:class:`Item` objects with tags and scored entities.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain
from json.encoder import encode_basestring
from operator import attrgetter
from pathlib import Path
from typing import IO, Any, BinaryIO, NamedTuple

import numpy as np

from nerwin.conll import _TAG, BOM, DOCSTART, EOL_BYTES, Corpus, Sentence, split_line
from nerwin.dataset import encode
from nerwin.errors import NerwinError, utf8_error
from nerwin.features import TypeCache
from nerwin.model import Model, eval_batches
from nerwin.tokenize import _ENDERS, block_sentences, block_tokens, sentence_cuts, token_spans
from nerwin.windows import WindowData, _ranges

INPUT_FORMATS = ("text", "conll")
OUTPUT_FORMATS = ("conll", "jsonl", "inline")
CHUNK_TOKENS = 20_000  # tokens per tagging call: bounded memory, full BLAS batches
# Characters a token takes in raw text, its share of spaces and line ends included:
# CoNLL-2003 train rebuilt as raw text (nerwin.tokenize.detokenize, one sentence a line)
# is 1,068,271 characters for 203,621 tokens, 5.25 a token. Text input is cut into chunks
# of CHUNK_TOKENS * CHARS_PER_TOKEN characters (whole lines) without tokenising it first,
# so a chunk of such text holds about CHUNK_TOKENS tokens.
CHARS_PER_TOKEN = 5.25
READ_BYTES = 1 << 20  # input bytes read at a time (the longest line may exceed it)


@dataclass(frozen=True)
class Entity:
    """One entity: its type, ``[start, end)`` character offsets into the text it was found
    in (a sentence's text while tagging, the whole text in the API's Doc), that text slice,
    and the model's confidence (``nerwin tag``'s jsonl score: the mean over its tokens of
    the probability of its type, in [0, 1]). One class for the tagger and the Python API."""

    type: str
    start: int
    end: int
    text: str
    score: float


# Slots: no __dict__ for each Item and TextLine (a chunk of text makes one a sentence and
# one a line; text_block runs about 5 % faster without them).
@dataclass(slots=True)
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


@dataclass(slots=True)
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


class TextChunk(NamedTuple):
    """A chunk of text input as read, before tokenising: the number of its first line and
    its lines joined by "\\n" (no line holds a line end: they were split at \\n, \\r\\n
    and \\r). One string is what is cheapest to send to a worker process; the worker splits
    it and tokenises (:func:`chunk_records`).

    ``plan_tokens``: a chunk cut at its size stands for ``chunk_tokens`` tokens, whatever
    it holds: that count decides which feature tables the network precomputes for it
    (:meth:`Tagger._projections`), so that every full chunk of a run computes its scores
    the same way, however many tokens its characters turned out to be (the precomputed
    and the multiplied way agree only to float rounding). 0 for the last chunk: its own
    token count decides, as for any other call."""

    first: int
    text: str
    plan_tokens: int = 0


# --------------------------------------------------------------------------- reading


def line_blocks(src: BinaryIO, name: str, on_bytes: Callable[[int], None] | None = None
                ) -> Iterator[tuple[int, list[str]]]:
    """(number of the first line, lines without their ends) of a UTF-8 byte stream, a
    block of at most about READ_BYTES at a time.

    Lines end at \\n, \\r\\n or \\r. A block is cut after a line end (never between \\r and
    \\n), so memory is bounded by the block and the longest line, whatever the line ends; a
    stream without ``read1`` (an iterable of byte strings) is read as it comes. Invalid
    UTF-8 is reported with its line; a BOM at the start of the stream is dropped.
    """
    lineno = 0  # lines yielded so far
    buf = b""
    reader = getattr(src, "read1", None)
    pieces: Iterator[bytes] = (iter(lambda: reader(READ_BYTES), b"") if reader is not None
                               else iter(src))
    for data in _with_end(pieces):
        if data is not None:
            if on_bytes is not None:
                on_bytes(len(data))
            buf += data
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
            # Decode the offending line alone: its message is the one of that line.
            bad = lineno + len(EOL_BYTES.findall(chunk, 0, e.start)) + 1
            a = max(chunk.rfind(b"\n", 0, e.start), chunk.rfind(b"\r", 0, e.start)) + 1
            m = EOL_BYTES.search(chunk, e.start)
            raw = chunk[a:m.start() if m else len(chunk)]
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as e2:
                raise utf8_error(name, bad, e2, raw, "the input") from None
            raise utf8_error(name, bad, e, chunk, "the input") from None  # pragma: no cover
        del chunk
        lines = text.split("\n") if "\r" not in text else _EOL.split(text)
        del text
        if lines[-1] == "":
            lines.pop()
        if lineno == 0 and lines:
            lines[0] = lines[0].removeprefix(BOM)
        yield lineno + 1, lines
        lineno += len(lines)


def _with_end(pieces: Iterator[bytes]) -> Iterator[bytes | None]:
    yield from pieces
    yield None


_EOL = re.compile(r"\r\n|\r|\n")


def read_lines(src: BinaryIO, name: str, on_bytes: Callable[[int], None] | None = None
               ) -> Iterator[tuple[int, str]]:
    """(line number, line without its newline) of a UTF-8 byte stream, one at a time."""
    for first, lines in line_blocks(src, name, on_bytes):
        yield from enumerate(lines, start=first)


def _spaced(tokens: list[str]) -> tuple[str, list[int], list[int]]:
    """Tokens joined by single spaces, with each token's [start, end) in the result."""
    starts, ends, pos = [], [], 0
    for t in tokens:
        starts.append(pos)
        ends.append(pos + len(t))
        pos += len(t) + 1
    return " ".join(tokens), starts, ends


def text_line(lineno: int, line: str, spans: list[tuple[int, int]] | None = None
              ) -> TextLine:
    """One line of text input with its sentences (offsets relative to each sentence);
    ``spans``: its token spans, if already found."""
    items = []
    if spans is None:
        spans = token_spans(line)
    if spans:
        texts = [line[a:b] for a, b in spans]
        # Only a token holding . ! or ? can end a sentence, and not the last one: a line
        # with one such character, in its last token, is one sentence (most lines are).
        one = (line.count(".") + line.count("!") + line.count("?") == 1
               and texts[-1] in _ENDERS)
        cuts = [] if one else sentence_cuts(texts, spans)
        if not cuts and spans[0][0] == 0:  # one sentence from the line's start: most lines
            starts, ends = map(list, zip(*spans))
            items.append(Item(texts, starts, ends, line[:ends[-1]], lineno))
            return TextLine(lineno, line, items)
        for i, j in zip([0, *cuts], [*cuts, len(spans)]):
            a0, b0 = spans[i][0], spans[j - 1][1]
            sp = spans[i:j]
            items.append(Item(texts[i:j], [a - a0 for a, _ in sp], [b - a0 for _, b in sp],
                              line[a0:b0], lineno, offset=a0))
    return TextLine(lineno, line, items)


def text_block(first: int, text: str) -> list[TextLine]:
    """The lines of ``text`` (joined by "\\n", numbered from ``first``) with their
    sentences: what :func:`text_line` gives for each line, found a block at a time
    (nerwin.tokenize.block_tokens) so that the Python steps are per sentence, not per token."""
    tok = block_tokens(text)
    firsts = block_sentences(text, tok)
    records = [TextLine(n, line, []) for n, line in enumerate(text.split("\n"), start=first)]
    if not firsts.size:
        return records
    n = len(tok.texts)
    lengths = np.diff(firsts, append=n)
    a0 = tok.starts[firsts]  # where each sentence starts and ends in the block
    b0 = tok.ends[np.append(firsts[1:], n) - 1]
    # offsets into each sentence's text, and where that text starts in its line
    shift = np.repeat(a0, lengths)
    starts, ends = (tok.starts - shift).tolist(), (tok.ends - shift).tolist()
    line = np.searchsorted(tok.line_starts, a0, side="right") - 1
    offset = a0 - tok.line_starts[line]
    bounds = firsts.tolist()
    texts = tok.texts
    for i, j, a, b, k, off in zip(bounds, [*bounds[1:], n], a0.tolist(), b0.tolist(),
                                  line.tolist(), offset.tolist()):
        records[k].items.append(Item(texts[i:j], starts[i:j], ends[i:j], text[a:b], first + k,
                                     off))
    return records


def text_records(lines: Iterable[tuple[int, str]]) -> Iterator[TextLine]:
    """Text input: each line with its sentences (offsets relative to the sentence text)."""
    for lineno, line in lines:
        yield text_line(lineno, line)


# What a CoNLL token line looks like: two or more columns, the last one a tag.
PROBE_LINES = 20  # non-blank lines looked at
_WS = re.compile(r"[ \t]+")


def looks_like_conll(lines: Sequence[str]) -> bool:
    """Whether non-blank ``lines`` (the first ones of an input) look like CoNLL columns.

    Yes when the first starts with ``-DOCSTART-``, or when there are at least 3 and every
    one has the same number (2 or more) of space- or tab-separated columns with a tag
    (``O``, ``B-X``, ``I-X``, ``E-X``, ``S-X``) last, some of them not ``O``. Prose lines
    do not all end in tags with the same number of words, so real text is not refused.
    """
    if not lines:
        return False
    if lines[0].lstrip(BOM + " \t").startswith(DOCSTART):
        return True
    if len(lines) < 3:
        return False
    cols = [_WS.split(ln.strip(" \t")) for ln in lines]
    n = len(cols[0])
    return (n >= 2 and all(len(c) == n and _TAG.match(c[-1]) for c in cols)
            and any(c[-1] != "O" for c in cols))


def check_not_conll(name: str, lines: Iterable[tuple[int, str]]) -> None:
    """Refuse text input whose first non-blank lines look like CoNLL columns (one line,
    with the flag to pass)."""
    probe = [(n, ln) for n, ln in lines if ln.strip()]
    if looks_like_conll([ln for _, ln in probe]):
        raise NerwinError(f"{name}:{probe[0][0]}: this looks like CoNLL columns (a token and "
                          f"its tags a line), not raw text; to tag it as columns pass "
                          f"--input-format conll")


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


@dataclass
class Tagged:
    """What :meth:`Tagger.predict` finds in a run of sentences (flat over their tokens).

    ``names[ids[t]]`` is token t's IOB2 tag (repaired: an I-X that does not continue an X
    is B-X); entity k is of type ``types[ent_type[k]]``, tokens ``ent_start[k]`` to
    ``ent_end[k]`` (exclusive, flat), with score ``ent_score[k]``.
    """

    names: list[str]
    ids: np.ndarray
    types: list[str]
    ent_start: np.ndarray
    ent_end: np.ndarray
    ent_type: np.ndarray
    ent_score: np.ndarray


class Tagger:
    """A model ready to tag many chunks: it keeps the network's first-layer projections
    from chunk to chunk (:meth:`_projections`), and finds entities and their scores with
    array operations over a whole chunk. :meth:`predict` gives the same tags and scores as
    :meth:`Model.tag_and_probabilities` on the same sentences (tests check it).

    ``model`` may also be any object with ``tag_and_probabilities`` (and ``tag``), such
    as an ONNX-backed model: then those are called (the entity scores read only the
    probabilities they return).
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        self.fast = isinstance(model, Model)
        # Seconds per stage, when a profiler (bench/tag_breakdown.py) sets this to a dict.
        self.timings: dict[str, float] | None = None
        self._proj: dict[tuple[bool, ...], Any] = {}
        # Each token string's feature ids, kept from chunk to chunk (see encode).
        self._types = TypeCache(model.lex.features) if self.fast else None

    # ---------------------------------------------------------------- encoding

    def encode(self, tokens: list[str], lengths: Sequence[int]
               ) -> tuple[WindowData, list[str], np.ndarray]:
        """(the encoded windows, the distinct tokens in order of first appearance, each
        token's index among them): Model.encode of these sentences, from a Corpus built
        straight from the flat tokens. The ids of a feature that depends on the token
        string alone come from a TypeCache kept across calls: the same strings come back
        chunk after chunk, and each is encoded once per run rather than once per chunk
        (the ids are the same either way; tests compare them)."""
        types = list(dict.fromkeys(tokens))  # in order of first appearance, as Corpus
        index = dict(zip(types, range(len(types))))
        tid = np.fromiter(map(index.__getitem__, tokens), dtype=np.int32, count=len(tokens))
        lens = np.asarray(lengths, dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lens)])
        corpus = Corpus.from_arrays(Path("<input>"), types, tid, ("O",),
                                    np.zeros(len(tokens), dtype=np.int32), offsets,
                                    np.ones(len(lens), dtype=np.int64))
        return encode(corpus, self.model.lex, self.model.cfg.features, self._types), types, tid

    # ---------------------------------------------------------------- predicting

    def predict(self, tokens: list[str], lengths: Sequence[int], scores: bool = True,
                encoded: tuple[WindowData, list[str], np.ndarray] | None = None,
                plan_tokens: int = 0) -> Tagged:
        """Tags and entities of sentences given flat (``tokens``, ``lengths``).

        ``scores=False`` skips the probabilities (the crf's forward-backward, a softmax)
        when the output has no place for entity scores; the entities then score 0.
        ``plan_tokens``: the token count that decides which tables are precomputed
        (:meth:`_projections`), if not the tokens given (0).
        """
        if not self.fast:
            return self._predict_generic(tokens, lengths, scores)
        model = self.model
        net, head = model.net, model.net.head
        clock = _Clock(self.timings)
        data = self.encode(tokens, lengths)[0] if encoded is None else encoded[0]
        clock("encode")
        n = len(data)
        labels = head.labels
        proj = self._projections(plan_tokens or n)
        clock("network")
        # Batch by batch, the forward passes Model.tag_and_probabilities makes: the same
        # scores. The tags are decoded afterwards, from the scores of the whole chunk
        # (_decode: the same tags, fewer calls), and the probabilities only where an entity
        # needs them (_probabilities).
        whole = net.needs_whole_sentences(training=False)
        out_all = None
        for rows, lens in eval_batches(data, whole):
            out, _ = net.forward(data.rows(rows), train=False, proj=proj, lengths=lens)
            clock("network")
            if out_all is None:
                out_all = np.empty((n, *out.shape[1:]), dtype=out.dtype)
            out_all[rows] = out
        if out_all is None:
            out_all = head.empty_scores(np.float32)
        ids = self._decode(out_all, data.lengths if whole else None)
        clock("decode")
        probs = self._probabilities(out_all, ids, data.lengths) if scores else None
        clock("probabilities")
        if head.scheme not in ("iob2", "io"):  # repaired sentence by sentence, as Model does
            tags = [t for s in model.decode(data, ids) for t in s]
            names = sorted(set(tags) | {"O"})
            at = {t: i for i, t in enumerate(names)}
            ids = np.array([at[t] for t in tags], dtype=np.int64)
            labels_ = labels
        else:
            names, labels_ = list(labels), labels
        clock("decode")
        res = self._entities(names, ids, data.offsets, labels_, probs)
        clock("entities")
        return res

    def _decode(self, out: np.ndarray, lengths: np.ndarray | None) -> np.ndarray:
        """Tag ids of a chunk's scores ``out``, by the head's decode, once for the whole
        chunk (with ``lengths`` when the head or a block works on whole sentences).

        A head decodes each sentence on its own (per token, or Viterbi per sentence, whose
        steps are sums and maxima of each sentence's own numbers), so the tags are those of
        its sentences decoded one by one, to the bit, whichever sentences share the call (a
        test checks this for every head); one call runs Viterbi's loop over positions once
        per chunk instead of once per forward batch, in memory linear in the tokens."""
        net, head = self.model.net, self.model.net.head
        if lengths is not None:
            lengths = np.asarray(lengths, dtype=np.int64)
        return head.decode(out, lengths, net.params).astype(np.int64, copy=False)

    def _probabilities(self, out: np.ndarray, ids: np.ndarray, lengths: np.ndarray
                       ) -> np.ndarray:
        """(n, len(labels)) the head's probabilities, in the rows an entity reads: its own
        tokens, or, for a head whose probabilities come from the whole sentence (the crf's
        forward-backward), every token of a sentence with an entity. Other rows are 0.

        Every head computes a token's probabilities from its own row (softmax, logistic)
        or its own sentence's rows alone (crf_marginals, to the bit, in memory linear in
        the tokens), so skipping rows and taking the chunk's sentences in one call changes
        no number: these are the probabilities
        Model.tag_and_probabilities gives batch by batch (a test checks it for every head).
        A sentence without an entity costs nothing (in CoNLL-2003 train a sixth of the tokens
        are in sentences without a gold one)."""
        net, head = self.model.net, self.model.net.head
        labels = head.labels
        n = len(ids)
        probs = np.zeros((n, len(labels)), dtype=np.float64)
        # Ids index head.labels here (a scheme other than IOB2/IO is repaired later, from
        # these ids: its entity tokens are among these non-O ones).
        nonO = ids != labels.index("O") if "O" in labels else np.ones(n, dtype=bool)
        if not nonO.any():
            return probs
        if not head.sentence_loss:
            rows = np.flatnonzero(nonO)
            probs[rows] = head.columns(head.proba(out[rows], None, net.params))
            return probs
        lengths = np.asarray(lengths, dtype=np.int64)
        starts = np.cumsum(lengths) - lengths
        has = np.zeros(len(lengths), dtype=bool)
        has[np.repeat(np.arange(len(lengths)), lengths)[nonO]] = True
        keep = np.flatnonzero(has)
        lens = lengths[keep]
        rows = np.repeat(starts[keep], lens) + _ranges(lens)
        probs[rows] = head.columns(head.proba(out[rows], lens, net.params))
        return probs

    def _projections(self, n: int) -> Any:
        """``net.projections(n)``, built once per plan: which tables it precomputes depends
        only on whether each table has at most ``n`` rows, and for the same tables it holds
        the same products (the same matrices multiplied), so a chunk of another size with
        the same plan reads the very same numbers; only building it is saved."""
        net = self.model.net
        # Whether each table is precomputed depends on n only through n_rows <= n (the rest
        # is fixed per table), so this tuple tells plans apart.
        key = tuple(getattr(t, "n_rows", 0) <= max(n, 1) for t in net.spec.tables)
        if key not in self._proj:
            self._proj.clear()  # one kept: a run's chunks nearly all share one plan
            self._proj[key] = net.projections(n)
        return self._proj[key]

    def _predict_generic(self, tokens: list[str], lengths: Sequence[int], scores: bool
                         ) -> Tagged:
        """Through the model's own methods (anything with tag_and_probabilities)."""
        sents, pos = [], 0
        for n in lengths:
            sents.append(Sentence(tokens[pos:pos + n], ["O"] * n, 0))
            pos += n
        if scores:
            tags, labels, probs = self.model.tag_and_probabilities(sents)
            flat_p = (np.concatenate(probs) if probs else np.zeros((0, len(labels))))
        else:
            tags, labels, flat_p = self.model.tag(sents), [], None
        flat = [t for s in tags for t in s]
        names = sorted(set(flat) | {"O"})
        at = {t: i for i, t in enumerate(names)}
        ids = np.array([at[t] for t in flat], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(np.asarray(lengths, dtype=np.int64))])
        return self._entities(names, ids, offsets, list(labels), flat_p)

    @staticmethod
    def _entities(names: list[str], ids: np.ndarray, offsets: np.ndarray, labels: list[str],
                  probs: np.ndarray | None) -> Tagged:
        """Repair the tags (an I-X that does not continue an X becomes B-X, as
        nerwin.conll.to_iob2 does), read the entities (a B-X and the I-X after it, as
        nerwin.metrics.get_entities reads valid IOB2) and score them (entity_score)."""
        types = sorted({t[2:] for t in names if t != "O"})
        tix = {t: i for i, t in enumerate(types)}
        names = list(names)
        for t in types:  # every type gets a B- to repair to
            if f"B-{t}" not in names:
                names.append(f"B-{t}")
        typ = np.array([tix[t[2:]] if t != "O" else -1 for t in names], dtype=np.int64)
        is_b = np.array([t.startswith("B-") for t in names], dtype=bool)
        is_i = np.array([t != "O" and not t.startswith("B-") for t in names], dtype=bool)
        b_of = np.array([names.index(f"B-{t[2:]}") if t != "O" else k
                         for k, t in enumerate(names)], dtype=np.int64)
        n = len(ids)
        tok_type = typ[ids]
        prev = np.empty(n, dtype=np.int64)
        if n:
            prev[0] = -1
            prev[1:] = tok_type[:-1]
            prev[offsets[:-1][offsets[:-1] < n]] = -1  # a sentence's first token
        fix = is_i[ids] & (tok_type != prev)
        ids = np.where(fix, b_of[ids], ids)
        starts = np.flatnonzero(is_b[ids])
        not_i = np.append(np.flatnonzero(~is_i[ids]), n)
        ends = not_i[np.searchsorted(not_i, starts, side="right")]
        etype = typ[ids[starts]]
        score = np.zeros(len(starts), dtype=np.float64)
        if probs is not None and len(starts):
            for x, name in enumerate(types):
                cols = [k for k, lab in enumerate(labels) if lab != "O" and lab[2:] == name]
                sel = np.flatnonzero(etype == x)
                if not cols or not len(sel):
                    continue
                # The same sums as entity_score, row by row, for the whole chunk at once;
                # the mean of up to 7 values is their sum left to right (numpy sums fewer
                # than 8 that way), longer entities take entity_score's own mean.
                vals = np.clip(probs[:, cols].sum(axis=1), 0.0, 1.0)
                s, e = starts[sel], ends[sel]
                length = e - s
                short = length < 8
                acc = vals[s[short]].copy()
                for k in range(1, 8):
                    more = length[short] > k
                    acc[more] += vals[s[short][more] + k]
                score[sel[short]] = acc / length[short]
                for j in np.flatnonzero(~short).tolist():
                    score[sel[j]] = float(vals[s[j]: e[j]].mean())
        return Tagged(names, ids, types, starts, ends, etype, score)


class _Clock:
    """Adds the seconds since its last call to ``timings[stage]`` (nothing if None)."""

    def __init__(self, timings: dict[str, float] | None) -> None:
        self.timings = timings
        self.t = time.perf_counter() if timings is not None else 0.0

    def __call__(self, stage: str) -> None:
        if self.timings is not None:
            now = time.perf_counter()
            self.timings[stage] = self.timings.get(stage, 0.0) + now - self.t
            self.t = now


def fill_items(items: list[Item], res: Tagged) -> None:
    """Put the tags and entities of ``res`` (flat over ``items``' tokens) into ``items``."""
    # one take over an object array: no Python step per token
    tags = np.array(res.names, dtype=object)[res.ids].tolist()
    types = res.types
    ents = list(zip(res.ent_start.tolist(), res.ent_end.tolist(), res.ent_type.tolist(),
                    res.ent_score.tolist()))
    k = pos = 0
    for it in items:
        n = len(it.tokens)
        it.tags = tags[pos:pos + n]
        it.entities = []
        while k < len(ents) and ents[k][0] < pos + n:
            s, e, x, sc = ents[k]
            a, b = it.starts[s - pos], it.ends[e - 1 - pos]
            it.entities.append(Entity(types[x], a, b, it.text[a:b], sc))
            k += 1
        pos += n


def tag_items(model: Model | Tagger, items: list[Item], scores: bool = True,
              plan_tokens: int = 0) -> None:
    """Fill in the tags and entities of ``items`` (one call to the model for all of them).

    ``scores=False`` skips the probabilities (the crf's forward-backward, a softmax) when
    the output has no place for entity scores; the entities then score 0.
    """
    if not items:
        return
    tagger = model if isinstance(model, Tagger) else Tagger(model)
    tokens = list(chain.from_iterable(it.tokens for it in items))
    res = tagger.predict(tokens, [len(it.tokens) for it in items], scores,
                         plan_tokens=plan_tokens)
    clock = _Clock(tagger.timings)
    fill_items(items, res)
    clock("entities")


def tag_tokens(model: Model | Tagger, sentences: Iterable[Sequence[str]], scores: bool = True,
               chunk_tokens: int = CHUNK_TOKENS) -> list[Item]:
    """Tag sentences given as token lists: one Item a sentence (``text`` is the tokens
    joined by spaces, offsets and entity offsets into it), tagged in chunks of about
    ``chunk_tokens`` tokens."""
    tagger = model if isinstance(model, Tagger) else Tagger(model)
    items = []
    for k, toks in enumerate(sentences):
        toks = list(toks)
        text, starts, ends = _spaced(toks)
        items.append(Item(toks, starts, ends, text, k + 1))
    for chunk in _item_chunks(items, chunk_tokens):
        tag_items(tagger, chunk, scores)
    return items


def tag_texts(model: Model | Tagger, texts: Iterable[str], scores: bool = True,
              chunk_tokens: int = CHUNK_TOKENS) -> list[list[Item]]:
    """Tag raw texts: for each text, its sentences (every line split as ``nerwin tag``
    splits text input; ``Item.line`` is the line within the text, ``Item.offset`` where
    the sentence starts in that line)."""
    tagger = model if isinstance(model, Tagger) else Tagger(model)
    out: list[list[Item]] = []
    for text in texts:
        items = [it for rec in text_block(1, "\n".join(_EOL.split(text))) for it in rec.items]
        for chunk in _item_chunks(items, chunk_tokens):
            tag_items(tagger, chunk, scores)
        out.append(items)
    return out


def _item_chunks(items: list[Item], chunk_tokens: int) -> Iterator[list[Item]]:
    start = n = 0
    for i, it in enumerate(items):
        n += len(it.tokens)
        if n >= chunk_tokens:
            yield items[start:i + 1]
            start, n = i + 1, 0
    if start < len(items):
        yield items[start:]


def _items_of(rec: Record) -> list[Item]:
    if isinstance(rec, TextLine):
        return rec.items
    return [rec] if isinstance(rec, Item) else []


def _n_tokens(rec: Record) -> int:
    return sum(len(it.tokens) for it in _items_of(rec))


def chunks(records: Iterable[Record], chunk_tokens: int) -> Iterator[list[Record]]:
    """Consecutive records holding about ``chunk_tokens`` tokens (whole sentences)."""
    chunk: list[Record] = []
    n = 0
    for rec in records:
        chunk.append(rec)
        n += _n_tokens(rec)
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


def _json_float(x: float) -> str:
    r = round(x, 4)
    return repr(r) if math.isfinite(r) else json.dumps(r)


# repr(k / 10000) for k = 0..10000: the JSON of every score in [0, 1] rounded to 4 places.
# round(x, 4) is the double nearest the decimal x correctly rounded to 4 places, k / 10000
# (a correctly rounded division) is the double nearest that same decimal k / 10^4: the
# same double, so the same repr.
_SCORE_JSON = [repr(k / 10000) for k in range(10001)]


def _scores_json(scores: list[float]) -> list[str]:
    """``_json_float`` of each score, with array operations: k = rint(x * 10^4) is the
    decimal of round(x, 4) unless x * 10^4 lies within 1e-6 of a half (its float product
    is off by at most about 1e-12, so only there can it round the other way) or x is not
    in [0, 1] (or is -0.0, or NaN): those few go through _json_float itself, as does
    every score when one is not a float (a caller's own Entity: round(1, 4) is 1)."""
    if not set(map(type, scores)) <= {float}:
        return list(map(_json_float, scores))
    x = np.fromiter(scores, dtype=np.float64, count=len(scores))
    y = x * 1e4
    with np.errstate(invalid="ignore"):  # inf - inf: NaN, not ok, as it should be
        ok = (x >= 0.0) & (x <= 1.0) & ~np.signbit(x) & (np.abs(y - np.floor(y) - 0.5) > 1e-6)
    k = np.where(ok, np.rint(y), 0.0).astype(np.int64)
    out = list(map(_SCORE_JSON.__getitem__, k.tolist()))
    for j in np.flatnonzero(~ok).tolist():
        out[j] = _json_float(scores[j])
    return out


_INT_STR: list[str] = []  # str(i), made once for every offset seen
_INT_LOCK = threading.Lock()
_ENTITY_JSON = '{"type": %s, "start": %d, "end": %d, "text": %s, "score": %s}'


def _entities_json(items: list[Item]) -> list[str]:
    """The JSON object of every entity of ``items``, in order: what json.dumps gives for
    its dict, one %-format each over columns read with C-level maps."""
    ents = list(chain.from_iterable(it.entities for it in items))
    if not ents:
        return []
    types = list(map(attrgetter("type"), ents))
    type_json = {t: encode_basestring(t) for t in set(types)}
    # "%d" of an int is str(int); an offset that is not an int (a caller's own Entity)
    # goes through the f-string, as before.
    starts = list(map(attrgetter("start"), ents))
    ends = list(map(attrgetter("end"), ents))
    if not set(map(type, chain(starts, ends))) <= {int}:  # (a C-level pass)
        return [f'{{"type": {encode_basestring(e.type)}, "start": {e.start}, "end": {e.end}, '
                f'"text": {encode_basestring(e.text)}, "score": {_json_float(e.score)}}}'
                for e in ents]
    return list(map(_ENTITY_JSON.__mod__, zip(
        map(type_json.__getitem__, types), starts, ends,
        map(encode_basestring, map(attrgetter("text"), ents)),
        _scores_json(list(map(attrgetter("score"), ents))))))


class _JsonStrings(dict):
    """A string -> its JSON (``encode_basestring``: ``ensure_ascii=False``), made on first
    sight and kept for the run: the same tokens come back chunk after chunk. Emptied when
    it holds JSON_STRINGS_LIMIT strings, so memory stays bounded."""

    def __missing__(self, s: str) -> str:
        js = self[s] = encode_basestring(s)
        return js


JSON_STRINGS_LIMIT = 1 << 17
_TOKEN_JSON = _JsonStrings()
# The characters encode_basestring escapes (ensure_ascii=False): a tag without any is
# written as itself in quotes.
_JSON_ESCAPED = re.compile(r'["\\\x00-\x1f]')


def jsonl_lines(items: list[Item]) -> str:
    """The jsonl output of ``items``: what ``json.dumps`` of each one's object gives
    (``ensure_ascii=False``, U+0085/U+2028/U+2029 escaped), put together from the JSON of
    each token string (made once per run, :class:`_JsonStrings`), of each offset (made
    once per run) and of every entity of the chunk (:func:`_entities_json`) with C-level
    joins."""
    if len(_TOKEN_JSON) > JSON_STRINGS_LIMIT:
        _TOKEN_JSON.clear()
    tj = _TOKEN_JSON.__getitem__
    top = max((it.ends[-1] for it in items if it.ends), default=0)
    if top >= len(_INT_STR):
        # Under a lock: threads (a Dask worker's) extending it at once would each append
        # the same numbers, and _INT_STR[i] would no longer be str(i).
        with _INT_LOCK:
            if top >= len(_INT_STR):
                _INT_STR.extend([str(i) for i in range(len(_INT_STR), 2 * top + 1)])
    num = _INT_STR.__getitem__
    # A tag's JSON is the tag in quotes unless it holds a quote, backslash or control.
    plain = not _JSON_ESCAPED.search("".join(chain.from_iterable(it.tags for it in items)))
    ent_json = _entities_json(items)
    out = []
    k = 0
    for it in items:
        n_ent = len(it.entities)
        ents = ", ".join(ent_json[k:k + n_ent]) if n_ent else ""
        k += n_ent
        offsets = "], [".join(map(", ".join, zip(map(num, it.starts), map(num, it.ends))))
        tags = ('"' + '", "'.join(it.tags) + '"' if plain
                else ", ".join(map(encode_basestring, it.tags)))
        out.append(
            f'{{"text": {encode_basestring(it.text)}, "tokens": ['
            f'{", ".join(map(tj, it.tokens))}], "offsets": [[{offsets}]], "tags": [{tags}], '
            f'"entities": [{ents}], "line": {it.line}}}\n')
    return "".join(out).translate(_JSON_LINE_SAFE)


def format_record(rec: Record, output_format: str) -> str:
    """The output text of one record, newlines included (maybe empty)."""
    if output_format == "jsonl":
        return jsonl_lines(_items_of(rec))
    if output_format == "inline":
        if isinstance(rec, TextLine):
            if not any(it.entities for it in rec.items):
                return rec.text + "\n"
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


def format_chunk(chunk: list[Record], output_format: str) -> str:
    """The output text of a chunk of records."""
    if output_format == "jsonl":
        return jsonl_lines([it for rec in chunk for it in _items_of(rec)])
    if output_format == "conll" and all(type(rec) is TextLine for rec in chunk):
        return _conll_text([it for rec in chunk for it in rec.items])
    return "".join([format_record(rec, output_format) for rec in chunk])


def _conll_text(items: list[Item]) -> str:
    """format_record's conll output of text input's sentences ("token tag" lines, a blank
    line after each sentence), for a whole chunk at once: the pieces of every line laid
    out in one list by slice assignments, each sentence's last line end doubled, one join
    (no Python step per token)."""
    if not all(it.tokens and len(it.tags) == len(it.tokens) for it in items):
        # an empty sentence is just its blank line; untagged tokens are left out (zip)
        return "".join(format_record(TextLine(0, "", [it]), "conll") for it in items)
    tokens = list(chain.from_iterable(it.tokens for it in items))
    n = len(tokens)
    parts = [" "] * (4 * n)
    parts[0::4] = tokens
    parts[2::4] = chain.from_iterable(it.tags for it in items)
    parts[3::4] = ["\n"] * n
    last = np.cumsum(np.fromiter(map(len, (it.tokens for it in items)), dtype=np.int64,
                                 count=len(items))) * 4 - 1
    for k in last.tolist():
        parts[k] = "\n\n"
    return "".join(parts)


@dataclass
class TagStats:
    """What a tagging run saw."""

    lines: int = 0
    sentences: int = 0
    tokens: int = 0
    entities: int = 0

    def add(self, other: TagStats) -> None:
        self.lines += other.lines
        self.sentences += other.sentences
        self.tokens += other.tokens
        self.entities += other.entities


def chunk_records(chunk: TextChunk | list[Record]) -> list[Record]:
    """The records of a chunk: a TextChunk's lines tokenised and split into sentences
    (:func:`text_block`), or the records themselves (CoNLL input)."""
    if isinstance(chunk, TextChunk):
        return text_block(chunk.first, chunk.text)  # type: ignore[return-value]
    return chunk


def tag_chunk(tagger: Tagger, chunk: TextChunk | list[Record], output_format: str
              ) -> tuple[str, TagStats]:
    """Tag one chunk (a TextChunk, or CoNLL records) and format it: (output text, what it
    held). One process or many (nerwin.parallel), every chunk goes through this."""
    records = chunk_records(chunk)
    items = [it for rec in records for it in _items_of(rec)]
    tag_items(tagger, items, scores=output_format == "jsonl",
              plan_tokens=chunk.plan_tokens if isinstance(chunk, TextChunk) else 0)
    stats = TagStats(sentences=len(items), tokens=sum(len(it.tokens) for it in items),
                     entities=sum(len(it.entities) for it in items))
    return format_chunk(records, output_format), stats


def text_chunks(blocks: Iterable[tuple[int, list[str]]], chunk_chars: int,
                plan_tokens: int = 0) -> Iterator[TextChunk]:
    """Whole lines of ``blocks`` (line_blocks) joined into chunks: a chunk ends with the
    line at which its characters, a line end counted for every line, reach
    ``chunk_chars``. Nothing is tokenised here (the lines' lengths decide), so the reading
    process does little; a single line longer than ``chunk_chars`` is a chunk of its own,
    and blank lines count too (memory stays bounded however many there are). Every chunk
    but the last carries ``plan_tokens`` (TextChunk)."""
    held: list[str] = []  # lines of the chunk being filled, from earlier blocks
    held_first = size = 0
    for first, lines in blocks:
        if not lines:
            continue
        # ends[j]: characters of lines[:j + 1], line ends included
        ends = np.cumsum(np.fromiter(map(len, lines), dtype=np.int64, count=len(lines)) + 1)
        if not held:
            held_first = first
        start = 0
        done = 0  # characters of lines[:start]
        while True:
            # the first line at which the chunk reaches chunk_chars
            j = int(np.searchsorted(ends, done + chunk_chars - size, side="left"))
            if j >= len(lines):
                break
            held += lines[start:j + 1]
            yield TextChunk(held_first, "\n".join(held), plan_tokens)
            held, size = [], 0
            start, done = j + 1, int(ends[j])
            held_first = first + start
        if start < len(lines):
            if not held:
                held_first = first + start
            held += lines[start:]
            size += int(ends[-1]) - done
    if held:
        yield TextChunk(held_first, "\n".join(held))


def record_chunks(src: BinaryIO, name: str, *, input_format: str = "text",
                  chunk_tokens: int = CHUNK_TOKENS,
                  on_bytes: Callable[[int], None] | None = None,
                  stats: TagStats | None = None) -> Iterator[TextChunk | list[Record]]:
    """Read ``src`` into chunks of about ``chunk_tokens`` tokens, to be tagged by
    :func:`tag_chunk`: for text, TextChunks of whole lines, cut by their characters
    (``chunk_tokens`` * CHARS_PER_TOKEN; the lines are tokenised in tag_chunk); for CoNLL,
    lists of records of whole sentences, cut by their tokens (CoNLL input comes
    tokenised). Counts the lines into ``stats``. The chunks do not depend on who tags
    them, so one process and many write the same output."""
    if input_format not in INPUT_FORMATS:
        raise NerwinError(f"input format {input_format!r}: expected one of "
                          f"{', '.join(INPUT_FORMATS)}")
    stats = stats if stats is not None else TagStats()
    blocks = line_blocks(src, name, on_bytes)

    def counted() -> Iterator[tuple[int, list[str]]]:
        for block in blocks:
            stats.lines += len(block[1])
            yield block

    if input_format == "text":
        chunk_chars = max(1, round(chunk_tokens * CHARS_PER_TOKEN))
        return text_chunks(_probed(counted(), name), chunk_chars, chunk_tokens)
    lines = (ln for first, block in counted() for ln in enumerate(block, start=first))
    return chunks(conll_records(lines, name), chunk_tokens)


def _probed(blocks: Iterator[tuple[int, list[str]]], name: str
            ) -> Iterator[tuple[int, list[str]]]:
    """``blocks``, once the first PROBE_LINES non-blank lines have been checked not to
    look like CoNLL columns (before anything is tagged)."""
    held: list[tuple[int, list[str]]] = []
    head: list[tuple[int, str]] = []  # up to the PROBE_LINES-th non-blank line
    nonblank = 0
    for first, lines in blocks:
        held.append((first, lines))
        for n, line in enumerate(lines, start=first):
            head.append((n, line))
            nonblank += bool(line.strip())
            if nonblank >= PROBE_LINES:
                break
        if nonblank >= PROBE_LINES:
            break
    check_not_conll(name, head)
    del head
    yield from held
    del held
    yield from blocks


def tag_stream(model: Model | Tagger, src: BinaryIO, name: str, out: IO[str], *,
               input_format: str = "text", output_format: str = "conll",
               chunk_tokens: int = CHUNK_TOKENS,
               on_bytes: Callable[[int], None] | None = None,
               runner: Any = None) -> TagStats:
    """Read ``src``, tag it chunk by chunk, write each chunk to ``out``.

    ``runner`` tags the chunks elsewhere: nerwin.parallel.Workers(model_dir, n) in n
    processes (``nerwin tag --workers``); the output is the same, in input order.
    Raises NerwinError (naming ``name`` and the line) for invalid UTF-8, ragged CoNLL
    columns, text that looks like CoNLL columns, or an input without a single token.
    """
    if output_format not in OUTPUT_FORMATS:
        raise NerwinError(f"output format {output_format!r}: expected one of "
                          f"{', '.join(OUTPUT_FORMATS)}")
    stats = TagStats()
    parts = record_chunks(src, name, input_format=input_format, chunk_tokens=chunk_tokens,
                          on_bytes=on_bytes, stats=stats)
    if runner is not None:
        results: Iterable[tuple[str, TagStats]] = runner(parts, output_format)
    else:
        tagger = model if isinstance(model, Tagger) else Tagger(model)
        results = (tag_chunk(tagger, chunk, output_format) for chunk in parts)
    for text, st in results:
        st.lines = 0
        stats.add(st)
        out.write(text)
        out.flush()
    if stats.tokens == 0:
        raise NerwinError(f"{name}: no tokens found: the input is empty or blank")
    return stats
