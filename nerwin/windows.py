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

    inputs: one window array per token feature, in the network's table order: (N, 2m+1)
    ids (word ids int32, casing ids int8, ...), or for the characters a
    nerwin.features.CharWindows (indexing it gives the batch's nerwin.nn.chars.CharBatch);
    labels: (N,) int32 tag ids; lengths: (S,) sentence lengths (sentences are consecutive).
    """

    inputs: tuple[np.ndarray, ...]
    labels: np.ndarray
    lengths: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def rows(self, idx: np.ndarray | slice) -> tuple[np.ndarray, ...]:
        """The inputs of the windows ``idx`` (an index array or a slice)."""
        return tuple(a[idx] for a in self.inputs)

    @property
    def offsets(self) -> np.ndarray:
        """(S + 1,) token offset of each sentence, and N at the end."""
        return np.concatenate([[0], np.cumsum(self.lengths)]).astype(np.int64)

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


def sentence_batches(lengths: np.ndarray, max_tokens: int,
                     rng: np.random.Generator | None = None
                     ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Batches of whole sentences: (token indices, sentence lengths) of at most
    ``max_tokens`` tokens, filled with whole sentences in order (shuffled when ``rng`` is
    given: one permutation of the sentences per call). A sentence longer than
    ``max_tokens`` is a batch of its own; no sentence is ever cut.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    order = rng.permutation(len(lengths)) if rng is not None else np.arange(len(lengths))
    batch: list[int] = []
    size = 0
    for s in order.tolist():
        n = int(lengths[s])
        if batch and size + n > max_tokens:
            yield _gather(batch, offsets, lengths)
            batch, size = [], 0
        batch.append(s)
        size += n
    if batch:
        yield _gather(batch, offsets, lengths)


def _gather(sents: list[int], offsets: np.ndarray, lengths: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    sel = np.asarray(sents, dtype=np.int64)
    lens = lengths[sel]
    if lens.sum() == 0:
        return np.zeros(0, dtype=np.int64), lens
    idx = np.repeat(offsets[sel], lens) + _ranges(lens)
    return idx, lens
