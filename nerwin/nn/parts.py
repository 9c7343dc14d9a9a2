"""What every part of the network (a feature table, a hidden block, the head) shares: the
declaration of a parameter, how a parameter of each kind is initialised, and the affine
backward that skips the products nobody needs.

A part lists its parameters as :class:`Param` (name, shape, kind, …), in the order they are
drawn from the random stream. Everything that used to recognise a parameter by its name
(regularisation, initialisation, the memory estimate, row-sparse gradients, gradient-check
sampling) reads these declarations instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from nerwin.nn import init as initmod
from nerwin.nn import layers

#: The kinds of parameter: a lookup table (rows drawn like embeddings, gradient row-sparse),
#: a weight matrix (drawn with its fan-in and fan-out) and a zero-initialised vector or matrix
#: (biases, the crf's transition scores).
KINDS = ("embedding", "weight", "zero")


@dataclass(frozen=True)
class Param:
    """One parameter of a part.

    name:        its name in the parameter dict and in checkpoints (E_word, W1, U, …);
    shape:       its shape;
    kind:        one of KINDS (how it is initialised; "embedding" also means its gradient
                 is a row-sparse RowGrad over the rows a batch reads);
    regularised: the l2/l1 penalty applies to it (the hidden and score weights);
    fan:         (fan_in, fan_out) of a weight, for the xavier initialisers.
    """

    name: str
    shape: tuple[int, ...]
    kind: str
    regularised: bool = False
    fan: tuple[int, int] = (0, 0)

    @property
    def size(self) -> int:
        """Number of entries, as a Python int (no overflow for absurd shapes)."""
        return math.prod(int(s) for s in self.shape)

    @property
    def row_sparse(self) -> bool:
        """Is its gradient a RowGrad over the rows of the batch (lookup tables)?"""
        return self.kind == "embedding"


def init_param(p: Param, init: str, rng: np.random.Generator, scale: float,
               dtype: DTypeLike) -> np.ndarray:
    """A fresh array for ``p`` (nerwin.nn.init): embeddings row by row, weights with their
    fans, zeros for the rest (no draw from ``rng``)."""
    if p.kind == "embedding":
        return initmod.embedding(init, rng, p.shape[0], p.shape[1], scale, dtype)
    if p.kind == "weight":
        return initmod.weight(init, rng, p.shape, p.fan[0], p.fan[1], scale, dtype)
    return initmod.zeros(p.shape, dtype)


def affine_back(dz: np.ndarray, cache: Any, need_dx: bool, need_dW: bool
                ) -> tuple[Any, Any, np.ndarray]:
    """layers.affine_backward, skipping dx or dW when they are not needed."""
    # Call with the plain two-argument form when nothing is skipped, so a test that
    # monkeypatches layers.affine_backward with a (dz, cache) function still works.
    if need_dx and need_dW:
        return layers.affine_backward(dz, cache)
    return layers.affine_backward(dz, cache, need_dx=need_dx, need_dW=need_dW)


@dataclass(frozen=True)
class Node:
    """One node of the computation graph a part runs (what ``nerwin graph`` prints).

    name:   a unique name (``dense1.affine``);
    op:     what it computes, in the lectures' notation (``z = h W1ᵀ + b1``);
    shape:  the shape of its output for a batch of B tokens (B is the first entry);
    params: the names of the parameters it reads;
    madds:  multiply-adds of its forward pass for that batch (0 for lookups and copies).
    """

    name: str
    op: str
    shape: tuple[int, ...]
    params: tuple[str, ...] = ()
    madds: int = 0
