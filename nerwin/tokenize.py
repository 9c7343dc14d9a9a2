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
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

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
_ALTERNATIVES: list[tuple[str, tuple[str, ...] | None]] = [
    (r"""(?P<url>(?:https?://|ftp://|www\.)[^\s<>"]*[^\s<>"'`,.;:!?)\]}])""", ("://", "www.")),
    (r"(?P<email>\w[\w.+-]{0,63}@\w[\w-]{0,62}(?:\.\w[\w-]{0,62})+)", ("@",)),
    (r"(?P<initialism>(?:[^\W\d_]\.){2,}(?:-\w+)+)", None),  # U.S.-led
    (r"(?P<initialism_>(?:[^\W\d_]\.)+[^\W\d_](?=\.\s*$))", None),  # "the U.S." ending a line
    (r"(?P<initialism__>(?:[^\W\d_]\.){2,})", None),  # U.S. a.m. F.C.
    # Wash.-based; a period ending the line is split. The lookahead skips the long list of
    # names at once where no short word and a period follow.
    (r"(?P<abbrev>(?=[A-Za-z']{2,6}\.)(?:" + _ABBREV + r")\.(?:-\w+)*)(?![\w])(?!\s*$)",
     None),
    (r"(?P<initial>[^\W\d_]\.)(?=\s|$|[,;:)\]])", None),  # J. Smith; "(D. Cox)"
    (r"(?P<listnum>^\d{1,3}\.)(?=\s)", None),  # "1. Pivotal": a list item
    (r"(?P<number>[+-]?(?:\d+|(?<!\w)(?=\.\d))(?:[.,:/-]\d+){0,8}(?:st|nd|rd|th)?"
     r"(?:[-/][^\W\d_]\w*)*)(?![\w'])(?![.,:/-]\w)", None),  # never stop inside a token
    (r"(?P<currency>[A-Z]{1,3}\$)", ("$",)),  # C$ A$ US$ HK$
    (r"(?P<rating>[A-Z]{1,3}\+{1,2})(?![\w+])", ("+",)),  # BBB+ AA+
    (r"(?P<negword>[^\W\d_]+(?=n't\b|N'T\b))", ("n't", "N'T")),  # do|n't, ca|n't
    (r"(?P<clitic>" + _CLITIC + ")", ("'",)),
    (r"(?P<word>\w(?:[\w" + _EXTEND + r"]|[-&.](?=\w)|'(?!" + _CLITIC_TAIL
     + r")(?=\w))*(?:-(?=[\s,]))?)", None),  # suspended hyphen: "three-, five-"
    (r"(?P<run>(?P<ch>[-.*=_~#+])(?P=ch)+)", None),  # -- ... ** as one token
    (r"(?P<other>\S)", None),
]
_TOKEN = re.compile("|".join(p for p, _ in _ALTERNATIVES))
_OPTIONAL = [(k, needs) for k, (_, needs) in enumerate(_ALTERNATIVES) if needs is not None]
_PATTERNS: dict[int, re.Pattern[str]] = {}
# A plain piece (group None), one with a comma (1) or a line-ending period (2) after a word of
# 2+ letters or a number (a single letter and a period is an initial), or any other (3).
_PIECE = re.compile(r"(?:[A-Za-z]+|[0-9]+)(?=\s|$)|(?P<comma>(?:[A-Za-z]+|[0-9]+),)(?=\s|$)"
                    r"|(?P<period>(?:[A-Za-z]{2,}|[0-9]+)\.)(?=\s*$)|(?P<other>\S+)")


def _pattern_for(text: str) -> re.Pattern[str]:
    """The token pattern without the alternatives that cannot match anywhere in ``text``
    (an alternative that fails everywhere changes nothing: it finds the same tokens)."""
    # One bit per entry of _OPTIONAL, in its order (written out: this runs once a line).
    key = (("://" in text or "www." in text) | ("@" in text) << 1 | ("$" in text) << 2
           | ("+" in text) << 3 | ("n't" in text or "N'T" in text) << 4 | ("'" in text) << 5)
    pat = _PATTERNS.get(key)
    if pat is None:
        dropped = {k for bit, (k, _) in enumerate(_OPTIONAL) if not key >> bit & 1}
        pat = _PATTERNS[key] = re.compile(
            "|".join(p for k, (p, _) in enumerate(_ALTERNATIVES) if k not in dropped))
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
    cuts: list[int] = []
    n = len(texts)
    # Only an end mark can end a sentence: look at those alone (most tokens are not).
    for i in [i for i, t in enumerate(texts) if t in _ENDERS]:
        # a quote or bracket right after the end mark (no space between) closes it
        while i + 1 < n and texts[i + 1] in _CLOSERS and spans[i + 1][0] == spans[i][1]:
            i += 1
        if i + 1 < n and _starts_sentence(texts[i + 1]):
            cuts.append(i + 1)
    return cuts


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
