"""Id windows and minibatches.

For N tokens and half-width m, the window matrix is an int32 N x (2m+1) array: row t holds
the ids of tokens t-m .. t+m of t's own sentence, with the left pad id before the sentence
start and the right pad id after its end, so a window never crosses a sentence boundary.
Only ids are stored for the whole corpus (O(N(2m+1)) integers); the float vectors of a
window are looked up per batch by the network.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np


def make_windows(seqs: Sequence[np.ndarray], m: int, left_pad: int, right_pad: int,
                 dtype: type = np.int32) -> np.ndarray:
    """Windows of half-width ``m`` over each sequence of ids, stacked: (N, 2m+1).

    Vectorised: the sentences are laid end to end, each framed by m left pads and m right
    pads, and every window is one fancy-index into that buffer.
    """
    if m < 0:
        raise ValueError(f"window half-size must be >= 0, got {m}")
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    n = int(lengths.sum())
    if n == 0:
        return np.zeros((0, 2 * m + 1), dtype=dtype)
    framed = lengths + 2 * m
    starts = np.concatenate([[0], np.cumsum(framed)[:-1]])  # buffer offset of each frame
    buf = np.empty(int(framed.sum()), dtype=dtype)
    # Fill pads everywhere first, then the tokens of each sentence.
    offs_in_frame = np.arange(int(framed.sum())) - np.repeat(starts, framed)
    lens_rep = np.repeat(lengths, framed)
    buf[:] = left_pad
    buf[offs_in_frame >= m + lens_rep] = right_pad
    tok_pos = np.repeat(starts + m, lengths) + _ranges(lengths)  # buffer index of each token
    buf[tok_pos] = np.concatenate([np.asarray(s, dtype=dtype) for s in seqs])
    return buf[tok_pos[:, None] + np.arange(-m, m + 1)[None, :]]


def _ranges(lengths: np.ndarray) -> np.ndarray:
    """Concatenated aranges: [3, 2] -> [0, 1, 2, 0, 1]."""
    ends = np.cumsum(lengths)
    return np.arange(int(ends[-1])) - np.repeat(ends - lengths, lengths)


@dataclass
class WindowData:
    """The encoded form of a corpus: everything the network reads, as ints.

    words: (N, 2m+1) int32 word ids; casing: (N, 2m+1) int8 casing ids;
    labels: (N,) int32 tag ids; lengths: (S,) sentence lengths (to split predictions back).
    """

    words: np.ndarray
    casing: np.ndarray
    labels: np.ndarray
    lengths: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def split(self, flat: np.ndarray) -> list[np.ndarray]:
        """Split a per-token array (N, ...) back into sentences."""
        return np.split(flat, np.cumsum(self.lengths)[:-1]) if len(self.lengths) else []


def batches(n: int, batch_size: int, rng: np.random.Generator | None = None
            ) -> Iterator[np.ndarray]:
    """Index arrays of at most ``batch_size`` rows; shuffled when ``rng`` is given.

    One permutation is drawn per call, so a seeded generator gives the same batches.
    """
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for i in range(0, n, batch_size):
        yield order[i: i + batch_size]
