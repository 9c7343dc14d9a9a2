"""The window classifier (Collobert & Weston 2011; CS224N lectures 3-4).

For token t with window size m the input is the concatenation, over positions t-m..t+m, of
[E_word[w] ⊕ E_case[c]] (the casing table is optional), so x has D = (2m+1)(d_word + d_case)
entries. Hidden layers h_i = dropout(f(W_i h_{i-1} + b_i)), then either

  - softmax head:  scores = U h + c, loss = mean cross-entropy, δ = softmax(scores) - onehot(y);
  - logistic head: s = u^T h + c,    loss = mean binary cross-entropy, δ = σ(s) - y.

Loss = mean data loss + (l2/2) Σ ||W||²_F + l1 Σ |W|, where the sums run over the weight
matrices W_1..W_k and U (or u) only: biases and embedding tables are not regularised.

Batched, the lecture's column-vector z = W h + b becomes Z = H W^T + b with one row per token,
and the backward pass is, layer by layer (δ_i = dJ/dZ_i, (B, H_i)):

  δ_head          = (P - Y) / B                          (both heads, see nerwin.nn.heads)
  dJ/dH_i         = δ_{i+1} W_{i+1}
  δ_i             = (dJ/dH_i ⊙ mask_i) ⊙ f'(Z_i)          (mask_i: scaled dropout mask)
  dJ/dW_i         = δ_i^T H_{i-1} + l2 W_i + l1 sign(W_i),   dJ/db_i = Σ_rows δ_i
  dJ/dx           = δ_1 W_1, split back into window positions and scattered into the
                    embedding rows (repeated ids summed) as a row-sparse RowGrad.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from nerwin.errors import NerwinError
from nerwin.nn import heads, layers
from nerwin.nn import init as initmod
from nerwin.nn.rowgrad import RowGrad

HEADS = ("softmax", "logistic")


@dataclass(frozen=True)
class NetSpec:
    """Architecture and regularisation of a :class:`WindowNet`.

    n_words, word_dim:    word embedding table E_word (n_words, word_dim).
    n_casing, casing_dim: casing table E_case (n_casing, casing_dim); casing_dim 0 = no casing.
    window:               m; each token sees 2m+1 positions.
    hidden:               sizes H_1..H_k of the hidden layers; () = head reads x directly.
    nonlinearity:         "sigmoid" | "tanh" | "hardtanh" | "relu".
    head:                 "softmax" | "logistic".
    n_out:                number of tags (softmax, >= 2); 1 for logistic.
    init, init_scale:     initialiser name (nerwin.nn.init.INITS) and its scale (uniform/normal).
    dropout:              inverted-dropout rate on each hidden activation, in [0, 1).
    l2, l1:               penalties (l2/2)||W||²_F and l1|W| on W_i and U/u (not biases or
                          embeddings).
    """

    n_words: int
    word_dim: int
    n_casing: int
    casing_dim: int
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

    def __post_init__(self) -> None:
        # Accept a list from a config loader but store the hashable tuple.
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))

        def bad(key: str, expected: str) -> NerwinError:
            return NerwinError(f"{key}: expected {expected}, got {getattr(self, key)!r}")

        for key in ("n_words", "word_dim"):
            if getattr(self, key) < 1:
                raise bad(key, "an integer >= 1")
        for key in ("n_casing", "casing_dim", "window"):
            if getattr(self, key) < 0:
                raise bad(key, "an integer >= 0")
        if self.casing_dim > 0 and self.n_casing < 1:
            raise bad("n_casing", "an integer >= 1 when casing_dim > 0")
        if any(h < 1 for h in self.hidden):
            raise bad("hidden", "layer sizes >= 1")
        if self.nonlinearity not in layers.NONLINEARITIES:
            raise bad("nonlinearity", f"one of {sorted(layers.NONLINEARITIES)}")
        if self.head not in HEADS:
            raise bad("head", f"one of {list(HEADS)}")
        if self.head == "logistic" and self.n_out != 1:
            raise bad("n_out", "1 for the logistic head")
        if self.head == "softmax" and self.n_out < 2:
            raise bad("n_out", "at least 2 tags for the softmax head")
        if self.init not in initmod.INITS:
            raise bad("init", f"one of {sorted(initmod.INITS)}")
        if not self.init_scale > 0:
            raise bad("init_scale", "a number > 0")
        if not 0.0 <= self.dropout < 1.0:
            raise bad("dropout", "a rate in [0, 1)")
        for key in ("l2", "l1"):
            if not getattr(self, key) >= 0:
                raise bad(key, "a number >= 0")

    @property
    def n_positions(self) -> int:
        """2m+1, the number of window positions."""
        return 2 * self.window + 1

    @property
    def input_dim(self) -> int:
        """D = (2m+1)(word_dim + casing_dim)."""
        return self.n_positions * (self.word_dim + self.casing_dim)

    @property
    def head_weight(self) -> str:
        """Name of the head's weight: "U" (softmax) or "u" (logistic)."""
        return "U" if self.head == "softmax" else "u"

    @property
    def weight_names(self) -> tuple[str, ...]:
        """The regularised parameters: W1..Wk and U/u."""
        return tuple(f"W{i}" for i in range(1, len(self.hidden) + 1)) + (self.head_weight,)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Parameter name -> shape, in the canonical order (E_word, E_case, W1, b1, ..., U, c)."""
        shapes: dict[str, tuple[int, ...]] = {"E_word": (self.n_words, self.word_dim)}
        if self.casing_dim > 0:
            shapes["E_case"] = (self.n_casing, self.casing_dim)
        fan_in = self.input_dim
        for i, h in enumerate(self.hidden, start=1):
            shapes[f"W{i}"] = (h, fan_in)
            shapes[f"b{i}"] = (h,)
            fan_in = h
        if self.head == "softmax":
            shapes["U"] = (self.n_out, fan_in)
            shapes["c"] = (self.n_out,)
        else:
            shapes["u"] = (fan_in,)
            shapes["c"] = (1,)
        return shapes


def init_params(
    spec: NetSpec, rng: np.random.Generator, dtype: DTypeLike = np.float32,
    pretrained: np.ndarray | None = None, pretrained_mask: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Fresh parameters for ``spec``, drawn from ``rng`` in the order of spec.param_shapes().

    pretrained: (n_words, word_dim) word vectors; pretrained_mask: (n_words,) bool, True for
    rows taken from ``pretrained`` (kept exactly), the rest drawn from spec.init (see
    nerwin.nn.init for how embeddings are initialised). Biases and c are zero.
    """
    params: dict[str, np.ndarray] = {}
    for name, shape in spec.param_shapes().items():
        if name == "E_word":
            params[name] = initmod.embedding(
                spec.init, rng, shape[0], shape[1], spec.init_scale, dtype,
                pretrained, pretrained_mask)
        elif name == "E_case":
            params[name] = initmod.embedding(
                spec.init, rng, shape[0], shape[1], spec.init_scale, dtype)
        elif name.startswith("W") or name == "U":
            # W is (fan_out, fan_in).
            params[name] = initmod.weight(
                spec.init, rng, shape, shape[1], shape[0], spec.init_scale, dtype)
        elif name == "u":
            params[name] = initmod.weight(
                spec.init, rng, shape, shape[0], 1, spec.init_scale, dtype)
        else:  # b_i, c
            params[name] = initmod.zeros(shape, dtype)
    return params


Grads = dict[str, np.ndarray | RowGrad]


class WindowNet:
    """A window classifier over parameters held in a dict (updated in place by the optimiser).

    params:  name -> array, exactly the names and shapes of spec.param_shapes(), all one
             floating dtype; every computation runs in that dtype.
    frozen:  names that get no gradient entry; the backward work only they need is skipped.
    The dict itself is kept (not copied), so an optimiser may update arrays in place or
    replace them in the dict.
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

        # needs_below[i] (i = 1..k+1, k+1 being the head): is any parameter feeding layer i's
        # input trainable? If not, layer i need not send a gradient down (no dx), and the
        # backward pass stops there.
        k = len(spec.hidden)
        trainable = set(params) - frozen
        needs = [bool({"E_word", "E_case"} & trainable)]
        for i in range(1, k + 1):
            needs.append(needs[-1] or bool({f"W{i}", f"b{i}"} & trainable))
        self._needs_below = [False] + needs  # index i -> layer i (1-based)
        self._trainable = trainable

    @property
    def dtype(self) -> np.dtype:
        """The dtype of the parameters (and of every computation)."""
        return self.params["E_word"].dtype

    # ------------------------------------------------------------------ forward

    def forward(
        self, word_ids: np.ndarray, case_ids: np.ndarray | None,
        train: bool = False, rng: np.random.Generator | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Scores for a batch of windows.

        word_ids: (B, 2m+1) int ids (padding ids supplied by the caller);
        case_ids: (B, 2m+1) int casing ids (ignored, may be None, when casing_dim == 0).
        train: apply dropout (needs ``rng`` when spec.dropout > 0).
        Returns out -- scores (B, n_out) for softmax, s (B,) for logistic -- and the cache.
        """
        spec, p = self.spec, self.params
        word_ids = np.asarray(word_ids)
        K = spec.n_positions
        if word_ids.ndim != 2 or word_ids.shape[1] != K:
            raise ValueError(f"word_ids must have shape (B, {K}), got {word_ids.shape}")
        B = word_ids.shape[0]
        xw, word_cache = layers.embedding_forward(p["E_word"], word_ids)  # (B, K, d_word)
        case_cache = None
        if spec.casing_dim > 0:
            case_ids = np.asarray(case_ids) if case_ids is not None else None
            if case_ids is None or case_ids.shape != word_ids.shape:
                got = None if case_ids is None else case_ids.shape
                raise ValueError(f"case_ids must have shape {word_ids.shape}, got {got}")
            xc, case_cache = layers.embedding_forward(p["E_case"], case_ids)  # (B, K, d_case)
            # Per position [E_word[w] ⊕ E_case[c]], then positions t-m..t+m one after another.
            x = np.concatenate([xw, xc], axis=2).reshape(B, -1)
        else:
            x = xw.reshape(B, -1)

        act_forward = getattr(layers, f"{spec.nonlinearity}_forward")
        h = x
        layer_caches = []
        for i in range(1, len(spec.hidden) + 1):
            z, aff_cache = layers.affine_forward(h, p[f"W{i}"], p[f"b{i}"])
            a, act_cache = act_forward(z)
            h, drop_cache = layers.dropout_forward(a, spec.dropout, rng, train)
            layer_caches.append((aff_cache, act_cache, drop_cache))

        if spec.head == "softmax":
            out, head_cache = layers.affine_forward(h, p["U"], p["c"])
        else:
            # u as a (1, H) matrix, so the head is the same affine layer with one output.
            z, head_cache = layers.affine_forward(h, p["u"][None, :], p["c"])
            out = z[:, 0]
        cache = {"word": word_cache, "case": case_cache, "layers": layer_caches,
                 "head": head_cache, "B": B}
        return out, cache

    def kink_pattern(self, word_ids: np.ndarray, case_ids: np.ndarray | None) -> np.ndarray:
        """Which side of every kink the loss sits on at the current parameters (int8, flat).

        relu has a kink at z = 0, hardtanh at z = ±1, and the L1 term at W = 0. A central
        difference whose ±ε step moves some unit (or the perturbed weight) across a kink
        measures a mix of two slopes, not the derivative: the gradient checker compares
        this pattern at θ+ε and θ-ε with the one at θ and skips such entries. Empty for
        sigmoid and tanh without L1 (no kinks).
        """
        parts: list[np.ndarray] = []
        if self.spec.nonlinearity in ("relu", "hardtanh") and self.spec.hidden:
            _, cache = self.forward(word_ids, case_ids, train=False)
            for _aff, act_cache, _drop in cache["layers"]:
                a = act_cache  # the activation output: its value tells the side of the kink
                if self.spec.nonlinearity == "relu":
                    parts.append((a > 0).reshape(-1).astype(np.int8))
                else:
                    parts.append((np.sign(a) * (np.abs(a) >= 1)).reshape(-1).astype(np.int8))
        if self.spec.l1:
            parts += [np.sign(self.params[n]).reshape(-1).astype(np.int8)
                      for n in self.spec.weight_names]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int8)

    def _data_loss(self, out: np.ndarray, y: np.ndarray) -> tuple[float, Any]:
        if self.spec.head == "softmax":
            return heads.softmax_xent_forward(out, y)
        return heads.logistic_forward(out, y)

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
        self, word_ids: np.ndarray, case_ids: np.ndarray | None, y: np.ndarray,
        train: bool = True, rng: np.random.Generator | None = None,
    ) -> tuple[float, Grads]:
        """Loss (mean data loss + regulariser, a Python float) and its gradients.

        y: (B,) int tags (softmax) or {0, 1} (logistic). Gradients: E_word / E_case as a
        row-sparse RowGrad (only the rows in the batch), every other parameter as a dense
        array of its own shape and dtype. Frozen parameters get no entry (a frozen weight
        matrix still adds its constant penalty to the loss, so this loss equals :meth:`loss`
        in eval mode).
        """
        spec, p = self.spec, self.params
        out, cache = self.forward(word_ids, case_ids, train=train, rng=rng)
        data_loss, head_cache = self._data_loss(out, y)
        loss = data_loss + self._reg_loss()
        trainable = self._trainable
        needs_below = self._needs_below
        k = len(spec.hidden)
        grads: Grads = {}

        # Head. δ = dJ/dscores = (softmax - onehot)/B, or (σ(s) - y)/B as a (B, 1) column.
        if spec.head == "softmax":
            delta = heads.softmax_xent_backward(head_cache)
        else:
            delta = heads.logistic_backward(head_cache)[:, None]
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

        # Embeddings: dx (B, D) -> (B, K, d_word + d_case) -> per-table slices -> rows.
        if needs_below[1]:
            B = cache["B"]
            dx = dh.reshape(B, spec.n_positions, spec.word_dim + spec.casing_dim)
            if "E_word" in trainable:
                grads["E_word"] = layers.embedding_backward(
                    dx[:, :, : spec.word_dim], cache["word"])
            if "E_case" in trainable:
                grads["E_case"] = layers.embedding_backward(
                    dx[:, :, spec.word_dim:], cache["case"])

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

    def loss(self, word_ids: np.ndarray, case_ids: np.ndarray | None, y: np.ndarray) -> float:
        """Eval-mode loss (no dropout), regulariser included, as a Python float."""
        out, _ = self.forward(word_ids, case_ids, train=False)
        data_loss, _ = self._data_loss(out, y)
        return data_loss + self._reg_loss()

    def predict_proba(self, word_ids: np.ndarray, case_ids: np.ndarray | None) -> np.ndarray:
        """Eval-mode probabilities: (B, n_out) softmax rows, or (B,) σ(s) for logistic."""
        out, _ = self.forward(word_ids, case_ids, train=False)
        return heads.softmax(out) if self.spec.head == "softmax" else heads.sigmoid(out)

    def predict(self, word_ids: np.ndarray, case_ids: np.ndarray | None) -> np.ndarray:
        """(B,) int64 predictions: argmax tag, or 1[σ(s) > 0.5] (i.e. s > 0) for logistic."""
        out, _ = self.forward(word_ids, case_ids, train=False)
        return self._decide(out)

    def loss_and_predict(self, word_ids: np.ndarray, case_ids: np.ndarray | None,
                         y: np.ndarray) -> tuple[float, np.ndarray]:
        """:meth:`loss` and :meth:`predict` from one forward pass (evaluation needs both)."""
        out, _ = self.forward(word_ids, case_ids, train=False)
        data_loss, _ = self._data_loss(out, y)
        return data_loss + self._reg_loss(), self._decide(out)

    def _decide(self, out: np.ndarray) -> np.ndarray:
        if self.spec.head == "softmax":
            return out.argmax(axis=1).astype(np.int64)
        return (out > 0).astype(np.int64)
