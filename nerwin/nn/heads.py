"""Output heads: softmax + cross-entropy, and the lecture-3 logistic (binary) head.

Both losses are the *mean* over the batch, so their backward divides δ by B. All functions run
in the dtype of the scores and are stable for arbitrarily large |scores| (no overflow, no
log(0)).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax of scores (B, C) -> probabilities (B, C); also works on (C,).

    softmax is invariant to adding a constant per row, so we subtract the row max first: the
    largest exponent is then e^0 = 1 and nothing overflows even for scores of ±1000.
    """
    shifted = scores - scores.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


def sigmoid(z: np.ndarray) -> np.ndarray:
    """σ(z) = 1 / (1 + e^-z), elementwise, any shape, without overflow for large |z|.

    With e = e^-|z| ∈ (0, 1]: σ(z) = 1/(1+e) for z >= 0 and e/(1+e) for z < 0 (the same
    function, rewritten so that exp never sees a large positive argument).
    """
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def _check_labels(y: np.ndarray, batch: int, n_classes: int) -> np.ndarray:
    y = np.asarray(y)
    if y.shape != (batch,):
        raise ValueError(f"labels must have shape ({batch},), got {y.shape}")
    if batch and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"labels must be in [0, {n_classes}), got [{y.min()}, {y.max()}]")
    return y


def softmax_xent_forward(scores: np.ndarray, y: np.ndarray) -> tuple[float, Any]:
    """Mean cross-entropy of softmax(scores) against integer labels.

    scores: (B, C), y: (B,) ints in [0, C).
    J = -(1/B) Σ_i log softmax(s_i)[y_i], computed through log-sum-exp:
    log softmax(s)_k = (s_k - max s) - log Σ_j e^(s_j - max s), which is finite for any scores.
    Returns (J as a Python float, cache).
    """
    B, C = scores.shape
    y = _check_labels(y, B, C)
    shifted = scores - scores.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    sum_e = e.sum(axis=1, keepdims=True)
    log_probs = shifted - np.log(sum_e)
    loss = -log_probs[np.arange(B), y].mean() if B else 0.0
    return float(loss), (e / sum_e, y)


def softmax_xent_backward(cache: Any, dloss: float = 1.0) -> np.ndarray:
    """dJ/dscores (B, C) for the mean cross-entropy: δ = (softmax(s) - onehot(y)) / B.

    ``dloss`` is the upstream gradient of the (scalar) loss, 1 when J is the final objective.
    """
    probs, y = cache
    B = probs.shape[0]
    d = probs.copy()
    d[np.arange(B), y] -= 1
    # Python scalars keep the dtype of d (NEP 50), so a float32 δ stays float32.
    d *= float(dloss) / max(B, 1)
    return d


def logistic_forward(s: np.ndarray, y: np.ndarray) -> tuple[float, Any]:
    """Mean binary cross-entropy of σ(s) against labels y ∈ {0, 1}.

    s: (B,) scores s = u^T h + c; y: (B,) ints in {0, 1}. J = σ(s) is the probability that the
    centre word is an entity of the chosen type. Per example
      -[y log σ(s) + (1-y) log(1-σ(s))] = softplus(s) - y s,   softplus(s) = log(1 + e^s),
    (because log σ(s) = s - softplus(s) and log(1-σ(s)) = -softplus(s)), and softplus is
    evaluated as logaddexp(0, s) so s = ±1000 gives 1000 or 0, never inf - inf.
    Returns (mean loss as a Python float, cache).
    """
    (B,) = s.shape
    y = _check_labels(y, B, 2)
    yf = y.astype(s.dtype)
    loss = (np.logaddexp(0, s) - yf * s).mean() if B else 0.0
    return float(loss), (sigmoid(s), yf)


def logistic_backward(cache: Any, dloss: float = 1.0) -> np.ndarray:
    """dJ/ds (B,) for the mean binary cross-entropy: δ = (σ(s) - y) / B.

    (d/ds [softplus(s) - y s] = σ(s) - y.) ``dloss`` is the upstream gradient of the loss.
    """
    p, yf = cache
    return (p - yf) * (float(dloss) / max(p.shape[0], 1))
