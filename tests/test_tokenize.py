"""The raw-text tokenizer: exact substrings, full coverage, CoNLL-2003's conventions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nerwin.conll import read_tokens
from nerwin.tokenize import agreement, detokenize, iter_line_sentences, sentences, tokenize

# Lines of arbitrary Unicode plus the awkward parts the issue names: tabs, emoji, RTL text,
# combining marks, abbreviations, numbers, URLs, very long lines.
PIECES = st.sampled_from([
    " ", "\t", "\u00a0", "\u2003", "U.S.", "Corp.", "don't", "O'Brien", "1,000.50", "6-4",
    "http://x.org/a?b=1.", "jo@x.com,", "\U0001F600", "\U0001F468\u200d\U0001F469",
    "\u05e9\u05dc\u05d5\u05dd", "\u0627\u0644\u0633\u0644\u0627\u0645", "e\u0301", "...",
    "--", '"', "(", ")", "'s", "1.", "a.m.", "BBB+", "C$5", "\u200b", "\r", "\x1c"])
TEXT = st.one_of(
    st.text(),
    st.lists(st.one_of(PIECES, st.text(max_size=5)), max_size=40).map("".join),
    st.builds(lambda s, n: s * n, st.text(min_size=1, max_size=8), st.integers(500, 3000)),
)


def check_cover(text, toks):
    pos = 0
    for t in toks:
        assert t.text == text[t.start:t.end] and t.text, (t, text)
        assert t.start >= pos, "tokens overlap or go backwards"
        assert text[pos:t.start].isspace() or pos == t.start, (text[pos:t.start], t)
        assert not any(c.isspace() for c in t.text), t
        pos = t.end
    assert text[pos:].strip() == "" and (pos == len(text) or text[pos:].isspace())


@given(TEXT)
def test_tokens_are_substrings_covering_every_non_space_char(text):
    check_cover(text, tokenize(text))
    # concatenated tokens = the text with its whitespace removed
    assert "".join(t.text for t in tokenize(text)) == "".join(
        c for c in text if not c.isspace())


@given(TEXT)
def test_sentence_split_never_changes_tokens(text):
    for line in text.splitlines():
        flat = [t for s in sentences(line) for t in s]
        assert flat == tokenize(line)
        assert all(s for s in sentences(line))
    lines = [line for line in text.splitlines() if line.strip()]
    assert sum(len(s) for s in iter_line_sentences(text)) == sum(
        len(tokenize(line)) for line in lines)


@pytest.mark.parametrize("text, want", [
    ("EU rejects German call to boycott British lamb.",
     "EU rejects German call to boycott British lamb ."),
    ("Clinton's aides don't know; O'Brien can't.",
     "Clinton 's aides do n't know ; O'Brien ca n't ."),
    ("He paid C$5 (1,000) at 10:30 a.m. in the U.S.",
     "He paid C$ 5 ( 1,000 ) at 10:30 a.m. in the U.S ."),
    ("Visit http://www.x.com/a?b=1. Mail jo.x@reuters.com.",
     "Visit http://www.x.com/a?b=1 . Mail jo.x@reuters.com ."),
    ("1. Pivotal 100-30 (ridden by J. Smith)", "1. Pivotal 100-30 ( ridden by J. Smith )"),
    ("Acme Corp. of Calif. beat a U.S.-led bid, 6-4 7-6.",
     "Acme Corp. of Calif. beat a U.S.-led bid , 6-4 7-6 ."),
    ('"It is over," said Inzamam-ul-Haq -- the one-day star...',
     '" It is over , " said Inzamam-ul-Haq -- the one-day star ...'),
    ("Shares rose 1.5m, .500 avg, 1990s, the 3,000th, +44, S&P BBB+.",
     "Shares rose 1.5m , .500 avg , 1990s , the 3,000th , +44 , S&P BBB+ ."),
])
def test_conll_conventions(text, want):
    assert " ".join(t.text for t in tokenize(text)) == want


def test_sentence_split():
    line = 'He left. "Why?" she asked. Acme Corp. Ltd. grew 5 pct. Then Mr. Smith came!'
    got = [" ".join(t.text for t in s) for s in sentences(line)]
    assert got == ["He left .", '" Why ? " she asked .',
                   "Acme Corp. Ltd. grew 5 pct .", "Then Mr. Smith came !"]


def test_detokenize_rules():
    assert detokenize(["(", "U.S.", ")", "said", '"', "no", '"', ",", "it", "'s",
                       "$", "5", "."]) == '(U.S.) said "no", it\'s $5.'


# Measured with `python bench/tokenizer_agreement.py` on 2026-11-30: 99.26 % of the 20,744
# sentences of train+valid+test (train 99.43, valid 99.32, test 98.49). The floors sit just
# below, so a change that loses agreement fails here.
@pytest.mark.parametrize("name, floor", [("train.txt", 99.3), ("valid.txt", 99.2),
                                         ("test.txt", 98.4)])
def test_conll2003_agreement_floor(shared_data, name, floor):
    sents = [s.tokens for s in read_tokens(shared_data(f"conll2003/{name}"))]
    same, diffs = agreement(sents)
    assert 100 * same / len(sents) >= floor, diffs[:5]


@pytest.mark.parametrize("text", ["1," * 50_000 + "x", "a+" * 50_000, "-." * 50_000,
                                  "a@" * 50_000, "1-" * 50_000 + "'", "U.S." * 25_000 + "x"])
def test_long_adversarial_lines(text):
    # Each of these made an unbounded pattern rescan the rest of the line from every
    # position (about 10^10 steps here); with the bounds each takes well under a second.
    check_cover(text, tokenize(text))
