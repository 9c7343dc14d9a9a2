"""The streaming reader and the flat corpus against the rules read whole (nerwin.conll)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nerwin.conll as conll
from nerwin.conll import (
    DOCSTART,
    Corpus,
    Sentence,
    detect_scheme,
    entity_counts,
    read_conll,
    read_tokens,
    split_line,
    to_iob2,
)
from nerwin.errors import NerwinError
from nerwin.metrics import get_entities

TAGS = {"iob2": ["O", "O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC"],
        "iob1": ["O", "O", "I-PER", "I-LOC", "B-LOC"],
        "iobes": ["O", "O", "B-PER", "I-PER", "E-PER", "S-LOC", "S-PER"],
        "io": ["O", "O", "I-PER", "I-LOC"]}
TOKEN = st.text(st.sampled_from("aZ9.\u00e9\u4e2d\U0001f600\u2028\u00a0-\ufeff"), min_size=1,
                max_size=5).filter(lambda t: not t.startswith("\ufeff"))
EOLS = st.sampled_from(["\n", "\r\n", "\r"])


def reference(data: bytes, scheme: str = "auto", tag_column: int = -1):
    """What the reader returned when it read the whole file (a valid one) at once."""
    lines = conll._EOL.split(data.decode("utf-8"))
    if lines and lines[-1] == "":
        lines.pop()
    sents, cur = [], []
    for lineno, line in enumerate(lines, start=1):
        parts, _ = split_line(line)
        if parts and parts[0] == DOCSTART:
            parts = []
        if parts:
            cur.append((lineno, parts[0], parts[tag_column]))
        elif cur:
            sents.append(cur)
            cur = []
    if cur:
        sents.append(cur)
    raw = [[t for _, _, t in s] for s in sents]
    use = detect_scheme(raw) if scheme == "auto" else scheme
    out, repaired = [], 0
    for s, tags in zip(sents, raw):
        iob2, r = to_iob2(tags, use)
        repaired += r
        out.append(([tok for _, tok, _ in s], iob2, s[0][0]))
    return out, use, repaired


@st.composite
def conll_files(draw):
    scheme = draw(st.sampled_from(sorted(TAGS)))
    parts = []
    for i in range(draw(st.integers(1, 6))):
        kind = "tok" if i == 0 else draw(st.sampled_from(["tok", "tok", "blank", "doc"]))
        if kind == "blank":
            parts.append(draw(st.sampled_from(["", " ", "\t"])))
        elif kind == "doc":
            parts.append("-DOCSTART- O")
        else:
            for _ in range(draw(st.integers(1, 5))):
                tok, tag = draw(TOKEN), draw(st.sampled_from(TAGS[scheme]))
                bom = draw(st.sampled_from(["", "", "\ufeff"]))
                if draw(st.booleans()):
                    parts.append(f"{bom}{tok.replace(' ', '')}\t{tag} ")
                else:
                    parts.append(f"{bom}{tok.replace(chr(0xa0), 'x')}  {tag}")
        parts.append("")
    text = "".join(p + draw(EOLS) for p in parts)
    if draw(st.booleans()):
        text = text.rstrip("\r\n")
    return text.encode("utf-8")


@settings(max_examples=150, deadline=None)
@given(conll_files(), st.sampled_from([1, 2, 3, 5, 64, 1 << 20]))
def test_streaming_reader_equals_reading_the_whole_file(tmp_path_factory, data, chunk):
    p = tmp_path_factory.mktemp("c") / "f.txt"
    p.write_bytes(data)
    sents, scheme, repaired = reference(data)
    old = conll.CHUNK
    conll.CHUNK = chunk
    try:
        c = read_conll(p)
        tokens = read_tokens(p)
    finally:
        conll.CHUNK = old
    got = [(s.tokens, s.tags, s.line) for s in c.sentences]
    assert got == sents
    assert (c.scheme, c.repaired, c.n_tokens) == (scheme, repaired, sum(len(s[0]) for s in sents))
    assert entity_counts(c.sentences) == c.entity_counts()
    tag, starts, ends = c.entity_spans()
    flat = [t for s in sents for t in s[1]]
    offs = np.concatenate([[0], np.cumsum([len(s[0]) for s in sents])])
    want_spans = [(f"B-{typ}", int(offs[k]) + a, int(offs[k]) + b)
                  for k, s in enumerate(sents) for typ, a, b in get_entities(s[1])]
    assert [(c.tag_names[t], a, b) for t, a, b in zip(tag, starts, ends)] == want_spans
    assert all(flat[a] == c.tag_names[t] for t, a in zip(tag, starts))
    for k, s in enumerate(sents):
        assert c.line_of(int(offs[k]) + len(s[0]) - 1) == s[2] + len(s[0]) - 1
    assert [(s.tokens, s.line) for s in tokens] == [(s[0], s[2]) for s in sents]


@settings(max_examples=100, deadline=None)
@given(conll_files(), st.integers(0, 10**6), st.sampled_from([b"\xff", b"\xe2\x82", b"\xc3"]),
       st.sampled_from([1, 3, 1 << 20]))
def test_invalid_utf8_is_named_at_its_line_whatever_the_chunks(tmp_path_factory, data, at, bad,
                                                                chunk):
    at = at % (len(data) + 1)
    data = data[:at] + bad + data[at:]
    p = tmp_path_factory.mktemp("u") / "f.txt"
    p.write_bytes(data)
    try:
        data.decode("utf-8")
        return  # the bytes happened to complete a character
    except UnicodeDecodeError as e:
        line = len(conll.EOL_BYTES.findall(data, 0, e.start)) + 1
        want = (f"{p}:{line}: invalid UTF-8 ({e.reason}, byte 0x{data[e.start]:02x}); save the "
                f"file as UTF-8")
    old = conll.CHUNK
    conll.CHUNK = chunk
    try:
        for read in (read_conll, read_tokens):
            with pytest.raises(NerwinError) as got:
                read(p)
            assert str(got.value) == want
    finally:
        conll.CHUNK = old


@pytest.mark.parametrize("content, line, words", [
    # invalid UTF-8 anywhere comes before any other error, as when files were decoded whole
    (b"a O\nb x O\nc O\n\xff\n", 4, "invalid UTF-8"),
    (b"a\nb O\n\xff\n", 3, "invalid UTF-8"),
    # an empty token comes before the column checks
    (b"a O\nb x O\n\tO\n", 3, "empty token"),
    (b"a\n\tO\n", 2, "empty token"),
    # the first of the line errors, ragged or not a tag
    (b"a O\nb x\nc x O\n", 2, "'x' is not a NER tag"),
    (b"a O\nb x O\nc x\n", 2, "found 3 columns"),
    # scheme checks come after every line was read
    (b"a E-PER\nb x O\n", 2, "found 3 columns"),
])
def test_the_most_important_error_of_the_file_wins(tmp_path, content, line, words):
    p = tmp_path / "bad.txt"
    p.write_bytes(content)
    with pytest.raises(NerwinError) as e:
        read_conll(p, scheme="iob2")
    assert f"{p}:{line}:" in str(e.value) and words in str(e.value)


def test_corpus_from_sentences_keeps_them():
    sents = [Sentence(["a", "b", "a"], ["B-X", "I-X", "O"], 3), Sentence(["c"], ["O"], 9)]
    c = Corpus(conll.Path("<t>"), sents, scheme="iob2")
    assert list(c.sentences) == sents and c.sentences[-1] == sents[-1]
    assert c.sentences[0:1] == sents[:1] and len(c.sentences) == 2
    assert c.types == ["a", "b", "c"] and c.token_ids.tolist() == [0, 1, 0, 2]
    assert c.lengths.tolist() == [3, 1] and c.line_of(3) == 9 and c.line_of(1) == 4
    with pytest.raises(IndexError):
        c.sentences[2]
