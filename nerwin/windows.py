"""Id windows and minibatches.

For N tokens and half-width m, the window of token t holds the ids of tokens t-m .. t+m of
t's own sentence, with the left pad id before the sentence start and the right pad id after
its end, so a window never crosses a sentence boundary. A corpus keeps one id per token and
feature (N integers, :class:`WindowData`); the (B, 2m+1) windows of a minibatch are built
when it is read, and the float vectors of a window are looked up per batch by the network.
:func:`make_windows` builds the whole N x (2m+1) matrix at once: the reference the per-batch
windows are tested against.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


def make_windows(seqs: Sequence[np.ndarray], m: int, left_pad: int | np.ndarray,
                 right_pad: int | np.ndarray, dtype: type = np.int32,
                 row_shape: tuple[int, ...] = ()) -> np.ndarray:
    """Windows of half-width ``m`` over each sequence of ids, stacked: (N, 2m+1, *row_shape).

    A token is one id, or a row of ids of ``row_shape`` (the characters of a word); the pads
    are then rows too. Vectorised: the sentences are laid end to end, each framed by m left
    pads and m right pads, and every window is one fancy-index into that buffer.
    """
    if m < 0:
        raise ValueError(f"window half-size must be >= 0, got {m}")
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    n = int(lengths.sum())
    if n == 0:
        return np.zeros((0, 2 * m + 1, *row_shape), dtype=dtype)
    framed = lengths + 2 * m
    starts = np.concatenate([[0], np.cumsum(framed)[:-1]])  # buffer offset of each frame
    buf = np.empty((int(framed.sum()), *row_shape), dtype=dtype)
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


@dataclass(frozen=True)
class TokenIds:
    """One feature's id of every token, (N,), and the ids of its pads: what a window of the
    feature is built from, a batch at a time (see :meth:`WindowData.rows`)."""

    ids: np.ndarray
    left_pad: int
    right_pad: int

    def window(self, pos: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """(B, 2m+1) ids at the token positions ``pos`` (clipped into the corpus), the
        pads where ``left`` / ``right`` mark a position before / after the sentence."""
        out = self.ids[pos]
        out[left] = self.left_pad
        out[right] = self.right_pad
        return out


@dataclass
class WindowData:
    """The encoded form of a corpus: everything the network reads, as ints.

    inputs: one per token feature, in the network's table order: the feature's id of every
    token ((N,) int32 word ids, int8 casing ids, ...: :class:`TokenIds`), or the character
    feature's rows (nerwin.features.CharWindows); labels: (N,) int32 tag ids; lengths: (S,)
    sentence lengths (sentences are consecutive); window: m, the half-width.

    Windows are never stored for the whole corpus: :meth:`rows` builds those of a batch by
    index arithmetic over the flat ids, with the pads outside each token's sentence. The
    result equals the rows of :func:`make_windows` (a property test checks it).
    """

    inputs: tuple[Any, ...]
    labels: np.ndarray
    lengths: np.ndarray
    window: int = 0

    def __post_init__(self) -> None:
        self.lengths = np.asarray(self.lengths, dtype=np.int64)
        self._offsets = np.concatenate([[0], np.cumsum(self.lengths)]).astype(np.int64)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def positions(self, idx: np.ndarray | slice
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For the windows of tokens ``idx``: (B, 2m+1) token positions clipped into the
        corpus, and the masks of positions before and after each token's sentence."""
        n = len(self)
        if isinstance(idx, slice):
            idx = np.arange(n, dtype=np.int64)[idx]
        idx = np.asarray(idx, dtype=np.int64)
        m = self.window
        offsets = self._offsets
        sent = np.searchsorted(offsets, idx, side="right") - 1  # each token's sentence
        pos = idx[:, None] + np.arange(-m, m + 1, dtype=np.int64)[None, :]
        left = pos < offsets[sent][:, None]
        right = pos >= offsets[sent + 1][:, None]
        np.clip(pos, 0, max(n - 1, 0), out=pos)
        return pos, left, right

    def rows(self, idx: np.ndarray | slice) -> tuple[Any, ...]:
        """The inputs of the windows ``idx`` (an index array or a slice): per feature a
        (B, 2m+1) id array (the character feature: its CharBatch)."""
        pos, left, right = self.positions(idx)
        return tuple(a.window(pos, left, right) for a in self.inputs)

    @property
    def offsets(self) -> np.ndarray:
        """(S + 1,) token offset of each sentence, and N at the end."""
        return self._offsets

    def split(self, flat: np.ndarray) -> list[np.ndarray]:
        """Split a per-token array (N, ...) back into sentences."""
        return np.split(flat, self._offsets[1:-1]) if len(self.lengths) else []


def batches(n: int, batch_size: int, rng: np.random.Generator | None = None
            ) -> Iterator[np.ndarray]:
    """Index arrays of at most ``batch_size`` rows; shuffled when ``rng`` is given.

    One permutation is drawn per call, so a seeded generator gives the same batches.
    """
    order = rng.permutation(n) if rng is not None else np.arange(n)
    if n < 2**31:  # the same draws, held in half the memory
        order = order.astype(np.int32)
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
