"""Row-sparse gradients for embedding tables.

An embedding lookup touches only the rows whose ids occur in the batch, so its gradient
is zero everywhere else. We never allocate the dense V x d gradient: a :class:`RowGrad`
holds the unique row ids and one summed gradient row per id.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RowGrad:
    """Gradient of a (V, d) table that is non-zero only on ``rows``.

    rows:   (R,) int64, unique and sorted.
    values: (R, d), ``values[i]`` is dJ/dE[rows[i]] (contributions of repeated ids summed).
    """

    rows: np.ndarray
    values: np.ndarray

    @staticmethod
    def from_ids(ids: np.ndarray, grads: np.ndarray) -> RowGrad:
        """Sum per-occurrence gradient rows into one row per unique id.

        ids: (n,) int, grads: (n, d). Repeated ids are summed, not overwritten: a word that
        occurs twice in a batch gets both upstream contributions (gradients sum where paths
        branch).
        """
        ids = np.asarray(ids).reshape(-1)
        grads = np.asarray(grads).reshape(ids.shape[0], -1)
        n = ids.shape[0]
        if n == 0:
            return RowGrad(np.zeros(0, dtype=np.int64), grads[:0].copy())
        # Sort the occurrences by id (stable: equal ids keep their batch order), then sum each
        # run of equal ids with one reduceat -- twice as fast as np.unique + np.add.at here.
        # Ids that fit in 16 bits are sorted as uint16, which numpy sorts by radix (2-3x
        # faster than int64's merge sort); a stable sort gives the same order either way.
        key = ids
        if ids.dtype.itemsize > 2 and 0 <= ids.min() and ids.max() <= 0xFFFF:
            key = ids.astype(np.uint16)
        order = np.argsort(key, kind="stable")
        sorted_ids = ids[order]
        first = np.empty(n, dtype=bool)
        first[0] = True
        np.not_equal(sorted_ids[1:], sorted_ids[:-1], out=first[1:])
        starts = np.flatnonzero(first)
        g = np.take(grads, order, axis=0)
        rows = sorted_ids[starts].astype(np.int64)
        if len(starts) == n:  # every id once: nothing to sum
            return RowGrad(rows, g)
        # reduceat pays per run, and most ids of a batch occur once: copy those rows and
        # reduce only the runs of repeated ids (each run is summed exactly as one reduceat
        # over all of them would, so the result is the same bit for bit).
        counts = np.empty(len(starts), dtype=np.intp)
        np.subtract(starts[1:], starts[:-1], out=counts[:-1])
        counts[-1] = n - starts[-1]
        multi = counts > 1
        if multi.all():  # every id repeats (a small table such as casing): one reduceat
            return RowGrad(rows, np.add.reduceat(g, starts, axis=0))
        values = np.take(g, starts, axis=0)
        ms, mc = starts[multi], counts[multi]
        ends = np.cumsum(mc)
        local = ends - mc
        src = np.arange(int(ends[-1])) - np.repeat(local - ms, mc)
        values[multi] = np.add.reduceat(np.take(g, src, axis=0), local, axis=0)
        return RowGrad(rows, values)

    def to_dense(self, shape: tuple[int, ...]) -> np.ndarray:
        """The dense gradient (for tests and gradient checks only)."""
        out = np.zeros(shape, dtype=self.values.dtype)
        out[self.rows] = self.values
        return out
