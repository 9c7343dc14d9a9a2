"""The CoNLL reader, the tag schemes and the prediction writer."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nerwin.conll import (
    detect_scheme,
    entity_counts,
    format_predictions,
    from_iob2,
    read_conll,
    to_iob2,
)
from nerwin.errors import NerwinError

SIMPLE = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
call NN I-NP O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER
"""


def test_reads_sentences_tokens_and_tags(write):
    c = read_conll(write("a.txt", SIMPLE))
    assert [s.tokens for s in c.sentences] == [["EU", "rejects", "German", "call"],
                                               ["Peter", "Blackburn"]]
    assert c.sentences[1].tags == ["B-PER", "I-PER"]
    assert c.sentences[0].line == 3 and c.sentences[1].line == 8
    assert c.docs == 1 and c.columns == 4 and c.scheme == "iob2" and c.repaired == 0
    assert entity_counts(c.sentences) == {"ORG": 1, "MISC": 1, "PER": 1}


def test_bom_crlf_multiple_blank_lines_and_no_final_newline(write):
    text = "\ufeffa O\r\nb B-LOC\r\n\r\n\r\n\r\nc I-LOC"
    c = read_conll(write("a.txt", text.encode("utf-8")))
    assert [s.tokens for s in c.sentences] == [["a", "b"], ["c"]]
    # "c I-LOC" starts an entity after a sentence break: repaired to B-LOC, counted.
    assert c.sentences[1].tags == ["B-LOC"]


def test_tab_separated_file_keeps_other_whitespace_in_tokens(write):
    c = read_conll(write("t.tsv", "New York\tB-LOC\nx\ufeff\u00a0y\tO\n"))
    assert c.sentences[0].tokens == ["New York", "x\ufeff\u00a0y"]


def test_bom_at_a_line_start_is_not_part_of_the_token(write):
    """Two files concatenated: the second one's byte-order mark sits mid-file."""
    c = read_conll(write("t.txt", "\ufeffa O\nb B-LOC\n\n\ufeffc O\n\n\ufeff-DOCSTART- O\nd O\n"))
    assert [s.tokens for s in c.sentences] == [["a", "b"], ["c"], ["d"]]
    assert c.docs == 1


def test_cr_only_and_mixed_line_ends(write):
    c = read_conll(write("t.txt", b"a O\rb B-LOC\r\rc O\r\nd O\n\ne O"))
    assert [s.tokens for s in c.sentences] == [["a", "b"], ["c", "d"], ["e"]]
    assert c.sentences[2].line == 7


def test_separator_is_decided_per_line(write):
    c = read_conll(write("t.txt", "a O\n\t\nNew York\tB-LOC\nb  O \n"))
    assert [s.tokens for s in c.sentences] == [["a"], ["New York", "b"]]
    with pytest.raises(NerwinError, match=r"t2.txt:3: found 3 columns, expected 2 as on line 1 "
                       r"\(this line is space-separated, line 1 tab-separated\)"):
        read_conll(write("t2.txt", "New York\tB-LOC\n\t\nb NNP O\n"))


def test_fields_of_a_tab_line_lose_surrounding_spaces(write):
    c = read_conll(write("t.tsv", "EU\tB-ORG \nrejects \tO\t\n"))
    assert c.sentences[0].tokens == ["EU", "rejects"]
    assert c.sentences[0].tags == ["B-ORG", "O"]


@pytest.mark.parametrize("content", ["a\tO\n\tO\n", "a\tO\n \tO\n"])
def test_empty_token_names_the_line(write, content):
    p = write("t.tsv", content)
    with pytest.raises(NerwinError, match=f"{p}:2: empty token"):
        read_conll(p)


def test_docstart_splits_sentences(write):
    c = read_conll(write("a.txt", "a O\n-DOCSTART- O\nb O\n"))
    assert [s.tokens for s in c.sentences] == [["a"], ["b"]]


def test_tag_column_option(write):
    c = read_conll(write("a.txt", "Paris B-LOC NNP\n"), tag_column=1)
    assert c.sentences[0].tags == ["B-LOC"]


@pytest.mark.parametrize("content, line, words", [
    ("a O\nb NNP O\n", 2, "found 3 columns, expected 2"),
    ("a O\nb b-PER\n", 2, "'b-PER' is not a NER tag"),
    ("a O\nb X-PER\n", 2, "is not a NER tag"),
    ("a\nb\n", 1, "found 1 column"),
    (b"a O\nb\xff O\n", 2, "invalid UTF-8"),
])
def test_malformed_lines_name_file_and_line(write, content, line, words):
    p = write("bad.txt", content)
    with pytest.raises(NerwinError) as e:
        read_conll(p)
    assert f"{p}:{line}:" in str(e.value)
    assert words in str(e.value)


@pytest.mark.parametrize("content", ["", "\n\n  \n", "-DOCSTART- O\n\n"])
def test_empty_files_are_errors(write, content):
    p = write("empty.txt", content)
    with pytest.raises(NerwinError, match="empty|no tokens"):
        read_conll(p)


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(NerwinError, match="no such file"):
        read_conll(tmp_path / "nope.txt")


def test_tag_outside_configured_scheme(write):
    p = write("a.txt", "a B-PER\nb E-PER\n")
    with pytest.raises(NerwinError) as e:
        read_conll(p, scheme="iob2")
    assert f"{p}:2:" in str(e.value) and "iob2" in str(e.value)
    assert read_conll(p).scheme == "iobes"  # auto detects it


@pytest.mark.parametrize("scheme, tags, iob2, repaired", [
    ("iob2", ["B-PER", "I-PER", "O", "B-LOC"], ["B-PER", "I-PER", "O", "B-LOC"], 0),
    ("iob2", ["O", "I-PER", "I-PER", "I-LOC"], ["O", "B-PER", "I-PER", "B-LOC"], 2),
    ("iob1", ["I-PER", "I-PER", "B-PER", "O", "I-LOC"],
     ["B-PER", "I-PER", "B-PER", "O", "B-LOC"], 0),
    ("io", ["I-PER", "I-PER", "O", "I-LOC", "I-ORG"],
     ["B-PER", "I-PER", "O", "B-LOC", "B-ORG"], 0),
    ("iobes", ["S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC", "O"],
     ["B-PER", "B-LOC", "I-LOC", "I-LOC", "B-LOC", "O"], 0),
    # I- after an E- is invalid IOBES: repaired to a new entity.
    ("iobes", ["B-LOC", "E-LOC", "I-LOC"], ["B-LOC", "I-LOC", "B-LOC"], 1),
])
def test_to_iob2(scheme, tags, iob2, repaired):
    assert to_iob2(tags, scheme) == (iob2, repaired)


def _valid_iob2(draw_tags):
    """Repair an arbitrary tag list into valid IOB2."""
    return to_iob2(draw_tags, "iob2")[0]


tag_lists = st.lists(st.sampled_from(["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]), max_size=30)


@given(tag_lists)
def test_round_trip_through_each_scheme(tags):
    iob2 = _valid_iob2(tags)
    for scheme in ("iob1", "iob2", "iobes"):
        assert to_iob2(from_iob2(iob2, scheme), scheme)[0] == iob2
        # what we write in a scheme is valid in it: nothing to repair
        assert to_iob2(from_iob2(iob2, scheme), scheme)[1] == 0


@given(tag_lists)
def test_io_round_trip_when_no_adjacent_same_type(tags):
    iob2 = _valid_iob2(tags)
    adjacent = any(b.startswith("B-") and a != "O" and a[2:] == b[2:]
                   for a, b in zip(iob2, iob2[1:]))
    back = to_iob2(from_iob2(iob2, "io"), "io")[0]
    assert (back == iob2) or adjacent


def test_detect_scheme():
    assert detect_scheme([["B-PER", "I-PER", "O"]]) == "iob2"
    assert detect_scheme([["I-PER", "I-PER", "B-PER", "O"]]) == "iob1"
    assert detect_scheme([["I-PER", "O", "I-LOC"]]) == "io"
    assert detect_scheme([["S-PER", "O"]]) == "iobes"


def test_ragged_file_mentions_separator_and_first_line(write):
    p = write("a.txt", "a x O\nb x O\nc O\n")
    with pytest.raises(NerwinError, match=r"a.txt:3: found 2 columns, expected 3 as on line 1"):
        read_conll(p)


def test_nothing_is_dropped_on_long_sentences(write):
    rng = random.Random(0)
    toks = [f"w{rng.randrange(1000)}" for _ in range(5000)]
    p = write("long.txt", "".join(f"{t} O\n" for t in toks))
    c = read_conll(p)
    assert len(c.sentences) == 1 and c.sentences[0].tokens == toks


def test_prediction_writer_columns(write):
    c = read_conll(write("a.txt", "New\tB-LOC\nYork City\tI-LOC\n"))
    text = format_predictions(c.sentences, [["B-LOC", "O"]])
    assert text == "New B-LOC B-LOC\nYork\u00a0City I-LOC O\n\n"
    # readable back by our own reader, as gold and guess columns
    back = read_conll(write("p.txt", text), tag_column=2)
    assert back.sentences[0].tags == ["B-LOC", "O"]
    with pytest.raises(ValueError):
        format_predictions(c.sentences, [["O"]])


@pytest.mark.parametrize(("tag", "expected"), [
    ("O", ("O", None)), ("B-PER", ("B", "PER")), ("I-LOC", ("I", "LOC")),
    ("E-MISC", ("E", "MISC")), ("S-ORG", ("S", "ORG")), ("B-A-B", ("B", "A-B")),
])
def test_split_tag_one_convention(tag, expected):
    from nerwin import metrics
    from nerwin.conll import split_tag

    assert split_tag(tag) == expected
    assert metrics.split_tag is split_tag  # the scorer uses the same function


@pytest.mark.parametrize("tag", ["", "B", "B-", "X-PER", "BPER", "o", "B_PER"])
def test_split_tag_refuses_malformed(tag):
    from nerwin.conll import split_tag

    with pytest.raises(ValueError, match="is not 'O'"):
        split_tag(tag)
