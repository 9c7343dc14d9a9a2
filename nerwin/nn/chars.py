"""The character encoder: character embeddings → convolution over k-character windows → max
over the word's positions (dos Santos & Zadrozny 2014; CS224N lecture 4's "max routes the
gradient"). Forward/backward pair with an explicit cache, as in nerwin.nn.layers.

For a word of n characters c_0..c_{n-1} (ids; 0 = ``<pad>``) and odd width k = 2h+1, the
window at position j is the k ids c_{j-h}..c_{j+h}, with ``<pad>`` outside the word (a window
never reaches into the next token: every token has its own row). With the char table
E_char (V_c, d_c), filters W_char (F, k d_c) and bias b_char (F,):

    x_j = E_char[c_{j-h}] ⊕ … ⊕ E_char[c_{j+h}]          (k d_c,)
    z_j = W_char x_j + b_char                            (F,)
    o_f = max_{0 <= j < n} z_{j,f}                        (F,)   only over the word's positions

Backward (δ = dJ/do, (F,)): max routes the gradient to its argmax, j*_f (the first position
that holds the max, so a tie is broken deterministically):

    dz_{j,f}   = δ_f if j = j*_f else 0
    dW_char    = Σ_j dz_jᵀ x_j        db_char = Σ_j dz_j        dx_j = dz_j W_char
    dE_char[r] = Σ over every window slot holding id r of its slice of dx (row-sparse; the
                 ``<pad>`` row gets gradient too, it is a learned border vector)

max has kinks where the argmax switches; gradcheck recognises them through the argmax
indices (see WindowNet.kink_pattern).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nerwin.nn.rowgrad import RowGrad

PAD = 0


def char_windows(ids: np.ndarray, width: int) -> np.ndarray:
    """(n, L) char ids -> (n, L, width) windows centred at each position, ``<pad>`` beyond
    the row's ends. ``width`` must be odd."""
    n, L = ids.shape
    h = (width - 1) // 2
    padded = np.full((n, L + 2 * h), PAD, dtype=ids.dtype)
    padded[:, h: h + L] = ids
    return padded[:, np.arange(L)[:, None] + np.arange(width)[None, :]]


def char_forward(E: np.ndarray, W: np.ndarray, b: np.ndarray, ids: np.ndarray,
                 width: int) -> tuple[np.ndarray, Any]:
    """Encode words from their characters.

    E: (V_c, d_c); W: (F, width·d_c); b: (F,); ids: (n, L) int char ids, the word's
    characters first and ``<pad>`` after them (a row has at least one character).
    Returns out (n, F) and the cache.
    """
    ids = np.asarray(ids)
    n, L = ids.shape
    win = char_windows(ids, width)                       # (n, L, k)
    X = E[win].reshape(n, L, -1)                          # (n, L, k d_c)
    Z = X @ W.T + b                                       # (n, L, F)
    length = np.maximum((ids != PAD).sum(axis=1), 1)      # characters of each word
    inside = np.arange(L)[None, :] < length[:, None]      # (n, L)
    Zm = np.where(inside[:, :, None], Z, -np.inf)
    arg = Zm.argmax(axis=1)                               # (n, F): the first max
    out = np.take_along_axis(Z, arg[:, None, :], axis=1)[:, 0, :]
    return out, (win, X, W, arg, E.shape[1])


def char_backward(dout: np.ndarray, cache: Any, *, need_E: bool = True
                  ) -> tuple[RowGrad | None, np.ndarray, np.ndarray]:
    """Gradients (dE_char as a RowGrad, dW_char, db_char) from dout = dJ/d out (n, F)."""
    win, X, W, arg, d = cache
    n, L, _ = X.shape
    F = W.shape[0]
    dZ = np.zeros((n, L, F), dtype=dout.dtype)
    np.put_along_axis(dZ, arg[:, None, :], dout[:, None, :], axis=1)  # max routes δ
    dZf = dZ.reshape(n * L, F)
    dW = dZf.T @ X.reshape(n * L, -1)
    db = dZf.sum(axis=0)
    dE = None
    if need_E:
        dX = dZf @ W                                       # (n L, k d_c)
        dE = RowGrad.from_ids(win.reshape(-1), dX.reshape(-1, d))
    return dE, dW, db
