"""What a window network is made of: its parts and their sizes (:class:`NetSpec`), and
fresh parameters for them (:func:`init_params`). The chain that runs the parts is
nerwin.nn.network.

A NetSpec turns the configured sizes into parts: the feature tables (nerwin.nn.tables, one
per token feature), the hidden blocks (nerwin.nn.blocks: one Dense block per entry of
``hidden``) and the head (nerwin.nn.output). Each part declares its parameters
(nerwin.nn.parts.Param); the spec's parameter list is theirs, in order, which is also the
order parameters are drawn from the random stream (so a seed gives the same network as
before the parts existed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import DTypeLike

from nerwin.errors import NerwinError
from nerwin.nn import init as initmod
from nerwin.nn import output
from nerwin.nn.blocks import Block, Conv, dense_stack
from nerwin.nn.parts import Param, init_param
from nerwin.nn.tables import CharTable, LookupTable, Table, table_param

HEADS = output.HEADS
#: The names the tables had before nerwin.nn.tables (kept for callers and tests).
TableSpec = LookupTable
CharSpec = CharTable


def word_tables(n_words: int, word_dim: int, n_casing: int = 0, casing_dim: int = 0
                ) -> tuple[LookupTable, ...]:
    """The classic pair: E_word, and E_case when casing_dim > 0."""
    t = (LookupTable(table_param("word"), n_words, word_dim),)
    if casing_dim > 0:
        t += (LookupTable(table_param("casing"), n_casing, casing_dim),)
    return t


@dataclass(frozen=True)
class NetSpec:
    """Architecture and regularisation of a :class:`WindowNet`.

    tables:        the token features' tables, in window-position order (nerwin.nn.tables);
                   the first is the word table.
    window:        m; each token sees 2m+1 positions.
    hidden:        sizes H_1..H_k of the Dense blocks; () = head reads x directly.
    nonlinearity:  the blocks' f (nerwin.nn.layers.NONLINEARITIES).
    head:          a head name (nerwin.nn.output.HEADS) or a built output.Head.
    n_out:         number of tags (≥ 2; 1 for a one-score head); read from a built head.
    init, init_scale: initialiser name (nerwin.nn.init.INITS) and its scale (uniform/normal).
    dropout:       inverted-dropout rate on each hidden activation, in [0, 1).
    word_dropout:  in training, each word id at each window position becomes <unk> with this
                   probability (pads are kept).
    input_dropout: inverted-dropout rate on the window vector x (training only).
    conv:          convolution blocks after the Dense ones (nerwin.nn.blocks.Conv), each
                   (width, units, nonlinearity, dropout) with the full odd width 2w+1.
    l2, l1:        penalties on the parameters the parts declare regularised.
    tags, decode, constrained: the head's tag names, decoder and IOB2 constraints (for a
                   head given by name).
    """

    tables: tuple[Table, ...]
    window: int
    hidden: tuple[int, ...]
    nonlinearity: str
    head: str | output.Head
    n_out: int = 0
    init: str = "xavier_uniform"
    init_scale: float = 0.1
    dropout: float = 0.0
    l2: float = 0.0
    l1: float = 0.0
    word_dropout: float = 0.0
    tags: tuple[str, ...] = ()
    decode: str = "argmax"
    constrained: bool = True
    input_dropout: float = 0.0
    conv: tuple[tuple[int, int, str, float], ...] = ()

    def __post_init__(self) -> None:
        # Accept lists from a config loader but store hashable tuples.
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        object.__setattr__(self, "tables", tuple(self.tables))
        object.__setattr__(self, "tags", tuple(self.tags))
        object.__setattr__(self, "conv", tuple(
            (int(w), int(u), str(f), float(d)) for w, u, f, d in self.conv))

        def bad(key: str, expected: str) -> NerwinError:
            return NerwinError(f"{key}: expected {expected}, got {getattr(self, key)!r}")

        if not self.tables:
            raise bad("tables", "at least one feature table")
        for t in self.tables:
            t.validate()
        if self.window < 0:
            raise bad("window", "an integer >= 0")
        for width, *_ in self.conv:
            if width < 1 or width % 2 == 0:
                raise NerwinError(f"blocks: width: expected an odd number of tokens >= 1 "
                                  f"(the window is centred on each token), got {width}")
        for key in ("dropout", "word_dropout", "input_dropout"):
            if not 0.0 <= getattr(self, key) < 1.0:
                raise bad(key, "a rate in [0, 1)")
        for b in self.blocks():
            b.validate()
        if isinstance(self.head, output.Head):
            head = self.head
            object.__setattr__(self, "n_out", head.n_scores)
        else:
            if self.head not in HEADS:
                raise bad("head", f"one of {list(HEADS)}")
            if self.decode not in output.DECODERS:
                raise bad("decode", f"one of {list(output.DECODERS)}")
            head = output.make_head(self.head, self.n_out, self.tags, self.decode,
                                    self.constrained)
        head.check()
        object.__setattr__(self, "_head", head)
        if self.init not in initmod.INITS:
            raise bad("init", f"one of {sorted(initmod.INITS)}")
        if not self.init_scale > 0:
            raise bad("init_scale", "a number > 0")
        for key in ("l2", "l1"):
            if not getattr(self, key) >= 0:
                raise bad(key, "a number >= 0")
        names = [p.name for p in self.params()]
        if len(set(names)) != len(names):
            raise bad("tables", "distinct parameter names")

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

    def blocks(self) -> tuple[Block, ...]:
        """The hidden blocks, in order: the Dense ones of ``hidden``, then ``conv``."""
        dense = dense_stack(self.input_dim, self.hidden, self.nonlinearity, self.dropout)
        n_in = dense[-1].n_out if dense else self.input_dim
        out: list[Block] = list(dense)
        for width, units, f, rate in self.conv:
            out.append(Conv(len(out) + 1, n_in, units, f, rate, (width - 1) // 2))
            n_in = units
        return tuple(out)

    def make_head(self) -> output.Head:
        return self._head  # type: ignore[attr-defined, no-any-return]

    @property
    def top_dim(self) -> int:
        """Width of what the head reads: the last block's output, or x."""
        blocks = self.blocks()
        return blocks[-1].n_out if blocks else self.input_dim

    def params(self) -> list[Param]:
        """Every parameter, in the canonical (and random-draw) order: the tables' (E_word,
        E_case, …), the blocks' (W1, b1, …), the head's (U, c or u, c; crf: trans, start,
        end)."""
        out = [p for t in self.tables for p in t.params()]
        out += [p for b in self.blocks() for p in b.params()]
        return out + self.make_head().params(self.top_dim)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Parameter name -> shape, in the order of :meth:`params`."""
        return {p.name: p.shape for p in self.params()}

    @property
    def weight_names(self) -> tuple[str, ...]:
        """The regularised parameters (W1..Wk and U/u)."""
        return tuple(p.name for p in self.params() if p.regularised)

    @property
    def table_params(self) -> tuple[str, ...]:
        """Every parameter that belongs to a token feature (tables and char filters)."""
        return tuple(p.name for t in self.tables for p in t.params())

    def needs_whole_sentences(self, training: bool = True) -> bool:
        """Must a batch be whole sentences (with their lengths)? In training when the head's
        loss or a block works per sentence; in prediction also when the decoder does."""
        head = self.make_head()
        return (head.sentence_loss or (not training and head.per_sentence)
                or any(b.per_sentence for b in self.blocks()))


def init_params(
    spec: NetSpec, rng: np.random.Generator, dtype: DTypeLike = np.float32,
    pretrained: np.ndarray | None = None, pretrained_mask: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Fresh parameters for ``spec``, drawn from ``rng`` in the order of spec.params().

    pretrained: (n_words, word_dim) word vectors for the word table; pretrained_mask:
    (n_words,) bool, True for rows taken from ``pretrained`` (kept exactly), the rest drawn
    from spec.init (see nerwin.nn.init). Biases, c and the crf head's scores are zero.
    """
    params: dict[str, np.ndarray] = {}
    for t in spec.tables:
        params.update(t.init(spec.init, rng, spec.init_scale, dtype, pretrained,
                             pretrained_mask))
    rest = [p for b in spec.blocks() for p in b.params()]
    for p in rest + spec.make_head().params(spec.top_dim):
        params[p.name] = init_param(p, spec.init, rng, spec.init_scale, dtype)
    return params
