"""The window classifier (Collobert & Weston 2011; CS224N lectures 3-4) as a chain of parts:

    tables (nerwin.nn.tables) → concatenation → blocks (nerwin.nn.blocks) → head (nerwin.nn.output)

For token t with window size m the input is the concatenation, over positions t-m..t+m, of
[T_1(t) ⊕ T_2(t) ⊕ …] over the token features' tables (E_f[id] for a lookup table, the
character encoder's output for chars), so x has D = (2m+1) Σ d_f entries. Hidden blocks
h_i = dropout(f(W_i h_{i-1} + b_i)); the head scores h (s = U h + c, or uᵀh + c) and turns
the scores into the loss and δ = dJ/dscores (softmax, logistic or a linear-chain crf).

Loss = mean data loss + (l2/2) Σ ||W||²_F + l1 Σ |W| over the parameters the parts declare
regularised (the hidden weights W_i and U or u): biases, tables, char filters and the crf's
transitions are not.

This module holds only the chain rule: forward runs the parts in order, backward in
reverse, each part's backward receiving δ = dJ/d(its output) and returning dJ/d(its
input) and its parameters' gradients:

  δ_scores  = head.backward(loss cache)                 (P - Y)/B, (σ(s) - y)/B, crf marginals
  dJ/dh_k   = head.scores_backward(δ_scores)            δ U
  dJ/dh_i-1 = blocks[i].backward(dJ/dh_i)               (dh ⊙ mask ⊙ f'(z)) W_i
  dJ/dx     → split per window position and per table → each table's backward (row-sparse)

Each part lists its parameters (nerwin.nn.parts.Param); names, shapes, initialisation,
regularisation and sparsity are read from those lists. What the parts are and their fresh
parameters: nerwin.nn.spec (NetSpec, init_params; re-exported here).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from nerwin.nn import layers
from nerwin.nn.project import Projections
from nerwin.nn.rowgrad import RowGrad
from nerwin.nn.spec import HEADS, CharSpec, NetSpec, TableSpec, init_params, word_tables
from nerwin.nn.tables import FIRST_WORD_ID

__all__ = ["FIRST_WORD_ID", "CharSpec", "Grads", "HEADS", "Inputs", "NetSpec", "TableSpec",
           "WindowNet", "init_params", "word_tables"]

Trace = list[tuple[str, np.ndarray]]


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
        self.tables = spec.tables
        self.blocks = spec.blocks()
        self.head = spec.make_head()
        self._trainable = trainable = set(params) - frozen
        self._regularised = spec.weight_names
        # need_dx[i]: is any parameter below block i (i = len(blocks): the head) trainable?
        # If not, that part need not send a gradient down, and the backward pass stops.
        below = bool(set(spec.table_params) & trainable)
        self._need_dx = []
        for b in self.blocks:
            self._need_dx.append(below)
            below = below or bool({p.name for p in b.params()} & trainable)
        self._need_dx.append(below)

    @property
    def dtype(self) -> np.dtype:
        """The dtype of the parameters (and of every computation)."""
        return self.params["c"].dtype

    def needs_whole_sentences(self, training: bool = True) -> bool:
        """Must a batch be whole sentences (and carry their lengths)? See NetSpec."""
        return self.spec.needs_whole_sentences(training)

    # ------------------------------------------------------------------ forward

    def _check_inputs(self, inputs: Inputs) -> list[Any]:
        spec = self.spec
        if isinstance(inputs, np.ndarray) or len(inputs) != len(spec.tables):
            raise ValueError(f"expected {len(spec.tables)} input arrays (one per table: "
                             f"{', '.join(t.param for t in spec.tables)})")
        K = spec.n_positions
        B = np.shape(inputs[0])[0] if np.ndim(inputs[0]) else -1
        return [t.check_input(a, B, K) for t, a in zip(spec.tables, inputs, strict=True)]

    def forward(
        self, inputs: Inputs, train: bool = False, rng: np.random.Generator | None = None,
        proj: Projections | None = None, trace: Trace | None = None,
        lengths: np.ndarray | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Scores for a batch of windows.

        inputs: one id array per table (see the class docstring; pads supplied by the caller).
        train: apply dropout and word dropout (needs ``rng`` when either rate is > 0).
        proj: precomputed first-layer projections of these parameters (prediction only, see
        :meth:`projections`); the cache then cannot serve a backward pass.
        trace: a list that receives (node name, output) of every node, in order.
        lengths: the batch's sentence lengths when it is whole sentences (a block that
        works within sentences reads them).
        Returns out -- scores (B, n_out), or s (B,) for logistic -- and the cache.
        """
        p = self.params
        if proj is not None and train:
            raise ValueError("precomputed projections are for prediction only")
        arrays = self._check_inputs(inputs)
        B, K = arrays[0].shape[:2]
        if train:
            arrays = [t.word_dropout(a, self.spec.word_dropout, rng)
                      for t, a in zip(self.tables, arrays, strict=True)]
        parts, table_caches = [], []
        skip = set(proj.precomputed) if proj is not None else set()
        for ti, (t, ids) in enumerate(zip(self.tables, arrays, strict=True)):
            if ti in skip:
                continue
            e, c = t.forward(p, ids)  # (B, K, out_dim)
            if trace is not None:
                trace.append((t.nodes(B, K)[-1].name, e))
            parts.append(e)
            table_caches.append(c)
        # Per position [T_1 ⊕ T_2 ⊕ …], then positions t-m..t+m in order.
        x = ((np.concatenate(parts, axis=2) if len(parts) > 1 else parts[0]).reshape(B, -1)
             if parts else None)
        if trace is not None and x is not None:
            trace.append(("concat", x))
        # Input dropout (Strubell et al. 2017) on the whole window vector, training only; in
        # prediction x may not exist (precomputed projections) and needs none.
        in_mask = None
        if train and self.spec.input_dropout > 0:
            x, in_mask = layers.dropout_forward(x, self.spec.input_dropout, rng, True)
            if trace is not None:
                trace.append(("input_dropout", x))
        h, block_caches = x, []
        for i, b in enumerate(self.blocks):
            z = proj.first_layer(arrays, x) if i == 0 and proj is not None else None
            h, c = b.forward(p, h, train, rng, z, trace, lengths)
            block_caches.append(c)
        out, head_cache = self.head.scores_forward(h, p)
        if trace is not None:
            trace.append(("scores", out))
        cache = {"tables": table_caches, "blocks": block_caches, "head": head_cache, "B": B,
                 "input_mask": in_mask}
        return out, cache

    def kink_pattern(self, inputs: Inputs, lengths: np.ndarray | None = None) -> np.ndarray:
        """Which side of every kink the loss sits on at the current parameters (int, flat).

        The parts report their kinks (relu at z = 0, hardtanh at z = ±1, the char
        encoder's max wherever its argmax switches), and the L1 term has one at W = 0. A
        central difference whose ±ε step moves some unit (or the perturbed weight, or an
        argmax) across a kink measures a mix of two slopes, not the derivative: the gradient
        checker compares this pattern at θ+ε and θ-ε with the one at θ and skips such
        entries. Empty without kinks.
        """
        _, cache = self.forward(inputs, train=False, lengths=lengths)
        parts = [k for t, c in zip(self.tables, cache["tables"], strict=True)
                 for k in t.kinks(c)]
        parts += [k for b, c in zip(self.blocks, cache["blocks"], strict=True)
                  for k in b.kinks(c)]
        if self.spec.l1:
            parts += [np.sign(self.params[n]).reshape(-1).astype(np.int64)
                      for n in self._regularised]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def table_ids(self, inputs: Inputs) -> dict[str, np.ndarray]:
        """Table parameter -> the row ids the batch looks up (for gradient-check sampling)."""
        out: dict[str, np.ndarray] = {}
        for t, a in zip(self.tables, self._check_inputs(inputs), strict=True):
            out.update(t.row_ids(a))
        return out

    def _reg_loss(self) -> float:
        """(l2/2) Σ ||W||²_F + l1 Σ |W| over the regularised parameters."""
        l2, l1 = self.spec.l2, self.spec.l1
        total = 0.0
        if l2 or l1:
            for name in self._regularised:
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
        trace: Trace | None = None, deltas: Trace | None = None,
    ) -> tuple[float, Grads]:
        """Loss (data loss + regulariser, a Python float) and its gradients.

        y: (B,) the head's targets; lengths: (S,) sentence lengths when the head works on
        whole sentences (crf; Σ lengths = B). Gradients: lookup tables (and E_char) as a
        row-sparse RowGrad (only the rows in the batch), every other parameter as a dense
        array of its own shape and dtype. Frozen parameters get no entry (a frozen weight
        matrix still adds its constant penalty to the loss, so this loss equals
        :meth:`loss` in eval mode). ``trace``/``deltas`` receive (node, output) and
        (node, δ = dJ/d output) of every node the pass runs (``nerwin graph --gradients``).
        """
        p = self.params
        out, cache = self.forward(inputs, train=train, rng=rng, trace=trace, lengths=lengths)
        data_loss, loss_cache = self.head.loss(out, y, lengths, p)
        loss = data_loss + self._reg_loss()
        trainable = self._trainable
        grads: Grads = {}

        # Head: δ = dJ/dscores and the gradients of its own parameters, then its scores.
        delta, head_grads = self.head.backward(loss_cache)
        grads.update({n: g for n, g in head_grads.items() if n in trainable})
        if deltas is not None:
            deltas.append(("scores", delta))
        dh, g = self.head.scores_backward(delta, cache["head"], self._need_dx[-1], trainable, p)
        grads.update(g)

        # Blocks, top down; stop as soon as nothing at or below block i is trainable.
        for i in range(len(self.blocks) - 1, -1, -1):
            if not self._need_dx[i + 1]:
                break
            dh, g = self.blocks[i].backward(p, dh, cache["blocks"][i], self._need_dx[i],
                                            trainable, deltas)
            grads.update(g)

        # Tables: dx (B, D) -> (B, K, position_dim) -> one slice per table -> its rows.
        if self._need_dx[0]:
            if cache["input_mask"] is not None:
                if deltas is not None:
                    deltas.append(("input_dropout", dh))
                dh = layers.dropout_backward(dh, cache["input_mask"])
            if deltas is not None:
                deltas.append(("concat", dh))
            B, K = cache["B"], self.spec.n_positions
            dx = dh.reshape(B, K, self.spec.position_dim)
            off = 0
            for t, c in zip(self.tables, cache["tables"], strict=True):
                d = dx[:, :, off: off + t.out_dim]
                off += t.out_dim
                if deltas is not None:
                    deltas.append((t.nodes(B, K)[-1].name, d))
                grads.update(t.backward(p, d, c, trainable))

        for name in self._regularised:
            if name in grads:
                grads[name] = self._regularised_grad(name, grads[name])  # type: ignore[arg-type]
        return loss, {name: grads[name] for name in p if name in grads}

    def _regularised_grad(self, name: str, dW: np.ndarray) -> np.ndarray:
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
        out, _ = self.forward(inputs, train=False, lengths=lengths)
        data_loss, _ = self.head.loss(out, y, lengths, self.params)
        return data_loss + self._reg_loss()

    def projections(self, n_tokens: int, out: np.ndarray | None = None
                    ) -> Projections | None:
        """Precomputed first-layer projections of the current parameters for predicting
        ``n_tokens`` tokens (nerwin.nn.project), or None when the first block is not an
        affine map of the window (or there is none). Valid until the parameters change:
        build one per evaluation call. ``out``: a flat buffer to reuse for them if large
        enough (a previous one's ``buffer``, no longer in use)."""
        if not self.blocks or not self.blocks[0].projectable:
            return None
        b = self.blocks[0]
        # Not kept on the network: up to project.MAX_BYTES that would stay allocated
        # between evaluations (and a stale copy could be read after a training step).
        return Projections(self.tables, self.spec.n_positions, self.params[b.W],
                           self.params[b.b], self.params, n_tokens, out=out)

    def predict_proba(self, inputs: Inputs, lengths: np.ndarray | None = None,
                      proj: Projections | None = None) -> np.ndarray:
        """Eval-mode per-token probabilities: (B, n_out) softmax rows or crf marginals
        (whole sentences: pass their ``lengths``), or (B,) σ(s) for logistic."""
        out, _ = self.forward(inputs, train=False, proj=proj, lengths=lengths)
        return self.head.proba(out, lengths, self.params)

    def predict(self, inputs: Inputs, lengths: np.ndarray | None = None,
                proj: Projections | None = None) -> np.ndarray:
        """(B,) int64 predictions decoded by the head (argmax, Viterbi, or 1[s > 0])."""
        out, _ = self.forward(inputs, train=False, proj=proj, lengths=lengths)
        return self.head.decode(out, lengths, self.params)

    def predict_and_proba(self, inputs: Inputs, lengths: np.ndarray | None = None,
                          proj: Projections | None = None) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`predict` and :meth:`predict_proba` from one forward pass."""
        out, _ = self.forward(inputs, train=False, proj=proj, lengths=lengths)
        return (self.head.decode(out, lengths, self.params),
                self.head.proba(out, lengths, self.params))

    def loss_and_predict(self, inputs: Inputs, y: np.ndarray,
                         lengths: np.ndarray | None = None,
                         proj: Projections | None = None) -> tuple[float, np.ndarray]:
        """:meth:`loss` and :meth:`predict` from one forward pass (evaluation needs both)."""
        out, _ = self.forward(inputs, train=False, proj=proj, lengths=lengths)
        data_loss, _ = self.head.loss(out, y, lengths, self.params)
        return data_loss + self._reg_loss(), self.head.decode(out, lengths, self.params)
