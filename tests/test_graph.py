"""`nerwin graph`: the computation graph read from the network's own chain of parts."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli as run

from nerwin.config import load_config
from nerwin.graph import format_text, gradient_pass, graph_of, training_batch
from nerwin.nn.heads import softmax

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "configs" / "sample.yaml"


def bench_speed():
    spec = importlib.util.spec_from_file_location("bench_speed", ROOT / "bench" / "speed.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("overrides", [
    [],                                                   # softmax, one tanh layer
    ["model.hidden=[40,20]", "model.nonlinearity=relu"],  # two blocks
    ["model.head=logistic", "model.positive=LOC"],        # one score
    ["model.hidden=[]"],                                  # the head reads x
    ["features.suffixes=[2,3]", "features.shape_dim=4"],  # more lookup tables
])
def test_multiply_adds_of_the_plain_network_equal_the_gemm_bound_count(overrides):
    speed = bench_speed()
    cfg = load_config(SAMPLE, overrides)
    model, *_ = training_batch(cfg, 48)
    g = graph_of(model.net, 48)
    assert g.madds == speed.gemm_madds(48, speed.gemm_sizes(model.net)) > 0


def test_delta_norms_are_the_networks_own_backward_pass():
    """Recompute δ at every node of a softmax / tanh network by hand from the forward
    pass's activations and compare with what the graph prints."""
    cfg = load_config(SAMPLE, ["model.hidden=[30]"])
    model, inputs, y, lens = training_batch(cfg, 40)
    net, p = model.net, model.net.params
    g = gradient_pass(graph_of(net, len(y)), inputs, y, lens)
    outs: list = []
    net.forward(inputs, trace=outs)
    o = dict(outs)
    x, a, s = o["concat"], o["dense1.tanh"], o["scores"]
    B = len(y)
    P = softmax(s.astype(np.float64))
    delta = P.copy()
    delta[np.arange(B), y] -= 1
    delta /= B                                   # δ at the scores: (P - Y)/B
    dh = delta @ p["U"]                          # δ at h1
    dz = dh * (1 - a.astype(np.float64) ** 2)    # δ at z1: tanh' = 1 - h²
    dx = dz @ p["W1"]                            # δ at x
    want = {"scores": delta, "dense1.tanh": dh, "dense1.affine": dz, "concat": dx}
    for name, d in want.items():
        assert g.delta_norms[name] == pytest.approx(np.linalg.norm(d), rel=1e-4), name
    dx3 = dx.reshape(B, 5, -1)
    assert g.delta_norms["lookup.E_word"] == pytest.approx(
        np.linalg.norm(dx3[:, :, :50]), rel=1e-4)
    # the parameter gradients are the network's (dW1 = δᵀ x)
    assert g.grad_norms["W1"] == pytest.approx(np.linalg.norm(dz.T @ x), rel=1e-4)
    assert g.loss == pytest.approx(-np.log(P[np.arange(B), y]).mean(), rel=1e-5)
    text = format_text(g, "t")
    line = next(ln for ln in text.splitlines() if ln.startswith("dense1.affine"))
    assert line.split()[-1] == f"{np.linalg.norm(dz):.3g}"


def test_sigmoid_shrinks_delta_more_than_relu():
    """Lecture 4's vanishing gradient: through 3 sigmoid blocks δ arriving at x is far
    smaller, relative to δ at the scores, than through 3 relu blocks."""
    ratio = {}
    for f in ("sigmoid", "relu"):
        cfg = load_config(SAMPLE, ["model.hidden=[50,50,50]", f"model.nonlinearity={f}"])
        model, inputs, y, lens = training_batch(cfg, 64)
        g = gradient_pass(graph_of(model.net, len(y)), inputs, y, lens)
        ratio[f] = g.delta_norms["concat"] / g.delta_norms["scores"]
    assert ratio["sigmoid"] < ratio["relu"] / 5


def test_graph_command_text_and_dot():
    r = run("graph", SAMPLE, "--batch", 16)
    assert r.exit_code == 0, r.output
    names = [ln.split()[0] for ln in r.output.splitlines()[3:] if ln and not ln.startswith(
        ("total", "-", "parameter", "node"))]
    assert names[:8] == ["input", "lookup.E_word", "lookup.E_case", "concat",
                         "dense1.affine", "dense1.tanh", "scores", "loss"]
    assert "(16, 100)" in r.output and "total forward multiply-adds: 454,400" in r.output
    r = run("graph", SAMPLE, "--format", "dot", "--gradients", "--set", "model.head=crf")
    assert r.exit_code == 0, r.output
    assert r.output.startswith("digraph nerwin {") and r.output.rstrip().endswith("}")
    edges = re.findall(r'"([^"]+)" -> "([^"]+)"', r.output)
    assert ("input", "lookup.E_word") in edges and ("lookup.E_case", "concat") in edges
    assert ("scores", "loss") in edges and ("param trans", "loss") in edges
    assert "|δ|" in r.output


def test_graph_with_the_char_encoder():
    r = run("graph", SAMPLE, "--set", "features.char_filters=8", "--gradients")
    assert r.exit_code == 0, r.output
    assert "chars.conv" in r.output and "W_char" in r.output


def test_graph_bad_config_is_one_line_exit_2(tmp_path):
    r = run("graph", SAMPLE, "--set", "model.hidden=[0]")
    assert r.exit_code == 2 and "model.hidden" in r.output and "Traceback" not in r.output
    r = run("graph", tmp_path / "nope.yaml")
    assert r.exit_code == 2


@pytest.mark.parametrize("name", ["conll2003.yaml", "conll2003_best.yaml", "lecture3.yaml"])
def test_graph_on_every_shipped_config(name, shared_data):
    args = []
    if name.startswith("conll"):
        args = [f"--set=data.{k}={shared_data(f'conll2003/{f}')}" for k, f in
                (("train", "train.txt"), ("dev", "valid.txt"), ("test", "test.txt"))]
        args.append(f"--set=features.vectors={shared_data('embeddings/glove.6B.50d.txt.gz')}")
    r = run("graph", ROOT / "configs" / name, *args)
    assert r.exit_code == 0, r.output
    assert "total parameters" in r.output
