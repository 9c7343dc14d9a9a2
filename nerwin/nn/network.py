"""The window classifier (Collobert & Weston 2011; CS224N lectures 3-4).

For token t with window size m the input is the concatenation, over positions t-m..t+m, of
[E_1[id_1] ⊕ E_2[id_2] ⊕ …] over the token features' tables (word, casing, affixes, shape;
the character encoder's output for chars), so x has D = (2m+1) Σ d_f entries. Hidden
layers h_i = dropout(f(W_i h_{i-1} + b_i)), then either

  - softmax head:  scores = U h + c, loss = mean cross-entropy, δ = softmax(scores) - onehot(y);
  - logistic head: s = u^T h + c,    loss = mean binary cross-entropy, δ = σ(s) - y;
  - crf head:      scores = U h + c, loss = (1/N) Σ sentence NLL of a linear-chain CRF,
                   δ = (node marginals - onehot(y)) / N  (nerwin.nn.output, nerwin.nn.crf).

Loss = mean data loss + (l2/2) Σ ||W||²_F + l1 Σ |W|, where the sums run over the weight
matrices W_1..W_k and U (or u) only: biases and embedding tables are not regularised.

Batched, the lecture's column-vector z = W h + b becomes Z = H W^T + b with one row per token,
and the backward pass is, layer by layer (δ_i = dJ/dZ_i, (B, H_i)):

  δ_head          = (P - Y) / B                          (both heads, see nerwin.nn.heads)
  dJ/dH_i         = δ_{i+1} W_{i+1}
  δ_i             = (dJ/dH_i ⊙ mask_i) ⊙ f'(Z_i)          (mask_i: scaled dropout mask)
  dJ/dW_i         = δ_i^T H_{i-1} + l2 W_i + l1 sign(W_i),   dJ/db_i = Σ_rows δ_i
  dJ/dx           = δ_1 W_1, split back into window positions and per table, and scattered
                    into the embedding rows (repeated ids summed) as a row-sparse RowGrad
                    (through the char encoder's max and convolution for E_char).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from nerwin.errors import NerwinError
from nerwin.nn import chars, layers, output
from nerwin.nn import init as initmod
from nerwin.nn.project import Projections
from nerwin.nn.rowgrad import RowGrad

HEADS = output.HEADS

#: Ids at or above this in the word table are real words (0 <unk>, 1 <s>, 2 </s>): word
#: dropout replaces only those by <unk>.
FIRST_WORD_ID = 3


@dataclass(frozen=True)
class TableSpec:
    """One token feature's lookup table ``param`` (n_rows, dim): dim floats per position."""

    param: str
    n_rows: int
    dim: int

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {self.param: (self.n_rows, self.dim)}

    @property
    def out_dim(self) -> int:
        return self.dim


@dataclass(frozen=True)
class CharSpec:
    """The character encoder (nerwin.nn.chars): E_char (n_rows, dim), W_char
    (filters, width·dim), b_char (filters,); ``filters`` floats per position. Its input per
    window position is a row of ``max_len`` character ids."""

    n_rows: int
    dim: int
    filters: int
    width: int
    max_len: int
    param: str = "E_char"

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"E_char": (self.n_rows, self.dim),
                "W_char": (self.filters, self.width * self.dim), "b_char": (self.filters,)}

    @property
    def out_dim(self) -> int:
        return self.filters


Table = TableSpec | CharSpec


def word_tables(n_words: int, word_dim: int, n_casing: int = 0, casing_dim: int = 0
                ) -> tuple[TableSpec, ...]:
    """The classic pair: E_word, and E_case when casing_dim > 0."""
    t = (TableSpec("E_word", n_words, word_dim),)
    return t + ((TableSpec("E_case", n_casing, casing_dim),) if casing_dim > 0 else ())


@dataclass(frozen=True)
class NetSpec:
    """Architecture and regularisation of a :class:`WindowNet`.

    tables:        the token features' tables, in window-position order (see TableSpec,
                   CharSpec); the first is the word table.
    window:        m; each token sees 2m+1 positions.
    hidden:        sizes H_1..H_k of the hidden layers; () = head reads x directly.
    nonlinearity:  "sigmoid" | "tanh" | "hardtanh" | "relu".
    head:          "softmax" | "logistic" | "crf" (nerwin.nn.output).
    n_out:         number of tags (softmax, crf: >= 2); 1 for logistic.
    init, init_scale: initialiser name (nerwin.nn.init.INITS) and its scale (uniform/normal).
    dropout:       inverted-dropout rate on each hidden activation, in [0, 1).
    word_dropout:  in training, each word id at each window position becomes <unk> with this
                   probability (pads are kept).
    l2, l1:        penalties (l2/2)||W||²_F and l1|W| on W_i and U/u (not biases, not
                   tables, not the char filters, not the transitions).
    tags:          tag names (IOB2), needed by constrained Viterbi decoding.
    decode:        softmax head: "argmax" or "viterbi".
    constrained:   forbid invalid IOB2 transitions (crf, and softmax's viterbi).
    """

    tables: tuple[Table, ...]
    window: int
    hidden: tuple[int, ...]
    nonlinearity: str
    head: str
    n_out: int
    init: str = "xavier_uniform"
    init_scale: float = 0.1
    dropout: float = 0.0
    l2: float = 0.0
    l1: float = 0.0
    word_dropout: float = 0.0
    tags: tuple[str, ...] = ()
    decode: str = "argmax"
    constrained: bool = True

    def __post_init__(self) -> None:
        # Accept lists from a config loader but store hashable tuples.
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        object.__setattr__(self, "tables", tuple(self.tables))
        object.__setattr__(self, "tags", tuple(self.tags))

        def bad(key: str, expected: str) -> NerwinError:
            return NerwinError(f"{key}: expected {expected}, got {getattr(self, key)!r}")

        if not self.tables:
            raise bad("tables", "at least one feature table")
        for t in self.tables:
            if t.n_rows < 1 or t.dim < 1:
                raise NerwinError(f"table {t.param}: expected n_rows >= 1 and dim >= 1, "
                                  f"got {t.n_rows} x {t.dim}")
            if isinstance(t, CharSpec) and (t.filters < 1 or t.width < 1 or t.width % 2 == 0
                                            or t.width > t.max_len):
                raise NerwinError(f"char encoder: expected filters >= 1 and an odd width in "
                                  f"[1, max_len {t.max_len}], got {t.filters}, {t.width}")
        names = [n for t in self.tables for n in t.param_shapes()]
        if len(set(names)) != len(names):
            raise bad("tables", "distinct parameter names")
        if self.window < 0:
            raise bad("window", "an integer >= 0")
        if any(h < 1 for h in self.hidden):
            raise bad("hidden", "layer sizes >= 1")
        if self.nonlinearity not in layers.NONLINEARITIES:
            raise bad("nonlinearity", f"one of {sorted(layers.NONLINEARITIES)}")
        if self.head not in HEADS:
            raise bad("head", f"one of {list(HEADS)}")
        if self.head == "logistic" and self.n_out != 1:
            raise bad("n_out", "1 for the logistic head")
        if self.head != "logistic" and self.n_out < 2:
            raise bad("n_out", f"at least 2 tags for the {self.head} head")
        if self.init not in initmod.INITS:
            raise bad("init", f"one of {sorted(initmod.INITS)}")
        if not self.init_scale > 0:
            raise bad("init_scale", "a number > 0")
        for key in ("dropout", "word_dropout"):
            if not 0.0 <= getattr(self, key) < 1.0:
                raise bad(key, "a rate in [0, 1)")
        for key in ("l2", "l1"):
            if not getattr(self, key) >= 0:
                raise bad(key, "a number >= 0")
        if self.decode not in output.DECODERS:
            raise bad("decode", f"one of {list(output.DECODERS)}")

    @property
    def n_positions(self) -> int:
        """2m+1, the number of window positions."""
        return 2 * self.window + 1

    @property
    def position_dim(self) -> int:
        """Floats per window position: Σ over the tables of their out_dim."""
        return sum(t.out_dim for t in self.tables)

    @property
    def input_dim(self) -> int:
        """D = (2m+1) · position_dim."""
        return self.n_positions * self.position_dim

    @property
    def head_weight(self) -> str:
        """Name of the scores layer's weight: "U" (softmax, crf) or "u" (logistic)."""
        return "u" if self.head == "logistic" else "U"

    @property
    def weight_names(self) -> tuple[str, ...]:
        """The regularised parameters: W1..Wk and U/u."""
        return tuple(f"W{i}" for i in range(1, len(self.hidden) + 1)) + (self.head_weight,)

    def make_head(self) -> output.Head:
        return output.make_head(self.head, self.n_out, self.tags, self.decode, self.constrained)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Parameter name -> shape, in the canonical order: the tables (E_word, E_case, …),
        W1, b1, …, U, c (or u, c), then the head's own (crf: trans, start, end)."""
        shapes: dict[str, tuple[int, ...]] = {}
        for t in self.tables:
            shapes.update(t.param_shapes())
        fan_in = self.input_dim
        for i, h in enumerate(self.hidden, start=1):
            shapes[f"W{i}"] = (h, fan_in)
            shapes[f"b{i}"] = (h,)
            fan_in = h
        if self.head == "logistic":
            shapes["u"] = (fan_in,)
            shapes["c"] = (1,)
        else:
            shapes["U"] = (self.n_out, fan_in)
            shapes["c"] = (self.n_out,)
        shapes.update(self.make_head().param_shapes())
        return shapes

    @property
    def table_params(self) -> tuple[str, ...]:
        """Every parameter that belongs to a token feature (tables and char filters)."""
        return tuple(n for t in self.tables for n in t.param_shapes())


def init_params(
    spec: NetSpec, rng: np.random.Generator, dtype: DTypeLike = np.float32,
    pretrained: np.ndarray | None = None, pretrained_mask: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Fresh parameters for ``spec``, drawn from ``rng`` in the order of spec.param_shapes().

    pretrained: (n_words, word_dim) word vectors for E_word; pretrained_mask: (n_words,)
    bool, True for rows taken from ``pretrained`` (kept exactly), the rest drawn from
    spec.init (see nerwin.nn.init for how embeddings are initialised). Biases, c and the
    crf head's scores are zero.
    """
    params: dict[str, np.ndarray] = {}
    head_params = set(spec.make_head().param_shapes())
    for name, shape in spec.param_shapes().items():
        if name == "E_word":
            params[name] = initmod.embedding(
                spec.init, rng, shape[0], shape[1], spec.init_scale, dtype,
                pretrained, pretrained_mask)
        elif name.startswith("E_"):
            params[name] = initmod.embedding(
                spec.init, rng, shape[0], shape[1], spec.init_scale, dtype)
        elif name in head_params:
            params[name] = initmod.zeros(shape, dtype)
        elif name.startswith("W") or name == "U":
            # W is (fan_out, fan_in).
            params[name] = initmod.weight(
                spec.init, rng, shape, shape[1], shape[0], spec.init_scale, dtype)
        elif name == "u":
            params[name] = initmod.weight(
                spec.init, rng, shape, shape[0], 1, spec.init_scale, dtype)
        else:  # b_i, c, b_char
            params[name] = initmod.zeros(shape, dtype)
    return params


Grads = dict[str, np.ndarray | RowGrad]
Inputs = Sequence[np.ndarray]


class WindowNet:
    """A window classifier over parameters held in a dict (updated in place by the optimiser).

    params:  name -> array, exactly the names and shapes of spec.param_shapes(), all one
             floating dtype; every computation runs in that dtype.
    frozen:  names that get no gradient entry; the backward work only they need is skipped.
    The dict itself is kept (not copied), so an optimiser may update arrays in place or
    replace them in the dict.

    Inputs of a batch of B windows: one array per table of spec.tables, in order: (B, 2m+1)
    ids for a lookup table; for the char encoder a chars.CharBatch (or a plain
    (B, 2m+1, L) array of character rows, turned into one).
    """

    def __init__(
        self, spec: NetSpec, params: dict[str, np.ndarray],
        frozen: frozenset[str] = frozenset(),
    ) -> None:
        expected = spec.param_shapes()
        if set(params) != set(expected):
            raise ValueError(f"parameters {sorted(params)} do not match the spec's "
                             f"{sorted(expected)}")
        dtypes = {params[k].dtype for k in params}
        if len(dtypes) != 1 or not np.issubdtype(next(iter(dtypes)), np.floating):
            raise ValueError(f"parameters must share one floating dtype, got {dtypes}")
        for name, shape in expected.items():
            if params[name].shape != shape:
                raise ValueError(f"parameter {name} has shape {params[name].shape}, "
                                 f"expected {shape}")
        frozen = frozenset(frozen)
        if not frozen <= set(params):
            raise ValueError(f"cannot freeze unknown parameters {sorted(frozen - set(params))}")
        self.spec = spec
        self.params = params
        self.frozen = frozen
        self.head = spec.make_head()

        # needs_below[i] (i = 1..k+1, k+1 being the head): is any parameter feeding layer i's
        # input trainable? If not, layer i need not send a gradient down (no dx), and the
        # backward pass stops there.
        k = len(spec.hidden)
        trainable = set(params) - frozen
        needs = [bool(set(spec.table_params) & trainable)]
        for i in range(1, k + 1):
            needs.append(needs[-1] or bool({f"W{i}", f"b{i}"} & trainable))
        self._needs_below = [False] + needs  # index i -> layer i (1-based)
        self._trainable = trainable

    @property
    def dtype(self) -> np.dtype:
        """The dtype of the parameters (and of every computation)."""
        return self.params["c"].dtype

    # ------------------------------------------------------------------ forward

    def _check_inputs(self, inputs: Inputs) -> list[np.ndarray]:
        spec = self.spec
        if isinstance(inputs, np.ndarray) or len(inputs) != len(spec.tables):
            raise ValueError(f"expected {len(spec.tables)} input arrays (one per table: "
                             f"{', '.join(t.param for t in spec.tables)})")
        arrays: list[Any] = []
        K = spec.n_positions
        B = np.shape(inputs[0])[0] if np.ndim(inputs[0]) else -1
        for t, a in zip(spec.tables, inputs, strict=True):
            if isinstance(t, CharSpec):
                if not isinstance(a, chars.CharBatch):
                    a = np.asarray(a)
                    if a.ndim != 3 or a.shape[:2] != (B, K):
                        raise ValueError(f"E_char ids must have shape ({B}, {K}, L), got "
                                         f"{a.shape}")
                    a = chars.CharBatch.from_windows(a)
                if a.index.shape != (B, K):
                    raise ValueError(f"char index must have shape {(B, K)}, got "
                                     f"{a.index.shape}")
            else:
                a = np.asarray(a)
                if a.shape != (B, K):
                    raise ValueError(f"{t.param} ids must have shape {(B, K)}, got {a.shape}")
            arrays.append(a)
        return arrays

    def forward(
        self, inputs: Inputs, train: bool = False, rng: np.random.Generator | None = None,
        proj: Projections | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Scores for a batch of windows.

        inputs: one id array per table (see the class docstring; pads supplied by the caller).
        train: apply dropout and word dropout (needs ``rng`` when either rate is > 0).
        proj: precomputed first-layer projections of these parameters (prediction only, see
        :meth:`projections`); the cache then cannot serve a backward pass.
        Returns out -- scores (B, n_out), or s (B,) for logistic -- and the cache.
        """
        spec, p = self.spec, self.params
        if proj is not None and train:
            raise ValueError("precomputed projections are for prediction only")
        arrays = self._check_inputs(inputs)
        B, K = arrays[0].shape[:2]
        if train and spec.word_dropout > 0 and spec.tables[0].param == "E_word":
            if rng is None:
                raise ValueError("word dropout in training mode needs an rng")
            w = arrays[0]
            drop = (rng.random(w.shape) < spec.word_dropout) & (w >= FIRST_WORD_ID)
            arrays[0] = np.where(drop, 0, w).astype(w.dtype)
        parts, table_caches = [], []
        skip = set(proj.precomputed) if proj is not None else set()
        for ti, (t, ids) in enumerate(zip(spec.tables, arrays, strict=True)):
            if ti in skip:
                continue
            if isinstance(t, CharSpec):
                # Each distinct word of the batch is encoded once, then read at every
                # window position that holds it.
                enc, c = chars.char_forward(p["E_char"], p["W_char"], p["b_char"],
                                            ids.chars, t.width)
                e = enc[ids.index]  # (B, K, filters)
                c = (c, ids.index, enc.shape[0])
            else:
                e, c = layers.embedding_forward(p[t.param], ids)  # (B, K, dim)
            parts.append(e)
            table_caches.append(c)
        # Per position [E_1[id_1] ⊕ E_2[id_2] ⊕ …], then positions t-m..t+m in order.
        x = ((np.concatenate(parts, axis=2) if len(parts) > 1 else parts[0]).reshape(B, -1)
             if parts else None)

        act_forward = getattr(layers, f"{spec.nonlinearity}_forward")
        h = x
        layer_caches = []
        for i in range(1, len(spec.hidden) + 1):
            if i == 1 and proj is not None:
                z, aff_cache = proj.first_layer(arrays, x), None
            else:
                z, aff_cache = layers.affine_forward(h, p[f"W{i}"], p[f"b{i}"])
            a, act_cache = act_forward(z)
            h, drop_cache = layers.dropout_forward(a, spec.dropout, rng, train)
            layer_caches.append((aff_cache, act_cache, drop_cache))

        if spec.head == "logistic":
            # u as a (1, H) matrix, so the head is the same affine layer with one output.
            z, head_cache = layers.affine_forward(h, p["u"][None, :], p["c"])
            out = z[:, 0]
        else:
            out, head_cache = layers.affine_forward(h, p["U"], p["c"])
        cache = {"tables": table_caches, "layers": layer_caches, "head": head_cache, "B": B}
        return out, cache

    def kink_pattern(self, inputs: Inputs) -> np.ndarray:
        """Which side of every kink the loss sits on at the current parameters (int, flat).

        relu has a kink at z = 0, hardtanh at z = ±1, the L1 term at W = 0, and the char
        encoder's max wherever its argmax switches. A central difference whose ±ε step
        moves some unit (or the perturbed weight, or an argmax) across a kink measures a
        mix of two slopes, not the derivative: the gradient checker compares this pattern
        at θ+ε and θ-ε with the one at θ and skips such entries. Empty for sigmoid and
        tanh without L1 or chars (no kinks).
        """
        parts: list[np.ndarray] = []
        spec = self.spec
        has_chars = any(isinstance(t, CharSpec) for t in spec.tables)
        if (spec.nonlinearity in ("relu", "hardtanh") and spec.hidden) or has_chars:
            _, cache = self.forward(inputs, train=False)
            for t, c in zip(spec.tables, cache["tables"], strict=True):
                if isinstance(t, CharSpec):
                    parts.append(c[0][3].reshape(-1).astype(np.int64))  # argmax positions
            if spec.nonlinearity in ("relu", "hardtanh"):
                for _aff, act_cache, _drop in cache["layers"]:
                    a = act_cache  # the activation output: its value tells the kink's side
                    if spec.nonlinearity == "relu":
                        parts.append((a > 0).reshape(-1).astype(np.int64))
                    else:
                        parts.append((np.sign(a) * (np.abs(a) >= 1)).reshape(-1)
                                     .astype(np.int64))
        if spec.l1:
            parts += [np.sign(self.params[n]).reshape(-1).astype(np.int64)
                      for n in spec.weight_names]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def table_ids(self, inputs: Inputs) -> dict[str, np.ndarray]:
        """Table parameter -> the row ids the batch looks up (for gradient-check sampling)."""
        out = {}
        for t, a in zip(self.spec.tables, self._check_inputs(inputs), strict=True):
            if isinstance(t, CharSpec):
                out["E_char"] = chars.char_windows(a.chars, t.width)
            else:
                out[t.param] = a
        return out

    def _reg_loss(self) -> float:
        """(l2/2) Σ ||W||²_F + l1 Σ |W| over W_i and U/u (not biases, not embeddings)."""
        l2, l1 = self.spec.l2, self.spec.l1
        total = 0.0
        if l2 or l1:
            for name in self.spec.weight_names:
                W = self.params[name].reshape(-1)
                if l2:
                    total += 0.5 * l2 * float(np.dot(W, W))
                if l1:
                    total += l1 * float(np.abs(W).sum())
        return total

    # ------------------------------------------------------------------ loss and gradients

    def loss_and_grads(
        self, inputs: Inputs, y: np.ndarray, lengths: np.ndarray | None = None,
        train: bool = True, rng: np.random.Generator | None = None,
    ) -> tuple[float, Grads]:
        """Loss (data loss + regulariser, a Python float) and its gradients.

        y: (B,) int tags (softmax, crf) or {0, 1} (logistic); lengths: (S,) sentence
        lengths when the head works on whole sentences (crf; Σ lengths = B). Gradients:
        lookup tables (and E_char) as a row-sparse RowGrad (only the rows in the batch),
        every other parameter as a dense array of its own shape and dtype. Frozen parameters
        get no entry (a frozen weight matrix still adds its constant penalty to the loss, so
        this loss equals :meth:`loss` in eval mode).
        """
        spec, p = self.spec, self.params
        out, cache = self.forward(inputs, train=train, rng=rng)
        data_loss, head_cache = self.head.loss(out, y, lengths, p)
        loss = data_loss + self._reg_loss()
        trainable = self._trainable
        needs_below = self._needs_below
        k = len(spec.hidden)
        grads: Grads = {}

        # Head. δ = dJ/dscores: (softmax - onehot)/B, (σ(s) - y)/B as a (B, 1) column, or the
        # crf's (marginals - onehot)/N; plus the gradients of the head's own parameters.
        delta, head_grads = self.head.backward(head_cache)
        grads.update({n: g for n, g in head_grads.items() if n in trainable})
        if spec.head == "logistic":
            delta = delta[:, None]
        hw = spec.head_weight
        dh, dW, db = self._affine_back(delta, cache["head"], needs_below[k + 1], hw in trainable)
        if dW is not None:
            grads[hw] = self._regularised(hw, dW.reshape(p[hw].shape))
        if "c" in trainable:
            grads["c"] = db

        # Hidden layers, top down; stop as soon as nothing at or below layer i is trainable.
        act_backward = getattr(layers, f"{spec.nonlinearity}_backward")
        for i in range(k, 0, -1):
            if not needs_below[i + 1]:
                break
            aff_cache, act_cache, drop_cache = cache["layers"][i - 1]
            da = layers.dropout_backward(dh, drop_cache)
            dz = act_backward(da, act_cache)  # δ_i = (dJ/dh_i ⊙ mask) ⊙ f'(z_i)
            w = f"W{i}"
            dh, dW, db = self._affine_back(dz, aff_cache, needs_below[i], w in trainable)
            if dW is not None:
                grads[w] = self._regularised(w, dW)
            if f"b{i}" in trainable:
                grads[f"b{i}"] = db

        # Tables: dx (B, D) -> (B, K, position_dim) -> one slice per table -> its rows.
        if needs_below[1]:
            B = cache["B"]
            dx = dh.reshape(B, spec.n_positions, spec.position_dim)
            off = 0
            for t, c in zip(spec.tables, cache["tables"], strict=True):
                d = dx[:, :, off: off + t.out_dim]
                off += t.out_dim
                if isinstance(t, CharSpec):
                    if {"E_char", "W_char", "b_char"} & trainable:
                        enc_cache, index, U = c
                        # Gradients add where paths branch: a word read at several window
                        # positions gets the sum of their δ.
                        summed = RowGrad.from_ids(index.reshape(-1), d.reshape(-1, t.filters))
                        denc = np.zeros((U, t.filters), dtype=d.dtype)
                        denc[summed.rows] = summed.values
                        dE, dWc, dbc = chars.char_backward(
                            denc, enc_cache, need_E="E_char" in trainable)
                        for name, g in (("E_char", dE), ("W_char", dWc), ("b_char", dbc)):
                            if name in trainable:
                                grads[name] = g
                elif t.param in trainable:
                    grads[t.param] = layers.embedding_backward(d, c)

        return loss, {name: grads[name] for name in p if name in grads}

    @staticmethod
    def _affine_back(
        dz: np.ndarray, cache: Any, need_dx: bool, need_dW: bool
    ) -> tuple[Any, Any, np.ndarray]:
        # Call with the plain two-argument form when nothing is skipped, so a test that
        # monkeypatches layers.affine_backward with a (dz, cache) function still works.
        if need_dx and need_dW:
            return layers.affine_backward(dz, cache)
        return layers.affine_backward(dz, cache, need_dx=need_dx, need_dW=need_dW)

    def _regularised(self, name: str, dW: np.ndarray) -> np.ndarray:
        """dW + l2 W + l1 sign(W) (d/dW of (l2/2)||W||² is l2 W; of l1|W| is l1 sign(W))."""
        W = self.params[name]
        # Python-float coefficients keep dW's dtype (NEP 50 weak scalars).
        if self.spec.l2:
            dW = dW + self.spec.l2 * W
        if self.spec.l1:
            dW = dW + self.spec.l1 * np.sign(W)
        return dW

    # ------------------------------------------------------------------ evaluation

    def loss(self, inputs: Inputs, y: np.ndarray, lengths: np.ndarray | None = None) -> float:
        """Eval-mode loss (no dropout), regulariser included, as a Python float."""
        out, _ = self.forward(inputs, train=False)
        data_loss, _ = self.head.loss(out, y, lengths, self.params)
        return data_loss + self._reg_loss()

    def projections(self, n_tokens: int) -> Projections | None:
        """Precomputed first-layer projections of the current parameters for predicting
        ``n_tokens`` tokens (nerwin.nn.project), or None when there is no hidden layer.
        Valid until the parameters change: build one per evaluation call."""
        if not self.spec.hidden:
            return None
        # Not kept on the network: up to project.MAX_BYTES that would stay allocated
        # between evaluations (and a stale copy could be read after a training step).
        return Projections(self, n_tokens)

    def predict_proba(self, inputs: Inputs, lengths: np.ndarray | None = None,
                      proj: Projections | None = None) -> np.ndarray:
        """Eval-mode per-token probabilities: (B, n_out) softmax rows or crf marginals
        (whole sentences: pass their ``lengths``), or (B,) σ(s) for logistic."""
        out, _ = self.forward(inputs, train=False, proj=proj)
        return self.head.proba(out, lengths, self.params)

    def predict(self, inputs: Inputs, lengths: np.ndarray | None = None,
                proj: Projections | None = None) -> np.ndarray:
        """(B,) int64 predictions decoded by the head (argmax, Viterbi, or 1[s > 0])."""
        out, _ = self.forward(inputs, train=False, proj=proj)
        return self.head.decode(out, lengths, self.params)

    def predict_and_proba(self, inputs: Inputs, lengths: np.ndarray | None = None,
                          proj: Projections | None = None) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`predict` and :meth:`predict_proba` from one forward pass (tagging with
        entity scores needs both)."""
        out, _ = self.forward(inputs, train=False, proj=proj)
        return (self.head.decode(out, lengths, self.params),
                self.head.proba(out, lengths, self.params))

    def loss_and_predict(self, inputs: Inputs, y: np.ndarray,
                         lengths: np.ndarray | None = None,
                         proj: Projections | None = None) -> tuple[float, np.ndarray]:
        """:meth:`loss` and :meth:`predict` from one forward pass (evaluation needs both)."""
        out, _ = self.forward(inputs, train=False, proj=proj)
        data_loss, _ = self.head.loss(out, y, lengths, self.params)
        return data_loss + self._reg_loss(), self.head.decode(out, lengths, self.params)
