"""``nerwin graph``: the computation graph of a configured network (CS224N lecture 4).

The nodes are read from the same parts the network runs (nerwin.nn.network's chain:
tables → concatenation → blocks → head), so the picture cannot drift from the code: each
part describes its own nodes (``nodes()``: name, operation, output shape for a batch of B
tokens, parameters read, forward multiply-adds). With ``--gradients`` one forward and
backward pass runs on the first training batch of the run (drawn as ``nerwin train`` draws
it, at the initial parameters; dropout off, so the numbers are the loss's own gradient),
recording at each node the norm of its output and of the δ = dJ/d(output) arriving at it,
and per parameter the norm of its gradient: where δ shrinks from the loss down to the
tables, the gradient vanishes (compare a sigmoid network with a relu one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nerwin.config import Config
from nerwin.nn.network import WindowNet
from nerwin.nn.parts import Node, Param
from nerwin.nn.rowgrad import RowGrad
from nerwin.windows import batches, sentence_batches


@dataclass
class Graph:
    """The graph of ``net`` for a batch of ``B`` tokens (and, after a gradient pass, its
    norms: node -> |output|, node -> |δ|, parameter -> |dJ/dθ|, and the loss)."""

    net: WindowNet
    B: int
    nodes: list[Node]
    params: list[Param]
    out_norms: dict[str, float] = field(default_factory=dict)
    delta_norms: dict[str, float] = field(default_factory=dict)
    grad_norms: dict[str, float] = field(default_factory=dict)
    loss: float | None = None
    batch_text: str = ""
    table_groups: list[list[str]] = field(default_factory=list)  # each table's node names
    chain: list[str] = field(default_factory=list)  # concat, the blocks' nodes, the head's

    @property
    def madds(self) -> int:
        """Forward multiply-adds of the whole graph for the batch."""
        return sum(n.madds for n in self.nodes)


def graph_of(net: WindowNet, B: int) -> Graph:
    """Every node of the chain ``net`` runs, in topological order, for B tokens."""
    spec = net.spec
    K = spec.n_positions
    nodes = [Node("input", f"ids of the {K} window positions, one array per table",
                  (B, K))]
    groups = []
    for t in net.tables:
        groups.append(t.nodes(B, K))
        nodes += groups[-1]
    chain = [Node("concat", "x = ⊕ over positions of ⊕ over tables", (B, spec.input_dim))]
    if spec.input_dropout > 0:
        chain.append(Node("input_dropout", f"x ⊙ mask (rate {spec.input_dropout:g}, training "
                          f"only)", (B, spec.input_dim)))
    for b in net.blocks:
        chain += b.nodes(B)
    chain += net.head.nodes(B, spec.top_dim)
    return Graph(net, B, nodes + chain, spec.params(),
                 table_groups=[[n.name for n in grp] for grp in groups],
                 chain=[n.name for n in chain])


def _norm(a: Any) -> float:
    if isinstance(a, RowGrad):  # distinct rows: the norm of its values is the dense norm
        a = a.values
    return float(np.linalg.norm(np.asarray(a, dtype=np.float64)))


def gradient_pass(g: Graph, inputs: Any, y: np.ndarray, lengths: np.ndarray | None) -> Graph:
    """Run one eval-mode forward and backward pass of g.net on the batch; fill the norms."""
    outs: list[tuple[str, np.ndarray]] = []
    deltas: list[tuple[str, np.ndarray]] = []
    loss, grads = g.net.loss_and_grads(inputs, y, lengths, train=False, trace=outs,
                                       deltas=deltas)
    g.loss = loss
    g.out_norms = {name: _norm(a) for name, a in outs}
    g.out_norms["input"] = float("nan")  # ids, not floats
    g.delta_norms = {name: _norm(d) for name, d in deltas}
    g.out_norms["loss"], g.delta_norms["loss"] = abs(loss), 1.0  # dJ/dJ = 1
    g.grad_norms = {name: _norm(v) for name, v in grads.items()}
    return g


def training_batch(cfg: Config, n: int) -> tuple[Any, Any, np.ndarray, np.ndarray | None]:
    """(model, inputs, targets, sentence lengths or None): the first batch of n tokens that
    ``nerwin train`` would draw for this config, at its initial parameters."""
    from nerwin.dataset import build_lexicon, read_split, read_train
    from nerwin.model import new_model

    train = read_train(cfg)
    others = [read_split(cfg, p) for p in (cfg.data.dev, cfg.data.test) if p]
    rng = np.random.default_rng(cfg.training.seed)
    lex = build_lexicon(cfg, train, others)
    model = new_model(cfg, lex, rng)
    data = model.encode(train)
    y = model.targets(data.labels)
    if model.net.needs_whole_sentences():
        idx, lens = next(sentence_batches(data.lengths, n, rng))
        return model, data.rows(idx), y[idx], lens
    idx = next(batches(len(data), n, rng))
    return model, data.rows(idx), y[idx], None


def _shape(s: tuple[int, ...]) -> str:
    return "(" + ", ".join(f"{d}" for d in s) + ")" if s else "scalar"


def _num(x: float | None) -> str:
    return "" if x is None or x != x else f"{x:.3g}"


def format_text(g: Graph, title: str) -> str:
    """One line per node (topological order), then the parameters, then the totals."""
    net = g.net
    grads = bool(g.delta_norms)
    head = ["node", "operation", "output", "params", "multiply-adds"]
    if grads:
        head += ["|out|", "|δ|"]
    rows = [head]
    for n in g.nodes:
        r = [n.name, n.op, _shape(n.shape), ", ".join(n.params), f"{n.madds:,}" if n.madds
             else ""]
        if grads:
            r += [_num(g.out_norms.get(n.name)), _num(g.delta_norms.get(n.name))]
        rows.append(r)
    lines = [title, ""] + _table(rows, right=(4, 5, 6))
    lines.append(f"total forward multiply-adds: {g.madds:,} for B = {g.B} tokens "
                 f"({g.madds / max(g.B, 1):,.0f} per token); a training step adds about twice "
                 f"that in the backward products (dW and dx of each product)")
    lines.append("")
    prow = [["parameter", "shape", "count", "kind", "regularised", "trained"]
            + (["|grad|"] if grads else [])]
    for p in g.params:
        r = [p.name, _shape(p.shape), f"{p.size:,}", p.kind + (" (row-sparse grad)"
                                                                if p.row_sparse else ""),
             "yes" if p.regularised else "no", "no (frozen)" if p.name in net.frozen
             else "yes"]
        if grads:
            r.append(_num(g.grad_norms.get(p.name)))
        prow.append(r)
    lines += _table(prow, right=(2, 6))
    total = sum(p.size for p in g.params)
    reg = sum(p.size for p in g.params if p.regularised)
    lines.append(f"total parameters: {total:,} ({reg:,} regularised)")
    if g.loss is not None:
        lines.append(f"loss J = {g.loss:.6g} on {g.batch_text}; |δ| at a node = "
                     f"‖dJ/d(its output)‖, dropout off")
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _table(rows: list[list[str]], right: tuple[int, ...]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = ["  ".join(c.rjust(w) if i in right else c.ljust(w)
                     for i, (c, w) in enumerate(zip(r, widths, strict=True))) for r in rows]
    out.insert(1, "  ".join("-" * w for w in widths))
    return out


def format_dot(g: Graph, title: str) -> str:
    """Graphviz DOT: the nodes as boxes (each table's nodes fed by the input and feeding the
    concatenation, then the chain), parameters as ellipses pointing at the nodes that read
    them. ``dot -Tpng graph.dot -o graph.png`` draws it."""
    def q(s: str) -> str:
        return '"' + s.replace('"', "'") + '"'

    lines = ["digraph nerwin {", f"  label={q(title)};", "  labelloc=t;",
             "  node [shape=box, fontname=Helvetica];"]
    for n in g.nodes:
        label = [n.name, n.op, _shape(n.shape)]
        if n.madds:
            label.append(f"{n.madds:,} multiply-adds")
        if n.name in g.delta_norms:
            label.append(f"|out| {_num(g.out_norms.get(n.name))}  "
                         f"|δ| {_num(g.delta_norms[n.name])}")
        newline = "\\n"  # DOT's line break inside a label
        lines.append(f"  {q(n.name)} [label={q(newline.join(label))}];")
    for group in g.table_groups:
        chain = ["input", *group, "concat"]
        lines += [f"  {q(a)} -> {q(b)};" for a, b in zip(chain[:-1], chain[1:], strict=True)]
    lines += [f"  {q(a)} -> {q(b)};" for a, b in zip(g.chain[:-1], g.chain[1:], strict=True)]
    for n in g.nodes:
        for p in n.params:
            lines.append(f"  {q('param ' + p)} [shape=ellipse, label={q(p)}];")
            lines.append(f"  {q('param ' + p)} -> {q(n.name)} [style=dashed];")
    lines.append("}")
    return "\n".join(lines) + "\n"
