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

:class:`Conv` is a convolution over the previous block's outputs within each sentence
(Collobert et al. 2011's sentence approach, Strubell et al. 2017's stacked CNN): at token t
it reads h[t-w] … h[t+w] (zero vectors beyond the sentence's ends), concatenated in that
order, with W (n_out, (2w+1)·n_in) = [W_0 | … | W_2w] and b (n_out,):

    forward   n[t] = h[t-w] ⊕ … ⊕ h[t+w]    z = n Wᵀ + b    a = f(z)    out = a ⊙ mask
    backward  δ = (dout ⊙ mask) ⊙ f'(z)     dW = δᵀ n,  db = Σ_t δ[t]
              dh[t+j-w] += δ[t] W_j   for every j whose neighbour t+j-w is in t's sentence

It needs batches of whole sentences (``per_sentence``) and reads their lengths. Derivation:
docs/derivations.md, "Convolution block".
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

    def _name(self) -> str:
        return f"dense{self.index}"

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
        name = self._name()  # a Conv block runs this code too, under its own name
        if z is None:
            z, aff_cache = layers.affine_forward(h, p[self.W], p[self.b])
        else:
            aff_cache = None
        if trace is not None:
            trace.append((f"{name}.affine", z))
        a, act_cache = getattr(layers, f"{self.nonlinearity}_forward")(z)
        if trace is not None:
            trace.append((f"{name}.{self.nonlinearity}", a))
        out, drop_cache = layers.dropout_forward(a, self.dropout, rng, train)
        if trace is not None and self.dropout > 0:
            trace.append((f"{name}.dropout", out))
        return out, (aff_cache, act_cache, drop_cache)

    def backward(self, p: dict[str, np.ndarray], dout: np.ndarray, cache: Any, need_dx: bool,
                 trainable: set[str] | frozenset[str],
                 trace: list[tuple[str, np.ndarray]] | None = None
                 ) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
        """(dJ/dh or None when not ``need_dx``, gradients of the trainable W, b)."""
        aff_cache, act_cache, drop_cache = cache[:3]  # a Conv's cache adds its index
        name = self._name()
        if trace is not None and self.dropout > 0:
            trace.append((f"{name}.dropout", dout))
        da = layers.dropout_backward(dout, drop_cache)
        if trace is not None:
            trace.append((f"{name}.{self.nonlinearity}", da))
        dz = getattr(layers, f"{self.nonlinearity}_backward")(da, act_cache)
        if trace is not None:
            trace.append((f"{name}.affine", dz))
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

    def batch_floats(self) -> int:
        """Floats per token its forward and backward pass hold (z, f(z), mask, δ)."""
        return 4 * self.n_out

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


def neighbour_index(lengths: np.ndarray, w: int) -> np.ndarray:
    """(B, 2w+1) int64: row t, column j holds the batch row of token t's neighbour t+j-w,
    or B (a zero pad row) when that neighbour lies outside t's sentence.

    ``lengths`` (S,) cut the batch into whole sentences in order (Σ lengths = B). Index
    arithmetic over the whole batch: each token's position in its sentence and its
    sentence's length, then one comparison per offset (no loop over tokens)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    B = int(lengths.sum())
    t = np.arange(B, dtype=np.int64)
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)  # (B,) first row of t's sentence
    pos = t - starts                                            # position inside the sentence
    n = np.repeat(lengths, lengths)                             # its sentence's length
    offsets = np.arange(-w, w + 1, dtype=np.int64)
    q = pos[:, None] + offsets[None, :]                         # neighbour's position
    inside = (q >= 0) & (q < n[:, None])
    return np.where(inside, t[:, None] + offsets[None, :], B)


@dataclass(frozen=True)
class Conv:
    """Convolution over whole sentences of the previous block's outputs: token t reads
    its own and ``w`` neighbours' outputs each side (the full width is 2w+1), then affine →
    nonlinearity → dropout, as :class:`Dense`. Parameters W{i} (n_out, (2w+1)·n_in) and
    b{i} (n_out,)."""

    index: int
    n_in: int
    n_out: int
    nonlinearity: str
    dropout: float = 0.0
    w: int = 1

    #: It looks across tokens of a sentence: batches must be whole sentences with lengths.
    per_sentence = True
    #: Its input is not the flat window: no precomputed projections for it.
    projectable = False

    @property
    def W(self) -> str:
        return f"W{self.index}"

    @property
    def b(self) -> str:
        return f"b{self.index}"

    @property
    def width(self) -> int:
        """2w+1, the tokens each output reads."""
        return 2 * self.w + 1

    def params(self) -> list[Param]:
        k = self.width * self.n_in
        return [Param(self.W, (self.n_out, k), "weight", regularised=True,
                      fan=(k, self.n_out)),
                Param(self.b, (self.n_out,), "zero")]

    def validate(self) -> None:
        if self.n_out < 1:
            raise NerwinError(f"blocks: expected units >= 1, got {self.n_out}")
        if self.w < 0:
            raise NerwinError(f"blocks: expected an odd width >= 1, got {self.width}")
        if not 0.0 <= self.dropout < 1.0:
            raise NerwinError(f"blocks: expected a dropout rate in [0, 1), got {self.dropout}")
        if self.nonlinearity not in layers.NONLINEARITIES:
            raise NerwinError(f"blocks: nonlinearity: expected one of "
                              f"{sorted(layers.NONLINEARITIES)}, got {self.nonlinearity!r}")

    def _name(self) -> str:
        return f"conv{self.index}"

    def forward(self, p: dict[str, np.ndarray], h: np.ndarray | None, train: bool,
                rng: np.random.Generator | None, z: np.ndarray | None = None,
                trace: list[tuple[str, np.ndarray]] | None = None,
                lengths: np.ndarray | None = None) -> tuple[np.ndarray, Any]:
        """out (B, n_out) and the cache; ``lengths`` (S,) are required (whole sentences)."""
        if lengths is None:
            raise ValueError(f"the convolution block {self._name()} works on whole sentences: "
                             f"pass their lengths")
        if h is None or z is not None:  # projections are for a first Dense block only
            raise ValueError(f"the convolution block {self._name()} needs its input h")
        B = h.shape[0]
        if int(np.sum(lengths)) != B:
            raise ValueError(f"sentence lengths sum to {int(np.sum(lengths))}, but the batch "
                             f"has {B} rows")
        idx = neighbour_index(lengths, self.w)
        padded = np.concatenate([h, np.zeros((1, h.shape[1]), dtype=h.dtype)])
        nb = padded[idx].reshape(B, -1)  # (B, (2w+1)·n_in): h[t-w] ⊕ … ⊕ h[t+w]
        name = self._name()
        if trace is not None:
            trace.append((f"{name}.neighbours", nb))
        out, cache = Dense.forward(self, p, nb, train, rng, trace=trace)  # type: ignore[arg-type]
        return out, (*cache, idx)

    def backward(self, p: dict[str, np.ndarray], dout: np.ndarray, cache: Any, need_dx: bool,
                 trainable: set[str] | frozenset[str],
                 trace: list[tuple[str, np.ndarray]] | None = None
                 ) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
        """(dJ/dh or None when not ``need_dx``, gradients of the trainable W, b)."""
        idx = cache[3]
        dnb, grads = Dense.backward(self, p, dout, cache, need_dx, trainable,  # type: ignore[arg-type]
                                    trace)
        if dnb is None:
            return None, grads
        name = self._name()
        if trace is not None:
            trace.append((f"{name}.neighbours", dnb))
        B = dnb.shape[0]
        dnb = dnb.reshape(B, self.width, self.n_in)
        dh = np.zeros((B, self.n_in), dtype=dnb.dtype)
        for j in range(self.width):
            # Within one offset every in-sentence neighbour row appears once (t -> t+j-w is
            # one-to-one), so a fancy-indexed += adds each δ exactly once; pads are dropped.
            inside = idx[:, j] < B
            dh[idx[inside, j]] += dnb[inside, j]
        return dh, grads

    def kinks(self, cache: Any) -> list[np.ndarray]:
        """Which side of its kinks each unit sits on (read from the activation f(z))."""
        return Dense.kinks(self, cache)  # type: ignore[arg-type]

    ONNX_OPS = Dense.ONNX_OPS
    #: The graph input that carries the batch's sentence lengths (S,) int64, in order.
    ONNX_LENGTHS = "sentence_lengths"

    def to_onnx(self, g: Any, h: str) -> str:
        """The neighbours by index arithmetic, as :func:`neighbour_index` (a batch of whole
        sentences whose lengths come in the ``sentence_lengths`` input): each token's
        sentence from CumSum of the lengths, its position and its sentence's length; per
        offset a Where between the neighbour's row and the zero row B appended by Pad; one
        Gather, a Reshape, then Gemm + the nonlinearity as :class:`Dense`."""
        name = self._name()
        L = self.ONNX_LENGTHS
        if L not in [i.name for i in g.inputs]:
            g.input(L, ["sentences"])

        def n(op: str, ins: list[str], out: str, **kw: Any) -> str:
            return g.node(op, ins, f"{name}.{out}", **kw)

        def c(key: str, value: Any) -> str:
            return g.const(f"{name}.{key}", value)

        ends = n("CumSum", [L, c("axis0", 0)], "ends")               # (S,)
        starts_s = n("Sub", [ends, L], "starts_s")
        B = n("Gather", [n("Shape", [h], "shape"), c("zero", 0)], "B")  # scalar
        t = n("Range", [c("zero_s", 0), B, c("one_s", 1)], "t")       # (B,)
        # Sentence of token t: how many sentence ends are <= t.
        ge = n("GreaterOrEqual", [n("Unsqueeze", [t, c("ax1", [1])], "t_col"),
                                  n("Unsqueeze", [ends, c("ax0", [0])], "ends_row")], "ge")
        sent = n("ReduceSum", [n("Cast", [ge], "ge_int", to=g.TensorProto.INT64),
                               c("ax1r", [1])], "sent", keepdims=0)
        pos = n("Sub", [t, n("Gather", [starts_s, sent], "start")], "pos")
        length = n("Gather", [L, sent], "length")
        cols, zero_q = [], c("zero_q", 0)
        for j, o in enumerate(range(-self.w, self.w + 1)):
            q = n("Add", [pos, c(f"off{j}", o)], f"q{j}")
            inside = n("And", [n("GreaterOrEqual", [q, zero_q], f"ge0_{j}"),
                               n("Less", [q, length], f"lt_{j}")], f"inside{j}")
            row = n("Where", [inside, n("Add", [t, c(f"offt{j}", o)], f"src{j}"), B],
                    f"row{j}")
            cols.append(n("Unsqueeze", [row, c(f"axc{j}", [1])], f"col{j}"))
        idx = n("Concat", cols, "index", axis=1) if len(cols) > 1 else cols[0]  # (B, 2w+1)
        padded = n("Pad", [h, c("pads", [0, 0, 1, 0])], "padded")    # row B = zeros
        nb = n("Gather", [padded, idx], "gathered", axis=0)          # (B, 2w+1, n_in)
        flat = n("Reshape", [nb, c("flat", [0, -1])], "neighbours")
        return Dense.to_onnx(self, g, flat)  # type: ignore[arg-type]

    def batch_floats(self) -> int:
        """Floats per token its passes hold: Dense's, the neighbours and their δ, the padded
        copy of its input and dh."""
        return 4 * self.n_out + 2 * self.width * self.n_in + 2 * self.n_in

    def nodes(self, B: int) -> list[Node]:
        i, k = self.index, self.width * self.n_in
        name = self._name()
        out = [Node(f"{name}.neighbours", f"n[t] = h[t-{self.w}] ⊕ … ⊕ h[t+{self.w}] "
                    f"(zeros beyond the sentence)", (B, k)),
               Node(f"{name}.affine", f"z{i} = n W{i}ᵀ + b{i}", (B, self.n_out),
                    (self.W, self.b), B * k * self.n_out),
               Node(f"{name}.{self.nonlinearity}", f"h{i} = {self.nonlinearity}(z{i})",
                    (B, self.n_out))]
        if self.dropout > 0:
            out.append(Node(f"{name}.dropout", f"h{i} ⊙ mask (rate {self.dropout:g}, "
                            f"training only)", (B, self.n_out)))
        return out


#: Every block type (a type union for annotations).
Block = Dense | Conv
