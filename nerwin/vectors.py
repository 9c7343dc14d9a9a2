"""Pretrained word vectors in GloVe / word2vec text format, plain or gzip.

``word v1 ... vd`` one a line. A word2vec header line (``400000 50``: two integers) is
detected and checked, never read as a vector. Only the rows of the words asked for are
parsed, so a 400k-word file loads in seconds; every row's width is still checked (by
counting separators, which is cheap) and a wrong one fails with its line number.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nerwin.errors import NerwinError


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


def _open_text(path: Path) -> io.TextIOBase:
    with open(path, "rb") as f:
        magic = f.read(2)
    raw = gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")
    # errors="strict": a vectors file that is not UTF-8 should fail, not drop words.
    return io.TextIOWrapper(raw, encoding="utf-8", errors="strict", newline="\n")


def _is_header(parts: list[str]) -> bool:
    return len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit()


def load_vectors(path: str | Path, wanted: Iterable[str] | None = None, *,
                 dim: int | None = None) -> Vectors:
    """Read the vectors of the words in ``wanted`` (all words when None).

    ``dim``, when given, is the width the config expects; a file of another width is an
    error naming the config key. A word that occurs twice keeps its first vector.
    """
    path = Path(path)
    if not path.is_file():
        raise NerwinError(f"{path}: no such vectors file")
    want = None if wanted is None else set(wanted)
    index: dict[str, int] = {}
    rows: list[str] = []
    width: int | None = None
    header = False
    n_file = 0
    lineno = 0
    try:
        with _open_text(path) as f:
            for lineno, line in enumerate(f, start=1):
                line = line.rstrip("\n").rstrip("\r").rstrip(" ")
                if not line:
                    continue
                if width is None:
                    parts = line.split(" ")
                    if lineno == 1 and _is_header(parts):
                        header = True
                        width = int(parts[1])
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
                if (want is None or word in want) and word not in index:
                    index[word] = len(rows)
                    rows.append(line[len(word) + 1:])
    except UnicodeDecodeError as e:
        raise NerwinError(f"{path}:{lineno + 1}: invalid UTF-8 in vectors file "
                          f"({e.reason})") from None
    except (OSError, EOFError) as e:
        raise NerwinError(f"{path}: cannot read vectors file: {e}") from None
    if width is None or n_file == 0:
        raise NerwinError(f"{path}: no vectors in file")
    if dim is not None and width != dim:
        raise NerwinError(f"{path}: vectors have {width} dimensions but features.dim is {dim}; "
                          f"set features.dim: {width}")
    try:
        mat = (np.array(" ".join(rows).split(" "), dtype=np.float32).reshape(len(rows), width)
               if rows else np.zeros((0, width), dtype=np.float32))
    except ValueError as e:
        bad = next(w for w, i in index.items()
                   if not _floats_ok(rows[i]))
        raise NerwinError(f"{path}: the vector of {bad!r} holds a value that is not a number "
                          f"({e})") from None
    return Vectors(path=path, dim=width, n_file=n_file, index=index, vectors=mat, header=header)


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
