"""Pretrained word vectors in GloVe / word2vec text format, plain or gzip.

``word v1 ... vd`` one a line. A word2vec header line (``400000 50``: two integers) is
detected and checked, never read as a vector. Only the rows of the words asked for are
parsed, so a 400k-word file loads in seconds; every line is still checked, cheaply: its
width (by counting separators), its UTF-8, and its word against every other word (by hash:
a repeated word is an error, which vector would be meant?). A header that promises more
rows than the file holds means a truncated download. Every error names file and line; a
damaged .gz is one line too, never a zlib traceback.
"""

from __future__ import annotations

import gzip
import zlib
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from nerwin.errors import NerwinError, os_error, utf8_error

GZIP_MAGIC = b"\x1f\x8b"


@dataclass
class Vectors:
    """The rows of a vectors file that were asked for.

    vectors: (n, dim) float32, ``index[word]`` is the row of ``word``.
    """

    path: Path
    dim: int
    n_file: int  # words in the file
    index: dict[str, int]
    vectors: np.ndarray
    header: bool = False


def _open(path: Path) -> BinaryIO:
    with open(path, "rb") as f:
        magic = f.read(2)
    return gzip.open(path, "rb") if magic == GZIP_MAGIC else open(path, "rb")


def _text(path: Path, lineno: int, raw: bytes) -> str:
    """One line of the file as text, without its line end and trailing spaces.

    Decoded line by line, so invalid UTF-8 is reported at its own line (a text stream
    decodes ahead in blocks and cannot say where).
    """
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise utf8_error(path, lineno, e, raw, "the vectors file") from None
    if lineno == 1:
        line = line.removeprefix("\ufeff")  # a byte-order mark is not part of the word
    return line.rstrip("\n").rstrip("\r").rstrip(" ")


def _is_header(parts: list[str]) -> bool:
    return len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit()


def load_vectors(path: str | Path, wanted: Iterable[str] | None = None, *,
                 dim: int | None = None) -> Vectors:
    """Read the vectors of the words in ``wanted`` (all words when None).

    ``dim``, when given, is the width the config expects; a file of another width is an
    error naming the config key. Every line is checked for its width and for valid UTF-8,
    every word for a repeat (an error naming both lines: which vector was meant?), a
    word2vec header for the number of rows it promises (fewer means a truncated file); the
    values of the rows asked for must be finite numbers. Every error names file and line.
    """
    path = Path(path)
    want = None if wanted is None else set(wanted)
    index: dict[str, int] = {}
    rows: list[str] = []
    row_lines: list[int] = []  # file line of each kept row
    hashes = array("q")  # hash of every word, to find repeats without keeping 400k strings
    width: int | None = None
    header: tuple[int, int] | None = None
    n_file = 0
    lineno = 0
    try:
        opened = _open(path)
    except OSError as e:
        raise os_error(path, e, "a vectors file") from None
    try:
        with opened as f:
            for lineno, raw in enumerate(f, start=1):
                line = _text(path, lineno, raw)
                if not line:
                    continue
                if width is None:
                    parts = line.split(" ")
                    if lineno == 1 and _is_header(parts):
                        header = (int(parts[0]), int(parts[1]))
                        width = header[1]
                        continue
                    width = len(parts) - 1
                    if width < 1:
                        raise NerwinError(f"{path}:{lineno}: a vector line must be "
                                          f"'word v1 ... vd'; found {line[:60]!r}")
                # The word itself never holds a space in these formats; count separators.
                if line.count(" ") != width:
                    raise NerwinError(f"{path}:{lineno}: {line.count(' ')} values, expected "
                                      f"{width} like the {'header' if header else 'first row'}")
                n_file += 1
                word = line[: line.index(" ")]
                hashes.append(hash(word))
                if want is None or word in want:
                    if word in index:
                        _repeated(path, word, row_lines[index[word]], lineno)
                    index[word] = len(rows)
                    rows.append(line[len(word) + 1:])
                    row_lines.append(lineno)
    except (OSError, EOFError, zlib.error) as e:
        # gzip raises BadGzipFile (an OSError), EOFError when the stream stops early and
        # zlib.error on corrupt data: all say the file is damaged.
        raise NerwinError(f"{path}: cannot read the vectors file after line {lineno}: "
                          f"{e} (a corrupt or truncated download? fetch it again)") from None
    if width is None or n_file == 0:
        raise NerwinError(f"{path}: no vectors in file")
    if header is not None and header[0] != n_file:
        raise NerwinError(f"{path}:1: the word2vec header promises {header[0]:,} vectors but "
                          f"the file has {n_file:,}; "
                          + ("a truncated download? fetch it again" if n_file < header[0]
                             else "fix the header"))
    _check_repeats(path, hashes)
    if dim is not None and width != dim:
        raise NerwinError(f"{path}: vectors have {width} dimensions but features.dim is {dim}; "
                          f"set features.dim: {width}")
    try:
        with np.errstate(over="ignore"):  # 1e39 becomes inf in float32: reported below
            mat = (np.array(" ".join(rows).split(" "), dtype=np.float32)
                   .reshape(len(rows), width) if rows else np.zeros((0, width), np.float32))
    except ValueError:
        i = next(i for i, row in enumerate(rows) if not _floats_ok(row))
        raise NerwinError(f"{path}:{row_lines[i]}: the vector of {_word_of(index, i)!r} holds "
                          f"a value that is not a number") from None
    finite = np.isfinite(mat).all(axis=1)
    if not finite.all():
        i = int(np.flatnonzero(~finite)[0])
        raise NerwinError(f"{path}:{row_lines[i]}: the vector of {_word_of(index, i)!r} holds "
                          f"NaN or an infinite value (or one beyond float32's range); expected "
                          f"finite numbers")
    return Vectors(path=path, dim=width, n_file=n_file, index=index, vectors=mat,
                   header=header is not None)


def _word_of(index: dict[str, int], row: int) -> str:
    """The word whose vector is row ``row`` (for messages)."""
    return next(w for w, i in index.items() if i == row)


def _repeated(path: Path, word: str, first: int, second: int) -> None:
    raise NerwinError(f"{path}:{second}: the word {word!r} is repeated (first on line {first}); "
                      f"expected one vector per word")


def _check_repeats(path: Path, hashes: array) -> None:
    """Raise for the first word that occurs twice in the file (by hashes, then confirmed).

    Equal hashes of different words are possible (if unlikely); a second pass over the lines
    whose hash repeats tells them apart, so nothing valid is refused.
    """
    h = np.frombuffer(hashes, dtype=np.int64) if len(hashes) else np.zeros(0, np.int64)
    s = np.sort(h)
    dup = set(s[1:][s[1:] == s[:-1]].tolist())
    if not dup:
        return
    seen: dict[str, int] = {}
    with _open(path) as f:
        n = 0
        for lineno, raw in enumerate(f, start=1):
            line = _text(path, lineno, raw)
            if not line or (lineno == 1 and _is_header(line.split(" "))):
                continue
            word = line[: line.index(" ")]
            if hashes[n] in dup:
                if word in seen:
                    _repeated(path, word, seen[word], lineno)
                seen[word] = lineno
            n += 1


def _floats_ok(row: str) -> bool:
    try:
        [float(v) for v in row.split(" ")]
    except ValueError:
        return False
    return True


@dataclass
class Coverage:
    """How the vocabulary found its vectors (counts over word types)."""

    exact: int
    lower: int
    missing: int

    @property
    def total(self) -> int:
        return self.exact + self.lower + self.missing

    def percent(self) -> dict[str, float]:
        t = max(1, self.total)
        return {"exact": 100.0 * self.exact / t, "lowercase": 100.0 * self.lower / t,
                "missing": 100.0 * self.missing / t}


def lookup_candidates(word: str) -> list[str]:
    """The keys to try for a vocabulary word: exact, then lowercase."""
    low = word.lower()
    return [word] if low == word else [word, low]


def match_rows(words: Iterable[str], vectors: Vectors) -> tuple[np.ndarray, np.ndarray, Coverage]:
    """For each word, the row of its vector (exact first, then lowercase) or -1.

    Returns rows (n,) int64, found (n,) bool and the coverage counts.
    """
    exact = lower = missing = 0
    rows = []
    for w in words:
        found = [(i, vectors.index[k]) for i, k in enumerate(lookup_candidates(w))
                 if k in vectors.index]
        if not found:
            missing += 1
            rows.append(-1)
            continue
        which, r = found[0]
        exact += which == 0
        lower += which == 1
        rows.append(r)
    arr = np.asarray(rows, dtype=np.int64)
    return arr, arr >= 0, Coverage(exact, lower, missing)
