"""Prediction with precomputed first-layer projections (tagging beyond the GEMM bound).

When the network's first block is Dense (an affine map of the flat window), its
pre-activation of a window is a sum over window positions k and token-feature tables f of
one block of W_1 times one embedding row (``W1`` is (H, D), D
laid out position by position, tables in order within a position):

    z_1 = b_1 + Σ_k Σ_f W_1[:, block(k, f)] E_f[id_{f,k}]

For a fixed model, P_{f,k} = E_f W_1[:, block(k, f)]ᵀ (n_rows_f, H) holds that product for
every row of table f, so a token costs (2m+1)·n_tables row lookups and adds of H floats
instead of a (D x H) matrix product. All P_{f,k} are stacked in one (R, H) matrix; for a
chunk of tokens, one ``take`` per lookup column reads its rows and adds them into z_1.

A table with so few rows that n_rows^(2m+1) <= COMBINE_MAX_ROWS (casing: 6^5 = 7776) is
combined over positions too: Q[Σ_k id_k n^k] = Σ_k P_k[id_k], one lookup per token instead
of 2m+1.

When precomputing pays (the rule, per table): the projections cost 2·n_rows·d·(2m+1)·H
flops, the plain product 2·N·d·(2m+1)·H for N tokens, so a table is precomputed when
n_rows <= N (the tokens of this evaluation or tagging call) and its projections fit in
MAX_BYTES. Otherwise (a huge vocabulary and a small input) it goes through the plain
matrix product with its columns of W_1, as does the character encoder (its output depends
on the batch's words; it is computed per batch and multiplied as before).

The sums run in another order than x W_1ᵀ, so scores agree with the plain forward pass to
float rounding (not bit for bit); tests check that the decoded tags are the same.
Only valid for the parameters at construction time: build one per evaluation call.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

#: Tokens per gather-and-sum: (CHUNK, H) floats of z stay in the CPU cache.
CHUNK = 256
#: A table whose n_rows^(2m+1) is at most this is combined over window positions.
COMBINE_MAX_ROWS = 16384
#: Largest size of all precomputed projections together.
MAX_BYTES = 256 * 2**20


def combined_rows(n_rows: int, K: int) -> int | None:
    """n_rows^K, the rows of a table combined over K positions, if at most COMBINE_MAX_ROWS;
    else None (without forming a huge integer for a large K)."""
    if n_rows > 1 and K * math.log2(n_rows) > math.log2(COMBINE_MAX_ROWS) + 1e-9:
        return None
    rows = n_rows ** K
    return rows if rows <= COMBINE_MAX_ROWS else None


class Projections:
    """The first Dense block (W (H, D), b (H,)) after ``tables`` (nerwin.nn.tables) over K
    window positions, precomputed from ``params`` for ``n_tokens`` tokens to predict. Use
    via ``net.forward(inputs, proj=...)`` (WindowNet.projections builds one).
    """

    def __init__(self, tables: Sequence[Any], K: int, W: np.ndarray, b: np.ndarray,
                 params: dict[str, np.ndarray], n_tokens: int,
                 out: np.ndarray | None = None) -> None:
        H = W.shape[0]
        position_dim = sum(t.out_dim for t in tables)
        W3 = W.reshape(H, K, position_dim)
        self.K, self.H, self.b = K, H, b
        self.lookups: list[tuple[int, str, int, int]] = []  # (table, mode, base row, n_rows)
        self.rest: list[int] = []  # tables multiplied per batch
        rest_cols: list[np.ndarray] = []
        # First decide which tables are precomputed and where their rows go in P, then
        # write every block straight into P (no copies of the large blocks).
        plan: list[tuple[int, Any, slice]] = []
        base, off, budget = 0, 0, MAX_BYTES
        for ti, t in enumerate(tables):
            sl = slice(off, off + t.out_dim)
            off += t.out_dim
            size = t.n_rows * K * H * W.dtype.itemsize
            if t.precomputable and t.n_rows <= max(n_tokens, 1) and size <= budget:
                budget -= size
                n_comb = combined_rows(t.n_rows, K)
                combined = n_comb is not None
                rows = n_comb if n_comb is not None else t.n_rows * K
                self.lookups.append((ti, "combined" if combined else "positions", base,
                                     t.n_rows))
                plan.append((ti, t, sl))
                base += rows
            else:
                self.rest.append(ti)
                rest_cols.append(np.arange(sl.start, sl.stop))
        # ``out``: a flat buffer to hold P when it is large enough (the previous
        # evaluation's, so that its pages are not faulted in again: for CoNLL-2003 with
        # GloVe, 187 MB took about half a second to touch afresh on the development
        # machine, as long as the products themselves). ``buffer`` is what P lives in.
        if out is not None and out.dtype == W.dtype and out.ndim == 1 and out.size >= base * H:
            self.buffer = out
        else:
            self.buffer = np.empty(base * H, dtype=W.dtype)
        self.P = self.buffer[: base * H].reshape(base, H)
        for (_ti, t, sl), (_, mode, b0, n) in zip(plan, self.lookups, strict=True):
            # P[r, k] = E[r] · W_1[:, block(k, t)]ᵀ: (n_rows, K, H), one product with the
            # table's blocks of W_1 laid out as (d, K·H).
            Wt = np.ascontiguousarray(W3[:, :, sl].transpose(2, 1, 0)).reshape(-1, K * H)
            E = params[t.param]
            if mode == "positions":
                np.matmul(E, Wt, out=self.P[b0: b0 + n * K].reshape(n, K * H))
                continue
            Pk = (E @ Wt).reshape(n, K, H)
            # Q[Σ_k id_k n^k] = Σ_k P[id_k, k]: broadcast sums, id_0 the lowest digit.
            Q = Pk[:, K - 1, :]
            for k in range(K - 2, -1, -1):
                Q = (Q[:, None, :] + Pk[None, :, k, :]).reshape(-1, H)
            self.P[b0: b0 + n ** K] = Q
        self.W_rest = None
        if self.rest:
            cols = np.concatenate(rest_cols)
            self.W_rest = np.ascontiguousarray(W3[:, :, cols].reshape(H, -1))
        self.n_lookups = sum(K if m == "positions" else 1 for _, m, _, _ in self.lookups)

    @property
    def precomputed(self) -> tuple[int, ...]:
        """Indices of the tables read from precomputed projections."""
        return tuple(ti for ti, *_ in self.lookups)

    def first_layer(self, arrays: list[Any], rest_x: np.ndarray | None) -> np.ndarray:
        """z_1 (B, H) of a batch: arrays are the checked inputs (one per table), rest_x the
        (B, K·d_rest) inputs of the tables not precomputed (None if there are none)."""
        B = arrays[0].shape[0]
        K = self.K
        flat = np.empty((B, self.n_lookups), dtype=np.intp)
        col = 0
        for ti, mode, base, n in self.lookups:
            ids = np.asarray(arrays[ti])
            if ids.size and (ids.min() < 0 or ids.max() >= n):
                # Out-of-range ids would read another table's rows: refuse them, as the
                # plain lookup does.
                raise ValueError(f"table {ti} ids must be in [0, {n}), got "
                                 f"[{ids.min()}, {ids.max()}]")
            ids = ids.astype(np.intp)
            if mode == "positions":
                flat[:, col: col + K] = ids * K + np.arange(K) + base
                col += K
            else:
                flat[:, col] = ids @ (n ** np.arange(K, dtype=np.intp)) + base
                col += 1
        dt = self.P.dtype
        if rest_x is not None:
            z = rest_x @ self.W_rest.T
        else:
            z = np.empty((B, self.H), dtype=dt)
        if self.n_lookups:
            # Column by column over a chunk of tokens: one take of (c, H) rows a lookup,
            # added into the chunk of z (c x H floats stay in the cache). Faster than one
            # take of (c, lookups, H) and a sum over its middle axis, and the same sums.
            P = self.P
            first = rest_x is None
            for s in range(0, B, CHUNK):
                f = flat[s: s + CHUNK]
                zc = z[s: s + CHUNK]
                j0 = 0
                if first:
                    np.take(P, f[:, 0], axis=0, out=zc)
                    j0 = 1
                for j in range(j0, self.n_lookups):
                    zc += np.take(P, f[:, j], axis=0)
        elif rest_x is None:
            z[:] = 0
        z += self.b
        return z
