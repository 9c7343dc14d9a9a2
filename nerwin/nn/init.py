"""Parameter initialisers, all drawing from one ``np.random.Generator``.

Values are drawn in float64 and then cast to the requested dtype, so the same seed gives the
same parameters (up to rounding) in float32 and float64.

Weight matrices W of shape (fan_out, fan_in) (lecture convention, z = W h + b):
  - ``xavier_uniform``: U(-a, a) with a = sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio 2010);
  - ``xavier_normal``:  N(0, σ²) with σ = sqrt(2 / (fan_in + fan_out));
  - ``uniform``:        U(-scale, scale);
  - ``normal``:         N(0, scale²).
Biases start at zero.

Embedding tables (V, d) use the same named init row by row. For the xavier inits an embedding
row is treated as the output of a linear map from a one-hot input with exactly one active
unit, i.e. fan_in = 1 and fan_out = d (so xavier_uniform gives U(±sqrt(6/(1+d)))); V is *not*
a fan-in, which would make the vectors vanish for a large vocabulary. ``uniform``/``normal``
use ``scale`` as for weights. Rows supplied by a pretrained matrix are copied unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import DTypeLike


def xavier_uniform(
    rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, fan_out: int,
    dtype: DTypeLike = np.float32,
) -> np.ndarray:
    """Array of ``shape`` from U(-a, a), a = sqrt(6 / (fan_in + fan_out))."""
    a = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-a, a, size=shape).astype(dtype)


def xavier_normal(
    rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, fan_out: int,
    dtype: DTypeLike = np.float32,
) -> np.ndarray:
    """Array of ``shape`` from N(0, σ²), σ = sqrt(2 / (fan_in + fan_out))."""
    sigma = np.sqrt(2.0 / (fan_in + fan_out))
    return rng.normal(0.0, sigma, size=shape).astype(dtype)


def uniform(
    rng: np.random.Generator, shape: tuple[int, ...], scale: float,
    dtype: DTypeLike = np.float32,
) -> np.ndarray:
    """Array of ``shape`` from U(-scale, scale)."""
    return rng.uniform(-scale, scale, size=shape).astype(dtype)


def normal(
    rng: np.random.Generator, shape: tuple[int, ...], scale: float,
    dtype: DTypeLike = np.float32,
) -> np.ndarray:
    """Array of ``shape`` from N(0, scale²)."""
    return rng.normal(0.0, scale, size=shape).astype(dtype)


def zeros(shape: tuple[int, ...], dtype: DTypeLike = np.float32) -> np.ndarray:
    """Bias initialiser: zeros of ``shape``."""
    return np.zeros(shape, dtype=dtype)


_Init = Callable[[np.random.Generator, tuple[int, ...], int, int, float, DTypeLike], np.ndarray]

#: name -> f(rng, shape, fan_in, fan_out, scale, dtype); each ignores what it does not use.
INITS: dict[str, _Init] = {
    "xavier_uniform": lambda rng, shape, fi, fo, scale, dt: xavier_uniform(rng, shape, fi, fo, dt),
    "xavier_normal": lambda rng, shape, fi, fo, scale, dt: xavier_normal(rng, shape, fi, fo, dt),
    "uniform": lambda rng, shape, fi, fo, scale, dt: uniform(rng, shape, scale, dt),
    "normal": lambda rng, shape, fi, fo, scale, dt: normal(rng, shape, scale, dt),
}


def weight(
    name: str, rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, fan_out: int,
    scale: float, dtype: DTypeLike = np.float32,
) -> np.ndarray:
    """Weight array of ``shape`` from the init called ``name`` (a key of :data:`INITS`)."""
    if name not in INITS:
        raise ValueError(f"unknown init {name!r}; expected one of {sorted(INITS)}")
    return INITS[name](rng, shape, fan_in, fan_out, scale, dtype)


def embedding(
    name: str, rng: np.random.Generator, n_rows: int, dim: int, scale: float,
    dtype: DTypeLike = np.float32, pretrained: np.ndarray | None = None,
    pretrained_mask: np.ndarray | None = None,
) -> np.ndarray:
    """Embedding table (n_rows, dim).

    Rows where ``pretrained_mask`` (n_rows,) bool is True are copied from ``pretrained``
    (n_rows, dim) unchanged (cast to ``dtype``); all other rows come from the init ``name``
    with fan_in = 1, fan_out = dim (see the module docstring). ``pretrained`` without a mask
    means every row is pretrained. The whole table is drawn first, so the random stream (and
    thus every later parameter) does not depend on which rows are pretrained.
    """
    table = weight(name, rng, (n_rows, dim), 1, dim, scale, dtype)
    if pretrained is None:
        if pretrained_mask is not None:
            raise ValueError("pretrained_mask given without a pretrained matrix")
        return table
    pretrained = np.asarray(pretrained)
    if pretrained.shape != (n_rows, dim):
        raise ValueError(f"pretrained matrix has shape {pretrained.shape}, "
                         f"expected {(n_rows, dim)}")
    if pretrained_mask is None:
        mask = np.ones(n_rows, dtype=bool)
    else:
        mask = np.asarray(pretrained_mask)
        if mask.shape != (n_rows,) or mask.dtype != np.bool_:
            raise ValueError(f"pretrained_mask must be a bool array of shape ({n_rows},), "
                             f"got {mask.dtype} {mask.shape}")
    table[mask] = pretrained[mask]
    return table
