"""A line-by-line reimplementation of conlleval.pl (CoNLL-2000 shared task, version
2004-01-26 with the "hyphens in types" fix), for the tests only.

It counts as the Perl script counts, quirks included: the guessed tag is the last column
and the gold tag the one before it; a tag splits at its first hyphen into prefix and type
(a tag without a hyphen is a prefix with the empty type, so a bare ``PER`` or ``E-``-less
IOBES tag is read the way the script reads it, not the way a person would); a type that
Perl finds false (``""`` or ``"0"``) becomes ``""``; an empty line or a line whose first
column is ``-X-`` is a boundary whose guessed tag counts as ``O``; ``E-`` and ``S-`` get
only the script's few ``E`` rules (no ``S`` rule at all); ``[`` and ``]`` are one-token
chunks; the report is printed with the script's printf formats, per type in Perl's sort
order (bytes) with Perl's falsy-type quirk in the de-duplication. Raw mode (``-r``),
LaTeX output (``-l``) and other delimiters (``-d``) are not reimplemented.

Kept independent of nerwin on purpose: nerwin's scorer is checked against it.
"""

from __future__ import annotations

BOUNDARY = "-X-"


def _perl_true(s: str | None) -> bool:
    return s is not None and s not in ("", "0")


def end_of_chunk(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    end = False
    if prev_tag == "B" and tag == "B":
        end = True
    if prev_tag == "B" and tag == "O":
        end = True
    if prev_tag == "I" and tag == "B":
        end = True
    if prev_tag == "I" and tag == "O":
        end = True
    if prev_tag == "E" and tag == "E":
        end = True
    if prev_tag == "E" and tag == "I":
        end = True
    if prev_tag == "E" and tag == "O":
        end = True
    if prev_tag == "I" and tag == "O":
        end = True
    if prev_tag != "O" and prev_tag != "." and prev_type != type_:
        end = True
    # corrected 1998-12-22: these chunks are assumed to have length 1
    if prev_tag == "]":
        end = True
    if prev_tag == "[":
        end = True
    return end


def start_of_chunk(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    start = False
    if prev_tag == "B" and tag == "B":
        start = True
    if prev_tag == "I" and tag == "B":
        start = True
    if prev_tag == "O" and tag == "B":
        start = True
    if prev_tag == "O" and tag == "I":
        start = True
    if prev_tag == "E" and tag == "E":
        start = True
    if prev_tag == "E" and tag == "I":
        start = True
    if prev_tag == "O" and tag == "E":
        start = True
    if prev_tag == "O" and tag == "I":
        start = True
    if tag != "O" and tag != "." and prev_type != type_:
        start = True
    # corrected 1998-12-22: these chunks are assumed to have length 1
    if tag == "[":
        start = True
    if tag == "]":
        start = True
    return start


def _split(tag: str) -> tuple[str, str]:
    # if ($tag =~ /^([^-]*)-(.*)$/) { prefix = $1; type = $2 } else { prefix = tag; type = "" }
    if "-" in tag:
        prefix, type_ = tag.split("-", 1)
    else:
        prefix, type_ = tag, ""
    return prefix, (type_ if _perl_true(type_) else "")


def conlleval(text: str) -> str:
    """conlleval.pl's report for ``text`` (its standard input), as the script prints it.

    Raises:
        ValueError: where the script stops with an error (a line with another number of
            columns than the first, a line of fewer than two columns).
    """
    correct_chunk = found_correct = found_guessed = 0
    correct_tags = token_counter = 0
    correct_by: dict[str, int] = {}
    found_correct_by: dict[str, int] = {}
    found_guessed_by: dict[str, int] = {}
    last_correct, last_guessed = "O", "O"
    last_correct_type, last_guessed_type = "", ""
    in_correct = False
    n_features = -1
    # Perl's <STDIN> splits after "\n" only; chomp removes that "\n".
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for line in lines:
        # split(/ /, $line): trailing empty fields are removed (a leading one is kept).
        features = line.split(" ")
        while features and features[-1] == "":
            features.pop()
        if n_features < 0:
            n_features = len(features) - 1
        elif n_features != len(features) - 1 and len(features) != 0:
            raise ValueError(f"unexpected number of features: {len(features)} "
                             f"({n_features + 1})")
        if len(features) == 0 or features[0] == BOUNDARY:
            features = [BOUNDARY, "O", "O"]
        if len(features) < 2:
            raise ValueError(f"conlleval: unexpected number of features in line {line}")
        guessed, guessed_type = _split(features.pop())
        correct, correct_type = _split(features.pop())
        first_item = features.pop(0) if features else None
        # 1999-06-26 sentence breaks should always be counted as out of chunk
        if first_item == BOUNDARY:
            guessed = "O"

        if in_correct:
            c_end = end_of_chunk(last_correct, correct, last_correct_type, correct_type)
            g_end = end_of_chunk(last_guessed, guessed, last_guessed_type, guessed_type)
            if c_end and g_end and last_guessed_type == last_correct_type:
                in_correct = False
                correct_chunk += 1
                correct_by[last_correct_type] = correct_by.get(last_correct_type, 0) + 1
            elif c_end != g_end or guessed_type != correct_type:
                in_correct = False

        c_start = start_of_chunk(last_correct, correct, last_correct_type, correct_type)
        g_start = start_of_chunk(last_guessed, guessed, last_guessed_type, guessed_type)
        if c_start and g_start and guessed_type == correct_type:
            in_correct = True
        if c_start:
            found_correct += 1
            found_correct_by[correct_type] = found_correct_by.get(correct_type, 0) + 1
        if g_start:
            found_guessed += 1
            found_guessed_by[guessed_type] = found_guessed_by.get(guessed_type, 0) + 1
        if first_item != BOUNDARY:
            if correct == guessed and guessed_type == correct_type:
                correct_tags += 1
            token_counter += 1

        last_guessed, last_correct = guessed, correct
        last_guessed_type, last_correct_type = guessed_type, correct_type

    if in_correct:
        correct_chunk += 1
        correct_by[last_correct_type] = correct_by.get(last_correct_type, 0) + 1

    # sort (keys %foundCorrect, keys %foundGuessed), then drop repeats; Perl sorts strings
    # by their bytes, and `not($lastType)` lets a repeat of a false type through.
    sorted_types: list[str] = []
    last_type: str | None = None
    for t in sorted([*found_correct_by, *found_guessed_by], key=lambda s: s.encode()):
        if not _perl_true(last_type) or last_type != t:
            sorted_types.append(t)
        last_type = t

    precision = 100 * correct_chunk / found_guessed if found_guessed > 0 else 0.0
    recall = 100 * correct_chunk / found_correct if found_correct > 0 else 0.0
    fb1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    out = [f"processed {token_counter} tokens with {found_correct} phrases; "
           f"found: {found_guessed} phrases; correct: {correct_chunk}.\n"]
    if token_counter > 0:
        out.append(printf("accuracy: %6.2f%%; ", 100 * correct_tags / token_counter)
                   + printf("precision: %6.2f%%; ", precision)
                   + printf("recall: %6.2f%%; ", recall) + printf("FB1: %6.2f\n", fb1))
    for t in sorted_types:
        c = correct_by.get(t, 0)
        g = found_guessed_by.get(t, 0)
        p = 100 * c / g if g else 0.0
        r = 100 * c / found_correct_by[t] if found_correct_by.get(t) else 0.0
        f = 0.0 if p + r == 0.0 else 2 * p * r / (p + r)
        out.append(printf("%17s: ", t) + printf("precision: %6.2f%%; ", p)
                   + printf("recall: %6.2f%%; ", r) + printf("FB1: %6.2f  %d\n", f, g))
    return "".join(out)


def printf(fmt: str, *args: object) -> str:
    """Perl's printf: C formats, which Python's % operator shares (rounding included)."""
    return fmt % args
