"""The network's parts own their code (issue 16): read from the source, so that a shortcut
around a part (a head name compared, a table kind type-checked, a parameter name built
from a rule) fails here rather than in the next feature that meets it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest

from nerwin.nn.blocks import Dense
from nerwin.nn.output import HEAD_CLASSES, Head
from nerwin.nn.spec import NetSpec, init_params
from nerwin.nn.tables import CharTable, LookupTable

PKG = Path(__file__).resolve().parents[1] / "nerwin"


def sources(*skip: str) -> dict[str, str]:
    return {str(p.relative_to(PKG)): p.read_text() for p in sorted(PKG.rglob("*.py"))
            if str(p.relative_to(PKG)) not in skip}


HEAD_NAME = re.compile(r"""(==|!=)\s*["'](softmax|logistic|crf)["']|"""
                       r"""["'](softmax|logistic|crf)["']\s*(==|!=)""")


def test_no_head_name_is_compared_outside_the_heads_module():
    hits = [f"{f}: {m.group(0)}" for f, s in sources("nn/output.py").items()
            for m in HEAD_NAME.finditer(s)]
    assert hits == []


def test_the_check_catches_a_comparison():
    assert HEAD_NAME.search('if cfg.model.head == "logistic":')
    assert HEAD_NAME.search("'crf' != name")
    assert not HEAD_NAME.search('head: str = field(default="softmax")')


TABLE_KINDS = ("CharSpec", "CharTable", "TableSpec", "LookupTable", "CharFeature",
               "WordFeature")


def test_no_table_kind_type_check_outside_the_tables_module():
    hits = []
    for f, s in sources("nn/tables.py").items():
        for node in ast.walk(ast.parse(s)):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id == "isinstance"):
                text = ast.unparse(node.args[1])
                if any(k in text for k in TABLE_KINDS):
                    hits.append(f"{f}: isinstance(…, {text})")
    assert hits == []


NAME_RULE = re.compile(r"""f["'][WbE]_?\{|startswith\(["'][WEbU]|["']E_["']\s*\+""")


def test_no_parameter_name_arithmetic_outside_the_owning_part():
    hits = [f"{f}: {m.group(0)}"
            for f, s in sources("nn/tables.py", "nn/blocks.py").items()
            for m in NAME_RULE.finditer(s)]
    assert hits == []
    assert NAME_RULE.search('f"W{i}"') and NAME_RULE.search('name.startswith("E_")')


def test_the_chain_fits_in_350_lines():
    assert len((PKG / "nn" / "network.py").read_text().splitlines()) <= 350


def test_no_import_circles():
    mods = {".".join(p.relative_to(PKG.parent).with_suffix("").parts).removesuffix(".__init__"): p
            for p in PKG.rglob("*.py")}
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        for node in ast.walk(ast.parse(p.read_text())):  # function-level imports too
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(
                    "nerwin"):
                for a in node.names:
                    full = f"{node.module}.{a.name}"
                    edges[m].add(full if full in mods else node.module)
    state: dict[str, int] = {}
    cycles: list[str] = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(edges.get(m, ())):
            if n not in mods:
                continue
            if state.get(n) == 1:
                cycles.append(" -> ".join(path[path.index(n):] + [n]))
            elif n not in state:
                visit(n, path + [n])
        state[m] = 2

    for m in sorted(mods):
        if m not in state:
            visit(m, [m])
    assert cycles == []


# ------------------------------------------------------------------ parts declare parameters

def spec(head: str = "softmax", hidden: tuple[int, ...] = (4, 3)) -> NetSpec:
    tables = (LookupTable("E_word", 9, 3), LookupTable("E_case", 6, 2),
              CharTable(7, 2, 3, 3, 5))
    n_out = 1 if head == "logistic" else 5
    tags = ("O", "B-LOC", "I-LOC", "B-PER", "I-PER")
    return NetSpec(tables=tables, window=1, hidden=hidden, nonlinearity="relu", head=head,
                   n_out=n_out, tags=tags, decode="viterbi" if head == "softmax" else "argmax")


@pytest.mark.parametrize("head,score,names", [
    ("softmax", "U", ("U", "c")),
    ("logistic", "u", ("u", "c")),
    ("crf", "U", ("U", "c", "trans", "start", "end")),
])
def test_parameters_are_the_parts_declarations_in_order(head, score, names):
    s = spec(head)
    assert [p.name for p in s.params()] == [
        "E_word", "E_case", "E_char", "W_char", "b_char", "W1", "b1", "W2", "b2", *names]
    assert s.weight_names == ("W1", "W2", score)  # the regularised ones
    assert [p.name for p in s.params() if p.row_sparse] == ["E_word", "E_case", "E_char"]
    params = init_params(s, np.random.default_rng(0))
    assert {k: v.shape for k, v in params.items()} == s.param_shapes()
    # zeros: the biases and the crf's scores; drawn: tables and weights
    for p in s.params():
        assert (not params[p.name].any()) == (p.kind == "zero"), p.name


def test_a_spec_gives_its_head_instance_and_dense_blocks():
    s = spec("crf", hidden=(4,))
    assert [type(b) for b in s.blocks()] == [Dense]
    assert s.blocks()[0].n_in == s.input_dim and s.top_dim == 4
    assert s.needs_whole_sentences() and s.needs_whole_sentences(training=False)
    soft = spec("softmax")
    assert not soft.needs_whole_sentences() and soft.needs_whole_sentences(training=False)


class _Model:
    """A stand-in ModelConfig: the keys the heads read and their defaults."""

    def __init__(self, **kw: object) -> None:
        self.head, self.positive, self.decode, self.constrained = "softmax", None, None, True
        self.scheme = "iob2"
        self.__dict__.update(kw)


DEFAULTS = {"positive": None, "decode": None, "constrained": True, "scheme": "iob2"}


@pytest.mark.parametrize("head,kw,key", [
    ("crf", {"positive": "LOC"}, "positive"),
    ("crf", {"decode": "argmax"}, "decode"),
    ("logistic", {"positive": "LOC", "decode": "viterbi"}, "decode"),
    ("logistic", {"positive": "LOC", "constrained": False}, "constrained"),
    ("logistic", {}, "positive"),
    ("softmax", {"positive": "LOC"}, "positive"),
])
def test_each_head_says_which_keys_it_reads(head, kw, key):
    problem = HEAD_CLASSES[head].config_problem(_Model(head=head, **kw), DEFAULTS)
    assert problem is not None and problem[0] == key


def test_heads_own_targets_gold_tags_and_labels():
    tags = ("O", "B-LOC", "I-LOC", "B-PER", "I-PER")
    log = Head.from_config(_Model(head="logistic", positive="PER"), tags)
    assert log.n_scores == 1 and log.labels == ["O", "I-PER"] and log.scheme == "io"
    assert log.targets(np.array([0, 1, 3, 4, 2])).tolist() == [0, 0, 1, 1, 0]
    assert log.gold_tags([["B-LOC", "B-PER", "I-PER"]]) == [["O", "B-PER", "I-PER"]]
    assert log.check_tags() is None
    assert Head.from_config(_Model(head="logistic", positive="ORG"), tags).check_tags()[0] \
        == "positive"
    soft = Head.from_config(_Model(), tags)
    assert soft.decoder == "viterbi" and soft.labels == list(tags)
    assert soft.targets(np.array([3])).tolist() == [3]


# ------------------------------------------------------------------ each part's backward is checked

def _net(head: str):
    from nerwin.nn.network import WindowNet

    tags = ("O", "B-LOC", "I-LOC", "B-PER", "I-PER")
    s = NetSpec(tables=(LookupTable("E_word", 9, 3), LookupTable("E_case", 6, 2),
                        CharTable(7, 2, 3, 3, 5)),
                window=1, hidden=(4,), nonlinearity="tanh", head=head,
                n_out=1 if head == "logistic" else 5, tags=tags, init_scale=0.5)
    rng = np.random.default_rng(0)
    params = init_params(s, rng, np.float64)
    for p in s.params():
        if p.kind == "zero":  # away from the symmetric start
            params[p.name][...] = rng.normal(scale=0.3, size=p.shape)
    B, K = 7, 3
    chars = rng.integers(1, 7, size=(B, K, 5))
    chars[..., 3:] = 0
    inputs = (rng.integers(0, 9, size=(B, K)), rng.integers(0, 6, size=(B, K)), chars)
    y = rng.integers(0, 2 if head == "logistic" else 5, size=B)
    lengths = None
    if head == "crf":  # valid IOB2 paths: O B-LOC I-LOC | B-PER I-PER O B-LOC
        y, lengths = np.array([0, 1, 2, 3, 4, 0, 1]), np.array([3, 4])
    return WindowNet(s, params), inputs, y, lengths


def _scaled(grads: dict, name: str) -> dict:
    from nerwin.nn.rowgrad import RowGrad

    g = grads[name]
    grads[name] = RowGrad(g.rows, g.values * 1.01) if isinstance(g, RowGrad) else g * 1.01
    return grads


@pytest.mark.parametrize("head,target,method,broken", [
    ("softmax", "nerwin.nn.blocks.Dense", "backward", "W1"),
    ("softmax", "nerwin.nn.blocks.Dense", "backward", "dx"),
    ("softmax", "nerwin.nn.tables.LookupTable", "backward", "E_case"),
    ("softmax", "nerwin.nn.tables.CharTable", "backward", "W_char"),
    ("softmax", "nerwin.nn.output.Head", "scores_backward", "U"),
    ("logistic", "nerwin.nn.output.LogisticHead", "scores_backward", "u"),
    ("crf", "nerwin.nn.output.CRFHead", "backward", "trans"),
])
def test_a_broken_part_backward_fails_gradcheck(monkeypatch, head, target, method, broken):
    """Scale one gradient a part returns by 1.01: the check must fail (and pass unbroken)."""
    import importlib

    from nerwin.gradcheck import check_gradients, passed

    net, inputs, y, lengths = _net(head)
    rows = check_gradients(net, inputs, y, lengths=lengths, rng=np.random.default_rng(0))
    assert passed(rows, 1e-6)
    mod_name, cls_name = target.rsplit(".", 1)
    cls = getattr(importlib.import_module(mod_name), cls_name)
    orig = getattr(cls, method)

    def wrong(self, *a, **kw):
        out = orig(self, *a, **kw)
        if broken == "dx":
            return out[0] * 1.01, out[1]
        grads = out[1] if isinstance(out, tuple) else out
        if broken in grads:
            _scaled(grads, broken)
        return out

    monkeypatch.setattr(cls, method, wrong)
    rows = check_gradients(net, inputs, y, lengths=lengths, rng=np.random.default_rng(0))
    failed = {r.name for r in rows if not r.ok(1e-6)}
    assert (failed >= {"E_word", "E_case"}) if broken == "dx" else (broken in failed), failed


# ------------------------------------------------------------------ old checkpoints

OLD = Path(__file__).resolve().parent / "data" / "checkpoint_6c38b0a"


def test_a_checkpoint_written_before_the_parts_loads_and_scores_the_same():
    """best/ of a small run (crf head, suffixes, char encoder) written by nerwin at 6c38b0a,
    before the network became a chain of parts; its dev scores then, by that code:
    F1 86.62983425414365, token accuracy 96.38180565127499, loss 0.08577811842856356."""
    from nerwin.conll import read_conll
    from nerwin.model import load_model

    model = load_model(OLD)
    assert set(model.net.params) == {
        "E_word", "E_case", "E_suffix2", "E_char", "W_char", "b_char", "W1", "b1", "U", "c",
        "trans", "start", "end"}
    dev = read_conll(PKG.parent / "data" / "sample" / "dev.txt", scheme="iob2")
    scores, _ = model.evaluate(dev)
    assert scores["f1"] == pytest.approx(86.62983425414365, abs=1e-9)
    assert scores["token_accuracy"] == pytest.approx(96.38180565127499, abs=1e-9)
    assert scores["loss"] == pytest.approx(0.08577811842856356, rel=1e-5)
