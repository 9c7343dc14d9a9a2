"""Hidden blocks beyond Dense: the convolution block over whole sentences (model.blocks) and
input dropout (model.input_dropout). Forward against a plain loop, gradient checks in float64
for every nonlinearity (one-token sentences, sentence ends), broken backwards that must fail,
prediction through precomputed projections, config errors, graph and resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import train_and_resume

from nerwin.cli import cli
from nerwin.config import ConfigError, dump_yaml, from_dict, load_config
from nerwin.gradcheck import check_gradients, numerical_gradient, passed, rel_error
from nerwin.nn import blocks, layers
from nerwin.nn.blocks import Conv, neighbour_index
from nerwin.nn.network import NetSpec, WindowNet, init_params, word_tables

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "configs" / "sample.yaml"
TOL = 1e-6
TAGS = ("O", "B-LOC", "I-LOC", "B-PER", "I-PER")


def naive_neighbours(lengths, w):
    """The rule, one token at a time: the row of t+o if inside t's sentence, else B."""
    B, out, start = int(sum(lengths)), [], 0
    for n in lengths:
        for pos in range(n):
            out.append([start + pos + o if 0 <= pos + o < n else B for o in range(-w, w + 1)])
        start += n
    return np.array(out, dtype=np.int64).reshape(B, 2 * w + 1)


@pytest.mark.parametrize("lengths,w", [
    ([1], 1), ([1, 1, 1], 1), ([4], 0), ([3, 1, 5], 1), ([2, 6], 2), ([1, 2], 3),
    ([7, 1, 1, 3], 2),
])
def test_neighbour_index_is_the_rule(lengths, w):
    got = neighbour_index(np.array(lengths), w)
    np.testing.assert_array_equal(got, naive_neighbours(lengths, w))


def test_conv_forward_is_a_loop_over_tokens():
    rng = np.random.default_rng(0)
    lengths = np.array([1, 4, 2])
    h = rng.normal(size=(7, 3))
    c = Conv(2, 3, 5, "tanh", 0.0, w=1)
    p = {"W2": rng.normal(size=(5, 9)), "b2": rng.normal(size=5)}
    out, _ = c.forward(p, h, False, None, lengths=lengths)
    ref, start = [], 0
    for n in lengths:
        for pos in range(n):
            nb = [h[start + pos + o] if 0 <= pos + o < n else np.zeros(3) for o in (-1, 0, 1)]
            ref.append(np.tanh(p["W2"] @ np.concatenate(nb) + p["b2"]))
        start += n
    np.testing.assert_allclose(out, np.array(ref), rtol=1e-12)
    with pytest.raises(ValueError, match="whole sentences"):
        c.forward(p, h, False, None)


def make_net(head="softmax", f="tanh", conv=((3, 4, "tanh", 0.0),), hidden=(5,),
             input_dropout=0.0, word_dropout=0.0):
    spec = NetSpec(tables=word_tables(20, 3, 4, 2), window=1, hidden=hidden,
                   nonlinearity="tanh", head=head, n_out=5, tags=TAGS, init_scale=0.5,
                   conv=tuple((w, u, f if g is None else g, d) for w, u, g, d in conv),
                   input_dropout=input_dropout, word_dropout=word_dropout)
    rng = np.random.default_rng(0)
    params = init_params(spec, rng, np.float64)
    for p in spec.params():
        if p.kind == "zero":  # away from the symmetric start (relu units on both sides)
            params[p.name][...] = rng.normal(scale=0.3, size=p.shape)
    return WindowNet(spec, params)


# One-token sentences, sentences shorter and longer than the width, and a batch of one.
LENGTHS = {"mixed": [1, 4, 2, 1, 3], "one_token": [1], "ends": [2, 5]}


def data(lengths, head="softmax"):
    rng = np.random.default_rng(1)
    B = sum(lengths)
    inputs = (rng.integers(0, 20, size=(B, 3)), rng.integers(0, 4, size=(B, 3)))
    if head == "crf":  # valid IOB2 paths: B-LOC then I-LOC, else O
        y = np.concatenate([[1] + [2] * (n - 1) for n in lengths])
    else:
        y = rng.integers(0, 5, size=B)
    return inputs, y, np.array(lengths)


@pytest.mark.parametrize("f", layers.NONLINEARITIES)
@pytest.mark.parametrize("case", sorted(LENGTHS))
@pytest.mark.parametrize("head", ["softmax", "crf"])
def test_conv_gradcheck_every_nonlinearity(f, case, head):
    """Two conv blocks (widths 3 and 5) of nonlinearity f over a Dense layer."""
    net = make_net(head, f, conv=((3, 4, None, 0.0), (5, 3, None, 0.0)))
    inputs, y, lengths = data(LENGTHS[case], head)
    rows = check_gradients(net, inputs, y, lengths=lengths, rng=np.random.default_rng(0))
    assert passed(rows, TOL), rows
    assert {r.name for r in rows} >= {"W2", "b2", "W3", "b3", "W1", "E_word"}


def test_conv_directly_over_the_window_vector():
    """model.hidden: [] puts the conv block on x itself (no projections then)."""
    net = make_net(hidden=(), conv=((3, 4, "relu", 0.0),))
    inputs, y, lengths = data(LENGTHS["mixed"])
    assert passed(check_gradients(net, inputs, y, lengths=lengths,
                                  rng=np.random.default_rng(0)), TOL)
    assert net.projections(10) is None


CONV_BACKWARD = Conv.backward  # the real one, before any monkeypatch


def _broken_masks(self, p, dout, cache, need_dx, trainable, trace=None):
    """Conv.backward without the sentence-boundary masks: δ flows to the neighbouring rows
    of the batch even across sentences (the forward is still right)."""
    aff, act, drop, idx = cache
    B = idx.shape[0]
    t = np.arange(B)[:, None] + np.arange(-self.w, self.w + 1)[None, :]
    unmasked = np.where((t >= 0) & (t < B), t, B)
    return CONV_BACKWARD(self, p, dout, (aff, act, drop, unmasked), need_dx,
                                     trainable, trace)


def _scale(part):
    orig = CONV_BACKWARD

    def wrong(self, *a, **kw):
        dh, grads = orig(self, *a, **kw)
        if part == "dx":
            return dh * 1.01, grads
        grads["W2"] = grads["W2"] * 1.01
        return dh, grads
    return wrong


@pytest.mark.parametrize("broken,expect", [
    ("dx", {"W1", "E_word"}), ("W2", {"W2"}), ("masks", {"W1", "E_word"}),
])
def test_a_broken_conv_backward_fails_gradcheck(monkeypatch, broken, expect):
    net = make_net(conv=((3, 4, "tanh", 0.0),))
    inputs, y, lengths = data(LENGTHS["mixed"])
    assert passed(check_gradients(net, inputs, y, lengths=lengths,
                                  rng=np.random.default_rng(0)), TOL)
    monkeypatch.setattr(Conv, "backward", _broken_masks if broken == "masks" else _scale(broken))
    rows = check_gradients(net, inputs, y, lengths=lengths, rng=np.random.default_rng(0))
    failed = {r.name for r in rows if not r.ok(TOL)}
    assert failed >= expect, failed


@pytest.mark.parametrize("what", ["input_dropout", "conv_dropout", "both"])
def test_dropout_gradients_with_a_fixed_mask(what):
    """In training the masks come from the rng: the same seed on every call fixes them, so
    the training loss is a function of the parameters to check against central differences."""
    net = make_net(conv=((3, 4, "tanh", 0.0 if what == "input_dropout" else 0.4),),
                   input_dropout=0.0 if what == "conv_dropout" else 0.3)
    inputs, y, lengths = data(LENGTHS["mixed"])

    def loss_grads():
        return net.loss_and_grads(inputs, y, lengths, train=True,
                                  rng=np.random.default_rng(5))

    loss, grads = loss_grads()
    assert loss != pytest.approx(net.loss(inputs, y, lengths))  # a mask did apply
    sample = np.random.default_rng(0)
    for name in ("W1", "b1", "W2", "E_word"):
        param = net.params[name]
        g = grads[name]
        dense = np.zeros(param.shape)
        if hasattr(g, "rows"):
            dense[g.rows] = g.values
        else:
            dense = g
        entries = sample.choice(param.size, size=min(40, param.size), replace=False)
        num = numerical_gradient(lambda: loss_grads()[0], param, 1e-5, entries)
        err = rel_error(dense.reshape(-1)[entries], num.reshape(-1)[entries])
        assert float(err.max()) < 1e-6, (name, float(err.max()))


def test_input_dropout_is_training_only_and_inverted():
    net = make_net(input_dropout=0.5)
    inputs, y, lengths = data(LENGTHS["mixed"])
    a, _ = net.forward(inputs, train=False, lengths=lengths)
    b, _ = net.forward(inputs, train=False, lengths=lengths, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    x = np.ones((20000, 4))
    out, mask = layers.dropout_forward(x, 0.5, np.random.default_rng(0), True)
    assert set(np.unique(out)) == {0.0, 2.0} and abs(out.mean() - 1) < 0.05


def test_prediction_through_projections_with_conv_blocks():
    """Dense first, conv after: tagging still precomputes the first layer per table row, and
    gives the scores of the plain forward pass."""
    net = make_net(conv=((3, 4, "relu", 0.0), (3, 3, "tanh", 0.0)))
    inputs, y, lengths = data(LENGTHS["mixed"])
    proj = net.projections(len(y))
    assert proj is not None
    a, _ = net.forward(inputs, lengths=lengths)
    b, _ = net.forward(inputs, lengths=lengths, proj=proj)
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    assert net.needs_whole_sentences() and net.needs_whole_sentences(training=False)


def test_blocks_and_params_from_the_spec():
    net = make_net(conv=((3, 4, "relu", 0.1), (5, 6, "tanh", 0.0)))
    kinds = [(type(b).__name__, b.index, b.n_in, b.n_out) for b in net.blocks]
    assert kinds == [("Dense", 1, 15, 5), ("Conv", 2, 5, 4), ("Conv", 3, 4, 6)]
    assert net.params["W2"].shape == (4, 15) and net.params["W3"].shape == (6, 20)
    assert net.spec.weight_names == ("W1", "W2", "W3", "U")
    assert blocks.Conv.per_sentence and not blocks.Conv.projectable


# ------------------------------------------------------------------ config


def cfg_dict(**model):
    return {"data": {"train": str(ROOT / "data" / "sample" / "train.txt")}, "model": model}


def test_config_blocks_round_trip(tmp_path):
    cfg = from_dict(cfg_dict(blocks=[{"width": 5, "units": 7}, {"nonlinearity": "tanh",
                                                                 "dropout": 0.2}],
                             input_dropout=0.15), source="c.yaml")
    b0, b1 = cfg.model.blocks
    assert (b0.width, b0.units, b0.nonlinearity, b0.dropout) == (5, 7, "relu", 0.0)
    assert (b1.width, b1.units, b1.nonlinearity, b1.dropout) == (3, 300, "tanh", 0.2)
    p = tmp_path / "c.yaml"
    p.write_text(dump_yaml(cfg), encoding="utf-8")
    assert load_config(p) == cfg.__class__(**{**cfg.__dict__, "source": str(p)})


@pytest.mark.parametrize("blocks,key,what", [
    ([{"width": 4}], "model.blocks[0].width", "odd width"),
    ([{"width": 3}, {"width": 0}], "model.blocks[1].width", ">= 1"),
    ([{"widht": 3}], "model.blocks[0].widht", "did you mean"),
    ([{"units": 0}], "model.blocks[0].units", ">= 1"),
    ([{"nonlinearity": "gelu"}], "model.blocks[0].nonlinearity", "one of"),
    ([{"dropout": 1.0}], "model.blocks[0].dropout", "< 1"),
    ([3], "model.blocks[0]", "mapping"),
    (3, "model.blocks", "list of mappings"),
])
def test_config_block_errors_name_the_key(blocks, key, what):
    with pytest.raises(ConfigError) as e:
        from_dict(cfg_dict(blocks=blocks), source="c.yaml")
    msg = str(e.value)
    assert msg.startswith(f"c.yaml: {key}: ") and what in msg and "\n" not in msg


def test_cli_bad_block_is_a_one_line_error(tmp_path):
    r = CliRunner().invoke(cli, ["train", str(SAMPLE), "--out", str(tmp_path / "r"), "--quiet",
                                 "--set", "model.blocks=[{width: 2}]"])
    assert r.exit_code == 2
    assert "model.blocks[0].width: expected an odd width" in r.output
    assert "Traceback" not in r.output


# ------------------------------------------------------------------ training, graph, resume

CONV_ARGS = ["--set", "model.blocks=[{width: 3, units: 16, dropout: 0.2}, "
             "{width: 5, units: 8, nonlinearity: tanh}]",
             "--set", "model.input_dropout=0.1", "--set", "model.word_dropout=0.1"]


@pytest.mark.parametrize("head", ["softmax", "crf"])
def test_resume_is_bit_identical_with_conv_blocks(tmp_path, head):
    train_and_resume(SAMPLE, [*CONV_ARGS, "--set", f"model.head={head}"], tmp_path)


def test_graph_shows_the_conv_blocks(tmp_path):
    r = CliRunner().invoke(cli, ["graph", str(SAMPLE), *CONV_ARGS])
    assert r.exit_code == 0, r.output
    for name in ("input_dropout", "conv2.neighbours", "conv2.affine", "conv2.relu",
                 "conv2.dropout", "conv3.affine", "conv3.tanh"):
        assert name in r.output, name
    # conv2 reads 3 x 100 inputs into 16 units: 4,800 multiply-adds per token.
    line = next(x for x in r.output.splitlines() if x.startswith("conv2.affine"))
    assert "W2, b2" in line
    B = int(line.split("(")[1].split(",")[0])
    assert f"{B * 4800:,}" in line


@pytest.mark.parametrize("gazetteer", [False, True])
def test_a_kill_during_a_save_then_resume_is_bit_identical_with_conv_blocks(tmp_path,
                                                                            gazetteer):
    """The fault-injection child of test_resume_faults (os._exit during the second save of
    last/, as kill -9) on a conv-block run, with and without a gazetteer table; --resume
    must give the uninterrupted weights."""
    import os
    import subprocess
    import sys

    from test_resume_faults import CHILD, arrays_of, metrics

    args = ["--quiet", "--set", "training.epochs=3", "--set", "training.patience=null",
            *CONV_ARGS]
    if gazetteer:
        lst = tmp_path / "loc.txt"
        lst.write_text("Tessfield\nPort Hallen\n")
        args += ["--set", f"features.gazetteers={{LOC: {lst}}}"]
    full, out = tmp_path / "full", tmp_path / "run"
    r = CliRunner().invoke(cli, ["train", str(SAMPLE), "--out", str(full), *args])
    assert r.exit_code == 0, r.output
    child = subprocess.run([sys.executable, "-c", CHILD, "last", "moved-in", "train",
                            str(SAMPLE), "--out", str(out), *args],
                           capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert child.returncode == 137, child.stdout + child.stderr
    r = CliRunner().invoke(cli, ["train", str(SAMPLE), "--out", str(out), "--resume", *args])
    assert r.exit_code == 0, r.output
    for name in ("best", "last"):
        want, got = arrays_of(full / name), arrays_of(out / name)
        assert want.keys() == got.keys() and "W3" in want
        assert ("E_gaz_LOC" in want) == gazetteer
        for k in want:
            assert np.array_equal(want[k], got[k]), (name, k)
    assert metrics(out) == metrics(full)


def test_sentences_in_a_batch_do_not_see_each_other():
    """A batch of whole sentences scores each sentence as it would alone."""
    net = make_net(conv=((3, 4, "relu", 0.0), (5, 3, "tanh", 0.0)))
    inputs, y, lengths = data(LENGTHS["mixed"])
    together, _ = net.forward(inputs, lengths=lengths)
    start = 0
    for n in lengths:
        alone, _ = net.forward(tuple(a[start:start + n] for a in inputs), lengths=np.array([n]))
        np.testing.assert_allclose(together[start:start + n], alone, rtol=1e-12, atol=1e-14)
        start += n


def test_tagging_a_conv_model_through_the_api(tmp_path):
    """Training with the softmax head gives sentence batches; tagging and probabilities go
    through whole sentences too (the Python API, as nerwin tag)."""
    import nerwin
    from nerwin.api import load_model
    from nerwin.conll import read_tokens

    info = nerwin.train(SAMPLE, overrides={"training.epochs": 1, "model.blocks": [
        {"width": 3, "units": 8}]}, out=tmp_path / "r")
    model = load_model(info.best)
    sents = read_tokens(ROOT / "data" / "sample" / "test.txt")[:30]
    tags = model.tag(sents)
    labels, probs = model.token_probabilities(sents)
    assert [len(t) for t in tags] == [len(s.tokens) for s in sents]
    assert all(np.allclose(p.sum(axis=1), 1) for p in probs)


def test_an_ensemble_of_conv_models_evaluates(tmp_path):
    """nerwin ensemble over two conv-block members (whole sentences with their lengths)."""
    import nerwin

    members = [nerwin.train(SAMPLE, overrides={"training.epochs": 1, "training.seed": s,
                                               "model.blocks": [{"width": 3, "units": 8}]},
                            out=tmp_path / f"s{s}").best for s in (0, 1)]
    run = CliRunner()
    r = run.invoke(cli, ["ensemble", *map(str, members), "--out", str(tmp_path / "e")])
    assert r.exit_code == 0, r.output
    r = run.invoke(cli, ["eval", str(tmp_path / "e"), str(ROOT / "data" / "sample" / "test.txt")])
    assert r.exit_code == 0, r.output
    assert "FB1" in r.output
