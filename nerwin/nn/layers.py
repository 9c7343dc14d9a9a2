"""Layer forward/backward pairs with explicit caches (CS231n style).

Every ``*_forward`` returns ``(out, cache)``; the matching ``*_backward`` takes the upstream
gradient ``dout`` (dJ/d out, same shape as ``out``) and that cache and returns the gradient with
respect to the layer's inputs (and parameters). Nothing here keeps state, allocates in float64
behind the caller's back, or loops over batch rows in Python: every function runs in the dtype
of its inputs.

Notation (CS224N lectures 3-4): a batch is stacked row-wise, so the lecture's z = W h + b for
one example becomes Z = X W^T + b for B examples, with W of shape (H, D) = (fan_out, fan_in).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from nerwin.nn.heads import sigmoid
from nerwin.nn.rowgrad import RowGrad

# --------------------------------------------------------------------------- embeddings


def embedding_forward(E: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, Any]:
    """Look up rows of an embedding table.

    E:   (V, d) table.
    ids: (...) int array of row ids (typically (B, 2m+1)), each in [0, V).
    Returns out (..., d) with ``out[i, j] = E[ids[i, j]]`` and the cache ``(ids, d)``.
    """
    ids = np.asarray(ids)
    if ids.size and ids.min() < 0:
        # Negative ids would silently wrap around to the last rows; refuse them.
        raise ValueError(f"embedding ids must be >= 0, got min {ids.min()}")
    # take: the same rows as E[ids] (IndexError beyond the table too), with less overhead.
    return np.take(E, ids, axis=0), (ids, E.shape[1])


def embedding_backward(dout: np.ndarray, cache: Any) -> RowGrad:
    """Gradient of a lookup with respect to the table, row-sparse.

    dout: (..., d) upstream gradient, same shape as the forward output.
    Returns a :class:`RowGrad` holding dJ/dE only on the rows that were looked up.

    x_ij = E[ids_ij] is a copy of one row, so dJ/dE[r] = sum over all (i, j) with ids_ij = r of
    dout_ij: a word that occurs several times in the batch (or in several window positions)
    receives the sum of all its contributions, never just the last one.
    """
    ids, d = cache
    return RowGrad.from_ids(ids.reshape(-1), dout.reshape(-1, d))


# --------------------------------------------------------------------------- affine


def affine_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, Any]:
    """Z = X W^T + b, the batched form of the lecture's z = W x + b.

    x: (B, D) inputs, W: (H, D) weights, b: (H,) bias. Returns z (B, H) and cache (x, W).
    """
    z = x @ W.T
    z += b  # in place: the same sum as x @ W.T + b without a second (B, H) array
    return z, (x, W)


def affine_backward(
    dz: np.ndarray, cache: Any, *, need_dx: bool = True, need_dW: bool = True
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray]:
    """Backward of :func:`affine_forward`.

    dz: (B, H) upstream gradient δ = dJ/dz. Returns (dx, dW, db) with
      dx = δ W     (B, D)  -- the error signal sent down to the layer below,
      dW = δ^T x   (H, D)  -- shaped like W: outer products δ_i x_i^T summed over the batch,
      db = Σ_i δ_i (H,)    -- shaped like b: b shares δ with W, with local gradient 1.
    ``need_dx=False`` / ``need_dW=False`` skip those products (frozen parameters, or nothing
    trainable below) and return None in their place; db is cheap and always computed.
    """
    x, W = cache
    dx = dz @ W if need_dx else None
    dW = dz.T @ x if need_dW else None
    return dx, dW, dz.sum(axis=0)


# --------------------------------------------------------------------------- nonlinearities
# Each forward caches its *output* a = f(z); every derivative below can be written from it,
# which is how the lectures write them and saves keeping z around.


def sigmoid_forward(z: np.ndarray) -> tuple[np.ndarray, Any]:
    """a = σ(z) = 1 / (1 + e^-z), elementwise, any shape; stable for large |z|."""
    a = sigmoid(z)
    return a, a


def sigmoid_backward(da: np.ndarray, cache: Any) -> np.ndarray:
    """dz = da ⊙ σ'(z) with σ'(z) = σ(z)(1 - σ(z)) = a(1 - a); same shape as da.

    For large |z| this vanishes (saturation): a(1-a) rounds to 0 once a rounds to 1.
    """
    a = cache
    t = da * a
    t *= 1 - a  # (da·a)·(1 - a), the same products in the same order, one array fewer
    return t


def tanh_forward(z: np.ndarray) -> tuple[np.ndarray, Any]:
    """a = tanh(z), elementwise, any shape."""
    a = np.tanh(z)
    return a, a


def tanh_backward(da: np.ndarray, cache: Any) -> np.ndarray:
    """dz = da ⊙ (1 - tanh²(z)) = da ⊙ (1 - a²); same shape as da."""
    a = cache
    t = a * a
    np.subtract(1, t, out=t)
    t *= da  # da ⊙ (1 - a²) (a product commutes exactly), without temporaries
    return t


def hardtanh_forward(z: np.ndarray) -> tuple[np.ndarray, Any]:
    """a = clip(z, -1, 1), elementwise, any shape."""
    a = np.clip(z, -1, 1)
    return a, a


def hardtanh_backward(da: np.ndarray, cache: Any) -> np.ndarray:
    """dz = da ⊙ 1[-1 < z < 1]; same shape as da.

    hardtanh' is 1 on the open interval (-1, 1) and 0 outside. At the kinks z = ±1 it has no
    derivative; we use the subgradient 0 there (convention). Since a = clip(z), |a| < 1 holds
    exactly when -1 < z < 1, so the output is enough.
    """
    a = cache
    return da * (np.abs(a) < 1)


def relu_forward(z: np.ndarray) -> tuple[np.ndarray, Any]:
    """a = max(z, 0), elementwise, any shape."""
    a = np.maximum(z, 0)
    return a, a


def relu_backward(da: np.ndarray, cache: Any) -> np.ndarray:
    """dz = da ⊙ 1[z > 0]; same shape as da.

    relu' is 1 for z > 0 and 0 for z < 0. At the kink z = 0 we use the subgradient 0
    (convention). a > 0 exactly when z > 0.
    """
    a = cache
    return da * (a > 0)


Forward = Callable[[np.ndarray], tuple[np.ndarray, Any]]
Backward = Callable[[np.ndarray, Any], np.ndarray]

#: name -> (forward, backward). The network looks the functions up by name on this module at
#: call time (``getattr(layers, name + "_backward")``) so tests can monkeypatch them.
NONLINEARITIES: dict[str, tuple[Forward, Backward]] = {
    "sigmoid": (sigmoid_forward, sigmoid_backward),
    "tanh": (tanh_forward, tanh_backward),
    "hardtanh": (hardtanh_forward, hardtanh_backward),
    "relu": (relu_forward, relu_backward),
}


# --------------------------------------------------------------------------- dropout


def dropout_forward(
    x: np.ndarray, p: float, rng: np.random.Generator | None, train: bool
) -> tuple[np.ndarray, Any]:
    """Inverted dropout with drop rate p.

    x: any shape. In training each unit is kept with probability 1-p and the kept units are
    scaled by 1/(1-p), so E[out] = x and evaluation needs no rescaling: in eval mode (or with
    p = 0) this is the identity and returns x itself with cache None.
    Returns out (same shape and dtype as x) and the cache: the scaled mask, in x's dtype.
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout rate must be in [0, 1), got {p}")
    if not train or p == 0.0:
        return x, None
    if rng is None:
        raise ValueError("dropout in training mode needs an rng")
    # Draw uniforms in x's dtype (float32 or float64 are supported by Generator.random) and
    # build the scaled mask in that dtype, so no float64 temporaries enter a float32 pass.
    keep = rng.random(x.shape, dtype=x.dtype) >= x.dtype.type(p)
    mask = keep.astype(x.dtype) * x.dtype.type(1.0 / (1.0 - p))
    return x * mask, mask


def dropout_backward(dout: np.ndarray, cache: Any) -> np.ndarray:
    """out = x ⊙ mask, so dx = dout ⊙ mask (dropped units pass no gradient). Shape of dout."""
    mask = cache
    return dout if mask is None else dout * mask
