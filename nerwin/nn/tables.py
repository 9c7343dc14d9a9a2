"""Feature tables: the first parts of the network's chain, one per token feature.

At each of the 2m+1 window positions a table turns its input for that position into
``out_dim`` floats; the network concatenates the tables' outputs per position, then the
positions in order, into the window's input x (see nerwin.nn.network). Each kind of table
owns its parameters (name, shape, kind), their initialisation, its forward/backward pair,
its kinks (for gradient checks), the row ids a batch reads, and two facts the rest of the
program asks: can the first layer's product with it be precomputed for tagging
(nerwin.nn.project), and which of its gradients are row-sparse.

  - :class:`LookupTable` ``E`` (n_rows, dim): out = E[id] (word, casing, affixes, shape);
    dJ/dE is row-sparse (only the rows the batch reads; repeated ids summed).
  - :class:`CharTable`: the character encoder of nerwin.nn.chars, E_char (n_rows, dim),
    W_char (filters, width·dim), b_char (filters,): out = max over the word's characters of
    W_char [E_char[c_{j-h}] ⊕ … ⊕ E_char[c_{j+h}]] + b_char. Its input is a
    chars.CharBatch; each distinct word of a batch is encoded once.

A token feature of nerwin.features builds its table (``Feature.table()``) and encodes a
corpus into that table's input (``Feature.encode``). Adding a table kind is one class here
and one feature class there, plus its config keys and docs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from nerwin.errors import NerwinError
from nerwin.nn import chars, layers
from nerwin.nn import init as initmod
from nerwin.nn.parts import Node, Param, init_param
from nerwin.nn.rowgrad import RowGrad

#: Ids at or above this in the word table are real words (0 <unk>, 1 <s>, 2 </s>): word
#: dropout replaces only those by <unk>.
FIRST_WORD_ID = 3
#: The word table's parameter: pretrained vectors fill it and word dropout reads its ids.
WORD_PARAM = "E_word"
#: Table parameters whose name is not E_<feature name> (kept so old checkpoints load).
_PARAM_OF = {"casing": "E_case", "chars": "E_char"}


def table_param(feature: str) -> str:
    """The parameter name of the table of the token feature called ``feature`` (E_word,
    E_case, E_suffix3, E_shape, E_char, …): the name checkpoints store it under."""
    return _PARAM_OF.get(feature, f"E_{feature}")


@dataclass(frozen=True)
class LookupTable:
    """One token feature's lookup table ``param`` (n_rows, dim): dim floats per position.

    dim_key: the config key that sets ``dim`` (for the memory estimate's advice)."""

    param: str
    n_rows: int
    dim: int
    dim_key: str = ""

    #: The first layer's product with this table can be precomputed per row (project.py).
    precomputable = True

    @property
    def out_dim(self) -> int:
        return self.dim

    @property
    def is_words(self) -> bool:
        """The word table: pretrained vectors and word dropout apply to it."""
        return self.param == WORD_PARAM

    def params(self) -> list[Param]:
        return [Param(self.param, (self.n_rows, self.dim), "embedding")]

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {p.name: p.shape for p in self.params()}

    def validate(self) -> None:
        if self.n_rows < 1 or self.dim < 1:
            raise NerwinError(f"table {self.param}: expected n_rows >= 1 and dim >= 1, "
                              f"got {self.n_rows} x {self.dim}")

    def init(self, init: str, rng: np.random.Generator, scale: float, dtype: DTypeLike,
             pretrained: np.ndarray | None = None, pretrained_mask: np.ndarray | None = None
             ) -> dict[str, np.ndarray]:
        """Fresh rows; the word table keeps the ``pretrained`` rows (nerwin.nn.init)."""
        if self.is_words:
            return {self.param: initmod.embedding(init, rng, self.n_rows, self.dim, scale,
                                                  dtype, pretrained, pretrained_mask)}
        return {self.param: initmod.embedding(init, rng, self.n_rows, self.dim, scale, dtype)}

    def check_input(self, a: Any, B: int, K: int) -> np.ndarray:
        a = np.asarray(a)
        if a.shape != (B, K):
            raise ValueError(f"{self.param} ids must have shape {(B, K)}, got {a.shape}")
        return a

    def word_dropout(self, ids: np.ndarray, rate: float, rng: np.random.Generator | None
                     ) -> np.ndarray:
        """In training, each real word id becomes <unk> (0) with probability ``rate``."""
        if not self.is_words or rate <= 0:
            return ids
        if rng is None:
            raise ValueError("word dropout in training mode needs an rng")
        drop = (rng.random(ids.shape) < rate) & (ids >= FIRST_WORD_ID)
        return np.where(drop, 0, ids).astype(ids.dtype)

    def forward(self, p: dict[str, np.ndarray], ids: np.ndarray) -> tuple[np.ndarray, Any]:
        """(B, K, dim) rows of the (B, K) ids."""
        return layers.embedding_forward(p[self.param], ids)

    def backward(self, p: dict[str, np.ndarray], d: np.ndarray, cache: Any,
                 trainable: set[str] | frozenset[str]) -> dict[str, Any]:
        """Row-sparse dJ/dE from d = dJ/dout (B, K, dim)."""
        if self.param not in trainable:
            return {}
        return {self.param: layers.embedding_backward(d, cache)}

    def kinks(self, cache: Any) -> list[np.ndarray]:
        return []  # a lookup is linear in its table

    def row_ids(self, a: Any) -> dict[str, np.ndarray]:
        """Parameter -> the rows the batch reads (for gradient-check sampling)."""
        return {self.param: a}

    def nodes(self, B: int, K: int) -> list[Node]:
        return [Node(f"lookup.{self.param}", f"{self.param}[ids]", (B, K, self.dim),
                     (self.param,))]

    # -- the same forward as ONNX operators (nerwin.onnx_export's builder ``g``)
    def to_onnx(self, g: Any, feature: str) -> str:
        """Input ``ids_<feature>`` (B, K) int64 → Gather of the table: (B, K, dim)."""
        ids = g.input(f"ids_{feature}", ["batch", g.K])
        return g.node("Gather", [g.param(self.param), ids], f"table_{feature}")

    def onnx_feed(self, feature: str, a: Any) -> dict[str, np.ndarray]:
        return {f"ids_{feature}": np.asarray(a, dtype=np.int64)}


@dataclass(frozen=True)
class CharTable:
    """The character encoder (nerwin.nn.chars): E_char (n_rows, dim), W_char
    (filters, width·dim), b_char (filters,); ``filters`` floats per position. Its input per
    window position is a row of ``max_len`` character ids (a chars.CharBatch per batch)."""

    n_rows: int
    dim: int
    filters: int
    width: int
    max_len: int
    param: str = "E_char"
    dim_key: str = ""

    precomputable = False  # its output depends on the batch's words, not on one row id
    is_words = False

    @property
    def out_dim(self) -> int:
        return self.filters

    def params(self) -> list[Param]:
        k = self.width * self.dim
        return [Param("E_char", (self.n_rows, self.dim), "embedding"),
                Param("W_char", (self.filters, k), "weight", fan=(k, self.filters)),
                Param("b_char", (self.filters,), "zero")]

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {p.name: p.shape for p in self.params()}

    def validate(self) -> None:
        if self.n_rows < 1 or self.dim < 1:
            raise NerwinError(f"table {self.param}: expected n_rows >= 1 and dim >= 1, "
                              f"got {self.n_rows} x {self.dim}")
        if (self.filters < 1 or self.width < 1 or self.width % 2 == 0
                or self.width > self.max_len):
            raise NerwinError(f"char encoder: expected filters >= 1 and an odd width in "
                              f"[1, max_len {self.max_len}], got {self.filters}, {self.width}")

    def init(self, init: str, rng: np.random.Generator, scale: float, dtype: DTypeLike,
             pretrained: np.ndarray | None = None, pretrained_mask: np.ndarray | None = None
             ) -> dict[str, np.ndarray]:
        return {p.name: init_param(p, init, rng, scale, dtype) for p in self.params()}

    def check_input(self, a: Any, B: int, K: int) -> chars.CharBatch:
        if not isinstance(a, chars.CharBatch):
            a = np.asarray(a)
            if a.ndim != 3 or a.shape[:2] != (B, K):
                raise ValueError(f"E_char ids must have shape ({B}, {K}, L), got {a.shape}")
            a = chars.CharBatch.from_windows(a)
        if a.index.shape != (B, K):
            raise ValueError(f"char index must have shape {(B, K)}, got {a.index.shape}")
        return a

    def word_dropout(self, ids: Any, rate: float, rng: np.random.Generator | None) -> Any:
        return ids

    def forward(self, p: dict[str, np.ndarray], ids: chars.CharBatch
                ) -> tuple[np.ndarray, Any]:
        """(B, K, filters): each distinct word of the batch is encoded once, then read at
        every window position that holds it."""
        enc, c = chars.char_forward(p["E_char"], p["W_char"], p["b_char"], ids.chars,
                                    self.width)
        return enc[ids.index], (c, ids.index, enc.shape[0])

    def backward(self, p: dict[str, np.ndarray], d: np.ndarray, cache: Any,
                 trainable: set[str] | frozenset[str]) -> dict[str, Any]:
        if not {"E_char", "W_char", "b_char"} & trainable:
            return {}
        enc_cache, index, U = cache
        # Gradients add where paths branch: a word read at several window positions gets
        # the sum of their δ.
        summed = RowGrad.from_ids(index.reshape(-1), d.reshape(-1, self.filters))
        denc = np.zeros((U, self.filters), dtype=d.dtype)
        denc[summed.rows] = summed.values
        dE, dWc, dbc = chars.char_backward(denc, enc_cache, need_E="E_char" in trainable)
        return {name: g for name, g in (("E_char", dE), ("W_char", dWc), ("b_char", dbc))
                if name in trainable}

    def kinks(self, cache: Any) -> list[np.ndarray]:
        """The max's argmax positions: a ±ε step that moves one crosses a kink."""
        return [cache[0][3].reshape(-1).astype(np.int64)]

    def row_ids(self, a: chars.CharBatch) -> dict[str, np.ndarray]:
        return {"E_char": chars.char_windows(a.chars, self.width)}

    def to_onnx(self, g: Any, feature: str) -> str:
        """Inputs ``chars`` (U, L) and ``char_index`` (B, K) → (B, K, filters): Pad, Gather,
        the width shifted slices concatenated, MatMul + Add, masked to each word's own
        positions, ReduceMax, then Gather at each window position (as char_forward)."""
        h = (self.width - 1) // 2
        chars_in = g.input("chars", ["words", "max_chars"])
        index = g.input("char_index", ["batch", g.K])
        padded = g.node("Pad", [chars_in, g.const("char_pads", [0, h, 0, h])], "chars_padded")
        emb = g.node("Gather", [g.param("E_char"), padded], "char_emb")  # (U, L+2h, d)
        shifted = []
        for j in range(self.width):
            end = j - 2 * h if j < 2 * h else np.iinfo(np.int64).max
            shifted.append(g.node("Slice", [emb, g.const(f"char_s{j}", [j]),
                                            g.const(f"char_e{j}", [end]),
                                            g.const(f"char_ax{j}", [1])], f"char_win{j}"))
        x = g.node("Concat", shifted, "char_x", axis=2)  # (U, L, width*d)
        Wt = g.arrays["W_char"].T.copy()
        g.use("W_char")
        z = g.node("MatMul", [x, g.param("W_char_T", Wt)], "char_xw")
        z = g.node("Add", [z, g.param("b_char")], "char_z")  # (U, L, F)
        valid = g.node("Not", [g.node("Equal", [chars_in, g.const("zero_id", 0)], "char_pad")],
                       "char_valid")
        valid = g.node("Unsqueeze", [valid, g.const("axis2", [2])], "char_valid3")
        ninf = g.const("neg_inf", -np.inf, g.dtype)
        masked = g.node("Where", [valid, z, ninf], "char_masked")
        enc = g.node("ReduceMax", [masked], "char_enc", axes=[1], keepdims=0)  # opset 17
        return g.node("Gather", [enc, index], "table_chars")  # (B, K, F)

    def onnx_feed(self, feature: str, a: chars.CharBatch) -> dict[str, np.ndarray]:
        return {"chars": np.asarray(a.chars, dtype=np.int64),
                "char_index": np.asarray(a.index, dtype=np.int64)}

    def nodes(self, B: int, K: int) -> list[Node]:
        # Per batch the encoder runs on its distinct words' characters; counted here as if
        # each of the B·K positions were a distinct word of max_len characters (an upper
        # bound: a batch repeats words, and most are shorter).
        k = self.width * self.dim
        n = B * K * self.max_len
        return [Node("chars.conv", f"z_j = W_char [E_char[c_j-h..c_j+h]] + b_char (≤ {n} "
                     f"char positions)", (n, self.filters), ("E_char", "W_char", "b_char"),
                     n * k * self.filters),
                Node("chars.max", "max over each word's characters", (B, K, self.filters))]


#: Every table kind (a type union for annotations).
Table = LookupTable | CharTable
