"""Raw text -> sentences of tokens with character offsets, split the way CoNLL-2003 is.

CoNLL-2003's English text (Reuters) follows Penn-Treebank-like conventions, which is what a
model trained on it has seen, so raw text is cut the same way:

* punctuation is split off: ``lamb.`` -> ``lamb .``; ``(U.S.)`` -> ``( U.S. )``;
* abbreviations keep their periods: ``U.S.``, ``a.m.``, ``Corp.``, ``Calif.``, ``vs.``,
  initials such as ``J.``; a number that opens a line keeps a list period (``1.``);
* numbers keep their separators: ``1,000``, ``19.32``, ``1996-08-22``, ``6-4``, ``1/2``,
  ``2:29.34``, ``.500``, ``+44``;
* hyphenated words stay whole (``one-day``, ``Inzamam-ul-Haq``), so do ``O'Brien`` and
  ``S&P``; the clitics ``'s 'S 'm 're 've 'll 'd n't`` are split off (``don't`` -> ``do n't``);
* URLs and e-mail addresses are one token (trailing sentence punctuation is not part of them).

Characters are never split from what Unicode attaches to them (extended grapheme clusters,
as the regex ``\\X`` would find them, which the stdlib ``re`` lacks): a combining mark (Mn,
Mc, Me: decomposed ``Zoë``, Devanagari vowel signs and virama, Arabic and Hebrew points),
a zero-width joiner and the character it joins (emoji sequences), a variation selector, an
emoji skin-tone modifier, the second of a pair of regional indicators (a flag) stay in the
token of the character before them, and a word goes on through them (``हिन्दी`` is one
token). Invisible format characters (category Cf: zero-width space and non-joiner, soft
hyphen, word joiner, direction marks, a byte-order mark) are kept inside a word and
otherwise join the token before them, or the one after them when nothing comes before;
only standing alone between spaces are they a token of their own.

Guarantees, for any string (a property test checks them on arbitrary Unicode):
every token is the exact substring ``text[start:end]`` of the input, holds no whitespace,
and the tokens together cover every non-whitespace character, in order, with one
exception: a byte-order mark (U+FEFF) that would begin a token is left out like a space
(a CoNLL reader drops a mark at the start of a line, so such a token could not be read
back; it is an artefact of joined files, not text). Nothing is normalised; an unknown
symbol (an emoji, a stray combining mark) becomes a token of its own, and no token is
split inside a grapheme cluster.

Sentences are cut between tokens, never inside one, so splitting a line into sentences
never changes its tokens: see :func:`split_sentences`.

``nerwin tag`` tokenises a block of lines at once (:func:`block_tokens`,
:func:`block_sentences`): the same tokens and sentences in each line as the functions for
one line give it, found with a few calls over the whole block.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import NamedTuple

import numpy as np

# Abbreviations that keep their period (seen with a period in CoNLL-2003, or common in
# news text). Matched case-sensitively, in this form or all in capitals.
ABBREVIATIONS = (
    # titles and ranks
    "Mr Mrs Ms Dr Prof Gen Lt Col Capt Sgt Maj Cmdr Adm Rev Sen Rep Gov Pres Gen'l Hon Jr Sr "
    # places
    "St Mt Ft Ave Blvd "
    # organisations
    "Corp Inc Ltd Co Cos Bros Plc "
    # months
    "Jan Feb Mar Apr Jun Jul Aug Sep Sept Oct Nov Dec "
    # US states as abbreviated in news copy
    "Ala Ariz Ark Calif Colo Conn Del Fla Ga Ill Ind Kan Kans Ky La Md Mass Mich Minn Miss Mo "
    "Mont Neb Nev Okla Ore Pa Penn Tenn Tex Va Vt Wash Wis Wyo "
    # other
    "vs vol No Nos approx dept est fig"
).split()

def _ranges(cats: tuple[str, ...], skip: str = "") -> str:
    """A regex character-class body of every code point of the given general categories.

    Computed from this Python's own Unicode database (the one ``\\w`` uses), over the
    planes that hold combining marks and format characters.
    """
    out: list[str] = []
    start = prev = -2
    cat = unicodedata.category
    for cp in [*range(0x20000), *range(0xE0000, min(0xE1000, sys.maxunicode + 1))]:
        if cat(chr(cp)) in cats and chr(cp) not in skip:
            if cp != prev + 1:
                if start >= 0:
                    out.append(_span(start, prev))
                start = cp
            prev = cp
    if start >= 0:
        out.append(_span(start, prev))
    return "".join(out)


def _span(a: int, b: int) -> str:
    return re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}"


ZWSP, ZWJ, BOM = "\u200b", "\u200d", "\ufeff"
# What a word goes on through: combining marks, format characters except the zero-width
# space (which marks a word break, as in Thai text), emoji skin-tone modifiers.
_EXTEND = _ranges(("Mn", "Mc", "Me", "Cf"), skip=ZWSP) + "\U0001F3FB-\U0001F3FF"
_RI = "\U0001F1E6-\U0001F1FF"  # regional indicators: two make a flag
# A token that starts with one of these may have to join its neighbour (see _glue).
_SPECIAL = re.compile(f"[{_EXTEND}{ZWSP}{_RI}]")
_GLUE = re.compile(f"[{_EXTEND}{ZWSP}]")           # joins the token before it
_GLUE_ONLY = re.compile(f"[{_EXTEND}{ZWSP}]+")     # an invisible or stray-mark token
_IS_RI = re.compile(f"[{_RI}]")

_ABBREV = "|".join(sorted({*ABBREVIATIONS, *(a.upper() for a in ABBREVIATIONS)},
                          key=len, reverse=True))
_CLITIC_TAIL = r"(?:s|S|m|M|re|RE|ve|VE|ll|LL|d|D)(?!\w)"  # after the apostrophe
_CLITIC = rf"(?:'{_CLITIC_TAIL}|n't|N'T)"

# One alternative per kind of token, tried in this order at each position; the last one
# (\S) takes any single non-space character, which is what makes the coverage guarantee.
# An alternative that can fail after scanning far ahead is bounded ({0,63}, {0,8}): a
# failed attempt is retried from every following position, so an unbounded one makes
# tokenizing quadratic in the length of a line such as "1,1,1,…,1x".
# Each comes with what a line must hold for it to match anywhere (None: always tried):
# a line without an "@" is cut by the pattern without the e-mail alternative, which
# finds the same tokens with less work (see _pattern_for).


def _alternatives(space: str) -> list[tuple[str, str, tuple[str, ...] | None]]:
    """(name, pattern, what a line must hold) of each alternative.

    ``space`` is what a lookahead takes for "a space after it on this line": ``\\s`` for a
    line alone, ``[^\\S\\n]`` for a block of lines (block_tokens), where ``\\s`` would also
    see the line end, which a line alone does not have. The other lookaheads (``\\s|$``,
    ``\\s*$``) give the same answer at a line end in both.
    """
    return [
        ("url", r"""(?:https?://|ftp://|www\.)[^\s<>"]*[^\s<>"'`,.;:!?)\]}]""", ("://", "www.")),
        ("email", r"\w[\w.+-]{0,63}@\w[\w-]{0,62}(?:\.\w[\w-]{0,62})+", ("@",)),
        ("initialism", r"(?:[^\W\d_]\.){2,}(?:-\w+)+", None),  # U.S.-led
        ("initialism_", r"(?:[^\W\d_]\.)+[^\W\d_](?=\.\s*$)", None),  # "the U.S." ends a line
        ("initialism__", r"(?:[^\W\d_]\.){2,}", None),  # U.S. a.m. F.C.
        # Wash.-based; a period ending the line is split. The lookahead skips the long list
        # of names at once where no short word and a period follow.
        ("abbrev", r"(?=[A-Za-z']{2,6}\.)(?:" + _ABBREV + r")\.(?:-\w+)*(?![\w])(?!\s*$)",
         None),
        ("initial", r"[^\W\d_]\.(?=\s|$|[,;:)\]])", None),  # J. Smith; "(D. Cox)"
        # "1. Pivotal": a list item. An ASCII number and the line's final period are two
        # tokens, as token_spans has always cut them (_PIECE), spaces after them or not.
        ("listnum", rf"^(?![0-9]+\.\s*$)\d{{1,3}}\.(?={space})", None),
        ("number", r"[+-]?(?:\d+|(?<!\w)(?=\.\d))(?:[.,:/-]\d+){0,8}(?:st|nd|rd|th)?"
         r"(?:[-/][^\W\d_]\w*)*(?![\w'])(?![.,:/-]\w)", None),  # never stop inside a token
        ("currency", r"[A-Z]{1,3}\$", ("$",)),  # C$ A$ US$ HK$
        ("rating", r"[A-Z]{1,3}\+{1,2}(?![\w+])", ("+",)),  # BBB+ AA+
        ("negword", r"[^\W\d_]+(?=n't\b|N'T\b)", ("n't", "N'T")),  # do|n't, ca|n't
        ("clitic", _CLITIC, ("'",)),
        ("word", r"\w(?:[\w" + _EXTEND + r"]|[-&.](?=\w)|'(?!" + _CLITIC_TAIL
         + rf")(?=\w))*(?:-(?={space}|,))?", None),  # suspended hyphen: "three-, five-"
        # -- ... ** as one token (a run of one of these characters)
        ("run", "|".join(re.escape(c) + "{2,}" for c in "-.*=_~#+"), None),
        ("other", r"\S", None),
    ]


_ALTERNATIVES = _alternatives(r"\s")
_TOKEN = re.compile("|".join(f"(?P<{name}>{p})" for name, p, _ in _ALTERNATIVES))
_OPTIONAL = [(k, needs) for k, (_, _, needs) in enumerate(_ALTERNATIVES) if needs is not None]
_PATTERNS: dict[int, re.Pattern[str]] = {}
# A plain piece (group None), one with a comma (1) or a line-ending period (2) after a word of
# 2+ letters or a number (a single letter and a period is an initial), or any other (3).
_PIECE = re.compile(r"(?:[A-Za-z]+|[0-9]+)(?=\s|$)|(?P<comma>(?:[A-Za-z]+|[0-9]+),)(?=\s|$)"
                    r"|(?P<period>(?:[A-Za-z]{2,}|[0-9]+)\.)(?=\s*$)|(?P<other>\S+)")


def _key(text: str) -> int:
    """Which optional alternatives can match in ``text``: one bit per entry of _OPTIONAL,
    in its order (written out: this runs once a line)."""
    return (("://" in text or "www." in text) | ("@" in text) << 1 | ("$" in text) << 2
            | ("+" in text) << 3 | ("n't" in text or "N'T" in text) << 4 | ("'" in text) << 5)


def _pattern_for(text: str) -> re.Pattern[str]:
    """The token pattern without the alternatives that cannot match anywhere in ``text``
    (an alternative that fails everywhere changes nothing: it finds the same tokens)."""
    key = _key(text)
    pat = _PATTERNS.get(key)
    if pat is None:
        dropped = {k for bit, (k, _) in enumerate(_OPTIONAL) if not key >> bit & 1}
        pat = _PATTERNS[key] = re.compile(
            "|".join(p for k, (_, p, _) in enumerate(_ALTERNATIVES) if k not in dropped))
    return pat


@dataclass(frozen=True)
class Token:
    """A token and where it is: ``text[start:end] == token.text`` in the tokenised string."""

    text: str
    start: int
    end: int


def token_spans(text: str) -> list[tuple[int, int]]:
    """The [start, end) of every token of ``text`` (see :func:`tokenize`)."""
    # Whitespace-separated pieces first: a piece of ASCII letters only, or digits only,
    # is one token, and with a comma after it (or a period ending the line: no abbreviation
    # keeps that one) two (no alternative before `word` / `number` can match it, and they
    # take it whole), so only the other pieces go through the
    # pattern, token by token from the piece's start. `match` at a position sees the whole
    # line (^, lookbehind, \s*$), so it finds what finditer over the line finds there.
    spans: list[tuple[int, int]] = []
    append = spans.append
    match = _pattern_for(text).match
    for m in _PIECE.finditer(text):
        k = m.lastindex
        if k is None:
            append(m.span())
            continue
        pos, end = m.span()
        if k < 3:  # a word or number, then its comma or the line's final period
            append((pos, end - 1))
            append((end - 1, end))
            continue
        while pos < end:
            t = match(text, pos)
            append(t.span())  # type: ignore[union-attr]  # \S always matches here
            pos = t.end()  # type: ignore[union-attr]
    if not text.isascii() and _SPECIAL.search(text) is not None:  # rare: a second look
        spans = _glue(text, spans)
    return spans


def _glue(text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Join the tokens the regex cut inside a grapheme cluster, and invisible ones.

    The regex leaves a mark, joiner or format character that no word took as a token of
    one character (its ``\\S``); here it joins the token it touches on the left, and a
    run of them with nothing on its left joins the token it touches on the right.
    """
    joined: list[list[int]] = []
    for a, b in spans:
        if joined and joined[-1][1] == a and _joins(text, a, joined[-1][0]):
            joined[-1][1] = b
        else:
            joined.append([a, b])
    out: list[tuple[int, int]] = []
    carry = -1  # start of an invisible run waiting for the token after it
    for i, (a, b) in enumerate(joined):
        if carry >= 0:
            a, carry = carry, -1
        if (_GLUE_ONLY.fullmatch(text, a, b) and i + 1 < len(joined)
                and joined[i + 1][0] == b):
            carry = a
            continue
        while a < b and text[a] == BOM:  # never the first character of a token
            a += 1
        if a < b:
            out.append((a, b))
    return out


def _joins(text: str, a: int, prev_start: int) -> bool:
    """Whether the token at ``a`` continues the grapheme cluster (or word) ending at ``a``."""
    if _GLUE.match(text, a) or text[a - 1] == ZWJ:
        return True
    if _IS_RI.match(text, a):  # the second of a pair of regional indicators
        run = 0
        while a - run - 1 >= prev_start and _IS_RI.match(text, a - run - 1):
            run += 1
        return run % 2 == 1
    return False


def tokenize(text: str) -> list[Token]:
    """Tokens of ``text`` (one line or one sentence) with their character offsets.

    Offsets are Python string indices (code points) into ``text`` itself.
    """
    return [Token(text[a:b], a, b) for a, b in token_spans(text)]


_ENDERS = {".", "!", "?", "...", "?!", "!?"}
_CLOSERS = {'"', "'", ")", "]", "}", "''"}


def split_sentences(tokens: list[Token]) -> list[list[Token]]:
    """Cut a line's tokens into sentences.

    A sentence ends after ``.``, ``!``, ``?`` or ``...`` (plus any quotes or brackets
    written right after it, with no space between) when the next token starts with an
    upper-case letter, a digit or an opening quote or bracket. A period inside an
    abbreviation (``Corp.``) never ends a sentence: it is part of that token, and a
    following capital is too often a name.
    """
    cuts = sentence_cuts([t.text for t in tokens], [(t.start, t.end) for t in tokens])
    return [tokens[a:b] for a, b in zip([0, *cuts], [*cuts, len(tokens)]) if b > a]


def sentence_cuts(texts: list[str], spans: Sequence[tuple[int, int]]) -> list[int]:
    """Where :func:`split_sentences` cuts tokens ``texts`` (at ``spans`` of their line):
    the index of the first token of every sentence but the first."""
    n = len(texts)
    starts, ends = [a for a, _ in spans], [b for _, b in spans]
    # Only an end mark can end a sentence: look at those alone (most tokens are not).
    cuts = [_cut_after(texts, starts, ends, i, n) for i, t in enumerate(texts) if t in _ENDERS]
    return [c for c in cuts if c]


def _cut_after(texts: Sequence[str], starts: Sequence[int], ends: Sequence[int], i: int,
               n: int) -> int:
    """Where the sentence that the end mark ``texts[i]`` may end is cut, among the tokens
    before ``n`` of its line: the index of the token that starts the next one, or 0."""
    # a quote or bracket right after the end mark (no space between) closes it
    while i + 1 < n and texts[i + 1] in _CLOSERS and starts[i + 1] == ends[i]:
        i += 1
    return i + 1 if i + 1 < n and _starts_sentence(texts[i + 1]) else 0


def _starts_sentence(tok: str) -> bool:
    c = tok[0]
    return c.isupper() or c.isdigit() or c in "\"'([{`"


def sentences(text: str) -> list[list[Token]]:
    """Split one line of text into sentences of tokens (offsets into ``text``)."""
    return split_sentences(tokenize(text))


def iter_line_sentences(text: str) -> Iterator[list[Token]]:
    """Sentences of every non-blank line of ``text``, offsets relative to each line."""
    for line in text.splitlines():
        if line.strip():
            yield from sentences(line)


# ---------------------------------------------------------------------------------------
# A block of lines at once: `nerwin tag` reads text a chunk of lines at a time
# (nerwin.tagging.TextChunk), and tokenises the chunk with a few calls over all of it rather
# than Python steps for each token.

# Tried before the alternatives above. Each matches only where the first of those that
# matches finds the same token (so together they change nothing but the time taken: most
# tokens of running text are one of these, and a pattern spends its time failing the
# alternatives before the one that matches).
_FAST = [
    # ASCII letters up to a character at which no word, abbreviation, initial, URL or e-mail
    # address goes on (nor a currency or a rating: no $ or + either)
    r"""[A-Za-z]+(?=[\s,;)\]}"!?%/]|$)""",
    # ASCII digits up to a character at which no number goes on (a comma goes on before
    # a digit: 1,000)
    r"""[0-9]+(?=[\s;)\]}"!?%]|,(?:\s|$)|$)""",
    # a word of 2+ letters (one letter and a period are an initial) or an ASCII number
    # before the line's final period, which no abbreviation or list number keeps
    r"(?:[A-Za-z]{2,}|[0-9]+)(?=\.\s*$)",
    # a character that starts no longer token: every other alternative starts with a
    # letter, digit, + - . ' * = ~ # or _
    r"""[,;:()"$%/!?&\[\]{}]""",
    # a period that starts no number (.5) and no run (...)
    r"\.(?![.\d])",
]
_BLOCK_ALTERNATIVES = _alternatives(r"[^\S\n]")
_BLOCK_PATTERNS: dict[int, re.Pattern[str]] = {}


def _block_pattern(key: int) -> re.Pattern[str]:
    """The pattern that finds the tokens of a block of lines holding what ``key`` says
    (_key): the fast alternatives, then those that can match (see _pattern_for).

    The spaces before a token are part of the match, outside the one group, so findall
    returns the tokens alone and skips the spaces in one step (rather than by failing
    every alternative at each); with re.MULTILINE, ^ and $ see each line's start and end.
    """
    pat = _BLOCK_PATTERNS.get(key)
    if pat is None:
        dropped = {k for bit, (k, _) in enumerate(_OPTIONAL) if not key >> bit & 1}
        alts = _FAST + [p for k, (_, p, _) in enumerate(_BLOCK_ALTERNATIVES) if k not in dropped]
        pat = _BLOCK_PATTERNS[key] = re.compile(r"\s*(" + "|".join(alts) + ")", re.MULTILINE)
    return pat


class BlockTokens(NamedTuple):
    """The tokens of a block of lines (:func:`block_tokens`)."""

    texts: list[str]
    starts: np.ndarray  # [start, end) of each token in the block (int64)
    ends: np.ndarray
    line_starts: np.ndarray  # where each line starts in the block
    line_first: np.ndarray  # index of each line's first token, then len(texts)


def block_tokens(text: str) -> BlockTokens:
    """The tokens of every line of ``text``, lines joined by "\\n" (none holds a "\\n"):
    in each line, the tokens :func:`token_spans` finds in it, offsets into ``text``."""
    # One findall over the block (no pattern alternative matches a space, so a token never
    # spans lines). It stops one character after the last token: a lookahead there sees a
    # space as in the whole text, and findall does not try the pattern from every position
    # of a trailing run of spaces (each try would scan the run to its end).
    end = min(len(text), len(text.rstrip()) + 1)
    texts = _block_pattern(_key(text)).findall(text, 0, end)
    # Where they are: every non-space character is in a token and no space is, so the
    # tokens put together are the text's non-space characters in order, and a token that
    # begins with the k-th of them begins where that character is.
    ascii_ = text.isascii()
    codes = _codes(text)
    if ascii_:
        space = _ASCII_SPACE[codes]
    else:  # the spaces among the characters it holds (a few of all there are)
        space = np.isin(codes, [ord(c) for c in set(text) if c.isspace()])
    nonspace = np.flatnonzero(~space)
    lengths = np.fromiter(map(len, texts), np.int64, len(texts))
    upto = np.cumsum(lengths)  # non-space characters up to the end of each token
    starts = nonspace[upto - lengths]
    ends = nonspace[upto - 1] + 1
    line_starts = np.concatenate([[0], np.flatnonzero(codes == 10) + 1])
    line_first = np.append(np.searchsorted(starts, line_starts), len(texts))
    if not ascii_ and _SPECIAL.search(text) is not None:
        texts, starts, ends = _glue_lines(text, texts, starts, ends, line_starts, line_first)
        line_first = np.append(np.searchsorted(starts, line_starts), len(texts))
    return BlockTokens(texts, starts, ends, line_starts, line_first)


def _codes(text: str) -> np.ndarray:
    """The code points of ``text``."""
    if text.isascii():
        return np.frombuffer(text.encode("ascii"), np.uint8)
    return np.frombuffer(text.encode("utf-32-le"), np.uint32)


# Whether each ASCII character is a space to ``\s`` (str.isspace: \t \n \v \f \r,
# \x1c-\x1f and the space).
_ASCII_SPACE = np.array([chr(c).isspace() for c in range(128)])


def _glue_lines(text: str, texts: list[str], starts: np.ndarray, ends: np.ndarray,
                line_starts: np.ndarray, line_first: np.ndarray
                ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The tokens with those of every line holding a mark, joiner or format character
    glued as token_spans glues them (_glue; a line's tokens never touch another's)."""
    out_texts: list[list[str]] = []
    out_starts: list[np.ndarray] = []
    out_ends: list[np.ndarray] = []
    done = 0  # tokens before this are in the output
    m = _SPECIAL.search(text)
    while m is not None:
        k = int(np.searchsorted(line_starts, m.start(), side="right")) - 1
        i, j = int(line_first[k]), int(line_first[k + 1])
        spans = _glue(text, list(zip(starts[i:j].tolist(), ends[i:j].tolist())))
        out_texts += [texts[done:i], [text[a:b] for a, b in spans]]
        out_starts += [starts[done:i], np.array([a for a, _ in spans], np.int64)]
        out_ends += [ends[done:i], np.array([b for _, b in spans], np.int64)]
        done = j
        if k + 1 == len(line_starts):
            break
        m = _SPECIAL.search(text, int(line_starts[k + 1]))
    out_texts.append(texts[done:])
    out_starts.append(starts[done:])
    out_ends.append(ends[done:])
    return (list(chain.from_iterable(out_texts)), np.concatenate(out_starts),
            np.concatenate(out_ends))


def block_sentences(text: str, tok: BlockTokens) -> np.ndarray:
    """The index of the first token of every sentence of the lines of ``text`` (tokens
    ``tok``), each line split into sentences as :func:`split_sentences` splits it."""
    texts, starts, first = tok.texts, tok.starts, tok.line_first
    firsts = first[:-1][first[:-1] < first[1:]]  # every line's first token (if it has one)
    # Only an end mark can end a sentence, and not the last token of its line: look at
    # the tokens that start with . ! or ? (few) and are not the last of their line.
    codes = _codes(text)
    marks = np.flatnonzero((codes == 46) | (codes == 33) | (codes == 63))
    k = np.searchsorted(starts, marks, side="right") - 1  # the token each mark is in
    k = k[starts[k] == marks]
    stops = first[np.searchsorted(first, k, side="right")]  # where its line's tokens end
    more = k + 1 < stops
    cuts = [_cut_after(texts, starts, tok.ends, i, stop)
            for i, stop in zip(k[more].tolist(), stops[more].tolist()) if texts[i] in _ENDERS]
    cuts = [c for c in cuts if c]
    if not cuts:
        return firsts
    return np.sort(np.concatenate([firsts, np.array(cuts, np.int64)]))


# ---------------------------------------------------------------------------------------
# The inverse direction, for measuring the tokenizer on CoNLL-2003 (bench/tokenizer_agreement)

_NO_SPACE_BEFORE = {",", ".", ";", ":", "!", "?", ")", "]", "}", "%", "...",
                    "'s", "'S", "n't", "N'T", "'m", "'M", "'re", "'RE", "'ve", "'VE",
                    "'ll", "'LL", "'d", "'D"}
_NO_SPACE_AFTER = {"(", "[", "{", "$"}


def detokenize(tokens: list[str]) -> str:
    """Rebuild plausible raw text from a CoNLL sentence's tokens.

    The tokens are joined with single spaces, except that there is no space
    (1) before ``, . ; : ! ? ) ] } % ...`` and the clitics ``'s n't 'm 're 've 'll 'd``
    (and their capitalised forms); (2) after ``( [ { $`` and after a currency token ending
    in ``$`` (``US$``); (3) for double quotes ``"`` and single quotes ``'`` standing alone,
    after each odd-numbered one of the sentence (it opens) and before each even-numbered one
    (it closes).
    """
    out: list[str] = []
    quotes = {'"': 0, "'": 0}
    glue_next = True  # no space before the first token
    for tok in tokens:
        glue = glue_next or tok in _NO_SPACE_BEFORE
        glue_next = tok in _NO_SPACE_AFTER or (tok.endswith("$") and len(tok) > 1)
        if tok in quotes:
            quotes[tok] += 1
            if quotes[tok] % 2 == 1:
                glue_next = True
            else:
                glue = True
        out.append(tok if glue else " " + tok)
    return "".join(out)


def agreement(token_lists: list[list[str]]) -> tuple[int, list[tuple[list[str], list[str]]]]:
    """How many sentences :func:`tokenize` gives back exactly from their detokenized text.

    Returns the number that agree and the (expected, got) token lists of the others.
    """
    same = 0
    diffs: list[tuple[list[str], list[str]]] = []
    for toks in token_lists:
        got = [t.text for t in tokenize(detokenize(toks))]
        if got == toks:
            same += 1
        else:
            diffs.append((toks, got))
    return same, diffs
