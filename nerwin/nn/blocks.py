"""Hidden blocks: the middle of the network's chain, each turning the previous part's
output (B, n_in) into its own (B, n_out).

:class:`Dense` is the window network's hidden layer, a CS231n-style sandwich of three
forward/backward pairs of nerwin.nn.layers, with W (n_out, n_in) and b (n_out,):

    forward   z = h Wᵀ + b           a = f(z)              out = a ⊙ mask   (inverted dropout)
    backward  da = dout ⊙ mask       δ = da ⊙ f'(z)        dh = δ W,  dW = δᵀ h,  db = Σ_rows δ

Its parameters are named W{i}, b{i} (i = its 1-based position in the chain), which is how
checkpoints store them. Each block lists its parameters, runs forward/backward, reports its
kinks (relu at z = 0, hardtanh at z = ±1) and says whether it needs whole sentences in a
batch (a block that looked across window positions of a sentence would). Adding a block
type is one class here, its config keys and docs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from nerwin.errors import NerwinError
from nerwin.nn import layers
from nerwin.nn.parts import Node, Param, affine_back

#: The nonlinearities f of nerwin.nn.layers (forward caches f(z); backward reads it).
NONLINEARITIES = tuple(layers.NONLINEARITIES)
#: Where the nonlinearity has kinks (a gradient check leaves out entries that cross one).
KINKED = ("relu", "hardtanh")


@dataclass(frozen=True)
class Dense:
    """Affine → nonlinearity → dropout, the i-th hidden layer (i from 1)."""

    index: int
    n_in: int
    n_out: int
    nonlinearity: str
    dropout: float = 0.0

    #: Does it need batches of whole sentences? (A Dense block sees one window at a time.)
    per_sentence = False
    #: Its first operation is an affine map of the flat window: tagging may precompute it
    #: per table row (nerwin.nn.project).
    projectable = True

    @property
    def W(self) -> str:
        return f"W{self.index}"

    @property
    def b(self) -> str:
        return f"b{self.index}"

    def params(self) -> list[Param]:
        return [Param(self.W, (self.n_out, self.n_in), "weight", regularised=True,
                      fan=(self.n_in, self.n_out)),
                Param(self.b, (self.n_out,), "zero")]

    def validate(self) -> None:
        if self.n_out < 1:
            raise NerwinError(f"hidden: expected layer sizes >= 1, got {self.n_out}")
        if self.nonlinearity not in layers.NONLINEARITIES:
            raise NerwinError(f"nonlinearity: expected one of {sorted(layers.NONLINEARITIES)}, "
                              f"got {self.nonlinearity!r}")

    def forward(self, p: dict[str, np.ndarray], h: np.ndarray | None, train: bool,
                rng: np.random.Generator | None, z: np.ndarray | None = None,
                trace: list[tuple[str, np.ndarray]] | None = None,
                lengths: np.ndarray | None = None) -> tuple[np.ndarray, Any]:
        """out (B, n_out) and the cache. ``z``: the pre-activation when it was computed
        elsewhere (precomputed projections; the cache then cannot serve a backward pass).
        ``lengths``: the batch's sentence lengths, if it is whole sentences (unused: a
        Dense block sees one window at a time)."""
        if z is None:
            z, aff_cache = layers.affine_forward(h, p[self.W], p[self.b])
        else:
            aff_cache = None
        if trace is not None:
            trace.append((f"dense{self.index}.affine", z))
        a, act_cache = getattr(layers, f"{self.nonlinearity}_forward")(z)
        if trace is not None:
            trace.append((f"dense{self.index}.{self.nonlinearity}", a))
        out, drop_cache = layers.dropout_forward(a, self.dropout, rng, train)
        if trace is not None and self.dropout > 0:
            trace.append((f"dense{self.index}.dropout", out))
        return out, (aff_cache, act_cache, drop_cache)

    def backward(self, p: dict[str, np.ndarray], dout: np.ndarray, cache: Any, need_dx: bool,
                 trainable: set[str] | frozenset[str],
                 trace: list[tuple[str, np.ndarray]] | None = None
                 ) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
        """(dJ/dh or None when not ``need_dx``, gradients of the trainable W, b)."""
        aff_cache, act_cache, drop_cache = cache
        if trace is not None and self.dropout > 0:
            trace.append((f"dense{self.index}.dropout", dout))
        da = layers.dropout_backward(dout, drop_cache)
        if trace is not None:
            trace.append((f"dense{self.index}.{self.nonlinearity}", da))
        dz = getattr(layers, f"{self.nonlinearity}_backward")(da, act_cache)
        if trace is not None:
            trace.append((f"dense{self.index}.affine", dz))
        dh, dW, db = affine_back(dz, aff_cache, need_dx, self.W in trainable)
        grads: dict[str, np.ndarray] = {}
        if dW is not None:
            grads[self.W] = dW
        if self.b in trainable:
            grads[self.b] = db
        return dh, grads

    def kinks(self, cache: Any) -> list[np.ndarray]:
        """Which side of its kinks each unit sits on (read from the activation f(z))."""
        a = cache[1]
        if self.nonlinearity == "relu":
            return [(a > 0).reshape(-1).astype(np.int64)]
        if self.nonlinearity == "hardtanh":
            return [(np.sign(a) * (np.abs(a) >= 1)).reshape(-1).astype(np.int64)]
        return []

    def nodes(self, B: int) -> list[Node]:
        i = self.index
        out = [Node(f"dense{i}.affine", f"z{i} = h W{i}ᵀ + b{i}", (B, self.n_out),
                    (self.W, self.b), B * self.n_in * self.n_out),
               Node(f"dense{i}.{self.nonlinearity}", f"h{i} = {self.nonlinearity}(z{i})",
                    (B, self.n_out))]
        if self.dropout > 0:
            out.append(Node(f"dense{i}.dropout", f"h{i} ⊙ mask (rate {self.dropout:g}, "
                            f"training only)", (B, self.n_out)))
        return out


    #: ONNX operator of each nonlinearity (hardtanh is Clip(-1, 1)).
    ONNX_OPS = {"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu", "hardtanh": "Clip"}

    def to_onnx(self, g: Any, h: str) -> str:
        """Gemm + the nonlinearity (dropout is the identity in prediction)."""
        i = self.index
        if self.nonlinearity not in self.ONNX_OPS:
            raise g.error(f"cannot export the nonlinearity {self.nonlinearity!r}")
        z = g.node("Gemm", [h, g.param(self.W), g.param(self.b)], f"z{i}", transB=1)
        if self.nonlinearity == "hardtanh":
            return g.node("Clip", [z, g.const("minus1", -1.0, g.dtype),
                                   g.const("plus1", 1.0, g.dtype)], f"h{i}")
        return g.node(self.ONNX_OPS[self.nonlinearity], [z], f"h{i}")


def dense_stack(n_in: int, hidden: tuple[int, ...], nonlinearity: str, dropout: float
                ) -> tuple[Dense, ...]:
    """The hidden layers model.hidden asks for: Dense blocks of those sizes, in order."""
    blocks = []
    for i, h in enumerate(hidden, start=1):
        blocks.append(Dense(i, n_in, h, nonlinearity, dropout))
        n_in = h
    return tuple(blocks)


#: Every block type (a type union for annotations).
Block = Dense
