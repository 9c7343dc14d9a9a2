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

Speed: a word's encoding depends on its characters only, so a batch encodes each distinct
word once (:class:`CharBatch`: the distinct words' character rows and, per window
position, which row), and only the word's own positions are computed: the positions of
all words are packed into one (P, k d_c) matrix and the max over each word's run of rows is
one ``maximum.reduceat``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from nerwin.nn.rowgrad import RowGrad

PAD = 0


@dataclass(frozen=True)
class CharBatch:
    """The characters a batch of windows reads.

    index: (B, 2m+1) int, the row of ``chars`` at each window position;
    chars: (U, L) int character ids of the U distinct words (``<pad>`` = 0 after each word;
           every row holds at least one character).
    """

    index: np.ndarray
    chars: np.ndarray

    @staticmethod
    def from_windows(ids: np.ndarray) -> CharBatch:
        """From a plain (B, 2m+1, L) array of character rows (each distinct row kept once)."""
        ids = np.asarray(ids)
        B, K, L = ids.shape
        rows, inv = np.unique(ids.reshape(B * K, L), axis=0, return_inverse=True)
        return CharBatch(inv.reshape(B, K), rows)


def char_windows(ids: np.ndarray, width: int) -> np.ndarray:
    """(n, L) char ids -> (n, L, width) windows centred at each position, ``<pad>`` beyond
    the row's ends. ``width`` must be odd."""
    n, L = ids.shape
    h = (width - 1) // 2
    padded = np.full((n, L + 2 * h), PAD, dtype=ids.dtype)
    padded[:, h: h + L] = ids
    return padded[:, np.arange(L)[:, None] + np.arange(width)[None, :]]


def _packed_windows(ids: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The windows of the words' own positions only, packed: (P, width) ids, and the start
    of each word's run of positions (n,)."""
    n, L = ids.shape
    lens = np.maximum((ids != PAD).sum(axis=1), 1)            # characters of each word
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
    P = int(lens.sum())
    row = np.repeat(np.arange(n), lens)                       # word of each position
    pos = np.arange(P) - np.repeat(starts, lens)              # position within its word
    h = (width - 1) // 2
    padded = np.full((n, L + 2 * h), PAD, dtype=ids.dtype)
    padded[:, h: h + L] = ids
    return padded[row[:, None], pos[:, None] + np.arange(width)[None, :]], starts


def char_forward(E: np.ndarray, W: np.ndarray, b: np.ndarray, ids: np.ndarray,
                 width: int) -> tuple[np.ndarray, Any]:
    """Encode words from their characters.

    E: (V_c, d_c); W: (F, width·d_c); b: (F,); ids: (n, L) int char ids, the word's
    characters first and ``<pad>`` after them (a row has at least one character).
    Returns out (n, F) and the cache; cache[3] holds the argmax (n, F) as indices of the
    packed positions (the first max: ties go to the earliest position).
    """
    win, starts = _packed_windows(np.asarray(ids), width)   # (P, k)
    P = win.shape[0]
    X = E[win].reshape(P, -1)                                 # (P, k d_c)
    Z = X @ W.T + b                                           # (P, F)
    out = np.maximum.reduceat(Z, starts, axis=0)              # (n, F): max over each word
    lens = np.diff(np.append(starts, P))
    # First max: the smallest position index whose z equals its word's max.
    at_max = Z == np.repeat(out, lens, axis=0)
    arg = np.minimum.reduceat(np.where(at_max, np.arange(P)[:, None], P), starts, axis=0)
    return out, (win, X, W, arg, E.shape[1])


def char_backward(dout: np.ndarray, cache: Any, *, need_E: bool = True
                  ) -> tuple[RowGrad | None, np.ndarray, np.ndarray]:
    """Gradients (dE_char as a RowGrad, dW_char, db_char) from dout = dJ/d out (n, F)."""
    win, X, W, arg, d = cache
    F = W.shape[0]
    dZ = np.zeros((X.shape[0], F), dtype=dout.dtype)
    dZ[arg, np.arange(F)[None, :]] = dout     # max routes δ to its argmax (one per word, f)
    dW = dZ.T @ X
    db = dout.sum(axis=0)
    dE = None
    if need_E:
        dX = dZ @ W                                            # (P, k d_c)
        dE = RowGrad.from_ids(win.reshape(-1), dX.reshape(-1, d))
    return dE, dW, db
